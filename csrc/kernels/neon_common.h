/*
 * neon_common.h -- small arm64 NEON helpers shared by the *_neon.c kernel files (every arm64
 * tier compiles them; kernels.h lists the tiers).
 *
 * Loads go through uint8_t pointers (vld1_u8 / vld1q_u8) and are reinterpreted: GGUF block
 * scales and f16 / bf16 rows are only 2-byte aligned, and an arm64 vector load accepts any
 * address, but a misaligned uint16_t * or float * would be undefined behaviour in C.
 */
#ifndef QWEN3C_NEON_COMMON_H
#define QWEN3C_NEON_COMMON_H

#include <arm_neon.h>

#include "kernels.h"

/* 4 IEEE halves at p -> 4 floats (exact: fcvtl) */
static inline float32x4_t neon_f16x4(const void *p) {
    return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8((const uint8_t *)p)));
}

/* 8 IEEE halves at p -> two vectors of 4 floats */
static inline void neon_f16x8(const void *p, float32x4_t *lo, float32x4_t *hi) {
    const float16x8_t h = vreinterpretq_f16_u8(vld1q_u8((const uint8_t *)p));
    *lo = vcvt_f32_f16(vget_low_f16(h));
    *hi = vcvt_high_f32_f16(h);
}

/* 8 bfloat16 at p -> two vectors of 4 floats (exact: the upper halves of the floats' bits) */
static inline void neon_bf16x8(const void *p, float32x4_t *lo, float32x4_t *hi) {
    const uint16x8_t h = vreinterpretq_u16_u8(vld1q_u8((const uint8_t *)p));
    *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
    *hi = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
}

static inline float32x4_t neon_f32x4(const void *p) {
    return vreinterpretq_f32_u8(vld1q_u8((const uint8_t *)p));
}

/* 16 signed bytes -> four vectors of 4 floats (exact) */
static inline void neon_s8x16_to_f32(int8x16_t v, float32x4_t f[4]) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
    f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    f[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
    f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    f[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

/* The q24 / q24k kernels: stores the 16 row sums of one token of a 16-row group, v[R] = rows
 * 4R..4R+3, of which `valid` are real. */
static inline void store_rows(float *out, const float32x4_t v[4], int valid) {
    if (valid == 16) {
        for (int R = 0; R < 4; R++) vst1q_f32(out + 4 * R, v[R]);
        return;
    }
    float tmp[16];
    for (int R = 0; R < 4; R++) vst1q_f32(tmp + 4 * R, v[R]);
    memcpy(out, tmp, (size_t)valid * sizeof(float));
}

/* ---------------------------------------------------------------------------------------
 * The q24 / q24k kernels: the integer dot product of 4 rows x 4 columns (16 bytes, 4 per row)
 * with one column quad (4-byte lane LANE, a constant) of a register of activation digits
 * ------------------------------------------------------------------------------------- */
#if defined(__ARM_FEATURE_DOTPROD)
/* acc[i] += sum_k w[4 i + k] * a[4 LANE + k]: one sdot */
#define DOT_LANE(acc, w, a, LANE) vdotq_laneq_s32(acc, w, a, LANE)
#else
/* the same sums from widening multiplies (products fit int16: |w a| <= 128 * 128) */
static inline int32x4_t dot4(int32x4_t acc, int8x16_t w, int8x16_t a4) {
    const int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(a4)), hi = vmull_high_s8(w, a4);
    return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
}
#define DOT_LANE(acc, w, a, LANE) \
    dot4(acc, w, vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(a), LANE)))
#endif

#endif /* QWEN3C_NEON_COMMON_H */
