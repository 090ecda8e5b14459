"""The architectures qwen3c runs, in one table: `info`, `audit` and `convert` read it.

Each row names one architecture three ways: its GGUF `general.architecture`, the transformers
class names a checkpoint's config.json lists under "architectures", and its config.json
"model_type"; `convert` says whether `qwen3c convert` turns such a checkpoint into a GGUF
(otherwise llama.cpp's convert_hf_to_gguf.py does). To add an architecture, add a row here and
its loader in csrc/model.c (the C table `ARCHS` is what loading actually accepts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ["Arch", "ARCHITECTURES", "by_gguf", "by_hf", "task_of"]


@dataclass(frozen=True)
class Arch:
    gguf: str                 # general.architecture in a GGUF file
    hf: Tuple[str, ...]       # config.json "architectures" entries
    model_type: str           # config.json "model_type"
    convert: bool             # `qwen3c convert` converts a checkpoint of it
    task: str = "text-generation"


ARCHITECTURES: Tuple[Arch, ...] = (
    Arch(gguf="qwen3", hf=("Qwen3ForCausalLM",), model_type="qwen3", convert=True),
    Arch(gguf="llama", hf=("LlamaForCausalLM",), model_type="llama", convert=False),
    # Qwen3.5's dense text model; the ConditionalGeneration layout's vision tower is skipped
    Arch(gguf="qwen35", hf=("Qwen3_5ForCausalLM", "Qwen3_5ForConditionalGeneration"),
         model_type="qwen3_5", convert=True),
)


def by_gguf(name) -> Optional[Arch]:
    """The row of a GGUF general.architecture, or None when qwen3c does not run it."""
    return next((a for a in ARCHITECTURES if a.gguf == name), None)


def by_hf(architectures, model_type=None) -> Optional[Arch]:
    """The row of a config.json ("architectures" list, "model_type"), or None."""
    names = architectures if isinstance(architectures, (list, tuple)) else [architectures]
    for a in ARCHITECTURES:
        if any(n in a.hf for n in names if isinstance(n, str)):
            return a
    return None


# transformers class-name suffix -> Hugging Face pipeline task
_TASK_SUFFIXES = (("ForCausalLM", "text-generation"), ("LMHeadModel", "text-generation"),
                  ("ForSeq2SeqLM", "text2text-generation"), ("ForMaskedLM", "fill-mask"),
                  ("ForSequenceClassification", "text-classification"),
                  ("ForTokenClassification", "token-classification"),
                  ("ForQuestionAnswering", "question-answering"))


def task_of(architectures) -> Optional[str]:
    """The pipeline task a config.json's "architectures" imply, or None when unclear."""
    a = by_hf(architectures)
    if a is not None:
        return a.task
    names = architectures if isinstance(architectures, (list, tuple)) else [architectures]
    for n in names:
        for suffix, task in _TASK_SUFFIXES:
            if isinstance(n, str) and n.endswith(suffix):
                return task
    return None
