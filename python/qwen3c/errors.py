"""The qwen3c exception tree. `Qwen3cError` is the base and is never raised directly."""


class Qwen3cError(Exception):
    """Base class of every error qwen3c raises on purpose."""


class ModelFormatError(Qwen3cError, ValueError):
    """The GGUF file is malformed: corrupt, truncated or inconsistent."""


class InvalidArgumentError(Qwen3cError, ValueError):
    """An argument the C library refused (out of range, wrong size, inconsistent shapes)."""


class ModelIOError(Qwen3cError, OSError):
    """A file could not be opened, read or mapped."""


class ModelFileNotFoundError(ModelIOError, FileNotFoundError):
    """The model file does not exist (also a FileNotFoundError; .filename is the path)."""

    def __init__(self, message, filename=None):
        super().__init__(message)  # one argument: str(e) is the message, said once
        self.errno = 2  # ENOENT
        self.strerror = message
        self.filename = filename

    def __str__(self):  # OSError would add "[Errno 2] ...: 'path'" (the path twice)
        return str(self.args[0]) if self.args else ""


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


class ChatTemplateError(Qwen3cError, ValueError):
    """A chat template failed: it exceeded a bound of the sandbox (rendered size, loop
    iterations, intermediate sizes, time: `.bound` names it, e.g. "max_seconds"), called
    raise_exception(...) (e.g. roles that do not alternate), used an undefined value, tried
    an unsafe operation, or does not parse. The model is unaffected."""

    def __init__(self, message, bound=None):
        super().__init__(message)
        self.bound = bound


class ModelNotAvailableError(Qwen3cError):
    """A model id or path could not be resolved (missing file, offline hub cache miss)."""


class UnsafeModelError(UnsupportedModelError):
    """A model qwen3c refuses to read because loading it would run code: weights that exist
    only as pickle files (`qwen3c convert`; `qwen3c audit` names the imports they perform)."""
