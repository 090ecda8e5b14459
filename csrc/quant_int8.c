/*
 * quant_int8.c -- the opt-in fast matmul: 8-bit activations x Q8_0 / Q4_0 / Q4_1 weights with
 * integer dot products (AVX-512 VNNI vpdpbusd). Less exact than quant.c's kernels (the
 * activations are rounded to 8 bits, as llama.cpp does), so never the default.
 *
 * Activation quantization (once per matmul, quantize_activations): each block of 32 values
 * x[0..32) of a token row gets
 *     d  = max|x| / 127            (float32; d = 0 when d < FLT_MIN, i.e. an all-~zero block)
 *     id = 1 / d                   (float32; 0 when d = 0)
 *     q  = rint(x * id)            (float32 product, rounded to nearest, ties to even; |q| <= 127)
 *     sx = sum(q)                  (int32)
 * A weight block (scale dw, quants w, plus the min m for Q4_1) then contributes
 *     dw * d * isum  (+ m * (d * sx) for Q4_1),  isum = sum(w * q) computed exactly in int32,
 * with w = q8 (Q8_0), q4 - 8 (Q4_0), q4 (Q4_1). Everything after isum is float32.
 *
 * Buffer layout of the quantized activations (int8_act_size bytes for n_tok rows, nb = cols/32,
 * ng = ceil(nb / 16)):
 *   plain part, per token (40 nb bytes): int8 q[nb][32]; float d[nb]; int32 sx[nb]
 *   interleaved part (VNNI builds only, filled when n_tok > 1), per token ng records of 640
 *   bytes, one per group of 16 blocks (a short last group is padded with zero blocks):
 *     int8 q[8][16][4]   chunk c, lane j = elements 4c..4c+3 of block j of the group
 *     float d[16]; int32 sx[16]
 *
 * Kernels (VNNI):
 *   decode (n_tok == 1): per weight row, two blocks per 512-bit step against the plain layout:
 *     the signed product w * q is formed exactly as |w| * (q with w's sign) (vpdpbusd takes
 *     one unsigned operand), converted to float and scaled by dw * d per block. Memory-bound.
 *   prefill (n_tok > 1): a panel of PANEL_R rows x KG groups is repacked once into the same
 *     interleaved layout (gathers: lane j of a vector = block j), with the weights biased to
 *     unsigned bytes (Q8_0: w + 128; Q4_0: q4 = w + 8; Q4_1: q4), so that one vpdpbusd
 *     advances 16 blocks by 4 elements and 8 of them finish 16 whole block dot products, one
 *     per int32 lane. The bias is removed exactly in int32 by starting each accumulator at
 *     -bias * sx (per token, shared by all rows); the float work (convert, dw * d, FMA) is
 *     then one step per 16 blocks. A register-blocked TILE_R x TILE_T micro-kernel runs over
 *     every group of tokens: weights are read from memory once per batch.
 * Portable build: plain C with the same arithmetic (results equal up to float32 rounding).
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__F16C__)
#define I8_VNNI 1
#include <immintrin.h>
#else
#define I8_VNNI 0
#endif

#include "internal.h"

#define QK 32          /* elements per block */
#define GB 16          /* blocks per interleaved group (one per int32 lane) */
#define GREC 640       /* bytes per interleaved group record: 512 quants + 16 floats + 16 ints */
#define GREC_D 512     /* offset of the 16 scales in a record */
#define GREC_S 576     /* offset of the 16 sums (activations) / the 16 mins (Q4_1 weights) */

#define TILE_R 4       /* weight rows per micro-kernel */
#define TILE_T 3       /* tokens per micro-kernel: 12 int + 12 float accumulators */
#define PANEL_R 16     /* rows repacked together */
#define KG 6           /* groups (of 512 columns) per repacked panel: 16 x 6 x 640 = 60 KB */

/* ---------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------- */
static inline int64_t n_groups(int64_t nb) { return (nb + GB - 1) / GB; }
static inline size_t plain_bytes(int64_t nb) { return (size_t)nb * 40; }
#if I8_VNNI
static inline size_t inter_bytes(int64_t nb) { return (size_t)n_groups(nb) * GREC; }
#else
static inline size_t inter_bytes(int64_t nb) { (void)nb; return 0; }
#endif

bool int8_path_supported(int type) {
    return type == QWEN3C_TYPE_Q8_0 || type == QWEN3C_TYPE_Q4_0 || type == QWEN3C_TYPE_Q4_1;
}

size_t int8_act_size(int n_tok, int64_t cols) {
    const int64_t nb = cols / QK;
    return (size_t)n_tok * (plain_bytes(nb) + inter_bytes(nb));
}

/* ---------------------------------------------------------------------------------------
 * Activation quantization
 * ------------------------------------------------------------------------------------- */
/* The block's scale from its max |x|; 0 for blocks too small to scale (and NaN). */
static inline float act_scale(float amax, float *id) {
    float d = amax / 127.0f;
    if (!(d >= FLT_MIN) || d > FLT_MAX) d = 0.0f;  /* also keeps 1/d finite */
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

static void quantize_block(const float *x, int8_t *q, float *d_out, int32_t *sx_out) {
#if I8_VNNI
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    float id;
    const float d = act_scale(_mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1))), &id);
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
#else
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    float id;
    const float d = act_scale(amax, &id);
    int32_t s = 0;
    for (int j = 0; j < QK; j++) {
        const float v = nearbyintf(x[j] * id);
        const int qi = v > 127.0f ? 127 : v < -127.0f ? -127 : v == v ? (int)v : 0;
        q[j] = (int8_t)qi;
        s += qi;
    }
    *d_out = d;
    *sx_out = s;
#endif
}

void quantize_activations(const float *x, int n_tok, int64_t cols, void *xq) {
    const int64_t nb = cols / QK;
    uint8_t *base = (uint8_t *)xq;
    for (int t = 0; t < n_tok; t++) {
        const float *xr = x + (int64_t)t * cols;
        uint8_t *pl = base + (size_t)t * plain_bytes(nb);
        int8_t *q = (int8_t *)pl;
        float *d = (float *)(void *)(pl + 32 * nb);
        int32_t *sx = (int32_t *)(void *)(pl + 36 * nb);
        for (int64_t b = 0; b < nb; b++) quantize_block(xr + b * QK, q + b * QK, d + b, sx + b);
#if I8_VNNI
        if (n_tok == 1) continue;  /* decode reads the plain layout only */
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
#endif
    }
}

/* ---------------------------------------------------------------------------------------
 * VNNI kernels
 * ------------------------------------------------------------------------------------- */
#if I8_VNNI
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

static inline float hsum128(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)));
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

/* The 16 block scales (f16 at stride ts from p) of a group as floats; *m_out gets the Q4_1
 * mins (the f16 right after each scale) when m_out != NULL. */
static inline __m512 group_scales(const uint8_t *p, int ts, __m512 *m_out) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(ts));
    const __m512i s = _mm512_i32gather_epi32(idx, p, 1);
    if (m_out) *m_out = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(s, 16)));
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(s));
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

void matmul_rows_int8(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                      int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / QK, ng = n_groups(nb);
    const uint8_t *base = (const uint8_t *)w->data;
    const uint8_t *xb = (const uint8_t *)xq;
    if (n_tok == 1) {
        const int8_t *q = (const int8_t *)xb;
        const float *d = (const float *)(const void *)(xb + 32 * nb);
        const int32_t *sx = (const int32_t *)(const void *)(xb + 36 * nb);
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

#else  /* portable */

/* One weight block as signed ints w (the value is dw * w + m), exact. */
static void unpack_block(int type, const uint8_t *p, int8_t *wq, float *dw, float *m) {
    switch (type) {
    case QWEN3C_TYPE_Q8_0:
        *dw = fp16_to_fp32(read_u16(p));
        *m = 0.0f;
        memcpy(wq, p + 2, QK);
        return;
    case QWEN3C_TYPE_Q4_0:
    case QWEN3C_TYPE_Q4_1: {
        const int q41 = type == QWEN3C_TYPE_Q4_1;
        const uint8_t *qs = p + (q41 ? 4 : 2);
        const int off = q41 ? 0 : 8;
        *dw = fp16_to_fp32(read_u16(p));
        *m = q41 ? fp16_to_fp32(read_u16(p + 2)) : 0.0f;
        for (int j = 0; j < QK / 2; j++) {
            wq[j] = (int8_t)((qs[j] & 0x0f) - off);
            wq[j + QK / 2] = (int8_t)((qs[j] >> 4) - off);
        }
        return;
    }
    default:
        memset(wq, 0, QK);
        *dw = *m = 0.0f;
        return;
    }
}

void matmul_rows_int8(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                      int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / QK;
    const int64_t ts = qwen3c_type_row_size(w->type, QK);
    const uint8_t *base = (const uint8_t *)w->data;
    const uint8_t *xb = (const uint8_t *)xq;
    const int q41 = w->type == QWEN3C_TYPE_Q4_1;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = base + r * w->row_bytes;
        for (int t = 0; t < n_tok; t++) out[(int64_t)t * out_stride + r] = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            int8_t wq[QK];
            float dw, m;
            unpack_block(w->type, row + b * ts, wq, &dw, &m);
            for (int t = 0; t < n_tok; t++) {
                const uint8_t *pl = xb + (size_t)t * plain_bytes(nb);
                const int8_t *q = (const int8_t *)pl + b * QK;
                const float dx = ((const float *)(const void *)(pl + 32 * nb))[b];
                int32_t isum = 0;
                for (int j = 0; j < QK; j++) isum += (int32_t)wq[j] * (int32_t)q[j];
                float v = (dw * dx) * (float)isum;
                if (q41) {
                    const int32_t sx = ((const int32_t *)(const void *)(pl + 36 * nb))[b];
                    v += m * (dx * (float)sx);
                }
                out[(int64_t)t * out_stride + r] += v;
            }
        }
    }
}
#endif

/* ---------------------------------------------------------------------------------------
 * Public, validated entry point (tests and benchmarks)
 * ------------------------------------------------------------------------------------- */
int qwen3c_matmul_int8(int type, const void *w, size_t w_size, const float *x, int64_t n_tok,
                       int64_t n, int64_t d, float *out, int n_threads, char *err, size_t err_size) {
    static const QuantPath qp = {"matmul_int8", "int8", int8_path_supported, int8_act_size, quantize_activations, matmul_rows_int8, NULL, NULL};
    return quant_path_matmul(&qp, type, w, w_size, x, n_tok, n, d, out, n_threads, err, err_size);
}
