"""The only module that touches the cffi `ffi`/`lib` of the C core.

Everything here is a thin, checked call: arguments are converted, the C function is called
with a caller-owned error buffer, and a non-OK status becomes the matching exception from
`qwen3c.errors`. The Pythonic classes (Model, Sampler, ...) are built on these functions.
Sections are owned by topic: core (model/context/forward), tokenizer, sampler, kernels.
"""
from __future__ import annotations

import numpy as np

from ._qwen3c import ffi, lib
from .errors import (ContextOverflowError, InvalidArgumentError, ModelFileNotFoundError,
                     ModelFormatError, ModelIOError, OutOfMemoryError, Qwen3cError,
                     UnsupportedCPUError, UnsupportedModelError)
from .util import plural

ERR_SIZE = 1024


class _Err:
    """A caller-owned error message buffer."""

    __slots__ = ("buf",)

    def __init__(self):
        self.buf = ffi.new("char[]", ERR_SIZE)

    def text(self) -> str:
        return ffi.string(self.buf).decode("utf-8", "replace")


def _raise(status: int, err: _Err, **extra):
    msg = err.text() or ffi.string(lib.qwen3c_status_str(status)).decode()
    if status == lib.QWEN3C_ERR_FORMAT:
        raise ModelFormatError(msg)
    if status == lib.QWEN3C_ERR_UNSUPPORTED:
        raise UnsupportedModelError(msg)
    if status == lib.QWEN3C_ERR_CONTEXT:
        raise ContextOverflowError(msg, extra.get("n_prompt_tokens"), extra.get("n_ctx"))
    if status == lib.QWEN3C_ERR_INVALID_ARG:
        raise InvalidArgumentError(msg)
    if status == lib.QWEN3C_ERR_IO:
        raise ModelIOError(msg)
    if status == lib.QWEN3C_ERR_NOMEM:
        raise OutOfMemoryError(msg)
    if status == lib.QWEN3C_ERR_CPU:
        raise UnsupportedCPUError(msg)
    raise Qwen3cError(f"{msg} (status {status})")


def _check(status: int, err: _Err, **extra):
    if status != lib.QWEN3C_OK:
        _raise(status, err, **extra)


def _int32_array(tokens) -> np.ndarray:
    """Token ids as a contiguous int32 array; non-integers are refused, never truncated."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"tokens must be a sequence of ints, not {type(tokens).__name__}")
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError("tokens must be a 1-D sequence of ints")
    if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"token ids must be ints, got {arr.dtype} values")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
        raise ValueError("token id out of int32 range")
    return np.ascontiguousarray(arr, dtype=np.int32)


# ---- core: model / context / forward --------------------------------------------------------
CONFIG_FIELDS = ("arch", "n_layers", "dim", "hidden_dim", "n_heads", "n_kv_heads", "head_dim",
                 "vocab_size", "n_ctx_train", "rope_theta", "norm_eps", "tied_embeddings",
                 "qk_norm", "rope_interleaved", "n_params",
                 # qwen35 (0 otherwise)
                 "n_linear_layers", "linear_conv_kernel", "linear_n_k_heads", "linear_n_v_heads",
                 "linear_k_head_dim", "linear_v_head_dim", "rope_dim", "attn_output_gate")


def model_load(path: str, pack_weights: bool = True):
    """Load a GGUF file; returns an owned `qwen3c_model *` (free with model_free).
    pack_weights: copy the matrices into huge pages, Q8_0/Q4_0/Q4_1 in the q24 kernels' layout
    (see qwen3c.h)."""
    err = _Err()
    out = ffi.new("qwen3c_model **")
    params = ffi.new("qwen3c_model_params *", lib.qwen3c_model_default_params())
    params.pack_weights = 1 if pack_weights else 0
    rc = lib.qwen3c_model_load_with(path.encode("utf-8", "surrogateescape"), params, out, err.buf,
                                    ERR_SIZE)
    _check_open(rc, err, path)
    return out[0]


def _check_open(rc: int, err: _Err, path: str):
    """_check for a call that opened `path`: a missing file is a FileNotFoundError."""
    if rc == lib.QWEN3C_ERR_IO:
        import os
        if not os.path.lexists(path):
            raise ModelFileNotFoundError(err.text(), path)  # the C reader's message: the path once
    _check(rc, err)


def model_packed_bytes(ptr) -> int:
    return int(lib.qwen3c_model_packed_bytes(ptr))


def model_free(ptr) -> None:
    lib.qwen3c_model_free(ptr)


def model_config(ptr) -> dict:
    c = ffi.new("qwen3c_config *")
    lib.qwen3c_model_get_config(ptr, c)
    d = {}
    for name in CONFIG_FIELDS:
        v = getattr(c, name)
        d[name] = ffi.string(v).decode() if name == "arch" else v
    return d


def model_layer_types(ptr, n_layers: int) -> tuple:
    """Per layer "full_attention" or "linear_attention" (transformers' config.layer_types)."""
    names = {lib.QWEN3C_LAYER_ATTENTION: "full_attention", lib.QWEN3C_LAYER_LINEAR: "linear_attention"}
    return tuple(names[lib.qwen3c_model_layer_type(ptr, i)] for i in range(n_layers))


def _sized_string(call, initial=256) -> bytes | None:
    """Call `call(buf, size, len_ptr)` growing the buffer until it fits."""
    size = initial
    n = ffi.new("size_t *")
    while True:
        buf = ffi.new("char[]", size)
        rc = call(buf, size, n)
        if rc == lib.QWEN3C_OK:
            return ffi.unpack(buf, n[0])
        if rc == lib.QWEN3C_ERR_BUFFER:
            size = n[0] + 1
            continue
        return None


def model_metadata(ptr) -> dict:
    """All GGUF metadata as {key: value-rendered-as-str} (arrays as '[n items]')."""
    out = {}
    for i in range(lib.qwen3c_model_meta_count(ptr)):
        key = _sized_string(lambda b, s, n: lib.qwen3c_model_meta_key(ptr, i, b, s, n), 128)
        if key is None:
            continue
        out[key.decode("utf-8", "replace")] = model_meta_str(ptr, key)
    return out


def model_meta_str(ptr, key) -> str | None:
    k = key if isinstance(key, bytes) else key.encode("utf-8")
    raw = _sized_string(lambda b, s, n: lib.qwen3c_model_meta_as_string(ptr, k, b, s, n), 4096)
    return None if raw is None else raw.decode("utf-8", "replace")


def model_tensors(ptr) -> list:
    """[(name, type_name, shape (GGUF order: ne[0] first), nbytes), ...]"""
    res = []
    info = ffi.new("qwen3c_tensor_info *")
    name = ffi.new("char[]", 1024)
    for i in range(lib.qwen3c_model_n_tensors(ptr)):
        if lib.qwen3c_model_tensor_info(ptr, i, name, 1024, info) != lib.QWEN3C_OK:
            continue
        shape = tuple(int(info.ne[d]) for d in range(info.n_dims))
        tname = ffi.string(lib.qwen3c_type_name(info.type)).decode()
        res.append((ffi.string(name).decode("utf-8", "replace"), tname, shape, int(info.nbytes)))
    return res


#: Model(activations=...) names -> QWEN3C_ACTIVATIONS_* (see csrc/qwen3c.h)
ACTIVATIONS = {"q24": lib.QWEN3C_ACTIVATIONS_Q24, "f32": lib.QWEN3C_ACTIVATIONS_F32,
               "q16": lib.QWEN3C_ACTIVATIONS_Q16, "q8": lib.QWEN3C_ACTIVATIONS_Q8}


#: Model(kv_cache=...) names -> QWEN3C_KV_* (see csrc/qwen3c.h)
KV_TYPES = {"f32": lib.QWEN3C_KV_F32, "f16": lib.QWEN3C_KV_F16}


def context_create(model_ptr, n_ctx: int, n_threads: int, n_batch: int = 0,
                   activations: str = "q24", kv_cache: str = "f32", n_checkpoints: int = 0):
    err = _Err()
    params = ffi.new("qwen3c_context_params *", lib.qwen3c_context_default_params())
    params.n_ctx = n_ctx
    params.n_threads = n_threads
    params.n_batch = n_batch
    params.activations = ACTIVATIONS[activations]
    params.kv_type = KV_TYPES[kv_cache]
    params.n_checkpoints = n_checkpoints
    out = ffi.new("qwen3c_context **")
    _check(lib.qwen3c_context_create(model_ptr, params, out, err.buf, ERR_SIZE), err)
    return out[0]


def context_free(ctx_ptr) -> None:
    lib.qwen3c_context_free(ctx_ptr)


def context_info(ctx_ptr) -> tuple:
    return lib.qwen3c_context_n_ctx(ctx_ptr), lib.qwen3c_context_n_threads(ctx_ptr)


# ---- core: where a context can continue (recurrent state, qwen35) ---------------------------

def context_n_past(ctx_ptr) -> int:
    return int(lib.qwen3c_context_n_past(ctx_ptr))


def context_checkpoint(ctx_ptr) -> None:
    err = _Err()
    _check(lib.qwen3c_context_checkpoint(ctx_ptr, err.buf, ERR_SIZE), err)


def context_checkpoints(ctx_ptr) -> list:
    n = lib.qwen3c_context_checkpoints(ctx_ptr, ffi.NULL, 0)
    buf = ffi.new("int[]", max(n, 1))
    n = lib.qwen3c_context_checkpoints(ctx_ptr, buf, n)
    return [int(buf[i]) for i in range(n)]


def _forward_args(tokens, pos, n_ctx: int) -> tuple:
    """(int32 tokens, n, pos), checked before any compute."""
    toks = _int32_array(tokens)
    n = int(toks.size)
    if n == 0:
        raise ValueError("forward needs at least one token")
    if not isinstance(pos, (int, np.integer)) or isinstance(pos, bool):
        raise TypeError(f"pos must be an int, not {type(pos).__name__}")
    pos = int(pos)
    if pos < 0:
        raise ValueError(f"position {pos} is negative")
    if pos + n > n_ctx:
        raise ContextOverflowError(
            f"{plural(n, 'token')} at position {pos} do not fit in the context of "
            f"{plural(n_ctx, 'token')}",
            n_prompt_tokens=pos + n, n_ctx=n_ctx)
    return toks, n, pos


def forward(ctx_ptr, tokens, pos: int, vocab_size: int, all_logits: bool, n_ctx: int,
            n_layers: int = 0, dim: int = 0, trace: bool = False):
    """Run the transformer; returns logits ((V,) or (n, V)) and, with trace, the hidden states."""
    toks, n, pos = _forward_args(tokens, pos, n_ctx)
    logits = np.empty((n, vocab_size) if all_logits else (vocab_size,), dtype=np.float32)
    hidden = np.empty((n_layers + 2, n, dim), dtype=np.float32) if trace else None
    err = _Err()
    tp = ffi.cast("const int32_t *", ffi.from_buffer(toks))
    lp = ffi.cast("float *", ffi.from_buffer(logits))
    if trace:
        hp = ffi.cast("float *", ffi.from_buffer(hidden))
        rc = lib.qwen3c_forward_trace(ctx_ptr, tp, n, pos, lp, int(all_logits), hp, err.buf, ERR_SIZE)
    else:
        rc = lib.qwen3c_forward(ctx_ptr, tp, n, pos, lp, int(all_logits), err.buf, ERR_SIZE)
    _check(rc, err, n_prompt_tokens=pos + n, n_ctx=n_ctx)
    return (logits, hidden) if trace else logits


def model_cpu_tier(ptr) -> str:
    """The kernel tier the model computes with ("avx512", "avx2", "sse", "neon", "scalar", ...)."""
    return ffi.string(lib.qwen3c_model_cpu_tier(ptr)).decode()


def gated_delta_rule(state, q, k, v, g, beta, chunked: bool):
    """qwen3c_gated_delta_rule on float32 numpy arrays: returns (new state, out)."""
    state = np.array(state, dtype=np.float32, order="C")
    q, k, v, g, beta = (np.ascontiguousarray(a, dtype=np.float32) for a in (q, k, v, g, beta))
    n, hk = q.shape
    hv = v.shape[1]
    out = np.empty((n, hv), np.float32)
    err = _Err()
    f = lambda a: ffi.cast("float *", ffi.from_buffer(a))  # noqa: E731
    _check(lib.qwen3c_gated_delta_rule(f(state), hk, hv, f(q), f(k), f(v), f(g), f(beta), n, f(out),
                                       1 if chunked else 0, err.buf, ERR_SIZE), err)
    return state, out


# ---- inspection: attention probabilities, the LM head on hidden states (viz) -----------------

def forward_attention(ctx_ptr, tokens, pos: int, n_ctx: int, n_layers: int, n_heads: int,
                      dim: int = 0, vocab_size: int = 0, trace: bool = False,
                      max_bytes: int = 4 << 30):
    """Run the transformer and capture its attention probabilities
    (n_layers, n_heads, n, pos + n) float32. With trace: (attn, logits (n, V), hidden
    (n_layers + 2, n, dim)) as forward(trace=True) returns them. ValueError (before any
    compute) when the attention array would take more than max_bytes."""
    toks, n, pos = _forward_args(tokens, pos, n_ctx)
    need = 4 * n_layers * n_heads * n * (pos + n)
    if need > max_bytes:
        raise ValueError(
            f"the attention of {n} tokens at position {pos} takes {need / 2**30:.2f} GiB "
            f"({n_layers} layers x {n_heads} heads x {n} x {pos + n} floats), more than "
            f"max_bytes={max_bytes}: look at fewer tokens")
    attn = np.empty((n_layers, n_heads, n, pos + n), dtype=np.float32)
    logits = np.empty((n, vocab_size), dtype=np.float32) if trace else None
    hidden = np.empty((n_layers + 2, n, dim), dtype=np.float32) if trace else None
    err = _Err()
    fp = (lambda a: ffi.NULL if a is None else ffi.cast("float *", ffi.from_buffer(a)))
    rc = lib.qwen3c_forward_attention(ctx_ptr, ffi.cast("const int32_t *", ffi.from_buffer(toks)),
                                      n, pos, fp(logits), 1, fp(hidden), fp(attn), err.buf, ERR_SIZE)
    _check(rc, err, n_prompt_tokens=pos + n, n_ctx=n_ctx)
    return (attn, logits, hidden) if trace else attn


def lm_head(ctx_ptr, hidden, dim: int, vocab_size: int) -> np.ndarray:
    """logits (n, V) = lm_head(norm(hidden)) for hidden (n, dim) (or (dim,) -> (V,))."""
    h = np.ascontiguousarray(hidden, dtype=np.float32)
    if h.ndim not in (1, 2) or h.shape[-1] != dim:
        raise ValueError(f"hidden must have shape (n, {dim}) or ({dim},), got {h.shape}")
    h2 = h.reshape(-1, dim)
    if h2.shape[0] == 0:
        raise ValueError("lm_head needs at least one hidden state")
    logits = np.empty((h2.shape[0], vocab_size), dtype=np.float32)
    err = _Err()
    _check(lib.qwen3c_lm_head(ctx_ptr, ffi.cast("const float *", ffi.from_buffer(h2)),
                              int(h2.shape[0]), ffi.cast("float *", ffi.from_buffer(logits)),
                              err.buf, ERR_SIZE), err)
    return logits[0] if h.ndim == 1 else logits


def type_name(t: int) -> str:
    return ffi.string(lib.qwen3c_type_name(t)).decode()


# ---- CPU tiers and threads (csrc/cpu.c) -----------------------------------------------------

def cpu_info() -> dict:
    """What this machine and build run (qwen3c_cpu_info_get): the CPU features qwen3c looks for,
    the kernel tiers built in, the best tier, the tier a model loaded now gets (None, with the
    reason in "error", when QWEN3C_CPU is refused), OpenMP and the processor count."""
    info = ffi.new("qwen3c_cpu_info *")
    err = _Err()
    rc = lib.qwen3c_cpu_info_get(info, err.buf, ERR_SIZE)

    def text(name):
        return ffi.string(getattr(info, name)).decode("utf-8", "replace")

    return {"features": text("features").split(), "tiers": text("tiers").split(),
            "best": text("best"), "tier": text("tier") or None,
            "requested": text("requested") or None,
            "error": err.text() if rc != lib.QWEN3C_OK else None,
            "openmp": bool(info.openmp), "n_procs": int(info.n_procs),
            "compiler": text("compiler")}


# ---- tokenizer -----------------------------------------------------------------------------

def tok_has(model_ptr) -> bool:
    return bool(lib.qwen3c_model_has_tokenizer(model_ptr))


def tok_special(model_ptr) -> dict:
    """The special-token ids as a dict (-1 -> None); "eog" is a tuple."""
    sp = ffi.new("qwen3c_special_tokens *")
    lib.qwen3c_model_special_tokens(model_ptr, sp)
    out = {name: (None if getattr(sp, name) < 0 else int(getattr(sp, name)))
           for name in ("bos", "eos", "pad", "unk", "im_start", "im_end", "think", "think_end")}
    out["eog"] = tuple(int(sp.eog[i]) for i in range(sp.n_eog))
    return out


def tok_info(model_ptr) -> tuple:
    """(n_vocab, normalizer (QWEN3C_NORM_*), added token ids)."""
    added = []
    while True:
        tid = lib.qwen3c_tokenizer_added_token(model_ptr, len(added))
        if tid < 0:
            break
        added.append(int(tid))
    return (int(lib.qwen3c_tokenizer_n_vocab(model_ptr)), int(lib.qwen3c_tokenizer_normalizer(model_ptr)),
            added)


NORM_NFC = lib.QWEN3C_NORM_NFC


def tok_encode(model_ptr, data: bytes, special: bool) -> list:
    """Token ids of UTF-8 `data` (already normalized)."""
    err = _Err()
    n = ffi.new("size_t *")
    cap = len(data) + 1  # one id per byte at most, plus slack
    ids = ffi.new("int32_t[]", cap)
    st = lib.qwen3c_tokenize(model_ptr, data, len(data), 1 if special else 0, ids, cap, n,
                             err.buf, ERR_SIZE)
    _check(st, err)
    return ffi.unpack(ids, n[0])


def tok_token_bytes(model_ptr, token_id: int) -> bytes:
    n = ffi.new("size_t *")
    buf = ffi.new("char[]", 64)
    st = lib.qwen3c_token_to_bytes(model_ptr, token_id, buf, 64, n)
    if st == lib.QWEN3C_ERR_BUFFER:
        buf = ffi.new("char[]", n[0])
        st = lib.qwen3c_token_to_bytes(model_ptr, token_id, buf, n[0], n)
    if st != lib.QWEN3C_OK:
        raise ValueError(f"token id {token_id} is outside the vocabulary")
    return ffi.unpack(buf, n[0])


def tok_type(model_ptr, token_id: int) -> int:
    return int(lib.qwen3c_token_type(model_ptr, token_id))


def tok_lookup(model_ptr, piece: bytes) -> int | None:
    tid = lib.qwen3c_token_lookup(model_ptr, piece, len(piece))
    return None if tid < 0 else int(tid)


# ---- GGUF reader (info, audit) ---------------------------------------------------------------
# The validating reader of qwen3c_model_load on its own: metadata and the tensor table of any
# GGUF, without building a model (qwen3c_gguf_* in qwen3c.h).

#: GGUF metadata value type -> numpy dtype of its elements (string and array: none)
GGUF_DTYPES = {lib.QWEN3C_GGUF_UINT8: "<u1", lib.QWEN3C_GGUF_INT8: "<i1",
               lib.QWEN3C_GGUF_UINT16: "<u2", lib.QWEN3C_GGUF_INT16: "<i2",
               lib.QWEN3C_GGUF_UINT32: "<u4", lib.QWEN3C_GGUF_INT32: "<i4",
               lib.QWEN3C_GGUF_FLOAT32: "<f4", lib.QWEN3C_GGUF_BOOL: "<u1",
               lib.QWEN3C_GGUF_UINT64: "<u8", lib.QWEN3C_GGUF_INT64: "<i8",
               lib.QWEN3C_GGUF_FLOAT64: "<f8"}
GGUF_STRING, GGUF_ARRAY, GGUF_BOOL = lib.QWEN3C_GGUF_STRING, lib.QWEN3C_GGUF_ARRAY, lib.QWEN3C_GGUF_BOOL
GGUF_FLOAT32 = lib.QWEN3C_GGUF_FLOAT32


def gguf_open(path: str):
    """Open and validate a GGUF file; returns a `qwen3c_gguf *` freed by the garbage collector
    (or early by gguf_free). Raises ModelFormatError with the reader's message, FileNotFoundError,
    ModelIOError."""
    err = _Err()
    out = ffi.new("qwen3c_gguf **")
    rc = lib.qwen3c_gguf_open(path.encode("utf-8", "surrogateescape"), out, err.buf, ERR_SIZE)
    _check_open(rc, err, path)
    return ffi.gc(out[0], lib.qwen3c_gguf_free)


def gguf_free(handle) -> None:
    ffi.release(handle)


def model_gguf(model_ptr):
    """The parsed file of a loaded model (borrowed: use it only while the model is alive)."""
    return lib.qwen3c_model_gguf(model_ptr)


def gguf_header(g) -> dict:
    h = ffi.new("qwen3c_gguf_header *")
    err = _Err()
    _check(lib.qwen3c_gguf_get_header(g, h, err.buf, ERR_SIZE), err)
    return {"version": int(h.version), "n_kv": int(h.n_kv), "n_tensors": int(h.n_tensors),
            "alignment": int(h.alignment), "data_offset": int(h.data_offset),
            "file_size": int(h.file_size)}


def _each_named(n: int, call):
    """Yield the name of item i for i in range(n), where call(i, buf, size, err) returns
    (status, name length) and fills buf; the buffer grows when a name does not fit."""
    err = _Err()
    size = 256
    buf = ffi.new("char[]", size)
    for i in range(n):
        rc, length = call(i, buf, size, err)
        if rc == lib.QWEN3C_ERR_BUFFER:
            size = length + 1
            buf = ffi.new("char[]", size)
            rc, length = call(i, buf, size, err)
        _check(rc, err)
        yield ffi.unpack(buf, length).decode("utf-8", "replace")


def gguf_entries(g, n_kv: int) -> list:
    """[(key, type, elem_type, n), ...] for every metadata entry, in file order (keys decoded
    as UTF-8 with replacement)."""
    info = ffi.new("qwen3c_gguf_kv_info *")

    def call(i, buf, size, err):
        return lib.qwen3c_gguf_kv(g, i, buf, size, info, err.buf, ERR_SIZE), info.key_len

    return [(key, int(info.type), int(info.elem_type), int(info.n))
            for key in _each_named(n_kv, call)]


def gguf_values(g, i: int, elem_type: int, start: int, count: int) -> np.ndarray:
    """Elements [start, start + count) of numeric / bool entry i as a numpy array."""
    dt = np.dtype(GGUF_DTYPES.get(elem_type, "u1"))  # a string entry: the C call says so
    out = np.empty(count, dtype=dt)
    err = _Err()
    _check(lib.qwen3c_gguf_get_values(g, i, start, count, ffi.from_buffer(out), out.nbytes,
                                      err.buf, ERR_SIZE), err)
    return out


def gguf_strings(g, i: int, start: int, count: int) -> list:
    """Strings [start, start + count) of string entry i, as bytes."""
    total = ffi.new("size_t *")
    lens = ffi.new("uint64_t[]", max(count, 1))
    err = _Err()
    rc = lib.qwen3c_gguf_get_strings(g, i, start, count, ffi.NULL, 0, lens, total, err.buf,
                                     ERR_SIZE)
    if rc == lib.QWEN3C_ERR_BUFFER or rc == lib.QWEN3C_OK:
        buf = ffi.new("char[]", max(total[0], 1))
        rc = lib.qwen3c_gguf_get_strings(g, i, start, count, buf, total[0], lens, total,
                                         err.buf, ERR_SIZE)
    _check(rc, err)
    raw = ffi.unpack(buf, total[0])
    out, pos = [], 0
    for k in range(count):
        out.append(raw[pos:pos + lens[k]])
        pos += lens[k]
    return out


def gguf_tensors(g, n_tensors: int) -> list:
    """[(name, type id, shape (GGUF order: ne[0] first), file offset, nbytes), ...]"""
    info = ffi.new("qwen3c_tensor_info *")
    name_len = ffi.new("size_t *")

    def call(i, buf, size, err):
        return lib.qwen3c_gguf_tensor(g, i, buf, size, name_len, info, err.buf, ERR_SIZE), name_len[0]

    return [(name, int(info.type), tuple(int(info.ne[d]) for d in range(info.n_dims)),
             int(info.offset), int(info.nbytes)) for name in _each_named(n_tensors, call)]


# ---- sampler -------------------------------------------------------------------------------

def sampler_create(temperature: float, top_k: int, top_p: float, min_p: float,
                   presence_penalty: float, frequency_penalty: float, repetition_penalty: float,
                   penalty_last_n: int, seed: int):
    """A new qwen3c_sampler* (freed by the garbage collector, or early by sampler_free)."""
    params = ffi.new("qwen3c_sampler_params *", lib.qwen3c_sampler_default_params())
    params.temperature = temperature
    params.top_k = top_k
    params.top_p = top_p
    params.min_p = min_p
    params.presence_penalty = presence_penalty
    params.frequency_penalty = frequency_penalty
    params.repetition_penalty = repetition_penalty
    params.penalty_last_n = penalty_last_n
    params.seed = seed
    out = ffi.new("qwen3c_sampler **")
    err = _Err()
    _check(lib.qwen3c_sampler_create(params, out, err.buf, ERR_SIZE), err)
    return ffi.gc(out[0], lib.qwen3c_sampler_free)


def sampler_free(handle) -> None:
    ffi.release(handle)


def sampler_reset(handle) -> None:
    lib.qwen3c_sampler_reset(handle)


def sampler_accept(handle, token: int) -> None:
    err = _Err()
    _check(lib.qwen3c_sampler_accept(handle, token, err.buf, ERR_SIZE), err)


def sampler_sample(handle, logits: np.ndarray) -> int:
    """logits: a C-contiguous 1-D float32 array (checked by the caller)."""
    out = ffi.new("int32_t *")
    err = _Err()
    buf = ffi.from_buffer("float[]", logits)
    _check(lib.qwen3c_sampler_sample(handle, buf, int(logits.shape[0]), out, err.buf, ERR_SIZE),
           err)
    return int(out[0])


# ---- kernels (tests) -----------------------------------------------------------------------

TYPE_IDS = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8,
            "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30}


def _type_id(t) -> int:
    if isinstance(t, str):
        try:
            return TYPE_IDS[t.upper()]
        except KeyError:
            raise ValueError(f"unknown tensor type {t!r}") from None
    return int(t)


def type_block_size(t) -> int:
    """Elements per block of tensor type t (name or id), -1 if unknown."""
    return int(lib.qwen3c_type_block_size(_type_id(t)))


def type_row_size(t, n: int) -> int:
    """Bytes of n elements of type t (n a multiple of the block size), -1 if invalid."""
    return int(lib.qwen3c_type_row_size(_type_id(t), int(n)))


def _bytes_view(data):
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.ascontiguousarray(np.asarray(data)).view(np.uint8).reshape(-1)


def dequantize(t, data, n: int) -> np.ndarray:
    """Dequantize n elements of type t from raw bytes `data` -> float32 (n,)."""
    raw = _bytes_view(data)
    n = int(n)
    if n <= 0:
        raise ValueError(f"dequantize: n must be positive, got {n}")
    out = np.empty(n, dtype=np.float32)
    err = _Err()
    _check(lib.qwen3c_dequantize(_type_id(t), ffi.from_buffer(raw), raw.nbytes,
                                 ffi.cast("float *", ffi.from_buffer(out)), n, err.buf, ERR_SIZE), err)
    return out


def float_to_half(x) -> np.ndarray:
    """float32 -> IEEE half bit patterns (uint16), rounded to nearest even as a kv_cache="f16"
    context stores its keys and values (qwen3c_float_to_half)."""
    xa = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(xa.size, dtype=np.uint16)
    err = _Err()
    _check(lib.qwen3c_float_to_half(ffi.cast("const float *", ffi.from_buffer(xa)), xa.size,
                                    ffi.cast("uint16_t *", ffi.from_buffer(out)), err.buf,
                                    ERR_SIZE), err)
    return out


def matmul(t, w_data, x, d: int, n_threads: int = 1) -> np.ndarray:
    """x (n_tok, n) or (n,) float32 @ W.T where W of type t has shape (d, n) stored in w_data.

    Returns float32 (n_tok, d), or (d,) for a 1-D x (the matvec / decode path)."""
    raw = _bytes_view(w_data)
    xa = np.ascontiguousarray(x, dtype=np.float32)
    if xa.ndim not in (1, 2):
        raise ValueError("x must be 1-D (n,) or 2-D (n_tok, n)")
    n = int(xa.shape[-1])
    d = int(d)
    err = _Err()
    xp = ffi.cast("const float *", ffi.from_buffer(xa))
    if xa.ndim == 1:
        out = np.empty(max(d, 0), dtype=np.float32)
        rc = lib.qwen3c_matvec(_type_id(t), ffi.from_buffer(raw), raw.nbytes, xp, n, d,
                               ffi.cast("float *", ffi.from_buffer(out)), int(n_threads),
                               err.buf, ERR_SIZE)
    else:
        out = np.empty((xa.shape[0], max(d, 0)), dtype=np.float32)
        rc = lib.qwen3c_matmul(_type_id(t), ffi.from_buffer(raw), raw.nbytes, xp, int(xa.shape[0]),
                               n, d, ffi.cast("float *", ffi.from_buffer(out)), int(n_threads),
                               err.buf, ERR_SIZE)
    _check(rc, err)
    return out


# ---- int8 kernels (tests) ----

INT8_TYPES = ("Q8_0", "Q4_0", "Q4_1")


def _matmul_via(fn, t, w_data, x, d: int, n_threads: int) -> np.ndarray:
    """x (n_tok, n) or (n,) float32 @ W^T through the C entry `fn` (qwen3c_matmul_int8 / _q16 / _q24)."""
    raw = _bytes_view(w_data)
    xa = np.ascontiguousarray(x, dtype=np.float32)
    if xa.ndim not in (1, 2):
        raise ValueError("x must be 1-D (n,) or 2-D (n_tok, n)")
    x2 = xa.reshape(1, -1) if xa.ndim == 1 else xa
    n = int(x2.shape[1])
    d = int(d)
    out = np.empty((x2.shape[0], max(d, 0)), dtype=np.float32)
    err = _Err()
    rc = fn(_type_id(t), ffi.from_buffer(raw), raw.nbytes,
            ffi.cast("const float *", ffi.from_buffer(x2)), int(x2.shape[0]),
            n, d, ffi.cast("float *", ffi.from_buffer(out)), int(n_threads), err.buf, ERR_SIZE)
    _check(rc, err)
    return out[0] if xa.ndim == 1 else out


def matmul_int8(t, w_data, x, d: int, n_threads: int = 1) -> np.ndarray:
    """Like `matmul`, through the opt-in int8 path (x quantized to 8-bit blocks of 32).

    x (n_tok, n) or (n,) float32; W of type t (Q8_0 / Q4_0 / Q4_1) has shape (d, n).
    Returns float32 (n_tok, d), or (d,) for a 1-D x."""
    return _matmul_via(lib.qwen3c_matmul_int8, t, w_data, x, d, n_threads)


# ---- q16 kernels (tests) ----

Q16_TYPES = ("Q8_0", "Q4_0", "Q4_1")


def matmul_q16(t, w_data, x, d: int, n_threads: int = 1) -> np.ndarray:
    """Like `matmul`, through the q16 path (x quantized to 16-bit blocks of 32).

    x (n_tok, n) or (n,) float32; W of type t (Q8_0 / Q4_0 / Q4_1) has shape (d, n).
    Returns float32 (n_tok, d), or (d,) for a 1-D x."""
    return _matmul_via(lib.qwen3c_matmul_q16, t, w_data, x, d, n_threads)


# ---- q24 kernels (tests) ----

Q24_TYPES = ("Q8_0", "Q4_0", "Q4_1")
Q24K_TYPES = ("Q4_K", "Q5_K", "Q6_K")  # the same path, q24k kernels


def matmul_q24(t, w_data, x, d: int, n_threads: int = 1) -> np.ndarray:
    """Like `matmul`, through the q24 path (W packed into 16-row groups, x quantized to 24-bit
    blocks of 32): the default arithmetic of the forward pass for these types.

    x (n_tok, n) or (n,) float32; W of type t (Q8_0 / Q4_0 / Q4_1 / Q4_K / Q5_K / Q6_K) has
    shape (d, n).
    Returns float32 (n_tok, d), or (d,) for a 1-D x."""
    return _matmul_via(lib.qwen3c_matmul_q24, t, w_data, x, d, n_threads)


# ---- sessions and batches (several conversations on one model) -----------------------------

def context_rewind_point(ctx_ptr, pos: int) -> int:
    """Where the context can continue from if only its first pos positions are kept."""
    return int(lib.qwen3c_context_rewind_point(ctx_ptr, int(pos)))


def context_copy_prefix(dst_ptr, src_ptr, n_tokens: int) -> None:
    """Copy the KV cache positions [0, n_tokens) of src into dst."""
    err = _Err()
    _check(lib.qwen3c_context_copy_prefix(dst_ptr, src_ptr, int(n_tokens), err.buf, ERR_SIZE), err)


def batch_create(model_ptr, n_tokens: int, n_seqs: int, n_threads: int, activations: str):
    """A qwen3c_batch * (free with batch_free)."""
    err = _Err()
    params = ffi.new("qwen3c_batch_params *", lib.qwen3c_batch_default_params())
    params.n_tokens = n_tokens
    params.n_seqs = n_seqs
    params.n_threads = n_threads
    params.activations = ACTIVATIONS[activations]
    out = ffi.new("qwen3c_batch **")
    _check(lib.qwen3c_batch_create(model_ptr, params, out, err.buf, ERR_SIZE), err)
    return out[0]


def batch_free(batch_ptr) -> None:
    lib.qwen3c_batch_free(batch_ptr)


def forward_batch(batch_ptr, items, vocab_size: int) -> list:
    """items: [(ctx_ptr, int32 token array (checked), pos, want_logits)]. Returns, per item,
    its last token's logits ((vocab_size,) float32) or None."""
    seqs = ffi.new("qwen3c_batch_seq[]", len(items))
    keep, out = [], []
    for i, (ctx_ptr, toks, pos, want) in enumerate(items):
        seqs[i].ctx = ctx_ptr
        seqs[i].tokens = ffi.cast("const int32_t *", ffi.from_buffer(toks))
        seqs[i].n_tokens = int(toks.size)
        seqs[i].pos = int(pos)
        lg = np.empty(vocab_size, dtype=np.float32) if want else None
        seqs[i].logits = ffi.cast("float *", ffi.from_buffer(lg)) if want else ffi.NULL
        keep.append(toks)
        out.append(lg)
    err = _Err()
    _check(lib.qwen3c_forward_batch(batch_ptr, seqs, len(items), err.buf, ERR_SIZE), err)
    return out


def sampler_sample_masked(handle, logits: np.ndarray, allowed: np.ndarray) -> int:
    """logits: C-contiguous 1-D float32; allowed: C-contiguous int32/uint32 bitmask words
    (bit i % 32 of word i // 32: token i may be picked), at least ceil(n / 32) of them."""
    out = ffi.new("int32_t *")
    err = _Err()
    _check(lib.qwen3c_sampler_sample_masked(
        handle, ffi.from_buffer("float[]", logits), int(logits.shape[0]),
        ffi.cast("const uint32_t *", ffi.from_buffer(allowed)), out, err.buf, ERR_SIZE), err)
    return int(out[0])
