/*
 * q24_avx2.c -- the q24 kernels for AVX2 CPUs (quant_q24.c has the format): the activation
 * quantization, 8 lanes at a time, and Q8_0 / Q4_0 / Q4_1 x 24-bit activation blocks. A 64-byte
 * chunk of a packed group (4 columns x 16 rows) is two ymm halves, rows 0-7 and 8-15; the byte
 * dot products are avx2_common.h's DOTS (vpdpbusd with AVX-VNNI, else vpmaddubsw + vpmaddwd;
 * Q8_0's bytes w + 128, up to 255, are then split into nibbles so that no int16 step can
 * saturate, or, when no weight of the matrix is -128, multiplied as signed bytes: DOTS_SIGNED).
 * A batch: one half of a group at a time for up to TILE_T tokens; decode: both halves in one
 * pass (as q24k_avx2.c). The same numbers as q24_scalar.c.
 */
#include "avx2_common.h"
#include "gemm_avx2.h"
#include "q24.h"

#define TILE_T 4 /* tokens per batch tile: 12 accumulators + a chunk + a broadcast (16 ymm) */

/* ---------------------------------------------------------------------------------------
 * Activation quantization (the same numbers as q24_scalar.c's quantize_block)
 * ------------------------------------------------------------------------------------- */
static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

static void quantize_block(const float *x, BlockQ24 *o) {
    __m256 xv[4];
    for (int k = 0; k < 4; k++) xv[k] = _mm256_loadu_ps(x + 8 * k);
    /* NaN / inf: all exponent bits set; max |x| over the finite values */
    const __m256 expo = _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)), abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 bad = _mm256_setzero_ps(), amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        const __m256 e = _mm256_cmp_ps(_mm256_and_ps(xv[k], expo), expo, _CMP_EQ_OQ);
        bad = _mm256_or_ps(bad, e);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(e, _mm256_and_ps(xv[k], abs)));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    /* sum x in q24_sum32's order: lanes i + 16, then i + 8, i + 4, i + 2, i + 1 */
    const __m256 s16 = _mm256_add_ps(_mm256_add_ps(xv[0], xv[2]), _mm256_add_ps(xv[1], xv[3]));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s16), _mm256_extractf128_ps(s16, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    o->sx = _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
    float id;
    const int is_bad = _mm256_movemask_ps(bad) != 0;
    o->d = q24_act_scale(_mm_cvtss_f32(m4), is_bad, &id);
    if (is_bad) { /* d is NaN: zero digits, as the plain C */
        memset(o->h, 0, 3 * QK);
        o->sh = o->sml = 0;
        q24_set_halves(o, 0, 0);
        return;
    }
    const __m256i lo = _mm256_set1_epi32(-VMAX), hi = _mm256_set1_epi32(VMAX), bias = _mm256_set1_epi32(0x808080);
    /* per 128-bit lane: bytes 0 (l), 1 (m), 2 (h) of each int32, grouped; then dwords reordered */
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, -1, -1, -1, -1,
                                          0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, -1, -1, -1, -1);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i sh = _mm256_setzero_si256(), sv = sh;
    int32_t sh0 = 0, sml0 = 0;
    for (int k = 0; k < 4; k++) {
        __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(xv[k], _mm256_set1_ps(id))); /* nearest even */
        v = _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
        /* v = 65536 h + 256 m + l with signed digits: they are the bytes of (v + bias) ^ bias */
        const __m256i w = _mm256_xor_si256(_mm256_add_epi32(v, bias), bias);
        const __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(w, pick), order);
        const __m128i lm = _mm256_castsi256_si128(b);
        _mm_storel_epi64((__m128i *)(o->l + 8 * k), lm);
        _mm_storel_epi64((__m128i *)(o->m + 8 * k), _mm_unpackhi_epi64(lm, lm));
        _mm_storel_epi64((__m128i *)(o->h + 8 * k), _mm256_extracti128_si256(b, 1));
        sh = _mm256_add_epi32(sh, _mm256_srai_epi32(_mm256_slli_epi32(w, 8), 24));
        sv = _mm256_add_epi32(sv, v);
        if (k == 1) sh0 = hsum_epi32(sh), sml0 = hsum_epi32(sv) - 65536 * sh0;
    }
    /* sh = sum(h); sml = 256 sum(m) + sum(l) = sum(v) - 65536 sh (all exact in int32) */
    o->sh = hsum_epi32(sh);
    o->sml = hsum_epi32(sv) - 65536 * o->sh;
    q24_set_halves(o, sh0, sml0);
}

static void quantize(const float *x, int64_t i0, int64_t i1, void *xq) {
    BlockQ24 *o = (BlockQ24 *)xq;
    for (int64_t i = i0; i < i1; i++) quantize_block(x + i * QK, o + i); /* rows are whole blocks */
}

/* ---------------------------------------------------------------------------------------
 * Kernels
 * ------------------------------------------------------------------------------------- */
/* Q8_0's weight bytes u = w + 128 (0..255) against digits: DOTS, without AVX-VNNI as
 * 16 * (high nibbles) + (low nibbles), each within DOTS' bounds. Without AVX-VNNI a matrix
 * whose weights are all in -127..127 (QTensor.q8_min unset: every file llama.cpp's quantizer
 * writes) takes DOTS_SIGNED instead: the weights w themselves, signed. */
#if defined(__AVXVNNI__)
#define DOTS_Q8(acc, u0, s0, u1, s1) DOTS(acc, u0, s0, u1, s1)
#define DOTS_SIGNED(acc, w0, s0, w1, s1, mul) DOTS(acc, w0, s0, w1, s1) /* not taken: Q8_SIGNED_PATH */
#define Q8_SIGNED_PATH 0
#else
#define Q8_SIGNED_PATH 1
/* acc += mul (int16 lanes: 1 or 256) times the sums of 4 adjacent products w * s of the signed
 * weight bytes w0 and w1 (-127..127) and digits s0 and s1: vpmaddubsw(|s|, w with the sign of s),
 * whose pairs stay within int16 (2 * 128 * 127 < 32768; the sign of -128 is taken from s, so -w
 * never meets w = -128): one vpmaddubsw per chunk and digit against the nibbles' two, and w * s
 * is summed directly, with no offset to take off afterwards. The m and l digits share one
 * accumulator, 256 sum(w m) + sum(w l) (|.| < 2^28): the u path's int32 sums after its offset
 * step, so the same results, with two accumulators per row half instead of three (AVX2 has 16
 * registers). */
#define DOTS_SIGNED(acc, w0, s0, w1, s1, mul)                                                      \
    do {                                                                                           \
        (acc) = _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(s0), _mm256_sign_epi8((w0), (s0))), (mul))); \
        (acc) = _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(s1), _mm256_sign_epi8((w1), (s1))), (mul))); \
        __asm__("" : "+x"(acc)); /* here: else gcc sums the products apart and keeps them on the stack */ \
    } while (0)
#define DOTS_Q8(acc, u0, s0, u1, s1)                                                                \
    do {                                                                                            \
        const __m256i m15_ = _mm256_set1_epi8(0x0f);                                                \
        __m256i lo_ = _mm256_setzero_si256(), hi_ = lo_;                                            \
        DOTS(lo_, _mm256_and_si256(u0, m15_), s0, _mm256_and_si256(u1, m15_), s1);                  \
        DOTS(hi_, _mm256_and_si256(_mm256_srli_epi16(u0, 4), m15_), s0,                             \
             _mm256_and_si256(_mm256_srli_epi16(u1, 4), m15_), s1);                                 \
        (acc) = _mm256_add_epi32((acc), _mm256_add_epi32(lo_, _mm256_slli_epi32(hi_, 4)));          \
    } while (0)
#endif

/* The weight integers of chunk c (0..7), half hf, of a block record's quants qp. */
static inline __attribute__((always_inline)) __m256i chunk_u(const int TYPE, const uint8_t *qp, int c, int hf) {
    if (TYPE == QWEN3C_TYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(qp + 64 * c + 32 * hf));
    const __m256i raw = _mm256_loadu_si256((const __m256i *)(qp + 64 * (c & 3) + 32 * hf));
    return _mm256_and_si256(c < 4 ? raw : _mm256_srli_epi16(raw, 4), _mm256_set1_epi8(0x0f));
}

/* Rows 8 (hf0 + h) .. + 7, h < H, of one group x NT tokens over all nb blocks (see
 * q24k_avx2.c's halves_tile: H = 2 for decode shares each activation broadcast between the
 * group's two halves). SGN (Q8_0 without AVX-VNNI, no weight -128): DOTS_SIGNED. */
static inline __attribute__((always_inline)) void
halves_tile(const int TYPE, const int SGN, const int NT, const int H, int hf0, const uint8_t *g, int64_t nb,
            const BlockQ24 *x, int64_t x_stride, float *out, int64_t out_stride, int valid) {
    const int q41 = TYPE == QWEN3C_TYPE_Q4_1, rb = q24_record_bytes(TYPE);
    const int off_shift = TYPE == QWEN3C_TYPE_Q8_0 ? 7 : 3; /* u = w + 128 / q4 = w + 8 */
    _Alignas(32) float tot[TILE_T][16];
    for (int t = 0; t < NT; t++)
        for (int h = 0; h < H; h++) _mm256_store_ps(tot[t] + 8 * h, _mm256_setzero_ps());
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = g + (size_t)b * (size_t)rb, *qp = p + (q41 ? 64 : 32);
        q24_prefetch(p, rb, Q24_AHEAD_AVX2, 0);
        const BlockQ24 *xb = x + b;
        __m256i ah[4], am[4], al[4]; /* token t, half h at t H + h (NT H <= 4) */
        for (int a = 0; a < NT * H; a++) ah[a] = am[a] = al[a] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int c = 0; c < 8; c += DOT_STEP) {
            __m256i u0[2], u1[2];
            (void)u1;
            for (int h = 0; h < H; h++) {
                u0[h] = chunk_u(TYPE, qp, c, hf0 + h);
                u1[h] = DOT_STEP == 2 ? chunk_u(TYPE, qp, c + 1, hf0 + h) : u0[h];
                if (SGN) { /* w = u - 128 */
                    u0[h] = _mm256_xor_si256(u0[h], _mm256_set1_epi8((char)0x80));
                    u1[h] = _mm256_xor_si256(u1[h], _mm256_set1_epi8((char)0x80));
                }
            }
            for (int t = 0; t < NT; t++) {
                const BlockQ24 *xt = xb + t * x_stride;
#define DIGIT(acc, dg, mul)                                                                     \
                do {                                                                            \
                    const __m256i s0 = bcast4(xt->dg + 4 * c), s1 = DOT_STEP == 2 ? bcast4(xt->dg + 4 * c + 4) : s0; \
                    (void)s1;                                                                   \
                    for (int h = 0; h < H; h++) {                                               \
                        if (SGN) DOTS_SIGNED(acc[t * H + h], u0[h], s0, u1[h], s1, mul);       \
                        else if (TYPE == QWEN3C_TYPE_Q8_0) DOTS_Q8(acc[t * H + h], u0[h], s0, u1[h], s1); \
                        else DOTS(acc[t * H + h], u0[h], s0, u1[h], s1);                        \
                    }                                                                           \
                } while (0)
                DIGIT(ah, h, _mm256_set1_epi16(1));
                if (SGN) { /* am: 256 sum(w m) + sum(w l) */
                    DIGIT(am, m, _mm256_set1_epi16(256));
                    DIGIT(am, l, _mm256_set1_epi16(1));
                } else {
                    DIGIT(am, m, _mm256_set1_epi16(1));
                    DIGIT(al, l, _mm256_set1_epi16(1));
                }
#undef DIGIT
            }
        }
        for (int h = 0; h < H; h++) {
            const int row0 = 8 * (hf0 + h);
            const __m256 dw = f16x8_ps(p + 2 * row0);
            for (int t = 0; t < NT; t++) {
                const BlockQ24 *xt = xb + t * x_stride;
                const int a = t * H + h;
                __m256i ih = ah[a], iml = SGN ? am[a] : _mm256_add_epi32(_mm256_slli_epi32(am[a], 8), al[a]);
                if (!q41 && !SGN) { /* the offset of u (SGN summed w itself) */
                    ih = _mm256_sub_epi32(ih, _mm256_set1_epi32(xt->sh * (1 << off_shift)));
                    iml = _mm256_sub_epi32(iml, _mm256_set1_epi32(xt->sml * (1 << off_shift)));
                }
                const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ih), _mm256_set1_ps(65536.0f), _mm256_cvtepi32_ps(iml));
                __m256 v = _mm256_fmadd_ps(f, _mm256_mul_ps(dw, _mm256_set1_ps(xt->d)), _mm256_load_ps(tot[t] + 8 * h));
                if (q41) v = _mm256_fmadd_ps(f16x8_ps(p + 32 + 2 * row0), _mm256_set1_ps(xt->sx), v);
                _mm256_store_ps(tot[t] + 8 * h, v);
            }
        }
    }
    store_halves(out, out_stride, tot, NT, H, hf0, valid);
}

/* Rows [r0, r1) (whole groups from r0) x the tokens [t0, t0 + NT): for each group, its 8-row
 * halves that hold a valid row, both in one pass for one token (AVX2_GROUP_HALVES). */
static inline __attribute__((always_inline)) void
rows_tile(const int TYPE, const int NT, const QTensor *w, int64_t r0, int64_t r1, const BlockQ24 *x,
          int64_t nb, float *out, int64_t out_stride) {
    const size_t group_bytes = (size_t)nb * (size_t)q24_record_bytes(w->type);
#define HALVES(g, r, valid, H, hf0) halves_tile(TYPE, 0, NT, H, hf0, g, nb, x, nb, out + (r), out_stride, valid)
#define HALVES_SIGNED(g, r, valid, H, hf0) halves_tile(TYPE, 1, NT, H, hf0, g, nb, x, nb, out + (r), out_stride, valid)
    if (Q8_SIGNED_PATH && TYPE == QWEN3C_TYPE_Q8_0 && !w->q8_min) {
        AVX2_GROUP_HALVES(NT, r0, r1, w->packed, group_bytes, HALVES_SIGNED);
        return;
    }
    AVX2_GROUP_HALVES(NT, r0, r1, w->packed, group_bytes, HALVES);
#undef HALVES_SIGNED
#undef HALVES
}

Q24_ROWS_BY_TYPE(q8_0, QWEN3C_TYPE_Q8_0, q4_0, QWEN3C_TYPE_Q4_0, q4_1, QWEN3C_TYPE_Q4_1)

/* ---------------------------------------------------------------------------------------
 * Prefill in float32 (Q24Kernels.rows_float), which beats the integer sums: on AVX2 CPUs
 * without AVX-VNNI, whose byte products (vpmaddubsw + vpmaddwd) cost more than 8-lane FMAs, and
 * (since the GEMM keeps its partial sums contiguous) with AVX-VNNI too (Q8_0, Qwen3-0.6B shapes,
 * 512 tokens: 1.065x).
 * gemm_avx2.h, the weights dequantized from the packed records to quant.c's values (d w,
 * d (q - 8), (d q) + m: each rounded as there); a group's 16 rows are one micro-panel, byte i of
 * every 32-bit lane of a chunk's half is one column of its 8 rows.
 * ------------------------------------------------------------------------------------- */
/* byte i (0..3) of every 32-bit lane, sign-extended */
static inline __attribute__((always_inline)) __m256i byte_s32(__m256i v, int i) {
    return _mm256_srai_epi32(i == 3 ? v : _mm256_slli_epi32(v, 24 - 8 * i), 24);
}

/* GemmFill: the group at row0 (a multiple of 16) x columns [k0, k0 + kc) (whole blocks) */
static inline __attribute__((always_inline)) void
fill_packed(const int TYPE, const QTensor *w, int64_t row0, int64_t k0, int kc, float *panel) {
    const size_t rb = (size_t)q24_record_bytes(TYPE);
    const uint8_t *g = (const uint8_t *)w->packed + ((size_t)(row0 / GR) * (size_t)(w->cols / QK) + (size_t)(k0 / QK)) * rb;
    const __m256i m15 = _mm256_set1_epi32(15), x80 = _mm256_set1_epi8((char)0x80), k8 = _mm256_set1_epi32(8);
    for (int b = 0; b < kc / QK; b++) {
        const uint8_t *rec = g + (size_t)b * rb;
        float *col = panel + QK * b * GEMM_MR; /* column 32 b */
        for (int hf = 0; hf < 2; hf++) {
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rec + 16 * hf)));
            if (TYPE == QWEN3C_TYPE_Q8_0) {
                for (int c = 0; c < 8; c++) {
                    const __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(rec + 32 + 64 * c + 32 * hf)), x80);
                    for (int i = 0; i < 4; i++)
                        _mm256_store_ps(col + (4 * c + i) * GEMM_MR + 8 * hf,
                                        _mm256_mul_ps(_mm256_cvtepi32_ps(byte_s32(q, i)), d));
                }
                continue;
            }
            const int q41 = TYPE == QWEN3C_TYPE_Q4_1, off = q41 ? 64 : 32;
            const __m256 m = q41 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rec + 32 + 16 * hf))) : d;
            for (int v = 0; v < 4; v++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(rec + off + 64 * v + 32 * hf));
                for (int i = 0; i < 4; i++)
                    for (int nib = 0; nib < 2; nib++) { /* column 4v + i, then 16 + 4v + i */
                        __m256i q = _mm256_and_si256(_mm256_srli_epi32(raw, 8 * i + 4 * nib), m15);
                        float *o = col + (16 * nib + 4 * v + i) * GEMM_MR + 8 * hf;
                        if (q41) _mm256_store_ps(o, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q)), m));
                        else _mm256_store_ps(o, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q, k8))));
                    }
            }
        }
    }
}
static void fill_q8_0(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q8_0, w, row0, k0, kc, panel);
}
static void fill_q4_0(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q4_0, w, row0, k0, kc, panel);
}
static void fill_q4_1(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q4_1, w, row0, k0, kc, panel);
}

static void rows_float(float *out, int64_t out_stride, const float *x, int64_t x_stride, int n_tok,
                       const QTensor *w, int64_t r0, int64_t r1) {
    switch (w->type) {
    case QWEN3C_TYPE_Q8_0: gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q8_0); break;
    case QWEN3C_TYPE_Q4_0: gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q4_0); break;
    default: gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q4_1); break;
    }
}

const Q24Kernels TIER_TABLE(q24_kernels) = {true, q24_packed_size, q24_pack, q24_act_bytes, quantize, rows,
                                            rows_float,
                                            1u << QWEN3C_TYPE_Q8_0 | 1u << QWEN3C_TYPE_Q4_0 | 1u << QWEN3C_TYPE_Q4_1, Q8_SIGNED_PATH};
