"""The one validated configuration of a DEFA accelerator instance.

A :class:`DefaConfig` feeds the RTL generator, the golden model, the
performance model and the reports.  It is frozen; variants are made with
:meth:`DefaConfig.replace` (like Gemmini's config copies), and every field is
checked at construction with an error that names the field, the value and
what is allowed.
"""

import dataclasses
import json
import math
from dataclasses import dataclass, field

from amaranth.utils import ceil_log2

__all__ = ["ConfigError", "CoreConfigError", "DefaConfig", "PRESETS", "preset", "load_config"]


class ConfigError(ValueError):
    """An invalid configuration value; the message names field, value and allowed range."""


class CoreConfigError(ConfigError):
    """The config cannot be built as a whole core (a core-only constraint is violated)."""


#: Allowed ranges of the structural fields, used by validation and to size the core's
#: read-back registers (``defa_hw.host.registers``), so the two cannot disagree.
LIMITS = {"d_model": (1, 4096), "n_heads": (1, 64), "n_levels": (1, 8), "n_points": (1, 16),
          "pe_rows": (1, 64), "pe_cols": (1, 64)}


def _fail(name, value, allowed):
    raise ConfigError(f"config field {name!r} = {value!r} is invalid: {allowed}")


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, value, "must be an integer")
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        _fail(name, value, f"allowed range is {rng}")


def _check_prob(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(name, value, "must be a finite number")
    if not 0.0 <= value < 1.0:
        _fail(name, value, "allowed range is 0.0 <= value < 1.0")


@dataclass(frozen=True)
class DefaConfig:
    """Shape, arithmetic, memory, compute and pruning parameters of one DEFA block.

    Parameters
    ----------
    d_model, n_heads, n_levels, n_points:
        MSDeformAttn shape: channels ``C``, heads ``M``, levels ``L``,
        points per level and head ``P``.  ``n_heads`` must divide ``d_model``.
    data_bits:
        Width of every activation and weight code (INT12 in DEFA).
    coord_frac_bits:
        Fraction bits ``F`` of sampling coordinates; ``t0``, ``t1`` and
        ``t0*t1`` are UQ0.F.
    ref_frac_bits:
        Fraction bits of the normalised reference point codes (UQ0.R).
    prob_bits:
        Attention probabilities are UQ0.``prob_bits`` codes.
    exp_lut_bits:
        Softmax: fraction bits of the base-2 exponent, i.e. log2 of the
        exp2 lookup table's size.
    n_banks:
        Feature-map SRAM banks; DEFA's inter-level mapping needs exactly
        ``4 * n_levels`` (one group of 4 banks per level).
    max_shapes:
        Largest ``(H, W)`` per level; sizes the buffers and counters.
    offset_bound:
        Per-level sampling-offset range bound in pixels of that level;
        offsets are clamped to ``[-bound, +bound]``.
    pe_rows, pe_cols:
        PE-array size.  In MM mode one step is a ``pe_rows``-element input
        vector times a ``pe_rows x pe_cols`` weight tile.
    ba_heads:
        BA mode: heads sampled per operation.  Each is a lane set of ``n_levels``
        lanes (one point per level); set ``j`` takes the heads ``m`` with ``m mod
        ba_heads = j``, so the sets read disjoint value buffers.  Must divide
        ``n_heads``.
    pap_threshold:
        PAP: points whose attention probability is below this are pruned
        (0 prunes nothing).
    fwp_threshold:
        FWP: pixels whose weighted sampling count is below this are masked
        in the next block (0 masks nothing).
    fwp_counter_bits, fwp_weight_bits:
        FWP counter width (saturating) and the probability bits added per
        touch; see ``docs/numerics.md``.
    """

    d_model: int = 256
    n_heads: int = 8
    n_levels: int = 4
    n_points: int = 4
    data_bits: int = 12
    coord_frac_bits: int = 7
    ref_frac_bits: int = 16
    prob_bits: int = 12
    exp_lut_bits: int = 6
    n_banks: int = 16
    max_shapes: tuple = ((100, 167), (50, 84), (25, 42), (13, 21))
    offset_bound: tuple = (13, 13, 13, 13)
    pe_rows: int = 16
    pe_cols: int = 16
    ba_heads: int = 1
    pap_threshold: float = 0.02
    fwp_threshold: int = 2
    fwp_counter_bits: int = 8
    fwp_weight_bits: int = 2
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        # Normalise list-valued fields (e.g. from JSON) into hashable tuples.
        object.__setattr__(self, "max_shapes", _as_shapes(self.max_shapes))
        object.__setattr__(self, "offset_bound", _as_ints("offset_bound", self.offset_bound))
        self._validate()

    # -- validation -------------------------------------------------------------------------

    def _validate(self):
        _check_int("d_model", self.d_model, *LIMITS["d_model"])
        _check_int("n_heads", self.n_heads, *LIMITS["n_heads"])
        if self.d_model % self.n_heads:
            _fail("n_heads", self.n_heads, f"must divide d_model = {self.d_model}")
        _check_int("n_levels", self.n_levels, *LIMITS["n_levels"])
        _check_int("n_points", self.n_points, *LIMITS["n_points"])
        _check_int("data_bits", self.data_bits, 8, 16)
        _check_int("coord_frac_bits", self.coord_frac_bits, 2, self.data_bits - 2)
        _check_int("ref_frac_bits", self.ref_frac_bits, 8, 20)
        _check_int("prob_bits", self.prob_bits, 4, 16)
        _check_int("exp_lut_bits", self.exp_lut_bits, 0, 8)
        _check_int("n_banks", self.n_banks, 4, 64)
        if self.n_banks != 4 * self.n_levels:
            _fail("n_banks", self.n_banks,
                  f"the inter-level mapping needs 4 banks per level, i.e. 4 * n_levels = "
                  f"{4 * self.n_levels}")
        if len(self.max_shapes) != self.n_levels:
            _fail("max_shapes", self.max_shapes, f"needs one (H, W) per level ({self.n_levels})")
        for h, w in self.max_shapes:
            if not (1 <= h <= 4096 and 1 <= w <= 4096):
                _fail("max_shapes", self.max_shapes, "every H and W must be in 1..4096")
        if len(self.offset_bound) != self.n_levels:
            _fail("offset_bound", self.offset_bound, f"needs one bound per level ({self.n_levels})")
        for b in self.offset_bound:
            # Offsets are coded Q(data_bits-1-F).F, so the clamp must be representable.
            limit = (1 << (self.data_bits - 1 - self.coord_frac_bits)) - 1
            if not 1 <= b <= limit:
                _fail("offset_bound", self.offset_bound,
                      f"every bound must be in 1..{limit} pixels (offsets are "
                      f"{self.data_bits}-bit codes with coord_frac_bits = {self.coord_frac_bits})")
        _check_int("pe_rows", self.pe_rows, *LIMITS["pe_rows"])
        _check_int("pe_cols", self.pe_cols, *LIMITS["pe_cols"])
        if self.d_model % self.pe_rows:
            _fail("pe_rows", self.pe_rows, f"must divide d_model = {self.d_model}")
        if self.d_model % self.pe_cols:
            _fail("pe_cols", self.pe_cols, f"must divide d_model = {self.d_model}")
        _check_int("ba_heads", self.ba_heads, 1, self.n_heads)
        if self.n_heads % self.ba_heads:
            _fail("ba_heads", self.ba_heads, f"must divide n_heads = {self.n_heads}")
        per = 4 * self.n_levels * self.ba_heads
        lanes, rem = divmod(self.pe_rows * self.pe_cols, per)
        if rem or lanes == 0:
            _fail("ba_heads" if self.ba_heads > 1 else "pe_rows",
                  self.ba_heads if self.ba_heads > 1 else self.pe_rows,
                  f"BA mode needs pe_rows * pe_cols ({self.pe_rows * self.pe_cols}) to be a "
                  f"non-zero multiple of 4 * n_levels * ba_heads = {per} (4 multipliers per "
                  f"point, one point per level and head)")
        if lanes < self.head_dim and self.head_dim % lanes:
            _fail("pe_cols", self.pe_cols,
                  f"BA mode processes {lanes} channels per cycle, which must divide "
                  f"head_dim = {self.head_dim}")
        _check_prob("pap_threshold", self.pap_threshold)
        _check_int("fwp_counter_bits", self.fwp_counter_bits, 1, 16)
        _check_int("fwp_threshold", self.fwp_threshold, 0, (1 << self.fwp_counter_bits) - 1)
        _check_int("fwp_weight_bits", self.fwp_weight_bits, 0, min(self.prob_bits, 8))
        if not isinstance(self.name, str):
            _fail("name", self.name, "must be a string")

    # -- derived quantities (never stored, so they cannot disagree) -------------------------

    @property
    def head_dim(self):
        """Channels per head, ``D = C / M``."""
        return self.d_model // self.n_heads

    @property
    def n_lp(self):
        """Sampling points per (query, head): ``L * P``."""
        return self.n_levels * self.n_points

    @property
    def data_min(self):
        return -(1 << (self.data_bits - 1))

    @property
    def data_max(self):
        return (1 << (self.data_bits - 1)) - 1

    @property
    def mm_acc_bits(self):
        """MM accumulator: full product width plus log2(C) growth plus one bit for the bias."""
        return 2 * self.data_bits + ceil_log2(self.d_model) + 1

    @property
    def coord_int_bits(self):
        """Signed integer bits of a pixel coordinate (covers -bound-1 .. max(H, W)+bound)."""
        reach = max(max(h, w) for h, w in self.max_shapes) + max(self.offset_bound) + 2
        return ceil_log2(reach) + 1

    @property
    def coord_bits(self):
        """Total width of a fixed-point pixel coordinate (signed, F fraction bits)."""
        return self.coord_int_bits + self.coord_frac_bits

    @property
    def bilinear_bits(self):
        """Bilinear output: a signed value with ``coord_frac_bits`` fraction bits, exact."""
        return self.data_bits + self.coord_frac_bits + 3

    @property
    def agg_acc_bits(self):
        """BA accumulator: bilinear x probability products summed over L*P points."""
        return self.bilinear_bits + self.prob_bits + 1 + ceil_log2(self.n_lp)

    @property
    def ba_channels(self):
        """Channels per cycle and BA lane: every point needs 4 multipliers (3 bilinear + 1
        probability), one point per lane, so ``pe_rows * pe_cols / (4 * ba_lanes)``, at
        most ``head_dim`` (a lane samples one head; the PEs beyond the lanes only do MM)."""
        return min(self.head_dim, self.pe_rows * self.pe_cols // (4 * self.ba_lanes))

    @property
    def ba_lanes(self):
        """BA lanes: one per level and head sampled per operation, ``n_levels * ba_heads``."""
        return self.n_levels * self.ba_heads

    @property
    def pap_threshold_code(self):
        """PAP threshold as a probability code (round half up); points below it are pruned."""
        return math.floor(self.pap_threshold * (1 << self.prob_bits) + 0.5)

    @property
    def bank_group(self):
        """Banks per level group (always 4: one per 2x2 neighbour parity)."""
        return 4

    def buffer_rows(self, level):
        """Rows of level ``level`` kept on chip (see ``docs/numerics.md``, bank mapping).

        The whole level when it is no taller than the sliding window, otherwise a
        power-of-two number of row pairs (so the circular row index is a bit mask)
        covering the ``bound + 2`` row pairs one query row can reach plus at least
        one pair of prefetch.
        """
        h, _ = self.max_shapes[level]
        window = 2 * _pow2_ceil(self.offset_bound[level] + 3)
        return min(_even_ceil(h), window)

    def bank_pitch(self, level):
        """Words per row pair in a bank of level ``level``: ``ceil(W_max / 2)``."""
        _, w = self.max_shapes[level]
        return (w + 1) // 2

    def bank_words(self, level):
        """Words per bank of level ``level``: (rows / 2) x ceil(W / 2)."""
        return (self.buffer_rows(level) // 2) * self.bank_pitch(level)

    @property
    def max_pixels(self):
        """Pixels of the largest supported multi-level feature map, ``sum(H * W)``."""
        return sum(h * w for h, w in self.max_shapes)

    def derived(self):
        """Derived widths and sizes, for reports and ``defa-hw config --derived``."""
        return {
            "head_dim": self.head_dim, "n_lp": self.n_lp, "ba_channels": self.ba_channels,
            "ba_lanes": self.ba_lanes,
            "mm_acc_bits": self.mm_acc_bits, "coord_bits": self.coord_bits,
            "bilinear_bits": self.bilinear_bits, "agg_acc_bits": self.agg_acc_bits,
            "pap_threshold_code": self.pap_threshold_code,
            "buffer_rows": [self.buffer_rows(l) for l in range(self.n_levels)],
            "bank_words": [self.bank_words(l) for l in range(self.n_levels)],
            "max_pixels": self.max_pixels,
        }

    # -- copies and serialisation -----------------------------------------------------------

    def replace(self, **changes):
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["max_shapes"] = [list(s) for s in self.max_shapes]
        d["offset_bound"] = list(self.offset_bound)
        return d

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field {unknown[0]!r}; allowed fields: "
                              f"{', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON: {e}") from None
        return cls.from_dict(data)


def _pow2_ceil(n):
    return 1 << ceil_log2(n)


def _even_ceil(n):
    return n + (n & 1)


def _as_ints(name, value):
    try:
        out = tuple(value)
    except TypeError:
        _fail(name, value, "must be a list of integers, one per level")
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int):
            _fail(name, value, "must be a list of integers, one per level")
    return out


def _as_shapes(value):
    try:
        out = tuple(tuple(s) for s in value)
    except TypeError:
        _fail("max_shapes", value, "must be a list of [H, W] pairs, one per level")
    for s in out:
        if len(s) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in s):
            _fail("max_shapes", value, "must be a list of [H, W] integer pairs, one per level")
    return out


PRESETS = {
    # Small and fast, for unit tests: 4 levels so the 16-bank mapping is the real one.
    "tiny": DefaConfig(
        name="tiny", d_model=32, n_heads=2, n_levels=4, n_points=2,
        max_shapes=((12, 10), (6, 5), (3, 3), (2, 2)), offset_bound=(1, 2, 2, 2),
        pe_rows=4, pe_cols=8, pap_threshold=0.02, fwp_threshold=1),
    # Deformable DETR encoder (800 x 1333 input), DEFA's 16-bank buffer and 16x16 PE tile.
    "defa": DefaConfig(name="defa"),
    # The scaled-out point (docs/explore.md): the same model and buffer, a 64x64 PE array
    # (4,096 PEs, 16x DEFA's), BA on all 8 heads at once (32 lanes of 32 channels).
    "defa-xl": DefaConfig(name="defa-xl", pe_rows=64, pe_cols=64, ba_heads=8),
}


def preset(name):
    """The named preset; raises :class:`ConfigError` naming the allowed presets."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; allowed presets: "
                          f"{', '.join(sorted(PRESETS))}") from None


def load_config(*, preset_name=None, path=None):
    """Load a config from a preset name or a JSON file (exactly one may be given)."""
    if preset_name is not None and path is not None:
        raise ConfigError("give either a preset or a config file, not both")
    if path is None:
        return preset(preset_name or "defa")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    return DefaConfig.from_json(text)
