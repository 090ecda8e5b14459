/*
 * attention_avx2.c -- the attention kernels for AVX2 + FMA + F16C (16 ymm registers): a key
 * tile's 16 positions are two ymm registers, so the scores of up to 4 query rows against one
 * tile (or 2 rows against two tiles) accumulate in 8 registers with one query broadcast per
 * element; softmax(scores) @ v keeps up to 12 ymm of sums (2 rows x 48 dims, 4 rows x 24)
 * and loads each value vector once for all rows. The same sums in the same order as
 * attention_scalar.c but for FMA rounding. head_dim not a multiple of 8 goes to the scalar
 * kernels.
 */
#include <immintrin.h>

#include "kernels.h"

/* 8 cache entries from p as floats: float32, or IEEE halves (F16 = 1) widened exactly */
static inline __attribute__((always_inline)) __m256 load8(const void *p, const int F16) {
    return F16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)) : _mm256_loadu_ps((const float *)p);
}

/* scaled scores of NR query rows against NT (1 or 2) adjacent key tiles (HD x 16 each):
 * out[r * out_stride + 0..16*NT) = (q_r . k) * scale; NR * NT <= 4 */
static inline __attribute__((always_inline)) void
score_tile_nr(const int NR, const int NT, const int F16, const float *const *qr, const void *tile, int HD,
              float scale, float *out, size_t out_stride) {
    const size_t esz = F16 ? sizeof(uint16_t) : sizeof(float), tile_bytes = (size_t)HD * KV_TILE * esz;
    __m256 acc[4][4]; /* [row][tile * 2 + half] */
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < 2 * NT; j++) acc[r][j] = _mm256_setzero_ps();
    for (int i = 0; i < HD; i++) {
        __m256 k[4];
        for (int j = 0; j < 2 * NT; j++)
            k[j] = load8((const char *)tile + (j / 2) * tile_bytes + ((size_t)i * KV_TILE + 8 * (j % 2)) * esz, F16);
        for (int r = 0; r < NR; r++) {
            const __m256 q = _mm256_broadcast_ss(qr[r] + i);
            for (int j = 0; j < 2 * NT; j++) acc[r][j] = _mm256_fmadd_ps(q, k[j], acc[r][j]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < 2 * NT; j++)
            _mm256_storeu_ps(out + r * out_stride + 8 * j, _mm256_mul_ps(acc[r][j], _mm256_set1_ps(scale)));
}

/* nr <= ATT_ROWS rows against nt <= 2 tiles: two tiles for up to 2 rows at a time, else one
 * tile for up to 4 rows */
static inline __attribute__((always_inline)) void
score_tile(const int F16, int nr, int nt, const float *const *qr, const void *tile, int HD, float scale,
           float *out, size_t out_stride) {
    const size_t esz = F16 ? sizeof(uint16_t) : sizeof(float);
    for (int r0 = 0; r0 < nr;) {
        const float *const *q = qr + r0;
        float *o = out + (size_t)r0 * out_stride;
        const int left = nr - r0;
        if (nt == 2 && left <= 2) {
            if (left == 2) score_tile_nr(2, 2, F16, q, tile, HD, scale, o, out_stride);
            else score_tile_nr(1, 2, F16, q, tile, HD, scale, o, out_stride);
            return;
        }
        const int n = left >= 4 ? 4 : left;
        for (int t = 0; t < nt; t++) {
            const void *tt = (const char *)tile + (size_t)t * HD * KV_TILE * esz;
            switch (n) {
            case 4: score_tile_nr(4, 1, F16, q, tt, HD, scale, o + 16 * t, out_stride); break;
            case 3: score_tile_nr(3, 1, F16, q, tt, HD, scale, o + 16 * t, out_stride); break;
            case 2: score_tile_nr(2, 1, F16, q, tt, HD, scale, o + 16 * t, out_stride); break;
            default: score_tile_nr(1, 1, F16, q, tt, HD, scale, o + 16 * t, out_stride); break;
            }
        }
        r0 += n;
    }
}

/* For NR query rows r at once: o[r][0..8*NV) = sum_s a[r][s] * v[s][0..8*NV), s < L, rows of v
 * at stride HD; each value vector is loaded once for all NR rows (NR * NV <= 12 sums in
 * registers), added in order of s (a[r][s] is 0 past row r's causal length) */
static inline __attribute__((always_inline)) void
weighted_sum_nr_nv(const int NR, const int NV, const int F16, float *const *o, const float *const *a,
                   const void *v, int L, int HD, int accumulate) {
    const size_t esz = F16 ? sizeof(uint16_t) : sizeof(float);
    __m256 acc[4][6];
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = accumulate ? _mm256_loadu_ps(o[r] + 8 * u) : _mm256_setzero_ps();
    for (int s = 0; s < L; s++) {
        const char *vs = (const char *)v + (size_t)s * HD * esz;
        __m256 w[4];
        for (int r = 0; r < NR; r++) w[r] = _mm256_broadcast_ss(a[r] + s);
        for (int u = 0; u < NV; u++) {
            const __m256 vv = load8(vs + 8 * u * esz, F16);
            for (int r = 0; r < NR; r++) acc[r][u] = _mm256_fmadd_ps(w[r], vv, acc[r][u]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < NV; u++) _mm256_storeu_ps(o[r] + 8 * u, acc[r][u]);
}

/* up to 2 rows x 6 vectors (48 dims) or 4 rows x 3 vectors (24 dims) at a time */
static inline __attribute__((always_inline)) void
weighted_sum_rows(const int F16, int nr, int nv, float *const *o, const float *const *a, const void *v,
                  int L, int HD, int acc0) {
#define W(NR, NV) weighted_sum_nr_nv(NR, NV, F16, o, a, v, L, HD, acc0)
    switch (nr * 8 + nv) {
    case 1 * 8 + 1: W(1, 1); return;
    case 1 * 8 + 2: W(1, 2); return;
    case 1 * 8 + 3: W(1, 3); return;
    case 1 * 8 + 4: W(1, 4); return;
    case 1 * 8 + 5: W(1, 5); return;
    case 1 * 8 + 6: W(1, 6); return;
    case 2 * 8 + 1: W(2, 1); return;
    case 2 * 8 + 2: W(2, 2); return;
    case 2 * 8 + 3: W(2, 3); return;
    case 2 * 8 + 4: W(2, 4); return;
    case 2 * 8 + 5: W(2, 5); return;
    case 2 * 8 + 6: W(2, 6); return;
    case 3 * 8 + 1: W(3, 1); return;
    case 3 * 8 + 2: W(3, 2); return;
    case 3 * 8 + 3: W(3, 3); return;
    case 4 * 8 + 1: W(4, 1); return;
    case 4 * 8 + 2: W(4, 2); return;
    default: W(4, 3); return;
    }
#undef W
}

static void scores(int nr, const float *const *q, const void *keys, int f16, int HD, int n,
                   float scale, float *att, size_t att_stride) {
    if (HD % 8) {
        attention_kernels_scalar.scores(nr, q, keys, f16, HD, n, scale, att, att_stride);
        return;
    }
    const size_t esz = f16 ? sizeof(uint16_t) : sizeof(float);
    for (int s0 = 0; s0 < n; s0 += 2 * KV_TILE) { /* two tiles at a time while there are */
        const char *tile = (const char *)keys + (size_t)s0 * HD * esz;
        const int tiles = n - s0 > KV_TILE ? 2 : 1;
        if (f16) score_tile(1, nr, tiles, q, tile, HD, scale, att + s0, att_stride);
        else score_tile(0, nr, tiles, q, tile, HD, scale, att + s0, att_stride);
    }
}

/* Rows beyond their causal length len[r] (up to the longest) have zero weights: every row
 * sums over the longest length, so that each value vector is read once for all rows. */
static void weighted_sum(int nr, float *const *orow, const float *att, size_t att_stride,
                         const void *values, int f16, const int *len, int HD, int accumulate) {
    if (HD % 8) {
        attention_kernels_scalar.weighted_sum(nr, orow, att, att_stride, values, f16, len, HD, accumulate);
        return;
    }
    int n_max = 0;
    for (int r = 0; r < nr; r++) n_max = len[r] > n_max ? len[r] : n_max;
    for (int rb = 0; rb < nr; rb += 4) {
        const int nrb = nr - rb < 4 ? nr - rb : 4, dims = nrb <= 2 ? 48 : 24;
        for (int i0 = 0; i0 < HD; i0 += dims) {
            const int nv = (HD - i0 < dims ? HD - i0 : dims) / 8;
            float *o[4];
            const float *a[4];
            for (int r = 0; r < nrb; r++) o[r] = orow[rb + r] + i0, a[r] = att + (size_t)(rb + r) * att_stride;
            if (f16) weighted_sum_rows(1, nrb, nv, o, a, (const uint16_t *)values + i0, n_max, HD, accumulate);
            else weighted_sum_rows(0, nrb, nv, o, a, (const float *)values + i0, n_max, HD, accumulate);
        }
    }
}

const AttentionKernels TIER_TABLE(attention_kernels) = {scores, weighted_sum};
