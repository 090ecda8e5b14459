"""The GGUF `llama` architecture: no q/k norm, rotary pairs (2i, 2i+1) on the permuted q/k rows
that llama.cpp's converter writes, optional untied `output.weight`, `llama.*` metadata keys.

Checked against transformers' LlamaForCausalLM (rotate_half on the unpermuted weights): the
permutation + interleaved rotation must reproduce its logits exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import qwen3c  # noqa: E402

ROPE_THETA = 10000.0

HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def permute_for_interleaved_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder the rows of q_proj / k_proj so that each head's rotary pair (i, i + d/2) becomes
    the adjacent pair (2i, 2i + 1): the layout of llama-architecture GGUF files."""
    d = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, d // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(path, model, cfg, tied: bool):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    for name, p in model.state_dict().items():
        a = p.detach().float().numpy().copy()
        if name == "model.embed_tokens.weight":
            g = "token_embd.weight"
        elif name == "model.norm.weight":
            g = "output_norm.weight"
        elif name == "lm_head.weight":
            if tied:
                continue
            g = "output.weight"
        else:
            parts = name.split(".")
            layer, key = parts[2], ".".join(parts[3:-1])
            if key == "self_attn.q_proj":
                a = permute_for_interleaved_rope(a, cfg.num_attention_heads)
            elif key == "self_attn.k_proj":
                a = permute_for_interleaved_rope(a, cfg.num_key_value_heads)
            g = f"blk.{layer}.{HF_TO_GGUF[key]}.weight"
        w.add_tensor(g, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def random_llama(seed: int, scale: float = 0.1, **config):
    """(a LlamaForCausalLM with eager attention, norm weights ~ 1 + N(0, 0.1) and matrices
    ~ N(0, scale), its config)."""
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(attn_implementation="eager", **config)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((1 + 0.1 * torch.randn_like(p)) if p.dim() == 1 else scale * torch.randn_like(p))
    return model, cfg


@pytest.mark.parametrize("tied,n_kv", [(True, 2), (False, 4)])
def test_llama_arch_matches_transformers(tmp_path, tied, n_kv, check_model_context):
    model, cfg = random_llama(
        1, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=n_kv, vocab_size=300, max_position_embeddings=256, rope_theta=ROPE_THETA,
        rms_norm_eps=1e-5, tie_word_embeddings=tied)
    path = tmp_path / "llama.gguf"
    write_llama_gguf(path, model, cfg, tied)
    from qwen3c.gguf_info import model_info
    info = check_model_context(model_info(path))
    assert info["safe_to_load"] and info["hyperparameters"]["tied_embeddings"] == tied
    ids = torch.randint(0, cfg.vocab_size, (1, 72))
    with torch.no_grad():
        ref = model(ids).logits[0].numpy()
    with qwen3c.Model(path, n_ctx=128) as m:
        assert m.config.arch == "llama"
        assert m.config.tied_embeddings == tied
        assert m.config.head_dim == 16
        out = m.forward(ids[0].tolist(), all_logits=True)
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel < 1e-4, rel
    assert (out.argmax(-1) == ref.argmax(-1)).all()


def test_without_permutation_the_logits_differ(tmp_path):
    """Guards the test above: feeding the unpermuted rows must NOT match (the pairing matters)."""
    model, cfg = random_llama(
        2, scale=0.3, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, vocab_size=128, max_position_embeddings=128,
        tie_word_embeddings=True)
    original = permute_for_interleaved_rope
    path = tmp_path / "llama_unpermuted.gguf"
    globals()["permute_for_interleaved_rope"] = lambda w, n: w
    try:
        write_llama_gguf(path, model, cfg, True)
    finally:
        globals()["permute_for_interleaved_rope"] = original
    ids = torch.randint(0, cfg.vocab_size, (1, 40))
    with torch.no_grad():
        ref = model(ids).logits[0].numpy()
    with qwen3c.Model(path, n_ctx=64) as m:
        out = m.forward(ids[0].tolist(), all_logits=True)
    assert np.abs(out - ref).max() / np.abs(ref).max() > 1e-3
