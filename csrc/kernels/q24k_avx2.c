/*
 * q24k_avx2.c -- the q24k kernels for AVX2 CPUs (quant_q24k.c has the format and the
 * arithmetic): a 64-byte chunk of a packed group (4 columns x 16 rows) is two 32-byte halves,
 * rows 0-7 and 8-15, each a ymm of 8 int32 lanes; the byte dot products are avx2_common.h's
 * DOTS (vpdpbusd with AVX-VNNI, else vpmaddubsw + vpmaddwd, exact for these 4-6-bit weights).
 * One half of a group at a time for up to TILE_T tokens (16 ymm registers: 3 TILE_T
 * accumulators, a chunk and a broadcast; the per-token float sums live in L1). The same
 * numbers as q24k_scalar.c.
 */
#include "avx2_common.h"
#include "q24.h"

#define QK_K 256
#define TILE_T 4 /* tokens per batch tile: 12 accumulators + a chunk + a broadcast (16 ymm) */

/* The weight integers u (0..63) of half hf (rows 8 hf .. 8 hf + 7) of chunk c of block b
 * (0..7) of a super-block record. b is a compile-time constant in every caller (unrolled
 * loops), so every shift is an immediate; 16-bit lane shifts of at most 4 move no bit of
 * interest across a byte. */
static inline __attribute__((always_inline)) __m256i
chunk_u(const int TYPE, const uint8_t *rec, const int b, int c, int hf) {
    const __m256i m15 = _mm256_set1_epi8(0x0f);
    const uint8_t *lo, *hi;
    int nib, at; /* which nibble; the block's first high bit */
    if (TYPE == QWEN3C_TYPE_Q6_K) {
        const uint8_t *half = rec + 288 + 1536 * (b / 4);
        lo = half + 512 * (b % 2), nib = (b % 4) / 2;
        hi = half + 1024, at = 2 * (b % 4);
    } else {
        lo = rec + 320 + 512 * (b / 2), nib = b % 2;
        hi = rec + 2368, at = b;
    }
    const __m256i raw = _mm256_loadu_si256((const __m256i *)(lo + 64 * c + 32 * hf));
    const __m256i u = _mm256_and_si256(nib ? _mm256_srli_epi16(raw, 4) : raw, m15);
    if (TYPE == QWEN3C_TYPE_Q4_K) return u;
    __m256i h = _mm256_loadu_si256((const __m256i *)(hi + 64 * c + 32 * hf));
    h = at < 4 ? _mm256_slli_epi16(h, 4 - at) : at > 4 ? _mm256_srli_epi16(h, at - 4) : h;
    return _mm256_or_si256(u, _mm256_and_si256(h, _mm256_set1_epi8(TYPE == QWEN3C_TYPE_Q6_K ? 0x30 : 0x10)));
}

/* tot[t][0..8) += block b's terms for rows 8 hf .. 8 hf + 7 of NT tokens (xb: block b of
 * token 0, tokens x_stride blocks apart). */
static inline __attribute__((always_inline)) void
block(const int TYPE, const int NT, const uint8_t *rec, const int b, int hf, const BlockQ24 *xb,
      int64_t x_stride, float (*tot)[8]) {
    const int row0 = 8 * hf;
    const __m256 d = f16x8_ps(rec + 2 * row0);
    __m256i ah[TILE_T], am[TILE_T], al[TILE_T];
    for (int t = 0; t < NT; t++) ah[t] = am[t] = al[t] = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int part = 0; part < 2; part++) { /* chunks 0..3, 4..7 (Q6_K: two sub-blocks) */
        if (TYPE == QWEN3C_TYPE_Q6_K) /* the sums start from the offset terms -32 sh, -32 sml */
            for (int t = 0; t < NT; t++) {
                const BlockQ24 *xt = xb + t * x_stride;
                ah[t] = _mm256_set1_epi32(xt->q6k[2 * part]);
                am[t] = _mm256_setzero_si256();
                al[t] = _mm256_set1_epi32(xt->q6k[2 * part + 1]);
            }
#pragma GCC unroll 4
        for (int c = 4 * part; c < 4 * part + 4; c += DOT_STEP) {
            const __m256i u0 = chunk_u(TYPE, rec, b, c, hf);
            const __m256i u1 = DOT_STEP == 2 ? chunk_u(TYPE, rec, b, c + 1, hf) : u0;
            (void)u1;
            for (int t = 0; t < NT; t++) {
                const BlockQ24 *xt = xb + t * x_stride;
                DOTS(ah[t], u0, bcast4(xt->h + 4 * c), u1, bcast4(xt->h + 4 * c + 4));
                DOTS(am[t], u0, bcast4(xt->m + 4 * c), u1, bcast4(xt->m + 4 * c + 4));
                DOTS(al[t], u0, bcast4(xt->l + 4 * c), u1, bcast4(xt->l + 4 * c + 4));
            }
        }
        if (TYPE == QWEN3C_TYPE_Q6_K) { /* sub-block 2b + part */
            const __m256 ds = _mm256_mul_ps(d, s8x8_ps(rec + 32 + 16 * (2 * b + part) + row0));
            for (int t = 0; t < NT; t++) {
                const BlockQ24 *xt = xb + t * x_stride;
                const __m256i iml = _mm256_add_epi32(_mm256_slli_epi32(am[t], 8), al[t]);
                const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ah[t]), _mm256_set1_ps(65536.0f), _mm256_cvtepi32_ps(iml));
                _mm256_store_ps(tot[t], _mm256_fmadd_ps(f, _mm256_mul_ps(ds, _mm256_set1_ps(xt->d)), _mm256_load_ps(tot[t])));
            }
        }
    }
    if (TYPE == QWEN3C_TYPE_Q6_K) return;
    const __m256 ds = _mm256_mul_ps(d, u8x8_ps(rec + 64 + 16 * b + row0));
    const __m256 dm = _mm256_mul_ps(f16x8_ps(rec + 32 + 2 * row0), u8x8_ps(rec + 192 + 16 * b + row0));
    for (int t = 0; t < NT; t++) {
        const BlockQ24 *xt = xb + t * x_stride;
        const __m256i iml = _mm256_add_epi32(_mm256_slli_epi32(am[t], 8), al[t]);
        const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ah[t]), _mm256_set1_ps(65536.0f), _mm256_cvtepi32_ps(iml));
        const __m256 v = _mm256_fmadd_ps(f, _mm256_mul_ps(ds, _mm256_set1_ps(xt->d)), _mm256_load_ps(tot[t]));
        _mm256_store_ps(tot[t], _mm256_fnmadd_ps(dm, _mm256_set1_ps(xt->sx), v));
    }
}

/* Rows 8 hf .. 8 hf + 7 of one group x NT tokens over all ns super-blocks: out[t][r] for t < NT
 * and the group's first `valid` rows. TYPE, NT are compile-time constants. */
static inline __attribute__((always_inline)) void
half_tile(const int TYPE, const int NT, int hf, const uint8_t *g, int64_t ns, const BlockQ24 *x,
          int64_t x_stride, float *out, int64_t out_stride, int valid) {
    const size_t rb = TYPE == QWEN3C_TYPE_Q4_K ? 2368 : TYPE == QWEN3C_TYPE_Q5_K ? 2880 : 3360;
    _Alignas(32) float tot[TILE_T][8];
    for (int t = 0; t < NT; t++) _mm256_store_ps(tot[t], _mm256_setzero_ps());
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *rec = g + (size_t)s * rb;
        const BlockQ24 *xs = x + s * (QK_K / QK);
#pragma GCC unroll 8
        for (int b = 0; b < QK_K / QK; b++) block(TYPE, NT, rec, b, hf, xs + b, x_stride, tot);
    }
    const int row0 = 8 * hf;
    if (valid >= row0 + 8) {
        for (int t = 0; t < NT; t++) _mm256_storeu_ps(out + t * out_stride + row0, _mm256_load_ps(tot[t]));
    } else if (valid > row0) {
        const __m256i m = first_lanes(valid - row0);
        for (int t = 0; t < NT; t++) _mm256_maskstore_ps(out + t * out_stride + row0, m, _mm256_load_ps(tot[t]));
    }
}

/* All n_tok tokens of one group, one 8-row half at a time (decode too: the second half's
 * bytes are then in L1/L2), in tiles of TILE_T tokens. */
/* Rows [r0, r1) (whole groups from r0) x the tokens [t0, t0 + NT): for each group, each of
 * its 8-row halves that holds a valid row. */
static inline __attribute__((always_inline)) void
rows_tile(const int TYPE, const int NT, const QTensor *w, int64_t r0, int64_t r1, const BlockQ24 *x,
          int64_t ns, int64_t nb, float *out, int64_t out_stride) {
    const size_t group_bytes = q24k_packed_size(w->type, GR, w->cols);
    for (int64_t r = r0; r < r1; r += GR) {
        const uint8_t *g = (const uint8_t *)w->packed + (size_t)(r / GR) * group_bytes;
        const int valid = r1 - r < GR ? (int)(r1 - r) : GR;
        half_tile(TYPE, NT, 0, g, ns, x, nb, out + r, out_stride, valid);
        if (valid > 8) half_tile(TYPE, NT, 1, g, ns, x, nb, out + r, out_stride, valid);
    }
}

/* Tiles of TILE_T tokens, each over all the rows: the tile's activations stay in L1 / L2 while
 * the rows' weights (a thread's piece of a matrix, ~100-200 KB) stay in L2. */
static inline __attribute__((always_inline)) void
rows_type(const int TYPE, float *out, int64_t out_stride, const BlockQ24 *x, int n_tok, const QTensor *w,
          int64_t r0, int64_t r1) {
    const int64_t ns = w->cols / QK_K, nb = ns * (QK_K / QK); /* super-blocks, activation blocks per token */
#define TILE(NT, t) rows_tile(TYPE, NT, w, r0, r1, x + (t) * nb, ns, nb, out + (t) * out_stride, out_stride)
    Q24_TOKEN_TILES(n_tok, TILE_T, TILE);
#undef TILE
}

static void rows_q4_k(float *out, int64_t out_stride, const BlockQ24 *x, int n_tok, const QTensor *w, int64_t r0, int64_t r1) {
    rows_type(QWEN3C_TYPE_Q4_K, out, out_stride, x, n_tok, w, r0, r1);
}
static void rows_q5_k(float *out, int64_t out_stride, const BlockQ24 *x, int n_tok, const QTensor *w, int64_t r0, int64_t r1) {
    rows_type(QWEN3C_TYPE_Q5_K, out, out_stride, x, n_tok, w, r0, r1);
}
static void rows_q6_k(float *out, int64_t out_stride, const BlockQ24 *x, int n_tok, const QTensor *w, int64_t r0, int64_t r1) {
    rows_type(QWEN3C_TYPE_Q6_K, out, out_stride, x, n_tok, w, r0, r1);
}

static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    switch (w->type) {
    case QWEN3C_TYPE_Q4_K: rows_q4_k(out, out_stride, xq, n_tok, w, r0, r1); break;
    case QWEN3C_TYPE_Q5_K: rows_q5_k(out, out_stride, xq, n_tok, w, r0, r1); break;
    default: rows_q6_k(out, out_stride, xq, n_tok, w, r0, r1); break;
    }
}

const Q24KKernels TIER_TABLE(q24k_kernels) = {q24k_packed_size, q24k_pack, rows};
