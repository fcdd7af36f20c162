"""Accuracy of the INT12 golden model against the float reference (SQNR in dB).

Run ``python -m golden.accuracy`` to print the figures quoted in the README.
"""

import argparse

import numpy as np

from defa_hw.config import preset
from . import reference
from .calibration import calibrate
from .model import defa_block, quantize_block, sqnr_db

__all__ = ["SMALL_DEFA_SHAPES", "random_workload", "measure", "held_out"]

#: Spatial shapes that keep the defa preset fast in tests (4 levels, stride 2).
SMALL_DEFA_SHAPES = ((24, 40), (12, 20), (6, 10), (3, 5))


def random_workload(cfg, seed, *, shapes=None, n_queries=200):
    """A random (params, inputs) workload for ``cfg`` in the float input contract."""
    rng = np.random.default_rng(seed)
    shapes = np.array(shapes if shapes is not None else cfg.max_shapes, dtype=np.int64)
    params = reference.random_params(rng, cfg.d_model, cfg.n_heads, cfg.n_levels,
                                     cfg.n_points)
    inputs = reference.random_inputs(rng, shapes, n_queries, cfg.d_model)
    inputs["fmap_mask"] = np.zeros(int(np.sum(shapes[:, 0] * shapes[:, 1])), dtype=bool)
    return params, inputs


def held_out(cfg, seed, *, shapes=None, n_queries=200, n_calibration=4):
    """One block (seed's weights) calibrated on ``n_calibration`` other inputs; returns
    ``(params, held-out inputs, StaticScales)``."""
    params, inputs = random_workload(cfg, seed, shapes=shapes, n_queries=n_queries)
    rng = np.random.default_rng(10_000 + seed)
    calib = []
    for _ in range(n_calibration):
        c = reference.random_inputs(rng, inputs["spatial_shapes"], n_queries, cfg.d_model)
        c["fmap_mask"] = inputs["fmap_mask"]
        calib.append((params, c))
    return params, inputs, calibrate(cfg, calib)


def measure(cfg, params, inputs, *, prune, scales=None):
    """SQNR of the dequantised INT12 output against the float reference, with statistics.

    ``sqnr_db`` compares with exact PyTorch semantics; ``sqnr_clamped_db`` with the float
    reference given the same per-level offset range reduction (so it isolates the
    integer arithmetic from the algorithmic clamp).
    """
    qb = quantize_block(cfg, params, inputs["query"], inputs["reference_points"],
                        inputs["input_flatten"], inputs["spatial_shapes"], inputs["fmap_mask"],
                        scales=scales)
    res = defa_block(cfg, qb, prune=prune)
    args = (params, inputs["query"], inputs["reference_points"], inputs["input_flatten"],
            inputs["spatial_shapes"], inputs["fmap_mask"])
    exact = reference.msdeform_attn_forward(*args, n_heads=cfg.n_heads)
    clamped = reference.msdeform_attn_forward(*args, n_heads=cfg.n_heads,
                                              offset_bound=cfg.offset_bound)
    return {
        "sqnr_db": sqnr_db(exact, res["output"]),
        "sqnr_clamped_db": sqnr_db(clamped, res["output"]),
        "points_pruned_frac": res["points_pruned"] / res["points_total"],
        "pixels_pruned_frac": res["pixels_pruned_next"] / res["pixels_total"],
        "points_clamped_frac": res["points_clamped"] / res["points_total"],
        "result": res,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args(argv)
    print("| preset | pruning | SQNR vs PyTorch (dB) | SQNR vs clamped float (dB) "
          "| points pruned | pixels pruned (next mask) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, shapes in (("defa", SMALL_DEFA_SHAPES), ("tiny", None)):
        cfg = preset(name)
        for prune in (False, True):
            rows = [measure(cfg, *random_workload(cfg, s, shapes=shapes,
                                                  n_queries=args.queries), prune=prune)
                    for s in range(args.seeds)]
            def mean(k):
                return float(np.mean([r[k] for r in rows]))
            lo = min(r["sqnr_db"] for r in rows)
            print(f"| {name} | {'on' if prune else 'off'} | {mean('sqnr_db'):.1f} "
                  f"(min {lo:.1f}) | {mean('sqnr_clamped_db'):.1f} "
                  f"| {100 * mean('points_pruned_frac'):.1f}% "
                  f"| {100 * mean('pixels_pruned_frac'):.1f}% |")
    print("\nHeld-out inputs, static scales (max-abs over 4 other inputs of the same block) "
          "vs per-input scales, defa at the shapes above:\n")
    print("| pruning | SQNR per-input scales (dB) | SQNR static scales (dB) | values saturated |")
    print("| --- | --- | --- | --- |")
    cfg = preset("defa")
    blocks = [held_out(cfg, s, shapes=SMALL_DEFA_SHAPES, n_queries=args.queries)
              for s in range(args.seeds)]
    for prune in (False, True):
        own = [measure(cfg, p, i, prune=prune)["sqnr_db"] for p, i, _ in blocks]
        static = [measure(cfg, p, i, prune=prune, scales=sc) for p, i, sc in blocks]
        sat = sum(sum(m["result"]["saturated"].values()) for m in static)
        print(f"| {'on' if prune else 'off'} | {np.mean(own):.1f} (min {min(own):.1f}) "
              f"| {np.mean([m['sqnr_db'] for m in static]):.1f} "
              f"(min {min(m['sqnr_db'] for m in static):.1f}) | {sat} |")


if __name__ == "__main__":
    main()
