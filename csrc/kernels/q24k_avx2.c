/*
 * q24k_avx2.c -- the q24k kernels for AVX2 CPUs (quant_q24k.c has the format and the
 * arithmetic): a 64-byte chunk of a packed group (4 columns x 16 rows) is two 32-byte halves,
 * rows 0-7 and 8-15, each a ymm of 8 int32 lanes; the byte dot products are avx2_common.h's
 * DOTS (vpdpbusd with AVX-VNNI, else vpmaddubsw + vpmaddwd, exact for these 4-6-bit weights).
 * A batch: one half of a group at a time for up to TILE_T tokens (16 ymm registers: 3 TILE_T
 * accumulators, a chunk and a broadcast; the per-token float sums live in L1). Decode: both
 * halves in one pass, so that each activation broadcast serves two chunks (~20% faster decode
 * than a half at a time). The same numbers as q24k_scalar.c.
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

/* tot[t][8 h .. 8 h + 8) += block b's terms for rows 8 (hf0 + h) .. + 7, h < H, of NT tokens
 * (xb: block b of token 0, tokens x_stride blocks apart). H = 2 (both halves of the group in
 * one pass) shares each activation broadcast between the two halves' chunks. */
static inline __attribute__((always_inline)) void
block(const int TYPE, const int NT, const int H, const uint8_t *rec, const int b, int hf0,
      const BlockQ24 *xb, int64_t x_stride, float (*tot)[16]) {
    __m256 d[2];
    for (int h = 0; h < H; h++) d[h] = f16x8_ps(rec + 16 * (hf0 + h));
    __m256i ah[4], am[4], al[4]; /* token t, half h at t H + h (NT H <= 4) */
    for (int a = 0; a < NT * H; a++) ah[a] = am[a] = al[a] = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int part = 0; part < 2; part++) { /* chunks 0..3, 4..7 (Q6_K: two sub-blocks) */
        if (TYPE == QWEN3C_TYPE_Q6_K) /* the sums start from the offset terms -32 sh, -32 sml */
            for (int a = 0; a < NT * H; a++) {
                const BlockQ24 *xt = xb + (a / H) * x_stride;
                ah[a] = _mm256_set1_epi32(xt->q6k[2 * part]);
                am[a] = _mm256_setzero_si256();
                al[a] = _mm256_set1_epi32(xt->q6k[2 * part + 1]);
            }
#pragma GCC unroll 4
        for (int c = 4 * part; c < 4 * part + 4; c += DOT_STEP) {
            __m256i u0[2], u1[2];
            (void)u1;
            for (int h = 0; h < H; h++) {
                u0[h] = chunk_u(TYPE, rec, b, c, hf0 + h);
                u1[h] = DOT_STEP == 2 ? chunk_u(TYPE, rec, b, c + 1, hf0 + h) : u0[h];
            }
            for (int t = 0; t < NT; t++) {
                const BlockQ24 *xt = xb + t * x_stride;
#define DIGIT(acc, dg)                                                                          \
                do {                                                                            \
                    const __m256i s0 = bcast4(xt->dg + 4 * c), s1 = DOT_STEP == 2 ? bcast4(xt->dg + 4 * c + 4) : s0; \
                    (void)s1;                                                                   \
                    for (int h = 0; h < H; h++) DOTS(acc[t * H + h], u0[h], s0, u1[h], s1);     \
                } while (0)
                DIGIT(ah, h);
                DIGIT(am, m);
                DIGIT(al, l);
#undef DIGIT
            }
        }
        if (TYPE == QWEN3C_TYPE_Q6_K) /* sub-block 2b + part */
            for (int h = 0; h < H; h++) {
                const int row0 = 8 * (hf0 + h);
                const __m256 ds = _mm256_mul_ps(d[h], s8x8_ps(rec + 32 + 16 * (2 * b + part) + row0));
                for (int t = 0; t < NT; t++) {
                    const BlockQ24 *xt = xb + t * x_stride;
                    const int a = t * H + h;
                    const __m256i iml = _mm256_add_epi32(_mm256_slli_epi32(am[a], 8), al[a]);
                    const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ah[a]), _mm256_set1_ps(65536.0f), _mm256_cvtepi32_ps(iml));
                    _mm256_store_ps(tot[t] + 8 * h, _mm256_fmadd_ps(f, _mm256_mul_ps(ds, _mm256_set1_ps(xt->d)),
                                                                    _mm256_load_ps(tot[t] + 8 * h)));
                }
            }
    }
    if (TYPE == QWEN3C_TYPE_Q6_K) return;
    for (int h = 0; h < H; h++) {
        const int row0 = 8 * (hf0 + h);
        const __m256 ds = _mm256_mul_ps(d[h], u8x8_ps(rec + 64 + 16 * b + row0));
        const __m256 dm = _mm256_mul_ps(f16x8_ps(rec + 32 + 2 * row0), u8x8_ps(rec + 192 + 16 * b + row0));
        for (int t = 0; t < NT; t++) {
            const BlockQ24 *xt = xb + t * x_stride;
            const int a = t * H + h;
            const __m256i iml = _mm256_add_epi32(_mm256_slli_epi32(am[a], 8), al[a]);
            const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ah[a]), _mm256_set1_ps(65536.0f), _mm256_cvtepi32_ps(iml));
            const __m256 v = _mm256_fmadd_ps(f, _mm256_mul_ps(ds, _mm256_set1_ps(xt->d)), _mm256_load_ps(tot[t] + 8 * h));
            _mm256_store_ps(tot[t] + 8 * h, _mm256_fnmadd_ps(dm, _mm256_set1_ps(xt->sx), v));
        }
    }
}

/* Rows 8 (hf0 + h) .. + 7, h < H, of one group x NT tokens over all ns super-blocks: out[t][r]
 * for t < NT and the group's first `valid` rows. TYPE, NT, H are compile-time constants. */
static inline __attribute__((always_inline)) void
halves_tile(const int TYPE, const int NT, const int H, int hf0, const uint8_t *g, int64_t ns,
            const BlockQ24 *x, int64_t x_stride, float *out, int64_t out_stride, int valid) {
    const size_t rb = TYPE == QWEN3C_TYPE_Q4_K ? 2368 : TYPE == QWEN3C_TYPE_Q5_K ? 2880 : 3360;
    _Alignas(32) float tot[TILE_T][16];
    for (int t = 0; t < NT; t++)
        for (int h = 0; h < H; h++) _mm256_store_ps(tot[t] + 8 * h, _mm256_setzero_ps());
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *rec = g + (size_t)s * rb;
        const BlockQ24 *xs = x + s * (QK_K / QK);
#pragma GCC unroll 8
        for (int b = 0; b < QK_K / QK; b++) block(TYPE, NT, H, rec, b, hf0, xs + b, x_stride, tot);
    }
    store_halves(out, out_stride, tot, NT, H, hf0, valid);
}

/* Rows [r0, r1) (whole groups from r0) x the tokens [t0, t0 + NT): for each group, its 8-row
 * halves that hold a valid row, both in one pass for one token (AVX2_GROUP_HALVES). */
static inline __attribute__((always_inline)) void
rows_tile(const int TYPE, const int NT, const QTensor *w, int64_t r0, int64_t r1, const BlockQ24 *x,
          int64_t nb, float *out, int64_t out_stride) {
    const int64_t ns = w->cols / QK_K; /* super-blocks per row */
    const size_t group_bytes = q24k_packed_size(w->type, GR, w->cols);
#define HALVES(g, r, valid, H, hf0) halves_tile(TYPE, NT, H, hf0, g, ns, x, nb, out + (r), out_stride, valid)
    AVX2_GROUP_HALVES(NT, r0, r1, w->packed, group_bytes, HALVES);
#undef HALVES
}

Q24_ROWS_BY_TYPE(q4_k, QWEN3C_TYPE_Q4_K, q5_k, QWEN3C_TYPE_Q5_K, q6_k, QWEN3C_TYPE_Q6_K)

const Q24KKernels TIER_TABLE(q24k_kernels) = {q24k_packed_size, q24k_pack, rows, NULL};
