"""The one machine-readable map between the C engine, transformers and GGUF.

Every concept of a Qwen3 forward pass appears once in `ROWS`, with

* ``c``      -- the C name, spelled as a reader would grep for it: a struct (``RunState``), a
  struct field (``LayerWeights.wq``), a function (``rmsnorm``) or, for the Python layer, a
  ``Class.method`` / function; ``c_kind`` says which, ``c_file`` says where it lives;
* ``hf``     -- one or more references into transformers, each written ``space:path``:

  - ``instance:PATH``     an attribute path on a ``Qwen3ForCausalLM`` instance, where a path part
    ``N`` stands for "any layer" (layer 0 is used to check it), e.g.
    ``instance:model.layers.N.self_attn.q_proj.weight``;
  - ``modeling:PATH``     an attribute of ``transformers.models.qwen3.modeling_qwen3``, e.g.
    ``modeling:Qwen3RMSNorm.forward``;
  - ``instance35:PATH`` / ``modeling35:PATH``  the same on a ``Qwen3_5ForCausalLM`` and in
    ``transformers.models.qwen3_5.modeling_qwen3_5`` (the "qwen35" section), where ``N`` is any
    layer of the kind the path names (a linear_attn or a self_attn layer);
  - ``transformers:PATH`` an attribute (or submodule) of the top-level ``transformers`` package;

* ``hf_local`` -- for activations, which are local variables in transformers: the identifier as it
  appears in the source of the first ``hf`` reference (``query_states`` ...);
* ``gguf``   -- the GGUF tensor name (``blk.N.attn_q.weight``) or metadata key
  (``{arch}.block_count``) where there is one.

`tools/gen_docs_table.py` renders docs/c_vs_transformers.md from this table, and
tests/test_mapping.py checks both sides: every C name is found in csrc/ or python/qwen3c/, and
every transformers reference resolves on a real tiny model -- so a rename on either side fails.
The helpers at the bottom (`gguf_to_hf`, `hf_to_gguf`, `layer_of`) turn GGUF tensor names into
transformers parameter names and back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ["Row", "ROWS", "SECTIONS", "rows_in", "gguf_to_hf", "hf_to_gguf", "layer_of",
           "TENSOR_MAP"]


@dataclass(frozen=True)
class Row:
    """One concept, named on the three sides."""

    section: str
    concept: str
    c: str
    c_kind: str              # "struct" | "field" | "function" | "python"
    c_file: str              # path relative to the repository root
    hf: Tuple[str, ...]      # references, see the module docstring
    gguf: Optional[str] = None
    hf_local: Optional[str] = None
    note: str = ""


SECTIONS = (
    ("hyperparameters", "Hyperparameters: `Config` <-> `Qwen3Config` <-> GGUF metadata"),
    ("containers", "Containers: who holds what"),
    ("weights", "Weight tensors: `TransformerWeights` / `LayerWeights` <-> `state_dict()` <-> GGUF"),
    ("activations", "Activation buffers: `RunState` <-> local variables of the PyTorch forward"),
    ("compute", "Computation: one forward pass, step by step"),
    ("around", "Around the model: tokens in, tokens out"),
    ("qwen35", "Qwen3.5 (`qwen35` files): `Qwen3_5TextConfig`, the Gated DeltaNet and gated "
               "attention layers, the recurrent state"),
)

_H = "csrc/qwen3c.h"
_I = "csrc/internal.h"
_F = "csrc/forward.c"
_Q = "csrc/forward_qwen35.c"
_D = "csrc/kernels/deltanet_scalar.c"  # per CPU tier: the same file compiled with its flags


def _cfg(concept, field, hf_attr, gguf, note=""):
    return Row("hyperparameters", concept, f"Config.{field}", "field", _H,
               (f"instance:config.{hf_attr}",), gguf, None, note)


def _w(concept, struct, field, hf_path, gguf, note=""):
    return Row("weights", concept, f"{struct}.{field}", "field", _I,
               (f"instance:{hf_path}",), gguf, None, note)


def _act(concept, field, hf_ref, local, note=""):
    return Row("activations", concept, f"RunState.{field}", "field", _I, (hf_ref,), None, local,
               note)


def _cfg35(concept, field, hf_attr, gguf, note=""):
    return Row("qwen35", concept, f"Config.{field}", "field", _H,
               (f"instance35:config.{hf_attr}",), gguf, None, note)


def _w35(concept, field, hf_path, gguf, note=""):
    return Row("qwen35", concept, f"LayerWeights.{field}", "field", _I,
               (f"instance35:{hf_path}",), gguf, None, note)


def _act35(concept, field, local, note=""):
    return Row("qwen35", concept, f"RunState.{field}", "field", _I,
               ("modeling35:Qwen3_5GatedDeltaNet.forward",), None, local, note)


ROWS: Tuple[Row, ...] = (
    # ---- hyperparameters ------------------------------------------------------------------
    Row("hyperparameters", "all hyperparameters", "Config", "struct", _I,
        ("instance:config", "transformers:Qwen3Config"), "{arch}.*",
        note="`Config` is a typedef of the public `qwen3c_config`"),
    _cfg("architecture", "arch", "model_type", "general.architecture",
         "\"qwen3\"; SmolLM2 files say \"llama\""),
    _cfg("number of decoder layers", "n_layers", "num_hidden_layers", "{arch}.block_count"),
    _cfg("hidden size (residual width)", "dim", "hidden_size", "{arch}.embedding_length"),
    _cfg("MLP inner size", "hidden_dim", "intermediate_size", "{arch}.feed_forward_length"),
    _cfg("query heads", "n_heads", "num_attention_heads", "{arch}.attention.head_count"),
    _cfg("key/value heads (GQA)", "n_kv_heads", "num_key_value_heads",
         "{arch}.attention.head_count_kv"),
    _cfg("head size", "head_dim", "head_dim", "{arch}.attention.key_length",
         "Qwen3: not always dim / n_heads"),
    _cfg("vocabulary size", "vocab_size", "vocab_size", "token_embd.weight",
         "rows of the embedding table"),
    _cfg("trained context length", "n_ctx_train", "max_position_embeddings",
         "{arch}.context_length", "the KV cache is sized to n_ctx, not to this"),
    _cfg("RoPE base", "rope_theta", "rope_parameters.rope_theta", "{arch}.rope.freq_base"),
    _cfg("RMSNorm epsilon", "norm_eps", "rms_norm_eps",
         "{arch}.attention.layer_norm_rms_epsilon"),
    _cfg("tied embeddings", "tied_embeddings", "tie_word_embeddings", "output.weight",
         "tied when the GGUF has no output.weight"),
    Row("hyperparameters", "per-head Q/K norm present", "Config.qk_norm", "field", _H,
        ("instance:model.layers.N.self_attn.q_norm",), "blk.N.attn_q_norm.weight",
        note="1 for qwen3, 0 for llama"),
    Row("hyperparameters", "RoPE pairing", "Config.rope_interleaved", "field", _H,
        ("modeling:rotate_half",), None,
        note="0 = rotate-half (i, i + head_dim/2) as transformers; 1 = adjacent pairs, for "
             "llama GGUFs whose Q/K rows the converter permuted"),
    Row("hyperparameters", "parameter count", "Config.n_params", "field", _H,
        ("instance:num_parameters",), None, note="sum of all tensor element counts"),

    # ---- containers -----------------------------------------------------------------------
    Row("containers", "the loaded model (read-only, shareable)", "Transformer", "struct", _I,
        ("modeling:Qwen3ForCausalLM",), None,
        note="public handle `qwen3c_model`, built by `qwen3c_model_load` from the whole file"),
    Row("containers", "all weights", "TransformerWeights", "struct", _I,
        ("instance:state_dict",), None,
        note="pointers into the mmapped file, quantized as stored"),
    Row("containers", "one decoder layer's weights", "LayerWeights", "struct", _I,
        ("instance:model.layers.N", "modeling:Qwen3DecoderLayer"), "blk.N.*"),
    Row("containers", "one 2-D weight in its stored type", "QTensor", "struct", _I,
        ("modeling:nn.Linear",), None, note="rows = out_features, cols = in_features"),
    Row("containers", "activations and KV cache", "RunState", "struct", _I,
        ("modeling:Qwen3Model.forward",), None,
        note="PyTorch allocates activations per call; C carves one buffer once"),
    Row("containers", "a conversation's state", "qwen3c_context", "struct", _I,
        ("modeling:DynamicCache",), None, note="holds RunState (KV cache) and the thread count"),
    Row("containers", "a conversation's state, in Python", "Session", "python",
        "python/qwen3c/session.py", ("modeling:DynamicCache",), None,
        note="Model.session(): one qwen3c_context and the record of the tokens it holds"),
    Row("containers", "several conversations in one forward pass", "qwen3c_forward_batch",
        "function", "csrc/forward.c", ("modeling:Qwen3Model.forward",), None,
        note="transformers pads a batch and masks it; here each sequence keeps its own "
             "cache and positions, and the weights are read once for all"),

    # ---- weights --------------------------------------------------------------------------
    _w("token embeddings", "TransformerWeights", "token_embedding",
       "model.embed_tokens.weight", "token_embd.weight"),
    _w("decoder layers", "TransformerWeights", "layers", "model.layers", "blk.N"),
    _w("pre-attention RMSNorm", "LayerWeights", "attn_norm",
       "model.layers.N.input_layernorm.weight", "blk.N.attn_norm.weight"),
    _w("attention Q projection", "LayerWeights", "wq",
       "model.layers.N.self_attn.q_proj.weight", "blk.N.attn_q.weight",
       "llama-arch GGUFs store Q/K rows permuted"),
    _w("attention K projection", "LayerWeights", "wk",
       "model.layers.N.self_attn.k_proj.weight", "blk.N.attn_k.weight"),
    _w("attention V projection", "LayerWeights", "wv",
       "model.layers.N.self_attn.v_proj.weight", "blk.N.attn_v.weight"),
    _w("attention output projection", "LayerWeights", "wo",
       "model.layers.N.self_attn.o_proj.weight", "blk.N.attn_output.weight"),
    _w("per-head Q norm", "LayerWeights", "q_norm",
       "model.layers.N.self_attn.q_norm.weight", "blk.N.attn_q_norm.weight",
       "applied to each head before RoPE"),
    _w("per-head K norm", "LayerWeights", "k_norm",
       "model.layers.N.self_attn.k_norm.weight", "blk.N.attn_k_norm.weight"),
    _w("pre-MLP RMSNorm", "LayerWeights", "ffn_norm",
       "model.layers.N.post_attention_layernorm.weight", "blk.N.ffn_norm.weight"),
    _w("MLP gate projection", "LayerWeights", "w1",
       "model.layers.N.mlp.gate_proj.weight", "blk.N.ffn_gate.weight"),
    _w("MLP up projection", "LayerWeights", "w3",
       "model.layers.N.mlp.up_proj.weight", "blk.N.ffn_up.weight"),
    _w("MLP down projection", "LayerWeights", "w2",
       "model.layers.N.mlp.down_proj.weight", "blk.N.ffn_down.weight"),
    _w("final RMSNorm", "TransformerWeights", "rms_final", "model.norm.weight",
       "output_norm.weight"),
    _w("LM head", "TransformerWeights", "wcls", "lm_head.weight", "output.weight",
       "same memory as token_embedding when tied"),

    # ---- activations ----------------------------------------------------------------------
    _act("residual stream", "x", "modeling:Qwen3DecoderLayer.forward", "residual",
         "`hidden_states` between layers"),
    _act("normed block input", "xb", "modeling:Qwen3DecoderLayer.forward", "input_layernorm",
         "`hidden_states` right after the norm"),
    _act("queries", "q", "modeling:Qwen3Attention.forward", "query_states"),
    _act("keys (this batch)", "k", "modeling:Qwen3Attention.forward", "key_states"),
    _act("values (this batch)", "v", "modeling:Qwen3Attention.forward", "value_states"),
    _act("attention scores / probabilities", "att", "modeling:eager_attention_forward",
         "attn_weights", "one row per thread in C"),
    _act("attention output before o_proj", "att_out", "modeling:eager_attention_forward",
         "attn_output"),
    _act("o_proj / down_proj output", "xb2", "modeling:Qwen3MLP.forward", "down_proj"),
    _act("SwiGLU product", "hb", "modeling:Qwen3MLP.forward", "act_fn",
         "`act_fn(gate_proj(x)) * up_proj(x)`"),
    _act("up projection", "hb2", "modeling:Qwen3MLP.forward", "up_proj"),
    _act("RoPE cosines", "rope_cos", "modeling:Qwen3RotaryEmbedding.forward", "cos",
         "precomputed for every position of the context"),
    _act("RoPE sines", "rope_sin", "modeling:Qwen3RotaryEmbedding.forward", "sin"),
    _act("key cache", "key_cache", "modeling:Qwen3Attention.forward", "past_key_values",
         "`past_key_values.update(key_states, ...)`; in chunks of positions (every layer's "
         "together), tiles of 16 transposed; float32, or float16 with `kv_cache=\"f16\"`"),
    _act("value cache", "value_cache", "modeling:Qwen3Attention.forward", "past_key_values",
         "float32, or float16 with `kv_cache=\"f16\"`"),

    # ---- computation ----------------------------------------------------------------------
    Row("compute", "one forward pass (public API)", "qwen3c_forward", "function", _F,
        ("modeling:Qwen3ForCausalLM.forward",), None,
        note="tokens at positions pos.. -> logits; fills the KV cache"),
    Row("compute", "one forward pass with hidden states", "qwen3c_forward_trace", "function", _F,
        ("modeling:Qwen3Model.forward",), None, hf_local="hidden_states",
        note="what `python -m qwen3c diff` compares"),
    Row("compute", "attention probabilities of a forward pass", "qwen3c_forward_attention",
        "function", _F, ("modeling:eager_attention_forward",), None, hf_local="attn_weights",
        note="`output_attentions=True` (eager); `Model.attention`, `qwen3c attend`"),
    Row("compute", "final norm + LM head on any hidden state", "qwen3c_lm_head", "function", _F,
        ("modeling:Qwen3ForCausalLM.forward",), None, hf_local="lm_head",
        note="the logit lens: `Model.lm_head`, `qwen3c lens`"),
    Row("compute", "the layer loop (one batch of tokens)", "forward", "function", _F,
        ("modeling:Qwen3Model.forward", "modeling:Qwen3DecoderLayer.forward"), None),
    Row("compute", "embedding lookup", "embed", "function", _F,
        ("instance:model.embed_tokens",), "token_embd.weight",
        note="dequantizes one row per token"),
    Row("compute", "RMSNorm", "rmsnorm", "function", _F,
        ("modeling:Qwen3RMSNorm.forward",), None),
    Row("compute", "matrix multiply (nn.Linear without bias)", "matmul", "function", _F,
        ("modeling:nn.Linear",), None, note="on the stored type: no dequantize-all"),
    Row("compute", "RoPE (rotate-half pairing)", "rope", "function", _F,
        ("modeling:apply_rotary_pos_emb", "modeling:rotate_half"), None,
        note="pairs i with i + head_dim/2"),
    Row("compute", "attention (causal, grouped-query)", "attention", "function", _F,
        ("modeling:eager_attention_forward", "modeling:repeat_kv"), None),
    Row("compute", "softmax", "softmax", "function", "csrc/kernels/nn_scalar.c",
        ("modeling:nn.functional.softmax",), None,
        note="per CPU tier: kernels/nn_<tier>.c; this is the plain C one"),
    Row("compute", "SwiGLU MLP activation", "swiglu", "function", _F,
        ("modeling:Qwen3MLP.forward",), None, hf_local="act_fn",
        note="silu(gate) * up"),
    Row("compute", "the MLP half of a decoder layer", "mlp_block", "function", _F,
        ("modeling:Qwen3DecoderLayer.forward", "modeling:Qwen3MLP.forward"), None,
        hf_local="post_attention_layernorm", note="norm, SwiGLU MLP, residual (Qwen3.5 too)"),
    Row("compute", "only the rows that feed logits", "output_rows", "function", _F,
        ("modeling:Qwen3ForCausalLM.forward",), None, hf_local="logits_to_keep",
        note="the last layer past its keys and values: each sequence's last token (padded to 12 "
             "rows, so the matmuls take the batch's kernels and the bits stay); every row with "
             "all_logits, a trace or attention capture"),
    Row("compute", "final norm and LM head", "final_norm_logits", "function", _F,
        ("modeling:Qwen3Model.forward", "modeling:Qwen3ForCausalLM.forward"), None,
        hf_local="norm"),

    # ---- around ---------------------------------------------------------------------------
    Row("around", "tokenisation (byte-level BPE)", "qwen3c_tokenize", "function",
        "csrc/tokenizer.c", ("transformers:Qwen2Tokenizer", "transformers:PreTrainedTokenizerBase.encode"),
        "tokenizer.ggml.tokens", note="merges in tokenizer.ggml.merges"),
    Row("around", "sampling the next token", "qwen3c_sampler_sample", "function",
        "csrc/sampler.c", ("modeling:GenerationMixin.generate", "transformers:TopPLogitsWarper"),
        None, note="temperature, top-k, top-p, min-p, penalties"),
    Row("around", "chat loop", "Chat.stream", "python", "python/qwen3c/chat.py",
        ("transformers:PreTrainedTokenizerBase.apply_chat_template",
         "transformers:TextIteratorStreamer"), "tokenizer.chat_template"),
    Row("around", "command line entry", "main", "python", "python/qwen3c/__main__.py",
        ("transformers:cli.transformers.main",), None,
        note="`python -m qwen3c` vs the `transformers` console script"),

    # ---- Qwen3.5 --------------------------------------------------------------------------
    _cfg35("Gated DeltaNet layers", "n_linear_layers", "layer_types",
           "{arch}.full_attention_interval",
           "how many layer_types are \"linear_attention\"; read from "
           "{arch}.attention.recurrent_layers (one bool per block) when the file has it"),
    Row("qwen35", "the token mixer of each layer", "qwen3c_model_layer_type", "function",
        "csrc/model.c", ("instance35:config.layer_types",), "{arch}.full_attention_interval",
        note="QWEN3C_LAYER_LINEAR or QWEN3C_LAYER_ATTENTION; Model.config.layer_types"),
    _cfg35("causal conv1d kernel size", "linear_conv_kernel", "linear_conv_kernel_dim",
           "{arch}.ssm.conv_kernel"),
    _cfg35("linear attention key heads", "linear_n_k_heads", "linear_num_key_heads",
           "{arch}.ssm.group_count"),
    _cfg35("linear attention value heads", "linear_n_v_heads", "linear_num_value_heads",
           "{arch}.ssm.time_step_rank", "value head j reads key head j % n_k in the file"),
    _cfg35("linear attention key head size", "linear_k_head_dim", "linear_key_head_dim",
           "{arch}.ssm.state_size", "rows of each head's state S"),
    _cfg35("linear attention value head size", "linear_v_head_dim", "linear_value_head_dim",
           "{arch}.ssm.inner_size", "inner_size / time_step_rank; columns of S"),
    _cfg35("rotated dims per head", "rope_dim", "rope_parameters.partial_rotary_factor",
           "{arch}.rope.dimension_count", "head_dim * partial_rotary_factor (64 of 256); text "
           "positions make the interleaved MRoPE plain RoPE"),
    Row("qwen35", "attention output gate present", "Config.attn_output_gate", "field", _H,
        ("modeling35:Qwen3_5Attention.forward",), None, hf_local="gate",
        note="q_proj yields query and gate per head"),
    _w35("Gated DeltaNet layer", "is_linear", "model.layers.N.linear_attn",
         "{arch}.full_attention_interval", "Qwen3_5GatedDeltaNet instead of self_attn"),
    _w35("query, key, value projection", "in_qkv", "model.layers.N.linear_attn.in_proj_qkv.weight",
         "blk.N.attn_qkv.weight", "value rows in the file's tiled head order"),
    _w35("norm gate projection", "in_z", "model.layers.N.linear_attn.in_proj_z.weight",
         "blk.N.attn_gate.weight"),
    _w35("write strength projection", "in_b", "model.layers.N.linear_attn.in_proj_b.weight",
         "blk.N.ssm_beta.weight", "beta = sigmoid(b)"),
    _w35("decay projection", "in_a", "model.layers.N.linear_attn.in_proj_a.weight",
         "blk.N.ssm_alpha.weight", "g = -exp(A_log) * softplus(a + dt_bias)"),
    _w35("causal conv1d kernels", "conv1d", "model.layers.N.linear_attn.conv1d.weight",
         "blk.N.ssm_conv1d.weight", "depthwise; (CD, 1, K) in torch, (K, CD) in C"),
    _w35("decay bias", "dt_bias", "model.layers.N.linear_attn.dt_bias", "blk.N.ssm_dt.bias"),
    _w35("decay rate", "ssm_a", "model.layers.N.linear_attn.A_log", "blk.N.ssm_a",
         "the file stores -exp(A_log)"),
    _w35("gated RMSNorm weight", "ssm_norm", "model.layers.N.linear_attn.norm.weight",
         "blk.N.ssm_norm.weight", "multiplies by weight (not 1 + weight)"),
    _w35("linear attention output projection", "out_proj",
         "model.layers.N.linear_attn.out_proj.weight", "blk.N.ssm_out.weight"),
    _w35("query and output gate projection", "wq", "model.layers.N.self_attn.q_proj.weight",
         "blk.N.attn_q.weight", "(2*NH*HD, D): each head's query rows, then its gate rows"),
    _w35("pre-MLP RMSNorm (qwen35 name)", "ffn_norm",
         "model.layers.N.post_attention_layernorm.weight", "blk.N.post_attention_norm.weight",
         "every Qwen3_5RMSNorm is stored as 1 + weight"),
    Row("qwen35", "a context's recurrent state", "RecurrentState", "struct", _I,
        ("transformers:cache_utils.LinearAttentionLayer", "transformers:DynamicCache"), None,
        note="DynamicCache holds one LinearAttentionLayer per Gated DeltaNet layer"),
    Row("qwen35", "conv states", "RecurrentState.conv", "field", _I,
        ("transformers:cache_utils.LinearAttentionCacheLayerMixin.__init__",), None,
        hf_local="conv_states", note="each linear layer's last K-1 conv inputs"),
    Row("qwen35", "recurrent states", "RecurrentState.ssm", "field", _I,
        ("transformers:cache_utils.LinearAttentionCacheLayerMixin.__init__",), None,
        hf_local="recurrent_states", note="S: (NV, HK, HV) per linear layer"),
    _act35("projected query, key, value (conv input)", "qkv", "mixed_qkv"),
    _act35("after conv1d + SiLU", "conv_out", "query", "query, key, value; then q, k l2-normed"),
    _act35("norm gate", "z", "z"),
    _act35("write strength", "beta", "beta"),
    _act35("log decay", "g", "g"),
    _act35("linear attention output", "core", "core_attn_out", "then norm(core_attn_out, z)"),
    Row("qwen35", "query and gate (attention layer)", "RunState.qg", "field", _I,
        ("modeling35:Qwen3_5Attention.forward",), None, hf_local="query_states",
        note="q_proj output before the split"),
    Row("qwen35", "attention output gate", "RunState.gate", "field", _I,
        ("modeling35:Qwen3_5Attention.forward",), None, hf_local="gate"),
    Row("qwen35", "the hybrid forward pass", "forward_qwen35", "function", _Q,
        ("modeling35:Qwen3_5TextModel.forward", "modeling35:Qwen3_5DecoderLayer.forward"), None),
    Row("qwen35", "Gated DeltaNet layer", "gated_deltanet", "function", _Q,
        ("modeling35:Qwen3_5GatedDeltaNet.forward",), None),
    Row("qwen35", "gated attention layer", "gated_attention", "function", _Q,
        ("modeling35:Qwen3_5Attention.forward",), None,
        note="q/k norm, partial RoPE, attention, * sigmoid(gate)"),
    Row("qwen35", "partial rotary embedding", "rope_partial", "function", _Q,
        ("modeling35:apply_rotary_pos_emb", "modeling35:Qwen3_5TextRotaryEmbedding.forward"), None,
        note="the first rope_dim dims rotate, pairs (i, i + rope_dim/2)"),
    Row("qwen35", "causal conv1d with its state", "causal_conv1d_silu", "function", _D,
        ("modeling35:causal_conv1d_fn", "modeling35:causal_conv1d_update"), None,
        note="then SiLU"),
    Row("qwen35", "q / k normalization", "l2norm_scaled", "function", _D,
        ("modeling35:l2norm",), None, note="query also * 1/sqrt(head_k_dim)"),
    Row("qwen35", "gated delta rule, token by token", "gated_delta_rule_recurrent", "function", _D,
        ("modeling35:torch_recurrent_gated_delta_rule",), None, note="decode"),
    Row("qwen35", "gated delta rule, chunked", "gated_delta_rule_chunked", "function", _D,
        ("modeling35:torch_chunk_gated_delta_rule",), None, note="prefill: 64-token chunks"),
    Row("qwen35", "gated RMSNorm", "rmsnorm_gated", "function", _D,
        ("modeling35:Qwen3_5RMSNormGated.forward",), None),
    Row("qwen35", "checkpoint the state", "qwen3c_context_checkpoint", "function", _Q,
        ("transformers:DynamicCache.activate_past_recording",), None,
        note="a copy of every linear layer's state at n_past"),
    Row("qwen35", "rewind the state", "qwen35_state_seek", "function", _Q,
        ("transformers:DynamicCache.crop",), None,
        note="before a forward: keep, zero, or restore a checkpoint"),
    Row("qwen35", "where a context can restart", "qwen3c_context_rewind_point", "function", _F,
        ("transformers:DynamicCache.get_seq_length",), None),
)


def rows_in(section: str):
    """The rows of one section, in table order."""
    return [r for r in ROWS if r.section == section]


# ---- GGUF tensor names <-> transformers parameter names ------------------------------------
# Derived from the weight rows, so there is exactly one place that spells a tensor name.
TENSOR_MAP = {r.gguf: r.hf[0].split(":", 1)[1] for r in ROWS
              if r.section == "weights" and r.gguf and r.gguf.endswith(".weight")}

_BLK = re.compile(r"^blk\.(\d+)\.(.+)$")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def gguf_to_hf(name: str) -> str:
    """'blk.3.ffn_down.weight' -> 'model.layers.3.mlp.down_proj.weight'. KeyError if unknown."""
    m = _BLK.match(name)
    if m:
        return TENSOR_MAP["blk.N." + m.group(2)].replace(".N.", f".{m.group(1)}.", 1)
    return TENSOR_MAP[name]


def hf_to_gguf(name: str) -> str:
    """'model.layers.3.mlp.down_proj.weight' -> 'blk.3.ffn_down.weight'. KeyError if unknown."""
    inverse = {v: k for k, v in TENSOR_MAP.items()}
    m = _LAYER.match(name)
    if m:
        return inverse["model.layers.N." + m.group(2)].replace(".N.", f".{m.group(1)}.", 1)
    return inverse[name]


def layer_of(gguf_name: str) -> Optional[int]:
    """The decoder layer a GGUF tensor belongs to (blk.N.* -> N), or None for global tensors."""
    m = _BLK.match(gguf_name)
    return int(m.group(1)) if m else None
