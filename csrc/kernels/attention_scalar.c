/*
 * attention_scalar.c -- the attention kernels in plain C (the readable reference; compiled
 * again for the sse and avx2 tiers, whose compilers vectorize the 16-lane inner loops): the
 * scores of up to ATT_ROWS query rows against each key tile (keys stored (HD, 16) per tile, so
 * one query element meets 16 positions in one contiguous row), and softmax(scores) @ v, 64
 * dims of the output at a time. forward.c's attention() drives them.
 */
#include "kernels.h"

static void scores(int nr, const float *const *q, const void *keys, int f16, int HD, int n,
                   float scale, float *att, size_t att_stride) {
    const size_t esz = f16 ? sizeof(uint16_t) : sizeof(float);
    for (int s0 = 0; s0 < n; s0 += KV_TILE) {
        const char *tile = (const char *)keys + (size_t)s0 * HD * esz;
        float acc[ATT_ROWS][KV_TILE] = {{0}};
        float kf[KV_TILE]; /* a row of f16 keys, widened */
        for (int i = 0; i < HD; i++) {
            const char *row = tile + (size_t)i * KV_TILE * esz;
            const float *k = kf;
            if (f16) dequantize_row(QWEN3C_TYPE_F16, row, kf, KV_TILE);
            else k = (const float *)(const void *)row;
            for (int r = 0; r < nr; r++) {
                const float qi = q[r][i];
#pragma omp simd
                for (int j = 0; j < KV_TILE; j++) acc[r][j] += qi * k[j];
            }
        }
        const int nj = n - s0 < KV_TILE ? n - s0 : KV_TILE;
        for (int r = 0; r < nr; r++)
            for (int j = 0; j < nj; j++) att[(size_t)r * att_stride + s0 + j] = acc[r][j] * scale;
    }
}

static void weighted_sum(int nr, float *const *o, const float *att, size_t att_stride, const void *values,
                         int f16, const int *len, int HD, int accumulate) {
    const size_t esz = f16 ? sizeof(uint16_t) : sizeof(float);
    for (int r = 0; r < nr; r++) {
        const float *a = att + (size_t)r * att_stride;
        for (int i0 = 0; i0 < HD; i0 += 64) {
            const int nw = HD - i0 < 64 ? HD - i0 : 64;
            float acc[64] = {0}, vf[64]; /* vf: a row of f16 values, widened */
            if (accumulate) memcpy(acc, o[r] + i0, (size_t)nw * sizeof(float));
            for (int s = 0; s < len[r]; s++) {
                const char *row = (const char *)values + ((size_t)s * HD + i0) * esz;
                const float *v = vf;
                if (f16) dequantize_row(QWEN3C_TYPE_F16, row, vf, nw);
                else v = (const float *)(const void *)row;
                const float w = a[s];
#pragma omp simd
                for (int j = 0; j < nw; j++) acc[j] += w * v[j];
            }
            memcpy(o[r] + i0, acc, (size_t)nw * sizeof(float));
        }
    }
}

const AttentionKernels TIER_TABLE(attention_kernels) = {scores, weighted_sum};
