/*
 * matmul_avx2.c -- the float32-activation matmul for AVX2 + FMA + F16C CPUs (most x86-64
 * laptops): decode, hand-written dot products for F32 / F16 / BF16 / Q8_0 / Q4_0 / Q4_1 rows
 * (Q5_0 / Q5_1 / K-quants dequantized exactly (quant.c) into L1, then the float one); prefill,
 * gemm_avx2.h's GEMM over micro-panels of every type, dequantized the same way.
 */
#include <immintrin.h>

#include "gemm_avx2.h"
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

/* A GEMM micro-panel (gemm_avx2.h) of rows [row0, row0 + nr) x columns [k0, k0 + kc) as stored
 * in the file: each half's 8 rows converted (F16 / BF16) or dequantized (quant.c) into an L1
 * buffer, then transposed 8 x 8 at a time; F32 rows straight from the file. */
static void fill_rows(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    _Alignas(32) float rows[8 * GEMM_KC];
    const int type = w->type, bs = qwen3c_type_block_size(type);
    const size_t off = (size_t)(k0 / bs) * (size_t)qwen3c_type_row_size(type, bs);
    for (int h = 0; h < 2; h++) {
        const int m = nr - 8 * h < 0 ? 0 : nr - 8 * h > 8 ? 8 : nr - 8 * h;
        const uint8_t *src = (const uint8_t *)w->data + (row0 + 8 * h) * w->row_bytes + off;
        if (type == QWEN3C_TYPE_F32) {
            gemm_put_half(panel, h, (const float *)(const void *)src, w->row_bytes / 4, m, kc);
            continue;
        }
        for (int i = 0; i < m; i++) {
            const uint8_t *p = src + i * w->row_bytes;
            float *y = rows + i * GEMM_KC;
            int k = 0;
            if (type == QWEN3C_TYPE_F16)
                for (; k + 8 <= kc; k += 8) _mm256_store_ps(y + k, load_f16x8(p + 2 * k));
            else if (type == QWEN3C_TYPE_BF16)
                for (; k + 8 <= kc; k += 8) _mm256_store_ps(y + k, load_bf16x8(p + 2 * k));
            if (k < kc) dequantize_row(type, p + (size_t)(k / bs) * (size_t)qwen3c_type_row_size(type, bs), y + k, kc - k);
        }
        gemm_put_half(panel, h, rows, GEMM_KC, m, kc);
    }
}

static void rows(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    if (n_tok > 1) {
        gemm_rows(out, out_stride, x, w->cols, n_tok, w, r0, r1, fill_rows);
        return;
    }
    const uint8_t *base = (const uint8_t *)w->data;
    for (int64_t r = r0; r < r1; r++) out[r] = vec_dot(w->type, base + r * w->row_bytes, x, w->cols);
}

const MatmulKernels TIER_TABLE(matmul_kernels) = {rows};
