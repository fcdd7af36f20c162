"""External (off-chip) traffic of one MSDeformAttn block, in bits, from the stream beat
layouts of :mod:`defa_hw.rtl.core.interface` (beat width x beats), so that the figure
follows the RTL's packet formats.  The RTL's stream counters can later be checked
against :func:`external_traffic` beat for beat.
"""

from defa_hw.rtl.core.interface import (fmap_beat_layout, mask_bits_per_beat,
                                        query_beat_layout, result_beat_layout,
                                        weight_beat_layout, weight_rows)

__all__ = ["external_traffic"]


def external_traffic(cfg, shapes, n_queries, *, fmap_rows_loaded=None):
    """Bits crossing the chip boundary for one block: a dict of ``beats`` and ``bits`` per
    stream and ``total_bits``.

    * ``weights``: every row of the four weight matrices once (one beat per row: ``C``
      codes, its bias, target and row address);
    * ``queries``: one beat per query (``C`` codes and the ``L`` reference points);
    * ``fmap``: one beat per pixel (``C`` codes and the incoming mask bit) of every row
      fetched; ``fmap_rows_loaded`` (one count per level) is the rows actually fetched
      (default: each of the level's ``H`` rows once).  Masked pixels still travel (the
      stream carries every pixel, the core ignores a masked one's data);
    * ``results``: ``C / pe_cols`` OUTPUT beats per query, and the next fmap mask packed
      :func:`mask_bits_per_beat` pixels per MASK beat.
    """
    shapes = [tuple(int(v) for v in s) for s in shapes]
    if fmap_rows_loaded is None:
        fmap_rows_loaded = [h for h, _w in shapes]
    if len(fmap_rows_loaded) != len(shapes):
        raise ValueError(f"fmap_rows_loaded has {len(fmap_rows_loaded)} levels; "
                         f"expected {len(shapes)} (one per level)")
    S = sum(h * w for h, w in shapes)
    r_bits = result_beat_layout(cfg).size
    beats = {
        "weights": (sum(weight_rows(cfg).values()), weight_beat_layout(cfg).size),
        "queries": (n_queries, query_beat_layout(cfg).size),
        "fmap": (sum(int(r) * w for r, (_h, w) in zip(fmap_rows_loaded, shapes)),
                 fmap_beat_layout(cfg).size),
        "results_output": (n_queries * (cfg.d_model // cfg.pe_cols), r_bits),
        "results_mask": (-(-S // mask_bits_per_beat(cfg)), r_bits),
    }
    out = {k: {"beats": n, "beat_bits": w, "bits": n * w} for k, (n, w) in beats.items()}
    out["total_bits"] = sum(v["bits"] for v in out.values())
    return out
