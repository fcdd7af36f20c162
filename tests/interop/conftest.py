"""Fixtures of the interop tests; each test module skips itself without the extra."""

import pytest


@pytest.fixture(scope="session")
def hf_attn():
    from interop_cases import M, P, hf_config, load_trained_like
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrMultiscaleDeformableAttention)
    return load_trained_like(DeformableDetrMultiscaleDeformableAttention(hf_config(), M, P), 3)


@pytest.fixture(scope="session")
def original_attn():
    from golden.make_vectors import TorchMSDeformAttn
    from interop_cases import C, L, M, P, load_trained_like

    class MSDeformAttn(TorchMSDeformAttn):
        """The original Deformable DETR signature (CUDA op replaced by grid_sample)."""

        def forward(self, query, reference_points, input_flatten, input_spatial_shapes,
                    input_level_start_index, input_padding_mask=None):
            return super().forward(query, reference_points, input_flatten, input_spatial_shapes,
                                   input_padding_mask)[0]

    return load_trained_like(MSDeformAttn(C, L, M, P), 4)
