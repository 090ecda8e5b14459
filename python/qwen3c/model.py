"""`qwen3c.Model`: a loaded GGUF model (the weights, read-only and shared) and its sessions.

    >>> import qwen3c
    >>> with qwen3c.Model("Qwen3-0.6B-Q8_0.gguf", n_ctx=2048) as m:
    ...     logits = m.forward(m.encode("The capital of France is"))
    ...     print(m.decode([int(logits.argmax())]))

As in the C API (qwen3c_model / qwen3c_context), the weights and the KV caches are separate
objects: `m.session(...)` makes another independent KV cache (qwen3c.Session). `m.forward`,
`m.generate`, `m.top_k` run on the model's default session (`m.default_session`), made with
the n_ctx / n_threads / n_batch / kv_cache given here.
"""
from __future__ import annotations

import contextlib
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import _native
from .errors import Qwen3cError
from .session import Session


@dataclass(frozen=True)
class ModelConfig:
    """The hyperparameters read from the GGUF (transformers' Qwen3Config, Qwen3_5TextConfig for
    "qwen35") + the context size."""

    arch: str            # "qwen3", "llama" or "qwen35"
    n_layers: int        # num_hidden_layers
    dim: int             # hidden_size
    hidden_dim: int      # intermediate_size
    n_heads: int         # num_attention_heads
    n_kv_heads: int      # num_key_value_heads
    head_dim: int        # head_dim
    vocab_size: int      # vocab_size (rows of token_embd)
    n_ctx: int           # the (default) session's KV cache length
    rope_theta: float    # rope_theta
    norm_eps: float      # rms_norm_eps
    n_ctx_train: int     # max_position_embeddings
    tied_embeddings: bool  # tie_word_embeddings
    n_params: int        # number of weight elements in the file
    n_threads: int       # threads the (default) session computes with
    # Qwen3.5 ("qwen35"): the hybrid Gated DeltaNet model; for other files every layer is
    # "full_attention" and the linear_* fields are 0
    layer_types: tuple = ()     # layer_types: "linear_attention" / "full_attention" per layer
    n_linear_layers: int = 0    # how many layers are Gated DeltaNet (linear attention)
    linear_conv_kernel: int = 0  # linear_conv_kernel_dim
    linear_n_k_heads: int = 0    # linear_num_key_heads
    linear_n_v_heads: int = 0    # linear_num_value_heads
    linear_k_head_dim: int = 0   # linear_key_head_dim
    linear_v_head_dim: int = 0   # linear_value_head_dim
    rope_dim: int = 0            # rotated dims per head (head_dim * partial_rotary_factor)

    @property
    def is_recurrent(self) -> bool:
        """True when some layers keep a recurrent state (which cannot be rewound freely)."""
        return self.n_linear_layers > 0


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _loaded(attr: str, doc: str) -> property:
    """A read-only view of self.<attr> that raises Qwen3cError once the model is closed."""
    def get(self):
        self._ptr()
        return getattr(self, attr)
    return property(get, doc=doc)


class Model:
    """A Qwen3 (or llama-architecture) GGUF model, with a default session (KV cache).

    Args:
        path: the .gguf file.
        n_ctx: KV cache length in tokens of the default session and, unless they say
            otherwise, of new sessions (0 = the model's context_length, capped at 4096).
        n_threads: threads for the matmuls (0 = all cores).
        n_batch: tokens per internal forward chunk (0 = default 256).
        activations: how Q8_0 / Q4_0 / Q4_1 matmuls (and, for "q24" / "f32", Q4_K / Q5_K /
            Q6_K ones) treat their float32 input x (other weight types always use float32):
            "q24" (default): x rounded to 24-bit fixed point per block of 32 values (a step of
            about the float32 ulp of the block's largest value), exact integer dot products
            against a packed copy of the weights (x86 vpdpbusd or vpmaddubsw; arm64 sdot /
            smmla): float32-level precision (SmolLM2 Q4_1: 3e-6 of the float32 reference) at
            memory speed. On the kernel tiers without SIMD integer dot products ("sse",
            "neon-nodot", "scalar") it runs as "f32"; a batch of 12 or more tokens meets the
            matrices for which float32 is faster as "f32" does, with the same bits (the
            K-quants, Q8_0 and Q4_0 on "avx512" and "avx2"; Q4_1 on "avx2"). The weights are
            copied once at load into
            huge pages (F32 / F16 / BF16 matrices too, as they are: faster decode for float
            files);
            "f32": float32 x against the stored weight blocks, exact up to float32 rounding
            (3e-6 on SmolLM2), compute-bound; nothing is copied: the weights stay mmapped
            (as with "q16" / "q8");
            "q16": x rounded to 16-bit blocks of 32 values, exact integer dot products (AVX-512
            VNNI): faster, relative logit error ~1e-3 on SmolLM2 (a block holding an outlier
            activation is rounded coarsely);
            "q8": 8-bit blocks as llama.cpp does: fastest, ~4e-2 on SmolLM2 (it can change
            greedy answers). docs/precision.md has the numbers.
        kv_cache: how the KV cache stores keys and values: "f32" (default) as computed; "f16"
            (opt-in) rounded to IEEE float16 (relative error <= 4.9e-4 per value): half the
            cache memory, and half the bytes attention reads per generated token at long
            context. docs/precision.md has the effect on the logits.
        n_checkpoints: slots per session for checkpoints of the recurrent state (Qwen3.5;
            0 = default 4), see Session.checkpoint().
    """

    def __init__(self, path, n_ctx: int = 2048, n_threads: int = 0, n_batch: int = 0,
                 activations: str = "q24", kv_cache: str = "f32", n_checkpoints: int = 0):
        path = os.fspath(path)
        if not isinstance(path, str):
            path = os.fsdecode(path)
        n_ctx = _check_int("n_ctx", n_ctx, 0)
        n_threads = _check_int("n_threads", n_threads, 0)
        n_batch = _check_int("n_batch", n_batch, 0)
        n_checkpoints = _check_int("n_checkpoints", n_checkpoints, 0)
        if not isinstance(activations, str) or activations not in _native.ACTIVATIONS:
            raise ValueError(f"activations must be one of {sorted(_native.ACTIVATIONS)}, "
                             f"got {activations!r}")
        if not isinstance(kv_cache, str) or kv_cache not in _native.KV_TYPES:
            raise ValueError(f"kv_cache must be one of {sorted(_native.KV_TYPES)}, "
                             f"got {kv_cache!r}")
        self.path = path
        self._lock = threading.RLock()
        self._model = None
        self._batch = None                  # qwen3c_batch scratch of forward_batch
        self._batch_lock = threading.Lock()  # taken after session locks, never before
        self._sessions = weakref.WeakSet()
        self._activations = activations
        self._kv_cache = kv_cache
        self._session_defaults = dict(n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch,
                                      n_checkpoints=n_checkpoints)
        # q24 (the default) copies the weights into huge pages at load, repacked for its kernels
        # (Q8_0 / Q4_0 / Q4_1) or as they are (F32 / F16 / BF16); the other paths read the file
        self._model = _native.model_load(path, pack_weights=activations == "q24")
        self._finalizer = weakref.finalize(self, _native.model_free, self._model)
        c = _native.model_config(self._model)
        self._base_config = ModelConfig(
            arch=c["arch"], n_layers=c["n_layers"], dim=c["dim"], hidden_dim=c["hidden_dim"],
            n_heads=c["n_heads"], n_kv_heads=c["n_kv_heads"], head_dim=c["head_dim"],
            vocab_size=c["vocab_size"], n_ctx=0, rope_theta=float(c["rope_theta"]),
            norm_eps=float(c["norm_eps"]), n_ctx_train=c["n_ctx_train"],
            tied_embeddings=bool(c["tied_embeddings"]), n_params=int(c["n_params"]),
            n_threads=0,
            layer_types=_native.model_layer_types(self._model, c["n_layers"]),
            n_linear_layers=c["n_linear_layers"], linear_conv_kernel=c["linear_conv_kernel"],
            linear_n_k_heads=c["linear_n_k_heads"], linear_n_v_heads=c["linear_n_v_heads"],
            linear_k_head_dim=c["linear_k_head_dim"], linear_v_head_dim=c["linear_v_head_dim"],
            rope_dim=c["rope_dim"])
        try:
            self._default_session = self.session()
        except BaseException:
            self.close()
            raise
        self._config = self._default_session.config
        self._packed_bytes = _native.model_packed_bytes(self._model)
        self._cpu_tier = _native.model_cpu_tier(self._model)
        self._tokenizer = None
        self._metadata = None

    # ---- what was loaded: each raises once the model is closed (`path` and `closed` do not,
    # ---- like a closed file's name)
    config = _loaded("_config", "The hyperparameters read from the GGUF, with the default "
                                "session's n_ctx and n_threads (ModelConfig).")
    default_session = _loaded("_default_session", "The session (KV cache) Model.forward / "
                                                  "generate / top_k run on.")
    activations = _loaded("_activations", "The matmul arithmetic for Q8_0 / Q4_0 / Q4_1 "
                                          'weights ("q24", "f32", "q16" or "q8").')
    kv_cache = _loaded("_kv_cache", 'The default sessions\' KV cache element type ("f32" or '
                                    '"f16").')
    packed_bytes = _loaded("_packed_bytes", "Bytes of weights copied at load into huge pages "
                           "(q24 only; Q8_0 / Q4_0 / Q4_1 / K-quant matrices only on the avx512, "
                           "avx2, neon and neon-i8mm tiers); 0: the weights are read from the "
                           "mapped file.")
    cpu_tier = _loaded("_cpu_tier", 'The CPU kernel tier this model computes with ("avx512", '
                       '"avx2", "sse", "neon-i8mm", "neon", "neon-nodot", "scalar"): the best '
                       "this CPU runs, or QWEN3C_CPU's (qwen3c.cpu_info() has the details).")

    # ---- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Close every session (their KV caches are freed), then unmap the file. Further use
        of the model or its sessions raises Qwen3cError; closing twice is fine."""
        with self._lock:
            if self._model is None:
                return
            for s in list(self._sessions):
                s.close("the model is closed")   # waits for a forward running on it
            with self._batch_lock:
                if self._batch is not None:
                    _native.batch_free(self._batch)
                    self._batch = None
            self._finalizer()
            self._model = None

    @property
    def closed(self) -> bool:
        return self._model is None

    def __enter__(self):
        self._ptr()
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else f"{self._config.arch} n_ctx={self._config.n_ctx}"
        return f"<qwen3c.Model {os.path.basename(self.path)!r} {state}>"

    def _ptr(self):
        """The live `qwen3c_model *` (for the tokenizer layer and new sessions)."""
        if self._model is None:
            raise Qwen3cError("the model is closed")
        return self._model

    # ---- sessions ----------------------------------------------------------------------
    def session(self, n_ctx: int | None = None, kv_cache: str | None = None,
                n_threads: int | None = None, n_batch: int | None = None,
                n_checkpoints: int | None = None) -> Session:
        """A new, independent KV cache on this model's weights (qwen3c.Session).

        Arguments left None take the values given to Model(...). It holds a reference to the
        model; closing the model closes it."""
        d = self._session_defaults
        n_ctx = d["n_ctx"] if n_ctx is None else _check_int("n_ctx", n_ctx, 0)
        n_threads = d["n_threads"] if n_threads is None else _check_int("n_threads", n_threads, 0)
        n_batch = d["n_batch"] if n_batch is None else _check_int("n_batch", n_batch, 0)
        n_checkpoints = d["n_checkpoints"] if n_checkpoints is None else \
            _check_int("n_checkpoints", n_checkpoints, 0)
        kv_cache = self.kv_cache if kv_cache is None else kv_cache
        if not isinstance(kv_cache, str) or kv_cache not in _native.KV_TYPES:
            raise ValueError(f"kv_cache must be one of {sorted(_native.KV_TYPES)}, "
                             f"got {kv_cache!r}")
        with self._lock:
            s = Session(self, n_ctx, n_threads, n_batch, kv_cache, n_checkpoints)
            self._sessions.add(s)
            return s

    @property
    def n_tokens_forwarded(self) -> int:
        """Tokens run through the default session since the model was created."""
        return self.default_session.n_tokens_forwarded

    # ---- the transformer ---------------------------------------------------------------
    def forward(self, tokens: Sequence[int], pos: int = 0, all_logits: bool = False) -> np.ndarray:
        """Run tokens at positions pos.. of the default session and return float32 logits.

        Writes the KV cache at positions pos .. pos+len(tokens)-1 and attends to every earlier
        position. Returns (vocab_size,) logits of the last token, or (len(tokens), vocab_size)
        with all_logits=True. Raises ContextOverflowError / ValueError before any compute --
        also (Qwen3.5) for a pos the recurrent state cannot restart at (see rewind_point).
        """
        self._ptr()
        return self.default_session.forward(tokens, pos, all_logits)

    # ---- where the default session can continue (Qwen3.5's recurrent state) ------------
    @property
    def n_past(self) -> int:
        """Leading positions the default session holds (see Session.n_past)."""
        return self.default_session.n_past

    def rewind_point(self, pos: int) -> int:
        """Where the default session can continue when only its first pos positions are kept
        (see Session.rewind_point)."""
        return self.default_session.rewind_point(pos)

    def checkpoint(self) -> None:
        """Checkpoint the default session's recurrent state (see Session.checkpoint)."""
        self.default_session.checkpoint()

    @property
    def checkpoints(self) -> list:
        """Positions of the default session's checkpoints, ascending."""
        return self.default_session.checkpoints

    def forward_trace(self, tokens: Sequence[int], pos: int = 0):
        """Like forward(all_logits=True), and also return the residual stream of every layer:
        (logits (n, V), hidden (n_layers + 2, n, dim)) with hidden[0] = embeddings,
        hidden[1 + l] = output of layer l, hidden[-1] = after the final norm."""
        self._ptr()
        return self.default_session.forward_trace(tokens, pos)

    def forward_batch(self, items) -> list:
        """One forward pass over tokens of several sessions of this model, every weight
        matrix read once for all of them (C: qwen3c_forward_batch).

        items: [(session, tokens, pos), ...] or (session, tokens, pos, want_logits): for each,
        what session.forward(tokens, pos) does -- the same logits to float rounding, the same
        cache and record -- prefill chunks and single decode tokens mixed freely. Each session
        at most once. Returns, per item, the last token's (vocab_size,) logits, or None when
        want_logits is False. Raises ContextOverflowError / ValueError before any compute."""
        self._ptr()
        items = list(items)
        if not items:
            return []
        checked, seen = [], set()
        for it in items:
            if not isinstance(it, tuple) or len(it) not in (3, 4):
                raise TypeError("forward_batch items are (session, tokens, pos[, want_logits])")
            s, toks, pos = it[:3]
            want = bool(it[3]) if len(it) == 4 else True
            if not isinstance(s, Session) or s.model is not self:
                raise ValueError("forward_batch: every session must be a session of this model")
            if id(s) in seen:
                raise ValueError("forward_batch: a session appears twice")
            seen.add(id(s))
            checked.append([s, toks, pos, want])
        n_total = 0
        with contextlib.ExitStack() as stack:
            for s, *_ in sorted(checked, key=lambda c: id(c[0])):  # one lock order: no deadlock
                stack.enter_context(s.lock)
            for c in checked:
                c[1], c[2] = c[0]._check(c[1], c[2])
                n_total += int(c[1].size)
            with self._batch_lock:
                batch = self._batch_for(n_total, len(checked))
                for s, toks, pos, _ in checked:
                    del s._tokens[pos:]
                out = _native.forward_batch(
                    batch, [(s._ctx_ptr(), toks, pos, want) for s, toks, pos, want in checked],
                    self.config.vocab_size)
            for s, toks, pos, _ in checked:
                s._record(toks, pos)
        return out

    def _batch_for(self, n_tokens: int, n_seqs: int):
        """The qwen3c_batch scratch, (re)made large enough (under self._batch_lock)."""
        self._ptr()
        need = (max(256, n_tokens), max(64, n_seqs))
        if self._batch is None or self._batch_size[0] < n_tokens or self._batch_size[1] < n_seqs:
            if self._batch is not None:
                _native.batch_free(self._batch)
                self._batch = None
            self._batch = _native.batch_create(self._model, need[0], need[1],
                                               self._session_defaults["n_threads"], self.activations)
            self._batch_size = need
        return self._batch

    # ---- inspection: attention and the logit lens (qwen3c.lens, qwen3c.plots) ----------
    def attention(self, tokens: Sequence[int], pos: int = 0, max_bytes: int = 4 << 30) -> np.ndarray:
        """The attention probabilities of a forward over tokens at positions pos..:
        float32 (n_layers, n_heads, n, pos + n), [l, h, t, s] = softmax(q k^T / sqrt(head_dim)
        + causal mask) of layer l, head h, query token t over key position s (0 past pos + t):
        transformers' output_attentions with eager attention. Writes the KV cache as forward()
        does. Raises ValueError when the array would exceed max_bytes (default 4 GiB)."""
        return self._forward_attention(tokens, pos, max_bytes, trace=False)

    def forward_attention(self, tokens: Sequence[int], pos: int = 0, max_bytes: int = 4 << 30):
        """One forward that returns everything there is to see: (logits (n, V), hidden
        (n_layers + 2, n, dim) as forward_trace returns them, attention (n_layers, n_heads, n,
        pos + n) as attention() does)."""
        attn, logits, hidden = self._forward_attention(tokens, pos, max_bytes, trace=True)
        return logits, hidden, attn

    def _forward_attention(self, tokens, pos, max_bytes, trace):
        self._ptr()
        return self.default_session._forward_attention(tokens, pos, max_bytes, trace)

    def lm_head(self, hidden) -> np.ndarray:
        """logits = lm_head(norm(hidden)) for hidden (n, dim) -> (n, V), or (dim,) -> (V,): the
        model's own final norm and LM head, in C (the logit lens). hidden from forward_trace:
        hidden[n_layers] (the last layer's output) gives forward()'s logits. The KV cache is
        not touched."""
        self._ptr()
        return self.default_session.lm_head(hidden)

    # ---- file contents -----------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        """GGUF metadata: {key: value as text} (arrays shown as '[n items]')."""
        self._ptr()
        if self._metadata is None:
            self._metadata = _native.model_metadata(self._ptr())
        return dict(self._metadata)

    @property
    def tensors(self) -> list:
        """[(name, type name, shape in GGUF order, nbytes), ...] for every tensor in the file."""
        return _native.model_tensors(self._ptr())

    @property
    def chat_template(self):
        """The Jinja chat template the GGUF carries (tokenizer.chat_template), or None."""
        return _native.model_meta_str(self._ptr(), "tokenizer.chat_template")

    # ---- tokenizer (python/qwen3c/tokenizer.py) -----------------------------------------
    @property
    def tokenizer(self):
        self._ptr()
        if self._tokenizer is None:
            from .tokenizer import Tokenizer
            self._tokenizer = Tokenizer(self)
        return self._tokenizer

    def encode(self, text: str, special: bool = False) -> list:
        """Text -> token ids. special=True turns control-token text (<|im_start|>...) into ids."""
        return self.tokenizer.encode(text, special=special)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def token_to_bytes(self, token_id: int) -> bytes:
        return self.tokenizer.token_to_bytes(token_id)

    @property
    def special_tokens(self):
        return self.tokenizer.special_tokens

    def stream_decoder(self):
        return self.tokenizer.stream_decoder()

    # ---- generation, chat and inspection (other modules) --------------------------------
    def generate(self, prompt_or_tokens, max_tokens: int = 256, sampler=None, stop=None, **kw):
        """Yield text pieces; see qwen3c.generate.generate."""
        from .generate import generate
        return generate(self, prompt_or_tokens, max_tokens=max_tokens, sampler=sampler, stop=stop, **kw)

    def apply_chat_template(self, messages, enable_thinking=None,
                            add_generation_prompt: bool = True, **kw) -> str:
        """Render messages as the model's chat template does (see qwen3c.chat_template);
        enable_thinking None: the template's default."""
        from .chat_template import apply_chat_template
        return apply_chat_template(self, messages, enable_thinking=enable_thinking,
                                   add_generation_prompt=add_generation_prompt, **kw)

    def top_k(self, tokens_or_text, k: int = 10, **kw):
        """The k most likely next tokens as [(id, text, prob), ...]; see qwen3c.introspect."""
        from .introspect import top_k
        return top_k(self, tokens_or_text, k=k, **kw)
