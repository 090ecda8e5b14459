/*
 * matmul_neon.c -- the float32-activation matmul for arm64 NEON (every arm64 tier: kernels.h):
 * hand-written dot products for F32 / F16 / BF16 / Q8_0 / Q4_0 / Q4_1 rows, NEON panel
 * dequantization for every supported type (Q5_0 / Q5_1 and the K-quants Q4_K / Q5_K / Q6_K
 * included, whose decode dequantizes 512 elements into an L1 buffer and runs the F32 dot), and a
 * 4-row x 6-token register-tiled fmla micro-kernel (matmul_common.h has the loops). This is the
 * forward pass's path for F32 / F16 / BF16 / K-quant files on every arm64 tier, and for Q8_0 /
 * Q4_0 / Q4_1 on neon-nodot (without sdot, q24 runs as f32).
 *
 * Design for Apple M-series / Graviton (not measured here: this machine is x86-64, the arm64
 * build runs emulated under qemu, which says nothing about speed):
 *  - fmla latency is 3-4 cycles and M1..M4 / Neoverse V1 issue 4 per cycle (N1: 2), so a
 *    dependent chain needs 12-16 independent accumulators to keep the pipes full. The prefill
 *    micro-kernel holds 4 rows x 6 tokens = 24 accumulators (+ 4 weight vectors + 1 x vector
 *    = 29 of the 32 registers) and does 24 fmla per 10 loads: under the 3 (Apple) / 2 (Neoverse)
 *    128-bit loads per cycle, so it is fmla-bound, as a float GEMM should be. The 16 x 1024
 *    float panel (64 KB) stays in L1 on Apple cores (128 KB L1d) and in L2 elsewhere.
 *  - decode is memory-bound: 4 accumulators per row (16 floats per step), and float rows two at
 *    a time, one from each half of a thread's range (two sequential streams per core, the
 *    x86 tiers' choice too), each row summed exactly as the one-row kernel sums it.
 *  - block scales are converted with the hardware half -> float (fcvt), never by bit fiddling.
 * Values dequantized here may differ from the reference (quant.c) by 1 ulp where the compiler
 * fuses a product and a sum (Q4_1, Q5_1, K-quants), as on the x86 tiers.
 */
#include <math.h>

#include "matmul_common.h"
#include "neon_common.h"

#define QK 32      /* elements per block of the 32-element formats */
#define QK_K 256   /* elements per super-block of the K-quants */

/* ---------------------------------------------------------------------------------------
 * Building blocks
 * ------------------------------------------------------------------------------------- */
/* the f16 at p as a float (fp16_to_fp32 is fcvt on arm64) */
static inline float h2f(const uint8_t *p) { return fp16_to_fp32(read_u16(p)); }

/* 16 unsigned bytes -> four vectors of 4 floats (exact) */
static inline void u8x16_to_f32(uint8x16_t v, float32x4_t f[4]) {
    const uint16x8_t lo = vmovl_u8(vget_low_u8(v)), hi = vmovl_high_u8(v);
    f[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
    f[1] = vcvtq_f32_u32(vmovl_high_u16(lo));
    f[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
    f[3] = vcvtq_f32_u32(vmovl_high_u16(hi));
}

static inline float32x4_t sum4(const float32x4_t v[4]) {
    return vaddq_f32(vaddq_f32(v[0], v[1]), vaddq_f32(v[2], v[3]));
}

/* sum over 16 elements of w[k] * x[4k..4k+4), as two chains */
static inline float32x4_t dot16(const float32x4_t w[4], const float *x) {
    float32x4_t s0 = vmulq_f32(w[0], vld1q_f32(x)), s1 = vmulq_f32(w[1], vld1q_f32(x + 4));
    s0 = vfmaq_f32(s0, w[2], vld1q_f32(x + 8));
    s1 = vfmaq_f32(s1, w[3], vld1q_f32(x + 12));
    return vaddq_f32(s0, s1);
}

/* The nibbles of a 4-bit block's 16 bytes: low (elements 0..15) and high (16..31). */
static inline void nibbles(const uint8_t *qs, uint8x16_t *lo, uint8x16_t *hi) {
    const uint8x16_t raw = vld1q_u8(qs);
    *lo = vandq_u8(raw, vdupq_n_u8(0x0f));
    *hi = vshrq_n_u8(raw, 4);
}

/* The fifth bits of a Q5 block (bit j of qh is element j's) as 16 per half, valued 0 or 16. */
static inline void q5_bits(uint32_t qh, uint8x16_t *lo, uint8x16_t *hi) {
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t s = vld1q_u8(sel), b16 = vdupq_n_u8(16);
    const uint8x16_t b01 = vcombine_u8(vdup_n_u8((uint8_t)qh), vdup_n_u8((uint8_t)(qh >> 8)));
    const uint8x16_t b23 = vcombine_u8(vdup_n_u8((uint8_t)(qh >> 16)), vdup_n_u8((uint8_t)(qh >> 24)));
    *lo = vandq_u8(vtstq_u8(b01, s), b16);
    *hi = vandq_u8(vtstq_u8(b23, s), b16);
}

/* ---------------------------------------------------------------------------------------
 * Decode: dot(row, x) over n elements, one kernel per type
 * ------------------------------------------------------------------------------------- */
/* 16 elements of a float-type row at p as four vectors of 4 floats */
static inline __attribute__((always_inline)) void load_float16(const int type, const uint8_t *p, float32x4_t w[4]) {
    if (type == QWEN3C_TYPE_F32) {
        for (int k = 0; k < 4; k++) w[k] = neon_f32x4(p + 16 * k);
    } else if (type == QWEN3C_TYPE_F16) {
        neon_f16x8(p, &w[0], &w[1]);
        neon_f16x8(p + 16, &w[2], &w[3]);
    } else {
        neon_bf16x8(p, &w[0], &w[1]);
        neon_bf16x8(p + 16, &w[2], &w[3]);
    }
}

static inline __attribute__((always_inline)) float float_elem(const int type, const uint8_t *row, int64_t i) {
    if (type == QWEN3C_TYPE_F32) {
        float f;
        memcpy(&f, row + 4 * i, 4);
        return f;
    }
    return type == QWEN3C_TYPE_F16 ? h2f(row + 2 * i) : bf16_to_fp32(read_u16(row + 2 * i));
}

/* dot(ra, x) -> *oa and, when TWO, dot(rb, x) -> *ob sharing the loads of x: each row summed
 * exactly as alone (4 accumulators of 4 lanes, then the scalar tail with fmaf). */
static inline __attribute__((always_inline)) void
vec_dot_float(const int type, const int TWO, const uint8_t *ra, const uint8_t *rb, const float *x,
              int64_t n, float *oa, float *ob) {
    const int es = type == QWEN3C_TYPE_F32 ? 4 : 2; /* bytes per element */
    float32x4_t a[4], b[4];
    for (int k = 0; k < 4; k++) a[k] = b[k] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t xv[4], w[4];
        for (int k = 0; k < 4; k++) xv[k] = vld1q_f32(x + i + 4 * k);
        load_float16(type, ra + es * i, w);
        for (int k = 0; k < 4; k++) a[k] = vfmaq_f32(a[k], w[k], xv[k]);
        if (TWO) {
            load_float16(type, rb + es * i, w);
            for (int k = 0; k < 4; k++) b[k] = vfmaq_f32(b[k], w[k], xv[k]);
        }
    }
    float sa = vaddvq_f32(sum4(a)), sb = TWO ? vaddvq_f32(sum4(b)) : 0.0f;
    for (; i < n; i++) {
        sa = fmaf(float_elem(type, ra, i), x[i], sa);
        if (TWO) sb = fmaf(float_elem(type, rb, i), x[i], sb);
    }
    *oa = sa;
    if (TWO) *ob = sb;
}

static float dot_f32(const float *a, const float *b, int64_t n) {
    float s;
    vec_dot_float(QWEN3C_TYPE_F32, 0, (const uint8_t *)(const void *)a, NULL, b, n, &s, NULL);
    return s;
}

/* sum over one Q8_0 block of q x, in 4 lanes */
static inline float32x4_t q8_0_block_dot(const uint8_t *p, const float *xb) {
    float32x4_t w[4];
    neon_s8x16_to_f32(vld1q_s8((const int8_t *)p + 2), w);
    const float32x4_t s = dot16(w, xb);
    neon_s8x16_to_f32(vld1q_s8((const int8_t *)p + 18), w);
    return vaddq_f32(s, dot16(w, xb + 16));
}

/* Q8_0: per block s = sum(q x) in 4 lanes, then acc += d s (d factored out); two blocks per
 * step, for two accumulation chains. */
static float vec_dot_q8_0(const uint8_t *row, const float *x, int64_t n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
    int64_t b = 0;
    for (; b + 2 <= n / QK; b += 2) {
        a0 = vfmaq_n_f32(a0, q8_0_block_dot(row + b * 34, x + b * QK), h2f(row + b * 34));
        a1 = vfmaq_n_f32(a1, q8_0_block_dot(row + b * 34 + 34, x + b * QK + QK), h2f(row + b * 34 + 34));
    }
    if (b < n / QK) a0 = vfmaq_n_f32(a0, q8_0_block_dot(row + b * 34, x + b * QK), h2f(row + b * 34));
    return vaddvq_f32(vaddq_f32(a0, a1));
}

/* Q4_0 / Q4_1 (has_min): sum((d q' + m) x) = d sum(q' x) + m sum(x), q' = q - 8 for Q4_0. */
static inline __attribute__((always_inline)) float
vec_dot_q4(const int has_min, const uint8_t *row, const float *x, int64_t n) {
    const int ts = has_min ? 20 : 18;
    float32x4_t ad = vdupq_n_f32(0.0f), am = ad;
    for (int64_t b = 0; b < n / QK; b++) {
        const uint8_t *p = row + b * ts;
        const float *xb = x + b * QK;
        uint8x16_t lo, hi;
        nibbles(p + (has_min ? 4 : 2), &lo, &hi);
        float32x4_t w[4], s;
        if (has_min) {
            u8x16_to_f32(lo, w);
            s = dot16(w, xb);
            u8x16_to_f32(hi, w);
        } else {
            const int8x16_t k8 = vdupq_n_s8(8);
            neon_s8x16_to_f32(vsubq_s8(vreinterpretq_s8_u8(lo), k8), w);
            s = dot16(w, xb);
            neon_s8x16_to_f32(vsubq_s8(vreinterpretq_s8_u8(hi), k8), w);
        }
        s = vaddq_f32(s, dot16(w, xb + 16));
        ad = vfmaq_n_f32(ad, s, h2f(p));
        if (has_min) {
            const float32x4_t sx = vaddq_f32(vaddq_f32(vaddq_f32(vld1q_f32(xb), vld1q_f32(xb + 4)),
                                                       vaddq_f32(vld1q_f32(xb + 8), vld1q_f32(xb + 12))),
                                             vaddq_f32(vaddq_f32(vld1q_f32(xb + 16), vld1q_f32(xb + 20)),
                                                       vaddq_f32(vld1q_f32(xb + 24), vld1q_f32(xb + 28))));
            am = vfmaq_n_f32(am, sx, h2f(p + 2));
        }
    }
    return vaddvq_f32(vaddq_f32(ad, am));
}

/* ---------------------------------------------------------------------------------------
 * Dequantization for computing (the prefill panels and the other types' decode)
 * ------------------------------------------------------------------------------------- */
/* q (16 unsigned bytes) -> d * q - m (mb: subtract m) into y[0..16) */
static inline void store_affine_u8(uint8x16_t q, float d, float m, float *y) {
    float32x4_t f[4];
    u8x16_to_f32(q, f);
    for (int k = 0; k < 4; k++) vst1q_f32(y + 4 * k, vsubq_f32(vmulq_n_f32(f[k], d), vdupq_n_f32(m)));
}

/* q (16 signed bytes) -> d * q into y[0..16) */
static inline void store_scaled_s8(int8x16_t q, float d, float *y) {
    float32x4_t f[4];
    neon_s8x16_to_f32(q, f);
    for (int k = 0; k < 4; k++) vst1q_f32(y + 4 * k, vmulq_n_f32(f[k], d));
}

static void dq_q4_k(const uint8_t *b, float *y) {
    const float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *qs = b + 16;
    for (int c = 0; c < 4; c++) {             /* 64 elements: sub-blocks 2c (low nibbles), 2c + 1 */
        int sc0, mn0, sc1, mn1;
        k_scale_min(2 * c, b + 4, &sc0, &mn0);
        k_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
        for (int h = 0; h < 2; h++) {
            uint8x16_t lo, hi;
            nibbles(qs + 32 * c + 16 * h, &lo, &hi);
            store_affine_u8(lo, d * (float)sc0, dmin * (float)mn0, y + 64 * c + 16 * h);
            store_affine_u8(hi, d * (float)sc1, dmin * (float)mn1, y + 64 * c + 32 + 16 * h);
        }
    }
}

static void dq_q5_k(const uint8_t *b, float *y) {
    const float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *qh = b + 16, *qs = b + 48;
    const uint8x16_t b16 = vdupq_n_u8(16);
    for (int c = 0; c < 4; c++) {
        int sc0, mn0, sc1, mn1;
        k_scale_min(2 * c, b + 4, &sc0, &mn0);
        k_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
        const uint8x16_t bit0 = vdupq_n_u8((uint8_t)(1u << (2 * c))), bit1 = vdupq_n_u8((uint8_t)(2u << (2 * c)));
        for (int h = 0; h < 2; h++) {
            uint8x16_t lo, hi;
            nibbles(qs + 32 * c + 16 * h, &lo, &hi);
            const uint8x16_t hb = vld1q_u8(qh + 16 * h);
            lo = vorrq_u8(lo, vandq_u8(vtstq_u8(hb, bit0), b16));
            hi = vorrq_u8(hi, vandq_u8(vtstq_u8(hb, bit1), b16));
            store_affine_u8(lo, d * (float)sc0, dmin * (float)mn0, y + 64 * c + 16 * h);
            store_affine_u8(hi, d * (float)sc1, dmin * (float)mn1, y + 64 * c + 32 + 16 * h);
        }
    }
}

static void dq_q6_k(const uint8_t *b, float *y) {
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = h2f(b + 208);
    const uint8x16_t m3 = vdupq_n_u8(3);
    const int8x16_t k32 = vdupq_n_s8(32);
    for (int h = 0; h < 2; h++) {             /* two halves of 128 */
        const uint8_t *l8 = b + 64 * h, *h8 = b + 128 + 32 * h;
        for (int l0 = 0; l0 < 32; l0 += 16) {
            const uint8x16_t a = vld1q_u8(l8 + l0), c = vld1q_u8(l8 + 32 + l0), hq = vld1q_u8(h8 + l0);
            uint8x16_t q[4]; /* element l0 + [0, 16) of the half's 4 groups of 32: bits 4-5 from hq */
            q[0] = vsliq_n_u8(a, vandq_u8(hq, m3), 4);
            q[1] = vsliq_n_u8(c, vandq_u8(vshrq_n_u8(hq, 2), m3), 4);
            q[2] = vorrq_u8(vshrq_n_u8(a, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hq, 4), m3), 4));
            q[3] = vorrq_u8(vshrq_n_u8(c, 4), vshlq_n_u8(vshrq_n_u8(hq, 6), 4));
            for (int g = 0; g < 4; g++) {
                const int e = 128 * h + 32 * g + l0; /* first element of these 16 */
                store_scaled_s8(vsubq_s8(vreinterpretq_s8_u8(q[g]), k32), d * (float)sc[e / 16], y + e);
            }
        }
    }
}

/* Dequantize n elements (whole blocks): like dequantize_row, in NEON. */
static void dequantize_fast(int type, const uint8_t *src, float *dst, int64_t n) {
    int64_t b = 0;
    switch (type) {
    case QWEN3C_TYPE_F16:
    case QWEN3C_TYPE_BF16: {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            float32x4_t lo, hi;
            if (type == QWEN3C_TYPE_F16) neon_f16x8(src + 2 * i, &lo, &hi);
            else neon_bf16x8(src + 2 * i, &lo, &hi);
            vst1q_f32(dst + i, lo);
            vst1q_f32(dst + i + 4, hi);
        }
        if (i < n) dequantize_row(type, src + 2 * i, dst + i, n - i);
        return;
    }
    case QWEN3C_TYPE_Q8_0:
        for (; b < n / QK; b++) {
            const uint8_t *p = src + b * 34;
            const float d = h2f(p);
            store_scaled_s8(vld1q_s8((const int8_t *)p + 2), d, dst + b * QK);
            store_scaled_s8(vld1q_s8((const int8_t *)p + 18), d, dst + b * QK + 16);
        }
        return;
    case QWEN3C_TYPE_Q4_0:
        for (; b < n / QK; b++) {
            const uint8_t *p = src + b * 18;
            uint8x16_t lo, hi;
            nibbles(p + 2, &lo, &hi);
            const float d = h2f(p);
            store_scaled_s8(vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(8)), d, dst + b * QK);
            store_scaled_s8(vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(8)), d, dst + b * QK + 16);
        }
        return;
    case QWEN3C_TYPE_Q4_1:
        for (; b < n / QK; b++) {
            const uint8_t *p = src + b * 20;
            uint8x16_t lo, hi;
            nibbles(p + 4, &lo, &hi);
            const float d = h2f(p), m = h2f(p + 2);
            store_affine_u8(lo, d, -m, dst + b * QK);
            store_affine_u8(hi, d, -m, dst + b * QK + 16);
        }
        return;
    case QWEN3C_TYPE_Q5_0:
    case QWEN3C_TYPE_Q5_1: {
        const int q51 = type == QWEN3C_TYPE_Q5_1, ts = q51 ? 24 : 22;
        for (; b < n / QK; b++) {
            const uint8_t *p = src + b * ts;
            uint8x16_t lo, hi, blo, bhi;
            nibbles(p + (q51 ? 8 : 6), &lo, &hi);
            q5_bits(read_u32le(p + (q51 ? 4 : 2)), &blo, &bhi);
            lo = vorrq_u8(lo, blo), hi = vorrq_u8(hi, bhi);
            const float d = h2f(p);
            if (q51) {
                const float m = h2f(p + 2);
                store_affine_u8(lo, d, -m, dst + b * QK);
                store_affine_u8(hi, d, -m, dst + b * QK + 16);
            } else {
                const int8x16_t k16 = vdupq_n_s8(16);
                store_scaled_s8(vsubq_s8(vreinterpretq_s8_u8(lo), k16), d, dst + b * QK);
                store_scaled_s8(vsubq_s8(vreinterpretq_s8_u8(hi), k16), d, dst + b * QK + 16);
            }
        }
        return;
    }
    case QWEN3C_TYPE_Q4_K:
        for (; b < n / QK_K; b++) dq_q4_k(src + b * 144, dst + b * QK_K);
        return;
    case QWEN3C_TYPE_Q5_K:
        for (; b < n / QK_K; b++) dq_q5_k(src + b * 176, dst + b * QK_K);
        return;
    case QWEN3C_TYPE_Q6_K:
        for (; b < n / QK_K; b++) dq_q6_k(src + b * 210, dst + b * QK_K);
        return;
    default:
        dequantize_row(type, src, dst, n);
        return;
    }
}

static float vec_dot(int type, const uint8_t *row, const float *x, int64_t n) {
    float s;
    switch (type) {
    case QWEN3C_TYPE_F32:  vec_dot_float(QWEN3C_TYPE_F32, 0, row, NULL, x, n, &s, NULL); return s;
    case QWEN3C_TYPE_F16:  vec_dot_float(QWEN3C_TYPE_F16, 0, row, NULL, x, n, &s, NULL); return s;
    case QWEN3C_TYPE_BF16: vec_dot_float(QWEN3C_TYPE_BF16, 0, row, NULL, x, n, &s, NULL); return s;
    case QWEN3C_TYPE_Q8_0: return vec_dot_q8_0(row, x, n);
    case QWEN3C_TYPE_Q4_0: return vec_dot_q4(0, row, x, n);
    case QWEN3C_TYPE_Q4_1: return vec_dot_q4(1, row, x, n);
    default:               return vec_dot_dequantized(type, row, x, n, dequantize_fast, dot_f32);
    }
}

/* ---------------------------------------------------------------------------------------
 * Prefill: register-blocked micro-kernel over a dequantized panel
 * ------------------------------------------------------------------------------------- */
/* part[t * TILE_R + r] = dot(tile row r, x row t) over k elements; NR, NT are compile-time
 * constants at every call site, so the NR x NT accumulators stay in registers. */
static inline __attribute__((always_inline)) void
tile_kernel(const int NR, const int NT, const float *tile, const float *x, int64_t xs, int64_t k,
            float *part) {
    float32x4_t acc[TILE_R][TILE_T];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) acc[r][t] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        float32x4_t w[TILE_R];
        for (int r = 0; r < NR; r++) w[r] = vld1q_f32(tile + r * TILE_K + i);
        for (int t = 0; t < NT; t++) {
            const float32x4_t xv = vld1q_f32(x + t * xs + i);
            for (int r = 0; r < NR; r++) acc[r][t] = vfmaq_f32(acc[r][t], w[r], xv);
        }
    }
    for (int t = 0; t < NT; t++) {
        float s[TILE_R];
        if (NR == 4) { /* the 4 row sums of token t in 3 pairwise adds */
            vst1q_f32(s, vpaddq_f32(vpaddq_f32(acc[0][t], acc[1][t]), vpaddq_f32(acc[2][t], acc[3][t])));
        } else {
            for (int r = 0; r < NR; r++) s[r] = vaddvq_f32(acc[r][t]);
        }
        for (int r = 0; r < NR; r++) {
            for (int64_t j = i; j < k; j++) s[r] = fmaf(tile[r * TILE_K + j], x[t * xs + j], s[r]);
            part[t * TILE_R + r] = s[r];
        }
    }
}

MATMUL_TILE_DISPATCH(tile_kernel)

/* two float rows at once (matmul_decode) */
static void vec_dot2(int type, const uint8_t *ra, const uint8_t *rb, const float *x, int64_t n, float *oa,
                     float *ob) {
    if (type == QWEN3C_TYPE_F32) vec_dot_float(QWEN3C_TYPE_F32, 1, ra, rb, x, n, oa, ob);
    else if (type == QWEN3C_TYPE_F16) vec_dot_float(QWEN3C_TYPE_F16, 1, ra, rb, x, n, oa, ob);
    else vec_dot_float(QWEN3C_TYPE_BF16, 1, ra, rb, x, n, oa, ob);
}

static void rows(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    if (n_tok > 1) matmul_panels(out, out_stride, x, n_tok, w, r0, r1, dequantize_fast, tile_dispatch);
    else matmul_decode(out, x, w, r0, r1, vec_dot, vec_dot2); /* memory-bound */
}

const MatmulKernels TIER_TABLE(matmul_kernels) = {rows};
