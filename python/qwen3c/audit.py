"""`qwen3c audit`: read a model repository as a supply chain, before loading anything.

    audit(path_or_repo_id)       -> dict: the model context document
                                    (docs/model_context_schema.json)
    format_audit(doc)            -> the text `audit` prints
    check_convert_input(hf_dir)  what `qwen3c convert` checks first (refuses pickle-only weights)
    main(argv)                   `python -m qwen3c audit PATH [--json] [--strict]`

A model repository holds data (config.json, tokenizer files, safetensors, GGUF, the README)
and may hold code: pickle checkpoints (`*.bin`, `*.pt`, `*.pth`, ...), which call functions
while they load; `modeling_*.py` / `tokenization_*.py` that transformers runs when an `auto_map`
entry asks for them and the user passes trust_remote_code=True; scripts and requirements.
Every file gets a tier (model_context.TIERS): data / executable-on-load / code-if-trusted /
unknown, found by its content, not only its name:

- pickles by their bytes: the zip archives of torch.save (an entry `*/data.pkl`), raw pickle
  streams (protocol header 0x80 0x02..0x05, or a protocol 0/1 stream that parses), numpy
  arrays of Python objects. pickletools.genops walks the opcodes -- it parses, it never
  executes -- and the GLOBAL / STACK_GLOBAL / INST imports are listed (STACK_GLOBAL's operands
  found through a model of the pickle stack and memo), each rated "expected" (what
  torch.load(weights_only=True) allows: tensor rebuilding), "dangerous" (runs commands or code:
  os.system, builtins.eval, subprocess.*, ...) or "unknown" (any other import: it runs that
  module's code);
- safetensors headers validated without reading tensors (safetensors_io.read_header);
- GGUF files with qwen3c's own C reader (gguf_info);
- `auto_map` entries of config.json, tokenizer_config.json and the other *config.json files.

Nothing from the audited repository is imported, executed or unpickled. A hub repo id is
listed with huggingface_hub's model_info (names, sizes, card data, config) -- nothing is
downloaded, so its files are tiered by name only.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import pickletools
import re
import shlex
import stat
import struct
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Optional

from .archs import ARCHITECTURES, by_hf, task_of
from .errors import ModelFormatError, ModelNotAvailableError, Qwen3cError, UnsafeModelError
from .gguf_info import model_info, run_cli
from .model_context import (TIERS, file_entry, human_count, new_document, repo_from_path,
                            runtime)
from .safetensors_io import read_header

__all__ = ["audit", "format_audit", "check_convert_input", "scan_pickle", "pickle_globals",
           "RemoteCodeWarning", "main"]

#: bytes of pickle data walked per file at most (a torch data.pkl is KBs to MBs)
PICKLE_SCAN_LIMIT = 256 << 20
#: files examined in a directory at most
MAX_FILES = 20000
#: size limits of the small files parsed (config JSON, README front matter)
MAX_JSON = 16 << 20
MAX_README = 1 << 20


class RemoteCodeWarning(UserWarning):
    """The repository declares custom code (auto_map / *.py); qwen3c never runs it."""


# ---- pickle: the imports a pickle would perform, found without unpickling --------------------

# what torch.load(weights_only=True) allows (torch/_weights_only_unpickler.py): tensor rebuilding
_EXPECTED = {"collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
             "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device",
             "_codecs.encode", "builtins.bytearray", "builtins.set", "builtins.complex",
             "torch._tensor._rebuild_from_type_v2"}
_EXPECTED_RE = re.compile(
    r"^(torch\._utils\._rebuild_\w+"
    r"|torch\.(storage\.)?\w*Storage"
    r"|torch\.(cuda\.)?\w*Tensor"
    r"|torch\.(float|double|half|bfloat16|int|uint|long|short|bool|complex|cfloat|cdouble|"
    r"chalf|quint|qint|float8_|bits)\w*"
    r"|torch\.per_(tensor|channel)_\w+)$")
# imports that run commands or code by themselves
_DANGEROUS_MODULES = {"os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "runpy",
                      "pty", "commands", "webbrowser", "importlib", "ctypes", "multiprocessing",
                      "code", "codeop", "pdb", "bdb", "pickle", "_pickle", "cPickle", "marshal",
                      "dill", "shelve", "asyncio", "threading", "_thread", "signal", "tempfile",
                      "requests", "urllib", "http", "ftplib", "smtplib", "telnetlib", "pip",
                      "setuptools", "distutils", "platform", "pathlib", "io", "_io", "types",
                      "numpy.testing", "timeit", "trace"}
_DANGEROUS_BUILTINS = {"eval", "exec", "compile", "open", "__import__", "getattr", "setattr",
                       "delattr", "globals", "locals", "vars", "input", "breakpoint", "apply",
                       "execfile", "file", "reload", "memoryview", "help", "exit", "quit"}
_DANGEROUS_NAMES = {"operator.attrgetter", "operator.methodcaller", "functools.partial",
                    "functools.reduce", "torch.storage._load_from_bytes", "torch.load",
                    "numpy.load", "joblib.load", "torch.hub.load", "torch.jit.load",
                    "torch.serialization.load"}


def rate_global(name: str) -> str:
    """"expected" (torch's weights_only allowlist), "dangerous" or "unknown". A name computed
    at load time ("?" parts: the stack model could not see it) counts as dangerous: pickles that
    torch or the pickle module write always name their imports literally."""
    if name in _EXPECTED or _EXPECTED_RE.match(name):
        return "expected"
    if "?" in name:
        return "dangerous"
    module, _, attr = name.rpartition(".")
    top = module.split(".")[0]
    if (name in _DANGEROUS_NAMES or module in _DANGEROUS_MODULES or top in _DANGEROUS_MODULES
            or (top in ("builtins", "__builtin__") and attr in _DANGEROUS_BUILTINS)):
        return "dangerous"
    return "unknown"


class _Reader:
    """A read-only stream over `f` that hands out at most `limit` bytes (a hostile length field,
    BINBYTES8 of 2^60, gets what is there, never an allocation of what is claimed), with a
    one-pickle lookahead (unread). It has no tell(), so pickletools does not ask for positions."""

    def __init__(self, f, limit: int):
        self._f, self.left, self._back = f, limit, b""

    def read(self, n=-1):
        n = self.left + len(self._back) if n is None or n < 0 else n
        out = self._back[:n]
        self._back = self._back[n:]
        want = min(n - len(out), self.left)
        if want > 0:
            data = self._f.read(want)
            self.left -= len(data)
            out += data
        return out

    def unread(self, data: bytes):
        self._back = data + self._back

    def readline(self, size=-1):
        # protocol 0 arguments end with a newline; a line is at most 64 KB here
        out = bytearray()
        while len(out) < 65536:
            c = self.read(1)
            if not c:
                break
            out += c
            if c == b"\n":
                break
        return bytes(out)


_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
               "SHORT_BINUNICODE", "BINUNICODE8"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MARK = object()


def pickle_globals(stream, found: Optional[list] = None) -> list:
    """The imports one pickle in `stream` would perform when loaded, in order, as "module.name"
    strings ("?" parts where a name is computed), found by walking its opcodes with
    pickletools.genops (which parses and never executes). The stream is left after the STOP
    opcode. They are appended to `found` as they are met (returned too), so that a pickle
    malformed further on -- which pickle.load would run up to there -- still names them; the
    malformation raises (ValueError mostly)."""
    found = [] if found is None else found
    stack, memo = [], {}
    for op, arg, _pos in pickletools.genops(stream):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.append(f"{module}.{attr}")
        elif name == "STACK_GLOBAL":
            m = stack[-2] if len(stack) >= 2 else None
            a = stack[-1] if stack else None
            found.append(f"{m if isinstance(m, str) else '?'}.{a if isinstance(a, str) else '?'}")
        elif name in ("EXT1", "EXT2", "EXT4"):
            found.append(f"copyreg.extension_{arg}")
        # model the stack: what each opcode pops and pushes (strings and memo values kept)
        before, after = op.stack_before, op.stack_after
        n_pop = len(before)
        top = stack[-1] if stack else None
        if pickletools.markobject in before or (name == "POP" and stack and stack[-1] is _MARK):
            while stack and stack[-1] is not _MARK:
                stack.pop()
            if not stack:
                raise ValueError(f"{name} without a MARK")
            stack.pop()
            n_pop = before.index(pickletools.markobject) if pickletools.markobject in before else 0
        if n_pop:
            if len(stack) < n_pop:
                raise ValueError(f"{name} pops {n_pop} items from a stack of {len(stack)}")
            del stack[-n_pop:]
        if name in _PUT_OPS:
            memo[arg] = stack[-1] if stack else None
        if name == "MEMOIZE":  # [any] -> [any]: stores the top, leaves it in place
            memo[len(memo)] = top
            stack.append(top)
        elif pickletools.markobject in after:
            stack.append(_MARK)
        elif name in _STRING_OPS:
            stack.append(arg if isinstance(arg, str) else None)
        elif name in _GET_OPS:
            stack.append(memo.get(arg))
        elif name in ("GLOBAL", "STACK_GLOBAL", "INST"):
            stack.append(found[-1])
        else:
            stack.extend([None] * len(after))
    return found


def scan_pickle(stream, limit: int = PICKLE_SCAN_LIMIT) -> dict:
    """Walk every pickle of a stream that holds one or more of them back to back (torch's
    legacy format: magic, protocol, sys info, the object, storage keys; then raw storage bytes,
    where the walk stops). Returns {"globals": [{"name", "risk"}...] (each import once),
    "complete": False when the walk stopped at `limit` bytes, "error": why the first pickle
    does not parse, or None}."""
    r = _Reader(stream, limit)
    names, error, complete = [], None, True
    for n in range(16):
        head = r.read(1)
        if not head or (n > 0 and head != b"\x80"):
            break  # the end, or data after the pickles (legacy torch storages)
        r.unread(head)
        try:
            pickle_globals(r, names)
        except Exception as e:  # noqa: BLE001 -- whatever pickletools raises: not a pickle
            if r.left == 0:
                complete = False
            elif n == 0:
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            break
    seen, out = set(), []
    for g in names:
        if g not in seen:
            seen.add(g)
            out.append({"name": g, "risk": rate_global(g)})
    return {"globals": out, "complete": complete, "error": error}


def _looks_like_pickle(head: bytes) -> bool:
    """Protocol 2+ pickles start with PROTO (0x80) and the protocol number."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _describe_globals(globs) -> str:
    if not globs:
        return "imports nothing"
    worst = [g["name"] for g in globs if g["risk"] != "expected"]
    shown = ", ".join(g["name"] + ("" if g["risk"] == "expected" else f" [{g['risk']}]")
                      for g in sorted(globs, key=lambda g: g["risk"] == "expected")[:8])
    more = f" and {len(globs) - 8} more" if len(globs) > 8 else ""
    if not worst:
        return f"imports only tensor-rebuilding functions torch's weights_only loader allows ({shown}{more})"
    return f"imports {shown}{more}"


# ---- one file --------------------------------------------------------------------------------

_TEXT_DATA = {".json": "json", ".md": "markdown", ".txt": "text", ".yaml": "yaml",
              ".yml": "yaml", ".jinja": "jinja template", ".tiktoken": "tiktoken vocabulary",
              ".csv": "text", ".cff": "text", ".gitattributes": "git attributes",
              ".gitignore": "text"}
_BINARY_DATA = {".model": "sentencepiece model", ".png": "image", ".jpg": "image",
                ".jpeg": "image", ".gif": "image", ".webp": "image", ".svg": "image",
                ".onnx": "onnx", ".msgpack": "flax msgpack", ".tflite": "tflite",
                ".wav": "audio", ".mp3": "audio", ".flac": "audio", ".pdf": "pdf"}
_PICKLE_NAMES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dat", ".mar")
_SCRIPT_NAMES = (".py", ".pyc", ".sh", ".bash", ".bat", ".ps1", ".ipynb", ".pyx", ".so", ".dll",
                 ".dylib", ".exe")
_LICENSE_NAMES = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE|USE_POLICY|README)(\.\w+)?$", re.I)


def _pickle_entry(rel, size, fmt, scan, why_prefix):
    globs = scan["globals"]
    problems = []
    if scan["error"]:
        problems.append(f"the pickle does not parse ({scan['error']}): the imports listed may be "
                        f"incomplete")
    elif not scan["complete"]:
        problems.append(f"scan stopped after {PICKLE_SCAN_LIMIT >> 20} MB: imports after that "
                        f"point are not listed")
    return file_entry(rel, size, "executable-on-load", fmt,
                      f"{why_prefix}: loading it runs the pickle, which {_describe_globals(globs)}",
                      problems=problems, pickle_globals=globs)


def _zip_entry(path: Path, rel: str, size: int) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()[:100000]
            pkls = [i for i in infos if i.filename.endswith(".pkl")]
            npys = [i for i in infos if i.filename.endswith(".npy")]
            if pkls:
                globs, errors, complete = [], [], True
                for i in pkls[:64]:
                    with z.open(i) as f:
                        scan = scan_pickle(f)
                    globs += [g for g in scan["globals"] if g not in globs]
                    complete &= scan["complete"]
                    if scan["error"]:
                        errors.append(f"{i.filename}: {scan['error']}")
                torch = any(i.filename.endswith("data.pkl") for i in pkls)
                scan = {"globals": globs, "complete": complete,
                        "error": "; ".join(errors) or None}
                return _pickle_entry(rel, size, "pytorch-zip" if torch else "zip-pickle", scan,
                                     "a torch.save zip archive (data.pkl)" if torch else
                                     "a zip archive holding pickles")
            if npys and len(npys) == len(infos):
                objects = []
                for i in npys[:4096]:
                    with z.open(i) as f:
                        if _npy_has_objects(f.read(4096)):
                            objects.append(i.filename)
                if objects:
                    return file_entry(rel, size, "executable-on-load", "numpy-npz",
                                      f"a numpy .npz whose arrays {', '.join(objects[:4])} hold "
                                      f"Python objects (a pickle, run by np.load(allow_pickle=True))")
                return file_entry(rel, size, "data", "numpy-npz",
                                  "a numpy .npz of plain arrays (np.load refuses pickles by default)")
            return file_entry(rel, size, "unknown", "zip",
                              f"a zip archive of {len(infos)} files without pickles")
    except Exception as e:  # noqa: BLE001 -- BadZipFile, zlib.error, encrypted entries, ...
        return file_entry(rel, size, "unknown", "zip", "starts like a zip archive",
                          problems=[f"not a readable zip archive ({type(e).__name__}: {e})"])


def _npy_has_objects(head: bytes) -> bool:
    """A .npy header whose dtype holds Python objects ('O'): np.load would unpickle them."""
    if not head.startswith(b"\x93NUMPY") or len(head) < 10:
        return False
    major = head[6]
    hlen_size = 2 if major == 1 else 4
    (hlen,) = struct.unpack("<H" if hlen_size == 2 else "<I", head[8:8 + hlen_size])
    text = head[8 + hlen_size:8 + hlen_size + hlen].decode("latin-1", "replace")
    try:
        d = ast.literal_eval(text.strip())  # a dict literal: parsed, never evaluated as code
        descr = d.get("descr") if isinstance(d, dict) else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return True  # np.load cannot read it as plain data either
    return "O" in repr(descr)


def _safetensors_entry(path: Path, rel: str, size: int) -> dict:
    why = "safetensors: a JSON header and raw tensor bytes, no code"
    try:
        _, tensors, _ = read_header(path)
    except (ModelFormatError, OSError) as e:
        msg = str(e)
        prefix = f"{path}: "
        return file_entry(rel, size, "data", "safetensors", why,
                          problems=[msg[len(prefix):] if msg.startswith(prefix) else msg])
    n_params = 0
    dtypes = {}
    for dtype, shape, b, e in tensors.values():
        n = 1
        for d in shape:
            n *= d
        n_params += n
        t = dtypes.setdefault(dtype, {"type": dtype, "n_tensors": 0, "n_elements": 0, "n_bytes": 0})
        t["n_tensors"] += 1
        t["n_elements"] += n
        t["n_bytes"] += e - b
    return file_entry(rel, size, "data", "safetensors", why + " (header validated)",
                      tensors=len(tensors), parameter_count=n_params,
                      tensor_types=sorted(dtypes.values(), key=lambda t: (-t["n_bytes"], t["type"])))


def _gguf_entry(path: Path, rel: str, size: int) -> tuple:
    """(file entry, model_info document or None) of a GGUF file."""
    try:
        info = model_info(path)
    except (Qwen3cError, OSError, ValueError) as e:
        return file_entry(rel, size, "data", "gguf", "GGUF: header, metadata and tensor bytes",
                          problems=[f"qwen3c's reader rejects it: {e}"]), None
    entry = dict(info["files"][0])
    entry["path"] = rel
    return entry, info


def classify_file(path: Path, rel: str) -> tuple:
    """(file entry, GGUF document or None) for one local file, by content first, then name."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            return file_entry(rel, None, "unknown", "special",
                              "not a regular file (a pipe, socket or device): not read"), None
        size = st.st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        return file_entry(rel, None, "unknown", "unreadable", "cannot be read",
                          problems=[str(e)]), None
    name = path.name
    suffix = path.suffix.lower()
    if head[:4] == b"GGUF":
        return _gguf_entry(path, rel, size)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_entry(path, rel, size), None
    if _looks_like_pickle(head):
        with open(path, "rb") as f:
            scan = scan_pickle(f)
        return _pickle_entry(rel, size, "pickle", scan, "a pickle stream"), None
    if head.startswith(b"\x93NUMPY"):
        with open(path, "rb") as f:
            npy_head = f.read(65536)
        if _npy_has_objects(npy_head):
            return file_entry(rel, size, "executable-on-load", "numpy",
                              "a numpy array of Python objects: np.load(allow_pickle=True) "
                              "unpickles it"), None
        return file_entry(rel, size, "data", "numpy", "a numpy array of plain numbers"), None
    if suffix == ".safetensors" or (suffix not in _TEXT_DATA and head[8:9] == b"{"
                                    and 0 < int.from_bytes(head[:8], "little") <= size - 8):
        return _safetensors_entry(path, rel, size), None
    if suffix in _SCRIPT_NAMES:
        return file_entry(rel, size, "code-if-trusted", "python" if suffix == ".py" else "script",
                          "code: runs only if transformers is asked to (trust_remote_code=True) "
                          "or someone runs it"), None
    if name.lower().startswith("requirements") and suffix in (".txt", ".in", ""):
        return file_entry(rel, size, "code-if-trusted", "requirements",
                          "packages the repository's code wants installed: installing them runs "
                          "their setup code"), None
    if suffix in _TEXT_DATA or _LICENSE_NAMES.match(name) or name in (".gitattributes", ".gitignore"):
        entry = file_entry(rel, size, "data", _TEXT_DATA.get(suffix, "text"), "text, read as data")
        if suffix == ".json":
            entry["why"] = "JSON, read as data"
        return entry, None
    if suffix in _BINARY_DATA:
        return file_entry(rel, size, "data", _BINARY_DATA[suffix],
                          f"{_BINARY_DATA[suffix]}, read as data"), None
    # a protocol 0/1 pickle has no header: it is one if its opcodes parse up to STOP
    with open(path, "rb") as f:
        try:
            globs = pickle_globals(_Reader(f, 1 << 20))
            is_pickle = size > 1
        except Exception:  # noqa: BLE001 -- anything pickletools raises means "not a pickle"
            is_pickle = False
    if is_pickle:
        scan = {"globals": [{"name": g, "risk": rate_global(g)} for g in dict.fromkeys(globs)],
                "complete": True, "error": None}
        return _pickle_entry(rel, size, "pickle", scan, "a pickle stream (protocol 0/1)"), None
    if suffix in _PICKLE_NAMES:
        return file_entry(rel, size, "unknown", "binary",
                          f"named like a pickle checkpoint ({suffix}) but not a pickle, zip or "
                          f"safetensors file"), None
    return file_entry(rel, size, "unknown", "binary" if b"\x00" in head else "text",
                      "not a format audit recognizes"), None


# ---- config.json: remote code, architecture --------------------------------------------------

def _read_json(path: Path):
    """(object, problem) of a small JSON file."""
    try:
        if path.stat().st_size > MAX_JSON:
            return None, f"{path.name} is larger than {MAX_JSON >> 20} MB: not read"
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        return None, f"{path.name} is not valid JSON ({e})"


def _auto_map_needs(config_name: str, cfg: dict, present: set) -> list:
    """The remote-code entries of one config's auto_map (and custom_pipelines)."""
    out = []
    amap = cfg.get("auto_map")
    items = list(amap.items()) if isinstance(amap, dict) else []
    pipes = cfg.get("custom_pipelines")
    if isinstance(pipes, dict):
        for task, spec in pipes.items():
            if isinstance(spec, dict) and isinstance(spec.get("impl"), str):
                items.append((f"custom_pipelines.{task}", spec["impl"]))
    for key, refs in items:
        for ref in (refs if isinstance(refs, list) else [refs]):
            if not isinstance(ref, str) or not ref:
                continue
            repo, sep, local = ref.partition("--")
            if not sep:
                repo, local = None, ref
            module = local.rpartition(".")[0] if "." in local else local
            module_file = module.replace(".", "/") + ".py"
            out.append({"file": config_name, "key": key, "reference": ref, "repo": repo,
                        "module_file": module_file,
                        "present": repo is None and module_file in present})
    return out


def _hyperparameters(cfg: dict) -> dict:
    """config.json -> the GGUF-named hyperparameters of the document (null when absent)."""
    def num(key):
        v = cfg.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    rope = cfg.get("rope_parameters") if isinstance(cfg.get("rope_parameters"), dict) else {}
    theta = rope.get("rope_theta", cfg.get("rope_theta"))
    return {"block_count": num("num_hidden_layers"), "embedding_length": num("hidden_size"),
            "feed_forward_length": num("intermediate_size"),
            "head_count": num("num_attention_heads"), "head_count_kv": num("num_key_value_heads"),
            "key_length": num("head_dim"),
            "rope_freq_base": theta if isinstance(theta, (int, float)) and not isinstance(theta, bool) else None,
            "rms_norm_eps": num("rms_norm_eps"), "vocab_size": num("vocab_size"),
            "tied_embeddings": bool(cfg.get("tie_word_embeddings", False))}


# ---- README: YAML front matter and the stated uses -------------------------------------------

_USE_HEADINGS = re.compile(r"^(intended uses?( (&|and) limitations)?|direct use|uses|"
                           r"how to use|use cases?)\b", re.I)
_NOT_HEADINGS = re.compile(r"^(out[- ]of[- ]scope( uses?)?|not recommended|misuse|"
                           r"limitations|prohibited uses?|bias, risks,? and limitations)\b", re.I)
_PLACEHOLDER = re.compile(r"\[?more information needed\]?", re.I)


def read_front_matter(text: str) -> tuple:
    """(dict, problem) from a README's YAML front matter (--- ... --- at the top), parsed with
    PyYAML's safe loader (plain data only: no Python objects). PyYAML comes with
    huggingface_hub and gguf, two runtime dependencies."""
    if not text.startswith("---"):
        return {}, None
    m = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", text, re.S)
    if not m:
        return {}, "README front matter has no closing ---"
    try:
        import yaml
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(m.group(1), Loader=loader)  # noqa: S506 -- a safe loader
    except ImportError:
        return {}, "PyYAML is not installed: README front matter not read"
    except Exception as e:  # noqa: BLE001 -- yaml.YAMLError, RecursionError on hostile input
        return {}, f"README front matter is not valid YAML ({type(e).__name__})"
    return (data, None) if isinstance(data, dict) else ({}, "README front matter is not a mapping")


def _str_list(v, limit=16) -> list:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [x for x in v if isinstance(x, str)][:limit]
    return []


def _section(text: str, pattern) -> Optional[str]:
    """The first paragraph under the first markdown heading matching `pattern`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m or not pattern.match(m.group(2).strip("*_ ")):
            continue
        level = len(m.group(1))
        body = []
        for nxt in lines[i + 1:]:
            h = re.match(r"^(#{1,6})\s", nxt)
            if h and len(h.group(1)) <= level:
                break
            if h:
                continue  # a sub-heading: keep reading its text
            if nxt.strip():
                body.append(nxt.strip())
            elif body:
                break
        para = " ".join(body).strip()
        if para and not _PLACEHOLDER.fullmatch(para):
            return para[:600] + ("..." if len(para) > 600 else "")
    return None


def read_readme(path: Path) -> dict:
    """license, base_model, pipeline_tag, intended use ... from a model card README."""
    out = {"problems": []}
    try:
        text = path.read_bytes()[:MAX_README].decode("utf-8", "replace")
    except OSError as e:
        out["problems"].append(f"README not read: {e}")
        return out
    fm, problem = read_front_matter(text)
    if problem:
        out["problems"].append(problem)
    lic = fm.get("license")
    if isinstance(lic, str) and lic == "other" and isinstance(fm.get("license_name"), str):
        lic = f"other ({fm['license_name']})"
    out["license"] = lic if isinstance(lic, str) else (", ".join(_str_list(lic)) or None)
    out["license_link"] = fm.get("license_link") if isinstance(fm.get("license_link"), str) else None
    out["base_model"] = _str_list(fm.get("base_model"))
    out["pipeline_tag"] = fm.get("pipeline_tag") if isinstance(fm.get("pipeline_tag"), str) else None
    out["library_name"] = fm.get("library_name") if isinstance(fm.get("library_name"), str) else None
    body = text[text.find("\n---", 3) + 4:] if fm else text
    out["intended_use"] = (fm.get("intended_use") if isinstance(fm.get("intended_use"), str)
                           else _section(body, _USE_HEADINGS))
    out["not_recommended_for"] = (fm.get("out_of_scope_use") if isinstance(fm.get("out_of_scope_use"), str)
                                  else _section(body, _NOT_HEADINGS))
    return out


# ---- the document of a directory -------------------------------------------------------------

def _walk(root: Path) -> list:
    """Relative paths of the files under root (symlinked files followed, symlinked directories
    not entered; .git skipped), sorted."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != ".git")
        for f in files:
            out.append(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/"))
            if len(out) >= MAX_FILES:
                return sorted(out)
    return sorted(out)


_PICKLE_FORMATS = ("pytorch-zip", "zip-pickle", "pickle")
_WEIGHT_PICKLE_NAME = re.compile(r"(^|/)(pytorch_model|model|adapter_model|consolidated|"
                                 r"diffusion_pytorch_model|tf_model|flax_model)[\w.-]*"
                                 r"\.(bin|pt|pth|ckpt)$")


def _is_weight_pickle(f: dict) -> bool:
    """A pickle that holds model weights: it rebuilds tensors, or is named like a checkpoint."""
    return f["format"] in _PICKLE_FORMATS and (
        bool(_WEIGHT_PICKLE_NAME.search(f["path"]))
        or any(g["name"].startswith(("torch._utils._rebuild_tensor", "numpy.core.multiarray",
                                     "numpy._core.multiarray"))
               for g in f.get("pickle_globals", [])))


def _risks(f: dict) -> set:
    return {g["risk"] for g in f.get("pickle_globals", [])}


def _finish(doc: dict, config: Optional[dict], readme: dict, ggufs: list) -> dict:
    """Fill the verdict fields of a directory / file / hub document from its files, config.json
    and model card (readme: read_readme's dict), and the documents of its GGUF files."""
    files, root = doc["files"], doc["path"]
    by_name = doc["kind"] == "hub"
    weights = [f for f in files if f["format"] in ("safetensors", "gguf")]
    good = [f for f in weights if not f["problems"]]
    pickles = [f for f in files if f["tier"] == "executable-on-load"]
    weight_pickles = [f for f in pickles if _is_weight_pickle(f)]
    formats = {f["format"] for f in weights} | ({"pickle"} if weight_pickles else set())
    formats |= {f["format"] for f in files if f["format"] in ("onnx", "flax msgpack", "tflite")}
    doc["weight_formats"] = sorted(formats)

    # what it is
    cfg = config if isinstance(config, dict) else {}
    archs = [a for a in cfg["architectures"] if isinstance(a, str)] \
        if isinstance(cfg.get("architectures"), list) else []
    gdoc = next((g for g in ggufs if g["safe_to_load"]), ggufs[0] if ggufs else None)
    doc["architecture"] = archs[0] if archs else (gdoc["architecture"] if gdoc else None)
    doc["task"] = readme.get("pipeline_tag") or task_of(archs) or (gdoc["task"] if gdoc else None)
    doc["license"] = readme.get("license") or (gdoc["license"] if gdoc else None)
    doc["base_model"] = readme.get("base_model") or (gdoc["base_model"] if gdoc else [])
    doc["intended_use"] = readme.get("intended_use")
    doc["not_recommended_for"] = readme.get("not_recommended_for")
    if doc["parameter_count"] is None:
        counted = [f["parameter_count"] for f in files
                   if f["format"] == "safetensors" and "parameter_count" in f]
        doc["parameter_count"] = sum(counted) if counted else (gdoc["parameter_count"] if gdoc else None)
    doc["parameter_count_human"] = human_count(doc["parameter_count"])
    if cfg:
        doc["hyperparameters"] = _hyperparameters(cfg)
        ctx = cfg.get("max_position_embeddings")
        doc["context_length"] = ctx if isinstance(ctx, int) and not isinstance(ctx, bool) else None
        if isinstance(cfg.get("quantization_config"), dict):
            doc["notes"].append(f"config.json declares quantization "
                                f"{cfg['quantization_config'].get('quant_method')!r}: transformers "
                                f"needs that method's package to load it")

    # can loading it run code?
    reasons, blockers = [], []  # blockers: the reasons that make it unsafe, worst first
    dangerous = [f for f in pickles if "dangerous" in _risks(f)]
    bad = [f for f in weights if f["problems"]]
    safe = bool(good) and not dangerous and not bad and not doc["requires_trust_remote_code"]
    if good:
        kinds = " and ".join(sorted({"GGUF" if f["format"] == "gguf" else f["format"]
                                     for f in good}))
        reasons.append(f"the weights are {kinds}: data only" + (
            " (judged by the file names in the hub listing)" if by_name else
            ", validated without loading them"))
    elif weight_pickles:
        reasons.append("the weights exist only as pickles ("
                       + ", ".join(f["path"] for f in weight_pickles[:4])
                       + "): loading them runs code")
    elif not weights:
        reasons.append("no weight files found (safetensors, GGUF or pickle)")
    for f in bad:
        reasons.append(f"{f['path']} is rejected: {f['problems'][0]}" if f["format"] == "safetensors"
                       else f"{f['path']}: {f['problems'][0]}")
        blockers.append(reasons[-1])
    for f in pickles:
        if f in dangerous:
            reasons.append(f"{f['path']} is dangerous to load: {f['why']}")
            blockers.insert(0, reasons[-1])
        elif f in weight_pickles and good:
            reasons.append(f"{f['path']} is a pickle copy of the weights, which loaders of the "
                           f"{'/'.join(sorted({g['format'] for g in good}))} files do not open: "
                           f"{f['why']}")
        elif f not in weight_pickles:
            reasons.append(f"{f['path']} is executable on load ({f['why']}); loaders of the "
                           f"weights do not open it: never load it unless you trust its author")
    if doc["requires_trust_remote_code"]:
        refs = ", ".join(f"{e['file']} auto_map {e['key']} -> {e['reference']}"
                         for e in doc["remote_code"][:4])
        reasons.append(f"needs trust_remote_code=True: transformers would run the repository's "
                       f"code ({refs})")
        blockers.append(reasons[-1])
    doc["safe_to_load"] = safe
    doc["safe_to_load_reasons"] = reasons
    # the headline: what makes it unsafe (a dangerous pickle first), else the first reason
    doc["why"] = reasons[0] if safe or not blockers else blockers[0]

    # what runs it
    row = by_hf(archs, cfg.get("model_type"))
    runtimes = []
    if safe and any(f["format"] == "safetensors" for f in good):
        runtimes.append(runtime(
            "transformers", f"AutoModelForCausalLM.from_pretrained({root!r})"
            if doc["task"] == "text-generation" else None, "reads the safetensors weights"))
    loadable = next((g for g in ggufs if g["safe_to_load"]), None)
    if loadable is not None and not dangerous:
        gpath = os.path.join(root, loadable["files"][0]["path"]) if doc["kind"] == "directory" \
            else loadable["path"]
        cmd = f"python -m qwen3c --model {shlex.quote(gpath)}"
        doc["qwen3c"] = {"status": "runs", "command": cmd, "reason": loadable["qwen3c"]["reason"]}
        runtimes.insert(0, runtime("qwen3c", cmd, "the GGUF file loads"))
        runtimes.append(runtime("llama.cpp", f"llama-cli -m {shlex.quote(gpath)}",
                                "GGUF is llama.cpp's native format"))
    elif row is not None and row.convert and safe and any(f["format"] == "safetensors" for f in good):
        cmd = f"python -m qwen3c convert {shlex.quote(root)} model.gguf --type q8_0"
        doc["qwen3c"] = {"status": "convert", "command": cmd,
                         "reason": f"{doc['architecture']} is qwen3c's {row.gguf} architecture: "
                                   f"convert it, then run python -m qwen3c --model model.gguf"}
        runtimes.insert(0, runtime("qwen3c", cmd, "after conversion to GGUF"))
    elif row is not None:
        doc["qwen3c"] = {"status": "no", "command": None, "reason": (
            f"qwen3c runs {row.gguf} GGUF files, but `qwen3c convert` does not convert "
            f"{doc['architecture']}: llama.cpp's convert_hf_to_gguf.py does" if safe else
            "not safe to load: see safe_to_load_reasons")}
    else:
        doc["qwen3c"] = {"status": "no", "command": None, "reason": (
            f"qwen3c does not run {doc['architecture'] or 'this model'} (it runs "
            + ", ".join(h for a in ARCHITECTURES for h in a.hf) + ")")}
    doc["recommended_runtimes"] = runtimes
    return doc


def audit_directory(path) -> dict:
    root = Path(path)
    doc = new_document("directory", os.fspath(path))
    doc["repo"] = repo_from_path(root)
    rels = _walk(root)
    if len(rels) >= MAX_FILES:
        doc["notes"].append(f"more than {MAX_FILES} files: only the first {MAX_FILES} examined")
    present = set(rels)
    ggufs = []
    for rel in rels:
        entry, gdoc = classify_file(root / rel, rel)
        doc["files"].append(entry)
        if gdoc is not None:
            ggufs.append(gdoc)
    # the safetensors shards an index names must all be there
    index = root / "model.safetensors.index.json"
    if index.is_file():
        idx, problem = _read_json(index)
        wm = idx.get("weight_map") if isinstance(idx, dict) else None
        if problem or not isinstance(wm, dict):
            doc["notes"].append(problem or "model.safetensors.index.json has no weight_map")
        else:
            for shard in sorted({v for v in wm.values() if isinstance(v, str)}):
                if shard not in present:
                    doc["files"].append(file_entry(shard, None, "data", "safetensors",
                                                   "named by model.safetensors.index.json",
                                                   problems=["missing: the index names it"]))
    # remote code: every *config.json at the top level may carry an auto_map
    config = None
    for rel in rels:
        if "/" in rel or not rel.endswith("config.json"):
            continue
        obj, problem = _read_json(root / rel)
        if problem:
            doc["notes"].append(problem)
            continue
        if rel == "config.json":
            config = obj if isinstance(obj, dict) else None
        if isinstance(obj, dict):
            doc["remote_code"] += _auto_map_needs(rel, obj, present)
    doc["requires_trust_remote_code"] = bool(doc["remote_code"])
    for e in doc["remote_code"]:
        if e["repo"]:
            doc["notes"].append(f"{e['file']} auto_map {e['key']} loads code from another "
                                f"repository: {e['repo']}")
        elif not e["present"]:
            doc["notes"].append(f"{e['file']} auto_map {e['key']} names {e['module_file']}, "
                                f"which is not in the repository")
    referenced = {e["module_file"] for e in doc["remote_code"]}
    for f in doc["files"]:
        if f["format"] == "python" and f["path"] in referenced:
            f["why"] = ("code that transformers runs when loading with trust_remote_code=True "
                        "(named by an auto_map entry)")
    readme_path = next((root / r for r in rels if r.lower() == "readme.md"), None)
    readme = read_readme(readme_path) if readme_path else {}
    doc["notes"] += readme.get("problems", [])
    if ggufs and not config:
        g = next((g for g in ggufs if g["safe_to_load"]), ggufs[0])
        for k in ("context_length", "hyperparameters"):
            doc[k] = g[k]
    return _finish(doc, config, readme, ggufs)


# ---- the document of a hub repository (listing only) -----------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _name_tier(name: str) -> tuple:
    """(tier, format, why) of a file known by its name only."""
    suffix = Path(name).suffix.lower()
    by_name = "(by name; the hub listing does not show the content)"
    if suffix == ".safetensors":
        return "data", "safetensors", f"safetensors {by_name}"
    if suffix == ".gguf":
        return "data", "gguf", f"GGUF {by_name}"
    if suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"):
        return "executable-on-load", "pickle", f"a pickle-based checkpoint {by_name}"
    if suffix in _SCRIPT_NAMES:
        return "code-if-trusted", "python" if suffix == ".py" else "script", f"code {by_name}"
    if Path(name).name.lower().startswith("requirements"):
        return "code-if-trusted", "requirements", f"packages to install {by_name}"
    if suffix in _TEXT_DATA or _LICENSE_NAMES.match(Path(name).name):
        return "data", _TEXT_DATA.get(suffix, "text"), f"text {by_name}"
    if suffix in _BINARY_DATA:
        return "data", _BINARY_DATA[suffix], f"{_BINARY_DATA[suffix]} {by_name}"
    return "unknown", "binary", f"not a format audit recognizes {by_name}"


def audit_hub(repo_id: str, timeout: float = 10.0) -> dict:
    """List a hub repository with huggingface_hub (nothing is downloaded)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelNotAvailableError(
            f"{repo_id!r} is not a local path, and HF_HUB_OFFLINE is set: audit a local copy "
            f"(a directory or a .gguf file) instead")
    try:
        from huggingface_hub import HfApi
        info = HfApi().model_info(repo_id, files_metadata=True, timeout=timeout)
    except Exception as e:  # noqa: BLE001 -- offline, unknown repo, gated, HTTP errors ...
        raise ModelNotAvailableError(
            f"cannot list {repo_id!r} on the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}); check the name and your "
            f"network, or audit a local copy") from None
    doc = new_document("hub", repo_id)
    doc["repo"] = repo_id
    names = set()
    for s in info.siblings or []:
        tier, fmt, why = _name_tier(s.rfilename)
        names.add(s.rfilename)
        doc["files"].append(file_entry(s.rfilename, s.size, tier, fmt, why))
    config = info.config if isinstance(info.config, dict) else {}
    for cname, cfg in (("config.json", config),
                       ("tokenizer_config.json", config.get("tokenizer_config") or {})):
        if isinstance(cfg, dict):
            doc["remote_code"] += _auto_map_needs(cname, cfg, names)
    doc["requires_trust_remote_code"] = bool(doc["remote_code"])
    card = info.card_data.to_dict() if info.card_data is not None else {}
    readme = {"license": card.get("license") if isinstance(card.get("license"), str) else None,
              "base_model": _str_list(card.get("base_model")),
              "pipeline_tag": info.pipeline_tag, "intended_use": None, "not_recommended_for": None}
    if info.safetensors is not None and getattr(info.safetensors, "total", None):
        doc["parameter_count"] = int(info.safetensors.total)
    elif isinstance(info.gguf, dict) and isinstance(info.gguf.get("total"), int):
        doc["parameter_count"] = info.gguf["total"]
    doc["notes"].append("listed on the hub: files are tiered by name; audit a downloaded copy "
                        "to check their content (pickle imports, safetensors headers)")
    # by-name entries are not validated: count a listed safetensors / GGUF as weights
    return _finish(doc, config, readme, [])


# ---- entry points ----------------------------------------------------------------------------

def audit_file(path) -> dict:
    """A single file: a GGUF that qwen3c's reader accepts gets the full `info` document
    (kind "gguf"); any other file a one-file document (kind "file")."""
    p = Path(path)
    entry, gdoc = classify_file(p, p.name)
    if gdoc is not None:
        return gdoc
    doc = new_document("file", os.fspath(path))
    doc["repo"] = repo_from_path(p)
    doc["files"] = [entry]
    if "parameter_count" in entry:
        doc["parameter_count"] = entry["parameter_count"]
    return _finish(doc, None, {}, [])


def audit(target, hub_timeout: float = 10.0) -> dict:
    """The model context document of a local directory, a local file or a hub repo id."""
    target = os.fspath(target)
    p = Path(target)
    if p.is_dir():
        return audit_directory(target)
    if p.exists():
        return audit_file(target)
    if _HUB_ID.match(target) and not target.startswith((".", "/")):
        return audit_hub(target, timeout=hub_timeout)
    raise FileNotFoundError(f"no such file or directory: {target}")


def check_convert_input(hf_dir) -> dict:
    """What `qwen3c convert` checks before reading anything: raises UnsafeModelError when the
    weights exist only as pickles (naming the files and the imports they would perform), and
    warns (RemoteCodeWarning) when the repository declares custom code or carries pickles that
    import more than tensor rebuilding. Returns the audit document."""
    doc = audit_directory(hf_dir)
    files = doc["files"]
    pickles = [f for f in files if f["tier"] == "executable-on-load"]
    has_safetensors = any(f["format"] == "safetensors" for f in files)
    if pickles and not has_safetensors:
        detail = "; ".join(f"{f['path']} ({_describe_globals(f.get('pickle_globals', []))})"
                           for f in pickles[:6])
        raise UnsafeModelError(
            f"{hf_dir}: the weights exist only as pickle files, and loading a pickle runs code: "
            f"{detail}. qwen3c converts safetensors only and never unpickles; get the "
            f"safetensors version of this model")
    if doc["requires_trust_remote_code"]:
        refs = ", ".join(f"{e['key']} -> {e['reference']}" for e in doc["remote_code"][:4])
        warnings.warn(f"{hf_dir}: the repository declares custom code ({refs}); qwen3c's "
                      f"conversion never runs it and converts only the standard architecture",
                      RemoteCodeWarning, stacklevel=2)
    for f in pickles:
        if any(g["risk"] != "expected" for g in f.get("pickle_globals", [])):
            warnings.warn(f"{hf_dir}: {f['path']} is a pickle that "
                          f"{_describe_globals(f['pickle_globals'])}; convert ignores it "
                          f"(it reads the safetensors files only) -- do not load it",
                          RemoteCodeWarning, stacklevel=2)
    return doc


# ---- text output -----------------------------------------------------------------------------

def _size(n) -> str:
    if n is None:
        return "?"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def format_audit(doc: dict) -> str:
    q = doc["qwen3c"]
    lines = [f"{doc['path']} ({doc['kind']}{', ' + doc['repo'] if doc['repo'] and doc['repo'] != doc['path'] else ''})"]

    def row(label, value):
        if value not in (None, "", []):
            lines.append(f"  {label:<15} {value}")

    row("architecture", doc["architecture"])
    row("task", doc["task"])
    row("parameters", f"{doc['parameter_count']:,} ({doc['parameter_count_human']})"
        if doc["parameter_count"] is not None else None)
    row("license", doc["license"])
    row("base model", ", ".join(doc["base_model"]))
    row("intended use", doc["intended_use"])
    row("not for", doc["not_recommended_for"])
    row("weights", ", ".join(doc["weight_formats"]) or "none found")
    if doc["requires_trust_remote_code"]:
        row("remote code", "needed (trust_remote_code=True): " + "; ".join(
            f"{e['file']} {e['key']} -> {e['reference']}" for e in doc["remote_code"][:4]))
    else:
        row("remote code", "not needed")
    row("qwen3c", {"runs": "runs it", "convert": "runs it after conversion",
                   "no": "does not run it"}[q["status"]] + f": {q['command'] or q['reason']}")
    lines.append(f"  {'safe to load':<15} {'yes' if doc['safe_to_load'] else 'NO: ' + doc['why']}")
    for r in doc["safe_to_load_reasons"]:
        lines.append(f"    - {r}")
    for n in doc["notes"]:
        lines.append(f"  note: {n}")
    lines.append(f"  files ({len(doc['files'])})")
    width = max([len(f["path"]) for f in doc["files"]] + [10])
    width = min(width, 48)
    for f in doc["files"]:
        lines.append(f"    {f['tier']:<18} {f['path']:<{width}} {_size(f['size']):>9}  {f['why']}")
        for p in f["problems"]:
            lines.append(f"    {'':<18} {'':<{width}} {'':>9}  problem: {p}")
    if doc["recommended_runtimes"]:
        lines.append("  runtimes")
        for r in doc["recommended_runtimes"]:
            lines.append(f"    {r['name']:<12} {r['command'] or ''}{'  (' + r['note'] + ')' if r['note'] else ''}")
    return "\n".join(lines)


def _audit(argv) -> int:
    ap = argparse.ArgumentParser(
        prog="qwen3c audit",
        description="Read a model repository (a local directory, a file, or a Hugging Face "
                    "repo id: listed, never downloaded) before loading it: every file's tier "
                    "(data / executable-on-load / code-if-trusted / unknown), the imports its "
                    "pickles would perform, safetensors headers and GGUF files validated, "
                    "remote-code needs, license and intended use. Nothing from the repository "
                    "is imported, executed or unpickled.",
        epilog="Tiers: " + "; ".join(f"{k}: {v}" for k, v in TIERS.items()))
    ap.add_argument("path", help="model directory, model file (.gguf, .safetensors, .bin ...), "
                                 "or owner/name on the Hugging Face hub")
    ap.add_argument("--json", action="store_true",
                    help="print the model context document (docs/model_context_schema.json)")
    ap.add_argument("--strict", action="store_true",
                    help="exit status 1 when the model is not safe to load")
    ap.add_argument("--hub-timeout", type=float, default=10.0, metavar="SECONDS",
                    help="network timeout for a hub repo id (default 10)")
    args = ap.parse_args(argv)
    if not args.hub_timeout > 0:
        ap.error("--hub-timeout must be > 0")
    doc = audit(args.path, hub_timeout=args.hub_timeout)
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        print(format_audit(doc))
    return 1 if args.strict and not doc["safe_to_load"] else 0


def main(argv=None) -> int:
    """`python -m qwen3c audit`."""
    return run_cli(_audit, sys.argv[1:] if argv is None else argv, "qwen3c audit")


if __name__ == "__main__":
    sys.exit(main())
