"""External (off-chip) traffic of one MSDeformAttn block, in beats and bits, from the
stream beat layouts of :mod:`defa_hw.rtl.core.interface` (beat width x beats), so the
figure follows the RTL's packet formats.  The same beat counts are what the core's
stream counters (``Reg.WEIGHT_BEATS`` ...) must show (``defa_hw.flow.simulate``).
"""

from defa_hw.rtl.core.interface import (fmap_beat_layout, fmap_request_layout,
                                        mask_bits_per_beat, query_beat_layout,
                                        result_beat_layout, weight_beat_layout, weight_rows)

__all__ = ["STREAMS", "beat_bits", "external_traffic", "traffic_bits"]

#: The core's streams in the traffic tables (``results`` = OUTPUT and MASK beats).
STREAMS = ("weights", "queries", "fmap", "fmap_req", "results_output", "results_mask")


def beat_bits(cfg):
    """Width in bits of one beat of each stream."""
    r = result_beat_layout(cfg).size
    return {"weights": weight_beat_layout(cfg).size, "queries": query_beat_layout(cfg).size,
            "fmap": fmap_beat_layout(cfg).size, "fmap_req": fmap_request_layout(cfg).size,
            "results_output": r, "results_mask": r}


def traffic_bits(cfg, beats):
    """``{stream: {beats, beat_bits, bits}}`` and ``total_bits`` for beat counts per stream."""
    widths = beat_bits(cfg)
    out = {k: {"beats": int(beats[k]), "beat_bits": widths[k], "bits": int(beats[k]) * widths[k]}
           for k in STREAMS}
    out["total_bits"] = sum(v["bits"] for v in out.values())
    return out


def external_traffic(cfg, shapes, n_queries, *, fmap_rows_loaded=None, window_loads=None):
    """Bits crossing the chip boundary for one block (:func:`traffic_bits`).

    * ``weights``: every row of the four weight matrices once (one beat per row: ``C``
      codes, its bias, target and row address);
    * ``queries``: one beat per query (``C`` codes and the ``L`` reference points);
    * ``fmap``: one beat per pixel (``C`` codes and the incoming mask bit) of every row
      fetched; ``fmap_rows_loaded`` (one count per level) is the rows actually fetched
      (default: each of the level's ``H`` rows once).  Masked pixels still travel (the
      stream carries every pixel, the core ignores a masked one's data);
    * ``fmap_req``: one beat per window load (``window_loads``, default one per level);
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
    return traffic_bits(cfg, {
        "weights": sum(weight_rows(cfg).values()),
        "queries": n_queries,
        "fmap": sum(int(r) * w for r, (_h, w) in zip(fmap_rows_loaded, shapes)),
        "fmap_req": len(shapes) if window_loads is None else window_loads,
        "results_output": n_queries * (cfg.d_model // cfg.pe_cols),
        "results_mask": -(-S // mask_bits_per_beat(cfg)),
    })
