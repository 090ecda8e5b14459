/*
 * internal.h -- what the C files of qwen3c share with each other (never installed).
 *
 * Shape legend used in comments throughout:
 *   L = n_layers, D = dim (hidden_size), H = hidden_dim (intermediate_size),
 *   NH = n_heads, NKV = n_kv_heads, HD = head_dim, V = vocab_size,
 *   C = n_ctx (KV cache length), B = tokens in the current batch.
 * GGUF stores a 2-D weight with ne[0] = input (contiguous) and ne[1] = output, i.e. the same
 * row-major (out_features, in_features) layout as a PyTorch nn.Linear weight.
 */
#ifndef QWEN3C_INTERNAL_H
#define QWEN3C_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h> /* _cvtsh_ss */
#endif

#include "qwen3c.h"

/* ---------------------------------------------------------------------------------------
 * Scalar helpers the kernels share
 * ------------------------------------------------------------------------------------- */
/* A little-endian uint16 at any alignment (GGUF block scales). */
static inline uint16_t read_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* IEEE half -> float (exact, including subnormals, inf and NaN). */
static inline float fp16_to_fp32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  /* subnormal: normalize the mantissa */
            uint32_t e = 0;
            while (!(man & 0x400u)) { man <<= 1; e++; }
            man &= 0x3ffu;
            bits = sign | ((127u - 14u - e) << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}


/* ---------------------------------------------------------------------------------------
 * Errors: every fallible function returns a QWEN3C_* status and fills (err, err_size).
 * ------------------------------------------------------------------------------------- */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
int qwen3c_fail(char *err, size_t err_size, int status, const char *fmt, ...);
/* Prepend "what: " to an error message already in err. Returns status. */
int qwen3c_fail_prefix(char *err, size_t err_size, int status, const char *what);

/* ---------------------------------------------------------------------------------------
 * GGUF reader (gguf.c)
 * ------------------------------------------------------------------------------------- */
enum gguf_value_type {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12, GGUF_TYPE_COUNT = 13
};

/* A string inside the mapping: NOT NUL-terminated. */
typedef struct { const char *ptr; uint64_t len; } gguf_str;

typedef struct {
    gguf_str       key;
    uint32_t       type;      /* enum gguf_value_type */
    uint32_t       arr_type;  /* element type when type == ARRAY */
    uint64_t       arr_n;     /* element count when type == ARRAY */
    const uint8_t *data;      /* the value's bytes in the mapping (arrays: first element);
                                 may be unaligned: read with memcpy */
    uint64_t       size;      /* byte size of the value */
} gguf_kv;

typedef struct {
    gguf_str    name;
    uint32_t    n_dims;
    int64_t     ne[4];        /* ne[0] contiguous; unused dims are 1 */
    uint32_t    type;         /* QWEN3C_TYPE_* */
    uint64_t    offset;       /* relative to the start of the data section */
    uint64_t    nbytes;
    const void *data;         /* base + data_offset + offset */
} gguf_tensor;

/* A parsed GGUF file: the public opaque qwen3c_gguf (gguf_api.c). */
typedef struct qwen3c_gguf {
    const uint8_t *base;      /* the whole file, mmapped read-only (or a caller's buffer) */
    size_t         size;
    int            mapped;    /* 1 when base must be munmapped */
    uint32_t       version;
    uint64_t       n_kv;
    gguf_kv       *kv;
    uint64_t       n_tensors;
    gguf_tensor   *tensors;
    uint64_t       alignment;
    uint64_t       data_offset;
} gguf_file;

/* mmap `path` and parse it. On failure everything is released. */
int  gguf_open(const char *path, gguf_file *gf, char *err, size_t err_size);
/* Parse an in-memory image (not copied; must outlive gf). */
int  gguf_parse(const uint8_t *buf, size_t size, gguf_file *gf, char *err, size_t err_size);
void gguf_close(gguf_file *gf);

const gguf_kv     *gguf_find_kv(const gguf_file *gf, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *gf, const char *name);
/* Typed getters. A missing key or a wrong type is QWEN3C_ERR_FORMAT naming the key. */
int gguf_get_u64(const gguf_file *gf, const char *key, uint64_t *out, char *err, size_t err_size);   /* any non-negative integer type */
int gguf_get_f64(const gguf_file *gf, const char *key, double *out, char *err, size_t err_size);     /* float32/float64 or integer */
int gguf_get_str(const gguf_file *gf, const char *key, gguf_str *out, char *err, size_t err_size);
/* A string array as views into the mapping: *out is malloc'ed (free it), *n its length. */
int gguf_get_str_array(const gguf_file *gf, const char *key, gguf_str **out, uint64_t *n,
                       char *err, size_t err_size);
/* A numeric array of element type elem_type (returns FORMAT if it differs): pointer to the
 * (possibly unaligned) first element and the count. */
int gguf_get_array(const gguf_file *gf, const char *key, uint32_t elem_type, const uint8_t **data,
                   uint64_t *n, char *err, size_t err_size);
bool gguf_str_eq(gguf_str s, const char *cstr);
/* Bytes of one scalar metadata value of `type` (0 for string / array / unknown). */
uint64_t gguf_value_size(uint32_t type);
/* "uint8", ..., "float64" for a metadata value type, or "unknown". */
const char *gguf_value_type_name(uint32_t type);
/* Name of any ggml tensor type the reader knows ("Q8_0", "IQ2_XS", ...), or "unknown". */
const char *gguf_type_name(uint32_t type);

/* ---------------------------------------------------------------------------------------
 * Tensor types and kernels (quant.c)
 * ------------------------------------------------------------------------------------- */
/* A 2-D weight matrix in its stored type: rows = output features, cols = input features. */
typedef struct {
    const void *data;
    int         type;      /* QWEN3C_TYPE_* */
    int64_t     rows;
    int64_t     cols;
    size_t      row_bytes; /* qwen3c_type_row_size(type, cols) */
    const void *packed;    /* the same weights as 16-row groups for the q24 kernels
                              (quant_q24.c: q24_pack), or NULL */
} QTensor;

/* 1 if we can compute with this type. */
bool type_supported(int type);
/* float -> IEEE half for n elements, round to nearest even (overflow -> inf, subnormal halves,
 * NaN -> quiet NaN); the way back is dequantize_row(QWEN3C_TYPE_F16, ...). */
void float_to_half_row(const float *x, uint16_t *y, int64_t n);
/* Dequantize n elements (whole blocks) of `type`. */
void dequantize_row(int type, const void *src, float *dst, int64_t n);

/* out[t * out_stride + r] = dot(W[r, :], x[t, :]) for t in [0, n_tok), r in [r0, r1).
 * x is (n_tok, w->cols) floats, row stride w->cols. This is one thread's share of a matmul;
 * it streams each weight row once for all n_tok tokens. */
void matmul_rows(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1);

/* A quantized-activation path (int8, q16) and quant_path_matmul, the checked runner behind its
 * public entry point (qwen3c_matmul_int8 / _q16; in quant.c). */
typedef struct {
    const char *what, *path;                          /* "matmul_int8", "int8" (for errors) */
    bool   (*supported)(int type);
    size_t (*act_size)(int n_tok, int64_t cols);
    void   (*quantize)(const float *x, int n_tok, int64_t cols, void *xq);
    void   (*rows)(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                   int64_t r0, int64_t r1);
    /* NULL, or the packed copy of W the rows() kernel reads (q24) */
    size_t (*packed_size)(int type, int64_t rows, int64_t cols);
    void   (*pack)(const QTensor *w, void *dst, int n_threads);
} QuantPath;
int quant_path_matmul(const QuantPath *qp, int type, const void *w, size_t w_size, const float *x,
                      int64_t n_tok, int64_t n, int64_t d, float *out, int n_threads, char *err,
                      size_t err_size);

/* The opt-in int8 path (quant_int8.c): activations quantized once per matmul to 8-bit blocks
 * of 32 (float scale d = max|x| / 127, q = rint(x / d)), integer dot products against the
 * weights (AVX-512 VNNI; plain C otherwise). Less exact than matmul_rows: never the default. */
/* true for Q8_0, Q4_0, Q4_1 (in every build). */
bool   int8_path_supported(int type);
/* Bytes of the quantized activations of n_tok rows of cols (a multiple of 32) floats. */
size_t int8_act_size(int n_tok, int64_t cols);
/* Quantize x (n_tok, cols) into xq (int8_act_size bytes, at least 4-byte aligned; 64 is best).
 * Once per matmul, before the threads run matmul_rows_int8 on it. */
void   quantize_activations(const float *x, int n_tok, int64_t cols, void *xq);
/* Same contract as matmul_rows, with the activations pre-quantized by quantize_activations
 * (same n_tok, cols = w->cols). w->type must satisfy int8_path_supported. */
void   matmul_rows_int8(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                        int64_t r0, int64_t r1);

/* The opt-in q16 path (quant_q16.c) for Q8_0 / Q4_0 / Q4_1 weights: activations
 * quantized once per matmul to 16-bit blocks of 32 (float scale d = max|x| / 32767,
 * q = rint(x / d), plus the float sum of x per block for Q4_1's min term), exact integer dot
 * products against the weights (AVX-512 VNNI vpdpwssd; plain C otherwise). ~2e-5 relative on
 * Gaussian activations, ~1e-3 with a real model's outlier activations: not the default. */
/* true for Q8_0, Q4_0, Q4_1 (in every build). */
bool   q16_path_supported(int type);
/* Bytes of the quantized activations of n_tok rows of cols (a multiple of 32) floats. */
size_t q16_act_size(int n_tok, int64_t cols);
/* Quantize x (n_tok, cols) into xq (q16_act_size bytes, at least 4-byte aligned; 64 is best).
 * Once per matmul, before the threads run matmul_rows_q16 on it. */
void   quantize_activations_q16(const float *x, int n_tok, int64_t cols, void *xq);
/* Same contract as matmul_rows, with the activations pre-quantized by quantize_activations_q16
 * (same n_tok, cols = w->cols). w->type must satisfy q16_path_supported. */
void   matmul_rows_q16(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                       int64_t r0, int64_t r1);

/* The default q24 path (quant_q24.c) for Q8_0 / Q4_0 / Q4_1 weights: activations quantized
 * once per matmul to 24-bit fixed point per block of 32 (scale max|x| / 8355711, as three
 * signed-byte digits), weights packed once per model into 16-row groups, exact integer dot
 * products (AVX-512 VNNI vpdpbusd; plain C otherwise). Within float32 rounding of matmul_rows. */
/* true for Q8_0, Q4_0, Q4_1 (in every build). */
bool   q24_path_supported(int type);
/* true when built with the AVX-512 VNNI kernels (the forward pass uses q24 only then; the
 * plain C kernels are for tests of the portable build). */
bool   q24_path_fast(void);
/* Bytes of the packed copy of a (rows, cols) matrix of `type`; 0 when unsupported. */
size_t q24_packed_size(int type, int64_t rows, int64_t cols);
/* Write the packed copy of w (q24_packed_size bytes, 64-byte aligned is best) into dst, with
 * n_threads OpenMP threads (<= 0: the default number). */
void   q24_pack(const QTensor *w, void *dst, int n_threads);
/* Bytes of the quantized activations of n_tok rows of cols (a multiple of 32) floats. */
size_t q24_act_size(int n_tok, int64_t cols);
/* Quantize blocks [i0, i1) of x (n_tok, cols) into xq (q24_act_size(n_tok, cols) bytes,
 * 4-byte aligned). Block i is x[32 i .. 32 i + 32) (token i / (cols/32)): threads can split
 * the n_tok * cols / 32 blocks of a matmul's input between them, even for one token. */
void   quantize_activations_q24(const float *x, int64_t i0, int64_t i1, void *xq);
/* Same contract as matmul_rows, activations from quantize_activations_q24, weights from
 * w->packed (not NULL); r0 must be a multiple of 16. */
void   matmul_rows_q24(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                       int64_t r0, int64_t r1);

/* ---------------------------------------------------------------------------------------
 * Tokenizer (tokenizer.c)
 * ------------------------------------------------------------------------------------- */
typedef struct Tokenizer Tokenizer;
/* Build from the tokenizer.ggml.* keys. Sets *out = NULL (and returns OK) when the file has
 * no tokenizer; UNSUPPORTED for a tokenizer model / pre-tokenizer we do not implement. */
int  tokenizer_build(const gguf_file *gf, Tokenizer **out, char *err, size_t err_size);
void tokenizer_free(Tokenizer *t);
void tokenizer_special_tokens(const Tokenizer *t, qwen3c_special_tokens *out);
int  tokenizer_vocab_size(const Tokenizer *t);

/* ---------------------------------------------------------------------------------------
 * The model (model.c) -- names follow llama2.c / qwen3.c
 * ------------------------------------------------------------------------------------- */
typedef qwen3c_config Config;  /* <-> transformers Qwen3Config */

typedef struct {
    float  *attn_norm;    /* (D)           = model.layers.N.input_layernorm.weight */
    QTensor wq;           /* (NH*HD, D)    = model.layers.N.self_attn.q_proj.weight */
    QTensor wk;           /* (NKV*HD, D)   = model.layers.N.self_attn.k_proj.weight */
    QTensor wv;           /* (NKV*HD, D)   = model.layers.N.self_attn.v_proj.weight */
    QTensor wo;           /* (D, NH*HD)    = model.layers.N.self_attn.o_proj.weight */
    float  *q_norm;       /* (HD)          = model.layers.N.self_attn.q_norm.weight (qwen3 only) */
    float  *k_norm;       /* (HD)          = model.layers.N.self_attn.k_norm.weight (qwen3 only) */
    float  *ffn_norm;     /* (D)           = model.layers.N.post_attention_layernorm.weight */
    QTensor w1;           /* (H, D)        = model.layers.N.mlp.gate_proj.weight */
    QTensor w3;           /* (H, D)        = model.layers.N.mlp.up_proj.weight */
    QTensor w2;           /* (D, H)        = model.layers.N.mlp.down_proj.weight */
} LayerWeights;

typedef struct {
    QTensor       token_embedding; /* (V, D)  = model.embed_tokens.weight   [token_embd] */
    LayerWeights *layers;          /* (L)     = model.layers                 [blk.N.*] */
    float        *rms_final;       /* (D)     = model.norm.weight            [output_norm] */
    QTensor       wcls;            /* (V, D)  = lm_head.weight [output]; == token_embedding when tied */
    float        *owned;           /* one allocation holding every norm vector (F32 copies) */
} TransformerWeights;

/* The loaded model: read-only once built, shareable by several contexts. */
typedef struct qwen3c_model {
    Config             config;
    TransformerWeights weights;
    gguf_file          file;
    Tokenizer         *tokenizer;  /* NULL when the GGUF has no tokenizer */
    void              *packed;     /* one allocation holding every QTensor.packed, or NULL */
    size_t             packed_bytes;
} Transformer;

/* ---------------------------------------------------------------------------------------
 * The context (forward.c): activations and KV cache
 * ------------------------------------------------------------------------------------- */
typedef struct {
    /* activations for a batch of up to B = n_batch tokens: one allocation, carved */
    float *x;            /* (B, D)      residual stream (hidden_states) */
    float *xb;           /* (B, D)      normed input of a block */
    float *q;            /* (B, NH*HD)  query_states */
    float *k;            /* (B, NKV*HD) key_states (before they go into the cache) */
    float *v;            /* (B, NKV*HD) value_states */
    float *att_out;      /* (B, NH*HD)  attn_output before o_proj */
    float *xb2;          /* (B, D)      o_proj / down_proj output */
    float *hb;           /* (B, H)      act_fn(gate_proj(x)) * up_proj(x) */
    float *hb2;          /* (B, H)      up_proj(x) */
    float *att;          /* (n_threads, 8, C) attention scores scratch, 8 query rows per thread */
    float *rope_cos;     /* (C, HD/2)   cos(pos * inv_freq), precomputed */
    float *rope_sin;     /* (C, HD/2) */
    void  *key_cache;    /* (L, NKV, C/16, HD, 16) past_key_values keys in tiles of 16 positions,
                            each tile transposed (HD, 16): attention reads it contiguously;
                            float, or uint16_t IEEE halves when kv_type is QWEN3C_KV_F16 */
    void  *value_cache;  /* (L, NKV, C, HD) past_key_values values; float or uint16_t, as keys */
    void  *xq;           /* the current matmul input as 24-, 16- or 8-bit blocks (q24 / q16 / int8) */
    float *memory;       /* the one allocation everything above points into */
} RunState;

typedef struct qwen3c_context {
    const Transformer *transformer;
    RunState           state;
    int                n_ctx;
    int                n_ctx_pad;   /* n_ctx rounded up to a whole key tile (16): the KV cache length */
    int                n_threads;
    int                n_batch;
    int                activations; /* QWEN3C_ACTIVATIONS_*: the Q8_0/Q4_0/Q4_1 matmul path */
    int                kv_type;     /* QWEN3C_KV_*: the element type of key_cache / value_cache */
} qwen3c_context;

#endif /* QWEN3C_INTERNAL_H */
