/*
 * attention_neon.c -- the attention kernels for arm64 NEON (every arm64 tier): the scores of up
 * to 4 query rows against a key tile (16 positions = 4 registers) accumulate in 16 registers,
 * fmla by element taking 4 head dims of each query from one register; softmax(scores) @ v keeps
 * up to 2 rows x 32 dims (4 rows x 16 dims) of sums in registers, loads each value vector once
 * for all rows, and takes 4 positions' weights of a row from one register. head_dim not a
 * multiple of 16 goes to the scalar kernels.
 *
 * Design for Apple M-series / Graviton (not measured here): 16 accumulators cover the fmla
 * latency x issue width (4 x 4 on Apple and Neoverse V1, 4 x 2 on N1); per head dim the scores
 * load 4 key vectors for 16 fmla (25 %, under the 2-3 loads per cycle), per position the
 * weighted sum loads NV value vectors for NR x NV fmla. A tile (HD x 16 floats, 8 KB at
 * HD = 128) stays in L1 while 8 query rows pass over it in two groups of 4.
 */
#include "neon_common.h"

/* the 16 positions of key tile row i (HD x 16 floats, or halves when F16) as 4 vectors */
static inline __attribute__((always_inline)) void key_row(const int F16, const void *tile, int i, float32x4_t k[4]) {
    if (F16) {
        const uint8_t *p = (const uint8_t *)tile + (size_t)i * KV_TILE * 2;
        neon_f16x8(p, &k[0], &k[1]);
        neon_f16x8(p + 16, &k[2], &k[3]);
    } else {
        const float *p = (const float *)tile + (size_t)i * KV_TILE;
        for (int u = 0; u < 4; u++) k[u] = vld1q_f32(p + 4 * u);
    }
}

/* out[r * out_stride + 0..16) = (q_r . k) * scale for NR (<= 4) query rows and one key tile */
static inline __attribute__((always_inline)) void
score_tile_nr(const int NR, const int F16, const float *const *qr, const void *tile, int HD,
              float scale, float *out, size_t out_stride) {
    float32x4_t acc[4][4];
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < 4; u++) acc[r][u] = vdupq_n_f32(0.0f);
    for (int i = 0; i < HD; i += 4) {
        float32x4_t qv[4];
        for (int r = 0; r < NR; r++) qv[r] = vld1q_f32(qr[r] + i);
#define DIM(L)                                                                                     \
        {                                                                                          \
            float32x4_t k[4];                                                                      \
            key_row(F16, tile, i + L, k);                                                          \
            for (int r = 0; r < NR; r++)                                                           \
                for (int u = 0; u < 4; u++) acc[r][u] = vfmaq_laneq_f32(acc[r][u], k[u], qv[r], L); \
        }
        DIM(0) DIM(1) DIM(2) DIM(3)
#undef DIM
    }
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < 4; u++) vst1q_f32(out + r * out_stride + 4 * u, vmulq_n_f32(acc[r][u], scale));
}

static inline __attribute__((always_inline)) void
score_tile(const int F16, int nr, const float *const *qr, const void *tile, int HD, float scale,
           float *out, size_t out_stride) {
    switch (nr) {
    case 1: score_tile_nr(1, F16, qr, tile, HD, scale, out, out_stride); return;
    case 2: score_tile_nr(2, F16, qr, tile, HD, scale, out, out_stride); return;
    case 3: score_tile_nr(3, F16, qr, tile, HD, scale, out, out_stride); return;
    default: score_tile_nr(4, F16, qr, tile, HD, scale, out, out_stride); return;
    }
}

static void score_tile_f32(int nr, const float *const *qr, const void *tile, int HD, float scale,
                           float *out, size_t out_stride) {
    score_tile(0, nr, qr, tile, HD, scale, out, out_stride);
}
static void score_tile_f16(int nr, const float *const *qr, const void *tile, int HD, float scale,
                           float *out, size_t out_stride) {
    score_tile(1, nr, qr, tile, HD, scale, out, out_stride);
}

static void scores(int nr, const float *const *q, const void *keys, int f16, int HD, int n,
                   float scale, float *att, size_t att_stride) {
    if (HD % 16) {
        attention_kernels_scalar.scores(nr, q, keys, f16, HD, n, scale, att, att_stride);
        return;
    }
    const size_t esz = f16 ? sizeof(uint16_t) : sizeof(float);
    for (int s0 = 0; s0 < n; s0 += KV_TILE) {
        const char *tile = (const char *)keys + (size_t)s0 * HD * esz;
        for (int r0 = 0; r0 < nr; r0 += 4) { /* the tile stays in L1 for the next 4 rows */
            const int m = nr - r0 < 4 ? nr - r0 : 4;
            float *o = att + (size_t)r0 * att_stride + s0;
            if (f16) score_tile_f16(m, q + r0, tile, HD, scale, o, att_stride);
            else score_tile_f32(m, q + r0, tile, HD, scale, o, att_stride);
        }
    }
}

/* 4 values of value row s from dim 4u on, as floats */
static inline __attribute__((always_inline)) float32x4_t value4(const int F16, const void *v, size_t off) {
    return F16 ? neon_f16x4((const uint16_t *)v + off) : vld1q_f32((const float *)v + off);
}

/* For NR query rows at once: o[r][0..4 NV) = sum over s < L of a[r][s] * v[s][0..4 NV) (rows of v
 * at stride HD), summed in order of s; each value vector is loaded once for all NR rows. */
static inline __attribute__((always_inline)) void
weighted_sum_nr_nv(const int NR, const int NV, const int F16, float *const *o, const float *const *a,
                   const void *v, int L, int HD, int accumulate) {
    float32x4_t acc[4][8];
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = accumulate ? vld1q_f32(o[r] + 4 * u) : vdupq_n_f32(0.0f);
    int s = 0;
    for (; s + 4 <= L; s += 4) {
        float32x4_t av[4];
        for (int r = 0; r < NR; r++) av[r] = vld1q_f32(a[r] + s);
#define POS(P)                                                                                     \
        {                                                                                          \
            float32x4_t vv[8];                                                                     \
            for (int u = 0; u < NV; u++) vv[u] = value4(F16, v, (size_t)(s + P) * HD + 4 * u);     \
            for (int r = 0; r < NR; r++)                                                           \
                for (int u = 0; u < NV; u++) acc[r][u] = vfmaq_laneq_f32(acc[r][u], vv[u], av[r], P); \
        }
        POS(0) POS(1) POS(2) POS(3)
#undef POS
    }
    for (; s < L; s++) {
        float32x4_t vv[8];
        for (int u = 0; u < NV; u++) vv[u] = value4(F16, v, (size_t)s * HD + 4 * u);
        for (int r = 0; r < NR; r++)
            for (int u = 0; u < NV; u++) acc[r][u] = vfmaq_n_f32(acc[r][u], vv[u], a[r][s]);
    }
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < NV; u++) vst1q_f32(o[r] + 4 * u, acc[r][u]);
}

/* nr <= 4 rows x 4 nv dims (nv 8 for nr <= 2, else 4); v float32 or halves */
static inline __attribute__((always_inline)) void
weighted_sum_pass(const int F16, int nr, int nv, float *const *o, const float *const *a, const void *v,
                  int L, int HD, int acc0) {
    switch (nr) {
    case 1:
        if (nv == 8) weighted_sum_nr_nv(1, 8, F16, o, a, v, L, HD, acc0);
        else weighted_sum_nr_nv(1, 4, F16, o, a, v, L, HD, acc0);
        return;
    case 2:
        if (nv == 8) weighted_sum_nr_nv(2, 8, F16, o, a, v, L, HD, acc0);
        else weighted_sum_nr_nv(2, 4, F16, o, a, v, L, HD, acc0);
        return;
    case 3: weighted_sum_nr_nv(3, 4, F16, o, a, v, L, HD, acc0); return;
    default: weighted_sum_nr_nv(4, 4, F16, o, a, v, L, HD, acc0); return;
    }
}
static void weighted_sum_f32(int nr, int nv, float *const *o, const float *const *a, const void *v, int L, int HD,
                             int acc0) {
    weighted_sum_pass(0, nr, nv, o, a, v, L, HD, acc0);
}
static void weighted_sum_f16(int nr, int nv, float *const *o, const float *const *a, const void *v, int L, int HD,
                             int acc0) {
    weighted_sum_pass(1, nr, nv, o, a, v, L, HD, acc0);
}

/* Rows beyond their causal length len[r] (up to the longest) have zero weights: every row sums
 * over the longest length, so that each value vector is read once for all rows. */
static void weighted_sum(int nr, float *const *orow, const float *att, size_t att_stride,
                         const void *values, int f16, const int *len, int HD, int accumulate) {
    if (HD % 16) {
        attention_kernels_scalar.weighted_sum(nr, orow, att, att_stride, values, f16, len, HD, accumulate);
        return;
    }
    int n_max = 0;
    for (int r = 0; r < nr; r++) n_max = len[r] > n_max ? len[r] : n_max;
    const size_t esz = f16 ? sizeof(uint16_t) : sizeof(float);
    /* up to 4 rows x 16 dims (2 rows x 32) at a time, each value read once for all rows */
    for (int rb = 0; rb < nr; rb += 4) {
        const int nrb = nr - rb < 4 ? nr - rb : 4, dims = nrb <= 2 ? 32 : 16;
        for (int i0 = 0; i0 < HD; i0 += dims) {
            const int nv = (HD - i0 < dims ? HD - i0 : dims) / 4;
            float *o[4];
            const float *a[4];
            for (int r = 0; r < nrb; r++) o[r] = orow[rb + r] + i0, a[r] = att + (size_t)(rb + r) * att_stride;
            const void *v = (const char *)values + (size_t)i0 * esz;
            if (f16) weighted_sum_f16(nrb, nv, o, a, v, n_max, HD, accumulate);
            else weighted_sum_f32(nrb, nv, o, a, v, n_max, HD, accumulate);
        }
    }
}

const AttentionKernels TIER_TABLE(attention_kernels) = {scores, weighted_sum};
