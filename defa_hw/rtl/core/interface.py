"""External interface of ``defa_core``: stream packet layouts and the core-only config checks.

Everything a host (the cocotb testbench, ``defa-hw simulate``, a driver written later)
needs to talk to :class:`~defa_hw.rtl.core.DefaCore` lives here, derived from the config
only, so the RTL, the testbench and the documentation (``docs/architecture.md``,
packet formats and register map) cannot disagree.

Streams (``amaranth.lib.stream``, valid/ready, payload = ``data.Struct``):

* ``weights`` (in): one beat = one output row of one weight matrix (``C`` codes) and
  its bias (:func:`weight_beat_layout`).  Beats carry their own address, so any order
  is allowed; accepted only while the core is idle.
* ``fmap_req`` (out): value-window loads (:func:`fmap_request_layout`): level, first
  row, row count.  The core asks for rows when a query needs rows its windows do not
  hold; the same rows may be asked for again after they were evicted.
* ``fmap`` (in): after each ``fmap_req`` beat, the ``rows * W`` pixels it names in raster
  order, one beat per pixel (:func:`fmap_beat_layout`); masked pixels may carry any
  data (it is ignored).
* ``queries`` (in): one beat per query: ``C`` codes and the ``L`` reference points
  (:func:`query_beat_layout`).
* ``results`` (out): output rows as ``d_model / pe_cols`` beats of ``pe_cols`` codes
  (kind ``OUTPUT``), and the next fmap mask packed ``pe_cols * data_bits`` pixels per
  beat (kind ``MASK``); the two kinds may interleave, each in its own order
  (:func:`result_beat_layout`).
"""

import enum as _pyenum

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.utils import bits_for

from defa_hw.config import CoreConfigError

__all__ = ["WeightTarget", "ResultKind", "weight_rows", "weight_beat_layout",
           "fmap_beat_layout", "fmap_request_layout", "ref_layout", "query_beat_layout", "mask_bits_per_beat",
           "result_beat_layout", "offset_banks", "offset_group", "check_core_config", "CoreConfigError"]



def check_core_config(cfg):
    """Constraints the core adds to :class:`DefaConfig` validation (see docs/architecture.md).

    * ``pe_cols`` even: the offset phase computes the (x, y) rows of one sampling point
      in a pair of adjacent PE columns.
    * ``d_model / pe_rows >= 2``: the offset weights are stored skewed over the banks of
      a lane group (:func:`offset_group`), which needs at least 2 K chunks per tile.
    * a value-projection tile's ``pe_cols / ba_channels`` buffer writes (a whole
      number) fit in the ``d_model / pe_rows`` cycles of the next tile.
    """
    if cfg.pe_cols % 2:
        raise CoreConfigError(f"defa_core needs an even pe_cols (got {cfg.pe_cols}): point "
                              f"(x, y) offsets use a pair of PE columns")
    kc = cfg.d_model // cfg.pe_rows
    if kc < 2:
        raise CoreConfigError(f"defa_core needs d_model / pe_rows >= 2 (got {kc}): the "
                              f"offset weights are skewed over the K chunks of a tile")
    kc_att = -(-cfg.n_heads * cfg.n_lp // cfg.pe_cols) * kc
    if kc_att < cfg.n_heads * cfg.n_lp and cfg.pe_cols % cfg.n_lp:
        raise CoreConfigError(
            f"defa_core needs pe_cols ({cfg.pe_cols}) to be a multiple of n_levels * "
            f"n_points ({cfg.n_lp}) when ATTN outruns one softmax: each head's logits then "
            f"go to a softmax lane of their own, whole heads per tile")
    if cfg.pe_cols % cfg.ba_channels:
        raise CoreConfigError(
            f"defa_core needs pe_cols ({cfg.pe_cols}) to be a multiple of ba_channels "
            f"({cfg.ba_channels}): a value tile is written to the buffers in whole BA words")
    wr_beats = cfg.pe_cols // cfg.ba_channels
    if wr_beats > kc:
        raise CoreConfigError(
            f"defa_core needs pe_cols / ba_channels ({wr_beats}) <= d_model / pe_rows ({kc}):"
            f" a value tile's buffer writes must fit in the next tile's cycles")


def offset_group(cfg):
    """Lanes per offset-gather group, ``Bg``: the largest divisor of both ``B = pe_cols /
    2`` and ``Kc = d_model / pe_rows`` with ``2 * Bg <= Kc``.  Each of the ``B / Bg``
    groups has its own copy of the skewed offset-weight banks (``Bg`` banks), so a
    batch of ``B`` arbitrary points is gathered in ``Kc`` cycles without a conflict and
    the group's ``Bg`` biases one per cycle."""
    kc, b = cfg.d_model // cfg.pe_rows, cfg.pe_cols // 2
    return max(d for d in range(1, b + 1) if b % d == 0 and kc % d == 0 and 2 * d <= kc)


class WeightTarget(_pyenum.IntEnum):
    """``target`` field of a weight beat: which layer the row belongs to."""
    VALUE = 0       # value_proj        (C rows)
    OFFSET = 1      # sampling_offsets  (M*L*P*2 rows)
    ATTN = 2        # attention_weights (M*L*P rows)
    OUT = 3         # output_proj       (C rows)


class ResultKind(_pyenum.IntEnum):
    OUTPUT = 0
    MASK = 1


def weight_rows(cfg):
    """Output rows of each weight matrix (``WeightTarget.W_*``)."""
    n_att = cfg.n_heads * cfg.n_lp
    return {WeightTarget.VALUE: cfg.d_model, WeightTarget.OFFSET: 2 * n_att,
            WeightTarget.ATTN: n_att, WeightTarget.OUT: cfg.d_model}


def weight_beat_layout(cfg):
    """One weight beat: row ``o`` of layer ``target`` (:class:`WeightTarget`).

    ``weights[i]`` = ``W[o, i]`` (``nn.Linear`` layout, ``C`` codes), ``bias`` = the
    bias code of row ``o`` at the accumulator's scale (``QuantizedBlock.b_*``).
    """
    rows = max(weight_rows(cfg).values())
    return data.StructLayout({
        "target": unsigned(2),
        "row": unsigned(bits_for(rows - 1)),
        "weights": data.ArrayLayout(signed(cfg.data_bits), cfg.d_model),
        "bias": signed(cfg.mm_acc_bits),
    })


def fmap_beat_layout(cfg):
    """One pixel of ``input_flatten``: ``C`` codes and its incoming fmap-mask bit."""
    return data.StructLayout({
        "pixel": data.ArrayLayout(signed(cfg.data_bits), cfg.d_model),
        "masked": unsigned(1),
    })


def fmap_request_layout(cfg):
    """A value-window load the core asks for on ``fmap_req``: rows ``row .. row + rows - 1``
    of level ``level``; the core then takes ``rows * W[level]`` beats on ``fmap`` (those
    rows in raster order).  See ``docs/architecture.md``, value windows."""
    h_max = max(h for h, _ in cfg.max_shapes)
    return data.StructLayout({
        "level": unsigned(max(1, bits_for(cfg.n_levels - 1))),
        "row": unsigned(bits_for(h_max - 1)),
        "rows": unsigned(bits_for(h_max)),
    })


def ref_layout(cfg):
    return data.StructLayout({"x": unsigned(cfg.ref_frac_bits), "y": unsigned(cfg.ref_frac_bits)})


def query_beat_layout(cfg):
    """One query: ``C`` codes and the reference point (x, y), UQ0.ref_frac_bits, per level."""
    return data.StructLayout({
        "query": data.ArrayLayout(signed(cfg.data_bits), cfg.d_model),
        "ref": data.ArrayLayout(ref_layout(cfg), cfg.n_levels),
    })


def mask_bits_per_beat(cfg):
    """Next-fmap-mask bits carried by one MASK beat (the width of ``data``)."""
    return cfg.pe_cols * cfg.data_bits


def result_beat_layout(cfg):
    """One result beat.

    ``kind`` (:class:`ResultKind`); ``last`` marks the last beat of its kind in the
    block.  OUTPUT: ``data`` = ``pe_cols`` codes ``output_int[q, j*pe_cols:(j+1)*pe_cols]``
    (code i at bits ``[i*data_bits, (i+1)*data_bits)``; q, j in row order).  MASK:
    bit ``i < count`` of ``data`` = ``next_fmap_mask`` of the next pixel in
    ``input_flatten`` order (``count`` = :func:`mask_bits_per_beat` except in the last).
    """
    mb = mask_bits_per_beat(cfg)
    return data.StructLayout({
        "kind": unsigned(1),
        "last": unsigned(1),
        "count": unsigned(bits_for(mb)),
        "data": unsigned(mb),
    })


def offset_banks(cfg):
    """Points per offset batch, ``B = pe_cols / 2`` (one pair of PE columns each); their
    weights come from ``B / Bg`` lane groups (:func:`offset_group`)."""
    return cfg.pe_cols // 2
