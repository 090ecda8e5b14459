/*
 * gemm_avx2.h -- the AVX2 prefill matmul in float32 (a GEMM), gemm_avx512.h's design on 16
 * ymm registers: out[t][r] = sum_k W[r][k] x[t][k] for a batch of tokens; matmul_avx2.c
 * supplies a `fill` that writes the weights of 16 rows x kc columns, dequantized, as a
 * micro-panel.
 *
 *   micro-panel  16 rows x kc columns (kc <= GEMM_KC = 256) stored column after column: column
 *                k is the 16 floats at panel + 16 k, i.e. two ymm
 *   micro-kernel 16 rows x GEMM_NR = 6 tokens: per column k, 2 loads of the panel, 6
 *                broadcasts of x[t][k] and 12 FMAs into 12 accumulators (15 of the 16
 *                registers in use; rows along the vector lanes, so no horizontal sums)
 *   blocking     per micro-panel of the thread's rows and 256-column chunk: `fill` dequantizes
 *                it (16 KB: it stays in L1), then every group of 6 tokens runs over it; the
 *                chunks' partial sums are added in a contiguous buffer (16 KB, up to
 *                GEMM_TB tokens) and the last chunk's go to out, as gemm_avx512.h
 *
 * Each output is the float32 sum over its chunks of 256 columns (in order) of the chunk's
 * sequential FMA chain.
 */
#ifndef QWEN3C_GEMM_AVX2_H
#define QWEN3C_GEMM_AVX2_H

#include <immintrin.h>

#include "kernels.h"

#define GEMM_MR 16   /* rows per micro-panel (two ymm) */
#define GEMM_NR 6    /* tokens per micro-kernel: 12 accumulators */
#define GEMM_KC 256  /* columns per panel */
#define GEMM_TB 256  /* tokens whose partial sums gemm_rows keeps in a contiguous buffer */

/* Writes rows [row0, row0 + nr) (nr <= 16; rows nr..15 as zeros) x columns [k0, k0 + kc) of w
 * as a micro-panel (32-byte aligned). */
typedef void (*GemmFill)(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel);

/* 8 rows of 8 floats (r[i] = row i) -> r[j] = column j (8 rows). */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) { /* per 128-bit lane L: rows 2i, 2i+1 of columns 4L, 4L+1 | 4L+2, 4L+3 */
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) { /* u[4i + c], lane L: rows 4i..4i+3 of column 4L + c */
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int c = 0; c < 4; c++) { /* the low lanes: column c; the high lanes: column 4 + c */
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* Rows [0, nr) (nr <= 8) x kc columns of the row-major floats src (row stride ss) into half h
 * (rows 8h..8h+7) of a micro-panel; rows nr..7 become zeros. */
static inline void gemm_put_half(float *panel, int h, const float *src, int64_t ss, int nr, int kc) {
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = i < nr ? _mm256_loadu_ps(src + i * ss + k) : _mm256_setzero_ps();
        transpose8(r);
        for (int j = 0; j < 8; j++) _mm256_store_ps(panel + (k + j) * GEMM_MR + 8 * h, r[j]);
    }
    for (; k < kc; k++)
        for (int i = 0; i < 8; i++) panel[k * GEMM_MR + 8 * h + i] = i < nr ? src[i * ss + k] : 0.0f;
}

/* out[t * os + 0..nr) = micro-panel (16 x kc) . x[t * xs + 0..kc) (+ in[t * is + 0..nr) when
 * accumulating) for t < NT (a compile-time constant). (The store masks are made after the loop: 12 accumulators, 2
 * weight vectors and a broadcast leave one of the 16 registers.) */
static inline __attribute__((always_inline)) void
gemm_kernel(const int NT, const float *panel, const float *x, int64_t xs, int kc, float *out, int64_t os,
            const float *in, int64_t is, int nr, const int accumulate) {
    __m256 a0[GEMM_NR], a1[GEMM_NR];
    /* unrolled: otherwise gcc turns this loop into a memset() of the arrays on the stack, a
     * call per tile; without the calls the AVX-512 Q5_K GEMM ran 1.001-1.017x as fast */
#pragma GCC unroll 12
    for (int t = 0; t < NT; t++) a0[t] = a1[t] = _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int k = 0; k < kc; k++) {
        const __m256 w0 = _mm256_load_ps(panel + k * GEMM_MR), w1 = _mm256_load_ps(panel + k * GEMM_MR + 8);
        for (int t = 0; t < NT; t++) {
            const __m256 b = _mm256_broadcast_ss(x + t * xs + k);
            a0[t] = _mm256_fmadd_ps(w0, b, a0[t]);
            a1[t] = _mm256_fmadd_ps(w1, b, a1[t]);
        }
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane); /* lane < nr */
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
    for (int t = 0; t < NT; t++) {
        float *o = out + t * os;
        if (accumulate) {
            a0[t] = _mm256_add_ps(_mm256_maskload_ps(in + t * is, m0), a0[t]);
            a1[t] = _mm256_add_ps(_mm256_maskload_ps(in + t * is + 8, m1), a1[t]);
        }
        _mm256_maskstore_ps(o, m0, a0[t]);
        _mm256_maskstore_ps(o + 8, m1, a1[t]);
    }
}

/* (always inlined: as a function of its own, gcc 12 keeps the accumulators in memory) */
static inline __attribute__((always_inline)) void
gemm_tile(int nt, const float *panel, const float *x, int64_t xs, int kc, float *out, int64_t os,
          const float *in, int64_t is, int nr, int accumulate) {
#define GEMM_CASE(N)                                                                  \
    case N:                                                                           \
        if (accumulate) gemm_kernel(N, panel, x, xs, kc, out, os, in, is, nr, 1);     \
        else gemm_kernel(N, panel, x, xs, kc, out, os, in, is, nr, 0);                \
        return;
    switch (nt) {
    GEMM_CASE(1) GEMM_CASE(2) GEMM_CASE(3) GEMM_CASE(4) GEMM_CASE(5)
    default: if (accumulate) gemm_kernel(GEMM_NR, panel, x, xs, kc, out, os, in, is, nr, 1);
             else gemm_kernel(GEMM_NR, panel, x, xs, kc, out, os, in, is, nr, 0);
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
    _Alignas(32) float panel[GEMM_MR * GEMM_KC];
    /* a panel's partial sums over its first chunks, for up to GEMM_TB tokens: contiguous, where
     * out's rows are a matrix row apart */
    _Alignas(32) float part[GEMM_MR * GEMM_TB];
    const int local = n_tok <= GEMM_TB && n > GEMM_KC;
    for (int64_t rb = r0; rb < r1; rb += GEMM_MR) {
        const int nr = r1 - rb < GEMM_MR ? (int)(r1 - rb) : GEMM_MR;
        for (int64_t k0 = 0; k0 < n; k0 += GEMM_KC) {
            const int kc = n - k0 < GEMM_KC ? (int)(n - k0) : GEMM_KC;
            fill(w, rb, nr, k0, kc, panel); /* 16 KB: stays in L1 while every token passes */
            const int to_part = local && k0 + GEMM_KC < n; /* not the last chunk */
            for (int t0 = 0; t0 < n_tok; t0 += GEMM_NR) {
                const int nt = n_tok - t0 < GEMM_NR ? n_tok - t0 : GEMM_NR;
                float *o = out + (int64_t)t0 * os + rb, *p = part + (int64_t)t0 * GEMM_MR;
                gemm_tile(nt, panel, x + (int64_t)t0 * xs + k0, xs, kc, to_part ? p : o, to_part ? GEMM_MR : os,
                          local ? p : o, local ? GEMM_MR : os, nr, k0 > 0);
            }
        }
    }
}

#endif /* QWEN3C_GEMM_AVX2_H */
