/*
 * q24_avx512.c -- the q24 kernels for AVX-512 VNNI (quant_q24.c has the format): vpdpbusd does
 * 64 byte products per instruction, one instruction per activation digit advances 16 rows by 4
 * columns, so 24-bit activations take three per 64 multiply-adds; the activation quantization
 * does 16 blocks at a time with transposing reductions. The same numbers as q24_scalar.c.
 */
#include <immintrin.h>

#include "gemm_avx512.h"
#include "q24.h"

#define TILE_T 8        /* tokens per batch tile: 24 int32 accumulators (of 32 zmm registers) */

/* ---------------------------------------------------------------------------------------
 * Activation quantization
 * ------------------------------------------------------------------------------------- */
/* r[m] = OP over the 16 lanes of v[m], for m < 16 (OP 0: float add, 1: float max, 2: int32 add),
 * with 15 OPs and 30 shuffles for the 16 vectors: a transposing reduction. v is overwritten. */
static inline __attribute__((always_inline)) __m512 reduce16(const int OP, __m512 *v) {
#define RED(a, b) (OP == 0 ? _mm512_add_ps(a, b) : OP == 1 ? _mm512_max_ps(a, b) \
                   : _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b))))
    for (int k = 0; k < 8; k++) /* 256-bit halves: [a0+a2, a1+a3, b0+b2, b1+b3] in 128-bit chunks */
        v[k] = RED(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44), _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
    for (int k = 0; k < 4; k++) /* chunk j of v[k]: 4 partials of input 4k + j */
        v[k] = RED(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x88), _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xDD));
    for (int k = 0; k < 2; k++) { /* chunk j of v[k]: 2 partials each of inputs 8k + j, 8k + 4 + j */
        const __m512d a = _mm512_castps_pd(v[2 * k]), b = _mm512_castps_pd(v[2 * k + 1]);
        v[k] = RED(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    /* lane 4j + i: input 4i + j */
    const __m512 z = RED(_mm512_shuffle_ps(v[0], v[1], 0x88), _mm512_shuffle_ps(v[0], v[1], 0xDD));
#undef RED
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

/* Blocks x[0..nb) (nb <= 16) into o[0..nb): the same numbers as the plain C quantize_block,
 * the horizontal sums done for 16 blocks at once (reduce16 adds lanes i and i + 8, then i + 4,
 * i + 2, i + 1: sx in q24_sum32's order). */
static void quantize_16_blocks(const float *x, BlockQ24 *o, int nb) {
    __m512 vmax[16], vsum[16], vh[16], vv[16], vh0[16], vv0[16];
    __mmask16 bad = 0;
    for (int b = 0; b < 16; b++) {
        if (b >= nb) { vmax[b] = vsum[b] = _mm512_setzero_ps(); continue; }
        const __m512 x0 = _mm512_loadu_ps(x + b * QK), x1 = _mm512_loadu_ps(x + b * QK + 16);
        if (_mm512_fpclass_ps_mask(x0, 0x99) | _mm512_fpclass_ps_mask(x1, 0x99)) bad |= (__mmask16)(1u << b); /* NaN, inf */
        vmax[b] = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1));
        vsum[b] = _mm512_add_ps(x0, x1);
    }
    const __m512 amax = reduce16(1, vmax), sx = reduce16(0, vsum);
    /* act_scale for 16 blocks: d = max|x| / VMAX, 0 (and 1/d = 0) below FLT_MIN, NaN if bad */
    __m512 d = _mm512_div_ps(amax, _mm512_set1_ps((float)VMAX));
    const __mmask16 ok = _mm512_cmp_ps_mask(d, _mm512_set1_ps(FLT_MIN), _CMP_GE_OQ) & (__mmask16)~bad;
    const __m512 id = _mm512_maskz_div_ps(ok, _mm512_set1_ps(1.0f), d);
    d = _mm512_mask_mov_ps(_mm512_maskz_mov_ps(ok, d), bad, _mm512_set1_ps(NAN));
    float ds[16], ids[16], sxs[16];
    _mm512_storeu_ps(ds, d), _mm512_storeu_ps(ids, id), _mm512_storeu_ps(sxs, sx);
    const __m512i lo = _mm512_set1_epi32(-VMAX), hi = _mm512_set1_epi32(VMAX), bias = _mm512_set1_epi32(0x808080);
    for (int b = 0; b < 16; b++) {
        vh[b] = vv[b] = vh0[b] = vv0[b] = _mm512_setzero_ps();
        if (b >= nb) continue;
        BlockQ24 *ob = o + b;
        ob->d = ds[b], ob->sx = sxs[b];
        if (bad >> b & 1) { memset(ob->h, 0, 3 * QK); continue; } /* d is NaN: zero digits, as the plain C */
        __m512i sh = _mm512_setzero_si512(), sv = sh;
        for (int half = 0; half < 2; half++) {
            const __m512 xs = _mm512_mul_ps(_mm512_loadu_ps(x + b * QK + 16 * half), _mm512_set1_ps(ids[b]));
            __m512i v = _mm512_cvtps_epi32(xs); /* round to nearest even */
            v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
            /* v = 65536 h + 256 m + l with signed digits: they are the bytes of (v + bias) ^ bias */
            const __m512i w = _mm512_xor_si512(_mm512_add_epi32(v, bias), bias);
            _mm_storeu_si128((__m128i *)(ob->l + 16 * half), _mm512_cvtepi32_epi8(w));
            _mm_storeu_si128((__m128i *)(ob->m + 16 * half), _mm512_cvtepi32_epi8(_mm512_srli_epi32(w, 8)));
            _mm_storeu_si128((__m128i *)(ob->h + 16 * half), _mm512_cvtepi32_epi8(_mm512_srli_epi32(w, 16)));
            sh = _mm512_add_epi32(sh, _mm512_srai_epi32(_mm512_slli_epi32(w, 8), 24));
            sv = _mm512_add_epi32(sv, v);
            if (half == 0) vh0[b] = _mm512_castsi512_ps(sh), vv0[b] = _mm512_castsi512_ps(sv);
        }
        vh[b] = _mm512_castsi512_ps(sh), vv[b] = _mm512_castsi512_ps(sv);
    }
    /* sh = sum(h); sml = 256 sum(m) + sum(l) = sum(v) - 65536 sh (all exact in int32); the
     * same over the first 16 elements */
    const __m512i shs = _mm512_castps_si512(reduce16(2, vh)), svs = _mm512_castps_si512(reduce16(2, vv));
    const __m512i shs0 = _mm512_castps_si512(reduce16(2, vh0)), svs0 = _mm512_castps_si512(reduce16(2, vv0));
    int32_t sh16[16], sml16[16], sh0[16], sml0[16];
    _mm512_storeu_si512(sh16, shs);
    _mm512_storeu_si512(sml16, _mm512_sub_epi32(svs, _mm512_slli_epi32(shs, 16)));
    _mm512_storeu_si512(sh0, shs0);
    _mm512_storeu_si512(sml0, _mm512_sub_epi32(svs0, _mm512_slli_epi32(shs0, 16)));
    for (int b = 0; b < nb; b++) {
        o[b].sh = sh16[b], o[b].sml = sml16[b];
        q24_set_halves(o + b, sh0[b], sml0[b]);
    }
}

static void quantize(const float *x, int64_t i0, int64_t i1, void *xq) {
    BlockQ24 *o = (BlockQ24 *)xq;
    for (int64_t i = i0; i < i1; i += 16) /* rows are whole blocks */
        quantize_16_blocks(x + i * QK, o + i, i1 - i < 16 ? (int)(i1 - i) : 16);
}

/* ---------------------------------------------------------------------------------------
 * Kernels
 * ------------------------------------------------------------------------------------- */
/* One group of 16 rows x NT tokens (NT <= TILE_T) over all nb blocks: out[t][r] for t < NT.
 * TYPE is a compile-time constant in every caller (always_inline), so is NT. */
static inline __attribute__((always_inline)) void
group_tile(const int TYPE, const int NT, const uint8_t *g, int64_t nb, const BlockQ24 *x,
           int64_t x_stride, float *out, int64_t out_stride, __mmask16 rows_mask) {
    const int q41 = TYPE == QWEN3C_TYPE_Q4_1, rb = q24_record_bytes(TYPE);
    const int off_shift = TYPE == QWEN3C_TYPE_Q8_0 ? 7 : 3; /* u = w + 128 / q4 = w + 8 */
    const __m512i nib = _mm512_set1_epi8(0x0f);
    __m512 tot[TILE_T];
    for (int t = 0; t < NT; t++) tot[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = g + (size_t)b * (size_t)rb;
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        const uint8_t *qp = p + (q41 ? 64 : 32);
        q24_prefetch(p, rb, Q24_AHEAD_AVX512, Q24_AHEAD_L2_AVX512);
        __m512i ah[TILE_T], am[TILE_T], al[TILE_T];
        for (int t = 0; t < NT; t++) ah[t] = am[t] = al[t] = _mm512_setzero_si512();
        /* fully unrolled: otherwise gcc keeps the 12 accumulators in a loop-carried shuffle of
         * register copies (~5% of prefill) */
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m512i u;
            if (TYPE == QWEN3C_TYPE_Q8_0) {
                u = _mm512_loadu_si512(qp + 64 * c);
            } else {
                const __m512i raw = _mm512_loadu_si512(qp + 64 * (c & 3));
                u = c < 4 ? _mm512_and_si512(raw, nib) : _mm512_and_si512(_mm512_srli_epi16(raw, 4), nib);
            }
            for (int t = 0; t < NT; t++) {
                const BlockQ24 *xb = x + t * x_stride + b;
                ah[t] = dpbusd_bcast(ah[t], u, xb->h + 4 * c);
                am[t] = dpbusd_bcast(am[t], u, xb->m + 4 * c);
                al[t] = dpbusd_bcast(al[t], u, xb->l + 4 * c);
            }
        }
        const __m512 dm = q41 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32))) : dw;
        for (int t = 0; t < NT; t++) {
            const BlockQ24 *xb = x + t * x_stride + b;
            __m512i ih = ah[t], iml = _mm512_add_epi32(_mm512_slli_epi32(am[t], 8), al[t]);
            if (!q41) {
                ih = _mm512_sub_epi32(ih, _mm512_set1_epi32(xb->sh * (1 << off_shift)));
                iml = _mm512_sub_epi32(iml, _mm512_set1_epi32(xb->sml * (1 << off_shift)));
            }
            const __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ih), _mm512_set1_ps(65536.0f), _mm512_cvtepi32_ps(iml));
            tot[t] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(xb->d)), tot[t]);
            if (q41) tot[t] = _mm512_fmadd_ps(dm, _mm512_set1_ps(xb->sx), tot[t]);
        }
    }
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(out + t * out_stride, rows_mask, tot[t]);
}

/* Rows [r0, r1) (whole groups from r0) x the tokens [0, NT) of x. */
static inline __attribute__((always_inline)) void
rows_tile(const int TYPE, const int NT, const QTensor *w, int64_t r0, int64_t r1, const BlockQ24 *x,
          int64_t nb, float *out, int64_t out_stride) {
    const size_t group_bytes = (size_t)nb * (size_t)q24_record_bytes(TYPE);
    for (int64_t r = r0; r < r1; r += GR) {
        const uint8_t *g = (const uint8_t *)w->packed + (size_t)(r / GR) * group_bytes;
        const int valid = r1 - r < GR ? (int)(r1 - r) : GR;
        group_tile(TYPE, NT, g, nb, x, nb, out + r, out_stride, (__mmask16)((1u << valid) - 1u));
    }
}

Q24_ROWS_BY_TYPE(q8_0, QWEN3C_TYPE_Q8_0, q4_0, QWEN3C_TYPE_Q4_0, q4_1, QWEN3C_TYPE_Q4_1)

/* ---------------------------------------------------------------------------------------
 * Prefill in float32 (Q24Kernels.rows_float) of Q8_0 and Q4_0: gemm_avx512.h, the weights
 * dequantized from the packed groups to quant.c's values, d w or d (q - 8) (a half times a small
 * integer is exact in float32). A chunk's 32-bit lane r holds
 * 4 columns of row r, so byte i of every lane is one column of the group's 16 rows: one zmm of
 * the micro-panel, no transpose. With the GEMM's contiguous partial sums (gemm_avx512.h), this
 * measured faster than the integer sums for a prompt (Qwen3-0.6B shapes, 512 tokens: Q8_0
 * 1.046x, Q4_0 1.072x).
 * ------------------------------------------------------------------------------------- */
/* GemmFill: rows [row0, row0 + nr) (row0 a multiple of 16) x columns [k0, k0 + kc) (whole
 * blocks); panel NULL: only prefetch those records into L2. */
static inline __attribute__((always_inline)) void
fill_packed(const int TYPE, const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    const size_t rb = (size_t)q24_record_bytes(TYPE);
    const int64_t nb = w->cols / QK;
    const uint8_t *g = (const uint8_t *)w->packed + ((size_t)(row0 / GR) * (size_t)nb + (size_t)(k0 / QK)) * rb;
    if (!panel) {
        gemm_prefetch_groups(g, (size_t)(kc / QK) * rb, (size_t)nb * rb, nr);
        return;
    }
    const __m512i nib = _mm512_set1_epi32(15), x80 = _mm512_set1_epi8((char)0x80), k8 = _mm512_set1_epi32(8);
    for (int h = 0; h < 2; h++) { /* the two 16-row groups of the micro-panel */
        float *half = panel + GR * h;
        if (h == 1 && nr <= GR) {
            gemm_zero_half(half, kc);
            continue;
        }
        for (int b = 0; b < kc / QK; b++) {
            const uint8_t *rec = g + ((size_t)h * (size_t)nb + (size_t)b) * rb;
            float *col = half + QK * b * GEMM_MR; /* column 32 b */
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)rec));
            if (TYPE == QWEN3C_TYPE_Q8_0) { /* stored as w + 128 */
                for (int c = 0; c < 8; c++) {
                    const __m512i q = _mm512_xor_si512(_mm512_loadu_si512(rec + 32 + 64 * c), x80);
                    for (int i = 0; i < 4; i++)
                        _mm512_store_ps(col + (4 * c + i) * GEMM_MR, _mm512_mul_ps(_mm512_cvtepi32_ps(byte_s32(q, i)), d));
                }
                continue;
            }
            for (int v = 0; v < 4; v++) { /* Q4_0 */
                const __m512i raw = _mm512_loadu_si512(rec + 32 + 64 * v);
                for (int i = 0; i < 4; i++)
                    for (int hi = 0; hi < 2; hi++) { /* column 4v + i (low nibbles), then 16 + 4v + i */
                        const __m512i q = _mm512_and_si512(_mm512_srli_epi32(raw, 8 * i + 4 * hi), nib);
                        _mm512_store_ps(col + (16 * hi + 4 * v + i) * GEMM_MR,
                                        _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(q, k8))));
                    }
            }
        }
    }
}
static void fill_q8_0(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q8_0, w, row0, nr, k0, kc, panel);
}
static void fill_q4_0(const QTensor *w, int64_t row0, int nr, int64_t k0, int kc, float *panel) {
    fill_packed(QWEN3C_TYPE_Q4_0, w, row0, nr, k0, kc, panel);
}

static void rows_float(float *out, int64_t out_stride, const float *x, int64_t x_stride, int n_tok,
                       const QTensor *w, int64_t r0, int64_t r1) {
    if (w->type == QWEN3C_TYPE_Q8_0) gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q8_0);
    else gemm_rows(out, out_stride, x, x_stride, n_tok, w, r0, r1, fill_q4_0);
}

/* Q4_1 keeps its integer sums: SmolLM2-135M's Q4_1 file (dim 576) measured 0.97x in float32. */
const Q24Kernels q24_kernels_avx512 = {true, q24_packed_size, q24_pack, q24_act_bytes, quantize, rows, rows_float,
                                       1u << QWEN3C_TYPE_Q8_0 | 1u << QWEN3C_TYPE_Q4_0, false};
