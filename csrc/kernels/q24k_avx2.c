/*
 * q24k_avx2.c -- the q24k kernels for AVX2 CPUs (quant_q24k.c has the format and the
 * arithmetic): a 64-byte chunk of a packed group (4 columns x 16 rows) is two 32-byte halves,
 * rows 0-7 and 8-15, each a ymm of 8 int32 lanes; the byte dot products are avx2_common.h's
 * DOT2 (vpdpbusd with AVX-VNNI, else vpmaddubsw + vpmaddwd, exact for these 4-6-bit weights).
 * Decode (one token) streams both halves of each chunk; a batch takes one half at a time for
 * TILE_T tokens (16 ymm registers: 3 TILE_T accumulators). The same numbers as q24k_scalar.c.
 */
#include "avx2_common.h"
#include "q24.h"

#define QK_K 256
#if defined(__AVXVNNI__)
#define TILE_T 4 /* 12 accumulators + weights + a broadcast */
#else
#define TILE_T 3 /* DOT2 needs two more registers without VNNI */
#endif

/* How block b (0..7) of a super-block unpacks its weight integers (runtime shift counts, as
 * in q24k_avx512.c; 16-bit lane shifts of at most 4 move no bit of interest across a byte). */
typedef struct {
    const uint8_t *lo, *hi;      /* its chunks of nibbles / of high bits (64 bytes apart) */
    __m128i lo_shift;            /* 0 or 4: which nibble */
    __m128i hi_left, hi_right;   /* the block's high bit(s) to bit 4 (Q5_K) / bits 4-5 (Q6_K) */
} BlockUnpack;

static inline __attribute__((always_inline)) BlockUnpack block_unpack(const int TYPE, const uint8_t *rec, int b) {
    BlockUnpack p;
    int at; /* the block's first high bit */
    if (TYPE == QWEN3C_TYPE_Q6_K) {
        const uint8_t *half = rec + 288 + 1536 * (b / 4);
        const int k = b % 4;
        p.lo = half + 512 * (k % 2);
        p.lo_shift = _mm_cvtsi32_si128(4 * (k / 2));
        p.hi = half + 1024;
        at = 2 * k;
    } else {
        p.lo = rec + 320 + 512 * (b / 2);
        p.lo_shift = _mm_cvtsi32_si128(4 * (b % 2));
        p.hi = rec + 2368;
        at = b;
    }
    p.hi_left = _mm_cvtsi32_si128(at < 4 ? 4 - at : 0);
    p.hi_right = _mm_cvtsi32_si128(at > 4 ? at - 4 : 0);
    return p;
}

/* The weight integers u (0..63) of half hf (rows 8 hf .. 8 hf + 7) of chunk c. */
static inline __attribute__((always_inline)) __m256i chunk_u(const int TYPE, const BlockUnpack *p, int c, int hf) {
    const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(p->lo + 64 * c + 32 * hf)),
                                                         p->lo_shift), _mm256_set1_epi8(0x0f));
    if (TYPE == QWEN3C_TYPE_Q4_K) return lo;
    const __m256i h = _mm256_loadu_si256((const __m256i *)(p->hi + 64 * c + 32 * hf));
    const __m256i hs = _mm256_srl_epi16(_mm256_sll_epi16(h, p->hi_left), p->hi_right);
    return _mm256_or_si256(lo, _mm256_and_si256(hs, _mm256_set1_epi8(TYPE == QWEN3C_TYPE_Q6_K ? 0x30 : 0x10)));
}

/* Halves [H0, H0 + NH) of one group of 16 rows x NT tokens over all ns super-blocks: out[t][r]
 * for t < NT and the first `valid` rows. TYPE, NT, H0, NH are compile-time constants. */
static inline __attribute__((always_inline)) void
group_tile(const int TYPE, const int NT, const int H0, const int NH, const uint8_t *g, int64_t ns,
           const BlockQ24 *x, int64_t x_stride, float *out, int64_t out_stride, int valid) {
    const int q6 = TYPE == QWEN3C_TYPE_Q6_K;
    const size_t rb = TYPE == QWEN3C_TYPE_Q4_K ? 2368 : TYPE == QWEN3C_TYPE_Q5_K ? 2880 : 3360;
    __m256 tot[2][TILE_T];
    for (int hf = 0; hf < NH; hf++)
        for (int t = 0; t < NT; t++) tot[hf][t] = _mm256_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *rec = g + (size_t)s * rb;
#pragma GCC unroll 1
        for (int b = 0; b < QK_K / QK; b++) {
            const BlockQ24 *xb = x + s * (QK_K / QK) + b;
            const BlockUnpack up = block_unpack(TYPE, rec, b);
            __m256i ah[2][TILE_T], am[2][TILE_T], al[2][TILE_T];
            for (int hf = 0; hf < NH; hf++)
                for (int t = 0; t < NT; t++) ah[hf][t] = am[hf][t] = al[hf][t] = _mm256_setzero_si256();
            for (int part = 0; part < 2; part++) {
                for (int c = 4 * part; c < 4 * part + 4; c += 2) {
                    for (int hf = 0; hf < NH; hf++) {
                        const __m256i u0 = chunk_u(TYPE, &up, c, H0 + hf), u1 = chunk_u(TYPE, &up, c + 1, H0 + hf);
                        for (int t = 0; t < NT; t++) {
                            const BlockQ24 *xt = xb + t * x_stride;
                            DOT2(ah[hf][t], u0, bcast4(xt->h + 4 * c), u1, bcast4(xt->h + 4 * c + 4));
                            DOT2(am[hf][t], u0, bcast4(xt->m + 4 * c), u1, bcast4(xt->m + 4 * c + 4));
                            DOT2(al[hf][t], u0, bcast4(xt->l + 4 * c), u1, bcast4(xt->l + 4 * c + 4));
                        }
                    }
                }
                if (!q6 && part == 0) continue;
                for (int hf = 0; hf < NH; hf++) {
                    const int row0 = 8 * (H0 + hf);
                    const __m256 d = f16x8_ps(rec + 2 * row0);
                    if (q6) { /* sub-block 2b + part: ih - 32 sh_part, iml - 32 sml_part */
                        const __m256 ds = _mm256_mul_ps(d, s8x8_ps(rec + 32 + 16 * (2 * b + part) + row0));
                        for (int t = 0; t < NT; t++) {
                            const BlockQ24 *xt = xb + t * x_stride;
                            const __m256i ih = _mm256_sub_epi32(ah[hf][t], _mm256_set1_epi32(xt->q6k[2 * part]));
                            const __m256i iml = _mm256_sub_epi32(_mm256_add_epi32(_mm256_slli_epi32(am[hf][t], 8), al[hf][t]),
                                                                 _mm256_set1_epi32(xt->q6k[2 * part + 1]));
                            const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ih), _mm256_set1_ps(65536.0f),
                                                             _mm256_cvtepi32_ps(iml));
                            tot[hf][t] = _mm256_fmadd_ps(f, _mm256_mul_ps(ds, _mm256_set1_ps(xt->d)), tot[hf][t]);
                            ah[hf][t] = am[hf][t] = al[hf][t] = _mm256_setzero_si256();
                        }
                        continue;
                    }
                    const __m256 ds = _mm256_mul_ps(d, u8x8_ps(rec + 64 + 16 * b + row0));
                    const __m256 dm = _mm256_mul_ps(f16x8_ps(rec + 32 + 2 * row0), u8x8_ps(rec + 192 + 16 * b + row0));
                    for (int t = 0; t < NT; t++) {
                        const BlockQ24 *xt = xb + t * x_stride;
                        const __m256i iml = _mm256_add_epi32(_mm256_slli_epi32(am[hf][t], 8), al[hf][t]);
                        const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ah[hf][t]), _mm256_set1_ps(65536.0f),
                                                         _mm256_cvtepi32_ps(iml));
                        tot[hf][t] = _mm256_fmadd_ps(f, _mm256_mul_ps(ds, _mm256_set1_ps(xt->d)), tot[hf][t]);
                        tot[hf][t] = _mm256_fnmadd_ps(dm, _mm256_set1_ps(xt->sx), tot[hf][t]);
                    }
                }
            }
        }
    }
    for (int hf = 0; hf < NH; hf++) {
        const int row0 = 8 * (H0 + hf);
        if (valid >= row0 + 8) {
            for (int t = 0; t < NT; t++) _mm256_storeu_ps(out + t * out_stride + row0, tot[hf][t]);
        } else if (valid > row0) {
            const __m256i m = first_lanes(valid - row0);
            for (int t = 0; t < NT; t++) _mm256_maskstore_ps(out + t * out_stride + row0, m, tot[hf][t]);
        }
    }
}

/* All n_tok tokens of one group: decode both halves in one pass (one stream), a batch one half
 * at a time in tiles of TILE_T tokens. */
static inline __attribute__((always_inline)) void
group_all_tokens(const int TYPE, const uint8_t *g, int64_t ns, const BlockQ24 *x, int n_tok,
                 float *out, int64_t out_stride, int valid) {
    const int64_t nb = ns * (QK_K / QK); /* activation blocks per token */
    if (n_tok == 1) {
        group_tile(TYPE, 1, 0, 2, g, ns, x, nb, out, out_stride, valid);
        return;
    }
    for (int hf = 0; hf < (valid > 8 ? 2 : 1); hf++) {
        int t = 0;
        for (; t + TILE_T <= n_tok; t += TILE_T) {
            if (hf == 0) group_tile(TYPE, TILE_T, 0, 1, g, ns, x + t * nb, nb, out + t * out_stride, out_stride, valid);
            else         group_tile(TYPE, TILE_T, 1, 1, g, ns, x + t * nb, nb, out + t * out_stride, out_stride, valid);
        }
        const int left = n_tok - t;
        const BlockQ24 *xl = x + t * nb;
        float *ol = out + t * out_stride;
#define REST(NT) (hf == 0 ? group_tile(TYPE, NT, 0, 1, g, ns, xl, nb, ol, out_stride, valid) \
                          : group_tile(TYPE, NT, 1, 1, g, ns, xl, nb, ol, out_stride, valid))
        if (left == 3 && TILE_T > 3) REST(3);
        else if (left == 2) REST(2);
        else if (left == 1) REST(1);
#undef REST
    }
}

static void group_q4_k(const uint8_t *g, int64_t ns, const BlockQ24 *x, int n_tok, float *out,
                       int64_t out_stride, int valid) {
    group_all_tokens(QWEN3C_TYPE_Q4_K, g, ns, x, n_tok, out, out_stride, valid);
}
static void group_q5_k(const uint8_t *g, int64_t ns, const BlockQ24 *x, int n_tok, float *out,
                       int64_t out_stride, int valid) {
    group_all_tokens(QWEN3C_TYPE_Q5_K, g, ns, x, n_tok, out, out_stride, valid);
}
static void group_q6_k(const uint8_t *g, int64_t ns, const BlockQ24 *x, int n_tok, float *out,
                       int64_t out_stride, int valid) {
    group_all_tokens(QWEN3C_TYPE_Q6_K, g, ns, x, n_tok, out, out_stride, valid);
}

static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    const int64_t ns = w->cols / QK_K;
    const size_t group_bytes = q24k_packed_size(w->type, GR, w->cols);
    for (int64_t r = r0; r < r1; r += GR) {
        const uint8_t *g = (const uint8_t *)w->packed + (size_t)(r / GR) * group_bytes;
        const int valid = r1 - r < GR ? (int)(r1 - r) : GR;
        switch (w->type) {
        case QWEN3C_TYPE_Q4_K: group_q4_k(g, ns, xq, n_tok, out + r, out_stride, valid); break;
        case QWEN3C_TYPE_Q5_K: group_q5_k(g, ns, xq, n_tok, out + r, out_stride, valid); break;
        default: group_q6_k(g, ns, xq, n_tok, out + r, out_stride, valid); break;
        }
    }
}

const Q24KKernels TIER_TABLE(q24k_kernels) = {q24k_packed_size, q24k_pack, rows};
