"""A small, lazy reader of the safetensors format, in numpy only.

The format (https://github.com/huggingface/safetensors), little-endian throughout:

    u64            N: byte length of the header
    N bytes        a JSON object: {"<tensor name>": {"dtype": "BF16", "shape": [rows, cols],
                   "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}} (optional)
    the rest       the data section; a tensor's bytes are data[begin:end], row-major (C order)

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

# safetensors dtype -> (numpy dtype used to read the raw bytes, bytes per element)
_DTYPES = {
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),  # no numpy bfloat16: read the bits, widen in to_float32
}

_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the 16 bits into place."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class SafetensorsFile:
    """One .safetensors file: its header parsed and validated, its data memory-mapped."""

    def __init__(self, path):
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelFormatError(f"{self.path}: too short to be a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise ModelFormatError(f"{self.path}: header length {n} is past the end of the file")
            try:
                header = json.loads(f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ModelFormatError(f"{self.path}: the header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise ModelFormatError(f"{self.path}: the header is not a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self._data_start = 8 + n
        data_size = size - self._data_start
        self.tensors = {}  # name -> (dtype string, shape tuple, begin, end)
        for name, info in header.items():
            try:
                dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise ModelFormatError(f"{self.path}: bad header entry for tensor {name!r}") from None
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ModelFormatError(f"{self.path}: tensor {name!r} has a bad shape {shape}")
            if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= data_size):
                raise ModelFormatError(f"{self.path}: tensor {name!r} data offsets {begin}..{end} "
                                       f"are outside the data section ({data_size} bytes)")
            if dtype in _DTYPES and end - begin != int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype][1]:
                raise ModelFormatError(f"{self.path}: tensor {name!r} ({dtype}, shape {list(shape)}) "
                                       f"has {end - begin} bytes of data")
            self.tensors[name] = (dtype, shape, begin, end)
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
