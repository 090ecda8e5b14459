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
#include "gemm_avx2.h"
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
        for (int b = 0; b < QK_K / QK; b++) {
            q24_prefetch(rec + rb / 8 * b, (int)rb / 8, Q24_AHEAD_AVX2, 0); /* an eighth per block */
            /* Q4_K / Q5_K: a compiler barrier between the blocks. Without it gcc 12
             * interleaves the 8 unrolled blocks, whose accumulators live through both halves
             * of a block, and spills them: a third of the Q5_K decode loop's instructions were
             * stack loads and stores. Measured (150 Qwen3-0.6B-shaped matrices streamed by 2
             * threads, the two builds alternating), decode: with AVX-VNNI Q5_K 1.34-1.45x,
             * Q4_K 1.00-1.04x; without it Q5_K 1.23x, Q4_K 1.16x. Tiles of 2 / 4 / 7 tokens
             * (a batch of a few sequences), AVX-VNNI: Q5_K 1.22 / 1.50 / 1.53x, Q4_K 0.97-0.98
             * / 1.26 / 1.17x (3 tokens: 1.00x), so Q4_K's 2-token tile goes without; without
             * AVX-VNNI 1.00-1.04x. Q6_K (its sums end per sub-block): 0.97-1.02x, without. */
            if (TYPE == QWEN3C_TYPE_Q5_K || (TYPE == QWEN3C_TYPE_Q4_K && NT != 2)) __asm__ volatile("" ::: "memory");
            block(TYPE, NT, H, rec, b, hf0, xs + b, x_stride, tot);
        }
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

/* ---------------------------------------------------------------------------------------
 * Prefill in float32 (Q24KKernels.rows_float): gemm_avx2.h with the weights dequantized from
 * the packed records to quant.c's values ((d sc) q - (dmin mn), (d sc) (q - 32), each product
 * rounded once). A group's 16 rows are one micro-panel; byte i of every 32-bit lane of a
 * chunk's half is one column of its 8 rows: one ymm, no transpose. Faster than the integer
 * sums on AVX2 for every K-quant (8 FMA lanes against DOTS' three passes and the scale steps).
 * ------------------------------------------------------------------------------------- */
static inline __attribute__((always_inline)) __m256 bytes8_f32(const uint8_t *p, const int is_signed) {
    const __m128i v = _mm_loadl_epi64((const __m128i *)p);
    return _mm256_cvtepi32_ps(is_signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v));
}

/* The 256 columns of half hf (rows 8 hf .. 8 hf + 7) of the packed record rec into the panel. */
static inline __attribute__((always_inline)) void
record_f32(const int TYPE, const uint8_t *rec, int hf, float *panel) {
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rec + 16 * hf)));
    if (TYPE == QWEN3C_TYPE_Q6_K) {
        const __m256i m0f = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
        for (int b = 0; b < 8; b++) { /* 32-column block b: half b / 4 of the record, block k = b % 4 */
            const uint8_t *half = rec + 288 + 1536 * (b / 4) + 32 * hf;
            const int k = b % 4;
            for (int s = 0; s < 2; s++) { /* sub-block 2b + s: columns 16s..16s+15 of the block */
                const __m256 dsc = _mm256_mul_ps(d, bytes8_f32(rec + 32 + 16 * (2 * b + s) + 8 * hf, 1));
                for (int c = 4 * s; c < 4 * s + 4; c++) {
                    /* all 32 bytes at once: q - 32 = (low nibble | the 2 high bits << 4) - 32 */
                    __m256i lo = _mm256_loadu_si256((const __m256i *)(half + 512 * (k % 2) + 64 * c));
                    __m256i hi = _mm256_loadu_si256((const __m256i *)(half + 1024 + 64 * c));
                    if (k >= 2) lo = _mm256_srli_epi16(lo, 4);
                    hi = k == 0 ? _mm256_slli_epi16(hi, 4) : k == 1 ? _mm256_slli_epi16(hi, 2)
                       : k == 3 ? _mm256_srli_epi16(hi, 2) : hi;
                    const __m256i q = _mm256_sub_epi8(
                        _mm256_or_si256(_mm256_and_si256(lo, m0f), _mm256_and_si256(hi, m30)), k32);
                    for (int i = 0; i < 4; i++) { /* byte i of every lane, sign-extended */
                        const __m256i v = _mm256_srai_epi32(i == 3 ? q : _mm256_slli_epi32(q, 24 - 8 * i), 24);
                        _mm256_store_ps(panel + (32 * b + 4 * c + i) * GEMM_MR + 8 * hf,
                                        _mm256_mul_ps(dsc, _mm256_cvtepi32_ps(v)));
                    }
                }
            }
        }
        return;
    }
    const __m256i m15 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rec + 32 + 16 * hf)));
    for (int j = 0; j < 8; j++) { /* sub-block j: 32 columns */
        const __m256 dsc = _mm256_mul_ps(d, bytes8_f32(rec + 64 + 16 * j + 8 * hf, 0));
        const __m256 dmn = _mm256_mul_ps(dmin, bytes8_f32(rec + 192 + 16 * j + 8 * hf, 0));
        for (int c = 0; c < 8; c++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(rec + 320 + 512 * (j / 2) + 64 * c + 32 * hf));
            const __m256i qh = TYPE == QWEN3C_TYPE_Q5_K ? _mm256_loadu_si256((const __m256i *)(rec + 2368 + 64 * c + 32 * hf)) : v;
            for (int i = 0; i < 4; i++) {
                __m256i q = _mm256_and_si256(_mm256_srli_epi32(v, 8 * i + 4 * (j % 2)), m15);
                if (TYPE == QWEN3C_TYPE_Q5_K)
                    q = _mm256_or_si256(q, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(qh, 8 * i + j), one), 4));
                _mm256_store_ps(panel + (32 * j + 4 * c + i) * GEMM_MR + 8 * hf,
                                _mm256_sub_ps(_mm256_mul_ps(dsc, _mm256_cvtepi32_ps(q)), dmn));
            }
        }
    }
}

/* GemmFill: the group at row0 (a multiple of 16: one micro-panel) x the super-block at k0 (kc is
 * always GEMM_KC = 256, one super-block); its padding rows are zeros in the packed copy. */
static inline __attribute__((always_inline)) void
fill_packed(const int TYPE, const QTensor *w, int64_t row0, int64_t k0, float *panel) {
    const size_t rb = q24k_packed_size(TYPE, GR, QK_K);
    const uint8_t *rec = (const uint8_t *)w->packed + ((size_t)(row0 / GR) * (size_t)(w->cols / QK_K) + (size_t)(k0 / QK_K)) * rb;
    record_f32(TYPE, rec, 0, panel);
    record_f32(TYPE, rec, 1, panel);
}
static void fill_q4_k(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q4_K, w, row0, k0, panel);
}
static void fill_q5_k(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q5_K, w, row0, k0, panel);
}
static void fill_q6_k(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q6_K, w, row0, k0, panel);
}

static void rows_float(float *out, int64_t out_stride, const float *x, int64_t x_stride, int n_tok,
                       const QTensor *w, int64_t r0, int64_t r1) {
    switch (w->type) {
    case QWEN3C_TYPE_Q4_K: gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q4_k); break;
    case QWEN3C_TYPE_Q5_K: gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q5_k); break;
    default: gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q6_k); break;
    }
}

const Q24KKernels TIER_TABLE(q24k_kernels) = {q24k_packed_size, q24k_pack, rows, rows_float,
                                              1u << QWEN3C_TYPE_Q4_K | 1u << QWEN3C_TYPE_Q5_K | 1u << QWEN3C_TYPE_Q6_K};
