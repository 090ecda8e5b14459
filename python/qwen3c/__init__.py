"""qwen3c: run and understand Qwen3 language models with a small, exact, fast C engine.

    import qwen3c
    m = qwen3c.Model("Qwen3-0.6B-Q8_0.gguf", n_ctx=2048)
    print(qwen3c.Chat(m).send("What is the capital of France?"))

The C core (csrc/) does the GGUF parsing, the forward pass, the tokenizer and the sampler;
this package is a thin layer over it (see docs/c_vs_transformers.md for the map).
"""
from .errors import (ContextOverflowError, InvalidArgumentError, ModelFormatError, ModelIOError,
                     ModelNotAvailableError, OutOfMemoryError, Qwen3cError, UnsafeModelError,
                     UnsupportedCPUError, UnsupportedModelError)
from .model import Model, ModelConfig
from .sampler import Sampler
from .chat import Chat, chat  # binds qwen3c.chat to the function, not the submodule
from .system import cpu_info

__version__ = "0.1.0"

__all__ = ["Model", "ModelConfig", "Qwen3cError", "ModelFormatError", "UnsupportedModelError",
           "ContextOverflowError", "ModelNotAvailableError", "InvalidArgumentError", "ModelIOError",
           "OutOfMemoryError", "UnsafeModelError", "UnsupportedCPUError", "Sampler", "Chat", "chat",
           "cpu_info"]


