/*
 * forward_qwen35.c -- Qwen3.5 (GGUF architecture "qwen35"): the hybrid decoder and its recurrent
 * state.
 *
 * Reads like transformers' modeling_qwen3_5.py: forward_qwen35() is Qwen3_5ForCausalLM.forward
 * with Qwen3_5DecoderLayer.forward in its layer loop, gated_deltanet() is
 * Qwen3_5GatedDeltaNet.forward and gated_attention() is Qwen3_5Attention.forward. The pieces a
 * Qwen3 layer has too -- RMSNorm, the matmuls, the MLP, attention over the KV cache, the LM head
 * -- are forward.c's; the Gated DeltaNet kernels are the tier's (kernels/deltanet_scalar.c).
 *
 * Three of every four layers (full_attention_interval = 4) are Gated DeltaNet: linear attention
 * whose memory is a fixed-size state per layer -- the last K-1 inputs of its causal conv1d and
 * one (HK, HV) matrix S per value head -- instead of a KV cache that grows with the context.
 * RecurrentState holds them (transformers: DynamicCache's LinearAttentionLayer conv_states and
 * recurrent_states); the other layers keep a KV cache, as Qwen3's do.
 *
 * A state cannot be cut back to an earlier position, so the context records n_past and
 * checkpoints (copies of the whole state at chosen positions); qwen3c.h ("Recurrent state")
 * states the contract, qwen35_state_seek() enforces it before every forward.
 *
 * Shapes: see the legend at the top of internal.h (D, NH, NKV, HD, NK, NV, HK, HV, KD, VD, CD, K).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels/kernels.h"

#define DEFAULT_CHECKPOINTS 4

/* ---------------------------------------------------------------------------------------
 * The layers
 * ------------------------------------------------------------------------------------- */

/* apply_rotary_pos_emb with a partial rotary dimension: the first RD dims of each of the n_heads
 * vectors rotate, pairing i with i + RD/2 (rotate_half of q[..., :RD]); the rest pass through.
 * For text, Qwen3.5's interleaved MRoPE gives its three sections the same position, which makes
 * it this plain RoPE. */
static void rope_partial(float *vec, int n_heads, int head_dim, int RD, const float *cos_p, const float *sin_p) {
    const int half = RD / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = vec + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            const float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * cos_p[i] - x1 * sin_p[i];
            v[i + half] = x1 * cos_p[i] + x0 * sin_p[i];
        }
    }
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* F.softplus (beta 1, threshold 20) */
static inline float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

/* Qwen3_5GatedDeltaNet.forward on s->xb (n tokens of seqs) -> s->xb2, for linear layer il:
 * every sequence continues its own conv and recurrent states. */
static void gated_deltanet(const Pass *ps, const Config *p, Seq *seqs, int n_seqs, int il, const LayerWeights *lw,
                           int n) {
    RunState *s = ps->s;
    const int K = p->linear_conv_kernel, NK = p->linear_n_k_heads, NV = p->linear_n_v_heads;
    const int HK = p->linear_k_head_dim, HV = p->linear_v_head_dim;
    const int KD = NK * HK, VD = NV * HV, CD = 2 * KD + VD, nt = ps->n_threads;
    const int par = n >= 8 ? nt : 1;
    const DeltaNetKernels *dn = ps->k->deltanet; /* the CPU tier's Gated DeltaNet kernels */
#define CONV_STATE(i) (seqs[i].ctx->rs->conv + (size_t)il * (K - 1) * CD) /* (K-1, CD) */
#define SSM_STATE(i) (seqs[i].ctx->rs->ssm + (size_t)il * NV * HK * HV)   /* (NV, HK, HV) */

    /* mixed_qkv = in_proj_qkv(x); z = in_proj_z(x); b = in_proj_b(x); a = in_proj_a(x) */
    const MatmulJob proj[4] = {{s->qkv, &lw->in_qkv}, {s->z, &lw->in_z}, {s->beta, &lw->in_b}, {s->g, &lw->in_a}};
    matmuls(ps, proj, 4, s->xb, n);

    /* mixed_qkv = silu(conv1d(mixed_qkv)), continuing from each sequence's conv state
     * (causal_conv1d_forward); the threads split the channels */
#pragma omp parallel num_threads((int64_t)n * CD >= 65536 ? nt : 1)
    {
        const int tid = thread_id(), nth = thread_count();
        const int c0 = (int)((int64_t)CD * tid / nth), c1 = (int)((int64_t)CD * (tid + 1) / nth);
        for (int i = 0; i < n_seqs; i++)
            dn->causal_conv1d_silu(s->conv_out + (size_t)seqs[i].t0 * CD, s->qkv + (size_t)seqs[i].t0 * CD,
                               CONV_STATE(i), lw->conv1d, seqs[i].n, K, CD, c0, c1);
    }

#pragma omp parallel for num_threads(par) schedule(static)
    for (int t = 0; t < n; t++) {
        float *qkv = s->conv_out + (size_t)t * CD; /* query (KD) | key (KD) | value (VD) */
        /* query, key = l2norm(query) / sqrt(head_k_dim), l2norm(key) (use_qk_l2norm_in_kernel) */
        for (int h = 0; h < NK; h++) {
            dn->l2norm_scaled(qkv + (size_t)h * HK, HK, 1.0f / sqrtf((float)HK));
            dn->l2norm_scaled(qkv + KD + (size_t)h * HK, HK, 1.0f);
        }
        /* beta = b.sigmoid(); g = -A_log.exp() * softplus(a + dt_bias) */
        float *b = s->beta + (size_t)t * NV, *g = s->g + (size_t)t * NV;
        for (int h = 0; h < NV; h++) {
            b[h] = sigmoid(b[h]);
            g[h] = lw->ssm_a[h] * softplus(g[h] + lw->dt_bias[h]);
        }
    }

    /* core_attn_out, recurrent_state = the gated delta rule per sequence and value head; value
     * head h reads key head h % NK (the file's tiled order). transformers runs a batch with
     * the chunked form (torch_chunk_gated_delta_rule, which turns the recurrence into matrix
     * products for a GPU); on a CPU the one-pass recurrence does the same arithmetic 4x faster
     * (bench_kernels.py --delta-rule), so it runs prefill too. Both are in kernels/deltanet_scalar.c. */
    const int jobs = n_seqs * NV;
#pragma omp parallel for num_threads(jobs < nt ? jobs : nt) schedule(static)
    for (int j = 0; j < jobs; j++) {
        const int i = j / NV, h = j % NV;
        const size_t t0 = (size_t)seqs[i].t0;
        const float *q = s->conv_out + t0 * CD + (size_t)(h % NK) * HK, *k = q + KD;
        const float *v = s->conv_out + t0 * CD + 2 * KD + (size_t)h * HV;
        float *o = s->core + t0 * VD + (size_t)h * HV;
        dn->gated_delta_rule_recurrent(SSM_STATE(i) + (size_t)h * HK * HV, o, VD, q, k, CD, v, CD,
                                   s->g + t0 * NV + h, s->beta + t0 * NV + h, NV, seqs[i].n, HK, HV);
    }
#undef CONV_STATE
#undef SSM_STATE

    /* core_attn_out = norm(core_attn_out, z): RMSNorm of each head, times silu(z) */
#pragma omp parallel for num_threads(par) schedule(static)
    for (int t = 0; t < n; t++)
        for (int h = 0; h < NV; h++) {
            const size_t at = (size_t)t * VD + (size_t)h * HV;
            dn->rmsnorm_gated(s->core + at, s->z + at, lw->ssm_norm, HV, p->norm_eps);
        }

    /* output = out_proj(core_attn_out) */
    matmul(ps, s->xb2, s->core, n, &lw->out_proj);
}

/* Qwen3_5Attention.forward on s->xb (n tokens of seqs, each at its positions in its own KV
 * cache) -> s->xb2, for attention layer ia (the index among the attention layers: the caches
 * hold only those). With `outputs` (the last layer, when only logits are wanted) it goes on
 * past the keys and values with the rows that feed logits only (output_rows: forward.c) and
 * returns their count, else n. */
static int gated_attention(const Pass *ps, const Config *p, Seq *seqs, int n_seqs, int ia, const LayerWeights *lw,
                           int n, int outputs) {
    RunState *s = ps->s;
    const int HD = p->head_dim, NH = p->n_heads, NKV = p->n_kv_heads, RD = p->rope_dim;
    const int QD = NH * HD, KVD = NKV * HD, nt = ps->n_threads;
    const int par = n >= 8 ? nt : 1;

    /* query_states | gate = q_proj(x) (per head: HD query values, then HD gate values);
     * key_states = k_proj(x); value_states = v_proj(x) */
    const MatmulJob qkv[3] = {{s->qg, &lw->wq}, {s->k, &lw->wk}, {s->v, &lw->wv}};
    matmuls(ps, qkv, 3, s->xb, n);

#pragma omp parallel for num_threads(par) schedule(static)
    for (int t = 0; t < n; t++) {
        const Seq *sq = seq_of_token(seqs, t); /* its positions and its cache */
        const RunState *cs = &sq->ctx->state;
        const int at = sq->pos + (t - sq->t0);
        float *q = s->q + (size_t)t * QD, *gate = s->gate + (size_t)t * QD;
        float *k = s->k + (size_t)t * KVD, *v = s->v + (size_t)t * KVD;
        const float *qg = s->qg + (size_t)t * 2 * QD;
        for (int h = 0; h < NH; h++) {
            memcpy(q + (size_t)h * HD, qg + (size_t)h * 2 * HD, (size_t)HD * sizeof(float));
            memcpy(gate + (size_t)h * HD, qg + (size_t)h * 2 * HD + HD, (size_t)HD * sizeof(float));
        }
        /* q_norm / k_norm: RMSNorm over each head's head_dim */
        for (int h = 0; h < NH; h++) rmsnorm(q + h * HD, q + h * HD, lw->q_norm, HD, p->norm_eps);
        for (int h = 0; h < NKV; h++) rmsnorm(k + h * HD, k + h * HD, lw->k_norm, HD, p->norm_eps);
        /* apply_rotary_pos_emb(q, k, cos, sin) on the first rope_dim dims, at position `at` */
        const float *cos_p = cs->rope_cos + (size_t)at * (HD / 2);
        const float *sin_p = cs->rope_sin + (size_t)at * (HD / 2);
        rope_partial(q, NH, HD, RD, cos_p, sin_p);
        rope_partial(k, NKV, HD, RD, cos_p, sin_p);
        /* past_key_values.update: store k (into its tile, transposed) and v at `at` */
        kv_store(sq->ctx, ia, k, v, at);
    }

    /* the last layer: the rows that feed logits only (the residual x, q and the gate) */
    if (outputs) {
        float *const bufs[3] = {s->x, s->q, s->gate};
        const int widths[3] = {p->dim, QD, QD};
        n = output_rows(seqs, n_seqs, n, bufs, widths, 3);
        if (n == 0) return 0; /* no logits wanted: the keys and values were all */
    }

    /* attn_output = softmax(q k^T / sqrt(d) + causal_mask) v, grouped-query, per sequence */
    attention(ps->k, s->att_out, s->q, seqs, n_seqs, ia, p, s->att, ps->att_C, nt);

    /* attn_output = attn_output * sigmoid(gate) */
    const int64_t total = (int64_t)n * QD;
#pragma omp parallel for simd num_threads(total >= 65536 ? nt : 1) schedule(static)
    for (int64_t i = 0; i < total; i++) s->att_out[i] *= 1.0f / (1.0f + expf_simd(-s->gate[i]));

    /* attn_output = o_proj(attn_output) */
    matmul(ps, s->xb2, s->att_out, n, &lw->wo);
    return n;
}

/* ---------------------------------------------------------------------------------------
 * The forward pass for one batch of n tokens (validated, every state at its pos)
 * ------------------------------------------------------------------------------------- */
void forward_qwen35(const Pass *ps, const Transformer *tf, Seq *seqs, int n_seqs, const int32_t *tokens,
                    int n, int all_logits, float *hidden, int64_t hidden_stride_layer, float *logits_scratch) {
    const Config *p = &tf->config;
    const TransformerWeights *w = &tf->weights;
    RunState *s = ps->s;
    const int D = p->dim, par = n >= 8 ? ps->n_threads : 1;

    /* inputs_embeds = embed_tokens(input_ids) */
    embed(s->x, &w->token_embedding, tokens, n);
    if (hidden) memcpy(hidden, s->x, (size_t)n * D * sizeof(float));

    int il = 0, ia = 0; /* index among the linear / the attention layers */
    for (int l = 0; l < p->n_layers; l++) {
        const LayerWeights *lw = &w->layers[l];

        /* hidden_states = input_layernorm(hidden_states) */
#pragma omp parallel for num_threads(par) schedule(static)
        for (int t = 0; t < n; t++) rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, lw->attn_norm, D, p->norm_eps);

        /* token mixer: linear_attn (Gated DeltaNet) or self_attn (gated attention); the last
         * layer goes on with the rows that feed logits only when nothing else is asked for */
        const int outputs = l == p->n_layers - 1 && !all_logits && !hidden;
        if (lw->is_linear) {
            gated_deltanet(ps, p, seqs, n_seqs, il++, lw, n);
            if (outputs) {
                float *const bufs[2] = {s->x, s->xb2};
                const int widths[2] = {D, D};
                n = output_rows(seqs, n_seqs, n, bufs, widths, 2);
            }
        } else {
            n = gated_attention(ps, p, seqs, n_seqs, ia++, lw, n, outputs);
        }
        if (n == 0) return; /* no logits wanted: the states and caches are all up to date */

        /* hidden_states = residual + hidden_states */
        for (int64_t i = 0; i < (int64_t)n * D; i++) s->x[i] += s->xb2[i];

        /* hidden_states = residual + mlp(post_attention_layernorm(hidden_states)) */
        mlp_block(ps, tf, lw, n);
        if (hidden) memcpy(hidden + (size_t)(l + 1) * hidden_stride_layer, s->x, (size_t)n * D * sizeof(float));
    }

    /* logits = lm_head(norm(hidden_states)) */
    final_norm_logits(ps, tf, seqs, n_seqs, n, all_logits,
                      hidden ? hidden + (size_t)(p->n_layers + 1) * hidden_stride_layer : NULL, logits_scratch);
}

/* ---------------------------------------------------------------------------------------
 * The recurrent state: allocation, rewinding, checkpoints
 * ------------------------------------------------------------------------------------- */
int qwen35_state_create(qwen3c_context *ctx, int n_checkpoints, char *err, size_t err_size) {
    const Config *p = &ctx->transformer->config;
    const int64_t LL = p->n_linear_layers, K = p->linear_conv_kernel, NV = p->linear_n_v_heads;
    const int64_t HK = p->linear_k_head_dim, HV = p->linear_v_head_dim;
    const int64_t CD = 2 * (int64_t)p->linear_n_k_heads * HK + NV * HV;
    RecurrentState *rs = calloc(1, sizeof(*rs));
    if (!rs) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for the recurrent state");
    ctx->rs = rs;
    rs->state_floats = (size_t)(LL * (K - 1) * CD + LL * NV * HK * HV);
    rs->n_slots = n_checkpoints > 0 ? n_checkpoints : DEFAULT_CHECKPOINTS;
    rs->state = calloc(rs->state_floats + 1, sizeof(float)); /* + 1: a model may have no linear layer */
    rs->slot_pos = malloc((size_t)rs->n_slots * sizeof(int));
    rs->slot_age = calloc((size_t)rs->n_slots, sizeof(long));
    rs->slot_mem = calloc((size_t)rs->n_slots, sizeof(float *));
    if (!rs->state || !rs->slot_pos || !rs->slot_age || !rs->slot_mem)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for the recurrent state (%.1f MB)",
                           (double)rs->state_floats * 4 / 1e6);
    for (int i = 0; i < rs->n_slots; i++) rs->slot_pos[i] = -1;
    rs->conv = rs->state;
    rs->ssm = rs->state + LL * (K - 1) * CD;
    return QWEN3C_OK;
}

void qwen35_state_free(RecurrentState *rs) {
    if (!rs) return;
    if (rs->slot_mem)
        for (int i = 0; i < rs->n_slots; i++) free(rs->slot_mem[i]);
    free(rs->slot_mem);
    free(rs->slot_age);
    free(rs->slot_pos);
    free(rs->state);
    free(rs);
}

static int find_slot(const RecurrentState *rs, int pos) {
    for (int i = 0; i < rs->n_slots; i++)
        if (rs->slot_pos[i] == pos) return i;
    return -1;
}

static int has_linear(const qwen3c_context *ctx) { return ctx->transformer->config.n_linear_layers > 0; }

int qwen35_rewind_point(const qwen3c_context *ctx, int pos) {
    if (!has_linear(ctx)) return pos;
    if (pos >= ctx->n_past) return ctx->n_past;
    int best = 0;
    for (int i = 0; i < ctx->rs->n_slots; i++) {
        const int sp = ctx->rs->slot_pos[i];
        if (sp <= pos && sp > best) best = sp;
    }
    return best;
}

int qwen35_state_check(const qwen3c_context *ctx, int pos, char *err, size_t err_size) {
    if (!has_linear(ctx) || pos == ctx->n_past || pos == 0 || (pos < ctx->n_past && find_slot(ctx->rs, pos) >= 0))
        return QWEN3C_OK;
    return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                       "cannot run at position %d: the recurrent state holds %d tokens and there is no "
                       "checkpoint at %d (restart at qwen3c_context_rewind_point = %d)",
                       pos, ctx->n_past, pos, qwen35_rewind_point(ctx, pos));
}

void qwen35_state_seek(qwen3c_context *ctx, int pos) {
    RecurrentState *rs = ctx->rs;
    if (!has_linear(ctx)) return;
    if (pos != ctx->n_past) {
        if (pos == 0) /* start over: conv and recurrent states are zero before the first token */
            memset(rs->state, 0, rs->state_floats * sizeof(float));
        else /* a checkpoint taken at pos, on the same leading tokens (qwen35_state_check) */
            memcpy(rs->state, rs->slot_mem[find_slot(rs, pos)], rs->state_floats * sizeof(float));
    }
    /* checkpoints past pos include tokens that are about to be replaced */
    for (int i = 0; i < rs->n_slots; i++)
        if (rs->slot_pos[i] > pos) rs->slot_pos[i] = -1;
}

int qwen35_state_copy(qwen3c_context *dst, const qwen3c_context *src, int n_tokens, char *err, size_t err_size) {
    if (!has_linear(dst)) return QWEN3C_OK;
    const RecurrentState *rs = src->rs;
    const int slot = find_slot(rs, n_tokens);
    const float *from = n_tokens == src->n_past ? rs->state : slot >= 0 ? rs->slot_mem[slot] : NULL;
    if (!from && n_tokens != 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "the recurrent state of the source context holds %d tokens and has no checkpoint "
                           "at %d", src->n_past, n_tokens);
    if (from && from != dst->rs->state) memcpy(dst->rs->state, from, rs->state_floats * sizeof(float));
    if (!from) memset(dst->rs->state, 0, rs->state_floats * sizeof(float));
    for (int i = 0; i < dst->rs->n_slots; i++) /* its checkpoints belonged to other tokens */
        if (dst != src || dst->rs->slot_pos[i] > n_tokens) dst->rs->slot_pos[i] = -1;
    return QWEN3C_OK;
}

int qwen3c_context_n_past(const qwen3c_context *ctx) { return ctx ? ctx->n_past : 0; }

int qwen3c_context_checkpoint(qwen3c_context *ctx, char *err, size_t err_size) {
    if (!ctx) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "context is NULL");
    RecurrentState *rs = ctx->rs;
    if (!rs || !has_linear(ctx)) return QWEN3C_OK; /* no recurrent layers: the KV cache restarts anywhere */
    int slot = find_slot(rs, ctx->n_past);
    for (int i = 0; slot < 0 && i < rs->n_slots; i++)
        if (rs->slot_pos[i] < 0) slot = i;
    if (slot < 0) { /* all taken: replace the oldest */
        slot = 0;
        for (int i = 1; i < rs->n_slots; i++)
            if (rs->slot_age[i] < rs->slot_age[slot]) slot = i;
    }
    if (!rs->slot_mem[slot]) {
        rs->slot_mem[slot] = malloc(rs->state_floats * sizeof(float));
        if (!rs->slot_mem[slot])
            return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for a checkpoint (%.1f MB)",
                               (double)rs->state_floats * 4 / 1e6);
    }
    memcpy(rs->slot_mem[slot], rs->state, rs->state_floats * sizeof(float));
    rs->slot_pos[slot] = ctx->n_past;
    rs->slot_age[slot] = ++rs->age;
    return QWEN3C_OK;
}

int qwen3c_context_checkpoints(const qwen3c_context *ctx, int *pos_out, int cap) {
    if (!ctx || !ctx->rs || !has_linear(ctx)) return 0;
    const RecurrentState *rs = ctx->rs;
    int n = 0, last = -1;
    for (;;) { /* ascending: the smallest position above the last one written */
        int next = -1;
        for (int i = 0; i < rs->n_slots; i++)
            if (rs->slot_pos[i] > last && (next < 0 || rs->slot_pos[i] < next)) next = rs->slot_pos[i];
        if (next < 0) break;
        if (pos_out && n < cap) pos_out[n] = next;
        n++;
        last = next;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------
 * The gated delta rule's public entry point for tests (the selected tier's kernels)
 * ------------------------------------------------------------------------------------- */
int qwen3c_gated_delta_rule(float *state, int hk, int hv, const float *q, const float *k,
                            const float *v, const float *g, const float *beta, int n, float *out,
                            int chunked, char *err, size_t err_size) {
    if (!state || !q || !k || !v || !g || !beta || !out || hk < 1 || hv < 1 || n < 1 || hk > 4096 || hv > 4096)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "gated_delta_rule: NULL buffer or a size out of range (hk %d, hv %d, n %d)", hk, hv, n);
    const Kernels *kt = NULL;
    const int rc = kernels_select(&kt, err, err_size); /* the CPU tier (QWEN3C_CPU) */
    if (rc != QWEN3C_OK) return rc;
    if (!chunked) {
        kt->deltanet->gated_delta_rule_recurrent(state, out, hv, q, k, hk, v, hv, g, beta, 1, n, hk, hv);
        return QWEN3C_OK;
    }
    float *scratch = malloc(delta_chunk_scratch(hk, hv) * sizeof(float));
    if (!scratch) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory");
    kt->deltanet->gated_delta_rule_chunked(state, out, hv, q, k, hk, v, hv, g, beta, 1, n, hk, hv, scratch);
    free(scratch);
    return QWEN3C_OK;
}
