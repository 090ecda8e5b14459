/*
 * nn_neon.c -- softmax and SwiGLU for arm64 NEON (every arm64 tier). nn_scalar.c's plain C is
 * what the x86 tiers vectorize, but gcc's cost model leaves its exp loops scalar on arm64, so
 * here is the same e^x (same range clamp, same two-part ln 2 reduction, same degree-6 Taylor
 * polynomial by fused multiply-adds, 2^n from the exponent bits) on 4 lanes, 8 per iteration.
 * rmsnorm (forward.c) needs no kernel: arm64's baseline has NEON, and the compiler vectorizes
 * its `omp simd` reduction there.
 */
#include <math.h>

#include "neon_common.h"

/* e^x on 4 lanes: internal.h's expf_simd (relative error < 2e-7); NaN maps to e^-87 as there */
static inline float32x4_t exp4(float32x4_t x) {
    x = vminnmq_f32(vmaxnmq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f)); /* maxNum: NaN -> -87 */
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_n_f32(x, n, 0.693145751953125f); /* ln 2 split in two: an exact reduction */
    r = vfmsq_n_f32(r, n, 1.428606765330187e-06f);
    float32x4_t e = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), vdupq_n_f32(1.0f / 720.0f), r);
    e = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), e, r);
    e = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), e, r);
    e = vfmaq_f32(vdupq_n_f32(0.5f), e, r);
    e = vfmaq_f32(vdupq_n_f32(1.0f), e, r);
    e = vfmaq_f32(vdupq_n_f32(1.0f), e, r);
    const int32x4_t p2 = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23); /* 2^n */
    return vmulq_f32(e, vreinterpretq_f32_s32(p2));
}

/* the same for one value (the tails) */
static inline float exp1(float x) { return vgetq_lane_f32(exp4(vdupq_n_f32(x)), 0); }

/* softmax over x[0..n), in place (float32, as the eager attention in transformers). */
static void softmax(float *x, int n) {
    float32x4_t m0 = vdupq_n_f32(x[0]), m1 = m0; /* a max is exact in any order */
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        m0 = vmaxq_f32(m0, vld1q_f32(x + i));
        m1 = vmaxq_f32(m1, vld1q_f32(x + i + 4));
    }
    float max_val = vmaxvq_f32(vmaxq_f32(m0, m1));
    for (; i < n; i++) max_val = x[i] > max_val ? x[i] : max_val;
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    const float32x4_t mx = vdupq_n_f32(max_val);
    for (i = 0; i + 8 <= n; i += 8) {
        const float32x4_t e0 = exp4(vsubq_f32(vld1q_f32(x + i), mx));
        const float32x4_t e1 = exp4(vsubq_f32(vld1q_f32(x + i + 4), mx));
        vst1q_f32(x + i, e0);
        vst1q_f32(x + i + 4, e1);
        s0 = vaddq_f32(s0, e0);
        s1 = vaddq_f32(s1, e1);
    }
    float sum = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) {
        x[i] = exp1(x[i] - max_val);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= inv;
}

/* act_fn(gate) * up with act_fn = SiLU: hb = silu(hb) * hb2 over n elements. */
static void swiglu(float *hb, const float *hb2, int64_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t g0 = vld1q_f32(hb + i), g1 = vld1q_f32(hb + i + 4);
        const float32x4_t d0 = vaddq_f32(one, exp4(vnegq_f32(g0))), d1 = vaddq_f32(one, exp4(vnegq_f32(g1)));
        vst1q_f32(hb + i, vmulq_f32(vdivq_f32(g0, d0), vld1q_f32(hb2 + i)));
        vst1q_f32(hb + i + 4, vmulq_f32(vdivq_f32(g1, d1), vld1q_f32(hb2 + i + 4)));
    }
    for (; i < n; i++) hb[i] = hb[i] / (1.0f + exp1(-hb[i])) * hb2[i];
}

const NNKernels TIER_TABLE(nn_kernels) = {softmax, swiglu};
