"""The register map of ``defa_core`` and the register writes that configure a block."""

import enum as _pyenum

import numpy as np

from defa_hw.config import CoreConfigError

__all__ = ["Reg", "REG_BITS", "REG_ADDR_BITS", "CTRL", "PHASES", "COUNTER_REGS",
           "register_values"]


REG_BITS = 32
REG_ADDR_BITS = 6


class Reg(_pyenum.IntEnum):
    """Word addresses of the register block (32-bit registers)."""
    CTRL = 0x00             # W: bit0 START. R: bit0 BUSY, bit1 DONE, bit2 READY
    NQ = 0x01               # queries in the block (1 .. 2^16 - 1)
    FLAGS = 0x02            # bit0 PRUNE (PAP + FWP on)
    SHIFT_VALUE = 0x03      # requant shifts (QuantParams.*_shift), 0 .. 63
    SHIFT_LOGIT = 0x04
    SHIFT_OFFSET = 0x05
    SHIFT_AGG = 0x06
    SHIFT_OUT = 0x07
    LOGIT_FRAC = 0x08       # softmax input fraction bits (QuantParams.logit)
    PAP_THRESHOLD = 0x09    # probability code (cfg.pap_threshold_code at reset)
    FWP_THRESHOLD = 0x0A    # counter threshold (cfg.fwp_threshold at reset)
    SHAPE0 = 0x10           # SHAPE0 + l: bits [15:0] H, [31:16] W of level l
    CYCLES = 0x20           # read-only counters of the current / last block
    CYC_ATTN = 0x21
    CYC_OFFSET = 0x22
    CYC_VALUE = 0x23
    CYC_BA = 0x24
    CYC_OUT = 0x25
    CYC_TAIL = 0x26
    STALL_CYCLES = 0x27
    POINTS_TOTAL = 0x28
    POINTS_PRUNED = 0x29
    POINTS_CLAMPED = 0x2A
    PIXELS_MASKED_IN = 0x2B
    PIXELS_PRUNED_NEXT = 0x2C
    BANK_CONFLICTS = 0x2D
    MM_OPS = 0x2E
    BA_OPS = 0x2F
    PASSES = 0x30
    PHASE = 0x31            # read-only: the controller's phase (rtl.core.Phase code)
    CONFIG0 = 0x3E          # read-only: d_model | n_heads << 12 | n_levels << 20 | n_points << 24
    CONFIG1 = 0x3F          # read-only: pe_rows | pe_cols << 8 | max_queries << 16


class CTRL:
    START = 1 << 0
    BUSY = 1 << 0
    DONE = 1 << 1
    READY = 1 << 2


#: Phases in controller order, the register of their cycle counter and their name.
PHASES = (("attn", Reg.CYC_ATTN), ("offset", Reg.CYC_OFFSET), ("value", Reg.CYC_VALUE),
          ("ba", Reg.CYC_BA), ("out", Reg.CYC_OUT), ("tail", Reg.CYC_TAIL))

#: Read-only counters and the name ``simulate`` reports them under.
COUNTER_REGS = {
    "cycles": Reg.CYCLES, "cycles_attn": Reg.CYC_ATTN, "cycles_offset": Reg.CYC_OFFSET,
    "cycles_value": Reg.CYC_VALUE, "cycles_ba": Reg.CYC_BA, "cycles_out": Reg.CYC_OUT,
    "cycles_tail": Reg.CYC_TAIL, "stall_cycles": Reg.STALL_CYCLES,
    "points_total": Reg.POINTS_TOTAL, "points_pruned": Reg.POINTS_PRUNED,
    "points_clamped": Reg.POINTS_CLAMPED, "pixels_masked_in": Reg.PIXELS_MASKED_IN,
    "pixels_pruned_next": Reg.PIXELS_PRUNED_NEXT, "bank_conflicts": Reg.BANK_CONFLICTS,
    "mm_ops": Reg.MM_OPS, "ba_ops": Reg.BA_OPS, "passes": Reg.PASSES,
}


def register_values(cfg, qb, *, prune=True):
    """Register writes (address -> value) that configure one block from a QuantizedBlock."""
    qp = qb.qp
    for name, s in qp.shifts().items():
        if not 0 <= s <= 63:
            raise CoreConfigError(f"{name} requantisation shift {s} is outside the register "
                                  f"range 0..63")
    regs = {
        Reg.NQ: int(qb.query.shape[0]),
        Reg.FLAGS: int(bool(prune)),
        Reg.SHIFT_VALUE: qp.value_shift, Reg.SHIFT_LOGIT: qp.logit_shift,
        Reg.SHIFT_OFFSET: qp.offset_shift, Reg.SHIFT_AGG: qp.agg_shift,
        Reg.SHIFT_OUT: qp.out_shift, Reg.LOGIT_FRAC: qp.logit,
        Reg.PAP_THRESHOLD: cfg.pap_threshold_code, Reg.FWP_THRESHOLD: cfg.fwp_threshold,
    }
    for l, (h, w) in enumerate(np.asarray(qb.shapes, dtype=np.int64)):
        regs[Reg.SHAPE0 + l] = int(h) | (int(w) << 16)
    return {int(k): int(v) for k, v in regs.items()}


