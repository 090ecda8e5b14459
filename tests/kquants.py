"""K-quant test files without llama.cpp: a plain numpy quantizer for Q2_K .. Q6_K and a GGUF
rewriter that re-encodes chosen matrices of a file.

gguf-py (the reference the tests dequantize with) reads every K-quant but only writes the
32-element types, so the tests encode K-quant blocks themselves. The quantizer is the simple
round-to-nearest kind (per sub-block scale and min from the extremes, the super-block scales
from their largest value), not llama.cpp's search for the best scales: its blocks are valid
and close to the input, which is all the tests need (they compare engines on the file's own,
dequantized weights). `quantize_k` returns the raw blocks (rows, row bytes);
`requantize_gguf` copies a GGUF with some matrices re-encoded.
"""
from __future__ import annotations

import numpy as np

QK_K = 256
BLOCK_BYTES = {"Q2_K": 84, "Q3_K": 110, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210}


def _f16(a) -> np.ndarray:
    return np.asarray(a, np.float32).astype(np.float16)


def _safe_div(a, b):
    return np.where(b != 0, a / np.where(b != 0, b, 1), 0)


def _pack_scale_min_6bit(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """Q4_K / Q5_K: 8 six-bit scales and mins (n, 8) into the 12-byte field (n, 12)."""
    s = np.zeros((sc.shape[0], 12), np.uint8)
    s[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    s[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (sc[:, 4:8] & 15) | ((mn[:, 4:8] & 15) << 4)
    return s


def _scale_min_blocks(x, sub, qmax, scale_bits):
    """Per sub-block (n, k, sub): unsigned quants q in [0, qmax] with x ~ (d sc) q - (dmin mn),
    sc and mn integers of scale_bits bits, d and dmin f16 per super-block."""
    top = (1 << scale_bits) - 1
    lo = np.minimum(x.min(-1), 0)
    hi = x.max(-1)
    mn_f = -lo                                   # the min offset (>= 0)
    sc_f = (hi - lo) / qmax
    d = _f16(sc_f.max(-1) / top)
    dmin = _f16(mn_f.max(-1) / top)
    sc = np.clip(np.rint(_safe_div(sc_f, d.astype(np.float32)[:, None])), 0, top).astype(np.uint8)
    mn = np.clip(np.rint(_safe_div(mn_f, dmin.astype(np.float32)[:, None])), 0, top).astype(np.uint8)
    step = d.astype(np.float32)[:, None] * sc
    off = dmin.astype(np.float32)[:, None] * mn
    q = np.clip(np.rint(_safe_div(x + off[..., None], step[..., None])), 0, qmax).astype(np.uint8)
    return q, sc, mn, d, dmin


def quantize_k(x: np.ndarray, tname: str) -> np.ndarray:
    """float32 (rows, n) with n % 256 == 0 -> raw `tname` blocks (rows, n / 256 * block bytes)."""
    x = np.asarray(x, np.float32)
    rows, n = x.shape
    assert n % QK_K == 0, n
    sb = x.reshape(-1, QK_K)
    nb = sb.shape[0]
    if tname in ("Q4_K", "Q5_K"):
        qmax = 15 if tname == "Q4_K" else 31
        q, sc, mn, d, dmin = _scale_min_blocks(sb.reshape(nb, 8, 32), 32, qmax, 6)
        parts = [d.view(np.uint8).reshape(nb, 2), dmin.view(np.uint8).reshape(nb, 2),
                 _pack_scale_min_6bit(sc, mn)]
        lo4 = (q & 15).reshape(nb, 4, 2, 32)    # pair p: sub-blocks 2p (low nibble), 2p + 1 (high)
        qs = (lo4[:, :, 0] | (lo4[:, :, 1] << 4)).reshape(nb, 128)
        if tname == "Q5_K":                     # qh[l] bit j = bit 4 of element l of sub-block j
            hb = (q >> 4).astype(np.uint8)      # (nb, 8, 32)
            qh = np.zeros((nb, 32), np.uint8)
            for j in range(8):
                qh |= hb[:, j] << j
            parts.append(qh)
        parts.append(qs)
        blk = np.concatenate(parts, axis=1)
    elif tname == "Q6_K":
        s = sb.reshape(nb, 16, 16)
        amax = np.abs(s).max(-1)
        d = _f16(amax.max(-1) / 31 / 127)
        df = d.astype(np.float32)[:, None]
        sc = np.clip(np.rint(_safe_div(amax / 31, df)), 0, 127).astype(np.int8)
        step = df * sc
        q = (np.clip(np.rint(_safe_div(s, step[..., None])), -32, 31) + 32).astype(np.uint8).reshape(nb, 256)
        # half h: element i < 64 low nibble of ql[64h + i], i >= 64 high nibble of ql[64h + i - 64];
        # bits 4-5 of element i at bits 2 (i / 32) of qh[32h + i % 32]
        ql = np.zeros((nb, 128), np.uint8)
        qh = np.zeros((nb, 64), np.uint8)
        for h in range(2):
            e = q[:, 128 * h:128 * h + 128]
            ql[:, 64 * h:64 * h + 64] = (e[:, :64] & 15) | ((e[:, 64:] & 15) << 4)
            for k in range(4):
                qh[:, 32 * h:32 * h + 32] |= (e[:, 32 * k:32 * k + 32] >> 4) << (2 * k)
        blk = np.concatenate([ql, qh, sc.view(np.uint8), d.view(np.uint8).reshape(nb, 2)], axis=1)
    elif tname == "Q2_K":
        q, sc, mn, d, dmin = _scale_min_blocks(sb.reshape(nb, 16, 16), 16, 3, 4)
        q = q.reshape(nb, 256)
        qs = np.zeros((nb, 64), np.uint8)      # element 128h + 32k + l at bits 2k of qs[32h + l]
        for h in range(2):
            for k in range(4):
                qs[:, 32 * h:32 * h + 32] |= q[:, 128 * h + 32 * k:128 * h + 32 * k + 32] << (2 * k)
        blk = np.concatenate([sc | (mn << 4), qs, d.view(np.uint8).reshape(nb, 2),
                              dmin.view(np.uint8).reshape(nb, 2)], axis=1)
    elif tname == "Q3_K":
        s = sb.reshape(nb, 16, 16)
        amax_i = np.abs(s).argmax(-1)
        peak = np.take_along_axis(s, amax_i[..., None], -1)[..., 0]   # signed largest value
        sc_f = -peak / 4                        # q = -4 at the peak: the full negative range
        d = _f16(np.abs(sc_f).max(-1) / 31)
        df = d.astype(np.float32)[:, None]
        sc = np.clip(np.rint(_safe_div(sc_f, df)), -32, 31).astype(np.int64)
        step = df * sc
        q = np.clip(np.rint(_safe_div(s, step[..., None])), -4, 3).astype(np.int64).reshape(nb, 256)
        u = (sc + 32).astype(np.uint8)          # 6-bit, stored plus 32
        scales = np.zeros((nb, 12), np.uint8)
        for j in range(16):                     # low nibble of scale j: scales[j % 8] nibble j / 8
            scales[:, j % 8] |= (u[:, j] & 15) << (4 * (j // 8))
            scales[:, 8 + j % 4] |= (u[:, j] >> 4) << (2 * (j // 4))
        hmask = np.zeros((nb, 32), np.uint8)    # bit set: q >= 0 (stored q + 4 has bit 2 set)
        qs = np.zeros((nb, 64), np.uint8)
        qq = (q + 4).astype(np.uint8)
        for e in range(256):
            hmask[:, e % 32] |= ((qq[:, e] >> 2) & 1) << (e // 32)
            h, i = e // 128, e % 128
            qs[:, 32 * h + i % 32] |= (qq[:, e] & 3) << (2 * (i // 32))
        blk = np.concatenate([hmask, qs, scales, d.view(np.uint8).reshape(nb, 2)], axis=1)
    else:
        raise ValueError(tname)
    assert blk.shape[1] == BLOCK_BYTES[tname], (tname, blk.shape)
    return np.ascontiguousarray(blk, np.uint8).reshape(rows, -1)


def requantize_gguf(src, dst, type_of) -> dict:
    """Copy the GGUF `src` to `dst` with every 2-D tensor whose name `type_of(name)` maps to a
    K-quant type name re-encoded by quantize_k (the others, and all metadata, as they are).
    Returns {tensor name: type name} of the output."""
    import gguf

    r = gguf.GGUFReader(str(src))
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == gguf.GGUFValueType.ARRAY and len(f.types) > 1 else None
        w.add_key_value(name, f.contents(), vtype, sub)
    out = {}
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))   # numpy (rows, cols)
        data = np.asarray(t.data)
        kind = type_of(t.name) if len(shape) == 2 else None
        if kind is None:
            raw = data
            qtype = t.tensor_type
            if qtype == gguf.GGMLQuantizationType.F32:
                w.add_tensor(t.name, np.ascontiguousarray(raw.reshape(shape), np.float32))
            else:
                w.add_tensor(t.name, raw, raw_shape=raw.shape, raw_dtype=qtype)
            out[t.name] = qtype.name
            continue
        x = gguf.quants.dequantize(data, t.tensor_type).reshape(shape)
        blocks = quantize_k(x, kind)
        w.add_tensor(t.name, blocks, raw_shape=blocks.shape, raw_dtype=gguf.GGMLQuantizationType[kind])
        out[t.name] = kind
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
