/*
 * q16_avx512.c -- the q16 kernels for AVX-512 VNNI (quant_q16.c has the format and the
 * kernels' description): decode with vpmaddwd / vpdpwssd per block against the plain layout,
 * prefill with weight panels repacked into the interleaved layout of the activations so that
 * one vpdpwssd advances 16 blocks by 2 elements, in a 4 x 6 register-tiled micro-kernel.
 */
#include "avx512_common.h"
#include "q16.h"

#define TILE_R 4       /* weight rows per micro-kernel */
#define TILE_T 6       /* tokens per micro-kernel: 24 int32 accumulators in registers */
#define PANEL_R 16     /* rows repacked together */
#define KG 4           /* groups (of 512 columns) per repacked panel: 16 x 4 x 1152 = 72 KB */

static inline size_t inter_bytes(int64_t nb) { return (size_t)n_groups(nb) * GREC; }

static size_t act_size(int n_tok, int64_t cols) {
    const int64_t nb = cols / QK;
    return (size_t)n_tok * (plain_bytes(nb) + inter_bytes(nb));
}

/* Transpose 16 x 16 dwords: r[j] holds block j's 32 int16 quants (dword c = elements 2c,
 * 2c+1); stores chunk c (lane j = dword c of r[j]) at rec + 64 c. */
static inline void transpose_store(const __m512i r[16], uint8_t *rec) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4i + k], 128-bit lane L = dword 4L + k of rows 4i .. 4i+3 */
    for (int i = 0; i < 16; i += 4) {
        u[i + 0] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* chunk 4L + k = lane L of u[k], u[4 + k], u[8 + k], u[12 + k]: a 4 x 4 lane transpose */
    for (int k = 0; k < 4; k++) {
        const __m512i s0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44);
        const __m512i s1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xee);
        const __m512i s2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44);
        const __m512i s3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xee);
        _mm512_storeu_si512(rec + 64 * (0 + k), _mm512_shuffle_i32x4(s0, s2, 0x88));
        _mm512_storeu_si512(rec + 64 * (4 + k), _mm512_shuffle_i32x4(s0, s2, 0xdd));
        _mm512_storeu_si512(rec + 64 * (8 + k), _mm512_shuffle_i32x4(s1, s3, 0x88));
        _mm512_storeu_si512(rec + 64 * (12 + k), _mm512_shuffle_i32x4(s1, s3, 0xdd));
    }
}


/* ---------------------------------------------------------------------------------------
 * Activation quantization
 * ------------------------------------------------------------------------------------- */
static void quantize_block(const float *x, int16_t *q, float *d_out, float *s_out, int32_t *qb_out) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    float id;
    const float d = block_scale(_mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1))), 32767.0f, &id);
    const __m512 vid = _mm512_set1_ps(id);
    const __m512 p0 = _mm512_mul_ps(x0, vid), p1 = _mm512_mul_ps(x1, vid);
    /* cvtps rounds with the current mode: to nearest, ties to even (= rint); NaN -> 0 */
    __m512i q0 = _mm512_maskz_cvtps_epi32(_mm512_cmp_ps_mask(p0, p0, _CMP_ORD_Q), p0);
    __m512i q1 = _mm512_maskz_cvtps_epi32(_mm512_cmp_ps_mask(p1, p1, _CMP_ORD_Q), p1);
    const __m512i lim = _mm512_set1_epi32(32767), nlim = _mm512_set1_epi32(-32767);
    q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);  /* no-ops for finite x */
    q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
    _mm256_storeu_si256((__m256i *)q, _mm512_cvtepi32_epi16(q0));
    _mm256_storeu_si256((__m256i *)(q + 16), _mm512_cvtepi32_epi16(q1));
    *d_out = d;
    *s_out = _mm512_reduce_add_ps(_mm512_add_ps(x0, x1));
    *qb_out = -8 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
}

static void quantize(const float *x, int n_tok, int64_t cols, void *xq) {
    const int64_t nb = cols / QK;
    uint8_t *base = (uint8_t *)xq;
    for (int t = 0; t < n_tok; t++) {
        q16_quantize_plain(x, t, cols, xq, quantize_block);
        if (n_tok == 1) continue;  /* decode reads the plain layout only */
        const Q16Plain pl = q16_plain(xq, t, nb);
        const int16_t *q = pl.q;
        const float *d = pl.d, *sx = pl.sx;
        uint8_t *ir = base + (size_t)n_tok * plain_bytes(nb) + (size_t)t * inter_bytes(nb);
        for (int64_t g = 0; g < n_groups(nb); g++) {
            uint8_t *rec = ir + g * GREC;
            const int nbg = nb - g * GB < GB ? (int)(nb - g * GB) : GB;
            __m512i r[GB];
            for (int j = 0; j < GB; j++)  /* a short last group: zero blocks */
                r[j] = j < nbg ? _mm512_loadu_si512(q + (g * GB + j) * QK) : _mm512_setzero_si512();
            transpose_store(r, rec);
            const __mmask16 k = (__mmask16)((1u << nbg) - 1u);
            _mm512_storeu_ps(rec + GREC_D, _mm512_maskz_loadu_ps(k, d + g * GB));
            _mm512_storeu_ps(rec + GREC_S, _mm512_maskz_loadu_ps(k, sx + g * GB));
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Kernels
 * ------------------------------------------------------------------------------------- */
/* Two Q4 blocks' 16 packed bytes each -> their 32 nibbles each as bytes in element order:
 * *b0 = [lo(qs0) hi(qs0)], *b1 = [lo(qs1) hi(qs1)]. */
static inline void q4_bytes2(const uint8_t *qs0, const uint8_t *qs1, __m256i *b0, __m256i *b1) {
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qs0)),
                                              _mm_loadu_si128((const __m128i *)qs1), 1);
    const __m256i m = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(v, m), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
    *b0 = _mm256_permute2x128_si256(lo, hi, 0x20);
    *b1 = _mm256_permute2x128_si256(lo, hi, 0x31);
}

/* Decode kernels. Per chunk of up to SCH blocks of a row, a first pass computes the scale
 * products dw * dx of all its blocks (8 at a time: the f16 scales assembled in general
 * registers, off the vector pipes; Q4_1: also sums the min terms m * sxf), then the main pass
 * does per block: unpack the quants to int16, vpmaddwd (+ vpdpwssd), one convert, one FMA
 * with the scale broadcast from memory; 4 independent accumulators. */
#define SCH 256

static inline uint32_t q16_rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The 32-bit words at p + i ts of 8 blocks (ts bytes each: the f16 scale, then the Q4_1 min
 * or the first quants), assembled in general registers (off the vector pipes), as floats:
 * *d = the 8 scales, *m = the 8 following f16 (only meaningful for Q4_1). */
static inline void f16x8(const uint8_t *p, int ts, __m256 *d, __m256 *m) {
#define Q16_PAIR(i, j) _mm_cvtsi64_si128((long long)((uint64_t)q16_rd32(p + (i) * ts) | \
                                                   (uint64_t)q16_rd32(p + (j) * ts) << 32))
    /* a = blocks 0 1 | 4 5, b = blocks 2 3 | 6 7, as [d m d m] per 128-bit lane */
    const __m256 a = _mm256_cvtph_ps(_mm_unpacklo_epi64(Q16_PAIR(0, 1), Q16_PAIR(4, 5)));
    const __m256 b = _mm256_cvtph_ps(_mm_unpacklo_epi64(Q16_PAIR(2, 3), Q16_PAIR(6, 7)));
#undef Q16_PAIR
    *d = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    *m = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

/* s[i] = dw(block i) * xd[i] for n blocks (ts bytes each, the f16 scale first) from p; s has
 * room for n rounded up to 8. q41: returns sum m(block i) * sx[i] (the min after the scale). */
static inline __attribute__((always_inline)) float
scale_products(const int q41, const uint8_t *p, int ts, const float *xd, const float *sx, int n, float *s) {
    __m256 c = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d, m;
        f16x8(p + (int64_t)i * ts, ts, &d, &m);
        _mm256_store_ps(s + i, _mm256_mul_ps(d, _mm256_loadu_ps(xd + i)));
        if (q41) c = _mm256_fmadd_ps(m, _mm256_loadu_ps(sx + i), c);
    }
    float ct = 0.0f;
    for (; i < n; i++) {
        s[i] = fp16_to_fp32(read_u16(p + (int64_t)i * ts)) * xd[i];
        if (q41) ct += fp16_to_fp32(read_u16(p + (int64_t)i * ts + 2)) * sx[i];
    }
    if (!q41) return 0.0f;
    return hsum128(_mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1))) + ct;
}

/* Q8_0 block i of a chunk: the 32 quants sign-extended to int16, one vpmaddwd (vpdpwssd from
 * zero: the pair sums cannot overflow, x > -32768). */
static inline __m512 q8_block(const uint8_t *pc, const int16_t *xc, int i) {
    const __m512i w = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(pc + 34 * i + 2)));
    return _mm512_cvtepi32_ps(_mm512_madd_epi16(w, _mm512_loadu_si512(xc + i * QK)));
}

static float dot_row_q8_0(const uint8_t *row, const int16_t *xq, const float *xd, int64_t nb) {
    _Alignas(32) float s[SCH];
    __m512 a[4];
    for (int k = 0; k < 4; k++) a[k] = _mm512_setzero_ps();
    for (int64_t b0 = 0; b0 < nb; b0 += SCH) {
        const int n = nb - b0 < SCH ? (int)(nb - b0) : SCH;
        const uint8_t *pc = row + b0 * 34;
        const int16_t *xc = xq + b0 * QK;
        scale_products(0, pc, 34, xd + b0, NULL, n, s);
        int i = 0;
        for (; i + 4 <= n; i += 4) {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[k] = _mm512_fmadd_ps(q8_block(pc, xc, i + k), _mm512_set1_ps(s[i + k]), a[k]);
        }
        for (; i < n; i++) a[0] = _mm512_fmadd_ps(q8_block(pc, xc, i), _mm512_set1_ps(s[i]), a[0]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
}

/* Q4 block i of a chunk (ts bytes, quants at qo) in 256-bit halves: the 16 packed bytes
 * zero-extended to words, low nibbles = elements 0-15, high nibbles = 16-31. Q4_0's - 8 is
 * the integer qb = -8 sum(q) of the block, the start value of lane 0 (exact). */
static inline __attribute__((always_inline)) __m256
q4_block(const int q41, const uint8_t *pc, int ts, int qo, const int16_t *xc, const int32_t *qb, int i) {
    const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(pc + (int64_t)ts * i + qo)));
    const __m256i lo = _mm256_and_si256(v, _mm256_set1_epi16(0x0f)), hi = _mm256_srli_epi16(v, 4);
    const int16_t *x = xc + i * QK;
    const __m256i xlo = _mm256_loadu_si256((const __m256i *)x), xhi = _mm256_loadu_si256((const __m256i *)(x + 16));
    const __m256i d = q41 ? _mm256_madd_epi16(lo, xlo)
                          : _mm256_dpwssd_epi32(_mm256_castsi128_si256(_mm_cvtsi32_si128(qb[i])), lo, xlo);
    return _mm256_cvtepi32_ps(_mm256_dpwssd_epi32(d, hi, xhi));
}

/* Q4_0: dw dx sum((q - 8) x); Q4_1: dw dx sum(q x) + m sxf (the min terms in scale_products). */
static inline __attribute__((always_inline)) float
dot_row_q4(const int q41, const uint8_t *row, const int16_t *xq, const float *xd, const float *sx,
           const int32_t *qb, int64_t nb) {
    const int ts = q41 ? 20 : 18, qo = q41 ? 4 : 2;
    _Alignas(32) float s[SCH];
    __m256 a[4];
    for (int k = 0; k < 4; k++) a[k] = _mm256_setzero_ps();
    float mt = 0.0f;
    for (int64_t b0 = 0; b0 < nb; b0 += SCH) {
        const int n = nb - b0 < SCH ? (int)(nb - b0) : SCH;
        const uint8_t *pc = row + b0 * ts;
        const int16_t *xc = xq + b0 * QK;
        const int32_t *qc = qb + b0;
        mt += scale_products(q41, pc, ts, xd + b0, sx + b0, n, s);
        int i = 0;
        for (; i + 4 <= n; i += 4) {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                a[k] = _mm256_fmadd_ps(q4_block(q41, pc, ts, qo, xc, qc, i + k), _mm256_set1_ps(s[i + k]), a[k]);
        }
        for (; i < n; i++) a[0] = _mm256_fmadd_ps(q4_block(q41, pc, ts, qo, xc, qc, i), _mm256_set1_ps(s[i]), a[0]);
    }
    const __m256 t = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
    return hsum128(_mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1))) + mt;
}

/* The 16 block scales (f16 at stride ts from p) of a group as floats; *m_out gets the Q4_1
 * mins (the f16 right after each scale) when m_out != NULL. */
/* One full group of 16 Q8_0 blocks at p -> record rec. */
static inline void repack_group_q8_0(const uint8_t *p, uint8_t *rec) {
    __m512i r[16];
    for (int j = 0; j < 16; j++) r[j] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(p + 34 * j + 2)));
    transpose_store(r, rec);
    _mm512_storeu_ps(rec + GREC_D, group_scales(p, 34, NULL));
}

/* One full group of 16 Q4_0 / Q4_1 blocks (ts bytes, quants at offset qo) -> record rec. */
static inline void repack_group_q4(const uint8_t *p, int ts, int qo, int q41, uint8_t *rec) {
    __m512i r[16];
    const __m256i k8 = _mm256_set1_epi8(8);
    for (int j = 0; j < 16; j += 2) {
        __m256i b0, b1;
        q4_bytes2(p + ts * j + qo, p + ts * (j + 1) + qo, &b0, &b1);
        if (q41) {
            r[j] = _mm512_cvtepu8_epi16(b0);
            r[j + 1] = _mm512_cvtepu8_epi16(b1);
        } else {
            r[j] = _mm512_cvtepi8_epi16(_mm256_sub_epi8(b0, k8));
            r[j + 1] = _mm512_cvtepi8_epi16(_mm256_sub_epi8(b1, k8));
        }
    }
    transpose_store(r, rec);
    __m512 m;
    _mm512_storeu_ps(rec + GREC_D, group_scales(p, ts, q41 ? &m : NULL));
    if (q41) _mm512_storeu_ps(rec + GREC_S, m);
}

/* Repack kg groups (from group g0) of one weight row into interleaved records at dst. A short
 * last group is staged through a zero-padded copy (zero scales, so padding adds nothing). */
static void repack_row(int type, const uint8_t *row, int64_t g0, int kg, int64_t nb, uint8_t *dst) {
    const int ts = type == QWEN3C_TYPE_Q8_0 ? 34 : type == QWEN3C_TYPE_Q4_0 ? 18 : 20;
    for (int g = 0; g < kg; g++) {
        const int64_t b0 = (g0 + g) * GB;
        const int nbg = nb - b0 < GB ? (int)(nb - b0) : GB;
        const uint8_t *p = row + b0 * ts;
        uint8_t stage[GB * 34 + 32];  /* + slack: the 32-byte Q8_0 loads of the last block */
        if (nbg < GB) {
            memset(stage, 0, sizeof stage);
            memcpy(stage, p, (size_t)nbg * (size_t)ts);
            p = stage;
        }
        uint8_t *rec = dst + (size_t)g * GREC;
        switch (type) {
        case QWEN3C_TYPE_Q8_0: repack_group_q8_0(p, rec); break;
        case QWEN3C_TYPE_Q4_0: repack_group_q4(p, 18, 2, 0, rec); break;
        case QWEN3C_TYPE_Q4_1: repack_group_q4(p, 20, 4, 1, rec); break;
        default: break;
        }
    }
}

/* part[t * TILE_R + r] = sum over kg groups of weight tile row r (records at wp + r * ws) and
 * token t (records at xp + t * xs); q41: add the Q4_1 min term. NR, NT, q41 are constants at
 * every call site: the loops unroll and the NR * NT int32 accumulators stay in registers (the
 * float accumulators, touched once per group, live in fb). */
static inline __attribute__((always_inline)) void
tile_q16(const int NR, const int NT, const int q41, const uint8_t *wp, int64_t ws,
         const uint8_t *xp, int64_t xs, int kg, float *part) {
    _Alignas(64) float fb[TILE_R * TILE_T * 16];
    for (int i = 0; i < NR * NT; i++) _mm512_store_ps(fb + 16 * i, _mm512_setzero_ps());
    for (int g = 0; g < kg; g++) {
        const uint8_t *wg = wp + (size_t)g * GREC, *xg = xp + (size_t)g * GREC;
        __m512i acc[TILE_R][TILE_T], w[TILE_R];
        for (int r = 0; r < NR; r++) w[r] = _mm512_loadu_si512(wg + r * ws);
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) {  /* chunk 0: vpmaddwd = vpdpwssd from zero */
            __m512i xv = _mm512_loadu_si512(xg + t * xs);
            __asm__("" : "+v"(xv));  /* one load of x per step, not one per row */
            for (int r = 0; r < NR; r++) acc[r][t] = _mm512_madd_epi16(w[r], xv);
        }
#pragma GCC unroll 15
        for (int c = 1; c < 16; c++) {
            for (int r = 0; r < NR; r++) w[r] = _mm512_loadu_si512(wg + r * ws + 64 * c);
            for (int t = 0; t < NT; t++) {
                __m512i xv = _mm512_loadu_si512(xg + t * xs + 64 * c);
                __asm__("" : "+v"(xv));
                for (int r = 0; r < NR; r++) acc[r][t] = _mm512_dpwssd_epi32(acc[r][t], w[r], xv);
            }
        }
        /* the float step: fb += convert(acc) * (dw * dx) (+ m * sxf for Q4_1) */
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) {
            const __m512 dx = _mm512_loadu_ps((const float *)(const void *)(xg + t * xs + GREC_D));
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                const __m512 dw = _mm512_loadu_ps((const float *)(const void *)(wg + r * ws + GREC_D));
                float *f = fb + 16 * (t * NR + r);
                __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][t]), _mm512_mul_ps(dw, dx), _mm512_load_ps(f));
                if (q41)
                    v = _mm512_fmadd_ps(_mm512_loadu_ps((const float *)(const void *)(wg + r * ws + GREC_S)),
                                        _mm512_loadu_ps((const float *)(const void *)(xg + t * xs + GREC_S)), v);
                _mm512_store_ps(f, v);
            }
        }
    }
    for (int t = 0; t < NT; t++) {
        const float *f = fb + 16 * t * NR;
        if (NR == 4)
            _mm_storeu_ps(part + t * TILE_R, hsum4(_mm512_load_ps(f), _mm512_load_ps(f + 16),
                                                   _mm512_load_ps(f + 32), _mm512_load_ps(f + 48)));
        else
            for (int r = 0; r < NR; r++) part[t * TILE_R + r] = _mm512_reduce_add_ps(_mm512_load_ps(f + 16 * r));
    }
}

/* One tile of nr rows x nt tokens; Q41 (a constant at both call sites, so the inlined kernels
 * specialize) adds the Q4_1 min term. Leftover rows at the end of a matrix go one at a time. */
static inline __attribute__((always_inline)) void
tile_rows_q16(const int Q41, int nr, int nt, const uint8_t *wp, int64_t ws, const uint8_t *xp,
              int64_t xs, int kg, float *part) {
    if (nr == TILE_R) {
        switch (nt) {
        case 1: tile_q16(TILE_R, 1, Q41, wp, ws, xp, xs, kg, part); return;
        case 2: tile_q16(TILE_R, 2, Q41, wp, ws, xp, xs, kg, part); return;
        case 3: tile_q16(TILE_R, 3, Q41, wp, ws, xp, xs, kg, part); return;
        case 4: tile_q16(TILE_R, 4, Q41, wp, ws, xp, xs, kg, part); return;
        case 5: tile_q16(TILE_R, 5, Q41, wp, ws, xp, xs, kg, part); return;
        default: tile_q16(TILE_R, 6, Q41, wp, ws, xp, xs, kg, part); return;
        }
    }
    for (int r = 0; r < nr; r++) {
        float p1[TILE_R * TILE_T];
        const uint8_t *wr = wp + r * ws;
        switch (nt) {
        case 1: tile_q16(1, 1, Q41, wr, ws, xp, xs, kg, p1); break;
        case 2: tile_q16(1, 2, Q41, wr, ws, xp, xs, kg, p1); break;
        case 3: tile_q16(1, 3, Q41, wr, ws, xp, xs, kg, p1); break;
        case 4: tile_q16(1, 4, Q41, wr, ws, xp, xs, kg, p1); break;
        case 5: tile_q16(1, 5, Q41, wr, ws, xp, xs, kg, p1); break;
        default: tile_q16(1, 6, Q41, wr, ws, xp, xs, kg, p1); break;
        }
        for (int t = 0; t < nt; t++) part[t * TILE_R + r] = p1[t * TILE_R];
    }
}

static void tile_dispatch_q16(int nr, int nt, int type, const uint8_t *wp, int64_t ws,
                              const uint8_t *xp, int64_t xs, int kg, float *part) {
    if (type == QWEN3C_TYPE_Q4_1) tile_rows_q16(1, nr, nt, wp, ws, xp, xs, kg, part);
    else tile_rows_q16(0, nr, nt, wp, ws, xp, xs, kg, part);
}

static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / QK, ng = n_groups(nb);
    const uint8_t *base = (const uint8_t *)w->data;
    const uint8_t *xb = (const uint8_t *)xq;
    if (n_tok == 1) {
        const Q16Plain pl = q16_plain(xq, 0, nb);
        const int16_t *q = pl.q;
        const float *d = pl.d, *sx = pl.sx;
        const int32_t *qb = pl.qb;
        switch (w->type) {
        case QWEN3C_TYPE_Q8_0:
            for (int64_t r = r0; r < r1; r++) out[r] = dot_row_q8_0(base + r * w->row_bytes, q, d, nb);
            return;
        case QWEN3C_TYPE_Q4_0:
            for (int64_t r = r0; r < r1; r++) out[r] = dot_row_q4(0, base + r * w->row_bytes, q, d, sx, qb, nb);
            return;
        case QWEN3C_TYPE_Q4_1:
            for (int64_t r = r0; r < r1; r++) out[r] = dot_row_q4(1, base + r * w->row_bytes, q, d, sx, qb, nb);
            return;
        default:
            return;
        }
    }
    const uint8_t *xi = xb + (size_t)n_tok * plain_bytes(nb);
    const int64_t xs = (int64_t)inter_bytes(nb);
    _Alignas(64) uint8_t panel[PANEL_R * KG * GREC];
    float part[TILE_R * TILE_T];
    for (int64_t rp = r0; rp < r1; rp += PANEL_R) {
        const int npr = r1 - rp < PANEL_R ? (int)(r1 - rp) : PANEL_R;
        for (int64_t g0 = 0; g0 < ng; g0 += KG) {
            const int kg = ng - g0 < KG ? (int)(ng - g0) : KG;
            const int64_t ws = (int64_t)kg * GREC;
            for (int i = 0; i < npr; i++)
                repack_row(w->type, base + (rp + i) * w->row_bytes, g0, kg, nb, panel + i * ws);
            for (int t0 = 0; t0 < n_tok; t0 += TILE_T) {
                const int nt = n_tok - t0 < TILE_T ? n_tok - t0 : TILE_T;
                for (int i0 = 0; i0 < npr; i0 += TILE_R) {
                    const int nr = npr - i0 < TILE_R ? npr - i0 : TILE_R;
                    tile_dispatch_q16(nr, nt, w->type, panel + i0 * ws, ws, xi + t0 * xs + g0 * GREC, xs,
                                      kg, part);
                    for (int t = 0; t < nt; t++) {
                        float *o = out + (int64_t)(t0 + t) * out_stride + rp + i0;
                        for (int i = 0; i < nr; i++) o[i] = (g0 == 0 ? 0.0f : o[i]) + part[t * TILE_R + i];
                    }
                }
            }
        }
    }
}

const ActQuantKernels q16_kernels_avx512 = {act_size, quantize, rows};
