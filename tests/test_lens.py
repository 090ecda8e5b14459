"""qwen3c.lens: the logit lens (the model's final norm + LM head on every layer's residual
stream), its `qwen3c lens` command, and its agreement with transformers."""
from __future__ import annotations

import json

import numpy as np
import pytest

import qwen3c
from qwen3c import lens
from qwen3c.introspect import softmax64

TOKENS = [5, 17, 200, 3, 99, 42, 42, 7, 128, 255, 0, 64]


@pytest.fixture(scope="module")
def tiny(make_tiny_model):
    return make_tiny_model(num_hidden_layers=3, seed=7)


@pytest.mark.parametrize("out_type", ["f32", "q8_0"])
def test_last_layer_is_the_models_own_distribution(make_tiny_model, out_type):
    _, gguf_path = make_tiny_model(out_type=out_type, num_hidden_layers=3, seed=7)
    with qwen3c.Model(gguf_path, n_ctx=64) as m:
        report = lens.logit_lens(m, TOKENS, k=256)
        p_model = softmax64(m.forward(TOKENS))
    assert [r.name for r in report.rows] == ["embedding", "layer 0", "layer 1", "layer 2"]
    last = report.final
    p_lens = np.zeros(256)
    for i, _, p in last.top:
        p_lens[i] = p
    assert np.abs(p_lens - p_model).max() <= 1e-6  # measured 0 (the same C arithmetic)
    assert report.target == int(np.argmax(p_model)) and last.target_rank == 1
    assert abs(last.target_prob - p_model.max()) <= 1e-6


def test_every_layer_matches_transformers(tiny):
    """Layer l's lens = softmax(lm_head(norm(hidden after layer l))) computed by PyTorch."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf_dir, gguf_path = tiny
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        out = hf(torch.tensor([TOKENS]), output_hidden_states=True)
        # hidden_states[l] for l < L is the input of layer l (= output of layer l - 1); the last
        # entry is already normed, so the last layer's lens is the logits themselves
        ref = [torch.softmax(hf.lm_head(hf.model.norm(h[0, -1])), -1).double().numpy()
               for h in out.hidden_states[:-1]]
        ref.append(torch.softmax(out.logits[0, -1].double(), -1).numpy())
    with qwen3c.Model(gguf_path, n_ctx=64) as m:
        report = lens.logit_lens(m, TOKENS, k=256, target=17)
    assert len(report.rows) == len(ref) == 4
    for row, p_ref in zip(report.rows, ref):
        got = np.zeros(256)
        for i, _, p in row.top:
            got[i] = p
        assert np.abs(got - p_ref).max() < 1e-5, row.name
        assert abs(row.target_prob - p_ref[17]) < 1e-5
        assert row.target_rank == 1 + int((p_ref > p_ref[17] + 1e-12).sum())
    assert report.rows[0].top[0][2] > report.rows[0].top[1][2]


def test_report_fields_and_arguments(tiny):
    _, gguf_path = tiny
    with qwen3c.Model(gguf_path, n_ctx=64) as m:
        r = lens.logit_lens(m, TOKENS, k=3, position=4, target=9)
        assert r.position == 4 and r.target == 9 and r.target_text is None
        for row in r.rows:
            assert len(row.top) == 3
            probs = [p for _, _, p in row.top]
            assert probs == sorted(probs, reverse=True)
            assert (row.target_rank == 1) == (row.top[0][0] == 9)
        # the position's lens does not depend on what comes after it
        alone = lens.logit_lens(m, TOKENS[:5], k=3, target=9)
        for a, b in zip(r.rows, alone.rows):
            assert abs(a.target_prob - b.target_prob) < 1e-6
        d = r.to_dict()
        assert d["rows"][0]["name"] == "embedding" and json.dumps(d)
        with pytest.raises(ValueError, match="k must be"):
            lens.logit_lens(m, TOKENS, k=0)
        with pytest.raises(ValueError, match="outside the 12 tokens"):
            lens.logit_lens(m, TOKENS, position=12)
        with pytest.raises(ValueError, match="vocabulary"):
            lens.logit_lens(m, TOKENS, target=256)
        with pytest.raises(ValueError, match="at least one"):
            lens.logit_lens(m, [])


def test_rank_of_breaks_ties_like_top_k():
    p = np.array([0.1, 0.3, 0.3, 0.2, 0.1])
    assert [lens.rank_of(p, i) for i in range(5)] == [4, 1, 2, 3, 5]


def test_lens_cli(tiny, capsys):
    _, gguf_path = tiny
    toks = ",".join(map(str, TOKENS))
    assert lens.main_lens(["--model", str(gguf_path), "--tokens", toks, "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "12 prompt tokens (token ids)" in out and "layer 2" in out and "embedding" in out
    assert lens.main_lens(["--model", str(gguf_path), "--tokens", toks, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mode"] == "token ids" and len(d["rows"]) == 4 and d["rows"][-1]["target_rank"] == 1


def test_lens_cli_on_a_chat_model(tiny_chat_gguf, capsys):
    assert lens.main_lens(["--model", str(tiny_chat_gguf), "What is the capital of India?",
                           "--no-think", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "(chat template)" in out and "p(" in out


@pytest.mark.parametrize("args, code, msg", [
    (["-k", "0", "--tokens", "1"], 2, "-k must be >= 1"),
    (["--tokens", "1,x"], 2, "comma-separated integers"),
    (["--tokens", "1,99999"], 2, "outside the vocabulary"),
    (["--tokens", "1", "--target", "-1"], 2, "--target -1"),
    ([], 2, "give either a prompt or --tokens"),
    (["--tokens", "1", "--plot", "x.gif"], 2, "must end in"),
])
def test_lens_cli_usage_errors(tiny, capsys, args, code, msg):
    _, gguf_path = tiny
    with pytest.raises(SystemExit) as e:
        lens.main_lens(["--model", str(gguf_path), *args])
    assert e.value.code == code
    assert msg in capsys.readouterr().err


def test_lens_cli_runtime_error(tmp_path, capsys):
    assert lens.main_lens(["--model", str(tmp_path / "missing.gguf"), "--tokens", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qwen3c lens: error:") and "Traceback" not in err
