/*
 * q24k_avx512.c -- the q24k kernels for AVX-512 VNNI (quant_q24k.c has the format and the
 * arithmetic): per 32-column block, the 4-6-bit weight integers of 16 rows are unpacked into
 * 8 chunks of 64 bytes (4 columns x 16 rows each) and each chunk meets the three activation
 * digits of up to TILE_T tokens in vpdpbusd (16 rows x 4 columns per instruction); the sub-block
 * scales and mins are applied per block in float32. The same numbers as q24k_scalar.c.
 */
#include <immintrin.h>

#include "q24.h"

#define QK_K 256
#define TILE_T 8 /* tokens per batch tile: 24 int32 accumulators (of 32 zmm registers) */

/* How block b (0..7) of a super-block unpacks its weight integers u (runtime shift counts:
 * vpsrlw / vpsllw by a register cost as much as by an immediate). */
typedef struct {
    const uint8_t *lo;   /* its 8 chunks of nibbles (64 bytes apart) */
    const uint8_t *hi;   /* Q5_K / Q6_K: its 8 chunks of high bits */
    __m128i lo_shift;    /* 0 or 4: the nibble */
    __m128i hi_left, hi_right; /* Q6_K: bits 2k, 2k + 1 to bits 4, 5 (16-bit lane shifts move
                                  no bit of interest across a byte: the shift is <= 4) */
    __m512i hi_bit;      /* Q5_K: bit b */
} BlockUnpack;

static inline __attribute__((always_inline)) BlockUnpack block_unpack(const int TYPE, const uint8_t *rec, int b) {
    BlockUnpack p;
    if (TYPE == QWEN3C_TYPE_Q6_K) {
        const uint8_t *half = rec + 288 + 1536 * (b / 4);
        const int k = b % 4;
        p.lo = half + 512 * (k % 2);
        p.lo_shift = _mm_cvtsi32_si128(4 * (k / 2));
        p.hi = half + 1024;
        p.hi_left = _mm_cvtsi32_si128(k < 2 ? 4 - 2 * k : 0);
        p.hi_right = _mm_cvtsi32_si128(k < 2 ? 0 : 2 * k - 4);
        p.hi_bit = _mm512_setzero_si512();
    } else {
        p.lo = rec + 320 + 512 * (b / 2);
        p.lo_shift = _mm_cvtsi32_si128(4 * (b % 2));
        p.hi = rec + 2368;
        p.hi_left = p.hi_right = _mm_setzero_si128();
        p.hi_bit = _mm512_set1_epi8((char)(1 << b));
    }
    return p;
}

/* The weight integers u (0..63) of chunk c: 16 rows x 4 columns. */
static inline __attribute__((always_inline)) __m512i chunk_u(const int TYPE, const BlockUnpack *p, int c) {
    const __m512i nib = _mm512_set1_epi8(0x0f);
    const __m512i lo = _mm512_and_si512(_mm512_srl_epi16(_mm512_loadu_si512(p->lo + 64 * c), p->lo_shift), nib);
    if (TYPE == QWEN3C_TYPE_Q4_K) return lo;
    const __m512i h = _mm512_loadu_si512(p->hi + 64 * c);
    if (TYPE == QWEN3C_TYPE_Q5_K) /* + 16 where bit b is set */
        return _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(h, p->hi_bit), lo, _mm512_set1_epi8(16));
    const __m512i hs = _mm512_srl_epi16(_mm512_sll_epi16(h, p->hi_left), p->hi_right);
    return _mm512_ternarylogic_epi32(lo, hs, _mm512_set1_epi8(0x30), 0xF8); /* lo | (hs & 0x30) */
}

/* 16 bytes at p as 16 floats (unsigned or signed bytes) */
static inline __m512 u8x16_ps(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
static inline __m512 s8x16_ps(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

/* One group of 16 rows x NT tokens (NT <= TILE_T) over all ns super-blocks: out[t][r] for
 * t < NT. TYPE and NT are compile-time constants in every caller (always_inline). */
static inline __attribute__((always_inline)) void
group_tile(const int TYPE, const int NT, const uint8_t *g, int64_t ns, const BlockQ24 *x,
           int64_t x_stride, float *out, int64_t out_stride, __mmask16 rows_mask) {
    const int q6 = TYPE == QWEN3C_TYPE_Q6_K;
    const size_t rb = TYPE == QWEN3C_TYPE_Q4_K ? 2368 : TYPE == QWEN3C_TYPE_Q5_K ? 2880 : 3360;
    __m512 tot[TILE_T];
    for (int t = 0; t < NT; t++) tot[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *rec = g + (size_t)s * rb;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)rec));
        const __m512 dmin = q6 ? d : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rec + 32)));
#pragma GCC unroll 1
        for (int b = 0; b < QK_K / QK; b++) {
            const BlockQ24 *xb = x + s * (QK_K / QK) + b;
            __m512i ah[TILE_T], am[TILE_T], al[TILE_T];
            for (int t = 0; t < NT; t++) ah[t] = am[t] = al[t] = _mm512_setzero_si512();
            const BlockUnpack up = block_unpack(TYPE, rec, b);
            /* chunks 0..3 (Q6_K: then the first sub-block's terms), chunks 4..7 */
            /* fully unrolled: otherwise gcc keeps the accumulators in a loop-carried shuffle of
             * register copies (2 moves per vpdpbusd) */
#pragma GCC unroll 2
            for (int part = 0; part < 2; part++) {
#pragma GCC unroll 4
                for (int c4 = 0; c4 < 4; c4++) {
                    const int c = 4 * part + c4;
                    const __m512i u = chunk_u(TYPE, &up, c);
                    for (int t = 0; t < NT; t++) {
                        const BlockQ24 *xt = xb + t * x_stride;
                        ah[t] = dpbusd_bcast(ah[t], u, xt->h + 4 * c);
                        am[t] = dpbusd_bcast(am[t], u, xt->m + 4 * c);
                        al[t] = dpbusd_bcast(al[t], u, xt->l + 4 * c);
                    }
                }
                if (!q6 && part == 0) continue;
                if (q6) { /* sub-block 2b + part: ih - 32 sh_part, iml - 32 sml_part */
                    const __m512 ds = _mm512_mul_ps(d, s8x16_ps(rec + 32 + 16 * (2 * b + part)));
                    for (int t = 0; t < NT; t++) {
                        const BlockQ24 *xt = xb + t * x_stride;
                        const __m512i ih = _mm512_sub_epi32(ah[t], _mm512_set1_epi32(xt->q6k[2 * part]));
                        const __m512i iml = _mm512_sub_epi32(_mm512_add_epi32(_mm512_slli_epi32(am[t], 8), al[t]),
                                                             _mm512_set1_epi32(xt->q6k[2 * part + 1]));
                        const __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ih), _mm512_set1_ps(65536.0f),
                                                         _mm512_cvtepi32_ps(iml));
                        tot[t] = _mm512_fmadd_ps(f, _mm512_mul_ps(ds, _mm512_set1_ps(xt->d)), tot[t]);
                        ah[t] = am[t] = al[t] = _mm512_setzero_si512();
                    }
                    continue;
                }
                const __m512 ds = _mm512_mul_ps(d, u8x16_ps(rec + 64 + 16 * b));
                const __m512 dm = _mm512_mul_ps(dmin, u8x16_ps(rec + 192 + 16 * b));
                for (int t = 0; t < NT; t++) {
                    const BlockQ24 *xt = xb + t * x_stride;
                    const __m512i iml = _mm512_add_epi32(_mm512_slli_epi32(am[t], 8), al[t]);
                    const __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ah[t]), _mm512_set1_ps(65536.0f),
                                                     _mm512_cvtepi32_ps(iml));
                    tot[t] = _mm512_fmadd_ps(f, _mm512_mul_ps(ds, _mm512_set1_ps(xt->d)), tot[t]);
                    tot[t] = _mm512_fnmadd_ps(dm, _mm512_set1_ps(xt->sx), tot[t]);
                }
            }
        }
    }
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(out + t * out_stride, rows_mask, tot[t]);
}

/* Rows [r0, r1) (whole groups from r0) x the tokens [0, NT) of x. */
static inline __attribute__((always_inline)) void
rows_tile(const int TYPE, const int NT, const QTensor *w, int64_t r0, int64_t r1, const BlockQ24 *x,
          int64_t nb, float *out, int64_t out_stride) {
    const int64_t ns = w->cols / QK_K;
    const size_t group_bytes = q24k_packed_size(TYPE, GR, w->cols);
    for (int64_t r = r0; r < r1; r += GR) {
        const uint8_t *g = (const uint8_t *)w->packed + (size_t)(r / GR) * group_bytes;
        const int valid = r1 - r < GR ? (int)(r1 - r) : GR;
        group_tile(TYPE, NT, g, ns, x, nb, out + r, out_stride, (__mmask16)((1u << valid) - 1u));
    }
}

/* Tiles of TILE_T tokens (then 4, 3, 2, 1), each over all the rows: the tile's activations stay
 * in L1 / L2 while the rows' weights (a thread's piece of a matrix) stay in L2. */
static inline __attribute__((always_inline)) void
rows_type(const int TYPE, float *out, int64_t out_stride, const BlockQ24 *x, int n_tok, const QTensor *w,
          int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / QK; /* activation blocks per token */
    int t = 0;
    for (; t + TILE_T <= n_tok; t += TILE_T)
        rows_tile(TYPE, TILE_T, w, r0, r1, x + t * nb, nb, out + t * out_stride, out_stride);
    if (n_tok - t >= 4) {
        rows_tile(TYPE, 4, w, r0, r1, x + t * nb, nb, out + t * out_stride, out_stride);
        t += 4;
    }
    const BlockQ24 *xl = x + t * nb;
    float *ol = out + t * out_stride;
    switch (n_tok - t) {
    case 3: rows_tile(TYPE, 3, w, r0, r1, xl, nb, ol, out_stride); break;
    case 2: rows_tile(TYPE, 2, w, r0, r1, xl, nb, ol, out_stride); break;
    case 1: rows_tile(TYPE, 1, w, r0, r1, xl, nb, ol, out_stride); break;
    default: break;
    }
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

const Q24KKernels q24k_kernels_avx512 = {q24k_packed_size, q24k_pack, rows};
