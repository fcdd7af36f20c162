"""Host-side packing: a QuantizedBlock into stream beats, result beats back into arrays."""

import numpy as np

from defa_hw.rtl.core.interface import (ResultKind, WeightTarget, check_core_config,
                                        fmap_beat_layout, fmap_request_layout,
                                        query_beat_layout, result_beat_layout,
                                        weight_beat_layout)

__all__ = ["HostPacker"]


def _pack_codes(codes, bits):
    """Little-endian packing of signed codes into one integer (element 0 in the low bits)."""
    mask = (1 << bits) - 1
    out = 0
    for i, c in enumerate(np.asarray(codes, dtype=np.int64).tolist()):
        out |= (c & mask) << (i * bits)
    return out


def _unpack_codes(value, bits, n):
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = (value >> (i * bits)) & mask
        out[i] = c - (1 << bits) if c & sign else c
    return out


class HostPacker:
    """Turns a :class:`golden.model.QuantizedBlock` into beats and results back into arrays."""

    def __init__(self, cfg):
        check_core_config(cfg)
        self.cfg = cfg
        self.wl = weight_beat_layout(cfg)
        self.fl = fmap_beat_layout(cfg)
        self.ql = query_beat_layout(cfg)
        self.rl = result_beat_layout(cfg)
        self.reql = fmap_request_layout(cfg)

    def weight_beats(self, qb):
        """All weight and bias beats of a block, as integers (payload values)."""
        cfg = self.cfg
        d = cfg.data_bits
        o_t, o_r, o_w, o_b = (self.wl["target"].offset, self.wl["row"].offset,
                              self.wl["weights"].offset, self.wl["bias"].offset)
        acc_mask = (1 << cfg.mm_acc_bits) - 1
        beats = []
        mats = ((WeightTarget.VALUE, qb.w_value, qb.b_value),
                (WeightTarget.OFFSET, qb.w_offset, qb.b_offset),
                (WeightTarget.ATTN, qb.w_attn, qb.b_attn),
                (WeightTarget.OUT, qb.w_out, qb.b_out))
        for tgt, w, b in mats:
            w = np.asarray(w, dtype=np.int64)
            b = np.asarray(b, dtype=np.int64).tolist()
            for o in range(w.shape[0]):
                beats.append((int(tgt) << o_t) | (o << o_r) | (_pack_codes(w[o], d) << o_w) |
                             ((b[o] & acc_mask) << o_b))
        return beats

    def fmap_beats(self, qb):
        d = self.cfg.data_bits
        o_p, o_m = self.fl["pixel"].offset, self.fl["masked"].offset
        mask = np.asarray(qb.fmap_mask, dtype=bool)
        return [(_pack_codes(row, d) << o_p) | (int(mk) << o_m)
                for row, mk in zip(np.asarray(qb.input, dtype=np.int64), mask)]

    def decode_fmap_request(self, value):
        """``(level, row, rows)`` of a ``fmap_req`` payload."""
        return tuple((value >> self.reql[k].offset) & ((1 << self.reql[k].shape.width) - 1)
                     for k in ("level", "row", "rows"))

    @staticmethod
    def fmap_request_pixels(shapes, level, row, rows):
        """``input_flatten`` indices of the pixels a ``fmap_req`` names, in beat order."""
        shapes = np.asarray(shapes, dtype=np.int64)
        start = int((shapes[:level, 0] * shapes[:level, 1]).sum())
        w = int(shapes[level, 1])
        return range(start + row * w, start + (row + rows) * w)

    def query_beats(self, qb):
        cfg = self.cfg
        d, rb = cfg.data_bits, cfg.ref_frac_bits
        o_q, o_r = self.ql["query"].offset, self.ql["ref"].offset
        beats = []
        for q in range(qb.query.shape[0]):
            ref = 0
            for l in range(cfg.n_levels):
                x, y = (int(v) for v in qb.ref[q, l])
                ref |= (x | (y << rb)) << (l * 2 * rb)
            beats.append((_pack_codes(qb.query[q], d) << o_q) | (ref << o_r))
        return beats

    def decode_result(self, value):
        """``(kind, last, payload)``: OUTPUT -> ``pe_cols`` codes, MASK -> list of bools."""
        cfg = self.cfg
        kind = (value >> self.rl["kind"].offset) & 1
        last = (value >> self.rl["last"].offset) & 1
        dat = value >> self.rl["data"].offset
        if kind == ResultKind.OUTPUT:
            return kind, last, _unpack_codes(dat, cfg.data_bits, cfg.pe_cols)
        count = (value >> self.rl["count"].offset) & ((1 << self.rl["count"].shape.width) - 1)
        return kind, last, [bool((dat >> i) & 1) for i in range(count)]
