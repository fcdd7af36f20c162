"""DefaConfig: presets, derived widths, JSON round trip, and one clear error per bad field."""

import json

import pytest

from defa_hw.config import ConfigError, DefaConfig, PRESETS, load_config, preset


def test_presets_are_valid_and_named():
    assert set(PRESETS) == {"tiny", "defa", "defa-xl"}
    d = preset("defa")
    assert (d.d_model, d.n_heads, d.n_levels, d.n_points) == (256, 8, 4, 4)
    assert (d.n_banks, d.pe_rows, d.pe_cols, d.data_bits) == (16, 16, 16, 12)
    assert d.max_shapes == ((100, 167), (50, 84), (25, 42), (13, 21))


def test_derived_widths_defa():
    d = preset("defa")
    assert d.head_dim == 32 and d.n_lp == 16
    # 2*12 product bits + log2(256) growth + 1 bias bit.
    assert d.mm_acc_bits == 33
    # 16x16 PEs / (4 multipliers x 4 levels) = 16 channels per BA cycle.
    assert d.ba_channels == 16
    assert d.pap_threshold_code == 82            # round(0.02 * 4096)
    # Level 0 (100 rows, bound 13): window of 2 * 2**ceil(log2(13 + 3)) = 32 rows.
    assert d.buffer_rows(0) == 32 and d.buffer_rows(3) == 14
    assert d.bank_words(0) == 16 * 84


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name, tmp_path):
    cfg = preset(name)
    path = tmp_path / "c.json"
    path.write_text(cfg.to_json())
    back = load_config(path=str(path))
    assert back == cfg and back.name == cfg.name
    assert json.loads(cfg.to_json())["max_shapes"][0] == list(cfg.max_shapes[0])


def test_replace_makes_validated_variant():
    cfg = preset("defa").replace(pap_threshold=0.05)
    assert cfg.pap_threshold_code == 205
    with pytest.raises(ConfigError, match="pap_threshold"):
        preset("defa").replace(pap_threshold=1.5)


@pytest.mark.parametrize("change, field, allowed", [
    ({"n_heads": 7}, "n_heads", "must divide d_model = 256"),
    ({"n_banks": 8}, "n_banks", "4 \\* n_levels = 16"),
    ({"data_bits": 4}, "data_bits", "8..16"),
    ({"n_levels": 3}, "n_banks", "4 \\* n_levels = 12"),
    ({"max_shapes": ((10, 10),) * 3}, "max_shapes", "one \\(H, W\\) per level"),
    ({"max_shapes": ((0, 10),) * 4}, "max_shapes", "1..4096"),
    ({"offset_bound": (7, 7, 7, 16)}, "offset_bound", "1..15 pixels"),
    ({"offset_bound": (7, 7, 7)}, "offset_bound", "one bound per level"),
    ({"pe_rows": 3}, "pe_rows", "must divide d_model"),
    ({"pe_rows": 2, "pe_cols": 2}, "pe_rows", "multiple of 4 \\* n_levels"),
    ({"ba_heads": 3}, "ba_heads", "must divide n_heads = 8"),
    ({"ba_heads": 16}, "ba_heads", "1..8"),
    ({"ba_heads": 0}, "ba_heads", "1..8"),
    ({"ba_heads": 8, "pe_rows": 8, "pe_cols": 8}, "ba_heads", "multiple of 4 \\* n_levels \\* ba_heads = 128"),
    ({"pap_threshold": -0.1}, "pap_threshold", "0.0 <= value < 1.0"),
    ({"pap_threshold": float("nan")}, "pap_threshold", "finite"),
    ({"fwp_threshold": 256}, "fwp_threshold", "0..255"),
    ({"coord_frac_bits": 11}, "coord_frac_bits", "2..10"),
    ({"coord_frac_bits": 8}, "offset_bound", "1..7 pixels"),
    ({"n_points": "4"}, "n_points", "integer"),
    ({"n_points": True}, "n_points", "integer"),
])
def test_invalid_field_names_field_value_and_allowed(change, field, allowed):
    with pytest.raises(ConfigError, match=f"'{field}'.*{allowed}") as e:
        preset("defa").replace(**change)
    assert "\n" not in str(e.value)


def test_unknown_field_and_bad_json(tmp_path):
    with pytest.raises(ConfigError, match="unknown config field 'd_modle'"):
        DefaConfig.from_dict({"d_modle": 256})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path=str(bad))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(path=str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="allowed presets: defa, defa-xl, tiny"):
        preset("huge")


def test_core_arrays_beyond_one_tile():
    """defa_core takes arrays up to 64x64 for the defa model: legal when pe_rows <= 16
    (a value tile is whole BA words) or pe_cols >= 32 (a whole head's channels per BA
    word); the others are refused with a message naming the rule."""
    from defa_hw.rtl.core import CoreGeometry
    from defa_hw.rtl.core.interface import check_core_config
    base = preset("defa")
    sizes = (4, 8, 16, 32, 64)
    for r in sizes:
        for c in sizes:
            cfg = base.replace(pe_rows=r, pe_cols=c)
            assert cfg.ba_channels == min(32, r * c // 16)
            if r <= 16 or c >= 32:
                check_core_config(cfg)
            else:
                with pytest.raises(ConfigError, match="to be a multiple of (ba_channels|n_levels)"):
                    check_core_config(cfg)
    # several heads per BA operation: the lanes share the array
    for j in (1, 2, 4, 8):
        cfg = base.replace(pe_rows=64, pe_cols=64, ba_heads=j)
        assert (cfg.ba_lanes, cfg.ba_channels) == (4 * j, 32)
        check_core_config(cfg)
    assert base.replace(ba_heads=2).ba_channels == 8          # 256 PEs / (4 * 8 lanes)
    g = CoreGeometry(preset("defa-xl"))
    # 32 points per batch from Kc = 4 chunks: 16 lane groups of 2, 16 weight copies
    assert (g.kc, g.B, g.Bg, g.n_groups, g.n_slices, g.wr_beats) == (4, 32, 2, 16, 1, 2)
    assert preset("defa-xl").pe_rows * preset("defa-xl").pe_cols >= 4096
    with pytest.raises(ConfigError, match="d_model / pe_rows >= 2"):
        check_core_config(preset("tiny").replace(pe_rows=32, pe_cols=32))
