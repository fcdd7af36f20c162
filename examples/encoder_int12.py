"""A whole Deformable DETR encoder with every MSDeformAttn block run by the INT12 golden model.

Builds a transformers ``DeformableDetrModel`` (random init, or a local checkpoint; nothing
is downloaded), feeds it a real image, and runs the encoder twice: in float, and with
each layer's self-attention replaced by ``golden.model.defa_block`` (FFN and LayerNorm
stay float).  FWP is chained: layer i's ``next_fmap_mask`` is layer i+1's ``fmap_mask``
(on top of the image's padding mask).  Prints, per layer, the SQNR of the layer output
against the float encoder, the SQNR of the attention block against its own float output
on the same input, and the points and pixels pruned; then the final output's SQNR.

    pip install -e '.[interop]'
    python examples/encoder_int12.py                        # skimage's astronaut, 256x384
    python examples/encoder_int12.py --image photo.jpg --checkpoint ./deformable-detr
    python examples/encoder_int12.py --calibrate-on coffee,chelsea,rocket   # static scales
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:              # runnable from a fresh clone without installing
    sys.path.insert(0, str(REPO))

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


class ExampleError(ValueError):
    """A bad argument; reported as one line, exit status 2."""


def _size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ExampleError(f"--size {text!r} is invalid: expected HxW, e.g. 256x384") from None
    if not (64 <= h <= 1344 and 64 <= w <= 1344):
        raise ExampleError(f"--size {text!r} is invalid: H and W must be in 64..1344")
    return h, w


def load_image(name, size):
    """``(1, 3, H, W)`` normalised tensor from a skimage sample name or an image file."""
    import skimage
    import torch
    from skimage.transform import resize
    if name in SAMPLES:
        img = getattr(skimage.data, name)()
    else:
        try:
            img = skimage.io.imread(name)
        except (OSError, ValueError) as e:
            raise ExampleError(f"--image {name!r}: not a sample ({', '.join(SAMPLES)}) and "
                               f"not a readable image ({e})") from None
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3] / (255.0 if img.max() > 1.0 else 1.0)
    img = (resize(img, size, anti_aliasing=True) - MEAN) / STD
    return torch.tensor(img.transpose(2, 0, 1)[None], dtype=torch.float32)


def build_model(*, checkpoint=None, layers=None, seed=0, trained_like=False, small=False):
    """A ``DeformableDetrModel`` in eval mode: random init (seeded) or a local checkpoint.

    ``small``: a small basic-block ResNet and one decoder layer (fast tests); the encoder
    is the same shape."""
    import torch
    from transformers import DeformableDetrConfig, DeformableDetrModel
    torch.manual_seed(seed)
    if checkpoint is not None:
        if not Path(checkpoint).is_dir():
            raise ExampleError(f"--checkpoint {checkpoint}: not a folder (expected a local "
                               f"save_pretrained folder with config.json and the weights)")
        try:
            model = DeformableDetrModel.from_pretrained(checkpoint, local_files_only=True)
        except (OSError, ImportError, ValueError, TypeError) as e:
            raise ExampleError(f"--checkpoint {checkpoint}: cannot load it "
                               f"({str(e).splitlines()[0]})") from None
    else:
        extra = {} if layers is None else {"encoder_layers": layers}
        backbone = {"model_type": "resnet", "out_features": ["stage2", "stage3", "stage4"]}
        if small:
            backbone.update(layer_type="basic", depths=[1, 1, 1, 1], embedding_size=16,
                            hidden_sizes=[16, 32, 64, 128])
            extra["decoder_layers"] = 1
        config = DeformableDetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                                      backbone_config=backbone, disable_custom_kernels=True,
                                      **extra)
        model = DeformableDetrModel(config)
    if trained_like:
        # HF's init gives every point the same attention weight (no PAP pruning at all);
        # golden's trained-like parameters give peaky attention, as a trained model has.
        from golden.reference import random_params
        rng = np.random.default_rng(seed)
        for layer in model.encoder.layers:
            a = layer.self_attn
            p = random_params(rng, a.d_model, a.n_heads, a.n_levels, a.n_points)
            a.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in p.items()})
    return model.eval()


class Int12Attention:
    """Stands in for one layer's ``self_attn``: the INT12 golden block, FWP chained."""

    def __init__(self, inner, index, run):
        self.inner, self.index, self.run = inner, index, run

    def __call__(self, **kwargs):
        import torch
        from defa_hw.interop import capture, run_golden
        (case,) = capture(self.inner, **kwargs)
        if self.index > 0:                         # FWP: the previous block's next mask
            case["fmap_mask"] = case["fmap_mask"] | self.run["next_mask"]
        res = run_golden(case, self.run["cfg"], prune=self.run["prune"],
                         quant=self.run["quant"][self.index] if self.run["quant"] else None)
        self.run["next_mask"] = res["next_fmap_mask"]
        self.run["layers"].append({
            "attn_sqnr_db": res["sqnr_vs_torch_db"],
            "points_pruned": res["points_pruned"] / res["points_total"],
            "pixels_masked_in": res["pixels_masked_in"] / res["pixels_total"],
            "pixels_pruned_next": res["pixels_pruned_next"] / res["pixels_total"],
            "values_saturated": int(sum(res["saturated"].values())),
        })
        out = torch.tensor(res["output"], dtype=kwargs["hidden_states"].dtype)[None]
        return out, None


def _layer_outputs(model, pixels, attn=None):
    """Run the model; each encoder layer's output and the encoder output (float64)."""
    import torch
    outs, hooks, saved = [], [], []
    for i, layer in enumerate(model.encoder.layers):
        hooks.append(layer.register_forward_hook(lambda m, a, o: outs.append(o.detach())))
        if attn is not None:
            saved.append(layer.self_attn)
            # An instance attribute shadows the registered submodule for this run only.
            object.__setattr__(layer, "self_attn", attn(layer.self_attn, i))
    try:
        with torch.no_grad():
            res = model(pixel_values=pixels, pixel_mask=torch.ones(pixels.shape[:1] + pixels.shape[2:],
                                                                   dtype=torch.long))
    finally:
        for h in hooks:
            h.remove()
        for layer in model.encoder.layers[:len(saved)]:
            layer.__dict__.pop("self_attn")         # the registered submodule shows again
    return ([o[0].double().numpy() for o in outs],
            res.encoder_last_hidden_state[0].double().numpy())


def _captured_cases(model, pixels):
    """Each layer's float attention block on this image, as captured cases."""
    from defa_hw.interop import capture
    cases = []

    def record(inner, i):
        def call(**kwargs):
            cases.append((i, capture(inner, **kwargs)[0]))
            return inner(**kwargs)
        return call
    _layer_outputs(model, pixels, record)
    return cases


def defa_config(model, pixels):
    """The ``defa`` preset, fitted to the model's attention shape and this image's levels."""
    from defa_hw.config import preset
    from defa_hw.interop import config_for
    cases = _captured_cases(model, pixels)
    shapes = cases[0][1]["spatial_shapes"]
    return config_for(model.encoder.layers[0].self_attn, base=preset("defa"), shapes=shapes), shapes


def run(args):
    """The whole experiment; returns the report dict."""
    from defa_hw.model.workload import validate_workload
    from golden.calibration import calibrate
    from golden.model import sqnr_db
    size = _size(args.size)
    model = build_model(checkpoint=args.checkpoint, layers=args.layers, seed=args.seed,
                        trained_like=args.trained_like, small=args.small_backbone)
    pixels = load_image(args.image, size)
    cfg, shapes = defa_config(model, pixels)
    if args.fwp_threshold is not None:
        cfg = cfg.replace(fwp_threshold=args.fwp_threshold)
    float_layers, float_out = _layer_outputs(model, pixels)
    report = {"image": args.image, "size": list(size), "checkpoint": args.checkpoint,
              "config": cfg.name, "fwp_threshold": cfg.fwp_threshold,
              "pap_threshold": cfg.pap_threshold, "spatial_shapes": shapes.tolist(), "prune": not args.no_prune,
              "runs": {}}
    quant_sets = {"per_input": None}
    if args.calibrate_on:
        names = [n for n in args.calibrate_on.split(",") if n]
        if args.image in names:
            raise ExampleError(f"--calibrate-on must not contain the evaluated image {args.image!r}")
        per_layer = [[] for _ in model.encoder.layers]
        for name in names:
            for i, case in _captured_cases(model, load_image(name, size)):
                per_layer[i].append(validate_workload(case, cfg))
        quant_sets["static"] = [calibrate(cfg, ws) for ws in per_layer]
        report["calibrated_on"] = names
    for label, quant in quant_sets.items():
        state = {"cfg": cfg, "prune": not args.no_prune, "quant": quant, "layers": [],
                 "next_mask": None}
        layers, out = _layer_outputs(model, pixels, lambda inner, i: Int12Attention(inner, i, state))
        for row, f, q in zip(state["layers"], float_layers, layers):
            row["layer_sqnr_db"] = sqnr_db(f, q)
        report["runs"][label] = {"layers": state["layers"], "encoder_sqnr_db": sqnr_db(float_out, out)}
    return report


def print_report(report):
    print(f"image {report['image']} at {report['size'][0]}x{report['size'][1]}, levels "
          f"{', '.join(f'{h}x{w}' for h, w in report['spatial_shapes'])}, config "
          f"{report['config']}, pruning {'on' if report['prune'] else 'off'} (PAP threshold "
          f"{report['pap_threshold']}, FWP threshold {report['fwp_threshold']})")
    for label, r in report["runs"].items():
        print(f"\n{label} scales:\n")
        print("| layer | layer output SQNR vs float encoder (dB) | attention SQNR vs its float "
              "output (dB) | points pruned (PAP) | pixels masked in (FWP) | pixels pruned next "
              "| values saturated |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for i, row in enumerate(r["layers"]):
            print(f"| {i} | {row['layer_sqnr_db']:.1f} | {row['attn_sqnr_db']:.1f} "
                  f"| {100 * row['points_pruned']:.1f}% | {100 * row['pixels_masked_in']:.1f}% "
                  f"| {100 * row['pixels_pruned_next']:.1f}% | {row['values_saturated']} |")
        print(f"\nfinal encoder output SQNR: {r['encoder_sqnr_db']:.1f} dB")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="astronaut",
                    help=f"a skimage sample ({', '.join(SAMPLES)}) or an image file")
    ap.add_argument("--size", default="256x384", help="resize to HxW (default 256x384)")
    ap.add_argument("--checkpoint", metavar="DIR",
                    help="local save_pretrained folder (default: random init; never downloads)")
    ap.add_argument("--layers", type=int, help="encoder layers of the random model (default 6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trained-like", action="store_true",
                    help="load golden's trained-like random attention parameters (peaky "
                         "attention, so PAP prunes as in a trained model)")
    ap.add_argument("--small-backbone", action="store_true",
                    help="random model with a small ResNet and one decoder layer (fast)")
    ap.add_argument("--no-prune", action="store_true", help="turn PAP and FWP off")
    ap.add_argument("--fwp-threshold", type=int, metavar="N",
                    help="FWP: mask pixels whose weighted sampling count is below N "
                         "(default: the config's)")
    ap.add_argument("--calibrate-on", metavar="A,B",
                    help="also run with static scales calibrated on these images")
    ap.add_argument("--json", metavar="OUT.json", help="also write the report as JSON")
    args = ap.parse_args(argv)
    from defa_hw.config import ConfigError
    from defa_hw.interop import InteropError
    try:
        if args.layers is not None and args.layers < 1:
            raise ExampleError(f"--layers {args.layers} is invalid: allowed >= 1")
        report = run(args)
    except (ExampleError, InteropError, ConfigError) as e:
        print(f"encoder_int12: error: {e}", file=sys.stderr)
        return 2
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
