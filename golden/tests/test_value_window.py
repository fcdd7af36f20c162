"""The value-window policy (docs/numerics.md, value windows) on hand-worked cases and
its invariants: every query's rows are resident when it runs, and the locality order
loads each row once."""

import numpy as np

from defa_hw.config import preset
from defa_hw.host.order import encoder_reference_codes, query_order
from golden.value_window import query_pairs, reference_rows, window_schedule

TINY_TALL = ((12, 10), (6, 5), (3, 3), (2, 2))


def _ref_for_rows(cfg, rows, shapes):
    """Reference codes whose level-0 reference row is ``rows[i]`` (the other levels
    follow from the same normalised y)."""
    R = cfg.ref_frac_bits
    h0 = shapes[0][0]
    y = [min(((4 * r + 3) << R) // (4 * h0), (1 << R) - 1) for r in rows]   # (r + 3/4) / H
    ref = np.zeros((len(rows), cfg.n_levels, 2), np.int64)
    ref[:, :, 1] = np.asarray(y)[:, None]
    return ref


def test_hand_worked_forward_then_back():
    """tiny level 0: 12 rows, window 4 pairs, bound 1 (a query reaches fl-1 .. fl+2).
    fl = 0 loads rows 0-7; fl = 9 moves the window to pairs 2-5 (the map's end) and
    loads rows 8-11; fl = 0 again moves it back to pairs 0-3 and re-loads rows 0-3."""
    cfg = preset("tiny")
    ref = _ref_for_rows(cfg, [0, 9, 0], TINY_TALL)
    assert list(reference_rows(cfg, ref, TINY_TALL)[:, 0]) == [0, 9, 0]
    s = window_schedule(cfg, ref, TINY_TALL)
    level0 = [(q, ld) for q, lds in s.misses for ld in lds if ld[0] == 0]
    assert level0 == [(0, (0, 0, 8)), (1, (0, 8, 4)), (2, (0, 0, 4))]
    # the levels that fit whole load once, with the first query
    assert [ld for q, lds in s.misses if q == 0 for ld in lds][1:] == [
        (1, 0, 6), (2, 0, 3), (3, 0, 2)]
    assert s.rows_refetched == 4
    assert s.rows_loaded == 8 + 4 + 4 + 6 + 3 + 2


def _resident_after(cfg, ref, shapes, sched):
    """Replay the loads and check every query's rows are loaded (and not overwritten)
    when it runs: the window slot of a pair is pair mod (buffer_rows / 2)."""
    a, b = query_pairs(cfg, ref, shapes)
    L = cfg.n_levels
    slot = [dict() for _ in range(L)]
    loads = dict(sched.misses)
    for q in range(ref.shape[0]):
        for l, row, rows in loads.get(q, []):
            P = cfg.buffer_rows(l) // 2
            for r in range(row, row + rows):
                slot[l][(r >> 1) % P] = r >> 1
        for l in range(L):
            P = cfg.buffer_rows(l) // 2
            for p in range(a[q, l], b[q, l] + 1):
                assert slot[l].get(p % P) == p, f"query {q} level {l} pair {p} not resident"


def test_any_order_keeps_every_query_resident():
    cfg = preset("tiny")
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 1 << cfg.ref_frac_bits, size=(200, cfg.n_levels, 2))
    for order in ("given", "locality"):
        r = ref[query_order(ref, order)]
        _resident_after(cfg, r, TINY_TALL, window_schedule(cfg, r, TINY_TALL))


def test_encoder_orders_on_defa():
    """800x1333: the locality order loads each row once; input_flatten re-loads rows."""
    cfg = preset("defa")
    shapes = cfg.max_shapes
    ref = encoder_reference_codes(cfg, shapes)
    loc = window_schedule(cfg, ref[query_order(ref, "locality")], shapes)
    assert loc.rows_refetched == 0 and loc.rows_loaded == sum(h for h, _ in shapes)
    given = window_schedule(cfg, ref, shapes)
    assert given.rows_refetched > 0
    assert given.rows_loaded == loc.rows_loaded + given.rows_refetched
    _resident_after(cfg, ref, shapes, given)
