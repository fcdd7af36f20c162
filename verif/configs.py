"""Configs the testbenches run besides the presets."""

from defa_hw.config import DefaConfig, preset

__all__ = ["ODD", "config_by_name"]

#: A non-preset config: 3 levels (12 banks), odd L*P = 9, ref_frac_bits < coord_frac_bits,
#: exp_lut_bits = 0, narrower codes; checks that nothing depends on the presets' numbers.
ODD = DefaConfig(name="odd", d_model=48, n_heads=2, n_levels=3, n_points=3, n_banks=12,
                 data_bits=11, coord_frac_bits=9, ref_frac_bits=8, prob_bits=10,
                 exp_lut_bits=0, max_shapes=((9, 7), (5, 4), (3, 2)), offset_bound=(1, 1, 1),
                 pe_rows=4, pe_cols=6)


def config_by_name(name):
    """``"odd"`` or a preset name."""
    return ODD if name == "odd" else preset(name)
