"""Modules and batched inputs for the interop tests (imported after importorskip)."""

import numpy as np
import torch

from golden import reference
from golden.accuracy import SMALL_DEFA_SHAPES

SHAPES = np.array(SMALL_DEFA_SHAPES, dtype=np.int64)
S = int(np.sum(SHAPES[:, 0] * SHAPES[:, 1]))
C, M, L, P = 256, 8, 4, 4


def hf_config(**changes):
    """A DeformableDetrConfig that builds without downloading anything."""
    from transformers import DeformableDetrConfig
    return DeformableDetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                                backbone_config={"model_type": "resnet",
                                                 "out_features": ["stage2", "stage3", "stage4"]},
                                disable_custom_kernels=True, **changes)


def load_trained_like(module, seed):
    """Load golden's trained-like random parameters (peaky attention, spread offsets)."""
    p = reference.random_params(np.random.default_rng(seed), C, M, L, P)
    module.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in p.items()})
    return module.eval()


def batch(seed, *, B=2, n_queries=120):
    """Encoder-style tensors: feature map, queries at random tokens, their reference
    points, positional embeddings and a per-element padding mask (True = padding):
    element 0 loses the right 40% of every level, element 1 the bottom third."""
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal((B, S, C)), dtype=torch.float32)
    idx = rng.choice(S, size=n_queries, replace=False)
    query = x[:, idx] + 0.3 * torch.tensor(rng.standard_normal((B, n_queries, C)),
                                           dtype=torch.float32)
    pos = 0.2 * torch.tensor(rng.standard_normal((B, n_queries, C)), dtype=torch.float32)
    ref = torch.tensor(reference.encoder_reference_points(SHAPES)[idx], dtype=torch.float32)
    pad = np.zeros((B, S), dtype=bool)
    start = reference.level_start_index(SHAPES)
    for lvl, (h, w) in enumerate(SHAPES):
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        sl = slice(start[lvl], start[lvl] + h * w)
        pad[0, sl] = (xx >= np.ceil(0.6 * w)).reshape(-1)
        if B > 1:
            pad[1, sl] = (yy >= np.ceil(2 * h / 3)).reshape(-1)
    return {"x": x, "query": query, "pos": pos, "ref": ref[None].repeat(B, 1, 1, 1),
            "pad": torch.tensor(pad), "shapes": torch.tensor(SHAPES),
            "start": torch.tensor(start)}


def hf_kwargs(b):
    """Keyword arguments of HF's forward for a batch from :func:`batch`."""
    return dict(hidden_states=b["query"], attention_mask=~b["pad"],
                encoder_hidden_states=b["x"], position_embeddings=b["pos"],
                reference_points=b["ref"], spatial_shapes=b["shapes"],
                spatial_shapes_list=[tuple(s) for s in b["shapes"].tolist()],
                level_start_index=b["start"])


def original_args(b):
    """Positional arguments of the original MSDeformAttn.forward (query includes pos)."""
    return (b["query"] + b["pos"], b["ref"], b["x"], b["shapes"], b["start"], b["pad"])
