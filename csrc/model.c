/*
 * model.c -- GGUF metadata -> Config, tensor names -> TransformerWeights; load / free.
 *
 * A model is "config + weights + tokenizer": this file reads the hyperparameters from the
 * `{arch}.*` metadata keys (the GGUF spelling of transformers' Qwen3Config), finds every
 * weight by its GGUF tensor name, checks its shape against the config, and points a QTensor
 * at its bytes inside the mmapped file. Matrices are never dequantized: the matmul kernels read
 * them in their stored type. Only the small norm vectors are converted to F32. By default
 * (pack_weights) the matrices are also copied once into huge pages: the Q8_0 / Q4_0 / Q4_1 and
 * Q4_K / Q5_K / Q6_K ones into the 16-row interleaved order the q24 / q24k kernels stream (on
 * the tiers whose q24 kernels have integer dot products: avx512, avx2, neon, neon-i8mm; each
 * tier packs its own layout), the F32 / F16 / BF16 ones as they are.
 *
 * Qwen3.5 (qwen35) files, as llama.cpp's converter writes them, differ from qwen3 in three ways
 * that matter here: most layers are Gated DeltaNet (attn_qkv, attn_gate, ssm_* tensors; which
 * ones: {arch}.attention.recurrent_layers), attn_q of the other layers holds a gate next to
 * each query head, and the pre-MLP norm is called post_attention_norm. Its RMSNorm weights are
 * stored as 1 + weight (transformers' Qwen3_5RMSNorm multiplies by 1 + weight), so the plain
 * rmsnorm applies them. MTP (multi-token prediction) blocks appended after the decoder layers
 * ({arch}.nextn_predict_layers) are not part of the forward pass and are skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* ---------------------------------------------------------------------------------------
 * Supported architectures. Everything that differs between them lives in this table.
 *   qwen3: per-head RMSNorm on q and k before RoPE; RoPE pairs (i, i + head_dim/2)
 *          ("rotate_half" in transformers).
 *   llama: no q/k norm; llama.cpp's converter permutes the rows of q_proj/k_proj so that
 *          RoPE pairs become adjacent (2i, 2i+1): the same rotation as transformers'
 *          rotate_half on the unpermuted weights.
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const char *name;
    int         qk_norm;          /* 1: attn_q_norm / attn_k_norm tensors are required */
    int         rope_interleaved; /* 1: rotate pairs (2i, 2i+1); 0: pairs (i, i + HD/2) */
    double      default_rope_theta;
    int         strict_keys;      /* 1: head_count_kv, key_length and rope.freq_base are required
                                     (a silent default would compute a different model) */
    int         hybrid;           /* 1 (qwen35): Gated DeltaNet layers, gated attention with
                                     partial rotary embeddings, norm named post_attention_norm */
} ArchInfo;

static const ArchInfo ARCHS[] = {
    {"qwen3", 1, 0, 1000000.0, 1, 0},
    {"llama", 0, 1, 10000.0, 0, 0},
    {"qwen35", 1, 0, 10000000.0, 1, 1},
};

static const ArchInfo *find_arch(gguf_str name) {
    for (size_t i = 0; i < sizeof(ARCHS) / sizeof(ARCHS[0]); i++)
        if (gguf_str_eq(name, ARCHS[i].name)) return &ARCHS[i];
    return NULL;
}

/* Relatives we recognize but do not run, and what they would need. */
static const struct { const char *name, *missing; } UNSUPPORTED_ARCHS[] = {
    {"qwen35moe", "Qwen3.5 mixture-of-experts layers (router, routed and shared experts); qwen3c "
                  "runs the dense Qwen3.5 models (qwen35)"},
    {"qwen3next", "Qwen3-Next's mixture-of-experts layers; qwen3c runs the dense Qwen3.5 models (qwen35)"},
    {"qwen3moe", "Qwen3 mixture-of-experts layers; qwen3c runs the dense Qwen3 models (qwen3)"},
    {"clip", "a vision encoder / projector (mmproj) file: qwen3c runs the text model only"},
    {"qwen3vl", "Qwen3-VL's vision tower and multimodal position ids; qwen3c runs the text models"},
    {"qwen3vlmoe", "Qwen3-VL's vision tower and mixture-of-experts layers"},
};

/* ---------------------------------------------------------------------------------------
 * Config from metadata
 * ------------------------------------------------------------------------------------- */
#define MAX_DIM (1 << 20)

static int get_dim(const gguf_file *gf, const char *arch, const char *suffix, int required,
                   int dflt, int *out, char *err, size_t err_size) {
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    if (!required && !gguf_find_kv(gf, key)) { *out = dflt; return QWEN3C_OK; }
    uint64_t v;
    int rc = gguf_get_u64(gf, key, &v, err, err_size);
    if (rc) return rc;
    if (v == 0 || v > MAX_DIM)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "metadata key '%s' = %llu is out of range (1..%d)", key,
                           (unsigned long long)v, MAX_DIM);
    *out = (int)v;
    return QWEN3C_OK;
}

static int get_real(const gguf_file *gf, const char *arch, const char *suffix, int required,
                    double dflt, double *out, char *err, size_t err_size) {
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    if (!required && !gguf_find_kv(gf, key)) { *out = dflt; return QWEN3C_OK; }
    int rc = gguf_get_f64(gf, key, out, err, err_size);
    if (rc) return rc;
    if (!(*out > 0.0) || *out > 1e30)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "metadata key '%s' = %g must be a positive number", key, *out);
    return QWEN3C_OK;
}

/* qwen35: the Gated DeltaNet hyperparameters, and the MTP blocks to skip. llama.cpp's converter
 * writes Qwen3_5TextConfig under the key names of its SSM models. */
static int read_linear_config(const gguf_file *gf, const char *a, Config *p, char *err, size_t err_size) {
    int rc, inner = 0;
    if ((rc = get_dim(gf, a, "ssm.conv_kernel", 1, 0, &p->linear_conv_kernel, err, err_size)) ||
        (rc = get_dim(gf, a, "ssm.state_size", 1, 0, &p->linear_k_head_dim, err, err_size)) ||
        (rc = get_dim(gf, a, "ssm.group_count", 1, 0, &p->linear_n_k_heads, err, err_size)) ||
        (rc = get_dim(gf, a, "ssm.time_step_rank", 1, 0, &p->linear_n_v_heads, err, err_size)) ||
        (rc = get_dim(gf, a, "ssm.inner_size", 1, 0, &inner, err, err_size)))
        return rc;
    if (inner % p->linear_n_v_heads != 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "ssm.inner_size %d is not a multiple of "
                           "ssm.time_step_rank %d", inner, p->linear_n_v_heads);
    p->linear_v_head_dim = inner / p->linear_n_v_heads;
    if (p->linear_n_v_heads % p->linear_n_k_heads != 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "ssm.time_step_rank %d (value heads) is not a "
                           "multiple of ssm.group_count %d (key heads)", p->linear_n_v_heads, p->linear_n_k_heads);
    if (p->linear_conv_kernel < 2 || p->linear_conv_kernel > 64)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "ssm.conv_kernel %d is out of range (2..64)",
                           p->linear_conv_kernel);
    if ((int64_t)p->linear_n_v_heads * p->linear_k_head_dim * p->linear_v_head_dim > MAX_DIM * 64)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "the recurrent state per layer is too large");
    /* the last nextn_predict_layers blocks are MTP (multi-token prediction) heads, not decoder layers */
    char key[128];
    snprintf(key, sizeof(key), "%s.nextn_predict_layers", a);
    if (gguf_find_kv(gf, key)) {
        uint64_t v;
        if ((rc = gguf_get_u64(gf, key, &v, err, err_size))) return rc;
        if (v >= (uint64_t)p->n_layers)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "%s = %llu leaves no decoder layer of %d blocks",
                               key, (unsigned long long)v, p->n_layers);
        p->n_layers -= (int)v;
    }
    return QWEN3C_OK;
}

/* qwen35: 1 when layer l is Gated DeltaNet (layer_types[l] == "linear_attention"), from
 * {arch}.attention.recurrent_layers (one bool or integer per block), else every layer but each
 * full_attention_interval-th (default 4), as Qwen3_5TextConfig builds layer_types. */
static int read_layer_types(const gguf_file *gf, const char *a, int n_blocks, LayerWeights *layers,
                            int n_layers, char *err, size_t err_size) {
    char key[128];
    snprintf(key, sizeof(key), "%s.attention.recurrent_layers", a);
    const gguf_kv *kv = gguf_find_kv(gf, key);
    if (kv) {
        if (kv->type != GGUF_TYPE_ARRAY || kv->arr_n != (uint64_t)n_blocks ||
            (kv->arr_type != GGUF_TYPE_BOOL && kv->arr_type != GGUF_TYPE_UINT8 && kv->arr_type != GGUF_TYPE_INT8 &&
             kv->arr_type != GGUF_TYPE_INT32 && kv->arr_type != GGUF_TYPE_UINT32))
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "metadata key '%s' must be an array of %d "
                               "bools (one per block)", key, n_blocks);
        const size_t esz = kv->arr_type == GGUF_TYPE_INT32 || kv->arr_type == GGUF_TYPE_UINT32 ? 4 : 1;
        for (int l = 0; l < n_layers; l++) {
            uint32_t v = 0;
            memcpy(&v, kv->data + (size_t)l * esz, esz);
            layers[l].is_linear = v != 0;
        }
        return QWEN3C_OK;
    }
    int interval = 4;
    int rc = get_dim(gf, a, "full_attention_interval", 0, 4, &interval, err, err_size);
    if (rc) return rc;
    for (int l = 0; l < n_layers; l++) layers[l].is_linear = (l + 1) % interval != 0;
    return QWEN3C_OK;
}

static int read_config(const gguf_file *gf, Config *p, const ArchInfo **arch_out, char *err,
                       size_t err_size) {
    gguf_str arch_s;
    int rc = gguf_get_str(gf, "general.architecture", &arch_s, err, err_size);
    if (rc) return rc;
    const ArchInfo *arch = find_arch(arch_s);
    for (size_t i = 0; !arch && i < sizeof(UNSUPPORTED_ARCHS) / sizeof(UNSUPPORTED_ARCHS[0]); i++)
        if (gguf_str_eq(arch_s, UNSUPPORTED_ARCHS[i].name))
            return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                               "unsupported architecture '%s': it needs %s", UNSUPPORTED_ARCHS[i].name,
                               UNSUPPORTED_ARCHS[i].missing);
    if (!arch)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "unsupported architecture '%.*s' (qwen3c runs qwen3, llama and qwen35)",
                           (int)(arch_s.len > 64 ? 64 : arch_s.len), arch_s.ptr);
    memset(p, 0, sizeof(*p));
    snprintf(p->arch, sizeof(p->arch), "%s", arch->name);
    const char *a = arch->name;
    double theta, eps;
    if ((rc = get_dim(gf, a, "block_count", 1, 0, &p->n_layers, err, err_size)) ||
        (rc = get_dim(gf, a, "embedding_length", 1, 0, &p->dim, err, err_size)) ||
        (rc = get_dim(gf, a, "feed_forward_length", 1, 0, &p->hidden_dim, err, err_size)) ||
        (rc = get_dim(gf, a, "attention.head_count", 1, 0, &p->n_heads, err, err_size)) ||
        (rc = get_dim(gf, a, "attention.head_count_kv", arch->strict_keys, p->n_heads, &p->n_kv_heads, err, err_size)) ||
        (rc = get_dim(gf, a, "context_length", 1, 0, &p->n_ctx_train, err, err_size)) ||
        (rc = get_real(gf, a, "rope.freq_base", arch->strict_keys, arch->default_rope_theta, &theta, err, err_size)) ||
        (rc = get_real(gf, a, "attention.layer_norm_rms_epsilon", 1, 0, &eps, err, err_size)))
        return rc;
    if (p->n_layers > 4096)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "absurd block_count %d", p->n_layers);
    int default_hd = p->dim / p->n_heads;
    if ((rc = get_dim(gf, a, "attention.key_length", arch->strict_keys, default_hd, &p->head_dim, err, err_size)))
        return rc;
    int value_len = 0;
    if ((rc = get_dim(gf, a, "attention.value_length", 0, p->head_dim, &value_len, err, err_size)))
        return rc;
    if (value_len != p->head_dim)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "attention.value_length %d differs from key_length %d", value_len, p->head_dim);
    if (p->n_kv_heads > p->n_heads || p->n_heads % p->n_kv_heads != 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "attention.head_count %d is not a multiple of head_count_kv %d",
                           p->n_heads, p->n_kv_heads);
    if (p->head_dim % 2 != 0 || p->head_dim == 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "head_dim %d must be even", p->head_dim);
    if ((int64_t)p->n_heads * p->head_dim > MAX_DIM)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "n_heads * head_dim is too large");
    /* rotated dims per head: all of them, except for qwen35's partial rotary embeddings */
    char key[128];
    snprintf(key, sizeof(key), "%s.rope.dimension_count", a);
    p->rope_dim = p->head_dim;
    if (gguf_find_kv(gf, key)) {
        uint64_t rd;
        if ((rc = gguf_get_u64(gf, key, &rd, err, err_size))) return rc;
        if (arch->hybrid && rd >= 2 && rd <= (uint64_t)p->head_dim && rd % 2 == 0)
            p->rope_dim = (int)rd;
        else if (rd != (uint64_t)p->head_dim)
            return qwen3c_fail(err, err_size, arch->hybrid ? QWEN3C_ERR_FORMAT : QWEN3C_ERR_UNSUPPORTED,
                               "rope.dimension_count %llu: %s (head_dim %d)", (unsigned long long)rd,
                               arch->hybrid ? "must be even and at most head_dim" : "partial rotary embeddings",
                               p->head_dim);
    } else if (arch->hybrid) {
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "missing metadata key '%s'", key);
    }
    if (arch->hybrid && (rc = read_linear_config(gf, a, p, err, err_size))) return rc;
    p->attn_output_gate = arch->hybrid;
    p->rope_theta = (float)theta;
    p->norm_eps = (float)eps;
    p->qk_norm = arch->qk_norm;
    p->rope_interleaved = arch->rope_interleaved;
    *arch_out = arch;
    return QWEN3C_OK;
}

/* ---------------------------------------------------------------------------------------
 * Weights from tensors
 * ------------------------------------------------------------------------------------- */
static int find_tensor(const gguf_file *gf, const char *name, int n_dims, int64_t ne0, int64_t ne1,
                       const gguf_tensor **out, char *err, size_t err_size) {
    const gguf_tensor *t = gguf_find_tensor(gf, name);
    if (!t)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "missing required tensor '%s'", name);
    /* trailing dimensions of size 1 are allowed */
    int64_t want[4] = {ne0, n_dims > 1 ? ne1 : 1, 1, 1};
    for (int d = 0; d < 4; d++) {
        if (t->ne[d] != want[d]) {
            if (n_dims == 1)
                return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                                   "tensor '%s' has shape [%lld, %lld, %lld, %lld] but the metadata "
                                   "implies [%lld]", name, (long long)t->ne[0], (long long)t->ne[1],
                                   (long long)t->ne[2], (long long)t->ne[3], (long long)ne0);
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "tensor '%s' has shape [%lld, %lld, %lld, %lld] but the metadata "
                               "implies [%lld, %lld]", name, (long long)t->ne[0], (long long)t->ne[1],
                               (long long)t->ne[2], (long long)t->ne[3], (long long)ne0, (long long)ne1);
        }
    }
    *out = t;
    return QWEN3C_OK;
}

/* A matrix weight: (rows = out features, cols = in features) = GGUF ne (cols, rows). */
static int load_matrix(const gguf_file *gf, const char *name, int64_t rows, int64_t cols, QTensor *q,
                       char *err, size_t err_size) {
    const gguf_tensor *t = NULL;
    int rc = find_tensor(gf, name, 2, cols, rows, &t, err, err_size);
    if (rc) return rc;
    if (!type_supported((int)t->type))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "tensor '%s' has type %s, which qwen3c cannot compute with", name,
                           gguf_type_name(t->type));
    q->data = t->data;
    q->type = (int)t->type;
    q->rows = rows;
    q->cols = cols;
    q->row_bytes = (size_t)(t->nbytes / (uint64_t)rows);
    return QWEN3C_OK;
}

/* A norm vector: copied to F32 into dst (n floats). */
static int load_vector(const gguf_file *gf, const char *name, int64_t n, float *dst, char *err,
                       size_t err_size) {
    const gguf_tensor *t = NULL;
    int rc = find_tensor(gf, name, 1, n, 1, &t, err, err_size);
    if (rc) return rc;
    if (t->type != QWEN3C_TYPE_F32 && t->type != QWEN3C_TYPE_F16 && t->type != QWEN3C_TYPE_BF16)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "norm tensor '%s' has type %s (expected F32, F16 or BF16)", name,
                           gguf_type_name(t->type));
    dequantize_row((int)t->type, t->data, dst, n);
    return QWEN3C_OK;
}

/* qwen35: conv1d.weight, GGUF ne (K, CD) = transformers' (CD, 1, K) squeezed, copied to F32 as
 * (K, CD): the conv kernel vectorizes over channels. */
static int load_conv(const gguf_file *gf, const char *name, int64_t K, int64_t CD, float *dst, char *err,
                     size_t err_size) {
    const gguf_tensor *t = NULL;
    int rc = find_tensor(gf, name, 2, K, CD, &t, err, err_size);
    if (rc) return rc;
    if (t->type != QWEN3C_TYPE_F32 && t->type != QWEN3C_TYPE_F16 && t->type != QWEN3C_TYPE_BF16)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "tensor '%s' has type %s (expected F32, F16 or BF16)", name, gguf_type_name(t->type));
    const size_t row = (size_t)(t->nbytes / (uint64_t)CD);
    float tmp[64];
    for (int64_t c = 0; c < CD; c++) {
        dequantize_row((int)t->type, (const uint8_t *)t->data + (size_t)c * row, tmp, K);
        for (int64_t j = 0; j < K; j++) dst[j * CD + c] = tmp[j];
    }
    return QWEN3C_OK;
}

/* The token mixer of a qwen35 Gated DeltaNet layer (Qwen3_5GatedDeltaNet); f: its vectors. */
static int load_linear_layer(const gguf_file *gf, const Config *p, int l, LayerWeights *lw, float **f, char *err,
                             size_t err_size) {
    char name[96];
    const int64_t D = p->dim, K = p->linear_conv_kernel, NV = p->linear_n_v_heads, HV = p->linear_v_head_dim;
    const int64_t VD = NV * HV, CD = 2 * (int64_t)p->linear_n_k_heads * p->linear_k_head_dim + VD;
    int rc;
#define TNAME(suffix) (snprintf(name, sizeof(name), "blk.%d." suffix, l), name)
    lw->conv1d = *f; *f += K * CD;
    lw->dt_bias = *f; *f += NV;
    lw->ssm_a = *f; *f += NV;
    lw->ssm_norm = *f; *f += HV;
    if ((rc = load_matrix(gf, TNAME("attn_qkv.weight"), CD, D, &lw->in_qkv, err, err_size)) ||
        (rc = load_matrix(gf, TNAME("attn_gate.weight"), VD, D, &lw->in_z, err, err_size)) ||
        (rc = load_matrix(gf, TNAME("ssm_beta.weight"), NV, D, &lw->in_b, err, err_size)) ||
        (rc = load_matrix(gf, TNAME("ssm_alpha.weight"), NV, D, &lw->in_a, err, err_size)) ||
        (rc = load_conv(gf, TNAME("ssm_conv1d.weight"), K, CD, lw->conv1d, err, err_size)) ||
        (rc = load_vector(gf, TNAME("ssm_dt.bias"), NV, lw->dt_bias, err, err_size)) ||
        (rc = load_vector(gf, TNAME("ssm_a"), NV, lw->ssm_a, err, err_size)) ||
        (rc = load_vector(gf, TNAME("ssm_norm.weight"), HV, lw->ssm_norm, err, err_size)) ||
        (rc = load_matrix(gf, TNAME("ssm_out.weight"), D, VD, &lw->out_proj, err, err_size)))
        return rc;
#undef TNAME
    return QWEN3C_OK;
}

static int load_weights(Transformer *m, const ArchInfo *arch, char *err, size_t err_size) {
    const gguf_file *gf = &m->file;
    Config *p = &m->config;
    TransformerWeights *w = &m->weights;
    int rc;
    char name[96];
    const int64_t D = p->dim, H = p->hidden_dim, HD = p->head_dim;
    const int64_t QD = (int64_t)p->n_heads * HD, KVD = (int64_t)p->n_kv_heads * HD;

    /* vocab size = rows of token_embd */
    const gguf_tensor *emb = gguf_find_tensor(gf, "token_embd.weight");
    if (!emb) return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "missing required tensor 'token_embd.weight'");
    if (emb->n_dims != 2 || emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "tensor 'token_embd.weight' must be 2-D (dim, vocab) with a sane vocabulary");
    p->vocab_size = (int)emb->ne[1];
    const int64_t V = p->vocab_size;
    if ((rc = load_matrix(gf, "token_embd.weight", V, D, &w->token_embedding, err, err_size))) return rc;

    w->layers = calloc((size_t)p->n_layers, sizeof(LayerWeights));
    if (!w->layers) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for weights");
    if (arch->hybrid) { /* which layers are Gated DeltaNet */
        uint64_t n_blocks = 0;
        char key[128];
        snprintf(key, sizeof(key), "%s.block_count", arch->name);
        if ((rc = gguf_get_u64(gf, key, &n_blocks, err, err_size)) ||
            (rc = read_layer_types(gf, arch->name, (int)n_blocks, w->layers, p->n_layers, err, err_size)))
            return rc;
        for (int l = 0; l < p->n_layers; l++) p->n_linear_layers += w->layers[l].is_linear;
    }

    /* one allocation for every norm vector (and qwen35's conv kernels, dt_bias, A), carved per layer */
    const int64_t K = p->linear_conv_kernel, NV = p->linear_n_v_heads, HV = p->linear_v_head_dim;
    const int64_t CD = 2 * (int64_t)p->linear_n_k_heads * p->linear_k_head_dim + NV * HV;
    const int64_t per_attn = 2 * D + (p->qk_norm ? 2 * HD : 0), per_linear = 2 * D + K * CD + 2 * NV + HV;
    w->owned = malloc((size_t)(per_attn * (p->n_layers - p->n_linear_layers) + per_linear * p->n_linear_layers + D) *
                      sizeof(float));
    if (!w->owned) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for weights");
    float *f = w->owned;
    /* qwen35's attention layers: q_proj yields query and gate per head; the pre-MLP norm is
     * post_attention_norm in its files, ffn_norm in qwen3 / llama ones */
    const int64_t QR = p->attn_output_gate ? 2 * QD : QD;
    const char *ffn_norm = arch->hybrid ? "post_attention_norm" : "ffn_norm";

    for (int l = 0; l < p->n_layers; l++) {
        LayerWeights *lw = &w->layers[l];
#define BLK(suffix) (snprintf(name, sizeof(name), "blk.%d.%s.weight", l, suffix), name)
        lw->attn_norm = f; f += D;
        lw->ffn_norm = f; f += D;
        if ((rc = load_vector(gf, BLK("attn_norm"), D, lw->attn_norm, err, err_size))) return rc;
        if (lw->is_linear) rc = load_linear_layer(gf, p, l, lw, &f, err, err_size);
        else if (!(rc = load_matrix(gf, BLK("attn_q"), QR, D, &lw->wq, err, err_size)) &&
                 !(rc = load_matrix(gf, BLK("attn_k"), KVD, D, &lw->wk, err, err_size)) &&
                 !(rc = load_matrix(gf, BLK("attn_v"), KVD, D, &lw->wv, err, err_size)))
            rc = load_matrix(gf, BLK("attn_output"), D, QD, &lw->wo, err, err_size);
        if (rc ||
            (rc = load_vector(gf, BLK(ffn_norm), D, lw->ffn_norm, err, err_size)) ||
            (rc = load_matrix(gf, BLK("ffn_gate"), H, D, &lw->w1, err, err_size)) ||
            (rc = load_matrix(gf, BLK("ffn_up"), H, D, &lw->w3, err, err_size)) ||
            (rc = load_matrix(gf, BLK("ffn_down"), D, H, &lw->w2, err, err_size)))
            return rc;
        if (p->qk_norm && !lw->is_linear) {
            lw->q_norm = f; f += HD;
            lw->k_norm = f; f += HD;
            if ((rc = load_vector(gf, BLK("attn_q_norm"), HD, lw->q_norm, err, err_size)) ||
                (rc = load_vector(gf, BLK("attn_k_norm"), HD, lw->k_norm, err, err_size)))
                return rc;
        }
#undef BLK
    }
    w->rms_final = f;
    if ((rc = load_vector(gf, "output_norm.weight", D, w->rms_final, err, err_size))) return rc;

    /* lm_head: absent output.weight means tied embeddings (as in Qwen3-0.6B) */
    if (gguf_find_tensor(gf, "output.weight")) {
        if ((rc = load_matrix(gf, "output.weight", V, D, &w->wcls, err, err_size))) return rc;
        p->tied_embeddings = 0;
    } else {
        w->wcls = w->token_embedding;
        p->tied_embeddings = 1;
    }

    p->n_params = 0;
    for (uint64_t i = 0; i < gf->n_tensors; i++)
        p->n_params += gf->tensors[i].ne[0] * gf->tensors[i].ne[1] * gf->tensors[i].ne[2] * gf->tensors[i].ne[3];
    return QWEN3C_OK;
}

/* Give the file's pages of a packed matrix back to the page cache: the kernels read the packed
 * copy, so keeping both would double the resident size. Reading them again (an embedding row,
 * an F32-path context) faults them back in from the file. */
static void release_pages(const gguf_file *gf, const QTensor *t) {
    if (!gf->mapped) return; /* a caller's buffer: never discard it */
    os_release_mapped(t->data, t->row_bytes * (size_t)t->rows);
}

static int is_float_type(int type) {
    return type == QWEN3C_TYPE_F32 || type == QWEN3C_TYPE_F16 || type == QWEN3C_TYPE_BF16;
}

/* Bytes a matrix takes in the packed allocation (64-byte aligned); 0: it stays in the file. */
static size_t packed_bytes(const Kernels *k, const QTensor *t) {
    const size_t b = is_float_type(t->type) ? t->row_bytes * (size_t)t->rows
                   : k->q24->fast           ? q24_any_packed_size(k, t->type, t->rows, t->cols) : 0;
    return (b + 63) / 64 * 64;
}

/* A byte-for-byte copy of a matrix, 1 MB pieces split over the threads. */
static void copy_matrix(const QTensor *t, void *dst) {
    const size_t n = t->row_bytes * (size_t)t->rows, piece = (size_t)1 << 20;
    const int64_t pieces = (int64_t)((n + piece - 1) / piece);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < pieces; i++) {
        const size_t a = (size_t)i * piece, len = n - a < piece ? n - a : piece;
        memcpy((uint8_t *)dst + a, (const uint8_t *)t->data + a, len);
    }
}

/* Copy the weight matrices (the lm_head too) into one allocation held in huge pages, which
 * decode streams once per token: Q8_0 / Q4_0 / Q4_1 / Q4_K / Q5_K / Q6_K rearranged for the
 * q24 / q24k kernels
 * (t->packed), F32 / F16 / BF16 as they are (t->data then points at the copy: the file's page
 * cache mostly sits in 4 KB pages, and their TLB misses cost float decode ~8% of its speed).
 * With tied embeddings the lookup keeps reading token_embd's rows in place. */
/* The matrices of layer l (of the lm_head for l == n_layers) in the order decode reads them. */
static int matrices_of(TransformerWeights *w, int l, int n_layers, QTensor **out) {
    if (l == n_layers) {
        out[0] = &w->wcls;
        return 1;
    }
    LayerWeights *lw = &w->layers[l];
    if (lw->is_linear) {
        QTensor *mats[8] = {&lw->in_qkv, &lw->in_z, &lw->in_b, &lw->in_a, &lw->out_proj, &lw->w1, &lw->w3, &lw->w2};
        memcpy(out, mats, sizeof(mats));
        return 8;
    }
    QTensor *mats[7] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->w1, &lw->w3, &lw->w2};
    memcpy(out, mats, sizeof(mats));
    return 7;
}

static int pack_weights(Transformer *m, char *err, size_t err_size) {
    TransformerWeights *w = &m->weights;
    const int L = m->config.n_layers;
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        uint8_t *dst = m->packed;
        for (int l = 0; l <= L; l++) {
            QTensor *mats[8];
            const int n_mats = matrices_of(w, l, L, mats);
            for (int i = 0; i < n_mats; i++) {
                QTensor *t = mats[i];
                const size_t bytes = packed_bytes(m->kernels, t);
                if (bytes == 0) continue;
                if (pass == 0) {
                    total += bytes;
                    continue;
                }
                if (is_float_type(t->type)) {
                    copy_matrix(t, dst);
                    release_pages(&m->file, t);
                    t->data = dst;
                } else {
                    q24_any_pack(m->kernels, t, dst, 0);
                    t->packed = dst;
                    if (m->kernels->q24->reads_q8_min) t->q8_min = q8_0_has_min(t, 0);
                    release_pages(&m->file, t);
                }
                dst += bytes;
            }
        }
        if (pass == 0) {
            if (total == 0) return QWEN3C_OK;
            /* 2 MB aligned, so that the kernel can back it with huge pages (fewer TLB misses
             * while decode streams every byte of it) */
            const size_t align = (size_t)2 << 20;
            m->packed = os_aligned_alloc(align, (total + align - 1) / align * align);
            if (!m->packed)
                return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM,
                                   "out of memory for the packed weights (%.1f MB)", (double)total / 1e6);
            os_advise_huge(m->packed, (total + align - 1) / align * align);
            m->packed_bytes = total;
        }
    }
    return QWEN3C_OK;
}

/* ---------------------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------------------- */
qwen3c_model_params qwen3c_model_default_params(void) {
    qwen3c_model_params p = {.pack_weights = 1};
    return p;
}

int qwen3c_model_load(const char *path, qwen3c_model **out, char *err, size_t err_size) {
    return qwen3c_model_load_with(path, NULL, out, err, err_size);
}

size_t qwen3c_model_packed_bytes(const qwen3c_model *m) { return m->packed_bytes; }

/* Check the load params (NULL = defaults) into *prm. */
static int load_params(const qwen3c_model_params *params, qwen3c_model_params *prm, char *err,
                       size_t err_size) {
    *prm = params ? *params : qwen3c_model_default_params();
    if (prm->pack_weights != 0 && prm->pack_weights != 1)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "pack_weights must be 0 or 1, got %d",
                           prm->pack_weights);
    return QWEN3C_OK;
}

/* Everything a load does once m->file holds the parsed image: Config, TransformerWeights, the
 * tokenizer and the packed copy. Sets *out, or frees m and returns the error. */
static int model_build(Transformer *m, const qwen3c_model_params *prm, qwen3c_model **out,
                       char *err, size_t err_size) {
    const ArchInfo *arch = NULL;
    int rc = kernels_select(&m->kernels, err, err_size); /* the CPU tier (QWEN3C_CPU) */
    if (!rc) rc = read_config(&m->file, &m->config, &arch, err, err_size);
    if (!rc) rc = load_weights(m, arch, err, err_size);
    if (!rc) {
        rc = tokenizer_build(&m->file, &m->tokenizer, err, err_size);
        if (rc) qwen3c_fail_prefix(err, err_size, rc, "tokenizer");
    }
    if (!rc && m->tokenizer && tokenizer_vocab_size(m->tokenizer) > m->config.vocab_size)
        rc = qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                         "the tokenizer has %d tokens but token_embd has only %d rows",
                         tokenizer_vocab_size(m->tokenizer), m->config.vocab_size);
    if (!rc && prm->pack_weights) rc = pack_weights(m, err, err_size);
    if (rc) {
        qwen3c_model_free(m);
        return rc;
    }
    *out = m;
    return QWEN3C_OK;
}

int qwen3c_model_load_with(const char *path, const qwen3c_model_params *params, qwen3c_model **out,
                           char *err, size_t err_size) {
    if (!path || !out) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "path and out must not be NULL");
    qwen3c_model_params prm;
    int rc = load_params(params, &prm, err, err_size);
    if (rc) return rc;
    Transformer *m = calloc(1, sizeof(*m));
    if (!m) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory");
    if ((rc = gguf_open(path, &m->file, err, err_size))) {
        free(m);
        return rc;
    }
    return model_build(m, &prm, out, err, err_size);
}

int model_load_image(const uint8_t *buf, size_t size, const qwen3c_model_params *params,
                     qwen3c_model **out, char *err, size_t err_size) {
    if ((!buf && size) || !out)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "buf and out must not be NULL");
    qwen3c_model_params prm;
    int rc = load_params(params, &prm, err, err_size);
    if (rc) return rc;
    Transformer *m = calloc(1, sizeof(*m));
    if (!m) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory");
    if ((rc = gguf_parse(buf, size, &m->file, err, err_size))) {
        free(m);
        return rc;
    }
    return model_build(m, &prm, out, err, err_size);
}

void qwen3c_model_free(qwen3c_model *m) {
    if (!m) return;
    tokenizer_free(m->tokenizer);
    free(m->weights.layers);
    free(m->weights.owned);
    os_aligned_free(m->packed);
    gguf_close(&m->file);
    free(m);
}

void qwen3c_model_get_config(const qwen3c_model *m, qwen3c_config *out) { *out = m->config; }

int qwen3c_model_layer_type(const qwen3c_model *m, int layer) {
    if (!m || layer < 0 || layer >= m->config.n_layers) return -1;
    return m->weights.layers[layer].is_linear ? QWEN3C_LAYER_LINEAR : QWEN3C_LAYER_ATTENTION;
}

int qwen3c_model_meta_count(const qwen3c_model *m) { return (int)m->file.n_kv; }

static int copy_out(const char *src, size_t len, char *buf, size_t buf_size, size_t *len_out) {
    *len_out = len;
    if (!buf || buf_size <= len) {
        if (buf && buf_size > 0) buf[0] = '\0';
        return QWEN3C_ERR_BUFFER;
    }
    memcpy(buf, src, len);
    buf[len] = '\0';
    return QWEN3C_OK;
}

int qwen3c_model_meta_key(const qwen3c_model *m, int i, char *buf, size_t buf_size, size_t *len) {
    if (i < 0 || (uint64_t)i >= m->file.n_kv) return QWEN3C_ERR_INVALID_ARG;
    gguf_str k = m->file.kv[i].key;
    return copy_out(k.ptr, k.len, buf, buf_size, len);
}

int qwen3c_model_meta_type(const qwen3c_model *m, int i, int *arr_type, uint64_t *arr_n) {
    if (i < 0 || (uint64_t)i >= m->file.n_kv) return -1;
    const gguf_kv *kv = &m->file.kv[i];
    if (arr_type) *arr_type = kv->type == GGUF_TYPE_ARRAY ? (int)kv->arr_type : -1;
    if (arr_n) *arr_n = kv->type == GGUF_TYPE_ARRAY ? kv->arr_n : 0;
    return (int)kv->type;
}

int qwen3c_model_meta_as_string(const qwen3c_model *m, const char *key, char *buf, size_t buf_size,
                                size_t *len) {
    const gguf_kv *kv = gguf_find_kv(&m->file, key);
    if (!kv) return QWEN3C_ERR_INVALID_ARG;
    char tmp[64];
    const uint8_t *p = kv->data;
    switch (kv->type) {
    case GGUF_TYPE_STRING: {
        uint64_t n;
        memcpy(&n, p, 8);
        return copy_out((const char *)p + 8, n, buf, buf_size, len);
    }
    case GGUF_TYPE_ARRAY:
        snprintf(tmp, sizeof(tmp), "[%llu items]", (unsigned long long)kv->arr_n);
        break;
    case GGUF_TYPE_BOOL: snprintf(tmp, sizeof(tmp), "%s", p[0] ? "true" : "false"); break;
    case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, p, 4); snprintf(tmp, sizeof(tmp), "%.9g", v); break; }
    case GGUF_TYPE_FLOAT64: { double v; memcpy(&v, p, 8); snprintf(tmp, sizeof(tmp), "%.17g", v); break; }
    case GGUF_TYPE_UINT8:  { uint8_t v;  memcpy(&v, p, 1); snprintf(tmp, sizeof(tmp), "%u", v); break; }
    case GGUF_TYPE_INT8:   { int8_t v;   memcpy(&v, p, 1); snprintf(tmp, sizeof(tmp), "%d", v); break; }
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); snprintf(tmp, sizeof(tmp), "%u", v); break; }
    case GGUF_TYPE_INT16:  { int16_t v;  memcpy(&v, p, 2); snprintf(tmp, sizeof(tmp), "%d", v); break; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); snprintf(tmp, sizeof(tmp), "%u", v); break; }
    case GGUF_TYPE_INT32:  { int32_t v;  memcpy(&v, p, 4); snprintf(tmp, sizeof(tmp), "%d", v); break; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v); break; }
    case GGUF_TYPE_INT64:  { int64_t v;  memcpy(&v, p, 8); snprintf(tmp, sizeof(tmp), "%lld", (long long)v); break; }
    default: return QWEN3C_ERR_INVALID_ARG;
    }
    return copy_out(tmp, strlen(tmp), buf, buf_size, len);
}

int qwen3c_model_n_tensors(const qwen3c_model *m) { return (int)m->file.n_tensors; }

int qwen3c_model_tensor_info(const qwen3c_model *m, int i, char *name_buf, size_t name_size,
                             qwen3c_tensor_info *out) {
    if (i < 0 || (uint64_t)i >= m->file.n_tensors) return QWEN3C_ERR_INVALID_ARG;
    const gguf_tensor *t = &m->file.tensors[i];
    if (name_buf && name_size > 0) {
        size_t n = t->name.len < name_size - 1 ? (size_t)t->name.len : name_size - 1;
        memcpy(name_buf, t->name.ptr, n);
        name_buf[n] = '\0';
    }
    out->type = (int)t->type;
    out->n_dims = (int)t->n_dims;
    for (int d = 0; d < 4; d++) out->ne[d] = t->ne[d];
    out->offset = m->file.data_offset + t->offset;
    out->nbytes = t->nbytes;
    return QWEN3C_OK;
}
