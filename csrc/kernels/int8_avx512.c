/*
 * int8_avx512.c -- the int8 kernels for AVX-512 VNNI (quant_int8.c has the format and the
 * kernels' description): decode with vpdpbusd on signed products per two blocks, prefill
 * with weight panels repacked into the interleaved layout of the activations (biased to
 * unsigned bytes) so that one vpdpbusd advances 16 blocks by 4 elements.
 */
#include "avx512_common.h"
#include "int8.h"

#define TILE_R 4       /* weight rows per micro-kernel */
#define TILE_T 3       /* tokens per micro-kernel: 12 int + 12 float accumulators */
#define PANEL_R 16     /* rows repacked together */
#define KG 6           /* groups (of 512 columns) per repacked panel: 16 x 6 x 640 = 60 KB */

static inline size_t inter_bytes(int64_t nb) { return (size_t)n_groups(nb) * GREC; }

static size_t act_size(int n_tok, int64_t cols) {
    const int64_t nb = cols / QK;
    return (size_t)n_tok * (plain_bytes(nb) + inter_bytes(nb));
}

/* ---------------------------------------------------------------------------------------
 * Activation quantization
 * ------------------------------------------------------------------------------------- */
static void quantize_block(const float *x, int8_t *q, float *d_out, int32_t *sx_out) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    float id;
    const float d = block_scale(_mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1))), 127.0f, &id);
    const __m512 vid = _mm512_set1_ps(id);
    /* cvtps rounds with the current mode: to nearest, ties to even (= rint) */
    __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid));
    __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
    const __m512i lim = _mm512_set1_epi32(127);  /* no-ops for finite x; keeps NaN/inf tame */
    q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
    q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(q1));
    *d_out = d;
    *sx_out = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
}

static void quantize(const float *x, int n_tok, int64_t cols, void *xq) {
    const int64_t nb = cols / QK;
    uint8_t *base = (uint8_t *)xq;
    for (int t = 0; t < n_tok; t++) {
        i8_quantize_plain(x, t, cols, xq, quantize_block);
        if (n_tok == 1) continue;  /* decode reads the plain layout only */
        const I8Plain pl = i8_plain(xq, t, nb);
        const int8_t *q = pl.q;
        const float *d = pl.d;
        const int32_t *sx = pl.sx;
        uint8_t *ir = base + (size_t)n_tok * plain_bytes(nb) + (size_t)t * inter_bytes(nb);
        for (int64_t g = 0; g < n_groups(nb); g++) {
            uint8_t *rec = ir + g * GREC;
            const int nbg = nb - g * GB < GB ? (int)(nb - g * GB) : GB;
            if (nbg < GB) memset(rec, 0, GREC);
            for (int j = 0; j < nbg; j++) {
                const int64_t b = g * GB + j;
                for (int c = 0; c < 8; c++) memcpy(rec + 64 * c + 4 * j, q + b * QK + 4 * c, 4);
                memcpy(rec + GREC_D + 4 * j, d + b, 4);
                memcpy(rec + GREC_S + 4 * j, sx + b, 4);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Kernels
 * ------------------------------------------------------------------------------------- */
/* acc + sum over groups of 4 of w * x, for signed bytes w and x (x != -128): exact, as
 * |w| * (x with the sign of w) -- vpdpbusd wants its first operand unsigned. */
static inline __m512i sdot(__m512i acc, __m512i w, __m512i x) {
    const __mmask64 neg = _mm512_movepi8_mask(w);
    const __m512i xs = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(w), xs);
}

/* Two Q4 blocks' 16 packed bytes each -> 64 unsigned nibbles in element order
 * [lo0 hi0 lo1 hi1]: each 16 bytes broadcast twice, the second copy shifted right by 4. */
static inline __m512i q4_pair(const uint8_t *qs0, const uint8_t *qs1) {
    const __m512i v = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs0))),
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs1)), 1);
    return _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)),
                            _mm512_set1_epi8(0x0f));
}

static inline __m256i q4_one(const uint8_t *qs) {
    const __m128i v = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0f);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(v, m)),
                                   _mm_and_si128(_mm_srli_epi16(v, 4), m), 1);
}

/* The f16 at p, p + ts, p + 2 ts, p + 3 ts as 4 floats. */
static inline __m128 half4(const uint8_t *p, int ts) {
    __m128i h = _mm_cvtsi32_si128(read_u16(p));
    h = _mm_insert_epi16(h, read_u16(p + ts), 1);
    h = _mm_insert_epi16(h, read_u16(p + 2 * ts), 2);
    h = _mm_insert_epi16(h, read_u16(p + 3 * ts), 3);
    return _mm_cvtph_ps(h);
}


/* Decode kernels: 4 blocks per step, two per 512-bit vector (lanes 0-7: the first block's 8
 * partial sums, lanes 8-15: the second's); s4 = dw * dx of the 4 blocks, spread by vpermps. */
#define SPREAD01 _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
#define SPREAD23 _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)

static float dot_row_q8_0(const uint8_t *row, const int8_t *xq, const float *xd, int64_t nb) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    const __m512i z = _mm512_setzero_si512(), i01 = SPREAD01, i23 = SPREAD23;
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *p = row + b * 34;
        const __m512i w0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2))),
                                              _mm256_loadu_si256((const __m256i *)(p + 36)), 1);
        const __m512i w1 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 70))),
                                              _mm256_loadu_si256((const __m256i *)(p + 104)), 1);
        const __m512i s0 = sdot(z, w0, _mm512_loadu_si512(xq + b * QK));
        const __m512i s1 = sdot(z, w1, _mm512_loadu_si512(xq + b * QK + 64));
        const __m512 s4 = _mm512_castps128_ps512(_mm_mul_ps(half4(p, 34), _mm_loadu_ps(xd + b)));
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_permutexvar_ps(i01, s4), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_permutexvar_ps(i23, s4), a1);
    }
    for (; b < nb; b++) {
        const uint8_t *p = row + b * 34;
        const __m512i w = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2)));
        const __m512i x = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(xq + b * QK)));
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sdot(z, w, x)), _mm512_set1_ps(fp16_to_fp32(read_u16(p)) * xd[b]), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* Q4_0 and Q4_1, per block:
 *   Q4_0: dw dx sum((q - 8) x)        (signed, as Q8_0)
 *   Q4_1: dw dx sum(q x) + m (dx sx)  (unsigned; the min terms summed 4 blocks at a time in c) */
static inline __attribute__((always_inline)) float
dot_row_q4(const int q41, const uint8_t *row, const int8_t *xq, const float *xd, const int32_t *sx,
           int64_t nb) {
    const int ts = q41 ? 20 : 18, qo = q41 ? 4 : 2;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    __m128 c = _mm_setzero_ps();
    const __m512i z = _mm512_setzero_si512(), i01 = SPREAD01, i23 = SPREAD23;
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *p = row + b * ts;
        const __m128i sxi = _mm_loadu_si128((const __m128i *)(sx + b));
        __m512i s0, s1;
        const __m512i x0 = _mm512_loadu_si512(xq + b * QK), x1 = _mm512_loadu_si512(xq + b * QK + 64);
        if (q41) {
            s0 = _mm512_dpbusd_epi32(z, q4_pair(p + qo, p + ts + qo), x0);
            s1 = _mm512_dpbusd_epi32(z, q4_pair(p + 2 * ts + qo, p + 3 * ts + qo), x1);
        } else {  /* signed q - 8: every lane is a true partial sum of w * x */
            const __m512i k8 = _mm512_set1_epi8(8);
            s0 = sdot(z, _mm512_sub_epi8(q4_pair(p + qo, p + ts + qo), k8), x0);
            s1 = sdot(z, _mm512_sub_epi8(q4_pair(p + 2 * ts + qo, p + 3 * ts + qo), k8), x1);
        }
        const __m128 x4 = _mm_loadu_ps(xd + b);
        const __m128 s4 = _mm_mul_ps(half4(p, ts), x4);
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_permutexvar_ps(i01, _mm512_castps128_ps512(s4)), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_permutexvar_ps(i23, _mm512_castps128_ps512(s4)), a1);
        if (q41) c = _mm_fmadd_ps(half4(p + 2, ts), _mm_mul_ps(x4, _mm_cvtepi32_ps(sxi)), c);
    }
    float ct = 0.0f;
    for (; b < nb; b++) {
        const uint8_t *p = row + b * ts;
        const __m512i x = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(xq + b * QK)));
        const __m512i q = _mm512_zextsi256_si512(q4_one(p + qo));
        const __m512i s = q41 ? _mm512_dpbusd_epi32(z, q, x)
                              : sdot(z, _mm512_maskz_sub_epi8((__mmask64)0xffffffffu, q, _mm512_set1_epi8(8)), x);
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(fp16_to_fp32(read_u16(p)) * xd[b]), a0);
        if (q41) ct += fp16_to_fp32(read_u16(p + 2)) * (xd[b] * (float)sx[b]);
    }
    float r = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    if (q41) r += hsum128(c) + ct;
    return r;
}

/* One full group of 16 Q8_0 blocks at p -> record rec (quants biased by +128). An 8 x 8
 * dword transpose in each 256-bit half: half 0 holds blocks 0-7, half 1 blocks 8-15. */
static inline void repack_group_q8_0(const uint8_t *p, uint8_t *rec) {
    __m512i r[8], t[8], u[8];
    for (int k = 0; k < 8; k++)
        r[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 34 * k + 2))),
                                  _mm256_loadu_si256((const __m256i *)(p + 34 * (k + 8) + 2)), 1);
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm512_unpacklo_epi32(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_epi32(r[k], r[k + 1]);
    }
    for (int h = 0; h < 8; h += 4) {  /* rows h..h+3: u[h + c] = dwords c and c + 4 per 128-bit lane */
        u[h + 0] = _mm512_unpacklo_epi64(t[h], t[h + 2]);
        u[h + 1] = _mm512_unpackhi_epi64(t[h], t[h + 2]);
        u[h + 2] = _mm512_unpacklo_epi64(t[h + 1], t[h + 3]);
        u[h + 3] = _mm512_unpackhi_epi64(t[h + 1], t[h + 3]);
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    const __m512i bias = _mm512_set1_epi32((int)0x80808080u);
    for (int c = 0; c < 4; c++) {
        _mm512_storeu_si512(rec + 64 * c, _mm512_xor_si512(_mm512_permutex2var_epi64(u[c], lo, u[c + 4]), bias));
        _mm512_storeu_si512(rec + 64 * (c + 4), _mm512_xor_si512(_mm512_permutex2var_epi64(u[c], hi, u[c + 4]), bias));
    }
    _mm512_storeu_ps(rec + GREC_D, group_scales(p, 34, NULL));
}

/* One full group of 16 Q4_0 / Q4_1 blocks (ts bytes, quants at offset qo) -> record rec. */
static inline void repack_group_q4(const uint8_t *p, int ts, int qo, int q41, uint8_t *rec) {
    __m512i z[4], t[4];
    for (int k = 0; k < 4; k++) {  /* z[k] = the qs of blocks 4k .. 4k+3 */
        const uint8_t *b = p + 4 * k * ts + qo;
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)b));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(b + ts)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(b + 2 * ts)), 2);
        z[k] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(b + 3 * ts)), 3);
    }
    t[0] = _mm512_unpacklo_epi32(z[0], z[1]);
    t[1] = _mm512_unpackhi_epi32(z[0], z[1]);
    t[2] = _mm512_unpacklo_epi32(z[2], z[3]);
    t[3] = _mm512_unpackhi_epi32(z[2], z[3]);
    /* dword c of every block; lane 4i + k holds block 4k + i: permute back to lane = block */
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i nib = _mm512_set1_epi8(0x0f);
    __m512i c4[4];
    c4[0] = _mm512_unpacklo_epi64(t[0], t[2]);
    c4[1] = _mm512_unpackhi_epi64(t[0], t[2]);
    c4[2] = _mm512_unpacklo_epi64(t[1], t[3]);
    c4[3] = _mm512_unpackhi_epi64(t[1], t[3]);
    for (int c = 0; c < 4; c++) {
        const __m512i v = _mm512_permutexvar_epi32(perm, c4[c]);
        _mm512_storeu_si512(rec + 64 * c, _mm512_and_si512(v, nib));
        _mm512_storeu_si512(rec + 64 * (c + 4), _mm512_and_si512(_mm512_srli_epi16(v, 4), nib));
    }
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
        uint8_t stage[GB * 34];
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
 * token t (records at xp + t * xs). bias_shift: the bias of the unsigned weights is
 * 1 << bias_shift (Q8_0: 7, Q4_0: 3); q41: add the Q4_1 min term. NR, NT, q41 are constants
 * at every call site: the loops unroll and the NR * NT accumulators stay in registers. */
static inline __attribute__((always_inline)) void
tile_i8(const int NR, const int NT, const int q41, int bias_shift, const uint8_t *wp, int64_t ws,
        const uint8_t *xp, int64_t xs, int kg, float *part) {
    __m512 facc[TILE_R][TILE_T];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) facc[r][t] = _mm512_setzero_ps();
    for (int g = 0; g < kg; g++) {
        const uint8_t *wg = wp + (size_t)g * GREC, *xg = xp + (size_t)g * GREC;
        __m512i acc[TILE_R][TILE_T];
        for (int t = 0; t < NT; t++) {
            __m512i c0 = _mm512_setzero_si512();
            if (!q41)
                c0 = _mm512_sub_epi32(c0, _mm512_sll_epi32(_mm512_loadu_si512(xg + t * xs + GREC_S),
                                                           _mm_cvtsi32_si128(bias_shift)));
            for (int r = 0; r < NR; r++) acc[r][t] = c0;
        }
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m512i w[TILE_R];
            for (int r = 0; r < NR; r++) w[r] = _mm512_loadu_si512(wg + r * ws + 64 * c);
            for (int t = 0; t < NT; t++) {
                __m512i xv = _mm512_loadu_si512(xg + t * xs + 64 * c);
                __asm__("" : "+v"(xv));  /* one load of x per step, not one per row */
                for (int r = 0; r < NR; r++) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], w[r], xv);
            }
        }
        for (int t = 0; t < NT; t++) {
            const __m512 dx = _mm512_loadu_ps((const float *)(const void *)(xg + t * xs + GREC_D));
            __m512 sxf = _mm512_setzero_ps();
            if (q41) sxf = _mm512_mul_ps(dx, _mm512_cvtepi32_ps(_mm512_loadu_si512(xg + t * xs + GREC_S)));
            for (int r = 0; r < NR; r++) {
                const __m512 dw = _mm512_loadu_ps((const float *)(const void *)(wg + r * ws + GREC_D));
                facc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][t]), _mm512_mul_ps(dw, dx), facc[r][t]);
                if (q41)
                    facc[r][t] = _mm512_fmadd_ps(_mm512_loadu_ps((const float *)(const void *)(wg + r * ws + GREC_S)),
                                                 sxf, facc[r][t]);
            }
        }
    }
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) part[t * TILE_R + r] = _mm512_reduce_add_ps(facc[r][t]);
}

#define TILE_CASES(NR, Q41)                                                                  \
    switch (nt) {                                                                            \
    case 1: tile_i8(NR, 1, Q41, bs, wp, ws, xp, xs, kg, part); return;                       \
    case 2: tile_i8(NR, 2, Q41, bs, wp, ws, xp, xs, kg, part); return;                       \
    default: tile_i8(NR, 3, Q41, bs, wp, ws, xp, xs, kg, part); return;                      \
    }

/* One tile of nr rows x nt tokens; Q41 (a constant at both call sites, so the inlined kernels
 * specialize) adds the Q4_1 min term. Leftover rows at the end of a matrix go one at a time. */
static inline __attribute__((always_inline)) void
tile_rows_i8(const int Q41, int nr, int nt, int bs, const uint8_t *wp, int64_t ws,
             const uint8_t *xp, int64_t xs, int kg, float *part) {
    if (nr == TILE_R) { TILE_CASES(4, Q41) }
    for (int r = 0; r < nr; r++) {
        float p1[TILE_R * TILE_T];
        const uint8_t *wr = wp + r * ws;
        switch (nt) {
        case 1: tile_i8(1, 1, Q41, bs, wr, ws, xp, xs, kg, p1); break;
        case 2: tile_i8(1, 2, Q41, bs, wr, ws, xp, xs, kg, p1); break;
        default: tile_i8(1, 3, Q41, bs, wr, ws, xp, xs, kg, p1); break;
        }
        for (int t = 0; t < nt; t++) part[t * TILE_R + r] = p1[t * TILE_R];
    }
}

static void tile_dispatch_i8(int nr, int nt, int type, const uint8_t *wp, int64_t ws,
                             const uint8_t *xp, int64_t xs, int kg, float *part) {
    const int bs = type == QWEN3C_TYPE_Q8_0 ? 7 : 3;
    if (type == QWEN3C_TYPE_Q4_1) tile_rows_i8(1, nr, nt, bs, wp, ws, xp, xs, kg, part);
    else tile_rows_i8(0, nr, nt, bs, wp, ws, xp, xs, kg, part);
}

static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / QK, ng = n_groups(nb);
    const uint8_t *base = (const uint8_t *)w->data;
    const uint8_t *xb = (const uint8_t *)xq;
    if (n_tok == 1) {
        const I8Plain pl = i8_plain(xq, 0, nb);
        const int8_t *q = pl.q;
        const float *d = pl.d;
        const int32_t *sx = pl.sx;
        switch (w->type) {
        case QWEN3C_TYPE_Q8_0:
            for (int64_t r = r0; r < r1; r++) out[r] = dot_row_q8_0(base + r * w->row_bytes, q, d, nb);
            return;
        case QWEN3C_TYPE_Q4_0:
            for (int64_t r = r0; r < r1; r++) out[r] = dot_row_q4(0, base + r * w->row_bytes, q, d, sx, nb);
            return;
        case QWEN3C_TYPE_Q4_1:
            for (int64_t r = r0; r < r1; r++) out[r] = dot_row_q4(1, base + r * w->row_bytes, q, d, sx, nb);
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
                    tile_dispatch_i8(nr, nt, w->type, panel + i0 * ws, ws, xi + t0 * xs + g0 * GREC, xs,
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

const ActQuantKernels int8_kernels_avx512 = {act_size, quantize, rows};
