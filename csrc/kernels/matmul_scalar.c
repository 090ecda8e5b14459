/*
 * matmul_scalar.c -- the float32-activation matmul in plain C: the readable reference the SIMD
 * tiers (matmul_avx2.c, matmul_avx512.c) are tested against, and the sse tier compiled for
 * SSE4.2 (kernels.h). Every weight type is dequantized exactly (quant.c: dequantize_row) and
 * multiplied with float32 x in dot products of 8 independent partial sums (which the compiler
 * vectorizes); see matmul_common.h for the decode / prefill loops.
 */
#include "matmul_common.h"

/* dot(a, b) over n floats with 8 partial sums, added pairwise at the end. */
static float dot_f32(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static float vec_dot(int type, const uint8_t *row, const float *x, int64_t n) {
    if (type == QWEN3C_TYPE_F32) return dot_f32((const float *)(const void *)row, x, n);
    return vec_dot_dequantized(type, row, x, n, dequant_reference, dot_f32);
}

/* micro-kernel: one dot product per (row, token) */
static void tile(int nr, int nt, const float *t, const float *x, int64_t xs, int64_t k, float *part) {
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < nt; j++) part[j * TILE_R + r] = dot_f32(t + r * TILE_K, x + j * xs, k);
}

static void rows(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    matmul_rows_with(out, out_stride, x, n_tok, w, r0, r1, vec_dot, dequant_reference, tile);
}

const MatmulKernels TIER_TABLE(matmul_kernels) = {rows};
