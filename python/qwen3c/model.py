"""`qwen3c.Model`: a loaded GGUF model plus one inference context (KV cache + activations).

    >>> import qwen3c
    >>> with qwen3c.Model("Qwen3-0.6B-Q8_0.gguf", n_ctx=2048) as m:
    ...     logits = m.forward(m.encode("The capital of France is"))
    ...     print(m.decode([int(logits.argmax())]))
"""
from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import _native
from .errors import Qwen3cError


@dataclass(frozen=True)
class ModelConfig:
    """The hyperparameters read from the GGUF (transformers' Qwen3Config) + the context size."""

    arch: str            # "qwen3" or "llama"
    n_layers: int        # num_hidden_layers
    dim: int             # hidden_size
    hidden_dim: int      # intermediate_size
    n_heads: int         # num_attention_heads
    n_kv_heads: int      # num_key_value_heads
    head_dim: int        # head_dim
    vocab_size: int      # vocab_size (rows of token_embd)
    n_ctx: int           # this context's KV cache length
    rope_theta: float    # rope_theta
    norm_eps: float      # rms_norm_eps
    n_ctx_train: int     # max_position_embeddings
    tied_embeddings: bool  # tie_word_embeddings
    n_params: int        # number of weight elements in the file
    n_threads: int       # threads this context computes with


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class Model:
    """A Qwen3 (or llama-architecture) GGUF model with its own KV cache.

    Args:
        path: the .gguf file.
        n_ctx: KV cache length in tokens (0 = the model's context_length, capped at 4096).
        n_threads: threads for the matmuls (0 = all cores).
        n_batch: tokens per internal forward chunk (0 = default 256).
        activations: how Q8_0 / Q4_0 / Q4_1 matmuls treat their float32 input x (other weight
            types always use float32):
            "q24" (default): x rounded to 24-bit fixed point per block of 32 values (a step of
            about the float32 ulp of the block's largest value), exact integer dot products
            against a packed copy of the weights (AVX-512 VNNI vpdpbusd; arm64 sdot / smmla):
            float32-level precision (SmolLM2 Q4_1: 3e-6 of the float32 reference) at memory
            speed. On a CPU without them (kernel tiers other than "avx512", "neon",
            "neon_i8mm") it runs as "f32". The weights are copied once at load into huge pages
            (F32 / F16 / BF16 matrices too, as they are: faster decode for float files);
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
    """

    def __init__(self, path, n_ctx: int = 2048, n_threads: int = 0, n_batch: int = 0,
                 activations: str = "q24", kv_cache: str = "f32"):
        path = os.fspath(path)
        if not isinstance(path, str):
            path = os.fsdecode(path)
        n_ctx = _check_int("n_ctx", n_ctx, 0)
        n_threads = _check_int("n_threads", n_threads, 0)
        n_batch = _check_int("n_batch", n_batch, 0)
        if not isinstance(activations, str) or activations not in _native.ACTIVATIONS:
            raise ValueError(f"activations must be one of {sorted(_native.ACTIVATIONS)}, "
                             f"got {activations!r}")
        if not isinstance(kv_cache, str) or kv_cache not in _native.KV_TYPES:
            raise ValueError(f"kv_cache must be one of {sorted(_native.KV_TYPES)}, "
                             f"got {kv_cache!r}")
        self.path = path
        self._lock = threading.RLock()
        self._model = None
        self._ctx = None
        # q24 (the default) copies the weights into huge pages at load, repacked for its kernels
        # (Q8_0 / Q4_0 / Q4_1) or as they are (F32 / F16 / BF16); the other paths read the file
        self._model = _native.model_load(path, pack_weights=activations == "q24")
        try:
            self._ctx = _native.context_create(self._model, n_ctx, n_threads, n_batch,
                                               activations, kv_cache)
        except BaseException:
            _native.model_free(self._model)
            self._model = None
            raise
        self._finalizer = weakref.finalize(self, Model._release, self._model, self._ctx)
        c = _native.model_config(self._model)
        real_ctx, real_threads = _native.context_info(self._ctx)
        self.config = ModelConfig(
            arch=c["arch"], n_layers=c["n_layers"], dim=c["dim"], hidden_dim=c["hidden_dim"],
            n_heads=c["n_heads"], n_kv_heads=c["n_kv_heads"], head_dim=c["head_dim"],
            vocab_size=c["vocab_size"], n_ctx=real_ctx, rope_theta=float(c["rope_theta"]),
            norm_eps=float(c["norm_eps"]), n_ctx_train=c["n_ctx_train"],
            tied_embeddings=bool(c["tied_embeddings"]), n_params=int(c["n_params"]),
            n_threads=real_threads)
        #: the matmul arithmetic for Q8_0 / Q4_0 / Q4_1 weights ("q24", "f32", "q16" or "q8")
        self.activations = activations
        #: the KV cache's element type ("f32" or "f16")
        self.kv_cache = kv_cache
        #: bytes of weights copied at load into huge pages (q24 only; Q8_0 / Q4_0 / Q4_1
        #: matrices only on the avx512, neon and neon_i8mm tiers); 0: the weights are read from
        #: the mapped file
        self.packed_bytes = _native.model_packed_bytes(self._model)
        #: the CPU kernel tier this model computes with ("avx512", "avx2", "sse", "neon_i8mm",
        #: "neon", "neon_nodot", "scalar"):
        #: the best this CPU runs, or QWEN3C_CPU's (qwen3c.cpu_info() has the details)
        self.cpu_tier = _native.model_cpu_tier(self._model)
        #: tokens run through forward() since the model was created (for tests and stats)
        self.n_tokens_forwarded = 0
        self._tokenizer = None
        self._metadata = None

    # ---- lifetime ----------------------------------------------------------------------
    @staticmethod
    def _release(model_ptr, ctx_ptr):
        _native.context_free(ctx_ptr)
        _native.model_free(model_ptr)

    def close(self) -> None:
        """Free the KV cache and unmap the file. Further use raises; closing twice is fine."""
        with self._lock:
            if self._model is not None:
                self._finalizer()
                self._model = None
                self._ctx = None

    @property
    def closed(self) -> bool:
        return self._model is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else f"n_ctx={self.config.n_ctx}"
        return f"<qwen3c.Model {os.path.basename(self.path)!r} {self.config.arch} {state}>"

    def _ptr(self):
        """The live `qwen3c_model *` (for the tokenizer layer)."""
        if self._model is None:
            raise Qwen3cError("the model is closed")
        return self._model

    def _ctx_ptr(self):
        if self._ctx is None:
            raise Qwen3cError("the model is closed")
        return self._ctx

    # ---- the transformer ---------------------------------------------------------------
    def forward(self, tokens: Sequence[int], pos: int = 0, all_logits: bool = False) -> np.ndarray:
        """Run tokens at positions pos.. and return float32 logits.

        Writes the KV cache at positions pos .. pos+len(tokens)-1 and attends to every earlier
        position. Returns (vocab_size,) logits of the last token, or (len(tokens), vocab_size)
        with all_logits=True. Raises ContextOverflowError / ValueError before any compute.
        """
        with self._lock:
            c = self.config
            out = _native.forward(self._ctx_ptr(), tokens, pos, c.vocab_size, all_logits, c.n_ctx)
            self.n_tokens_forwarded += len(tokens)
            return out

    def forward_trace(self, tokens: Sequence[int], pos: int = 0):
        """Like forward(all_logits=True), and also return the residual stream of every layer:
        (logits (n, V), hidden (n_layers + 2, n, dim)) with hidden[0] = embeddings,
        hidden[1 + l] = output of layer l, hidden[-1] = after the final norm."""
        with self._lock:
            c = self.config
            out = _native.forward(self._ctx_ptr(), tokens, pos, c.vocab_size, True, c.n_ctx,
                                  c.n_layers, c.dim, trace=True)
            self.n_tokens_forwarded += len(tokens)
            return out

    # ---- file contents -----------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        """GGUF metadata: {key: value as text} (arrays shown as '[n items]')."""
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

    def apply_chat_template(self, messages, enable_thinking: bool = True,
                            add_generation_prompt: bool = True, **kw) -> str:
        """Render messages as the model's chat template does (see qwen3c.chat_template)."""
        from .chat_template import apply_chat_template
        return apply_chat_template(self, messages, enable_thinking=enable_thinking,
                                   add_generation_prompt=add_generation_prompt, **kw)

    def top_k(self, tokens_or_text, k: int = 10, **kw):
        """The k most likely next tokens as [(id, text, prob), ...]; see qwen3c.introspect."""
        from .introspect import top_k
        return top_k(self, tokens_or_text, k=k, **kw)
