/*
 * q24k_avx512.c -- the q24k kernels for AVX-512 VNNI (quant_q24k.c has the format and the
 * arithmetic): per 32-column block, the 4-6-bit weight integers of 16 rows are unpacked into
 * 8 chunks of 64 bytes (4 columns x 16 rows each) and each chunk meets the three activation
 * digits of up to TILE_T tokens in vpdpbusd (16 rows x 4 columns per instruction); the sub-block
 * scales and mins are applied per block in float32. The same numbers as q24k_scalar.c.
 */
#include <immintrin.h>

#include "gemm_avx512.h"
#include "q24.h"

#define QK_K 256
#define TILE_T 8 /* tokens per batch tile: 24 int32 accumulators (of 32 zmm registers) */

/* Q4_K / Q5_K: the weight integers of chunk c (16 rows x 4 columns) of block b (0..7) of a
 * super-block, times SC = chunk_scale(TYPE, b) (1 or 16: what saves a shift; u SC <= 240).
 * b = b0 + bb: b0 (even) at run time, bb (0, 1) a compile-time constant in every caller
 * (always_inline), so are the shift counts:
 *   Q4_K  even b: q = lo & 15;  odd b: 16 q = lo & 0xf0
 *   Q5_K  (lo >> 4 (b odd)) & 15, + 16 where bit b of the high plane is set */
static inline __attribute__((always_inline)) int chunk_scale(const int TYPE, const int bb) {
    return TYPE == QWEN3C_TYPE_Q4_K && bb % 2 ? 16 : 1;
}

static inline __attribute__((always_inline)) __m512i chunk_u(const int TYPE, const uint8_t *rec, int b0, const int bb, int c) {
    const __m512i nib = _mm512_set1_epi8(0x0f);
    const __m512i raw = _mm512_loadu_si512(rec + 320 + 512 * (b0 / 2) + 64 * c);
    if (TYPE == QWEN3C_TYPE_Q4_K) return _mm512_and_si512(raw, bb % 2 ? _mm512_set1_epi8((char)0xf0) : nib);
    const __m512i lo = _mm512_and_si512(bb % 2 ? _mm512_srli_epi16(raw, 4) : raw, nib);
    const __m512i h = _mm512_loadu_si512(rec + 2368 + 64 * c); /* + 16 where bit b is set */
    return _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(h, _mm512_set1_epi8((char)(1 << (b0 + bb)))), lo,
                                _mm512_set1_epi8(16));
}

/* Q6_K: the weight integers u = q (0..63) of chunk c of block k (0..3, a compile-time constant)
 * of a half record: the nibble of plane k % 2 (the low one for k < 2) or-ed with the high-plane
 * bits 2k, 2k + 1 moved to bits 4, 5 (16-bit lane shifts of <= 4 move no bit of interest
 * across a byte). */
static inline __attribute__((always_inline)) __m512i q6k_u(const uint8_t *half, const int k, int c) {
    const __m512i lo = _mm512_loadu_si512(half + 512 * (k % 2) + 64 * c);
    const __m512i h = _mm512_loadu_si512(half + 1024 + 64 * c);
    const __m512i l4 = _mm512_and_si512(k < 2 ? lo : _mm512_srli_epi16(lo, 4), _mm512_set1_epi8(0x0f));
    const __m512i h2 = k == 0 ? _mm512_slli_epi16(h, 4) : k == 1 ? _mm512_slli_epi16(h, 2)
                     : k == 2 ? h : _mm512_srli_epi16(h, 2);
    return _mm512_ternarylogic_epi32(l4, h2, _mm512_set1_epi8(0x30), 0xF8); /* l4 | (h2 & 0x30) */
}

/* 16 bytes at p as 16 floats (unsigned or signed bytes) */
static inline __m512 u8x16_ps(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
static inline __m512 s8x16_ps(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

/* Q4_K / Q5_K: one group of 16 rows x NT tokens (NT <= TILE_T) over all ns super-blocks:
 * out[t][r] for t < NT. TYPE and NT are compile-time constants in every caller (always_inline). */
static inline __attribute__((always_inline)) void
group_tile(const int TYPE, const int NT, const uint8_t *g, int64_t ns, const BlockQ24 *x,
           int64_t x_stride, float *out, int64_t out_stride, __mmask16 rows_mask) {
    const size_t rb = TYPE == QWEN3C_TYPE_Q4_K ? 2368 : 2880;
    __m512 tot[TILE_T];
    for (int t = 0; t < NT; t++) tot[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *rec = g + (size_t)s * rb;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)rec));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rec + 32)));
#pragma GCC unroll 1
        for (int b0 = 0; b0 < QK_K / QK; b0 += 2) {
        /* the pair's quarter of the record, a line per chunk (q24.h: q24_prefetch_line) */
        const uint8_t *quarter = rec + rb / 4 * (b0 / 2);
        const int quarter_lines = (int)(rb / 4 + 63) / 64 + 1; /* <= 16 chunks */
        /* unrolled (2 iterations): bb, so the shift counts, compile-time constants (without
         * the pragma gcc 12 kept the loop, tested bb per chunk: decode streamed Q5_K 2.4-3% and
         * Q4_K 1.4-2.3% slower, measured in a harness with the two builds alternating) */
#pragma GCC unroll 2
        for (int bb = 0; bb < 2; bb++) {
            const int b = b0 + bb, SC = chunk_scale(TYPE, bb);
            /* a compiler barrier: each block loads its chunks itself (gcc otherwise loads the
             * pair's lines once for both blocks of a Q4_K / Q5_K pair and holds them: decode,
             * streaming from memory, ran ~15% slower) */
            __asm__ volatile("" ::: "memory");
            const BlockQ24 *xb = x + s * (QK_K / QK) + b;
            /* one token: chunks 0..3 and 4..7 in two sets of accumulators (two dependency
             * chains of 4 vpdpbusd each, not one of 8), added before the epilogue */
            const int split = NT == 1;
            __m512i ah[TILE_T], am[TILE_T], al[TILE_T];
            for (int t = 0; t < (split ? 2 : NT); t++) ah[t] = am[t] = al[t] = _mm512_setzero_si512();
            /* fully unrolled: otherwise gcc keeps the accumulators in a loop-carried shuffle of
             * register copies (2 moves per vpdpbusd) */
#pragma GCC unroll 2
            for (int part = 0; part < 2; part++) {
#pragma GCC unroll 4
                for (int c4 = 0; c4 < 4; c4++) {
                    const int c = 4 * part + c4;
                    if (8 * bb + c < quarter_lines)
                        q24_prefetch_line(quarter, 8 * bb + c, Q24_AHEAD_AVX512, Q24K_AHEAD_L2_AVX512);
                    const __m512i u = chunk_u(TYPE, rec, b0, bb, c);
                    for (int t = 0; t < NT; t++) {
                        const BlockQ24 *xt = xb + t * x_stride;
                        const int a = split ? part : t;
                        ah[a] = dpbusd_bcast(ah[a], u, xt->h + 4 * c);
                        am[a] = dpbusd_bcast(am[a], u, xt->m + 4 * c);
                        al[a] = dpbusd_bcast(al[a], u, xt->l + 4 * c);
                    }
                }
                if (part == 0) continue;
                /* the sums are SC times theirs, and so is f (exactly: integers, then a power of
                 * two scaling rounding): f (1 / SC) is the same f */
                if (split) { /* exact: int32 sums */
                    ah[0] = _mm512_add_epi32(ah[0], ah[1]);
                    am[0] = _mm512_add_epi32(am[0], am[1]);
                    al[0] = _mm512_add_epi32(al[0], al[1]);
                }
                const __m512 ds = _mm512_mul_ps(d, u8x16_ps(rec + 64 + 16 * b));
                const __m512 dm = _mm512_mul_ps(dmin, u8x16_ps(rec + 192 + 16 * b));
                for (int t = 0; t < NT; t++) {
                    const BlockQ24 *xt = xb + t * x_stride;
                    const __m512i iml = _mm512_add_epi32(_mm512_slli_epi32(am[t], 8), al[t]);
                    __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ah[t]), _mm512_set1_ps(65536.0f),
                                               _mm512_cvtepi32_ps(iml));
                    if (SC > 1) f = _mm512_mul_ps(f, _mm512_set1_ps(1.0f / (float)SC));
                    tot[t] = _mm512_fmadd_ps(f, _mm512_mul_ps(ds, _mm512_set1_ps(xt->d)), tot[t]);
                    tot[t] = _mm512_fnmadd_ps(dm, _mm512_set1_ps(xt->sx), tot[t]);
                }
            }
        }
        }
    }
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(out + t * out_stride, rows_mask, tot[t]);
}

/* Q6_K: one group of 16 rows x NT tokens over all ns super-blocks. Per sub-block (16 columns,
 * 4 chunks) the integer sums start from the activation's offset terms (BlockQ24.q6k: -32 sh,
 * -32 sml), so the epilogue is 7 instructions per token: iml = 256 am + al, f, (d sc_j) dx, tot. */
static inline __attribute__((always_inline)) void
q6k_group_tile(const int NT, const uint8_t *g, int64_t ns, const BlockQ24 *x, int64_t x_stride,
               float *out, int64_t out_stride, __mmask16 rows_mask) {
    __m512 tot[TILE_T];
    for (int t = 0; t < NT; t++) tot[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *rec = g + (size_t)s * 3360;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)rec));
#pragma GCC unroll 1
        for (int hf = 0; hf < 2; hf++) {
            const uint8_t *half = rec + 288 + 1536 * hf;
            const uint8_t *hrec = rec + 1680 * hf; /* half the record, a line per chunk (28 of 32) */
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) { /* unrolled: k, so the shift counts, compile-time constants */
            const int b = 4 * hf + k;
            const BlockQ24 *xb = x + s * (QK_K / QK) + b;
#pragma GCC unroll 2
            for (int part = 0; part < 2; part++) { /* sub-block 2 b + part: chunks 4 part .. 4 part + 3 */
                __m512i ah[TILE_T], am[TILE_T], al[TILE_T];
                for (int t = 0; t < NT; t++) {
                    const BlockQ24 *xt = xb + t * x_stride;
                    ah[t] = _mm512_set1_epi32(xt->q6k[2 * part]);
                    am[t] = _mm512_setzero_si512();
                    al[t] = _mm512_set1_epi32(xt->q6k[2 * part + 1]);
                }
#pragma GCC unroll 4
                for (int c4 = 0; c4 < 4; c4++) {
                    const int c = 4 * part + c4;
                    if (8 * k + c < (1680 + 63) / 64 + 1)
                        q24_prefetch_line(hrec, 8 * k + c, Q24_AHEAD_AVX512, Q24K_AHEAD_L2_AVX512);
                    const __m512i u = q6k_u(half, k, c);
                    for (int t = 0; t < NT; t++) {
                        const BlockQ24 *xt = xb + t * x_stride;
                        ah[t] = dpbusd_bcast(ah[t], u, xt->h + 4 * c);
                        am[t] = dpbusd_bcast(am[t], u, xt->m + 4 * c);
                        al[t] = dpbusd_bcast(al[t], u, xt->l + 4 * c);
                    }
                }
                const __m512 ds = _mm512_mul_ps(d, s8x16_ps(rec + 32 + 16 * (2 * b + part)));
                for (int t = 0; t < NT; t++) {
                    const BlockQ24 *xt = xb + t * x_stride;
                    const __m512i iml = _mm512_add_epi32(_mm512_slli_epi32(am[t], 8), al[t]);
                    const __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ah[t]), _mm512_set1_ps(65536.0f),
                                                     _mm512_cvtepi32_ps(iml));
                    tot[t] = _mm512_fmadd_ps(f, _mm512_mul_ps(ds, _mm512_set1_ps(xt->d)), tot[t]);
                }
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
        const __mmask16 rows_mask = (__mmask16)((1u << valid) - 1u);
        if (TYPE == QWEN3C_TYPE_Q6_K) q6k_group_tile(NT, g, ns, x, nb, out + r, out_stride, rows_mask);
        else group_tile(TYPE, NT, g, ns, x, nb, out + r, out_stride, rows_mask);
    }
}

Q24_ROWS_BY_TYPE(q4_k, QWEN3C_TYPE_Q4_K, q5_k, QWEN3C_TYPE_Q5_K, q6_k, QWEN3C_TYPE_Q6_K)

/* ---------------------------------------------------------------------------------------
 * K-quant prefill in float32 (Q24KKernels.rows_float): gemm_avx512.h, the weights
 * dequantized from the packed records to quant.c's values, (d sc) (q - 32) or (d sc) q - (dmin
 * mn), each product rounded once. A chunk's 32-bit lane r holds 4 columns of row r, so byte i of
 * every lane is one column of the group's 16 rows: one zmm of the micro-panel, no transpose.
 * Measured against the integer sums, Qwen3-0.6B shapes, 512 tokens: Q6_K 1.23x, Q5_K_M file
 * 1.055x; Q4_K (the least unpacking) 1.01x at first, 1.036x (the Q4_K_M file) once the GEMM
 * kept its partial sums contiguous.
 * ------------------------------------------------------------------------------------- */
/* The 256 columns of one packed Q6_K record rec (16 rows) into a micro-panel's half at panel. */
static void q6k_record_f32(const uint8_t *rec, float *panel) {
    const __m512i m0f = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30), k32 = _mm512_set1_epi8(32);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)rec));
    for (int b = 0; b < 8; b++) { /* 32-column block b: half b / 4, block k = b % 4 in it */
        const uint8_t *half = rec + 288 + 1536 * (b / 4);
        const int k = b % 4;
        for (int s = 0; s < 2; s++) { /* sub-block 2b + s: columns 16s..16s+15 of the block */
            const __m512 dsc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                                    _mm_loadu_si128((const __m128i *)(rec + 32 + 16 * (2 * b + s))))));
            for (int c = 4 * s; c < 4 * s + 4; c++) {
                /* all 64 bytes at once: q - 32 = (low nibble | the 2 high bits << 4) - 32 */
                __m512i lo = _mm512_loadu_si512(half + 512 * (k % 2) + 64 * c);
                __m512i hi = _mm512_loadu_si512(half + 1024 + 64 * c);
                if (k >= 2) lo = _mm512_srli_epi16(lo, 4);
                hi = k == 0 ? _mm512_slli_epi16(hi, 4) : k == 1 ? _mm512_slli_epi16(hi, 2)
                   : k == 3 ? _mm512_srli_epi16(hi, 2) : hi;
                const __m512i q = _mm512_sub_epi8( /* 0xea: (lo & 0x0f) | (hi & 0x30) */
                    _mm512_ternarylogic_epi32(lo, m0f, _mm512_and_si512(hi, m30), 0xea), k32);
                for (int i = 0; i < 4; i++) /* byte i of every lane: column 4c + i */
                    _mm512_store_ps(panel + (32 * b + 4 * c + i) * GEMM_MR,
                                    _mm512_mul_ps(dsc, _mm512_cvtepi32_ps(byte_s32(q, i))));
            }
        }
    }
}

/* The 256 columns of one packed Q4_K / Q5_K record rec (16 rows; TYPE a compile-time constant)
 * into a micro-panel's half at panel: (d sc) q - (dmin mn), quant.c's values (a half times a
 * 6-bit and then a 5-bit integer is exact in float32, so the fused multiply-subtract rounds
 * once, as quant.c's subtraction does). Byte i of a nibble chunk's lane holds column 4c + i of
 * blocks 2p (low nibble) and 2p + 1 (high); bit b of Q5_K's high plane's byte is the fifth bit
 * of block b. Per chunk, the 64 quants are made at once as bytes (q <= 31), then byte i of every
 * lane becomes one zmm of the panel. */
static inline __attribute__((always_inline)) void qk_record_f32(const int TYPE, const uint8_t *rec, float *panel) {
    const __m512i nib = _mm512_set1_epi8(0x0f), b16 = _mm512_set1_epi8(16), lo8 = _mm512_set1_epi32(0xff);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)rec));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rec + 32)));
    for (int j = 0; j < 8; j++) { /* block j: 32 columns */
        const __m512 dsc = _mm512_mul_ps(d, u8x16_ps(rec + 64 + 16 * j));
        const __m512 dmn = _mm512_mul_ps(dmin, u8x16_ps(rec + 192 + 16 * j));
        const __m512i bit = _mm512_set1_epi8((char)(1 << j));
        for (int c = 0; c < 8; c++) {
            const __m512i v = _mm512_loadu_si512(rec + 320 + 512 * (j / 2) + 64 * c);
            __m512i q = _mm512_and_si512(j % 2 ? _mm512_srli_epi16(v, 4) : v, nib);
            if (TYPE == QWEN3C_TYPE_Q5_K)
                q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(_mm512_loadu_si512(rec + 2368 + 64 * c), bit), q, b16);
            for (int i = 0; i < 4; i++) {
                const __m512i qi = i == 0 ? _mm512_and_si512(q, lo8) : i == 3 ? _mm512_srli_epi32(q, 24)
                                 : _mm512_and_si512(_mm512_srli_epi32(q, 8 * i), lo8);
                _mm512_store_ps(panel + (32 * j + 4 * c + i) * GEMM_MR,
                                _mm512_fmsub_ps(dsc, _mm512_cvtepi32_ps(qi), dmn));
            }
        }
    }
}

/* GemmFill: rows [row0, row0 + nr) (row0 a multiple of 16) x the super-block at k0 (kc is
 * always GEMM_KC = 256, one super-block); panel NULL: only prefetch those records into L2. */
static inline __attribute__((always_inline)) void
fill_packed(const int TYPE, const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    const size_t rb = q24k_packed_size(TYPE, GR, QK_K);
    const int64_t ns = w->cols / QK_K;
    const uint8_t *rec = (const uint8_t *)w->packed + ((size_t)(row0 / GR) * (size_t)ns + (size_t)(k0 / QK_K)) * rb;
    if (!panel) {
        gemm_prefetch_groups(rec, rb, (size_t)ns * rb, nr);
        return;
    }
    for (int h = 0; h < 2; h++) { /* the two 16-row groups of the micro-panel */
        float *half = panel + GR * h;
        const uint8_t *r = rec + (size_t)h * (size_t)ns * rb;
        if (h == 1 && nr <= GR) gemm_zero_half(half, kc);
        else if (TYPE == QWEN3C_TYPE_Q6_K) q6k_record_f32(r, half);
        else qk_record_f32(TYPE, r, half);
    }
}
static void fill_q4_k(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q4_K, w, row0, nr, k0, kc, panel);
}
static void fill_q5_k(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q5_K, w, row0, nr, k0, kc, panel);
}
static void fill_q6_k(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q6_K, w, row0, nr, k0, kc, panel);
}

static void rows_float(float *out, int64_t out_stride, const float *x, int64_t x_stride, int n_tok,
                       const QTensor *w, int64_t r0, int64_t r1) {
    switch (w->type) {
    case QWEN3C_TYPE_Q4_K: gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q4_k); break;
    case QWEN3C_TYPE_Q5_K: gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q5_k); break;
    default: gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q6_k); break;
    }
}

const Q24KKernels q24k_kernels_avx512 = {q24k_packed_size, q24k_pack, rows, rows_float,
                                           1u << QWEN3C_TYPE_Q4_K | 1u << QWEN3C_TYPE_Q5_K | 1u << QWEN3C_TYPE_Q6_K};
