"""qwen3c: run and understand Qwen3 language models with a small, exact, fast C engine.

    import qwen3c
    m = qwen3c.Model("Qwen3-0.6B-Q8_0.gguf", n_ctx=2048)
    print(qwen3c.Chat(m).send("What is the capital of France?"))

The C core (csrc/) does the GGUF parsing, the forward pass, the tokenizer and the sampler;
this package is a thin layer over it (see docs/c_vs_transformers.md for the map).
"""
from .errors import (ChatTemplateError, ContextOverflowError, InvalidArgumentError,
                     ModelFileNotFoundError, ModelFormatError, ModelIOError,
                     ModelNotAvailableError, OutOfMemoryError, Qwen3cError, UnsafeModelError,
                     UnsupportedCPUError, UnsupportedModelError)
from .model import Model, ModelConfig
from .sampler import Sampler
from .chat import Chat, chat  # binds qwen3c.chat to the function, not the submodule
from .system import cpu_info


def _version() -> str:
    """The installed distribution's version; in a source tree, pyproject.toml's."""
    import os
    from importlib import metadata
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        dist = metadata.distribution("qwen3c")
        if os.path.abspath(str(dist.locate_file("qwen3c/__init__.py"))) == os.path.join(here, "__init__.py"):
            return dist.version
    except metadata.PackageNotFoundError:
        pass
    import re
    try:
        with open(os.path.join(here, "..", "..", "pyproject.toml"), encoding="utf-8") as f:
            m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
        return m.group(1) if m else "0+unknown"
    except OSError:
        return "0+unknown"


__version__ = _version()

__all__ = ["Model", "ModelConfig", "Qwen3cError", "ModelFormatError", "UnsupportedModelError",
           "ContextOverflowError", "ModelNotAvailableError", "InvalidArgumentError", "ModelIOError",
           "OutOfMemoryError", "UnsafeModelError", "ChatTemplateError", "ModelFileNotFoundError",
           "UnsupportedCPUError", "Sampler", "Chat", "chat", "cpu_info"]


