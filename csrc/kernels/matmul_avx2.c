/*
 * matmul_avx2.c -- the float32-activation matmul for AVX2 + FMA + F16C CPUs (most x86-64
 * laptops): hand-written dot products for F32 / F16 / BF16 / Q8_0 / Q4_0 / Q4_1 rows and an
 * 8-lane register-tiled micro-kernel; Q5_0 / Q5_1 / K-quants are dequantized exactly (quant.c)
 * and then use the same float kernels. The loops are matmul_common.h's.
 */
#include <immintrin.h>

#include "matmul_common.h"

#define QK 32  /* elements per block of the 32-element formats */

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline __m256 load_f16x8(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16x8(const uint8_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* 8 bytes -> 8 int32 lanes (sign- or zero-extended) */
static inline __m256i s8x8(const uint8_t *p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
}
static inline __m256i u8x8(const uint8_t *p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

static float vec_dot_f32_avx2(const uint8_t *row, const float *x, int64_t n) {
    const float *w = (const float *)(const void *)row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float vec_dot_f16_avx2(const uint8_t *row, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_f16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(row + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += fp16_to_fp32(read_u16(row + 2 * i)) * x[i];
    return s;
}

static float vec_dot_bf16_avx2(const uint8_t *row, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_bf16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(row + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += bf16_to_fp32(read_u16(row + 2 * i)) * x[i];
    return s;
}

static float vec_dot_q8_0_avx2(const uint8_t *row, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK; b++) {
        const uint8_t *p = row + b * 34;
        const float *xb = x + b * QK;
        __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(s8x8(p + 2)), _mm256_loadu_ps(xb));
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s8x8(p + 10)), _mm256_loadu_ps(xb + 8), s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s8x8(p + 18)), _mm256_loadu_ps(xb + 16), s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s8x8(p + 26)), _mm256_loadu_ps(xb + 24), s);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(read_u16(p))), s, a0);
    }
    return hsum256(a0);
}

/* Q4_0 / Q4_1 (q_off = -8 / 0; has_min for Q4_1): bytes j and j + 8 of qs as two 8-lane
 * halves; low nibbles are elements 0..15, high nibbles 16..31. */
static inline float vec_dot_q4_avx2(const uint8_t *row, const float *x, int64_t n, int ts,
                                    int q_off, int has_min) {
    const __m256i m15 = _mm256_set1_epi32(15), off = _mm256_set1_epi32(q_off);
    __m256 ad = _mm256_setzero_ps(), am = ad;
    for (int64_t b = 0; b < n / QK; b++) {
        const uint8_t *p = row + b * ts, *qs = p + (has_min ? 4 : 2);
        const float *xb = x + b * QK;
        const __m256i v0 = u8x8(qs), v1 = u8x8(qs + 8);
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
        const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
        __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_and_si256(v0, m15), off)), x0);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_and_si256(v1, m15), off)), x1, s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_srli_epi32(v0, 4), off)), x2, s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_srli_epi32(v1, 4), off)), x3, s);
        ad = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(read_u16(p))), s, ad);
        if (has_min)
            am = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(read_u16(p + 2))),
                                 _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)), am);
    }
    return hsum256(_mm256_add_ps(ad, am));
}

static float dot_f32(const float *a, const float *b, int64_t n) {
    return vec_dot_f32_avx2((const uint8_t *)(const void *)a, b, n);
}

static float vec_dot(int type, const uint8_t *row, const float *x, int64_t n) {
    switch (type) {
    case QWEN3C_TYPE_F32:  return vec_dot_f32_avx2(row, x, n);
    case QWEN3C_TYPE_F16:  return vec_dot_f16_avx2(row, x, n);
    case QWEN3C_TYPE_BF16: return vec_dot_bf16_avx2(row, x, n);
    case QWEN3C_TYPE_Q8_0: return vec_dot_q8_0_avx2(row, x, n);
    case QWEN3C_TYPE_Q4_0: return vec_dot_q4_avx2(row, x, n, 18, -8, 0);
    case QWEN3C_TYPE_Q4_1: return vec_dot_q4_avx2(row, x, n, 20, 0, 1);
    default:               return vec_dot_dequantized(type, row, x, n, dequant_reference, dot_f32);
    }
}

/* AVX2 micro-kernel: 4 rows x 2 tokens = 8 accumulators of 8 lanes (16 ymm registers). */
static inline __attribute__((always_inline)) void
tile_kernel2(const int NR, const int NT, const float *tile, const float *x, int64_t xs, int64_t k,
             float *part) {
    __m256 acc[TILE_R][2];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 w[TILE_R];
        for (int r = 0; r < NR; r++) w[r] = _mm256_load_ps(tile + r * TILE_K + i);
        for (int t = 0; t < NT; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * xs + i);
            __asm__("" : "+x"(xv));  /* one load of x, not one per row */
            for (int r = 0; r < NR; r++) acc[r][t] = _mm256_fmadd_ps(w[r], xv, acc[r][t]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) {
            float s = hsum256(acc[r][t]);
            for (int64_t j = i; j < k; j++) s += tile[r * TILE_K + j] * x[t * xs + j];
            part[t * TILE_R + r] = s;
        }
}

static void tile_dispatch(int nr, int nt, const float *tile, const float *x, int64_t xs,
                          int64_t k, float *part) {
    for (int t = 0; t < nt; t += 2) {
        const int n2 = nt - t < 2 ? nt - t : 2;
        if (nr == TILE_R) {
            if (n2 == 2) tile_kernel2(4, 2, tile, x + t * xs, xs, k, part + t * TILE_R);
            else         tile_kernel2(4, 1, tile, x + t * xs, xs, k, part + t * TILE_R);
        } else {
            for (int r = 0; r < nr; r++) {
                float p1[2 * TILE_R] = {0};
                if (n2 == 2) tile_kernel2(1, 2, tile + r * TILE_K, x + t * xs, xs, k, p1);
                else         tile_kernel2(1, 1, tile + r * TILE_K, x + t * xs, xs, k, p1);
                for (int j = 0; j < n2; j++) part[(t + j) * TILE_R + r] = p1[j * TILE_R];
            }
        }
    }
}

static void rows(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    matmul_rows_with(out, out_stride, x, n_tok, w, r0, r1, vec_dot, dequant_reference, tile_dispatch);
}

const MatmulKernels TIER_TABLE(matmul_kernels) = {rows};
