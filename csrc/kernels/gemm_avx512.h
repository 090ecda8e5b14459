/*
 * gemm_avx512.h -- the AVX-512 prefill matmul in float32 (a GEMM): out[t][r] = sum_k W[r][k]
 * x[t][k] for a batch of tokens. Shared by matmul_avx512.c (weights as stored in the file) and
 * q24k_avx512.c (K-quant weights from their packed 16-row groups); each supplies a `fill` that
 * writes the weights of 32 rows x kc columns, dequantized, as a micro-panel.
 *
 *   micro-panel  32 rows x kc columns (kc <= GEMM_KC = 256) stored column after column: column
 *                k is the 32 floats at panel + 32 k (rows 0..15, then 16..31), i.e. two zmm
 *   micro-kernel 32 rows x GEMM_NR = 12 tokens: per column k, 2 loads of the panel, 12
 *                broadcasts of x[t][k] and 24 FMAs into 24 accumulators that stay in registers
 *                (rows along the vector lanes, so no horizontal sums at the end)
 *   blocking     per micro-panel of the thread's rows and 256-column chunk: `fill` dequantizes
 *                it (32 KB: it stays in L1) and asks for the next one's weights (a prefetch),
 *                then every group of 12 tokens runs over it, each reading its 12 x 256
 *                activations from L2; the chunks' partial sums (up to GEMM_TB tokens) are
 *                added in a contiguous buffer, 32 KB, and only the last chunk's go to out:
 *                out's rows are a matrix row apart (4-12 KB in Qwen3-0.6B), so each group's
 *                24 lines of partial sums in out fell into a few cache sets and were read
 *                back from L2 or beyond (measured: the buffer made the GEMM 1.15x in a
 *                harness, prefill 1.03-1.04x)
 *
 * Each output is the float32 sum over its chunks of 256 columns (in order) of the chunk's
 * sequential FMA chain: the float reference arithmetic, in one fixed order.
 */
#ifndef QWEN3C_GEMM_AVX512_H
#define QWEN3C_GEMM_AVX512_H

#include <immintrin.h>

#include "kernels.h"

#define GEMM_MR 32   /* rows per micro-panel (two zmm) */
#define GEMM_NR 12   /* tokens per micro-kernel: 24 accumulators */
#define GEMM_KC 256  /* columns per panel (one K-quant super-block) */
#define GEMM_TB 256  /* tokens whose partial sums gemm_rows keeps in a contiguous buffer */

/* Writes rows [row0, row0 + nr) (nr <= 32; rows nr..31 as zeros) x columns [k0, k0 + kc) of w
 * as a micro-panel (64-byte aligned); with panel NULL, it may prefetch what that would read (a
 * hint: called for the next micro-panel right after filling this one). */
typedef void (*GemmFill)(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel);

/* For the fills from weights packed in 16-row groups (q24_avx512.c, q24k_avx512.c): */
/* ask for the `bytes` at g (the panel's first group) and, when the panel has more than 16 rows
 * (nr), for those `stride` bytes on (its second group): into L2, a hint (always inlined: gcc
 * takes a function that only prefetches for one without effects and drops the call) */
static inline __attribute__((always_inline)) void gemm_prefetch_groups(const uint8_t *g, size_t bytes, size_t stride, int nr) {
    for (size_t off = 0; off < bytes; off += 64) {
        _mm_prefetch((const char *)g + off, _MM_HINT_T1);
        if (nr > 16) _mm_prefetch((const char *)g + stride + off, _MM_HINT_T1);
    }
}
/* the second half (rows 16..31) of a micro-panel of at most 16 rows: zeros */
static inline void gemm_zero_half(float *half, int kc) {
    for (int k = 0; k < kc; k++) _mm512_store_ps(half + k * GEMM_MR, _mm512_setzero_ps());
}
/* byte i (0..3) of every 32-bit lane of v, sign-extended: one column of a chunk's 16 rows */
static inline __attribute__((always_inline)) __m512i byte_s32(__m512i v, int i) {
    return _mm512_srai_epi32(i == 3 ? v : _mm512_slli_epi32(v, 24 - 8 * i), 24);
}

/* 16 rows of 16 floats (r[i] = row i) -> r[j] = column j (16 rows). */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) { /* per 128-bit lane L: rows 2i, 2i+1 of columns 4L, 4L+1 | 4L+2, 4L+3 */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* r[4i + c], lane L: rows 4i..4i+3 of column 4L + c */
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int c = 0; c < 4; c++) { /* gather lane L of r[c], r[4+c], r[8+c], r[12+c]: column 4L + c */
        const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88), u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
        t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[8 + c] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
        t[4 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
    }
    for (int j = 0; j < 16; j++) r[j] = t[j];
}

/* Rows [0, nr) (nr <= 16) x kc columns of the row-major floats src (row stride ss) into half h
 * (rows 16h..16h+15) of a micro-panel; rows nr..15 become zeros. */
static inline void gemm_put_half(float *panel, int h, const float *src, int64_t ss, int nr, int kc) {
    int k = 0;
    for (; k + 16 <= kc; k += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = i < nr ? _mm512_loadu_ps(src + i * ss + k) : _mm512_setzero_ps();
        transpose16(r);
        for (int j = 0; j < 16; j++) _mm512_store_ps(panel + (k + j) * GEMM_MR + 16 * h, r[j]);
    }
    for (; k < kc; k++)
        for (int i = 0; i < 16; i++) panel[k * GEMM_MR + 16 * h + i] = i < nr ? src[i * ss + k] : 0.0f;
}

/* out[t * os + 0..32) = micro-panel (32 x kc) . x[t * xs + 0..kc) (+ in[t * is + 0..32) when
 * accumulating) for t < NT (a compile-time constant); m0, m1: the rows of each half to store. */
static inline __attribute__((always_inline)) void
gemm_kernel(const int NT, const float *panel, const float *x, int64_t xs, int kc, float *out, int64_t os,
            const float *in, int64_t is, __mmask16 m0, __mmask16 m1, const int accumulate) {
    __m512 a0[GEMM_NR], a1[GEMM_NR];
    /* unrolled: otherwise gcc turns this loop into a memset() of the arrays on the stack, a
     * call per tile; without the calls the AVX-512 Q5_K GEMM ran 1.001-1.017x as fast */
#pragma GCC unroll 12
    for (int t = 0; t < NT; t++) a0[t] = a1[t] = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int k = 0; k < kc; k++) {
        const __m512 w0 = _mm512_load_ps(panel + k * GEMM_MR), w1 = _mm512_load_ps(panel + k * GEMM_MR + 16);
        for (int t = 0; t < NT; t++) {
            const __m512 b = _mm512_set1_ps(x[t * xs + k]);
            a0[t] = _mm512_fmadd_ps(w0, b, a0[t]);
            a1[t] = _mm512_fmadd_ps(w1, b, a1[t]);
        }
    }
    for (int t = 0; t < NT; t++) {
        float *o = out + t * os;
        if (accumulate) {
            a0[t] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, in + t * is), a0[t]);
            a1[t] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, in + t * is + 16), a1[t]);
        }
        _mm512_mask_storeu_ps(o, m0, a0[t]);
        _mm512_mask_storeu_ps(o + 16, m1, a1[t]);
    }
}

static void gemm_tile(int nt, const float *panel, const float *x, int64_t xs, int kc, float *out, int64_t os,
                      const float *in, int64_t is, __mmask16 m0, __mmask16 m1, int accumulate) {
#define GEMM_CASE(N)                                                                   \
    case N:                                                                            \
        if (accumulate) gemm_kernel(N, panel, x, xs, kc, out, os, in, is, m0, m1, 1);  \
        else gemm_kernel(N, panel, x, xs, kc, out, os, in, is, m0, m1, 0);             \
        return;
    switch (nt) {
    GEMM_CASE(1) GEMM_CASE(2) GEMM_CASE(3) GEMM_CASE(4) GEMM_CASE(5) GEMM_CASE(6) GEMM_CASE(7)
    GEMM_CASE(8) GEMM_CASE(9) GEMM_CASE(10) GEMM_CASE(11)
    default: if (accumulate) gemm_kernel(GEMM_NR, panel, x, xs, kc, out, os, in, is, m0, m1, 1);
             else gemm_kernel(GEMM_NR, panel, x, xs, kc, out, os, in, is, m0, m1, 0);
             return;
    }
#undef GEMM_CASE
}

/* The rows [r0, r1) of a matmul for n_tok tokens (x: n_tok rows of w->cols floats, xs floats
 * apart; out rows at stride os), the weights from `fill` (a compile-time function at each call
 * site). */
static inline __attribute__((always_inline)) void
gemm_rows(float *out, int64_t os, const float *x, int64_t xs, int n_tok, const QTensor *w, int64_t r0,
          int64_t r1, GemmFill fill) {
    const int64_t n = w->cols;
    _Alignas(64) float panel[GEMM_MR * GEMM_KC];
    /* a panel's partial sums over its first chunks, for up to GEMM_TB tokens: contiguous, where
     * out's rows are a matrix row apart */
    _Alignas(64) float part[GEMM_MR * GEMM_TB];
    const int local = n_tok <= GEMM_TB && n > GEMM_KC;
    for (int64_t rb = r0; rb < r1; rb += GEMM_MR) {
        const int nr = r1 - rb < GEMM_MR ? (int)(r1 - rb) : GEMM_MR;
        const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
        const __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
        for (int64_t k0 = 0; k0 < n; k0 += GEMM_KC) {
            const int kc = n - k0 < GEMM_KC ? (int)(n - k0) : GEMM_KC;
            fill(w, rb, nr, k0, kc, panel); /* 32 KB: stays in L1 while every token passes */
            if (k0 + GEMM_KC < n) /* the next fill's weights, fetched meanwhile */
                fill(w, rb, nr, k0 + GEMM_KC, n - k0 - GEMM_KC < GEMM_KC ? (int)(n - k0 - GEMM_KC) : GEMM_KC, NULL);
            else if (rb + GEMM_MR < r1)
                fill(w, rb + GEMM_MR, r1 - rb - GEMM_MR < GEMM_MR ? (int)(r1 - rb - GEMM_MR) : GEMM_MR, 0,
                     n < GEMM_KC ? (int)n : GEMM_KC, NULL);
            const int to_part = local && k0 + GEMM_KC < n; /* not the last chunk */
            for (int t0 = 0; t0 < n_tok; t0 += GEMM_NR) {
                const int nt = n_tok - t0 < GEMM_NR ? n_tok - t0 : GEMM_NR;
                float *o = out + (int64_t)t0 * os + rb, *p = part + (int64_t)t0 * GEMM_MR;
                gemm_tile(nt, panel, x + (int64_t)t0 * xs + k0, xs, kc, to_part ? p : o, to_part ? GEMM_MR : os,
                          local ? p : o, local ? GEMM_MR : os, m0, m1, k0 > 0);
            }
        }
    }
}

#endif /* QWEN3C_GEMM_AVX512_H */
