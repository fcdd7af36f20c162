"""What the units of ``defa_core`` share: the geometry, the MM tag, memory ports, helpers.

Units own their memories and lend them to other units as
:class:`amaranth.lib.memory.ReadPort` interfaces (``Out(read_signature(...))`` on the
owner, ``In(...)`` on the reader), so every memory has one writer and one owner.
"""

from amaranth import C, Mux, unsigned
from amaranth.lib import data, enum
from amaranth.lib.memory import Memory, ReadPort
from amaranth.utils import bits_for, ceil_log2

from defa_hw.rtl.core.interface import check_core_config, offset_banks, offset_group
from defa_hw.rtl.pe_array import PEArray
from defa_hw.rtl.requant import Requant

__all__ = ["DEFAULT_MAX_QUERIES", "CoreGeometry", "check_geometry", "MMKind", "mm_tag_layout", "pixel_layout",
           "keep_word_layout", "read_signature", "add_memory", "lend_read_port", "rng",
           "divmod_const",
           "lowest_one", "popcount"]

#: Default queries per pass (sizes the per-query state memories).
DEFAULT_MAX_QUERIES = 64


class CoreGeometry:
    """Derived sizes of the core (shared by the RTL, the perf model and the docs).

    Parameters
    ----------
    cfg : DefaConfig
    max_queries : int
        Queries per pass.

    Attributes
    ----------
    kc : K chunks per MM tile; n_att : points per query; t_att, t_c : attention and
    value / output tiles; B : points per offset tile; Bg, n_groups : lanes per offset-gather
    group and groups (copies of the offset weights); att_lanes, att_rq : softmax lanes and
    the queries that take turns over them (1, 1 when one softmax keeps up); n_slices : BA slices per head;
    J : BA lane sets (``ba_heads``);
    wr_beats : value-buffer writes per value tile; pe_latency : PE array latency;
    mm_result_latency : issue (I1) -> requantised MM result; attn_cap, out_cap : MM
    tiles that may be in flight towards the logit / result FIFO (their depths).
    """

    def __init__(self, cfg, max_queries=DEFAULT_MAX_QUERIES):
        check_core_config(cfg)
        self.cfg = cfg
        self.mq = max_queries
        self.C, self.M, self.L, self.P, self.D = (cfg.d_model, cfg.n_heads, cfg.n_levels,
                                                  cfg.n_points, cfg.head_dim)
        self.R, self.Cc = cfg.pe_rows, cfg.pe_cols
        self.kc = self.C // self.R                       # K chunks per MM tile
        self.n_att = self.M * self.L * self.P            # points (= logits) per query
        self.t_att = -(-self.n_att // self.Cc)           # attention output tiles
        self.t_c = self.C // self.Cc                     # value / output tiles
        self.B = offset_banks(cfg)                       # points per offset tile
        self.Bg = offset_group(cfg)                      # lanes per offset-gather group
        self.n_groups = self.B // self.Bg                # copies of the offset weights
        self.n_slices = self.D // cfg.ba_channels
        self.J = cfg.ba_heads                            # BA lane sets (heads at once)
        # Softmax lanes: one softmax takes a logit per cycle, i.e. L*P cycles per head.
        # When ATTN's MM issues a query faster than n_att cycles, every head has a lane
        # of its own, and consecutive queries take turns over att_rq lane sets.
        lp = self.L * self.P
        if self.t_att * self.kc >= self.n_att:
            self.att_rq, self.att_lanes = 1, 1
        else:
            self.att_rq = -(-lp // (self.t_att * self.kc))
            self.att_lanes = self.M * self.att_rq
        self.acc = cfg.mm_acc_bits
        self.wr_beats = self.Cc // cfg.ba_channels       # buffer writes per value tile
        self.pe_latency = PEArray.latency(cfg)
        self.mm_result_latency = self.pe_latency + Requant.LATENCY
        # FIFO depths = issue credits: every tile in flight has a slot when it lands
        # (+4: I1, the FIFO's output register and the credit's own update cycles).
        self.attn_cap = -(-(self.mm_result_latency + 4) // self.kc) + 2
        self.out_cap = -(-(self.mm_result_latency + 4) // self.kc) + 4

    def memory_bits(self):
        """On-chip storage of the core in bits, by memory (for docs and reports)."""
        from defa_hw.rtl.core.ba_pipeline import BASequencer
        cfg, d = self.cfg, self.cfg.data_bits
        n_off = 2 * self.n_att
        mem = {
            "weights (Wv, Ws, Wa, Wo)": (2 * self.C + n_off + self.t_att * self.Cc) * self.C * d,
            "biases": (2 * self.C + n_off + self.t_att * self.Cc) * self.acc,
            "offset weight copies (lane groups beyond the first)":
                (self.n_groups - 1) * n_off * (self.C * d + self.acc),
            "offset gather staging (3 batches)": self.B * 3 * self.kc * 2 * self.R * d,
            "queries + reference points (x2, double-buffered)":
                2 * self.mq * (self.C * d + self.L * 2 * cfg.ref_frac_bits),
            "keep masks": self.mq * self.M * self.L * self.P,
            "BA keep words (a word per query)": self.mq * self.M * self.L * self.P,
            "probability / mask read copies (lane sets beyond the first)":
                (self.J - 1) * (self.mq * self.n_att * cfg.prob_bits +
                                sum(4 * cfg.bank_words(l) for l in range(self.L))),
            "BA partial sums (per level)":
                BASequencer.SLOTS * self.M * self.L * self.D * cfg.agg_acc_bits,
            "probabilities": self.mq * self.n_att * cfg.prob_bits,
            "offsets": self.mq * self.n_att * 2 * d,
            "aggregated samples": self.mq * self.C * d,
            "value buffers (n_heads x FmapBuffer)":
                self.M * sum(4 * cfg.bank_words(l) for l in range(self.L)) * self.D * d,
            "fmap-mask bits (incoming)": sum(4 * cfg.bank_words(l) for l in range(self.L)),
            "rows loaded (one bit per row)": sum(h for h, _ in cfg.max_shapes),
            "FWP counters (a copy per lane set)": self.J * sum(
                4 * ((h + 1) // 2) * ((w + 1) // 2)
                for h, w in cfg.max_shapes) * cfg.fwp_counter_bits,
        }
        return mem


def check_geometry(geom):
    """The ``geom`` parameter of every unit: a :class:`CoreGeometry`."""
    if not isinstance(geom, CoreGeometry):
        raise TypeError(f"geom = {geom!r} is invalid: allowed a CoreGeometry")
    return geom


class MMKind(enum.Enum, shape=2):
    """Which phase an MM tile belongs to (travels with the tile to its result)."""
    ATTN = 0
    OFFSET = 1
    VALUE = 2
    OUT = 3


def pixel_layout(g):
    """A fmap pixel for the VALUE issuer: its codes and where it lies."""
    cfg = g.cfg
    return data.StructLayout({
        "pixel": unsigned(g.C * cfg.data_bits), "level": range(g.L),
        "y": range(max(h for h, _ in cfg.max_shapes)),
        "x": range(max(w for _, w in cfg.max_shapes))})


def mm_tag_layout(g):
    """What travels with an MM tile from issue to its result (one field set per kind)."""
    cfg = g.cfg
    return data.StructLayout({
        "kind": MMKind, "q": range(g.mq), "jt": range(max(g.t_att, g.t_c)),
        "last": 1,                                  # OUT: last output beat of the block
        "level": range(g.L), "y": range(max(h for h, _ in cfg.max_shapes)),
        "x": range(max(w for _, w in cfg.max_shapes)),
        "pts": data.ArrayLayout(range(g.n_att), g.B), "cnt": range(g.B + 1),
    })


def keep_word_layout(g):
    """A keep word as the offset gather's reader gets it: ``head`` = query * n_heads +
    head of the pass, ``word`` its L*P keep bits."""
    return data.StructLayout({"valid": 1, "head": rng(g.mq * g.M), "word": g.L * g.P})


def read_signature(width, depth):
    """Signature of a read port of an ``add_memory(width, depth)`` memory."""
    return ReadPort.Signature(addr_width=ceil_log2(max(2, depth)), shape=unsigned(width))


def add_memory(m, name, width, depth):
    # depth >= 2: a 1-word memory would have a 0-bit address (not Verilog)
    mem = Memory(shape=unsigned(width), depth=max(2, depth), init=[])
    m.submodules[name] = mem
    return mem


def lend_read_port(m, mem, iface):
    """A new read port of ``mem`` driven through the owner's ``Out(read_signature)``."""
    port = mem.read_port()
    m.d.comb += [port.addr.eq(iface.addr), port.en.eq(iface.en), iface.data.eq(port.data)]
    return port


def rng(n):
    """``range(n)`` for a counter, at least 1 bit wide (Verilog has no 0-bit signals)."""
    return range(max(2, n))


def divmod_const(v, n):
    """``(v // n, v % n)`` for a non-negative value and a constant ``n``."""
    if n == 1:
        return v, C(0, 1)
    if n & (n - 1) == 0:
        b = ceil_log2(n)
        return v >> b, v[:b]
    return v // n, v % n


def lowest_one(bits, width):
    """Index of the lowest set bit of ``bits`` (0 when none)."""
    idx = C(0, bits_for(width - 1))
    for i in reversed(range(width)):
        idx = Mux(bits[i], i, idx)
    return idx


def popcount(bits, width):
    return sum(bits[i] for i in range(width))
