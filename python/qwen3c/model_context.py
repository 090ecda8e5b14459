"""The model context document: what `qwen3c audit --json` and `qwen3c info --json` print.

One JSON object describes a model for a reader that is not a human -- an agent deciding what
it may load and how: what it is (repo, task, architecture, parameter_count, license, base_model,
intended_use, not_recommended_for), what its files are (files, each with a tier, and
weight_formats), whether loading it can run code (safe_to_load with safe_to_load_reasons,
requires_trust_remote_code, remote_code) and what runs it (recommended_runtimes, qwen3c).
docs/model_context_schema.json is its JSON Schema; `info` on a GGUF adds the model card fields
it always had (hyperparameters, tensor_types, tokenizer, ...). This module holds what the two
producers share: the schema version, the tiers, and the constructors of the common parts.
"""
from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Optional

__all__ = ["SCHEMA_VERSION", "TIERS", "new_document", "file_entry", "runtime", "human_count",
           "repo_from_path", "hub_repo_from_url"]

SCHEMA_VERSION = 2

#: what each file tier means (the `tier` of every entry in `files`)
TIERS = {
    "data": "read by its loader as data: loading it cannot run code",
    "executable-on-load": "a pickle: loading it (torch.load, pickle.load, joblib, "
                          "numpy allow_pickle) calls the functions it names",
    "code-if-trusted": "code: it runs only if you opt in (transformers' trust_remote_code=True, "
                       "or running or installing it yourself)",
    "unknown": "not a format audit recognizes: look at it before trusting it",
}


def human_count(n) -> Optional[str]:
    """134515008 -> "134.5M" (None stays None)."""
    if n is None:
        return None
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(int(n))


def new_document(kind: str, path: str) -> dict:
    """A document with every common field at its "unknown" value, in schema order."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,                      # "gguf" | "directory" | "hub"
        "path": path,                      # what was audited, as given
        "repo": None,                      # Hugging Face repo id, when known
        "name": None,
        "task": None,                      # pipeline task, e.g. "text-generation"
        "architecture": None,
        "parameter_count": None,
        "parameter_count_human": None,
        "license": None,
        "base_model": [],
        "intended_use": None,
        "not_recommended_for": None,
        "weight_formats": [],
        "safe_to_load": False,
        "safe_to_load_reasons": [],
        "why": "",
        "requires_trust_remote_code": False,
        "remote_code": [],
        "recommended_runtimes": [],
        "qwen3c": {"status": "no", "reason": "", "command": None},
        "files": [],
        "notes": [],
    }


def file_entry(path: str, size, tier: str, fmt: str, why: str, **extra) -> dict:
    """One entry of `files`. extra: problems, pickle_globals, tensors, parameter_count, ..."""
    assert tier in TIERS, tier
    e = {"path": path, "size": size, "tier": tier, "format": fmt, "why": why, "problems": []}
    e.update(extra)
    return e


def runtime(name: str, command: Optional[str] = None, note: str = "") -> dict:
    """One entry of `recommended_runtimes`."""
    return {"name": name, "command": command, "note": note}


_HUB_URL = re.compile(r"^https?://(?:www\.)?huggingface\.co/(?!datasets/|spaces/)"
                      r"([A-Za-z0-9][\w.-]*/[\w.-]+?)(?:\.git)?/?$")


def hub_repo_from_url(url) -> Optional[str]:
    """"https://huggingface.co/Qwen/Qwen3-0.6B" -> "Qwen/Qwen3-0.6B"; anything else -> None."""
    m = _HUB_URL.match(url.strip()) if isinstance(url, str) else None
    return m.group(1) if m else None


def repo_from_path(path) -> Optional[str]:
    """The Hugging Face repo id a local copy came from, when its path or git remote says so:
    the hub cache layout (.../models--OWNER--NAME/snapshots/REV/...) or a clone whose
    .git/config points at huggingface.co. Reads nothing but that config file."""
    p = Path(path).absolute()
    for part in reversed(p.parts):
        if part.startswith("models--") and part.count("--") >= 2:
            owner, _, name = part[len("models--"):].partition("--")
            return f"{owner}/{name}"
    d = p if p.is_dir() else p.parent
    cfg = d / ".git" / "config"
    try:
        if cfg.is_file() and cfg.stat().st_size < 65536:
            cp = configparser.ConfigParser(interpolation=None, strict=False)
            cp.read_string(cfg.read_text(encoding="utf-8", errors="replace"))
            for section in cp.sections():
                if section.startswith("remote"):
                    repo = hub_repo_from_url(cp[section].get("url", ""))
                    if repo:
                        return repo
    except (OSError, configparser.Error):
        pass
    return None
