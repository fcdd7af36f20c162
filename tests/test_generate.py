"""defa-hw generate: every registered block elaborates, deterministically, with no machine paths."""

import re
import subprocess
import sys

import pytest

from defa_hw.rtl.blocks import BLOCKS, block_names


def run(*args):
    return subprocess.run([sys.executable, "-m", "defa_hw.cli", *args], capture_output=True,
                          text=True)


def test_list_blocks_names_every_registered_block():
    r = run("generate", "--list-blocks")
    assert r.returncode == 0
    listed = [line.split()[0] for line in r.stdout.splitlines()]
    assert listed == block_names() and "bilinear" in listed


@pytest.mark.parametrize("name", [n for n in sorted(BLOCKS) if n != "defa_core"])
def test_block_verilog_is_clean(name, tmp_path):
    r = run("generate", "--block", name, "--preset", "tiny", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / f"{name}.v").read_text()
    assert re.search(rf"^module {name}\(", text, re.M)
    assert not re.search(r"/(work|tmp|root|home)/", text), "machine path in Verilog"
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", text), "timestamp in Verilog"


def test_generate_is_byte_identical(tmp_path):
    for d in ("a", "b"):
        assert run("generate", "--block", "softmax", "--preset", "defa",
                   "--out", str(tmp_path / d)).returncode == 0
    for f in ("softmax.v", "config.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


@pytest.mark.parametrize("name", ["softmax", "fmap_mask"])
def test_fast_meminit_writes_what_amaranth_writes(name):
    """``fast_meminit`` only speeds up the emission: the RTLIL of a block with a ROM
    (softmax, non-zero init) and with zero-initialised RAMs (fmap_mask) is the same text
    as Amaranth's own emitter; ``skip_zero`` drops exactly the all-zero initialisers."""
    from amaranth.back import rtlil
    from defa_hw.rtl.blocks import build_block
    from defa_hw.config import preset
    from defa_hw.flow.generate import fast_meminit

    def convert():
        return rtlil.convert(build_block(name, preset("tiny")), name=name, emit_src=False)

    plain = convert()
    with fast_meminit():
        fast = convert()
    with fast_meminit(skip_zero=True):
        skipped = convert()
    assert fast == plain
    n_init = plain.count("cell $meminit_v2")
    zero = len(re.findall(r"connect \\DATA \d+'0+\n", plain))
    assert n_init > 0 and skipped.count("cell $meminit_v2") == n_init - zero


def test_generate_top_writes_the_register_header(tmp_path):
    from defa_hw.config import preset
    r = run("generate", "--preset", "tiny", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    header = (tmp_path / "defa_core_regs.h").read_text()
    h, w = preset("tiny").max_shapes[0]
    assert f"#define DEFA_SHAPE0_H_MAX {h}u" in header
    assert f"#define DEFA_SHAPE0_W_MAX {w}u" in header
    assert (tmp_path / "defa_core.v").exists() and (tmp_path / "config.json").exists()


def test_wrap_long_lines_is_whitespace_only():
    """A concatenation longer than Verilator's per-line token limit is broken after its
    commas, nothing else changes; short lines and lines with strings are kept."""
    from defa_hw.flow.generate import LONG_LINE, wrap_long_lines
    long = "  assign w = { " + ", ".join(f"\\$11 [{i}:{i}]" for i in range(5000)) + " };"
    text = "\n".join(["module m;", long, '  initial $display("a, b, c");', "endmodule"])
    out = wrap_long_lines(text)
    assert max(len(s) for s in out.split("\n")) < 300 < LONG_LINE < len(long)
    assert out.replace(",\n    ", ", ") == text
    assert wrap_long_lines(text.replace(long, "  assign w = {a, b};")) == \
        text.replace(long, "  assign w = {a, b};")
