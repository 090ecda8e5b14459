"""A tiny byte-level GGUF v3 writer for the loader tests.

`gguf.GGUFWriter` only writes well-formed files; the bad-input tests need files that are
wrong in exactly one place. This module builds a GGUF image from plain Python lists so that a
test can change any single field before serialising: the header (magic, version, counts), a
key/value entry (key bytes, value type, value bytes), a tensor info (name, n_dims, dims, type,
offset) or the tensor data. `build()` returns the bytes and a `Layout` with the byte offset of
every field, so a test can also patch the finished image in place.

File layout written (all integers little-endian):

    header       magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv times   string key | u32 value_type | value
    n_tensors    string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset
    padding      zeros up to a multiple of the alignment
    data         each tensor at its offset from here, padded to the alignment

    string = u64 byte length | bytes (no NUL);  array = u32 elem_type | u64 n | n elements
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# GGUF metadata value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)

_SCALAR_FMT = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
               FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

# ggml tensor types used here: (id, elements per block, bytes per block)
F32, F16, Q4_0, Q8_0, Q2_K, IQ4_NL, BF16 = 0, 1, 2, 8, 10, 20, 30
TYPE_BLOCK = {F32: (1, 4), F16: (1, 2), Q4_0: (32, 18), Q8_0: (32, 34), Q2_K: (256, 84), IQ4_NL: (32, 18),
              BF16: (1, 2)}

GGUF_MAGIC = b"GGUF"

# The tiny Qwen3 shape of the tests (small enough that a file is ~40 KB).
TINY = dict(n_layers=1, dim=32, hidden_dim=64, n_heads=2, n_kv_heads=1, head_dim=16, vocab=64,
            n_ctx_train=128, rope_theta=1_000_000.0, norm_eps=1e-6)


def _u64(v: int) -> bytes:
    """Pack an integer as u64; negative values wrap (two's complement), as a C int64 would."""
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def _str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return _u64(len(b)) + b


def encode_value(vtype: int, value: Any, elem_type: int | None = None) -> bytes:
    """The bytes of a value of GGUF type `vtype` (without the type tag)."""
    if vtype == STRING:
        return _str(value)
    if vtype == ARRAY:
        assert elem_type is not None, "arrays need elem_type"
        items = list(value)
        return struct.pack("<I", elem_type) + _u64(len(items)) + b"".join(
            encode_value(elem_type, v) for v in items)
    return struct.pack(_SCALAR_FMT[vtype], value)


@dataclass
class KV:
    key: str | bytes
    vtype: int                    # the type tag written to the file
    value: Any = None
    elem_type: int | None = None  # for arrays
    raw: bytes | None = None      # if set, written verbatim instead of encode(value)

    def value_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return encode_value(self.vtype, self.value, self.elem_type)


@dataclass
class Tensor:
    name: str | bytes
    dims: list[int]               # GGUF order: dims[0] is the contiguous dimension
    ttype: int
    data: bytes
    n_dims: int | None = None     # written n_dims; default len(dims)
    offset: int | None = None     # written offset; default: computed, aligned


@dataclass
class Layout:
    """Byte offsets of the fields of a built image (absolute, from the start of the file)."""
    version: int = 4
    n_tensors: int = 8
    n_kv: int = 16
    kv: dict = field(default_factory=dict)       # key -> dict(key_len, type, value, end)
    tensor: dict = field(default_factory=dict)   # name -> dict(name_len, n_dims, dims, type, offset)
    data_start: int = 0
    tensor_data: dict = field(default_factory=dict)  # name -> absolute offset of its data
    size: int = 0


class GGUFBuilder:
    """A mutable description of a GGUF file. Edit the fields, then `build()`."""

    def __init__(self, alignment: int = 32, version: int = 3):
        self.magic = GGUF_MAGIC
        self.version = version
        self.alignment = alignment          # used for padding; write general.alignment yourself
        self.n_tensors: int | None = None   # written count; default len(self.tensors)
        self.n_kv: int | None = None        # written count; default len(self.kvs)
        self.kvs: list[KV] = []
        self.tensors: list[Tensor] = []
        self.truncate_data = False          # do not pad the end of the data section

    # ---- editing --------------------------------------------------------------------------
    def add_kv(self, key, vtype, value=None, elem_type=None, raw=None) -> KV:
        kv = KV(key, vtype, value, elem_type, raw)
        self.kvs.append(kv)
        return kv

    def kv(self, key: str) -> KV:
        for kv in self.kvs:
            if kv.key == key:
                return kv
        raise KeyError(key)

    def remove_kv(self, key: str) -> None:
        self.kvs = [kv for kv in self.kvs if kv.key != key]

    def add_tensor(self, name, array=None, *, dims=None, ttype=F32, data=None) -> Tensor:
        """Add an F32 numpy array (dims = reversed numpy shape) or raw `data` with `dims`."""
        if array is not None:
            a = np.ascontiguousarray(array, dtype=np.float32)
            dims = list(reversed(a.shape))
            data = a.tobytes()
            ttype = F32
        t = Tensor(name, list(dims), ttype, bytes(data))
        self.tensors.append(t)
        return t

    def tensor(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def remove_tensor(self, name: str) -> None:
        self.tensors = [t for t in self.tensors if t.name != name]

    # ---- serialising ----------------------------------------------------------------------
    def _pad(self, n: int) -> int:
        a = self.alignment if self.alignment > 0 else 1
        return (n + a - 1) // a * a

    def build(self) -> tuple[bytes, Layout]:
        lay = Layout()
        out = bytearray()
        out += self.magic
        lay.version = len(out)
        out += struct.pack("<I", self.version & 0xFFFFFFFF)
        lay.n_tensors = len(out)
        out += _u64(len(self.tensors) if self.n_tensors is None else self.n_tensors)
        lay.n_kv = len(out)
        out += _u64(len(self.kvs) if self.n_kv is None else self.n_kv)

        for kv in self.kvs:
            rec = {"key_len": len(out)}
            out += _str(kv.key)
            rec["type"] = len(out)
            out += struct.pack("<I", kv.vtype & 0xFFFFFFFF)
            rec["value"] = len(out)
            out += kv.value_bytes()
            rec["end"] = len(out)
            lay.kv.setdefault(kv.key if isinstance(kv.key, str) else kv.key.decode("latin-1"), rec)

        # data offsets: each tensor aligned, in order
        offsets, pos = [], 0
        for t in self.tensors:
            offsets.append(pos)
            pos = self._pad(pos + len(t.data))

        for t, off in zip(self.tensors, offsets):
            rec = {"name_len": len(out)}
            out += _str(t.name)
            rec["n_dims"] = len(out)
            out += struct.pack("<I", (len(t.dims) if t.n_dims is None else t.n_dims) & 0xFFFFFFFF)
            rec["dims"] = len(out)
            for d in t.dims:
                out += _u64(d)
            rec["type"] = len(out)
            out += struct.pack("<I", t.ttype & 0xFFFFFFFF)
            rec["offset"] = len(out)
            out += _u64(off if t.offset is None else t.offset)
            key = t.name if isinstance(t.name, str) else t.name.decode("latin-1")
            lay.tensor.setdefault(key, rec)

        out += bytes(self._pad(len(out)) - len(out))
        lay.data_start = len(out)
        for t, off in zip(self.tensors, offsets):
            assert len(out) == lay.data_start + off
            key = t.name if isinstance(t.name, str) else t.name.decode("latin-1")
            lay.tensor_data.setdefault(key, len(out))
            out += t.data
            if not (self.truncate_data and t is self.tensors[-1]):
                out += bytes(self._pad(len(out) - lay.data_start) + lay.data_start - len(out))
        lay.size = len(out)
        return bytes(out), lay

    def write(self, path) -> Layout:
        data, lay = self.build()
        with open(path, "wb") as f:
            f.write(data)
        return lay


# ---- a valid tiny Qwen3 model ---------------------------------------------------------------
def tensor_shapes(n_layers, dim, hidden_dim, n_heads, n_kv_heads, head_dim, vocab, **_):
    """name -> GGUF dims (ne[0] first) of every tensor of a Qwen3 model with tied embeddings."""
    shapes = {"token_embd.weight": [dim, vocab]}
    for i in range(n_layers):
        p = f"blk.{i}."
        shapes.update({
            p + "attn_norm.weight": [dim],
            p + "attn_q.weight": [dim, n_heads * head_dim],
            p + "attn_k.weight": [dim, n_kv_heads * head_dim],
            p + "attn_v.weight": [dim, n_kv_heads * head_dim],
            p + "attn_output.weight": [n_heads * head_dim, dim],
            p + "attn_q_norm.weight": [head_dim],
            p + "attn_k_norm.weight": [head_dim],
            p + "ffn_norm.weight": [dim],
            p + "ffn_gate.weight": [dim, hidden_dim],
            p + "ffn_up.weight": [dim, hidden_dim],
            p + "ffn_down.weight": [hidden_dim, dim],
        })
    shapes["output_norm.weight"] = [dim]
    return shapes


def tiny_qwen3(seed: int = 0, arch: str = "qwen3", alignment_kv: bool = True, **overrides) -> GGUFBuilder:
    """A builder holding a complete, valid tiny Qwen3 GGUF (F32 weights ~N(0, 0.1), norms ~1)."""
    cfg = dict(TINY, **overrides)
    rng = np.random.default_rng(seed)
    b = GGUFBuilder(alignment=32)
    b.add_kv("general.architecture", STRING, arch)
    b.add_kv("general.name", STRING, "tiny-test")
    if alignment_kv:
        b.add_kv("general.alignment", UINT32, 32)
    b.add_kv(f"{arch}.block_count", UINT32, cfg["n_layers"])
    b.add_kv(f"{arch}.context_length", UINT32, cfg["n_ctx_train"])
    b.add_kv(f"{arch}.embedding_length", UINT32, cfg["dim"])
    b.add_kv(f"{arch}.feed_forward_length", UINT32, cfg["hidden_dim"])
    b.add_kv(f"{arch}.attention.head_count", UINT32, cfg["n_heads"])
    b.add_kv(f"{arch}.attention.head_count_kv", UINT32, cfg["n_kv_heads"])
    b.add_kv(f"{arch}.attention.key_length", UINT32, cfg["head_dim"])
    b.add_kv(f"{arch}.attention.value_length", UINT32, cfg["head_dim"])
    b.add_kv(f"{arch}.rope.freq_base", FLOAT32, cfg["rope_theta"])
    b.add_kv(f"{arch}.attention.layer_norm_rms_epsilon", FLOAT32, cfg["norm_eps"])
    for name, dims in tensor_shapes(**cfg).items():
        shape = tuple(reversed(dims))
        if len(dims) == 1:
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            a = 0.1 * rng.standard_normal(shape)
        b.add_tensor(name, a.astype(np.float32))
    return b


def write_tiny(path, **kw) -> Layout:
    return tiny_qwen3(**kw).write(path)


def q8_0_bytes(n_elements: int, seed: int = 0) -> bytes:
    """Random valid Q8_0 blocks: f16 scale ~1e-3, int8 quants."""
    rng = np.random.default_rng(seed)
    nb = n_elements // 32
    blk = np.empty((nb, 34), np.uint8)
    blk[:, :2] = np.full(nb, 1e-3, np.float16).view(np.uint8).reshape(nb, 2)
    blk[:, 2:] = rng.integers(-127, 128, (nb, 32), dtype=np.int8).view(np.uint8)
    return blk.tobytes()


def iq4_nl_bytes(n_elements: int, seed: int = 0) -> bytes:
    """Random IQ4_NL blocks (32 elements, 18 bytes: f16 d, 16 bytes of 4-bit codebook indices)."""
    rng = np.random.default_rng(seed)
    nb = n_elements // 32
    blk = rng.integers(0, 256, (nb, 18), dtype=np.uint8)
    blk[:, :2] = np.full(nb, 1e-3, np.float16).view(np.uint8).reshape(nb, 2)
    return blk.tobytes()


def q2_k_bytes(n_elements: int, seed: int = 0) -> bytes:
    """Random Q2_K super-blocks (256 elements, 84 bytes): scales, quants, then f16 d and dmin."""
    rng = np.random.default_rng(seed)
    nb = n_elements // 256
    blk = np.empty((nb, 84), np.uint8)
    blk[:, :80] = rng.integers(0, 256, (nb, 80), dtype=np.uint8)
    blk[:, 80:82] = np.full(nb, 1e-3, np.float16).view(np.uint8).reshape(nb, 2)
    blk[:, 82:84] = np.full(nb, 1e-4, np.float16).view(np.uint8).reshape(nb, 2)
    return blk.tobytes()


# ---- editing an existing file -----------------------------------------------------------------
def _skip_value(data: bytes, pos: int, vtype: int) -> int:
    """The offset just past a value of `vtype` starting at `pos`."""
    if vtype == STRING:
        return pos + 8 + struct.unpack_from("<Q", data, pos)[0]
    if vtype == ARRAY:
        et, n = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if et == STRING:
            for _ in range(n):
                pos = _skip_value(data, pos, STRING)
            return pos
        return pos + n * struct.calcsize(_SCALAR_FMT[et])
    return pos + struct.calcsize(_SCALAR_FMT[vtype])


def set_string_kv(data: bytes, key: str, value: str) -> bytes:
    """A copy of the GGUF image `data` with the string value of `key` replaced (or the key
    added), the tensor data moved to the next aligned offset: e.g. a real model file with
    another chat template. general.alignment must be absent or a u32."""
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos, alignment, found = 24, 32, None
    for _ in range(n_kv):
        klen = struct.unpack_from("<Q", data, pos)[0]
        k = data[pos + 8:pos + 8 + klen].decode("utf-8")
        vtype = struct.unpack_from("<I", data, pos + 8 + klen)[0]
        vstart = pos + 12 + klen
        pos = _skip_value(data, vstart, vtype)
        if k == "general.alignment":
            alignment = struct.unpack_from("<I", data, vstart)[0]
        if k == key:
            found = (vstart - 4, pos)
    kv_end = pos
    for _ in range(n_tensors):  # name | n_dims | dims | type | offset
        nlen = struct.unpack_from("<Q", data, pos)[0]
        n_dims = struct.unpack_from("<I", data, pos + 8 + nlen)[0]
        pos += 8 + nlen + 4 + 8 * n_dims + 4 + 8
    data_start = (pos + alignment - 1) // alignment * alignment
    new_value = struct.pack("<I", STRING) + _str(value)
    if found:
        head = data[:found[0]] + new_value + data[found[1]:pos]
    else:
        head = (data[:8] + struct.pack("<QQ", n_tensors, n_kv + 1) + data[24:kv_end]
                + _str(key) + new_value + data[kv_end:pos])
    head += bytes((-len(head)) % alignment)
    return head + data[data_start:]
