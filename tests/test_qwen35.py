"""Qwen3.5 (GGUF architecture "qwen35"): the hybrid Gated DeltaNet model against transformers
(issue 16's acceptance).

Tiny random Qwen3.5 models (tests/qwen35_models.py: several layer_types mixes, GQA, tied and
untied, fewer key than value heads) are built with transformers, converted by qwen3c.convert
AND by llama.cpp's convert_hf_to_gguf.py, and run by qwen3c.Model and by PyTorch (float32):

  F32 files      max|dlogit| <= 1e-5 * max|logit| at every one of 80 positions, same argmax
  F16/BF16/Q8_0  PyTorch runs the SAME rounded weights (read back out of the GGUF, every
                 conversion step undone); only the arithmetic differs
  token by token == one batched call (decode runs the recurrent gated delta rule, a batch the
                 chunked one)
  the recurrent state: restart positions, checkpoints, rewind-and-continue == a fresh run

Measured errors are printed (run with -s to see them).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import qwen3c  # noqa: E402
import qwen35_models as q35  # noqa: E402
from qwen3c.errors import InvalidArgumentError, ModelFormatError, UnsupportedModelError  # noqa: E402

N_TOKENS = 80
sanitize = pytest.mark.sanitize  # rerun under ASan + UBSan by tools/run_tests.sh

# name -> config overrides of qwen35_models.QWEN35_TINY (hidden 64, 4 layers: 3 Gated DeltaNet
# + 1 attention, 4 query / 2 kv heads of 32, 2 key / 4 value linear heads of 16, tied)
SHAPES = {
    "gqa": {},
    # attention first and last, the value head dim below the key head dim, plain multi-head,
    # conv kernel 3, half the head rotated, a separate lm_head
    "mixed_untied": dict(num_hidden_layers=5, layer_types=["full_attention", "linear_attention",
                                                           "linear_attention", "full_attention",
                                                           "linear_attention"],
                         num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                         linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=32,
                         linear_value_head_dim=16, linear_conv_kernel_dim=3, vocab_size=320,
                         tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                          "partial_rotary_factor": 0.5}, seed=1),
    # Qwen3.5's own pattern twice (full_attention_interval 4), 3 value heads per key head
    "wide": dict(hidden_size=96, intermediate_size=192, num_hidden_layers=8,
                 num_attention_heads=6, num_key_value_heads=2, head_dim=32,
                 linear_num_key_heads=2, linear_num_value_heads=6, linear_key_head_dim=32,
                 linear_value_head_dim=32, vocab_size=384, rms_norm_eps=1e-5,
                 tie_word_embeddings=False, seed=2),
    # no attention layer at all: no KV cache
    "all_linear": dict(num_hidden_layers=2, layer_types=["linear_attention"] * 2, seed=3),
}
F32_BOUND = 1e-5
QUANT_BOUNDS = {"f16": 1e-5, "bf16": 1e-5, "q8_0": 1e-5}


def tokens_for(vocab_size: int, n: int = N_TOKENS, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab_size, size=n).astype(np.int32)


def rel_err(got, ref) -> float:
    """max |got - ref| relative to max |ref|."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(got, dtype=np.float64) - ref).max() / np.abs(ref).max())


def run_qwen3c(path, tokens, n_ctx=128, n_threads=2, **kw) -> np.ndarray:
    with qwen3c.Model(str(path), n_ctx=n_ctx, n_threads=n_threads, **kw) as m:
        return m.forward(tokens, pos=0, all_logits=True)


def run_steps(path, tokens, n_ctx=128, **kw) -> np.ndarray:
    with qwen3c.Model(str(path), n_ctx=n_ctx, n_threads=2, **kw) as m:
        return np.stack([m.forward(tokens[i:i + 1], pos=i) for i in range(len(tokens))])


def torch_logits(model, tokens) -> np.ndarray:
    with torch.no_grad():
        ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64))[None]
        return model(input_ids=ids, use_cache=False).logits[0].double().numpy()


_HF = {}


def hf_model(hf_dir, layout="causal"):
    key = (str(hf_dir), layout)
    if key not in _HF:
        _HF[key] = q35.hf_class(layout).from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    return _HF[key]


def _make(make_tiny_qwen35, shape, out_type="f32", **kw):
    overrides = dict(SHAPES[shape])
    seed = overrides.pop("seed", 0)
    if kw.get("tokenizer") or kw.get("converter") == "llama.cpp":
        overrides.pop("vocab_size", None)  # a tokenizer brings its 151936-token vocabulary
    return make_tiny_qwen35(out_type, seed=seed, **kw, **overrides)


def _vocab(hf_dir, layout="causal"):
    return hf_model(hf_dir, layout).config.get_text_config().vocab_size


# ---- F32: the engine computes what transformers computes ------------------------------------

@pytest.mark.parametrize("shape", list(SHAPES))
def test_config(make_tiny_qwen35, shape):
    hf_dir, path = _make(make_tiny_qwen35, shape)
    hc = hf_model(hf_dir).config
    with qwen3c.Model(str(path), n_ctx=64, n_threads=1) as m:
        c = m.config
        assert c.arch == "qwen35" and c.is_recurrent
        assert c.layer_types == tuple(hc.layer_types)
        assert c.n_linear_layers == hc.layer_types.count("linear_attention")
        assert (c.n_layers, c.dim, c.hidden_dim, c.vocab_size) == (
            hc.num_hidden_layers, hc.hidden_size, hc.intermediate_size, hc.vocab_size)
        assert (c.n_heads, c.n_kv_heads, c.head_dim) == (
            hc.num_attention_heads, hc.num_key_value_heads, hc.head_dim)
        assert (c.linear_n_k_heads, c.linear_n_v_heads, c.linear_k_head_dim, c.linear_v_head_dim,
                c.linear_conv_kernel) == (hc.linear_num_key_heads, hc.linear_num_value_heads,
                                          hc.linear_key_head_dim, hc.linear_value_head_dim,
                                          hc.linear_conv_kernel_dim)
        assert c.rope_dim == int(hc.head_dim * hc.rope_parameters["partial_rotary_factor"])
        assert c.rope_theta == pytest.approx(hc.rope_parameters["rope_theta"])
        assert c.tied_embeddings == hc.tie_word_embeddings


@pytest.mark.parametrize("shape", list(SHAPES))
def test_f32_logits_match_transformers(make_tiny_qwen35, shape):
    hf_dir, path = _make(make_tiny_qwen35, shape)
    tokens = tokens_for(_vocab(hf_dir))
    ref = torch_logits(hf_model(hf_dir), tokens)
    got = run_qwen3c(path, tokens)
    err = rel_err(got, ref)
    print(f"F32 qwen3c vs transformers [{shape}]: rel max err {err:.2e} "
          f"(max|logit| {np.abs(ref).max():.2f}, {len(tokens)} positions)")
    assert err <= F32_BOUND
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))


@sanitize
@pytest.mark.parametrize("shape", list(SHAPES))
def test_token_by_token_equals_batched(make_tiny_qwen35, shape):
    """Decode (the recurrent rule, the conv state one token at a time) == prefill (the chunked
    rule over the whole batch)."""
    hf_dir, path = _make(make_tiny_qwen35, shape)
    tokens = tokens_for(_vocab(hf_dir), seed=1)
    batched = run_qwen3c(path, tokens)
    steps = run_steps(path, tokens)
    err = rel_err(steps, batched)
    print(f"token by token vs batched [{shape}]: rel max err {err:.2e}")
    assert err <= F32_BOUND
    np.testing.assert_array_equal(steps.argmax(-1), batched.argmax(-1))


def test_chunks_and_threads_do_not_change_results(make_tiny_qwen35):
    """n_batch splits a prompt into forward chunks (the state carries over); the thread count
    splits heads and channels."""
    hf_dir, path = _make(make_tiny_qwen35, "wide")
    tokens = tokens_for(384, seed=2)
    one = run_qwen3c(path, tokens)
    assert rel_err(run_qwen3c(path, tokens, n_batch=7), one) <= F32_BOUND
    assert rel_err(run_qwen3c(path, tokens, n_batch=64), one) <= F32_BOUND
    assert rel_err(run_qwen3c(path, tokens, n_threads=1), one) <= 1e-6


def test_trace_matches_transformers_layer_by_layer(make_tiny_qwen35):
    from qwen3c.introspect import layer_diff
    hf_dir, path = _make(make_tiny_qwen35, "mixed_untied")
    tokens = tokens_for(320, 40, seed=3)
    with qwen3c.Model(str(path), n_ctx=64, n_threads=2) as m:
        report = layer_diff(m, hf_model(hf_dir), tokens)
    assert report.first_over(1e-5) is None, [(s.name, s.rel) for s in report.stages]
    assert report.top1_agree == len(tokens)


# ---- files made by llama.cpp's converter ------------------------------------------------------

@pytest.mark.parametrize("shape", ["gqa", "wide"])
def test_llama_cpp_converter_files(make_tiny_qwen35, shape):
    """The GGUF users download: llama.cpp's converter, its V-head order, its 1 + w norms."""
    hf_dir, path = _make(make_tiny_qwen35, shape, converter="llama.cpp")
    tokens = tokens_for(2000, seed=4)
    ref = torch_logits(hf_model(hf_dir), tokens)
    got = run_qwen3c(path, tokens)
    err = rel_err(got, ref)
    steps = rel_err(run_steps(path, tokens), got)
    print(f"llama.cpp-converted F32 [{shape}]: vs transformers {err:.2e}, token by token vs "
          f"batched {steps:.2e}")
    assert err <= F32_BOUND and steps <= F32_BOUND
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))
    # the two converters write the same model: same tensors, same values
    _, ours = _make(make_tiny_qwen35, shape, tokenizer="qwen3")
    a, b = q35.gguf_tensors(ours), q35.gguf_tensors(path)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=2e-7, atol=1e-7, err_msg=name)


def test_llama_cpp_file_with_mtp_head(make_tiny_qwen35, llama_cpp_src, tmp_path):
    """Official Qwen3.5 checkpoints carry an MTP head (mtp.*), which llama.cpp's converter
    appends as an extra block (nextn_predict_layers): qwen3c skips it, as the forward pass does
    not use it; our converter leaves it out with a note."""
    from safetensors.numpy import load_file, save_file
    hf_dir, _ = _make(make_tiny_qwen35, "gqa", tokenizer="qwen3")
    mtp_dir = tmp_path / "with_mtp"
    mtp_dir.mkdir()
    for f in hf_dir.iterdir():
        if f.suffix != ".safetensors":
            (mtp_dir / f.name).write_bytes(f.read_bytes())
    cfg = hf_model(hf_dir).config
    cfg_json = __import__("json").loads((hf_dir / "config.json").read_text())
    cfg_json["mtp_num_hidden_layers"] = 1
    (mtp_dir / "config.json").write_text(__import__("json").dumps(cfg_json))
    w = load_file(str(hf_dir / "model.safetensors"))
    rng = np.random.default_rng(5)
    D = cfg.hidden_size
    attn = [n for n in w if n.startswith("model.layers.3.")]  # an attention layer's tensors
    for n in attn:
        w["mtp.layers.0." + n[len("model.layers.3."):]] = (0.1 * rng.standard_normal(w[n].shape)).astype(np.float32)
    w["mtp.fc.weight"] = (0.1 * rng.standard_normal((D, 2 * D))).astype(np.float32)
    for n in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"):
        w[f"mtp.{n}.weight"] = (0.1 * rng.standard_normal(D)).astype(np.float32)
    save_file(w, str(mtp_dir / "model.safetensors"))

    out = q35.llama_cpp_convert(llama_cpp_src, mtp_dir, tmp_path / "mtp.gguf", mtp=True)
    kv = q35.read_gguf(out, ("qwen35.nextn_predict_layers", "qwen35.block_count"))[0]
    assert kv["qwen35.nextn_predict_layers"] == 1
    assert kv["qwen35.block_count"] == cfg.num_hidden_layers + 1
    tokens = tokens_for(2000, 40, seed=6)
    with qwen3c.Model(str(out), n_ctx=64, n_threads=2) as m:
        assert m.config.n_layers == cfg.num_hidden_layers
        got = m.forward(tokens, all_logits=True)
    assert rel_err(got, torch_logits(hf_model(hf_dir), tokens)) <= F32_BOUND

    notes = []
    from qwen3c.convert import convert
    ours = convert(mtp_dir, tmp_path / "ours.gguf", notes=notes)
    assert any("mtp." in n and "multi-token prediction" in n for n in notes), notes
    assert rel_err(run_qwen3c(ours, tokens), got) <= F32_BOUND


# ---- the ConditionalGeneration layout of the official checkpoints ----------------------------

def test_conditional_generation_layout(make_tiny_qwen35, tmp_path):
    """Qwen/Qwen3.5-* are Qwen3_5ForConditionalGeneration: text weights under
    model.language_model., a vision tower (skipped, with a note), the tie flag at the top."""
    from qwen3c.convert import convert
    hf_dir, path = _make(make_tiny_qwen35, "gqa", layout="conditional")
    ref_model = hf_model(hf_dir, "conditional")
    tokens = tokens_for(256, seed=7)
    ref = torch_logits(ref_model, tokens)
    got = run_qwen3c(path, tokens)
    err = rel_err(got, ref)
    print(f"ConditionalGeneration layout, F32: rel max err {err:.2e}")
    assert err <= F32_BOUND
    notes = []
    convert(hf_dir, tmp_path / "again.gguf", notes=notes)
    assert any("model.visual." in n and "vision tower" in n for n in notes), notes
    with qwen3c.Model(str(path), n_ctx=16) as m:
        assert m.config.tied_embeddings == bool(ref_model.config.tie_word_embeddings)
        assert not any("visual" in name or name.startswith("v.") for name, *_ in m.tensors)


# ---- F16 / BF16 / Q8_0: the same rounded weights, only the arithmetic differs ---------------

@pytest.mark.parametrize("shape", ["gqa", "wide"])
@pytest.mark.parametrize("out_type", list(QUANT_BOUNDS))
def test_quantized_logits_match_rounded_transformers(make_tiny_qwen35, shape, out_type):
    hf_dir, path = _make(make_tiny_qwen35, shape, out_type)
    tokens = tokens_for(_vocab(hf_dir), seed=8)
    ref = torch_logits(q35.torch_model_with_gguf_weights(hf_dir, path), tokens)
    got = run_qwen3c(path, tokens)
    err = rel_err(got, ref)
    vs_f32 = rel_err(got, torch_logits(hf_model(hf_dir), tokens))
    print(f"{out_type.upper()} qwen3c vs transformers on the same weights [{shape}]: rel max "
          f"err {err:.2e} (bound {QUANT_BOUNDS[out_type]:.0e}); vs the unrounded model {vs_f32:.2e}")
    assert err <= QUANT_BOUNDS[out_type]
    assert vs_f32 > err  # the reference did run the rounded weights
    if out_type == "q8_0":  # the default q24 path and the float reference path agree
        f32_path = run_qwen3c(path, tokens, activations="f32")
        assert rel_err(f32_path, ref) <= QUANT_BOUNDS[out_type]
        assert rel_err(run_steps(path, tokens), got) <= F32_BOUND


def test_rounded_reference_undoes_every_conversion_step(make_tiny_qwen35):
    """hf_weights_from_gguf inverts the converter exactly on an F32 file."""
    hf_dir, path = _make(make_tiny_qwen35, "wide")
    sd = hf_model(hf_dir).state_dict()
    for name, w in q35.hf_weights_from_gguf(path, hf_model(hf_dir).config).items():
        # log(-(-exp(x))) and (1 + w) - 1 round once; everything else is exact
        atol = 1e-7 if name.endswith("A_log") or "norm" in name else 0
        np.testing.assert_allclose(w, sd[name].numpy(), rtol=0, atol=atol, err_msg=name)


# ---- the recurrent state: where a context can continue ---------------------------------------

@pytest.fixture(scope="module")
def gqa_path(make_tiny_qwen35):
    return _make(make_tiny_qwen35, "gqa")[1]


@sanitize
def test_restart_positions_and_refusal(gqa_path):
    toks = tokens_for(256, 60, seed=9)
    one = run_qwen3c(gqa_path, toks)
    with qwen3c.Model(str(gqa_path), n_ctx=96, n_threads=2) as m:
        assert m.n_past == 0 and m.checkpoints == []
        m.forward(toks[:40], pos=0)
        assert m.n_past == 40
        assert [m.rewind_point(p) for p in (0, 20, 39, 40, 90)] == [0, 0, 0, 40, 40]
        # a state that holds tokens 20..39 must not be reused for a run at 20 ...
        with pytest.raises(InvalidArgumentError, match="no checkpoint at 20"):
            m.forward(toks[20:30], pos=20)
        # ... nor can a run skip positions
        with pytest.raises(InvalidArgumentError):
            m.forward(toks[45:50], pos=45)
        assert m.n_past == 40  # nothing changed
        tail = m.forward(toks[40:], pos=40, all_logits=True)
    assert rel_err(tail, one[40:]) <= F32_BOUND


@sanitize
def test_rewind_to_a_checkpoint_equals_a_fresh_run(gqa_path):
    toks = tokens_for(256, 64, seed=10)
    edited = toks.copy()
    edited[25:] = tokens_for(256, 39, seed=11)
    with qwen3c.Model(str(gqa_path), n_ctx=96, n_threads=2) as m:
        m.forward(toks[:25], pos=0)
        m.checkpoint()
        m.forward(toks[25:], pos=25)
        assert m.checkpoints == [25] and m.rewind_point(50) == 25
        tail = m.forward(edited[25:], pos=25, all_logits=True)  # restores, then continues
        assert m.checkpoints == [25] and m.n_past == 64
        again = m.forward(toks[25:], pos=25, all_logits=True)   # the same checkpoint again
    assert rel_err(tail, run_qwen3c(gqa_path, edited)[25:]) <= F32_BOUND
    assert rel_err(again, run_qwen3c(gqa_path, toks)[25:]) <= F32_BOUND


@sanitize
def test_checkpoint_slots(gqa_path):
    toks = tokens_for(256, 40, seed=12)
    with qwen3c.Model(str(gqa_path), n_ctx=64, n_threads=1, n_checkpoints=2) as m:
        for p in (10, 20, 30):
            m.forward(toks[p - 10:p], pos=p - 10)
            m.checkpoint()
        assert m.checkpoints == [20, 30]          # the oldest (10) was replaced
        m.checkpoint()                            # the same position again: no new slot
        assert m.checkpoints == [20, 30]
        m.forward(toks[20:25], pos=20)            # restore 20: 30 includes replaced tokens
        assert m.checkpoints == [20] and m.n_past == 25
        assert m.rewind_point(24) == 20
        m.forward(toks[:5], pos=0)                # 0 always starts over
        assert m.checkpoints == [] and m.n_past == 5


def test_qwen3_contexts_restart_anywhere(tiny_gguf):
    with qwen3c.Model(str(tiny_gguf), n_ctx=64, n_threads=1) as m:
        m.forward(tokens_for(256, 30), pos=0)
        assert not m.config.is_recurrent and m.config.layer_types == ("full_attention",) * 2
        assert [m.rewind_point(p) for p in (0, 17, 30, 50)] == [0, 17, 30, 50]
        m.checkpoint()
        assert m.checkpoints == []


# ---- generation: prefix reuse and Ctrl-C with a recurrent state -------------------------------

@pytest.fixture(scope="module")
def chat_path(make_tiny_qwen35):
    return _make(make_tiny_qwen35, "gqa", tokenizer="qwen35")[1]


def _greedy():
    return qwen3c.Sampler(temperature=0)


def test_multi_turn_chat_resumes_at_a_checkpoint(chat_path):
    """The second turn re-renders the first answer without its thinking, so the prompts part
    right after '<|im_start|>assistant\\n': generation resumes at the checkpoint before that
    <|im_start|> and answers exactly as a fresh model does."""
    with qwen3c.Model(str(chat_path), n_ctx=512, n_threads=2) as m:
        chat = qwen3c.Chat(m, system="Be brief.", thinking=True, max_tokens=12, sampler=_greedy())
        chat.send("What is the capital of France?")
        first_len = chat.last.n_prompt_tokens
        second = chat.send("And of Japan?")
        gen = chat.last
        assert 0 < gen.n_cached < first_len  # resumed inside the first prompt, not from 0
        assert gen.n_prefilled == gen.n_prompt_tokens - gen.n_cached
        history = list(chat.history[:-2])
    with qwen3c.Model(str(chat_path), n_ctx=512, n_threads=2) as fresh:
        c2 = qwen3c.Chat(fresh, system="Be brief.", thinking=True, max_tokens=12, sampler=_greedy())
        c2.history = history
        assert c2.send("And of Japan?") == second
        assert c2.last.n_cached == 0


def test_same_prompt_twice_reuses_the_state(chat_path):
    from qwen3c.generate import generate
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    with qwen3c.Model(str(chat_path), n_ctx=128, n_threads=1) as m:
        a = list(m.generate(prompt, max_tokens=6, sampler=_greedy()))
        g = generate(m, prompt, max_tokens=6, sampler=_greedy())
        b = list(g)
        assert g.n_cached == len(prompt) - 1 and g.n_prefilled == 1
    assert a == b


def test_ctrl_c_during_prefill_leaves_a_usable_model(chat_path, monkeypatch):
    prompt = tokens_for(1000, 50, seed=13).tolist()
    with qwen3c.Model(str(chat_path), n_ctx=128, n_threads=1) as fresh:
        want = "".join(fresh.generate(prompt, max_tokens=8, sampler=_greedy()))
    with qwen3c.Model(str(chat_path), n_ctx=128, n_threads=1) as m:
        s = m.default_session   # generate() runs on it
        real = s.forward
        calls = []

        def interrupted(tokens, pos=0, all_logits=False):
            calls.append(pos)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(tokens, pos=pos, all_logits=all_logits)

        monkeypatch.setattr(s, "forward", interrupted)
        with pytest.raises(KeyboardInterrupt):
            "".join(m.generate(prompt[:20] + [7] + prompt[20:], max_tokens=8, sampler=_greedy(),
                               chunk_size=8))
        monkeypatch.setattr(s, "forward", real)
        assert "".join(m.generate(prompt, max_tokens=8, sampler=_greedy())) == want


# ---- sessions, batched forward passes, the server's scheduler ----------------------------------

@sanitize
def test_batched_sessions_equal_solo_runs(gqa_path):
    """qwen3c_forward_batch keeps one conv + recurrent state per session: prefill chunks and
    decode tokens of six sessions in shared steps give each its solo logits."""
    from test_batch import run_batched, run_solo, script
    seqs = script(0, 6)
    with qwen3c.Model(str(gqa_path), n_ctx=96, n_threads=2) as m:
        solo = run_solo(m, seqs)
        sessions = [m.session() for _ in seqs]
        batched = run_batched(m, seqs, sessions)
        for s, chunks in zip(sessions, seqs):
            assert s.n_past == sum(len(c) for c in chunks)
    worst = max(rel_err(b, r) for bs, rs in zip(batched, solo) for b, r in zip(bs, rs))
    print(f"\nqwen35 batched vs solo: {worst:.2e}")
    assert worst <= F32_BOUND, worst   # float rounding: the matmuls group the rows differently


@sanitize
def test_batch_and_prefix_copy_refuse_a_state_they_cannot_continue(gqa_path):
    toks = tokens_for(256, 30, seed=15).tolist()
    with qwen3c.Model(str(gqa_path), n_ctx=64, n_threads=1) as m:
        a, b, c = m.session(), m.session(), m.session()
        a.forward(toks[:10], pos=0)
        a.checkpoint()
        a.forward(toks[10:20], pos=10)
        b.forward(toks[:5], pos=0)
        with pytest.raises(InvalidArgumentError, match="no checkpoint at 15"):
            m.forward_batch([(b, toks[5:8], 5), (a, toks[15:18], 15)])
        assert (a.n_past, b.n_past) == (20, 5)        # refused before any compute
        with pytest.raises(InvalidArgumentError, match="no checkpoint at 15"):
            c.copy_prefix_from(a, 15)
        # at a's n_past or at its checkpoint, the copy continues exactly like a
        for n in (20, 10):
            c.copy_prefix_from(a, n)
            assert c.n_past == n and c.checkpoints == []
            got = c.forward(toks[n:], pos=n, all_logits=True)
            assert rel_err(got, run_qwen3c(gqa_path, toks)[n:]) <= F32_BOUND


def test_scheduler_jobs_resume_at_checkpoints(chat_path):
    """The server's scheduler on a Qwen3.5 model: batched jobs give their solo greedy tokens,
    prefill stops at the checkpoint marks, and a conversation's next turn (or another slot's
    copy) resumes at a checkpoint instead of from 0."""
    from qwen3c.generate import generate
    from qwen3c.serve.scheduler import Job, Scheduler

    def chat(text):
        return m.encode(f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n", special=True)

    def solo(ids, n):
        g = generate(m.session(), ids, max_tokens=n, sampler=_greedy())
        list(g)
        return g.tokens

    with qwen3c.Model(str(chat_path), n_ctx=256, n_threads=2) as m:
        sched = Scheduler(m, n_slots=2, step_tokens=9)
        first = [chat("one two three"), chat("a longer question about four and five")]
        jobs = [Job(p, 5, _greedy(), ignore_eos=True) for p in first]
        for j in jobs:
            sched.submit(j)
        while not all(j.finish_reason for j in jobs):
            sched.step()
        for p, j in zip(first, jobs):
            assert j.tokens == solo(p, 5)
            assert len(p) - 1 in j._session.checkpoints
        turn2 = jobs[0]._session.tokens[:len(first[0]) - 1] + m.encode(
            "<|im_start|>assistant\nsix<|im_end|>\n<|im_start|>user\nseven?<|im_end|>\n"
            "<|im_start|>assistant\n", special=True)
        j2 = Job(turn2, 4, _greedy(), ignore_eos=True)
        sched.submit(j2)
        while not j2.finish_reason:
            sched.step()
        assert j2.n_cached == len(first[0]) - 1 and j2.tokens == solo(turn2, 4)


def test_server_output_starts_inside_the_prompts_think_block():
    """Qwen3.5's thinking prompt ends with '<think>\\n': the reply is reasoning up to </think>."""
    from qwen3c.serve.tools import OutputParser
    p = OutputParser(thinking=True, in_think=True)
    out = p.feed("let me see") + p.feed("</think>\n\nParis") + p.feed("", final=True)
    assert out == [("reasoning", "let me see"), ("content", "Paris")]


def test_logit_lens_works_and_attention_capture_is_refused(gqa_path):
    """The lens (final norm + LM head on each layer's output) needs only the trace; attention
    probabilities do not exist for the Gated DeltaNet layers, so capturing them is refused."""
    from qwen3c import lens
    from qwen3c.introspect import softmax64
    toks = tokens_for(256, 12, seed=16).tolist()
    with qwen3c.Model(str(gqa_path), n_ctx=64, n_threads=1) as m:
        report = lens.logit_lens(m, toks, k=256)
        p_model = softmax64(m.forward(toks, pos=0))
        with pytest.raises(UnsupportedModelError, match="Gated DeltaNet"):
            m.attention(toks, pos=0)
    assert len(report.rows) == 1 + 4
    p_lens = np.zeros(256)
    for i, _, p in report.final.top:
        p_lens[i] = p
    assert np.abs(p_lens - p_model).max() <= 1e-6


# ---- what qwen3c refuses ------------------------------------------------------------------------

def _tiny_gguf_with_arch(tmp_path, arch):
    import ggufbuild as gb
    b = gb.tiny_qwen3(arch=arch)
    path = tmp_path / f"{arch}.gguf"
    b.write(path)
    return path


@pytest.mark.parametrize("arch,missing", [("qwen35moe", "mixture-of-experts"),
                                          ("clip", "vision"), ("qwen3vl", "vision")])
def test_unsupported_relatives_name_what_is_missing(tmp_path, arch, missing):
    with pytest.raises(UnsupportedModelError, match=missing):
        qwen3c.Model(str(_tiny_gguf_with_arch(tmp_path, arch)), n_ctx=8)


def test_converter_refuses_moe(tmp_path):
    from qwen3c.convert import convert
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_5_moe", "architectures": '
                                          '["Qwen3_5MoeForConditionalGeneration"]}')
    with pytest.raises(UnsupportedModelError, match="mixture-of-experts"):
        convert(tmp_path, tmp_path / "x.gguf")


def _rewrite(src, dst, drop=(), kv=None):
    """Copy a GGUF with some metadata keys dropped or replaced (gguf's writer)."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), "qwen35")
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture" or k in drop or (kv and k in kv):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, f.contents(), t, sub_type=f.types[1])
        else:
            w.add_key_value(k, f.contents(), t)
    for k, (v, t) in (kv or {}).items():
        w.add_key_value(k, v, t)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_shape=list(reversed([int(d) for d in t.shape])),
                     raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


@sanitize
@pytest.mark.parametrize("change,match", [
    (dict(drop=("qwen35.ssm.state_size",)), "qwen35.ssm.state_size"),
    (dict(kv={"qwen35.attention.recurrent_layers": ([True, False], gguf.GGUFValueType.ARRAY)}),
     "recurrent_layers"),
    (dict(kv={"qwen35.ssm.time_step_rank": (3, gguf.GGUFValueType.UINT32)}), "time_step_rank"),
])
def test_bad_qwen35_metadata(gqa_path, tmp_path, change, match):
    bad = _rewrite(gqa_path, tmp_path / "bad.gguf", **change)
    with pytest.raises(ModelFormatError, match=match):
        qwen3c.Model(str(bad), n_ctx=8)


def test_rewritten_file_still_loads(gqa_path, tmp_path):
    """(the helper above changes only what a test asks for)"""
    same = _rewrite(gqa_path, tmp_path / "same.gguf")
    toks = tokens_for(256, 10)
    assert rel_err(run_qwen3c(same, toks), run_qwen3c(gqa_path, toks)) == 0


# ---- info and diff on qwen35 files ----------------------------------------------------------------

def test_diff_cli_on_the_conditional_generation_layout(make_tiny_qwen35, capsys):
    """`qwen3c diff --hf DIR` loads the official layout's class (its lm_head is tied by the
    outer config) and hooks the text model's layers."""
    import json
    from qwen3c import introspect
    hf_dir, path = _make(make_tiny_qwen35, "gqa", layout="conditional")
    toks = ",".join(map(str, tokens_for(256, 24, seed=14)))
    rc = introspect.main_diff(["--model", str(path), "--hf", str(hf_dir), "--tokens", toks,
                               "--tol", "1e-5", "--strict", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["first_over"] is None and d["top1_agree"] == 24
    assert len(d["stages"]) == 4 + 2


def test_info_json(make_tiny_qwen35, check_model_context, capsys):
    import json
    from qwen3c import introspect
    _, path = _make(make_tiny_qwen35, "wide")
    assert introspect.main_info([str(path), "--json"]) == 0
    info = check_model_context(json.loads(capsys.readouterr().out))
    hp = info["hyperparameters"]
    assert info["architecture"] == "qwen35"
    assert (hp["ssm_group_count"], hp["ssm_time_step_rank"], hp["ssm_state_size"], hp["ssm_inner_size"],
            hp["ssm_conv_kernel"], hp["rope_dimension_count"], hp["linear_layers"]) == (2, 6, 32, 192, 4, 8, 6)
    assert introspect.main_info([str(path)]) == 0
    assert "ssm_time_step_rank=6" in capsys.readouterr().out


# ---- llama.cpp opens the files our converter writes -------------------------------------------

def test_llama_cpp_loads_our_file(make_tiny_qwen35):
    """llama-cpp-python (CI builds it from the same 0.3.36 sdist) loads qwen3c.convert's qwen35
    file -- tokenizer (pre-tokenizer "qwen35") included -- and computes the same logits within
    its own arithmetic (it rounds activations to 16 / 8 bits in places)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    _, path = _make(make_tiny_qwen35, "gqa", tokenizer="qwen35")
    tokens = tokens_for(150000, 48, seed=15)
    ours = run_qwen3c(path, tokens)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=2, logits_all=True,
                          verbose=False)
    try:
        llm.eval(tokens.tolist())
        theirs = np.array(llm.scores[:len(tokens)])
        text_ids = llm.tokenize("Hello world, héllo 世界".encode(), add_bos=False, special=False)
    finally:
        llm.close()
    err = rel_err(theirs, ours)
    print(f"llama.cpp on our qwen35 file vs qwen3c: rel max err {err:.2e}")
    assert err <= 1e-3
    with qwen3c.Model(str(path), n_ctx=16) as m:
        assert m.encode("Hello world, héllo 世界") == text_ids
