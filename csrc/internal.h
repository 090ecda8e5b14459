/*
 * internal.h -- what the C files of qwen3c share with each other (never installed).
 *
 * Shape legend used in comments throughout:
 *   L = n_layers, D = dim (hidden_size), H = hidden_dim (intermediate_size),
 *   NH = n_heads, NKV = n_kv_heads, HD = head_dim, V = vocab_size,
 *   C = n_ctx (KV cache length), B = tokens in the current batch.
 * Qwen3.5's Gated DeltaNet layers (forward_qwen35.c, kernels/deltanet_scalar.c):
 *   LL = linear layers, NK / NV = linear key / value heads, HK / HV = their head dims,
 *   KD = NK*HK, VD = NV*HV, CD = 2*KD + VD (conv channels: q, k, v), K = conv kernel size.
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
#include <immintrin.h> /* _cvtsh_ss: only in kernel files compiled for a tier with F16C (or a
                          -march=native build); the baseline of the default build has none */
#endif
#ifdef _OPENMP
#include <omp.h>
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

/* A little-endian uint32 at any alignment. */
static inline uint32_t read_u32le(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* bfloat16 -> float (exact: the upper half of the float's bits). */
static inline float bf16_to_fp32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block. */
static inline void k_scale_min(int j, const uint8_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* a * b + c rounded once: a fused multiply-add, which the q24 kernels' float steps are defined
 * by. Where the compile target has FMA (x86 tiers with -mfma, arm64) the instruction. Otherwise
 * from doubles, not libm's fmaf (mingw-w64's, at least under wine, rounds twice): a * b is exact
 * in double; TwoSum gives p + c = s + err exactly; if err != 0, s moves to its neighbour with
 * an odd last bit on err's side (round to odd), and an odd-rounded double rounds to the
 * correctly rounded float (double has more than float's 24 + 2 bits). */
static inline float fma_exact(float a, float b, float c) {
#if defined(__FMA__) || defined(__aarch64__) || defined(_M_ARM64)
    return __builtin_fmaf(a, b, c);
#else
    const double p = (double)a * (double)b, s = p + (double)c;
    if (s - s != 0.0) return (float)s; /* inf or NaN */
    const double bb = s - p, err = (p - (s - bb)) + ((double)c - bb);
    uint64_t u;
    memcpy(&u, &s, 8);
    if (err == 0.0 || (u & 1u)) return (float)s;
    u = (err > 0.0) == (s > 0.0) ? u + 1 : u - 1; /* one ulp away from / towards zero */
    double odd;
    memcpy(&odd, &u, 8);
    return (float)odd;
#endif
}

/* IEEE half -> float (exact, including subnormals, inf and NaN). */
static inline float fp16_to_fp32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    __fp16 f; /* arm64: IEEE halves are a native type (fcvt) */
    memcpy(&f, &h, 2);
    return (float)f;
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

/* e^x for x in [-87, 88] (softmax, SiLU, sigmoid), written so the compiler vectorizes it inside
 * `omp simd` loops: e^x = 2^n * e^r with n = round(x / ln 2), |r| <= ln(2)/2, and e^r by its
 * Taylor series to degree 6 (relative error < 2e-7, about one float ulp). */
#pragma omp declare simd notinbranch
static inline float expf_simd(float x) {
    x = x > -87.0f ? x : -87.0f; /* also maps NaN to -87: keeps the shift below defined */
    x = x < 88.0f ? x : 88.0f;
    const float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f; /* ln 2 split in two for an exact reduction */
    r = r - n * 1.428606765330187e-06f;
    float e = 1.0f / 720.0f;
    e = e * r + 1.0f / 120.0f;
    e = e * r + 1.0f / 24.0f;
    e = e * r + 1.0f / 6.0f;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    /* 2^n from its bits (not through a union: clang 14 rejects an anonymous one here) */
    return e * bits_to_f32((uint32_t)((int32_t)n + 127) << 23);
}

/* ---------------------------------------------------------------------------------------
 * Threads: OpenMP when the build has it, one thread otherwise. Parallel regions are plain
 * `#pragma omp` (ignored without OpenMP); every omp_* call is one of these guarded helpers.
 * ------------------------------------------------------------------------------------- */
/* This thread's number in the current parallel region (0 outside one). */
static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Threads of the current parallel region (1 outside one). */
static inline int thread_count(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Processors available: the default number of threads (1 without OpenMP). */
static inline int cpu_count(void) {
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

/* n threads asked for -> the number a parallel region gets (1 without OpenMP). */
static inline int thread_limit(int n) {
#ifdef _OPENMP
    return n;
#else
    (void)n;
    return 1;
#endif
}

/* ---------------------------------------------------------------------------------------
 * Operating system (os_posix.c / os_windows.c): file mapping, page hints, aligned memory
 * ------------------------------------------------------------------------------------- */
/* Map a whole regular file read-only: *base, *size. IO (cannot open / map, not a regular
 * file) or FORMAT (shorter than min_size bytes), with a message naming the path. */
int  os_map_file(const char *path, size_t min_size, const uint8_t **base, size_t *size,
                 char *err, size_t err_size);
void os_unmap_file(const uint8_t *base, size_t size);
/* Hints, harmless where refused or unknown: back [p, p + n) with huge pages (os_advise_huge);
 * drop the pages of a read-only file mapping from this process (they fault back in from the
 * file when read again: os_release_mapped). */
void os_advise_huge(void *p, size_t n);
void os_release_mapped(const void *p, size_t n);
/* Aligned allocation (alignment a power of two, >= sizeof(void *)); free with os_aligned_free.
 * NULL when out of memory. */
void *os_aligned_alloc(size_t alignment, size_t size);
void  os_aligned_free(void *p);

/* ---------------------------------------------------------------------------------------
 * CPU tiers (cpu.c): which kernel table (kernels/kernels.h) this process runs
 * ------------------------------------------------------------------------------------- */
typedef struct Kernels Kernels;
/* The kernels of the tier QWEN3C_CPU names, or of the best tier this CPU runs when it is
 * unset. QWEN3C_ERR_CPU when QWEN3C_CPU names an unknown tier, one this build lacks or one
 * this CPU cannot run (the message says which, and what it can run). Reads the CPU each time
 * (cpuid: a few hundred cycles), keeps no state. */
int kernels_select(const Kernels **out, char *err, size_t err_size);
/* The i-th tier of this build, best first (the scalar tier last; NULL past it), and whether
 * this CPU runs it (*runnable, when not NULL): the kernel tests compare every tier with scalar. */
const Kernels *kernels_tier(size_t i, int *runnable);

/* ---------------------------------------------------------------------------------------
 * Errors: every fallible function returns a QWEN3C_* status and fills (err, err_size).
 * ------------------------------------------------------------------------------------- */
#if defined(__MINGW32__) && !defined(__clang__)
__attribute__((format(gnu_printf, 4, 5))) /* mingw's C99 printf (__USE_MINGW_ANSI_STDIO) */
#elif defined(__GNUC__)
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
    bool        q8_min;    /* Q8_0: some weight is -128 (q8_0_has_min), set where it is packed for
                              kernels that read it (Q24Kernels.reads_q8_min: AVX2 without
                              AVX-VNNI, which then takes the slower byte products); else false */
} QTensor;

/* 1 if we can compute with this type. */
bool type_supported(int type);
/* float -> IEEE half for n elements, round to nearest even (overflow -> inf, subnormal halves,
 * NaN -> quiet NaN); the way back is dequantize_row(QWEN3C_TYPE_F16, ...). */
void float_to_half_row(const float *x, uint16_t *y, int64_t n);
/* Dequantize n elements (whole blocks) of `type`. */
void dequantize_row(int type, const void *src, float *dst, int64_t n);

/* The matmul kernels (one thread's share of a matmul: out[t * out_stride + r] for t < n_tok,
 * r in [r0, r1)) are per CPU tier, behind the table kernels/kernels.h defines: call them as
 * k->matmul->rows(...), k->q24->rows(...), ... with k = the model's table (model->kernels,
 * chosen at load; a context's is ctx->transformer->kernels). The forward pass's helpers
 * (forward.c: Pass.k, matmul, matmuls, attention, swiglu) do. */
/* A quantized-activation path (q24, q16, int8) as its public entry point runs it
 * (qwen3c_matmul_q24 / _q16 / _int8, through quant_path_matmul in quant.c), built from the
 * kernel table of the selected tier (kernels/kernels.h). */
typedef struct {
    const char *what, *path;                          /* "matmul_int8", "int8" (for errors) */
    bool   (*supported)(int type);
    size_t (*act_size)(int n_tok, int64_t cols);
    /* one of the two: whole token rows (q16, int8) or a range of blocks (q24) */
    void   (*quantize_rows)(const float *x, int n_tok, int64_t cols, void *xq);
    void   (*quantize_blocks)(const float *x, int64_t i0, int64_t i1, void *xq);
    void   (*rows)(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                   int64_t r0, int64_t r1);
    /* NULL, or the packed copy of W the rows() kernel reads (q24) */
    size_t (*packed_size)(int type, int64_t rows, int64_t cols);
    void   (*pack)(const QTensor *w, void *dst, int n_threads);
} QuantPath;
int quant_path_matmul(const QuantPath *qp, int type, const void *w, size_t w_size, const float *x,
                      int64_t n_tok, int64_t n, int64_t d, float *out, int n_threads, char *err,
                      size_t err_size);

/* The quantized-activation paths for Q8_0 / Q4_0 / Q4_1 weights (quant_q24.c, quant_q16.c,
 * quant_int8.c describe their formats; the kernels are kernels/q24_*.c, q16_*.c, int8_*.c):
 *   q24 (default): 24-bit fixed-point activation blocks x weights packed once per model into
 *                  16-row groups, exact integer sums: within float32 rounding of the f32 path
 *   q16 (opt-in):  16-bit activation blocks, exact integer sums (~1e-3 with outliers)
 *   int8 (opt-in): 8-bit activation blocks, as llama.cpp (~1e-2)
 * Each is true for Q8_0, Q4_0, Q4_1 (on every tier). */
bool   q24_path_supported(int type);
bool   q16_path_supported(int type);
bool   int8_path_supported(int type);
/* q24's packed layout (16-row groups, quant_q24.c): the bytes of the packed copy of a
 * (rows, cols) matrix of `type` (0 when unsupported), and the packing itself into dst (64-byte
 * aligned is best) with n_threads OpenMP threads (<= 0: the default). The q24 kernel tables
 * of every tier use these (Q24Kernels.packed_size / pack). */
size_t q24_packed_size(int type, int64_t rows, int64_t cols);
void   q24_pack(const QTensor *w, void *dst, int n_threads);
/* 1 if w is Q8_0 and a weight is -128 (llama.cpp's quantizer writes -127..127; a file may hold
 * -128); 0 otherwise. Fills QTensor.q8_min. */
bool   q8_0_has_min(const QTensor *w, int n_threads);
/* The same layout with the Q8_0 quants as stored (signed bytes, for arm64's sdot), and the
 * 2-row x 8-column tiles of arm64's smmla (quant_q24.c: q24_pack_mmla). */
void   q24_pack_signed(const QTensor *w, void *dst, int n_threads);
void   q24_pack_mmla(const QTensor *w, void *dst, int n_threads);
/* The same for the K-quants (quant_q24k.c): q24's activation blocks x Q4_K / Q5_K / Q6_K
 * super-blocks packed into 16-row groups (Q24KKernels.packed_size / pack of every tier). */
bool   q24k_path_supported(int type);
size_t q24k_packed_size(int type, int64_t rows, int64_t cols);
void   q24k_pack(const QTensor *w, void *dst, int n_threads);

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
    /* qwen35: attention layers have wq of (2*NH*HD, D), each head's query followed by its output
     * gate; the other layers are Gated DeltaNet (linear_attn.*), whose V heads the GGUF stores
     * in llama.cpp's tiled order (value head j reads key head j % NK; transformers: j / (NV/NK)) */
    int     is_linear;    /* 1: layer_types[l] == "linear_attention" (the fields below); 0: attention */
    QTensor in_qkv;       /* (CD, D)   = model.layers.N.linear_attn.in_proj_qkv.weight [attn_qkv] */
    QTensor in_z;         /* (VD, D)   = model.layers.N.linear_attn.in_proj_z.weight [attn_gate] */
    QTensor in_b;         /* (NV, D)   = model.layers.N.linear_attn.in_proj_b.weight [ssm_beta] */
    QTensor in_a;         /* (NV, D)   = model.layers.N.linear_attn.in_proj_a.weight [ssm_alpha] */
    float  *conv1d;       /* (K, CD)   = linear_attn.conv1d.weight (CD, 1, K), transposed [ssm_conv1d] */
    float  *dt_bias;      /* (NV)      = model.layers.N.linear_attn.dt_bias [ssm_dt.bias] */
    float  *ssm_a;        /* (NV)      = -exp(model.layers.N.linear_attn.A_log) [ssm_a] */
    float  *ssm_norm;     /* (HV)      = model.layers.N.linear_attn.norm.weight [ssm_norm] */
    QTensor out_proj;     /* (D, VD)   = model.layers.N.linear_attn.out_proj.weight [ssm_out] */
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
    const Kernels     *kernels;    /* the CPU tier's kernels, chosen at load (cpu.c); the packed
                                      layout is theirs, so every context of the model uses them */
} Transformer;

/* qwen3c_model_load_with on an in-memory GGUF image instead of a file (the fuzz targets in
 * fuzz/ use it): buf is not copied and must outlive the model; its pages are never released. */
int model_load_image(const uint8_t *buf, size_t size, const qwen3c_model_params *params,
                     qwen3c_model **out, char *err, size_t err_size);

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
    float *att;          /* (n_threads, ATT_ROWS, C) attention scores scratch, 8 query rows per thread */
    float *rope_cos;     /* (C, HD/2)   cos(pos * inv_freq), precomputed */
    float *rope_sin;     /* (C, HD/2) */
    void  *key_cache;    /* (C/P, LA, NKV, P/16, HD, 16) past_key_values keys of the LA attention
                            layers (all L but qwen35's linear ones), in chunks of P =
                            kv_chunk positions (chunk-major: kv_block()), each chunk in tiles
                            of 16 positions, each tile transposed (HD, 16): attention reads it
                            contiguously; float, or uint16_t IEEE halves when kv_type is
                            QWEN3C_KV_F16 */
    void  *value_cache;  /* (C/P, LA, NKV, P, HD) past_key_values values; float or uint16_t, as keys */
    void  *xq;           /* the current matmul input as 24-, 16- or 8-bit blocks (q24 / q16 / int8) */
    float *xf;           /* (B, widest + GEMM_X_PAD) the current matmul input's copy for the float32
                            prefill from packed weights (kernels.h: FloatRowsFn), or NULL */
    /* qwen35 only (NULL otherwise): its Gated DeltaNet and gated attention activations */
    float *qkv;          /* (B, CD)   in_proj_qkv(x), the conv input (mixed_qkv) */
    float *conv_out;     /* (B, CD)   silu(conv1d(mixed_qkv)): query | key | value */
    float *z;            /* (B, VD)   in_proj_z(x), the gate of the norm */
    float *core;         /* (B, VD)   core_attn_out, then norm(core_attn_out, z) */
    float *beta;         /* (B, NV)   in_proj_b(x), then sigmoid */
    float *g;            /* (B, NV)   in_proj_a(x), then the log decay -exp(A_log) * softplus(a + dt_bias) */
    float *qg;           /* (B, 2*NH*HD) q_proj(x) of an attention layer: query | gate per head */
    float *gate;         /* (B, NH*HD) the attention output gate */
    float *memory;       /* the one allocation everything above but the KV caches points into */
    void  *kv_memory;    /* the KV caches' allocation (key_cache, value_cache: 2 MB aligned in it) */
} RunState;

/* qwen35: what a context keeps for its Gated DeltaNet layers (forward_qwen35.c) -- transformers'
 * DynamicCache LinearAttentionLayer.conv_states / recurrent_states -- and their checkpoints */
typedef struct {
    float *state;        /* conv (LL, K-1, CD) then ssm (LL, NV, HK, HV): one block, so that a
                            checkpoint is one copy */
    float *conv;         /* (LL, K-1, CD) conv_states: each layer's last K-1 conv inputs */
    float *ssm;          /* (LL, NV, HK, HV) recurrent_states: S of the gated delta rule */
    size_t state_floats; /* floats of conv + ssm */
    /* checkpoints: copies of `state` at positions (qwen3c_context_checkpoint) */
    int    n_slots;
    int   *slot_pos;     /* (n_slots) position of each slot, -1 = free */
    long  *slot_age;     /* (n_slots) creation order, for replacing the oldest */
    float **slot_mem;    /* (n_slots) state_floats each, allocated when first used */
    long   age;
} RecurrentState;

typedef struct qwen3c_context {
    const Transformer *transformer;  /* its kernels (transformer->kernels) are the context's */
    RunState           state;
    int                n_ctx;
    int                n_ctx_pad;   /* n_ctx rounded up to a whole key tile (16): the KV cache length */
    int                kv_chunk;    /* P: positions per KV-cache chunk (a multiple of 16; kv_block) */
    int                n_threads;
    int                n_batch;
    int                activations; /* QWEN3C_ACTIVATIONS_*: the Q8_0/Q4_0/Q4_1 matmul path */
    int                kv_type;     /* QWEN3C_KV_*: the element type of key_cache / value_cache */
    int                n_past;      /* leading positions whose state the context holds */
    RecurrentState    *rs;          /* qwen35's linear-layer states and scratch, NULL for other models */
} qwen3c_context;

/* ---------------------------------------------------------------------------------------
 * Building blocks of forward.c, shared with forward_qwen35.c
 * ------------------------------------------------------------------------------------- */
/* What one forward pass computes with: the activations of its batch (a context's own, or a
 * qwen3c_batch's for several contexts), its threads and its matmul arithmetic. */
typedef struct {
    RunState *s;      /* x, xb, q, k, v, att_out, xb2, hb, hb2, att, xq (not the KV caches) */
    int n_threads;
    int activations;  /* QWEN3C_ACTIVATIONS_* */
    int att_C;        /* row stride of s->att: the longest context of the batch (padded) */
    const Kernels *k; /* the CPU tier's kernels: the model's (cpu.c) */
} Pass;

/* Where attention() copies a sequence's softmax probabilities when asked
 * (qwen3c_forward_attention); every other forward passes NULL and pays one pointer test per
 * score row. */
typedef struct {
    float *p;    /* (L, NH, n_q, n_k) floats, zeroed by the caller */
    int    n_q;  /* query rows per head: the tokens of the whole call */
    int    n_k;  /* key columns: pos + n_q of the whole call */
    int    q0;   /* the first query row of the chunk being computed */
} AttnCapture;

/* One sequence of a batch: rows t0 .. t0+n-1 of the activations are its tokens, at positions
 * pos .. pos+n-1 of ctx's KV cache (and, qwen35, after its recurrent state) */
typedef struct {
    qwen3c_context *ctx;
    int t0, n, pos;
    float *logits;    /* (V) of its last token, or NULL */
    int job0;         /* its first attention job (attention() sets it) */
    const AttnCapture *cap; /* NULL, or where attention() copies its probabilities */
} Seq;

/* Qwen3RMSNorm: o = weight * x / sqrt(mean(x^2) + eps), over `size` elements. */
void rmsnorm(float *o, const float *x, const float *weight, int size, float eps);
/* out (n, w->rows) = x (n, w->cols) @ W^T in the pass's matmul arithmetic; matmuls() runs up to
 * 4 matmuls that read the same x in one parallel region. */
typedef struct { float *out; const QTensor *w; } MatmulJob;
void matmuls(const Pass *ps, const MatmulJob *jobs, int n_jobs, const float *x, int n);
void matmul(const Pass *ps, float *out, const float *x, int n, const QTensor *w);
/* x[t] = embed_tokens.weight[tokens[t]] */
void embed(float *x, const QTensor *emb, const int32_t *tokens, int n);
/* causal grouped-query attention of every sequence's queries over its own cache, cache layer l,
 * with the tier's kernels k (the pass's: ps->k) */
void attention(const Kernels *k, float *out, const float *q, Seq *seqs, int n_seqs, int l,
               const Config *p, float *att_scratch, int att_C, int n_threads);
/* The sequence token t (a row of the batch) belongs to */
const Seq *seq_of_token(const Seq *seqs, int t);
/* The last layer past its keys and values: keep only the rows that feed logits (see forward.c);
 * moves them to the front of each of the n_bufs buffers (rows of widths[i] floats), shortens
 * seqs to them and returns their count */
int output_rows(Seq *seqs, int n_seqs, int n, float *const *bufs, const int *widths, int n_bufs);
/* how many rows output_rows would keep (seqs untouched) */
int output_row_count(const Seq *seqs, int n_seqs, int n);
/* past_key_values.update of one token at position `at` of ctx's cache layer cl */
void kv_store(const qwen3c_context *ctx, int cl, const float *k, const float *v, int at);
/* The MLP half of a decoder layer on s->x, n tokens: x += mlp(post_attention_layernorm(x)) */
void mlp_block(const Pass *ps, const Transformer *tf, const LayerWeights *lw, int n);
/* hidden_states = norm(x); logits = lm_head(hidden_states): one sequence's last token (all of
 * them with all_logits; hidden, if not NULL, receives the normed states of all n), or the last
 * token of each of several sequences through logits_scratch */
void final_norm_logits(const Pass *ps, const Transformer *tf, Seq *seqs, int n_seqs, int n, int all_logits,
                       float *hidden, float *logits_scratch);

/* ---------------------------------------------------------------------------------------
 * Qwen3.5: the forward pass (forward_qwen35.c); its Gated DeltaNet kernels are a kernel family
 * (kernels/kernels.h: DeltaNetKernels, kernels/deltanet_scalar.c)
 * ------------------------------------------------------------------------------------- */
/* forward_qwen35.c */
int  qwen35_state_create(qwen3c_context *ctx, int n_checkpoints, char *err, size_t err_size);
void qwen35_state_free(RecurrentState *rs);
/* Can a forward at pos start (pos == n_past, 0, or a checkpoint at pos)? INVALID_ARG naming the
 * restart position otherwise. qwen35_state_seek then brings the state there (zero, keep or
 * restore) and drops the checkpoints past pos. */
int  qwen35_state_check(const qwen3c_context *ctx, int pos, char *err, size_t err_size);
void qwen35_state_seek(qwen3c_context *ctx, int pos);
/* qwen3c_context_rewind_point for a context with a recurrent state (pos in [0, n_ctx]) */
int  qwen35_rewind_point(const qwen3c_context *ctx, int pos);
/* dst's recurrent state := src's at n_tokens (its live state or a checkpoint); INVALID_ARG if
 * src holds none there */
int  qwen35_state_copy(qwen3c_context *dst, const qwen3c_context *src, int n_tokens, char *err,
                       size_t err_size);
/* One batch of n tokens of seqs[0..n_seqs) through the hybrid model (as forward.c's forward) */
void forward_qwen35(const Pass *ps, const Transformer *tf, Seq *seqs, int n_seqs, const int32_t *tokens,
                    int n, int all_logits, float *hidden, int64_t hidden_stride_layer, float *logits_scratch);

#endif /* QWEN3C_INTERNAL_H */
