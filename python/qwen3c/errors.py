"""The qwen3c exception tree. `Qwen3cError` is the base and is never raised directly."""


class Qwen3cError(Exception):
    """Base class of every error qwen3c raises on purpose."""


class ModelFormatError(Qwen3cError, ValueError):
    """The GGUF file is malformed: corrupt, truncated or inconsistent."""


class InvalidArgumentError(Qwen3cError, ValueError):
    """An argument the C library refused (out of range, wrong size, inconsistent shapes)."""


class ModelIOError(Qwen3cError, OSError):
    """A file could not be opened, read or mapped."""


class OutOfMemoryError(Qwen3cError, MemoryError):
    """An allocation failed (a model, a context or a scratch buffer)."""


class UnsupportedModelError(Qwen3cError):
    """A valid file that uses an architecture, tensor type or tokenizer qwen3c does not run."""


class UnsupportedCPUError(Qwen3cError, RuntimeError):
    """QWEN3C_CPU names a kernel tier that is unknown, not in this build, or that this CPU
    cannot run (the message lists the tiers it can)."""


class ContextOverflowError(Qwen3cError):
    """The tokens do not fit in the context window (n_ctx).

    Attributes: n_prompt_tokens (tokens that were asked for, including the ones already in the
    cache where relevant) and n_ctx.
    """

    def __init__(self, message, n_prompt_tokens=None, n_ctx=None):
        super().__init__(message)
        self.n_prompt_tokens = n_prompt_tokens
        self.n_ctx = n_ctx


class ModelNotAvailableError(Qwen3cError):
    """A model id or path could not be resolved (missing file, offline hub cache miss)."""


class UnsafeModelError(UnsupportedModelError):
    """A model qwen3c refuses to read because loading it would run code: weights that exist
    only as pickle files (`qwen3c convert`; `qwen3c audit` names the imports they perform)."""
