/*
 * nn_scalar.c -- the element-wise ops that call exp: softmax (attention) and SwiGLU (the MLP).
 * Plain C written so that the compiler vectorizes it (`omp simd` loops around an exp that is
 * plain arithmetic: internal.h's expf_simd); it has no hand-written x86 tier: every x86 tier
 * compiles this file with its own flags (SSE4.2: 4 lanes; AVX2: 8; AVX-512: 16), which is what
 * makes it fast (kernels.h).
 */
#include <math.h>

#include "kernels.h"

/* softmax over x[0..n), in place (float32, as the eager attention in transformers). */
static void softmax(float *x, int n) {
    float mx[16]; /* 16 running maxima (a max is exact in any order), then the max of them */
    for (int k = 0; k < 16; k++) mx[k] = x[0];
    int i = 0;
    for (; i + 16 <= n; i += 16)
#pragma omp simd
        for (int k = 0; k < 16; k++) mx[k] = x[i + k] > mx[k] ? x[i + k] : mx[k];
    for (; i < n; i++) mx[0] = x[i] > mx[0] ? x[i] : mx[0];
    float max_val = mx[0];
    for (int k = 1; k < 16; k++) max_val = mx[k] > max_val ? mx[k] : max_val;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) {
        x[i] = expf_simd(x[i] - max_val);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* act_fn(gate) * up with act_fn = SiLU: hb = silu(hb) * hb2 over n elements. */
static void swiglu(float *hb, const float *hb2, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const float g = hb[i];
        hb[i] = g / (1.0f + expf_simd(-g)) * hb2[i];
    }
}

const NNKernels TIER_TABLE(nn_kernels) = {softmax, swiglu};
