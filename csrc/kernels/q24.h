/*
 * q24.h -- what the q24 kernel files share: the activation block and the packed record sizes
 * (quant_q24.c documents the formats).
 */
#ifndef QWEN3C_Q24_H
#define QWEN3C_Q24_H

#include <float.h>
#include <math.h>

#include "kernels.h"

#define QK 32           /* elements per block */
#define GR 16           /* weight rows per packed group (one per int32 lane) */
#define VMAX 8355711    /* 0x7F7F7F: the largest |v| with three signed-byte digits */

/* One quantized activation block (128 bytes). */
typedef struct {
    float   d;          /* x ~= d * v */
    float   sx;         /* float32 sum of the original x, in the halving order of q24_sum32 */
    int32_t sh;         /* sum(h) */
    int32_t sml;        /* 256 sum(m) + sum(l) */
    int32_t q6k[4];     /* Q6_K's offset terms for its 16-element sub-blocks (quant_q24k.c):
                           -32 sum(h), -32 (256 sum(m) + sum(l)) over elements 0..15, then 16..31
                           (negative: a kernel starts its integer sums from them) */
    int8_t  h[QK], m[QK], l[QK];
} BlockQ24;

/* Set o->q6k from the block's sums (o->sh, o->sml) and those of its first 16 elements. */
static inline void q24_set_halves(BlockQ24 *o, int32_t sh0, int32_t sml0) {
    o->q6k[0] = -32 * sh0, o->q6k[1] = -32 * sml0;
    o->q6k[2] = -32 * (o->sh - sh0), o->q6k[3] = -32 * (o->sml - sml0);
}

/* The float32 sum of 32 values in the order every tier's quantize uses (a SIMD reduction's):
 * a[i] += a[i + w] for w = 16, 8, 4, 2, 1, then a[0]. */
static inline float q24_sum32(const float *x) {
    float a[QK];
    for (int i = 0; i < QK; i++) a[i] = x[i];
    for (int w = QK / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) a[i] += a[i + w];
    return a[0];
}

/* Bytes of one packed record (16 rows x one block of 32 columns); 0 for other types. */
static inline int q24_record_bytes(int type) {
    switch (type) {
    case QWEN3C_TYPE_Q8_0: return 32 + 8 * 64;
    case QWEN3C_TYPE_Q4_0: return 32 + 4 * 64;
    case QWEN3C_TYPE_Q4_1: return 64 + 4 * 64;
    default: return 0;
    }
}

/* Decode (one token) reads every packed record once, straight from memory, and spends about as
 * long computing on a line as waiting for it: the hardware prefetchers alone kept too few lines
 * in flight to overlap the two, and decode streamed at ~70% of the read bandwidth. So the
 * kernels ask for the lines `ahead` bytes past the part of the record they are about to use (a
 * call's packed matrices are one array each: past a group's end is the next group). Tiles of a
 * few tokens (several sequences decoding together, a short prompt) stream the same way and ask
 * too: with the requests, decode steps of 2 / 4 / 7 sequences together (Q5_K_M) ran 1.60 /
 * 1.62 / 1.37x as fast as with one-token tiles only asking (README #20, stop 32).
 * The distance is the tier's: far enough to cover the memory latency at the speed the kernel
 * consumes a record, and not so far that the requests in flight exceed what the core tracks
 * (measured, Qwen3-0.6B shapes, 2 threads, decode speed against none: AVX-512 Q4_K at 1 / 2 /
 * 3 / 4 KB 1.10 / 1.16 / 1.06 / 0.91x; AVX2 Q4_K at 0.5 / 1 / 1.5 / 2 / 4 KB 1.05 / 1.03 /
 * 1.03 / 0.94 / 0.72x).
 * AVX-512 asks for the same lines once more before, Q24_AHEAD_L2_AVX512 bytes ahead, into L2
 * only (prefetcht1, ahead_l2 > 0): a request that goes to memory starts twice as early, and the
 * requests into L1, which hold the core's few fill buffers, mostly find their line in L2. Its
 * decode kernels had streamed 17-20% slower than a loop that only reads the same bytes with the
 * L1 requests (Qwen3-0.6B Q4_K_M, 2 threads). Measured (bench/ab_builds.py, 2 threads, 128
 * decode tokens, 6-8 alternating rounds, against the L1 requests alone): AVX-512 Q5_K_M 1.06x,
 * Q8_0 1.09x decode, L2 requests without the L1 ones 0.90x; AVX2 Q4_K_M 0.90x, so AVX2 keeps
 * the L1 requests alone. The L2 distance at 3 / 4 / 6 / 8 / 12 KB (timed decode steps): 4 KB
 * the best.
 * The AVX-512 K-quant kernels (q24k_avx512.c) ask for one line per 64-byte chunk they unpack
 * (q24_prefetch_line) instead of a burst per part of a record (12-28 requests at once, more
 * than the core's 16 L1 fill buffers), and ask L2 for it Q24K_AHEAD_L2_AVX512 ahead. Measured
 * against the bursts (a harness streaming 150 Qwen3-0.6B-shaped 3072 x 1024 matrices, 2
 * threads, the two kernels alternating, median of 20 paired rounds): Q6_K 1.134x, Q5_K 1.069x,
 * Q4_K 1.060x; spread requests with the L2 distance at 4 / 8 / 12 / 16 KB: Q5_K 1.03 / 1.067 /
 * 1.066 / 1.095x, 8 and 16 KB against each other 0.985x. Q8_0 (q24_avx512.c: 9 lines per
 * record, less work per byte) measured no better spread (1.002-1.023x) and keeps its bursts. */
#define Q24_AHEAD_AVX512     2048
#define Q24_AHEAD_L2_AVX512  4096
#define Q24K_AHEAD_L2_AVX512 8192
#define Q24_AHEAD_AVX2       1024
/* The requests for one line, `line` (0, 1, ...) of the lines from p: lines 0 .. (bytes + 63) / 64
 * cover a part of `bytes` bytes at p, wherever p falls in its first line. */
static inline __attribute__((always_inline)) void q24_prefetch_line(const uint8_t *p, int line, int ahead, const int ahead_l2) {
    __builtin_prefetch(p + ahead + 64 * line, 0, 3);                  /* into L1 (prefetcht0) */
    if (ahead_l2) __builtin_prefetch(p + ahead_l2 + 64 * line, 0, 2); /* into L2 (prefetcht1) */
}
/* ... and for all the lines of such a part at once (a burst) */
static inline __attribute__((always_inline)) void q24_prefetch(const uint8_t *p, int bytes, int ahead, const int ahead_l2) {
    for (int line = 0; 64 * line < bytes + 63; line++) q24_prefetch_line(p, line, ahead, ahead_l2);
}

static inline size_t q24_act_bytes(int n_tok, int64_t cols) {
    return (size_t)n_tok * (size_t)(cols / QK) * sizeof(BlockQ24);
}

/* The block scale: d and 1/d from max|x| (bad = the block holds a NaN or an infinity). */
static inline float q24_act_scale(float amax, int bad, float *id) {
    float d = amax / (float)VMAX;
    if (bad) { *id = 0.0f; return NAN; }
    if (!(d >= FLT_MIN)) { *id = 0.0f; return 0.0f; }
    *id = 1.0f / d;
    return d;
}

/* The token tiling of the SIMD q24 / q24k files: tiles of tile_t tokens, then (when tile_t > 4)
 * one of 4, then one of 3, 2 or 1 (fewer than tile_t) -- every tile size a compile-time constant, so that the file's
 * always-inline kernel keeps its accumulators in registers. TILE(NT, t) runs tokens [t, t + NT). */
#define Q24_TOKEN_TILES(n_tok, tile_t, TILE)                                                   \
    do {                                                                                     \
        int t_ = 0;                                                                          \
        for (; t_ + (tile_t) <= (n_tok); t_ += (tile_t)) TILE(tile_t, t_);                   \
        if ((tile_t) > 4 && (n_tok) - t_ >= 4) { TILE(4, t_); t_ += 4; }                     \
        switch ((n_tok) - t_) { /* (tile sizes above tile_t never occur, nor get compiled) */ \
        case 3: if ((tile_t) > 3) TILE(3, t_); break;                                        \
        case 2: if ((tile_t) > 2) TILE(2, t_); break;                                        \
        case 1: TILE(1, t_); break;                                                          \
        default: break;                                                                      \
        }                                                                                    \
    } while (0)

/* The table entry rows() of a SIMD q24 / q24k file, from the file's TILE_T and always-inline
 * rows_tile(TYPE, NT, w, r0, r1, x, nb, out, out_stride) (rows [r0, r1) x NT tokens, a
 * compile-time constant): rows_type runs the tokens in tiles (Q24_TOKEN_TILES), each over all
 * the rows, so that a tile's activations stay in L1 / L2 while the rows' weights (a thread's
 * piece of a matrix) stay in L2; then one function per weight type (rows_type specialized for
 * it, and a name a profile shows), picked by w->type; the third type is the default. */
#define Q24_ROWS_TILE_(NT, t) rows_tile(TYPE, NT, w, r0, r1, x + (t) * nb, nb, out + (t) * out_stride, out_stride)
#define Q24_ROWS_BY_TYPE(n0, T0, n1, T1, n2, T2)                                               \
    static inline __attribute__((always_inline)) void                                         \
    rows_type(const int TYPE, float *out, int64_t out_stride, const BlockQ24 *x, int n_tok,   \
              const QTensor *w, int64_t r0, int64_t r1) {                                     \
        const int64_t nb = w->cols / QK; /* activation blocks per token */                    \
        Q24_TOKEN_TILES(n_tok, TILE_T, Q24_ROWS_TILE_);                                       \
    }                                                                                         \
    static void rows_##n0(float *out, int64_t out_stride, const BlockQ24 *x, int n_tok,       \
                          const QTensor *w, int64_t r0, int64_t r1) {                         \
        rows_type(T0, out, out_stride, x, n_tok, w, r0, r1);                                  \
    }                                                                                         \
    static void rows_##n1(float *out, int64_t out_stride, const BlockQ24 *x, int n_tok,       \
                          const QTensor *w, int64_t r0, int64_t r1) {                         \
        rows_type(T1, out, out_stride, x, n_tok, w, r0, r1);                                  \
    }                                                                                         \
    static void rows_##n2(float *out, int64_t out_stride, const BlockQ24 *x, int n_tok,       \
                          const QTensor *w, int64_t r0, int64_t r1) {                         \
        rows_type(T2, out, out_stride, x, n_tok, w, r0, r1);                                  \
    }                                                                                         \
    static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w, \
                     int64_t r0, int64_t r1) {                                                \
        switch (w->type) {                                                                    \
        case T0: rows_##n0(out, out_stride, xq, n_tok, w, r0, r1); break;                     \
        case T1: rows_##n1(out, out_stride, xq, n_tok, w, r0, r1); break;                     \
        default: rows_##n2(out, out_stride, xq, n_tok, w, r0, r1); break;                     \
        }                                                                                     \
    }

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#include <immintrin.h>
/* acc += vpdpbusd(u, the 4 signed bytes at p broadcast): one instruction with an embedded
 * broadcast of the memory operand (gcc otherwise issues a separate vpbroadcastd for each). */
static inline __attribute__((always_inline)) __m512i dpbusd_bcast(__m512i acc, __m512i u, const int8_t *p) {
#if defined(__GNUC__)
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int32_t *)(const void *)p));
    return acc;
#else
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_dpbusd_epi32(acc, u, _mm512_set1_epi32(v));
#endif
}
#endif

#endif /* QWEN3C_Q24_H */
