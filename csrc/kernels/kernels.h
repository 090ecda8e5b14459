/*
 * kernels.h -- the SIMD kernels of qwen3c, one file per kernel family and CPU tier, behind one
 * table of function pointers per tier (the dispatcher, csrc/cpu.c, picks the table).
 *
 *   family      what it computes                                  files
 *   matmul      float32 activations x any weight type (the        matmul_{scalar,avx2,avx512,neon}.c
 *               reference path: decode dot products, prefill      (+ gemm_avx512.h, gemm_avx2.h:
 *               panel dequantization + register-tiled FMAs)        the x86 prefill GEMM, which the
 *                                                                  q24 / q24k files share for the
 *                                                                  types in their float_types)
 *   q24         the default for Q8_0/Q4_0/Q4_1: 24-bit            q24_{scalar,avx2,avx512,neon}.c
 *               activation blocks x packed 16-row weight groups
 *   q24k        the default for Q4_K/Q5_K/Q6_K: the same          q24k_{scalar,avx2,avx512,neon}.c
 *               activation blocks (q24's quantize) x packed
 *               16-row groups of K-quant super-blocks
 *   q16         opt-in 16-bit activation blocks                   q16_{scalar,avx512}.c
 *   int8        opt-in 8-bit activation blocks                    int8_{scalar,avx512}.c
 *   attention   scores q.k over key tiles, softmax(scores) @ v    attention_{scalar,avx2,avx512,neon}.c
 *   nn          softmax, swiglu (the exp-heavy element-wise ops)  nn_{scalar,neon}.c
 *   deltanet    Qwen3.5's Gated DeltaNet: causal conv1d, the      deltanet_scalar.c
 *               gated delta rule (recurrent, chunked), l2norm,
 *               the gated RMSNorm
 *   (rmsnorm, rope, the KV cache stores stay in forward.c, at the baseline: a few thousand
 *   elements per token, which SSE2 / arm64's NEON baseline vectorize well enough)
 *
 *   tier     x86-64 CPUs                                  compiled with
 *   avx512   AVX-512 F/BW/DQ/VL + VNNI (Ice Lake, Zen 4)   -mavx512f -mavx512bw -mavx512dq -mavx512vl
 *                                                         -mavx512vnni -mavx2 -mfma -mf16c
 *   avx2     AVX2 + FMA + F16C + AVX-VNNI (Alder Lake and   -mavx2 -mfma -mf16c -mavxvnni
 *            later Intel laptops, Zen 5): the avx2 files
 *            compiled with AVX-VNNI (table suffix avx2vnni)
 *   avx2     AVX2 + FMA + F16C (Haswell .. Comet Lake, Zen  -mavx2 -mfma -mf16c
 *            1-4 without AVX-512): the same files without
 *            it; QWEN3C_CPU=avx2 picks the first of the two
 *            the CPU runs, avx2-novnni forces this one
 *   sse      SSE4.2 + POPCNT (Nehalem): x86-64-v2          -msse4.2 -mpopcnt
 *   scalar   any CPU: plain C, the readable reference     the build's baseline flags
 *
 *   arm64 CPUs                                                 compiled with
 *   neon-i8mm  NEON + dotprod + i8mm (Apple M2+, Graviton3+,   -march=armv8.2-a+dotprod+i8mm
 *              Snapdragon X, Cortex-A710+); table suffix
 *              neon_i8mm
 *   neon       NEON + dotprod (Apple M1, Graviton2, A76+)      -march=armv8.2-a+dotprod
 *   neon-nodot NEON only (Cortex-A53 / A72: Raspberry Pi 3/4); -march=armv8-a
 *              table suffix neon_nodot
 *   scalar     the plain C, which the compiler vectorizes for NEON (part of arm64's baseline)
 * The three arm64 tiers compile the same *_neon.c files (CMakeLists.txt:
 * QWEN3C_TIER_SOURCE_<tier>); q24_neon.c / q24k_neon.c use sdot where __ARM_FEATURE_DOTPROD is
 * defined (and q24_neon.c smmla where __ARM_FEATURE_MATMUL_INT8 is), and otherwise compute the
 * same integer sums with widening multiplies (exact, but no faster than f32: q24 / q24k are the
 * forward pass's path on neon and neon-i8mm only).
 *
 * Every tier has a table for every family. A family without a hand-written file for a tier
 * (e.g. q16_avx2.c) gets its scalar file compiled again with that tier's flags (CMakeLists.txt
 * does it, defining KERNEL_TIER): the plain C, vectorized by the compiler for that CPU. So
 * today: sse = every scalar file for SSE4.2; avx2 (both variants) = hand-written matmul, q24,
 * q24k, attention + the scalar q16, int8, nn files for AVX2; avx512 = hand-written matmul, q24,
 * q24k, q16, int8, attention + the scalar nn file for AVX-512; the arm64 tiers = hand-written
 * matmul, q24, q24k, attention, nn + the scalar q16, int8 files for their -march; deltanet is
 * the scalar file on every tier. A hand-written
 * avx2 file sees __AVXVNNI__ defined in its avx2vnni compile (vpdpbusd on ymm) and not in its
 * avx2 one.
 *
 * Adding a family: a struct of function pointers below, a <family>_scalar.c that defines
 * `const XxxKernels TIER_TABLE(xxx_kernels)` (everything else in the file static), the family
 * in QWEN3C_KERNEL_FAMILIES (CMakeLists.txt) and a field in Kernels + an entry per tier in
 * cpu.c. Adding a hand-written kernel for a tier: the file <family>_<tier>.c defining
 * <family>_kernels_<tier> (CMake then compiles it instead of the scalar one). Adding a tier:
 * its flags in CMakeLists.txt, its detection and table in cpu.c.
 *
 * Contracts: every tier of a family computes the same function; the tests run under each tier
 * (QWEN3C_CPU=avx2|sse|scalar) with the same tolerances, and tests/c/test_kernels.c compares
 * every tier's kernels with the scalar ones directly (the arm64 build runs it under qemu). Where a tier is exact (q24's integer
 * sums, q16 / int8 before the float steps) all tiers are bit-identical; the float tiers differ
 * by float32 rounding (FMA or not, summation order).
 */
#ifndef QWEN3C_KERNELS_H
#define QWEN3C_KERNELS_H

#include "internal.h"

/* ---- the table name of a kernel file (see above) ---------------------------------------- */
#ifndef KERNEL_TIER
#define KERNEL_TIER scalar
#endif
#define TIER_CAT2(a, b) a##_##b
#define TIER_CAT(a, b) TIER_CAT2(a, b)
#define TIER_TABLE(family) TIER_CAT(family, KERNEL_TIER) /* TIER_TABLE(q24_kernels) = q24_kernels_avx2 */

/* out[t * out_stride + r] for t in [0, n_tok), r in [r0, r1): one thread's share of a matmul
 * whose input x is, per path, float32 rows or pre-quantized activation blocks. */
typedef void (*RowsFn)(float *out, int64_t out_stride, const void *x, int n_tok, const QTensor *w,
                       int64_t r0, int64_t r1);

/* ---- matmul: float32 activations -------------------------------------------------------- */
typedef struct {
    /* out[t * out_stride + r] = dot(W[r, :], x[t, :]) for t < n_tok, r in [r0, r1); x is
     * (n_tok, w->cols) floats. Streams each weight row once for all n_tok tokens. Any row range. */
    void (*rows)(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1);
} MatmulKernels;

/* The float32 prefill from packed weights (Q24Kernels / Q24KKernels.rows_float): as RowsFn, but x
 * is float32 rows x_stride floats apart. The forward pass passes a copy of the matmul input whose
 * rows are GEMM_X_PAD floats longer (RunState.xf): the GEMM reads 12 token rows at once, and rows
 * a multiple of 4 KB apart (Qwen3-0.6B's 1024 and 3072 columns) all fall into the same few L1
 * cache sets, where they evict each other and the weight panel. */
typedef void (*FloatRowsFn)(float *out, int64_t out_stride, const float *x, int64_t x_stride, int n_tok,
                            const QTensor *w, int64_t r0, int64_t r1);
#define GEMM_X_PAD 16 /* floats: one cache line */

/* ---- q24: 24-bit activations x packed weights (quant_q24.c has the format) -------------- */
typedef struct {
    bool fast;   /* true: the forward pass uses q24 and the model packs its weights for it;
                    false (no integer dot-product instructions): q24 runs as f32 there, and
                    only the test entry qwen3c_matmul_q24 uses these kernels */
    /* bytes of the packed copy of a (rows, cols) matrix (0: unsupported type), and the packing
     * (once per model, n_threads OpenMP threads; <= 0: the default number) */
    size_t (*packed_size)(int type, int64_t rows, int64_t cols);
    void   (*pack)(const QTensor *w, void *dst, int n_threads);
    /* bytes of the quantized activations of n_tok rows of cols floats */
    size_t (*act_size)(int n_tok, int64_t cols);
    /* blocks [i0, i1) of x (block i = x[32 i .. 32 i + 32)) into xq: threads split the blocks */
    void   (*quantize)(const float *x, int64_t i0, int64_t i1, void *xq);
    /* as MatmulKernels.rows, x from quantize, weights from w->packed; r0 a multiple of 16 */
    RowsFn rows;
    /* NULL, or as Q24KKernels.rows_float: the prefill of float_types in float32 from the packed
     * weights, where that is faster (AVX-512: Q8_0, Q4_0; AVX2: all three) */
    FloatRowsFn rows_float;
    uint32_t float_types;
    bool reads_q8_min; /* rows reads QTensor.q8_min (AVX2 without AVX-VNNI): the model sets it */
} Q24Kernels;

/* ---- q24k: q24's activation blocks x packed K-quant weights (quant_q24k.c has the format) -- */
typedef struct {
    /* as Q24Kernels: bytes of the packed copy (0: not a K-quant type q24k computes with), the
     * packing, and the rows (x from the same tier's Q24Kernels.quantize; r0 a multiple of 16) */
    size_t (*packed_size)(int type, int64_t rows, int64_t cols);
    void   (*pack)(const QTensor *w, void *dst, int n_threads);
    RowsFn rows;
    /* NULL, or the prefill (n_tok >= Q24_FLOAT_MIN_TOKENS) of the types in float_types in
     * float32, where that is faster than the integer sums (AVX-512 and AVX2: all three):
     * x is float32 rows (not quantized), the weights are dequantized from w->packed to exactly
     * quant.c's values, and the sums are the float path's (on AVX-512 MatmulKernels.rows' very
     * bits); r0 a multiple of 16 */
    FloatRowsFn rows_float;
    uint32_t float_types; /* bit t: rows_float computes type t */
} Q24KKernels;
#define Q24_FLOAT_MIN_TOKENS 12

/* ---- q16 and int8: 16- / 8-bit activations x the weights as stored ---------------------- */
typedef struct {
    size_t (*act_size)(int n_tok, int64_t cols);
    /* all n_tok rows of x (n_tok, cols) into xq (act_size bytes, 64-byte aligned is best) */
    void   (*quantize)(const float *x, int n_tok, int64_t cols, void *xq);
    RowsFn rows;
} ActQuantKernels;

/* ---- attention over the KV cache (forward.c: attention() has the layout) ---------------- */
#define ATT_ROWS 8   /* query rows (token, head) sharing one kv head, done together */
#define KV_TILE  16  /* positions per key tile: keys are stored (P/16, HD, 16) per kv head and chunk */
typedef struct {
    /* att[r * att_stride + s] = (q[r] . k_s) * scale for r < nr (<= ATT_ROWS) and every s in
     * [0, n) rounded up to whole tiles of KV_TILE (lanes past n get stale keys' scores, which
     * nobody reads). keys: one kv head's tiles (float32, or IEEE halves when f16). */
    void (*scores)(int nr, const float *const *q, const void *keys, int f16, int HD, int n,
                   float scale, float *att, size_t att_stride);
    /* o[r][0..HD) = sum over s < len[r] of att[r * att_stride + s] * v_s for r < nr (<=
     * ATT_ROWS), summed in order of s; values: one kv head's rows (., HD), float32 or halves
     * (f16). att[r][s] must be 0 for len[r] <= s < max(len): a kernel may sum every row to the
     * longest length, to read each value vector once for all rows. With accumulate, the sums
     * start from o[r] instead of 0: the chain of one call goes on in the next, so a sum over
     * several runs of positions (the KV cache's chunks) has the bits of one call over all. */
    void (*weighted_sum)(int nr, float *const *o, const float *att, size_t att_stride,
                         const void *values, int f16, const int *len, int HD, int accumulate);
} AttentionKernels;

/* ---- nn: element-wise ops with exp ------------------------------------------------------- */
typedef struct {
    void (*softmax)(float *x, int n);                       /* in place, float32 */
    void (*swiglu)(float *hb, const float *hb2, int64_t n);  /* hb = silu(hb) * hb2 */
} NNKernels;

/* ---- deltanet: Qwen3.5's Gated DeltaNet layer (forward_qwen35.c: gated_deltanet) ------------ */
#define DELTA_CHUNK 64  /* tokens per chunk of gated_delta_rule_chunked */
typedef struct {
    /* causal_conv1d_fn / causal_conv1d_update + SiLU over channels [c0, c1) of n tokens:
     * out[t][c] = silu(sum_j w[j][c] * window[t + j][c]) with window = the K-1 rows of `state`
     * followed by x's n rows (x, out: row stride CD; w: (K, CD)); then state = the window's
     * last K-1 rows. */
    void (*causal_conv1d_silu)(float *out, const float *x, float *state, const float *w, int n, int K,
                               int CD, int c0, int c1);
    /* l2norm(x) over n elements (eps 1e-6), times scale: FLA's use_qk_l2norm_in_kernel */
    void (*l2norm_scaled)(float *x, int n, float scale);
    /* torch_recurrent_gated_delta_rule for one value head over n tokens, state S (HK, HV):
     *   S = S * exp(g_t);  S += k_t (beta_t (v_t - S^T k_t))^T;  o_t = S^T q_t
     * q, k: rows at stride qk_stride (l2-normed, q scaled); v rows at v_stride; o rows at
     * o_stride; g (log decay) and beta at stride gb_stride. */
    void (*gated_delta_rule_recurrent)(float *S, float *o, int o_stride, const float *q, const float *k,
                                       int qk_stride, const float *v, int v_stride, const float *g,
                                       const float *beta, int gb_stride, int n, int HK, int HV);
    /* torch_chunk_gated_delta_rule for one value head: the same result (up to rounding),
     * computed DELTA_CHUNK tokens at a time as matrix products -- transformers' prefill
     * algorithm. The same arithmetic as the recurrence plus a triangular solve per chunk, so on
     * a CPU it is the slower of the two; qwen3c_gated_delta_rule runs it for tests. scratch:
     * delta_chunk_scratch(HK, HV) floats. */
    void (*gated_delta_rule_chunked)(float *S, float *o, int o_stride, const float *q, const float *k,
                                     int qk_stride, const float *v, int v_stride, const float *g,
                                     const float *beta, int gb_stride, int n, int HK, int HV, float *scratch);
    /* Qwen3_5RMSNormGated over one head of n elements: x = weight * rmsnorm(x) * silu(gate) */
    void (*rmsnorm_gated)(float *x, const float *gate, const float *weight, int n, float eps);
} DeltaNetKernels;

/* The scratch floats of gated_delta_rule_chunked: A (the UT system's lower triangle, then the
 * decayed q . k), U (new_values, then v_new), W (k_cumdecay), the decayed queries and keys,
 * cum_decay and exp(cum_decay). */
static inline size_t delta_chunk_scratch(int HK, int HV) {
    const size_t C = DELTA_CHUNK;
    return C * C + C * (size_t)HV + 3 * C * (size_t)HK + 2 * C;
}

/* The scale of an activation block quantized to integers in [-qmax, qmax] from its max |x|:
 * d = amax / qmax, and *id = 1 / d; both 0 for a block too small to scale (d < FLT_MIN) and
 * for NaN / inf (which keeps 1 / d finite). q16 (qmax 32767) and int8 (127) share it. */
static inline float block_scale(float amax, float qmax, float *id) {
    float d = amax / qmax;
    if (!(d >= 1.17549435e-38f) || d > 3.40282347e+38f) d = 0.0f;  /* FLT_MIN, FLT_MAX */
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

/* ---- one tier: a table per family ---------------------------------------------------------- */
typedef struct Kernels {
    const char             *tier;      /* "avx512", "avx2", "sse", "neon", ... (QWEN3C_CPU names) */
    const MatmulKernels    *matmul;
    const Q24Kernels       *q24;
    const Q24KKernels      *q24k;
    const ActQuantKernels  *q16;
    const ActQuantKernels  *int8;
    const AttentionKernels *attention;
    const NNKernels        *nn;
    const DeltaNetKernels  *deltanet;
} Kernels;

#define QWEN3C_DECLARE_TIER(t)                                                                     \
    extern const MatmulKernels matmul_kernels_##t;                                                 \
    extern const Q24Kernels q24_kernels_##t;                                                       \
    extern const Q24KKernels q24k_kernels_##t;                                                     \
    extern const ActQuantKernels q16_kernels_##t;                                                  \
    extern const ActQuantKernels int8_kernels_##t;                                                 \
    extern const AttentionKernels attention_kernels_##t;                                           \
    extern const NNKernels nn_kernels_##t;                                                         \
    extern const DeltaNetKernels deltanet_kernels_##t;
QWEN3C_DECLARE_TIER(scalar)
QWEN3C_DECLARE_TIER(sse)
QWEN3C_DECLARE_TIER(avx2)
QWEN3C_DECLARE_TIER(avx2vnni)
QWEN3C_DECLARE_TIER(avx512)
QWEN3C_DECLARE_TIER(neon_i8mm)
QWEN3C_DECLARE_TIER(neon)
QWEN3C_DECLARE_TIER(neon_nodot)
#undef QWEN3C_DECLARE_TIER

/* The q24 path of a weight matrix of `type` on tier k: the packed size (0: q24 does not compute
 * with the type, the matrix stays in the file and runs as f32), the packing and the rows, from
 * the q24 family (Q8_0 / Q4_0 / Q4_1) or the q24k family (Q4_K / Q5_K / Q6_K). */
static inline size_t q24_any_packed_size(const Kernels *k, int type, int64_t rows, int64_t cols) {
    const size_t b = k->q24->packed_size(type, rows, cols);
    return b ? b : k->q24k->packed_size(type, rows, cols);
}
static inline void q24_any_pack(const Kernels *k, const QTensor *w, void *dst, int n_threads) {
    if (k->q24->packed_size(w->type, w->rows, w->cols)) k->q24->pack(w, dst, n_threads);
    else k->q24k->pack(w, dst, n_threads);
}
/* The function with which the q24 path computes a matmul of n tokens with `type` weights in
 * float32 instead (rows_float of Q24KKernels / Q24Kernels: prefill on the tiers where that is
 * faster), or NULL: the integer sums. */
static inline FloatRowsFn q24_float_rows(const Kernels *k, int type, int n) {
    if (n < Q24_FLOAT_MIN_TOKENS || type < 0 || type >= 32) return NULL;
    if (k->q24k->float_types >> type & 1u) return k->q24k->rows_float;
    return k->q24->float_types >> type & 1u ? k->q24->rows_float : NULL;
}

static inline RowsFn q24_any_rows(const Kernels *k, int type) {
    return q24k_path_supported(type) ? k->q24k->rows : k->q24->rows;
}

#endif /* QWEN3C_KERNELS_H */
