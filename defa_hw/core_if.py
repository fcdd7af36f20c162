"""External interface of ``defa_core``: packet layouts, register map, host-side packing.

Everything a host (the cocotb testbench, ``defa-hw simulate``, a driver written later)
needs to talk to :class:`~defa_hw.core.DefaCore` lives here, derived from the config
only, so the RTL, the testbench and the documentation (``docs/architecture.md``,
packet formats and register map) cannot disagree.

Streams (``amaranth.lib.stream``, valid/ready, payload = ``data.Struct``):

* ``weights`` (in): one beat = one output row of one weight matrix (``C`` codes) and
  its bias (:func:`weight_beat_layout`).  Beats carry their own address, so any order
  is allowed; accepted only while the core is idle.
* ``fmap`` (in): one beat per pixel of ``input_flatten`` in its order (level, y, x)
  (:func:`fmap_beat_layout`); masked pixels may carry any data (it is ignored).
* ``queries`` (in): one beat per query: ``C`` codes and the ``L`` reference points
  (:func:`query_beat_layout`).
* ``results`` (out): output rows as ``d_model / pe_cols`` beats of ``pe_cols`` codes
  (kind ``OUTPUT``), and the next fmap mask packed ``pe_cols * data_bits`` pixels per
  beat (kind ``MASK``); the two kinds may interleave, each in its own order
  (:func:`result_beat_layout`).
"""

import enum as _pyenum

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from .config import ConfigError

__all__ = ["WeightTarget", "ResultKind", "Reg", "REG_BITS", "REG_ADDR_BITS", "CTRL",
           "weight_beat_layout", "fmap_beat_layout", "query_beat_layout", "result_beat_layout",
           "offset_banks", "check_core_config", "CoreConfigError", "HostPacker",
           "register_values", "PHASES", "COUNTER_REGS"]


class CoreConfigError(ConfigError):
    """The config cannot be built as a whole core (a core-only constraint is violated)."""


def _bits(n):
    """Bits of an unsigned number holding ``0 .. n``."""
    return max(1, int(n).bit_length())


def check_core_config(cfg):
    """Constraints the core adds to :class:`DefaConfig` validation (see docs/architecture.md).

    * ``pe_cols`` even: the offset phase computes the (x, y) rows of one sampling point
      in a pair of adjacent PE columns.
    * ``d_model / pe_rows`` a multiple of ``pe_cols / 2`` and ``>= pe_cols``: the offset
      weights are stored skewed over ``pe_cols / 2`` banks so that a batch of
      ``pe_cols / 2`` arbitrary points is gathered without bank conflicts (one chunk per
      bank per cycle) in ``d_model / pe_rows`` cycles, which also leaves time to fetch
      the batch's biases one per cycle.
    * ``4 * n_levels <= d_model``: a value-projection tile's ``pe_cols / ba_channels``
      buffer writes fit in the ``d_model / pe_rows`` cycles of the next tile.
    """
    if cfg.pe_cols % 2:
        raise CoreConfigError(f"defa_core needs an even pe_cols (got {cfg.pe_cols}): point "
                              f"(x, y) offsets use a pair of PE columns")
    kc = cfg.d_model // cfg.pe_rows
    if kc % (cfg.pe_cols // 2) or kc < cfg.pe_cols:
        raise CoreConfigError(f"defa_core needs d_model / pe_rows ({kc}) to be a multiple of "
                              f"pe_cols / 2 ({cfg.pe_cols // 2}) and at least pe_cols "
                              f"({cfg.pe_cols}) (skewed offset-weight banks, bias gather)")
    if 4 * cfg.n_levels > cfg.d_model:
        raise CoreConfigError("defa_core needs 4 * n_levels <= d_model")


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
        "row": unsigned(_bits(rows - 1)),
        "weights": data.ArrayLayout(signed(cfg.data_bits), cfg.d_model),
        "bias": signed(cfg.mm_acc_bits),
    })


def fmap_beat_layout(cfg):
    """One pixel of ``input_flatten``: ``C`` codes and its incoming fmap-mask bit."""
    return data.StructLayout({
        "pixel": data.ArrayLayout(signed(cfg.data_bits), cfg.d_model),
        "masked": unsigned(1),
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
        "count": unsigned(_bits(mb)),
        "data": unsigned(mb),
    })


def offset_banks(cfg):
    """Skewed offset-weight banks: ``B = pe_cols / 2``; chunk ``k`` of point ``pt`` lives in
    bank ``(pt + k) % B`` at word ``pt * (Kc / B) + k // B`` (``Kc = d_model / pe_rows``)."""
    return cfg.pe_cols // 2


# ---- register map --------------------------------------------------------------------------

REG_BITS = 32
REG_ADDR_BITS = 6


class Reg(_pyenum.IntEnum):
    """Word addresses of the register block (32-bit registers)."""
    CTRL = 0x00             # W: bit0 START. R: bit0 BUSY, bit1 DONE, bit2 READY
    NQ = 0x01               # queries in the block (1 .. 2^16 - 1)
    FLAGS = 0x02            # bit0 PRUNE (PAP + FWP on)
    SHIFT_VALUE = 0x03      # requant shifts (QuantParams.*_shift), 0 .. 63
    SHIFT_LOGIT = 0x04
    SHIFT_OFFSET = 0x05
    SHIFT_AGG = 0x06
    SHIFT_OUT = 0x07
    LOGIT_FRAC = 0x08       # softmax input fraction bits (QuantParams.logit)
    PAP_THRESHOLD = 0x09    # probability code (cfg.pap_threshold_code at reset)
    FWP_THRESHOLD = 0x0A    # counter threshold (cfg.fwp_threshold at reset)
    SHAPE0 = 0x10           # SHAPE0 + l: bits [15:0] H, [31:16] W of level l
    CYCLES = 0x20           # read-only counters of the current / last block
    CYC_ATTN = 0x21
    CYC_OFFSET = 0x22
    CYC_VALUE = 0x23
    CYC_BA = 0x24
    CYC_OUT = 0x25
    CYC_TAIL = 0x26
    STALL_CYCLES = 0x27
    POINTS_TOTAL = 0x28
    POINTS_PRUNED = 0x29
    POINTS_CLAMPED = 0x2A
    PIXELS_MASKED_IN = 0x2B
    PIXELS_PRUNED_NEXT = 0x2C
    BANK_CONFLICTS = 0x2D
    MM_OPS = 0x2E
    BA_OPS = 0x2F
    PASSES = 0x30
    CONFIG0 = 0x3E          # read-only: d_model | n_heads << 12 | n_levels << 20 | n_points << 24
    CONFIG1 = 0x3F          # read-only: pe_rows | pe_cols << 8 | max_queries << 16


class CTRL:
    START = 1 << 0
    BUSY = 1 << 0
    DONE = 1 << 1
    READY = 1 << 2


#: Phases in controller order, the register of their cycle counter and their name.
PHASES = (("attn", Reg.CYC_ATTN), ("offset", Reg.CYC_OFFSET), ("value", Reg.CYC_VALUE),
          ("ba", Reg.CYC_BA), ("out", Reg.CYC_OUT), ("tail", Reg.CYC_TAIL))

#: Read-only counters and the name ``simulate`` reports them under.
COUNTER_REGS = {
    "cycles": Reg.CYCLES, "cycles_attn": Reg.CYC_ATTN, "cycles_offset": Reg.CYC_OFFSET,
    "cycles_value": Reg.CYC_VALUE, "cycles_ba": Reg.CYC_BA, "cycles_out": Reg.CYC_OUT,
    "cycles_tail": Reg.CYC_TAIL, "stall_cycles": Reg.STALL_CYCLES,
    "points_total": Reg.POINTS_TOTAL, "points_pruned": Reg.POINTS_PRUNED,
    "points_clamped": Reg.POINTS_CLAMPED, "pixels_masked_in": Reg.PIXELS_MASKED_IN,
    "pixels_pruned_next": Reg.PIXELS_PRUNED_NEXT, "bank_conflicts": Reg.BANK_CONFLICTS,
    "mm_ops": Reg.MM_OPS, "ba_ops": Reg.BA_OPS, "passes": Reg.PASSES,
}


def register_values(cfg, qb, *, prune=True):
    """Register writes (address -> value) that configure one block from a QuantizedBlock."""
    qp = qb.qp
    for name, s in qp.shifts().items():
        if not 0 <= s <= 63:
            raise CoreConfigError(f"{name} requantisation shift {s} is outside the register "
                                  f"range 0..63")
    regs = {
        Reg.NQ: int(qb.query.shape[0]),
        Reg.FLAGS: int(bool(prune)),
        Reg.SHIFT_VALUE: qp.value_shift, Reg.SHIFT_LOGIT: qp.logit_shift,
        Reg.SHIFT_OFFSET: qp.offset_shift, Reg.SHIFT_AGG: qp.agg_shift,
        Reg.SHIFT_OUT: qp.out_shift, Reg.LOGIT_FRAC: qp.logit,
        Reg.PAP_THRESHOLD: cfg.pap_threshold_code, Reg.FWP_THRESHOLD: cfg.fwp_threshold,
    }
    for l, (h, w) in enumerate(np.asarray(qb.shapes, dtype=np.int64)):
        regs[Reg.SHAPE0 + l] = int(h) | (int(w) << 16)
    return {int(k): int(v) for k, v in regs.items()}


# ---- host-side packing (pure Python integers, fast enough for cocotb) ----------------------

def _pack_codes(codes, bits):
    """Little-endian packing of signed codes into one integer (element 0 in the low bits)."""
    mask = (1 << bits) - 1
    out = 0
    for i, c in enumerate(np.asarray(codes, dtype=np.int64).tolist()):
        out |= (c & mask) << (i * bits)
    return out


def _unpack_codes(value, bits, n):
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = (value >> (i * bits)) & mask
        out[i] = c - (1 << bits) if c & sign else c
    return out


class HostPacker:
    """Turns a :class:`golden.model.QuantizedBlock` into beats and results back into arrays."""

    def __init__(self, cfg):
        check_core_config(cfg)
        self.cfg = cfg
        self.wl = weight_beat_layout(cfg)
        self.fl = fmap_beat_layout(cfg)
        self.ql = query_beat_layout(cfg)
        self.rl = result_beat_layout(cfg)

    def weight_beats(self, qb):
        """All weight and bias beats of a block, as integers (payload values)."""
        cfg = self.cfg
        d = cfg.data_bits
        o_t, o_r, o_w, o_b = (self.wl["target"].offset, self.wl["row"].offset,
                              self.wl["weights"].offset, self.wl["bias"].offset)
        acc_mask = (1 << cfg.mm_acc_bits) - 1
        beats = []
        mats = ((WeightTarget.VALUE, qb.w_value, qb.b_value),
                (WeightTarget.OFFSET, qb.w_offset, qb.b_offset),
                (WeightTarget.ATTN, qb.w_attn, qb.b_attn),
                (WeightTarget.OUT, qb.w_out, qb.b_out))
        for tgt, w, b in mats:
            w = np.asarray(w, dtype=np.int64)
            b = np.asarray(b, dtype=np.int64).tolist()
            for o in range(w.shape[0]):
                beats.append((int(tgt) << o_t) | (o << o_r) | (_pack_codes(w[o], d) << o_w) |
                             ((b[o] & acc_mask) << o_b))
        return beats

    def fmap_beats(self, qb):
        d = self.cfg.data_bits
        o_p, o_m = self.fl["pixel"].offset, self.fl["masked"].offset
        mask = np.asarray(qb.fmap_mask, dtype=bool)
        return [(_pack_codes(row, d) << o_p) | (int(mk) << o_m)
                for row, mk in zip(np.asarray(qb.input, dtype=np.int64), mask)]

    def query_beats(self, qb):
        cfg = self.cfg
        d, rb = cfg.data_bits, cfg.ref_frac_bits
        o_q, o_r = self.ql["query"].offset, self.ql["ref"].offset
        beats = []
        for q in range(qb.query.shape[0]):
            ref = 0
            for l in range(cfg.n_levels):
                x, y = (int(v) for v in qb.ref[q, l])
                ref |= (x | (y << rb)) << (l * 2 * rb)
            beats.append((_pack_codes(qb.query[q], d) << o_q) | (ref << o_r))
        return beats

    def decode_result(self, value):
        """``(kind, last, payload)``: OUTPUT -> ``pe_cols`` codes, MASK -> list of bools."""
        cfg = self.cfg
        kind = (value >> self.rl["kind"].offset) & 1
        last = (value >> self.rl["last"].offset) & 1
        dat = value >> self.rl["data"].offset
        if kind == ResultKind.OUTPUT:
            return kind, last, _unpack_codes(dat, cfg.data_bits, cfg.pe_cols)
        count = (value >> self.rl["count"].offset) & ((1 << self.rl["count"].shape.width) - 1)
        return kind, last, [bool((dat >> i) & 1) for i in range(count)]
