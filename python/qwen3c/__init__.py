"""qwen3c: run and understand Qwen3 language models with a small, exact, fast C engine.

    import qwen3c
    m = qwen3c.Model("Qwen3-0.6B-Q8_0.gguf", n_ctx=2048)
    print(qwen3c.Chat(m).send("What is the capital of France?"))

The C core (csrc/) does the GGUF parsing, the forward pass, the tokenizer and the sampler;
this package is a thin layer over it (see docs/c_vs_transformers.md for the map).
"""
from .errors import (ContextOverflowError, ModelFormatError, ModelNotAvailableError, Qwen3cError,
                     UnsupportedModelError)
from .model import Model, ModelConfig

__version__ = "0.1.0"

__all__ = ["Model", "ModelConfig", "Qwen3cError", "ModelFormatError", "UnsupportedModelError",
           "ContextOverflowError", "ModelNotAvailableError", "Sampler", "Chat", "chat", "convert"]


def __getattr__(name):
    # the sampler / chat layers are imported on first use (they are written in their own modules)
    if name == "Sampler":
        from .sampler import Sampler
        return Sampler
    if name == "Chat":
        from .chat import Chat
        return Chat
    if name == "chat":
        from .chat import chat
        return chat
    if name == "convert":
        from .convert import convert
        return convert
    raise AttributeError(f"module 'qwen3c' has no attribute {name!r}")
