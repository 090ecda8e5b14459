"""Find a model file: a local GGUF path, or a file of a HuggingFace Hub repository.

    resolve_model("Qwen3-0.6B-Q8_0.gguf")                    # a local file
    resolve_model("Qwen/Qwen3-0.6B-GGUF")                    # its Q8_0 file, downloaded once
    resolve_model("Qwen/Qwen3-0.6B-GGUF:Qwen3-0.6B-Q8_0.gguf")
    resolve_model(None)                                      # the default model (the above)

Downloads go through huggingface_hub: its cache (HF_HOME / HF_HUB_CACHE), its progress bar,
HF_HUB_OFFLINE=1 to stay offline. Whatever goes wrong becomes one ModelNotAvailableError
saying what was looked for and what to do.
"""
from __future__ import annotations

import os
import re

from .errors import ModelNotAvailableError

DEFAULT_REPO = "Qwen/Qwen3-0.6B-GGUF"
DEFAULT_FILE = "Qwen3-0.6B-Q8_0.gguf"

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _pick_file(repo_id: str) -> str:
    """The GGUF file to use from a repository given without a file name."""
    if repo_id == DEFAULT_REPO:
        return DEFAULT_FILE
    from huggingface_hub import HfApi
    try:
        files = [f for f in HfApi().list_repo_files(repo_id) if f.endswith(".gguf")]
    except Exception as e:  # offline, unknown repo, no network...
        raise ModelNotAvailableError(
            f"cannot list the files of {repo_id!r} ({type(e).__name__}); name the file as "
            f"'{repo_id}:FILE.gguf'") from None
    if not files:
        raise ModelNotAvailableError(f"the repository {repo_id!r} has no .gguf file")
    for pref in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M"):
        for f in files:
            if pref.lower() in f.lower():
                return f
    return sorted(files)[0]


def resolve_model(model=None) -> str:
    """The local path of `model` (a GGUF path, 'owner/repo', 'owner/repo:file.gguf' or None
    for the default Qwen3-0.6B Q8_0), downloading it with huggingface_hub when needed."""
    if model is None:
        repo_id, filename = DEFAULT_REPO, DEFAULT_FILE
    else:
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a path or a repo id, got {type(model).__name__}")
        model = os.fspath(model)
        if os.path.isfile(model):
            return model
        if os.path.isdir(model):
            raise ModelNotAvailableError(f"{model} is a directory; give the .gguf file in it")
        repo_id, _, filename = model.partition(":")
        if not _REPO_RE.match(repo_id) or model.endswith(".gguf") and not filename:
            raise ModelNotAvailableError(f"no such model file: {model}")
        filename = filename or _pick_file(repo_id)

    from huggingface_hub import hf_hub_download
    try:
        return hf_hub_download(repo_id=repo_id, filename=filename)
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        hint = ("HF_HUB_OFFLINE is set and it is not in the cache" if offline else
                "check the name and your network, or pass the path of a local .gguf file")
        raise ModelNotAvailableError(
            f"cannot get {filename} from {repo_id} ({type(e).__name__}): {hint}") from None
