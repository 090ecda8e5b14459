"""Fetch the parts of llama.cpp the tests compare against, from the llama-cpp-python sdist on PyPI.

    python tools/fetch_llama_cpp_src.py [--sdist] [CACHE_DIR]
        -> prints the vendor/llama.cpp directory (--sdist: the downloaded .tar.gz instead)

llama.cpp's own converter (convert_hf_to_gguf.py + conversion/ + its gguf-py) writes the GGUFs
users download, and models/ggml-vocab-*.gguf with their .inp/.out files are its tokenizer test
vectors. The tests convert tiny Qwen3.5 checkpoints with that converter and tokenize those
vectors, so they need these files -- but only these: the 76 MB sdist is downloaded once
(`pip download --no-deps --no-binary llama-cpp-python`) into CACHE_DIR (default
$XDG_CACHE_HOME/qwen3c, else ~/.cache/qwen3c), and only the files below are extracted next to
it. Nothing of it is committed to this repository. tools/run_tests.sh also builds the llama_cpp
package from the same sdist (the loader check: llama.cpp opens our converter's files).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "0.3.36"
TOP = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
# what the tests use, relative to vendor/llama.cpp (a trailing / takes the whole directory)
WANTED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "models/ggml-vocab-qwen35.gguf",
          "models/ggml-vocab-qwen35.gguf.inp", "models/ggml-vocab-qwen35.gguf.out",
          "models/templates/Qwen3.5-4B.jinja", "LICENSE")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qwen3c"


def sdist_path(cache: Path) -> Path:
    return cache / f"llama_cpp_python-{VERSION}.tar.gz"


def fetch(cache: Path | None = None) -> Path:
    """The extracted vendor/llama.cpp directory, downloading the sdist first if needed."""
    cache = Path(cache) if cache else cache_dir()
    out = cache / f"llama_cpp_python-{VERSION}" / "vendor" / "llama.cpp"
    if all((out / w).exists() for w in WANTED):
        return out
    sdist = sdist_path(cache)
    if not sdist.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                        "llama-cpp-python", f"llama-cpp-python=={VERSION}", "-d", str(cache)],
                       check=True)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(TOP) and
                   any(m.name[len(TOP):] == w or (w.endswith("/") and m.name[len(TOP):].startswith(w))
                       for w in WANTED)]
        try:
            tar.extractall(cache, members=members, filter="data")
        except TypeError:  # Python < 3.11.4: no extraction filters (the members are plain files)
            tar.extractall(cache, members=members)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    want_sdist = "--sdist" in args
    args = [a for a in args if a != "--sdist"]
    cache = Path(args[0]) if args else cache_dir()
    src = fetch(cache)
    print(sdist_path(cache) if want_sdist else src)
