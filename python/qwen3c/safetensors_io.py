"""A small, lazy reader of the safetensors format, in numpy only.

The format (https://github.com/huggingface/safetensors), little-endian throughout:

    u64            N: byte length of the header
    N bytes        a JSON object: {"<tensor name>": {"dtype": "BF16", "shape": [rows, cols],
                   "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}} (optional)
    the rest       the data section; a tensor's bytes are data[begin:end], row-major (C order)

`read_header(path)` validates a header as the format requires (dtypes, shapes x dtype sizes
== offset spans, offsets covering the data section without overlap or gap) without reading
tensor data: the converter and `qwen3c audit` share it.

A checkpoint may be split into shards named by `model.safetensors.index.json`
({"weight_map": {"<tensor name>": "<shard file>"}}).

Tensors are read one at a time (or a range of rows at a time) with plain file reads, so
converting a model never holds the whole checkpoint in memory: `Checkpoint.get(name)` returns
a float32 array of one tensor, `Checkpoint.get(name, slice(r0, r1))` of some of its rows.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from .errors import ModelFormatError, UnsupportedModelError

# safetensors dtype -> (numpy dtype used to read the raw bytes, bytes per element): the dtypes
# the converter reads
_DTYPES = {
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),  # no numpy bfloat16: read the bits, widen in to_float32
}

#: every dtype of the safetensors format -> bits per element
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
              "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
              "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}

_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the 16 bits into place."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_header(path):
    """Read and validate the header of a .safetensors file, as the format requires, without
    reading any tensor data: the 8-byte little-endian header length (within the file and the
    100 MB limit), a UTF-8 JSON object without duplicate keys, a "__metadata__" of strings,
    and per tensor a known dtype, a shape of non-negative ints and data_offsets [begin, end]
    with end - begin == elements x dtype size; sorted by offset, the tensors must cover the
    data section exactly: no overlap, no gap, nothing past its end.

    Returns (header_length, {name: (dtype, shape tuple, begin, end)} in offset order, metadata
    dict). Raises ModelFormatError naming the file and the problem."""
    path = Path(path)

    def bad(msg):
        return ModelFormatError(f"{path}: {msg}")

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes is too short to be a safetensors file (8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise bad(f"header length {n} is past the end of the file ({size} bytes)")
        if n > _MAX_HEADER:
            raise bad(f"header length {n} is over the format's limit of {_MAX_HEADER} bytes")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(f"the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("__metadata__ must map strings to strings")
    data_size = size - 8 - n
    tensors = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise bad(f"bad header entry for tensor {name!r}")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_BITS:
            raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise bad(f"tensor {name!r} has a bad shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_int(o) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise bad(f"tensor {name!r} has bad data_offsets {offsets!r}")
        begin, end = offsets
        bits = DTYPE_BITS[dtype]
        for d in shape:
            bits *= d
        if bits % 8:
            raise bad(f"tensor {name!r} ({dtype}, shape {shape}) is not a whole number of bytes")
        if end - begin != bits // 8:
            raise bad(f"tensor {name!r} ({dtype}, shape {shape}) needs {bits // 8} bytes but its "
                      f"data_offsets [{begin}, {end}] span {end - begin}")
        tensors.append((begin, end, name, dtype, tuple(shape)))
    tensors.sort()
    pos, prev = 0, None
    for begin, end, name, _, _ in tensors:
        if begin < pos:
            raise bad(f"tensors {prev!r} and {name!r} overlap: {name!r} starts at byte {begin} of "
                      f"the data section, before {prev!r} ends at {pos}")
        if begin > pos:
            raise bad(f"a gap of {begin - pos} bytes before tensor {name!r} (byte {pos} to "
                      f"{begin}): the format requires the tensors to cover the data section")
        if end > data_size:
            raise bad(f"tensor {name!r} data_offsets [{begin}, {end}] run past the end of the "
                      f"data section ({data_size} bytes): truncated or corrupt file")
        pos, prev = end, name
    if pos != data_size:
        raise bad(f"the tensors cover {pos} bytes but the data section has {data_size}")
    return n, {name: (dtype, shape, b, e) for b, e, name, dtype, shape in tensors}, metadata


class SafetensorsFile:
    """One .safetensors file: its header parsed and validated (read_header), data read lazily."""

    def __init__(self, path):
        self.path = Path(path)
        n, self.tensors, self.metadata = read_header(self.path)  # name -> (dtype, shape, begin, end)
        self._data_start = 8 + n
        self._file = None

    def shape(self, name: str) -> tuple:
        return self.tensors[name][1]

    def dtype(self, name: str) -> str:
        return self.tensors[name][0]

    def raw(self, name: str, rows: slice | None = None) -> np.ndarray:
        """The tensor (or rows[start:stop] of its first dimension) in its stored dtype, BF16 as
        uint16 bits. Read with a plain file read, so nothing stays mapped afterwards."""
        dtype, shape, begin, end = self.tensors[name]
        if dtype not in _DTYPES:
            raise UnsupportedModelError(f"{self.path}: tensor {name!r} has dtype {dtype}; "
                                        f"only F32, F16 and BF16 are supported")
        np_dtype, esize = _DTYPES[dtype]
        if rows is not None and shape:
            r0, r1, _ = rows.indices(shape[0])
            r1 = max(r0, r1)
            row_elems = int(np.prod(shape[1:], dtype=np.int64))
            begin += r0 * row_elems * esize
            shape = (r1 - r0, *shape[1:])
        count = int(np.prod(shape, dtype=np.int64))
        if self._file is None:
            self._file = open(self.path, "rb")
        self._file.seek(self._data_start + begin)
        data = np.fromfile(self._file, dtype=np_dtype, count=count)
        if data.size != count:
            raise ModelFormatError(f"{self.path}: tensor {name!r} is truncated")
        return data.reshape(shape)

    def get(self, name: str, rows: slice | None = None) -> np.ndarray:
        """The tensor (or some of its rows) as a float32 array."""
        raw = self.raw(name, rows)
        if self.tensors[name][0] == "BF16":
            return bf16_bits_to_float32(raw)
        return raw.astype(np.float32, copy=False)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class Checkpoint:
    """All the safetensors files of a HuggingFace model directory, as one name -> tensor map."""

    def __init__(self, hf_dir):
        hf_dir = Path(hf_dir)
        index = hf_dir / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ModelFormatError(f"{index}: not a valid safetensors index (no weight_map)") from None
            shard_names = sorted(set(weight_map.values()))
        else:
            shard_names = sorted(p.name for p in hf_dir.glob("*.safetensors"))
        if not shard_names:
            raise FileNotFoundError(f"{hf_dir}: no *.safetensors files")
        self.files = []
        self._where = {}  # tensor name -> SafetensorsFile
        for shard in shard_names:
            path = hf_dir / shard
            if not path.is_file():
                raise FileNotFoundError(f"{path}: shard listed in the index is missing")
            st = SafetensorsFile(path)
            self.files.append(st)
            for name in st.tensors:
                if name in self._where:
                    raise ModelFormatError(f"{hf_dir}: tensor {name!r} appears in two shards")
                self._where[name] = st

    def names(self):
        return list(self._where)

    def __contains__(self, name):
        return name in self._where

    def shape(self, name) -> tuple:
        return self._where[name].shape(name)

    def get(self, name, rows: slice | None = None) -> np.ndarray:
        return self._where[name].get(name, rows)

    def close(self):
        for f in self.files:
            f.close()
