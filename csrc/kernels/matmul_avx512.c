/*
 * matmul_avx512.c -- the float32-activation matmul for AVX-512 CPUs: hand-written dot
 * products and panel dequantization for every supported weight type, and a 4-row x 6-token
 * register-tiled micro-kernel of 16-lane FMAs (matmul_common.h has the loops). Decode reads
 * float rows two at a time, one from each half of a thread's range (two sequential streams).
 * Values dequantized here may differ from the reference (quant.c) by 1 ulp where a fused
 * multiply-add replaces a product and a sum (Q4_1, Q5_1, K-quants).
 */
#include "avx512_common.h"
#include "gemm_avx512.h"
#include "matmul_common.h"

#define QK 32      /* elements per block of the 32-element formats */
#define QK_K 256   /* elements per super-block of the K-quants */

/* ---------------------------------------------------------------------------------------
 * Building blocks
 * ------------------------------------------------------------------------------------- */
/* 16 consecutive weights of a 32-element block as floats, low (j < 16) or high half. */
static inline __m512 q8_half(const uint8_t *qs) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)qs)));
}

/* The 16 packed bytes of a 4-bit block as 16 int32 lanes (nibbles not yet split). */
static inline __m512i nib_bytes(const uint8_t *qs) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
}

static inline __m512 load_f16x16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 load_bf16x16(const uint8_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

/* 5-bit quants of a Q5 block: nibbles | the 32 qh bits as bit 4. */
static inline void q5_split(const uint8_t *qs, uint32_t qh, __m512i *lo, __m512i *hi) {
    const __m512i v = nib_bytes(qs), m15 = _mm512_set1_epi32(15), b16 = _mm512_set1_epi32(16);
    *lo = _mm512_mask_or_epi32(_mm512_and_si512(v, m15), (__mmask16)(qh & 0xffff),
                               _mm512_and_si512(v, m15), b16);
    *hi = _mm512_mask_or_epi32(_mm512_srli_epi32(v, 4), (__mmask16)(qh >> 16),
                               _mm512_srli_epi32(v, 4), b16);
}

/* ---------------------------------------------------------------------------------------
 * Decode: dot(row, x) over n elements, one kernel per type
 * ------------------------------------------------------------------------------------- */
static float vec_dot_f32(const uint8_t *row, const float *x, int64_t n) {
    const float *w = (const float *)(const void *)row;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float vec_dot_f16(const uint8_t *row, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(load_f16x16(row + 2 * i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load_f16x16(row + 2 * i + 32), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(load_f16x16(row + 2 * i + 64), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(load_f16x16(row + 2 * i + 96), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(load_f16x16(row + 2 * i), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 w = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
        a1 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float vec_dot_bf16(const uint8_t *row, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i + 32), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i + 64), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i + 96), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * i));
        __m512 w = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        a1 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Two rows of a float type at once (dot(ra, x) -> *oa, dot(rb, x) -> *ob), each summed exactly
 * as vec_dot_f32 / _f16 / _bf16 sum one row (so the results are bit-identical), sharing the
 * loads of x. Decode reads rows from the two halves of its range with it: two long sequential
 * streams per thread, which keep more cache lines in flight than one. */
static inline __attribute__((always_inline)) __m512 load_float16(int type, const uint8_t *p) {
    return type == QWEN3C_TYPE_F32 ? _mm512_loadu_ps((const float *)(const void *)p)
         : type == QWEN3C_TYPE_F16 ? load_f16x16(p) : load_bf16x16(p);
}

static inline __attribute__((always_inline)) __m512 load_float16_masked(int type, const uint8_t *p,
                                                                        __mmask16 m) {
    if (type == QWEN3C_TYPE_F32) return _mm512_maskz_loadu_ps(m, p);
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (type == QWEN3C_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __attribute__((always_inline)) void
vec_dot2_float(const int type, const uint8_t *ra, const uint8_t *rb, const float *x, int64_t n,
               float *oa, float *ob) {
    const int es = type == QWEN3C_TYPE_F32 ? 4 : 2; /* bytes per element */
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
        const __m512 x2 = _mm512_loadu_ps(x + i + 32), x3 = _mm512_loadu_ps(x + i + 48);
        a0 = _mm512_fmadd_ps(load_float16(type, ra + es * i), x0, a0);
        b0 = _mm512_fmadd_ps(load_float16(type, rb + es * i), x0, b0);
        a1 = _mm512_fmadd_ps(load_float16(type, ra + es * (i + 16)), x1, a1);
        b1 = _mm512_fmadd_ps(load_float16(type, rb + es * (i + 16)), x1, b1);
        a2 = _mm512_fmadd_ps(load_float16(type, ra + es * (i + 32)), x2, a2);
        b2 = _mm512_fmadd_ps(load_float16(type, rb + es * (i + 32)), x2, b2);
        a3 = _mm512_fmadd_ps(load_float16(type, ra + es * (i + 48)), x3, a3);
        b3 = _mm512_fmadd_ps(load_float16(type, rb + es * (i + 48)), x3, b3);
    }
    for (; i + 16 <= n; i += 16) {
        const __m512 x0 = _mm512_loadu_ps(x + i);
        a0 = _mm512_fmadd_ps(load_float16(type, ra + es * i), x0, a0);
        b0 = _mm512_fmadd_ps(load_float16(type, rb + es * i), x0, b0);
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 x0 = _mm512_maskz_loadu_ps(m, x + i);
        a1 = _mm512_fmadd_ps(load_float16_masked(type, ra + es * i, m), x0, a1);
        b1 = _mm512_fmadd_ps(load_float16_masked(type, rb + es * i, m), x0, b1);
    }
    *oa = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    *ob = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)));
}

/* The f16 scales of up to 64 blocks of a row, converted once (the kernels then broadcast
 * them straight from memory). */
#define SCALE_CHUNK 64
static inline int row_scales(const uint8_t *p, int ts, int64_t nb, float *ds) {
    int k = nb < SCALE_CHUNK ? (int)nb : SCALE_CHUNK;
    for (int j = 0; j < k; j++) ds[j] = fp16_to_fp32(read_u16(p + (int64_t)j * ts));
    return k;
}

/* Q8_0: per block, s = sum(q * x) in 16 lanes, then acc += d * s (d factored out). */
static float vec_dot_q8_0(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    float ds[SCALE_CHUNK];
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t b0 = 0; b0 < nb; b0 += SCALE_CHUNK) {
        const int k = row_scales(row + b0 * 34, 34, nb - b0, ds);
        int j = 0;
        for (; j + 2 <= k; j += 2) {
            const uint8_t *p = row + (b0 + j) * 34;
            const float *xb = x + (b0 + j) * QK;
            __m512 s0 = _mm512_mul_ps(q8_half(p + 2), _mm512_loadu_ps(xb));
            __m512 s1 = _mm512_mul_ps(q8_half(p + 36), _mm512_loadu_ps(xb + 32));
            s0 = _mm512_fmadd_ps(q8_half(p + 18), _mm512_loadu_ps(xb + 16), s0);
            s1 = _mm512_fmadd_ps(q8_half(p + 52), _mm512_loadu_ps(xb + 48), s1);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j]), s0, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j + 1]), s1, a1);
        }
        if (j < k) {
            const uint8_t *p = row + (b0 + j) * 34;
            const float *xb = x + (b0 + j) * QK;
            __m512 s0 = _mm512_mul_ps(q8_half(p + 2), _mm512_loadu_ps(xb));
            s0 = _mm512_fmadd_ps(q8_half(p + 18), _mm512_loadu_ps(xb + 16), s0);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j]), s0, a0);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* Nibble -> float by table lookup: vpermps uses only the low 4 bits of each index lane, so
 * the low nibble needs no mask and neither needs an int -> float conversion. */
static inline __m512 nib_table(int offset) {
    return _mm512_add_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_ps((float)offset));
}

/* Q4_0: sum(d (q - 8) x) = d sum((q - 8) x), q - 8 looked up as floats; two blocks per
 * step for two independent accumulation chains. */
static inline __m512 q4_0_block_dot(const uint8_t *qs, const float *xb, __m512 tab) {
    __m512i v = nib_bytes(qs);
    __m512 lo = _mm512_permutexvar_ps(v, tab);
    __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab);
    return _mm512_fmadd_ps(hi, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(xb)));
}

static float vec_dot_q4_0(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    const __m512 tab = nib_table(-8);
    float ds[SCALE_CHUNK];
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t b0 = 0; b0 < nb; b0 += SCALE_CHUNK) {
        const int k = row_scales(row + b0 * 18, 18, nb - b0, ds);
        const uint8_t *p = row + b0 * 18;
        const float *xb = x + b0 * QK;
        int j = 0;
        for (; j + 2 <= k; j += 2) {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j]), q4_0_block_dot(p + j * 18 + 2, xb + j * QK, tab), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j + 1]),
                                 q4_0_block_dot(p + j * 18 + 20, xb + j * QK + QK, tab), a1);
        }
        if (j < k)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j]), q4_0_block_dot(p + j * 18 + 2, xb + j * QK, tab), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* Q4_1: sum((d q + m) x) = d sum(q x) + m sum(x). */
static float vec_dot_q4_1(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    const __m512 tab = nib_table(0);
    __m512 ad = _mm512_setzero_ps(), am = ad;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = row + b * 20;
        const float *xb = x + b * QK;
        __m512i v = nib_bytes(p + 4);
        __m512 lo = _mm512_permutexvar_ps(v, tab);
        __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab);
        __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        __m512 s = _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
        ad = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p))), s, ad);
        am = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p + 2))),
                             _mm512_add_ps(x0, x1), am);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(ad, am));
}

static float vec_dot_q5_0(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    const __m512i k16 = _mm512_set1_epi32(16);
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = row + b * 22;
        const float *xb = x + b * QK;
        __m512i lo, hi;
        q5_split(p + 6, read_u32le(p + 2), &lo, &hi);
        __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(lo, k16)), _mm512_loadu_ps(xb));
        s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(hi, k16)), _mm512_loadu_ps(xb + 16), s);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p))), s, a0);
    }
    return _mm512_reduce_add_ps(a0);
}

static float vec_dot_q5_1(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    __m512 ad = _mm512_setzero_ps(), am = ad;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = row + b * 24;
        const float *xb = x + b * QK;
        __m512i lo, hi;
        q5_split(p + 8, read_u32le(p + 4), &lo, &hi);
        __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        __m512 s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), x1,
                                   _mm512_mul_ps(_mm512_cvtepi32_ps(lo), x0));
        ad = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p))), s, ad);
        am = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p + 2))),
                             _mm512_add_ps(x0, x1), am);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(ad, am));
}
/* K-quants, one 256-element super-block -> 256 floats (FMA-rounded: may differ from the
 * reference by 1 ulp). */
static void dqk_q4_k(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b)), dmin = fp16_to_fp32(read_u16(b + 2));
    const uint8_t *scales = b + 4, *qs = b + 16;
    const __m512i m15 = _mm512_set1_epi32(15);
    for (int c = 0; c < 4; c++) {
        int sc0, mn0, sc1, mn1;
        k_scale_min(2 * c, scales, &sc0, &mn0);
        k_scale_min(2 * c + 1, scales, &sc1, &mn1);
        const __m512 d0 = _mm512_set1_ps(d * (float)sc0), m0 = _mm512_set1_ps(dmin * (float)mn0);
        const __m512 d1 = _mm512_set1_ps(d * (float)sc1), m1 = _mm512_set1_ps(dmin * (float)mn1);
        for (int h = 0; h < 2; h++) {
            __m512i v = nib_bytes(qs + 32 * c + 16 * h);
            _mm512_storeu_ps(y + 64 * c + 16 * h,
                             _mm512_fmsub_ps(d0, _mm512_cvtepi32_ps(_mm512_and_si512(v, m15)), m0));
            _mm512_storeu_ps(y + 64 * c + 32 + 16 * h,
                             _mm512_fmsub_ps(d1, _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), m1));
        }
    }
}

static void dqk_q5_k(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b)), dmin = fp16_to_fp32(read_u16(b + 2));
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    const __m512i m15 = _mm512_set1_epi32(15), b16 = _mm512_set1_epi32(16);
    for (int c = 0; c < 4; c++) {
        int sc0, mn0, sc1, mn1;
        k_scale_min(2 * c, scales, &sc0, &mn0);
        k_scale_min(2 * c + 1, scales, &sc1, &mn1);
        const __m512 d0 = _mm512_set1_ps(d * (float)sc0), m0 = _mm512_set1_ps(dmin * (float)mn0);
        const __m512 d1 = _mm512_set1_ps(d * (float)sc1), m1 = _mm512_set1_ps(dmin * (float)mn1);
        const __m512i bit0 = _mm512_set1_epi32(1 << (2 * c)), bit1 = _mm512_set1_epi32(2 << (2 * c));
        for (int h = 0; h < 2; h++) {
            __m512i v = nib_bytes(qs + 32 * c + 16 * h), hb = nib_bytes(qh + 16 * h);
            __m512i lo = _mm512_and_si512(v, m15), hi = _mm512_srli_epi32(v, 4);
            lo = _mm512_mask_or_epi32(lo, _mm512_test_epi32_mask(hb, bit0), lo, b16);
            hi = _mm512_mask_or_epi32(hi, _mm512_test_epi32_mask(hb, bit1), hi, b16);
            _mm512_storeu_ps(y + 64 * c + 16 * h, _mm512_fmsub_ps(d0, _mm512_cvtepi32_ps(lo), m0));
            _mm512_storeu_ps(y + 64 * c + 32 + 16 * h, _mm512_fmsub_ps(d1, _mm512_cvtepi32_ps(hi), m1));
        }
    }
}

static void dqk_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = fp16_to_fp32(read_u16(b + 208));
    const __m512i m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3), k32 = _mm512_set1_epi32(32);
    for (int h = 0; h < 2; h++) {
        for (int l0 = 0; l0 < 32; l0 += 16) {
            __m512i a = nib_bytes(ql + 64 * h + l0), bb = nib_bytes(ql + 64 * h + 32 + l0);
            __m512i hq = nib_bytes(qh + 32 * h + l0);
            __m512i q[4];
            q[0] = _mm512_or_si512(_mm512_and_si512(a, m15), _mm512_slli_epi32(_mm512_and_si512(hq, m3), 4));
            q[1] = _mm512_or_si512(_mm512_and_si512(bb, m15),
                                   _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hq, 2), m3), 4));
            q[2] = _mm512_or_si512(_mm512_srli_epi32(a, 4),
                                   _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hq, 4), m3), 4));
            q[3] = _mm512_or_si512(_mm512_srli_epi32(bb, 4), _mm512_slli_epi32(_mm512_srli_epi32(hq, 6), 4));
            for (int g = 0; g < 4; g++) {
                const int e = 128 * h + 32 * g + l0;  /* first element of these 16 */
                __m512 ds = _mm512_set1_ps(d * (float)sc[e / 16]);
                _mm512_storeu_ps(y + e, _mm512_mul_ps(ds, _mm512_cvtepi32_ps(_mm512_sub_epi32(q[g], k32))));
            }
        }
    }
}

/* The 8 sub-block scales d*sc and mins dmin*mn of a Q4_K / Q5_K super-block. */
static inline void k_scales(const uint8_t *b, float *dsc, float *dmn) {
    const float d = fp16_to_fp32(read_u16(b)), dmin = fp16_to_fp32(read_u16(b + 2));
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        k_scale_min(j, b + 4, &sc, &mn);
        dsc[j] = d * (float)sc;
        dmn[j] = dmin * (float)mn;
    }
}

/* Q4_K decode, fused: per sub-block j, acc += (d sc_j) sum(q x) and accm += (dmin mn_j) sum(x). */
static float vec_dot_q4_k(const uint8_t *row, const float *x, int64_t n) {
    const __m512 tab = nib_table(0);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, am = a0;
    float dsc[8], dmn[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *p = row + b * 144, *qs = p + 16;
        const float *xb = x + b * QK_K;
        k_scales(p, dsc, dmn);
        for (int c = 0; c < 4; c++) {
            const __m512i v0 = nib_bytes(qs + 32 * c), v1 = nib_bytes(qs + 32 * c + 16);
            const float *xc = xb + 64 * c;
            const __m512 x0 = _mm512_loadu_ps(xc), x1 = _mm512_loadu_ps(xc + 16);
            const __m512 x2 = _mm512_loadu_ps(xc + 32), x3 = _mm512_loadu_ps(xc + 48);
            __m512 s0 = _mm512_mul_ps(_mm512_permutexvar_ps(v0, tab), x0);
            __m512 s1 = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v0, 4), tab), x2);
            s0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(v1, tab), x1, s0);
            s1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v1, 4), tab), x3, s1);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c]), s0, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c + 1]), s1, a1);
            am = _mm512_fmadd_ps(_mm512_set1_ps(dmn[2 * c]), _mm512_add_ps(x0, x1), am);
            am = _mm512_fmadd_ps(_mm512_set1_ps(dmn[2 * c + 1]), _mm512_add_ps(x2, x3), am);
        }
    }
    return _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(a0, a1), am));
}

/* Q5_K decode, fused like Q4_K; bit 4 of each quant comes from qh. */
static float vec_dot_q5_k(const uint8_t *row, const float *x, int64_t n) {
    const __m512 tab = nib_table(0), k16 = _mm512_set1_ps(16.0f);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, am = a0;
    float dsc[8], dmn[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *p = row + b * 176, *qs = p + 48;
        const float *xb = x + b * QK_K;
        const __m512i h0 = nib_bytes(p + 16), h1 = nib_bytes(p + 32);
        k_scales(p, dsc, dmn);
        for (int c = 0; c < 4; c++) {
            const __m512i v0 = nib_bytes(qs + 32 * c), v1 = nib_bytes(qs + 32 * c + 16);
            const __m512i bl = _mm512_set1_epi32(1 << (2 * c)), bh = _mm512_set1_epi32(2 << (2 * c));
            const float *xc = xb + 64 * c;
            const __m512 x0 = _mm512_loadu_ps(xc), x1 = _mm512_loadu_ps(xc + 16);
            const __m512 x2 = _mm512_loadu_ps(xc + 32), x3 = _mm512_loadu_ps(xc + 48);
            __m512 q0 = _mm512_permutexvar_ps(v0, tab), q1 = _mm512_permutexvar_ps(v1, tab);
            __m512 q2 = _mm512_permutexvar_ps(_mm512_srli_epi32(v0, 4), tab);
            __m512 q3 = _mm512_permutexvar_ps(_mm512_srli_epi32(v1, 4), tab);
            q0 = _mm512_mask_add_ps(q0, _mm512_test_epi32_mask(h0, bl), q0, k16);
            q1 = _mm512_mask_add_ps(q1, _mm512_test_epi32_mask(h1, bl), q1, k16);
            q2 = _mm512_mask_add_ps(q2, _mm512_test_epi32_mask(h0, bh), q2, k16);
            q3 = _mm512_mask_add_ps(q3, _mm512_test_epi32_mask(h1, bh), q3, k16);
            __m512 s0 = _mm512_fmadd_ps(q1, x1, _mm512_mul_ps(q0, x0));
            __m512 s1 = _mm512_fmadd_ps(q3, x3, _mm512_mul_ps(q2, x2));
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c]), s0, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c + 1]), s1, a1);
            am = _mm512_fmadd_ps(_mm512_set1_ps(dmn[2 * c]), _mm512_add_ps(x0, x1), am);
            am = _mm512_fmadd_ps(_mm512_set1_ps(dmn[2 * c + 1]), _mm512_add_ps(x2, x3), am);
        }
    }
    return _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(a0, a1), am));
}

/* Q6_K decode, fused: per 16 elements, acc += (d sc) sum((q - 32) x). */
static float vec_dot_q6_k(const uint8_t *row, const float *x, int64_t n) {
    const __m512i m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3), k32 = _mm512_set1_epi32(32);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    _Alignas(64) float ds[16];
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *p = row + b * 210;
        const float *xb = x + b * QK_K;
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 192))));
        _mm512_store_ps(ds, _mm512_mul_ps(sc, _mm512_set1_ps(fp16_to_fp32(read_u16(p + 208)))));
        for (int h = 0; h < 2; h++) {
            for (int l0 = 0; l0 < 32; l0 += 16) {
                const __m512i a = nib_bytes(p + 64 * h + l0), bb = nib_bytes(p + 64 * h + 32 + l0);
                const __m512i hq = nib_bytes(p + 128 + 32 * h + l0);
                __m512i q[4];
                q[0] = _mm512_or_si512(_mm512_and_si512(a, m15), _mm512_slli_epi32(_mm512_and_si512(hq, m3), 4));
                q[1] = _mm512_or_si512(_mm512_and_si512(bb, m15),
                                       _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hq, 2), m3), 4));
                q[2] = _mm512_or_si512(_mm512_srli_epi32(a, 4),
                                       _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hq, 4), m3), 4));
                q[3] = _mm512_or_si512(_mm512_srli_epi32(bb, 4), _mm512_slli_epi32(_mm512_srli_epi32(hq, 6), 4));
                for (int g = 0; g < 4; g++) {
                    const int e = 128 * h + 32 * g + l0;  /* first element of these 16 */
                    __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q[g], k32)),
                                             _mm512_loadu_ps(xb + e));
                    if (g & 1) a1 = _mm512_fmadd_ps(_mm512_set1_ps(ds[e / 16]), s, a1);
                    else       a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[e / 16]), s, a0);
                }
            }
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}


static float dot_f32(const float *a, const float *b, int64_t n) {
    return vec_dot_f32((const uint8_t *)(const void *)a, b, n);
}

static float vec_dot(int type, const uint8_t *row, const float *x, int64_t n) {
    switch (type) {
    case QWEN3C_TYPE_F32:  return vec_dot_f32(row, x, n);
    case QWEN3C_TYPE_F16:  return vec_dot_f16(row, x, n);
    case QWEN3C_TYPE_BF16: return vec_dot_bf16(row, x, n);
    case QWEN3C_TYPE_Q8_0: return vec_dot_q8_0(row, x, n);
    case QWEN3C_TYPE_Q4_0: return vec_dot_q4_0(row, x, n);
    case QWEN3C_TYPE_Q4_1: return vec_dot_q4_1(row, x, n);
    case QWEN3C_TYPE_Q5_0: return vec_dot_q5_0(row, x, n);
    case QWEN3C_TYPE_Q5_1: return vec_dot_q5_1(row, x, n);
    case QWEN3C_TYPE_Q4_K: return vec_dot_q4_k(row, x, n);
    case QWEN3C_TYPE_Q5_K: return vec_dot_q5_k(row, x, n);
    case QWEN3C_TYPE_Q6_K: return vec_dot_q6_k(row, x, n);
    default:               return vec_dot_dequantized(type, row, x, n, dequant_reference, dot_f32); /* Q2_K, Q3_K */
    }
}

/* ---------------------------------------------------------------------------------------
 * Prefill: panel dequantization + register-blocked micro-kernel
 * ------------------------------------------------------------------------------------- */
/* Dequantize n elements (whole blocks) for computing: like dequantize_row, but free to fuse
 * multiply-adds (values may differ from the reference by 1 ulp for Q4_1/Q5_1/K-quants). */
static void dequantize_fast(int type, const uint8_t *src, float *dst, int64_t n) {
    switch (type) {
    case QWEN3C_TYPE_F16:
        if (n % 16 == 0) {
            for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(dst + i, load_f16x16(src + 2 * i));
            return;
        }
        break;
    case QWEN3C_TYPE_BF16:
        if (n % 16 == 0) {
            for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(dst + i, load_bf16x16(src + 2 * i));
            return;
        }
        break;
    case QWEN3C_TYPE_Q8_0:
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 34;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            _mm512_storeu_ps(dst + b * QK, _mm512_mul_ps(q8_half(p + 2), d));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_mul_ps(q8_half(p + 18), d));
        }
        return;
    case QWEN3C_TYPE_Q4_0: {
        const __m512i m15 = _mm512_set1_epi32(15), k8 = _mm512_set1_epi32(8);
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 18;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            __m512i v = nib_bytes(p + 2);
            __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, m15), k8));
            __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), k8));
            _mm512_storeu_ps(dst + b * QK, _mm512_mul_ps(d, lo));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_mul_ps(d, hi));
        }
        return;
    }
    case QWEN3C_TYPE_Q4_1: {
        const __m512i m15 = _mm512_set1_epi32(15);
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 20;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            __m512 m = _mm512_set1_ps(fp16_to_fp32(read_u16(p + 2)));
            __m512i v = nib_bytes(p + 4);
            __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, m15));
            __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
            _mm512_storeu_ps(dst + b * QK, _mm512_fmadd_ps(d, lo, m));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_fmadd_ps(d, hi, m));
        }
        return;
    }
    case QWEN3C_TYPE_Q5_0: {
        const __m512i k16 = _mm512_set1_epi32(16);
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 22;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            __m512i lo, hi;
            q5_split(p + 6, read_u32le(p + 2), &lo, &hi);
            _mm512_storeu_ps(dst + b * QK, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, k16))));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, k16))));
        }
        return;
    }
    case QWEN3C_TYPE_Q5_1:
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 24;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            __m512 m = _mm512_set1_ps(fp16_to_fp32(read_u16(p + 2)));
            __m512i lo, hi;
            q5_split(p + 8, read_u32le(p + 4), &lo, &hi);
            _mm512_storeu_ps(dst + b * QK, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lo), m));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(hi), m));
        }
        return;
    case QWEN3C_TYPE_Q4_K:
        for (int64_t b = 0; b < n / QK_K; b++) dqk_q4_k(src + b * 144, dst + b * QK_K);
        return;
    case QWEN3C_TYPE_Q5_K:
        for (int64_t b = 0; b < n / QK_K; b++) dqk_q5_k(src + b * 176, dst + b * QK_K);
        return;
    case QWEN3C_TYPE_Q6_K:
        for (int64_t b = 0; b < n / QK_K; b++) dqk_q6_k(src + b * 210, dst + b * QK_K);
        return;
    default:
        break;
    }
    dequantize_row(type, src, dst, n);
}

/* A GEMM micro-panel (gemm_avx512.h) of rows [row0, row0 + nr) x columns [k0, k0 + kc) as
 * stored in the file: each half's 16 rows dequantized (dequantize_fast) into an L1 buffer,
 * then transposed 16 x 16 at a time. */
static void fill_rows(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    if (!panel) return; /* (no prefetch hint: these rows are read as sequential streams) */
    _Alignas(64) float rows[16 * GEMM_KC];
    const int bs = qwen3c_type_block_size(w->type);
    const size_t off = (size_t)(k0 / bs) * (size_t)qwen3c_type_row_size(w->type, bs);
    for (int h = 0; h < 2; h++) {
        const int m = nr - 16 * h < 0 ? 0 : nr - 16 * h > 16 ? 16 : nr - 16 * h;
        for (int i = 0; i < m; i++)
            dequantize_fast(w->type, (const uint8_t *)w->data + (row0 + 16 * h + i) * w->row_bytes + off,
                            rows + i * GEMM_KC, kc);
        gemm_put_half(panel, h, rows, GEMM_KC, m, kc);
    }
}

/* two float rows at once (matmul_decode) */
static void vec_dot2(int type, const uint8_t *ra, const uint8_t *rb, const float *x, int64_t n, float *oa,
                     float *ob) {
    if (type == QWEN3C_TYPE_F32) vec_dot2_float(QWEN3C_TYPE_F32, ra, rb, x, n, oa, ob);
    else if (type == QWEN3C_TYPE_F16) vec_dot2_float(QWEN3C_TYPE_F16, ra, rb, x, n, oa, ob);
    else vec_dot2_float(QWEN3C_TYPE_BF16, ra, rb, x, n, oa, ob);
}

static void rows(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    if (n_tok > 1) gemm_rows(out, out_stride, x, w->cols, n_tok, w, r0, r1, fill_rows);
    else matmul_decode(out, x, w, r0, r1, vec_dot, vec_dot2); /* memory-bound */
}

const MatmulKernels matmul_kernels_avx512 = {rows};
