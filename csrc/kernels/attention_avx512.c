/*
 * attention_avx512.c -- the attention kernels for AVX-512: a key tile's 16 positions are one
 * zmm register, so the scores of up to 8 query rows against two tiles accumulate in 16
 * registers with one query broadcast per element; softmax(scores) @ v keeps up to 8 rows x 32
 * dims (4 x 64, 2 x 128) of sums in registers and loads each value vector once for all rows.
 * Both ask for the keys / values they read next ahead of use (prefetch hints).
 * head_dim not a multiple of 16 goes to the scalar kernels.
 */
#include <immintrin.h>

#include "kernels.h"

#define ATT_ROWS_MAX ATT_ROWS
/* The weighted sum reads a slice of every value row (a strided stream the prefetchers follow
 * late): it asks for the rows WSUM_AHEAD positions ahead. */
#define WSUM_AHEAD 8

/* 16 cache entries from p as floats: float32, or IEEE halves (F16 = 1) widened exactly */
static inline __attribute__((always_inline)) __m512 load16(const void *p, const int F16) {
    return F16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)) : _mm512_loadu_ps((const float *)p);
}

/* scaled scores of NR query rows against NT (1 or 2) adjacent key tiles (HD x 16 each):
 * out[r * out_stride + 0..16*NT) = (q_r . k) * scale */
static inline __attribute__((always_inline)) void
score_tile_nr(const int NR, const int NT, const int F16, const float *const *qr, const void *tile, int HD,
              float scale, float *out, size_t out_stride) {
    const size_t esz = F16 ? sizeof(uint16_t) : sizeof(float), tile_bytes = (size_t)HD * KV_TILE * esz;
    __m512 acc[ATT_ROWS_MAX][2];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    for (int i = 0; i < HD; i++) {
        if (!F16 || i % 2 == 0) /* line i of the next tiles (a hint: past the last one is harmless) */
            for (int t = 0; t < NT; t++)
                _mm_prefetch((const char *)tile + (NT + t) * tile_bytes + (size_t)i * KV_TILE * esz, _MM_HINT_T0);
        __m512 k[2];
        for (int t = 0; t < NT; t++) k[t] = load16((const char *)tile + t * tile_bytes + (size_t)i * KV_TILE * esz, F16);
        for (int r = 0; r < NR; r++) {
            __m512 q = _mm512_set1_ps(qr[r][i]);
            if (NT == 2) __asm__("" : "+v"(q)); /* one broadcast for both tiles */
            for (int t = 0; t < NT; t++) acc[r][t] = _mm512_fmadd_ps(q, k[t], acc[r][t]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++)
            _mm512_storeu_ps(out + r * out_stride + 16 * t, _mm512_mul_ps(acc[r][t], _mm512_set1_ps(scale)));
}

#define SCORE_NR(NT, F16)                                                                          \
    switch (nr) {                                                                                  \
    case 1: score_tile_nr(1, NT, F16, qr, tile, HD, scale, out, out_stride); return;               \
    case 2: score_tile_nr(2, NT, F16, qr, tile, HD, scale, out, out_stride); return;               \
    case 3: score_tile_nr(3, NT, F16, qr, tile, HD, scale, out, out_stride); return;               \
    case 4: score_tile_nr(4, NT, F16, qr, tile, HD, scale, out, out_stride); return;               \
    case 5: score_tile_nr(5, NT, F16, qr, tile, HD, scale, out, out_stride); return;               \
    case 6: score_tile_nr(6, NT, F16, qr, tile, HD, scale, out, out_stride); return;               \
    case 7: score_tile_nr(7, NT, F16, qr, tile, HD, scale, out, out_stride); return;               \
    default: score_tile_nr(8, NT, F16, qr, tile, HD, scale, out, out_stride); return;              \
    }

/* nr <= 8 rows against nt <= 2 tiles of float32 keys, or (score_tile_f16) of IEEE halves */
static void score_tile(int nr, int nt, const float *const *qr, const float *tile, int HD, float scale,
                       float *out, size_t out_stride) {
    if (nt == 2) SCORE_NR(2, 0)
    SCORE_NR(1, 0)
}
static void score_tile_f16(int nr, int nt, const float *const *qr, const uint16_t *tile, int HD, float scale,
                           float *out, size_t out_stride) {
    if (nt == 2) SCORE_NR(2, 1)
    SCORE_NR(1, 1)
}
#undef SCORE_NR

/* For NR query rows r at once: o[r][0..16*NV) = sum_s a[r][s] * v[s][0..16*NV), s < L, rows of
 * v at stride HD; each value vector is loaded once for all NR rows, the NR x NV (<= 16) sums
 * stay in registers and are added in order of s (a[r][s] is 0 past row r's causal length) */
static inline __attribute__((always_inline)) void
weighted_sum_nr_nv(const int NR, const int NV, const int F16, float *const *o, const float *const *a,
                   const void *v, int L, int HD, int accumulate) {
    const size_t esz = F16 ? sizeof(uint16_t) : sizeof(float);
    __m512 acc[ATT_ROWS_MAX][8];
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = accumulate ? _mm512_loadu_ps(o[r] + 16 * u) : _mm512_setzero_ps();
    for (int s = 0; s < L; s++) {
        const char *vs = (const char *)v + (size_t)s * HD * esz;
        for (int u = 0; u < NV; u += F16 ? 2 : 1) /* row s + WSUM_AHEAD's slice (a hint, as above) */
            _mm_prefetch(vs + (size_t)WSUM_AHEAD * HD * esz + 16 * u * esz, _MM_HINT_T0);
        __m512 vv[8];
        for (int u = 0; u < NV; u++) {
            vv[u] = load16(vs + 16 * u * esz, F16);
            __asm__("" : "+v"(vv[u])); /* keep it in a register: gcc would reload it for every row */
        }
        for (int r = 0; r < NR; r++) {
            const __m512 w = _mm512_set1_ps(a[r][s]);
            for (int u = 0; u < NV; u++) acc[r][u] = _mm512_fmadd_ps(w, vv[u], acc[r][u]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < NV; u++) _mm512_storeu_ps(o[r] + 16 * u, acc[r][u]);
}

#define WSUM_CASE(NR, NV, F16) case NV: weighted_sum_nr_nv(NR, NV, F16, o, a, v, L, HD, acc0); return;
#define WSUM(F16)                                                                                  \
    switch (nr) {                                                                                  \
    case 1: switch (nv) { WSUM_CASE(1, 1, F16) WSUM_CASE(1, 2, F16) WSUM_CASE(1, 3, F16)            \
                          WSUM_CASE(1, 4, F16) WSUM_CASE(1, 5, F16) WSUM_CASE(1, 6, F16)            \
                          WSUM_CASE(1, 7, F16) default: weighted_sum_nr_nv(1, 8, F16, o, a, v, L, HD, acc0); return; } \
    case 2: switch (nv) { WSUM_CASE(2, 1, F16) WSUM_CASE(2, 2, F16) WSUM_CASE(2, 3, F16)            \
                          WSUM_CASE(2, 4, F16) WSUM_CASE(2, 5, F16) WSUM_CASE(2, 6, F16)            \
                          WSUM_CASE(2, 7, F16) default: weighted_sum_nr_nv(2, 8, F16, o, a, v, L, HD, acc0); return; } \
    case 3: switch (nv) { WSUM_CASE(3, 1, F16) WSUM_CASE(3, 2, F16) WSUM_CASE(3, 3, F16)            \
                          default: weighted_sum_nr_nv(3, 4, F16, o, a, v, L, HD, acc0); return; }         \
    case 4: switch (nv) { WSUM_CASE(4, 1, F16) WSUM_CASE(4, 2, F16) WSUM_CASE(4, 3, F16)            \
                          default: weighted_sum_nr_nv(4, 4, F16, o, a, v, L, HD, acc0); return; }         \
    case 5: switch (nv) { WSUM_CASE(5, 1, F16) default: weighted_sum_nr_nv(5, 2, F16, o, a, v, L, HD, acc0); return; } \
    case 6: switch (nv) { WSUM_CASE(6, 1, F16) default: weighted_sum_nr_nv(6, 2, F16, o, a, v, L, HD, acc0); return; } \
    case 7: switch (nv) { WSUM_CASE(7, 1, F16) default: weighted_sum_nr_nv(7, 2, F16, o, a, v, L, HD, acc0); return; } \
    default: switch (nv) { WSUM_CASE(8, 1, F16) default: weighted_sum_nr_nv(8, 2, F16, o, a, v, L, HD, acc0); return; } \
    }

/* nr <= 8 rows, nv vectors of 16 dims (nv <= 8 for nr <= 2, <= 4 for nr <= 4, else <= 2); v
 * float32 or halves */
static void weighted_sum_f32(int nr, int nv, float *const *o, const float *const *a, const float *v, int L, int HD,
                             int acc0) {
    WSUM(0)
}
static void weighted_sum_f16(int nr, int nv, float *const *o, const float *const *a, const uint16_t *v, int L,
                             int HD, int acc0) {
    WSUM(1)
}
#undef WSUM

static void scores(int nr, const float *const *q, const void *keys, int f16, int HD, int n,
                   float scale, float *att, size_t att_stride) {
    if (HD % 16) {
        attention_kernels_scalar.scores(nr, q, keys, f16, HD, n, scale, att, att_stride);
        return;
    }
    const size_t esz = f16 ? sizeof(uint16_t) : sizeof(float);
    for (int s0 = 0; s0 < n; s0 += KV_TILE) { /* two tiles at a time while there are */
        const char *tile = (const char *)keys + (size_t)s0 * HD * esz;
        const int tiles = n - s0 > KV_TILE ? 2 : 1;
        if (f16) score_tile_f16(nr, tiles, q, (const uint16_t *)(const void *)tile, HD, scale, att + s0, att_stride);
        else score_tile(nr, tiles, q, (const float *)(const void *)tile, HD, scale, att + s0, att_stride);
        s0 += (tiles - 1) * KV_TILE;
    }
}

/* Rows beyond their causal length len[r] (up to the longest) have zero weights: every row
 * sums over the longest length, so that each value vector is read once for all rows. */
static void weighted_sum(int nr, float *const *orow, const float *att, size_t att_stride,
                         const void *values, int f16, const int *len, int HD, int accumulate) {
    if (HD % 16) {
        attention_kernels_scalar.weighted_sum(nr, orow, att, att_stride, values, f16, len, HD, accumulate);
        return;
    }
    int n_max = 0;
    for (int r = 0; r < nr; r++) n_max = len[r] > n_max ? len[r] : n_max;
    /* up to 8 rows x 32 dims (4 rows x 64, 2 rows x 128) at a time, each value read once for
     * all rows */
    for (int rb = 0; rb < nr; rb += ATT_ROWS) {
        const int nrb = nr - rb < ATT_ROWS ? nr - rb : ATT_ROWS, dims = nrb <= 2 ? 128 : nrb <= 4 ? 64 : 32;
        for (int i0 = 0; i0 < HD; i0 += dims) {
            const int nv = (HD - i0 < dims ? HD - i0 : dims) / 16;
            float *o[ATT_ROWS_MAX];
            const float *a[ATT_ROWS_MAX];
            for (int r = 0; r < nrb; r++) o[r] = orow[rb + r] + i0, a[r] = att + (size_t)(rb + r) * att_stride;
            if (f16) weighted_sum_f16(nrb, nv, o, a, (const uint16_t *)values + i0, n_max, HD, accumulate);
            else weighted_sum_f32(nrb, nv, o, a, (const float *)values + i0, n_max, HD, accumulate);
        }
    }
}

const AttentionKernels attention_kernels_avx512 = {scores, weighted_sum};
