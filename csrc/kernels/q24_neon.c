/*
 * q24_neon.c -- the q24 kernels for arm64 (quant_q24.c has the format), compiled for every arm64
 * tier (kernels.h): with dotprod (tier neon) sdot does 16 byte products per instruction, and
 * one sdot per activation digit advances 4 rows by 4 columns, so 24-bit activations take three
 * per 16 multiply-adds, as vpdpbusd's three per 64 on AVX-512; with i8mm (tier neon-i8mm) smmla
 * multiplies a 2-row x 8-column weight tile by 2 tokens' 8 columns (32 multiply-adds per
 * instruction, twice sdot's); without either (neon-nodot) the same integer sums come from
 * widening multiplies, exact but no faster than the float path, so there q24 is only the test
 * entry's (Q24Kernels.fast = false), as on x86 without VNNI. Every variant computes the same
 * exact int32 sums and then the same float steps in the same order as q24_scalar.c (and the
 * activation blocks' sum of x in q24_sum32's order), so all agree bit for bit
 * (tests/c/test_kernels.c checks).
 *
 * Layouts (16-row groups, one record per block of 32 columns, f16 scales first, as quant_q24.c):
 *  - sdot and nodot: q24_pack_signed, the x86 layout with the Q8_0 bytes signed (sdot multiplies
 *    signed by signed bytes; Q4 nibbles 0..15 are non-negative, and Q4_0's offset 8 is
 *    subtracted from the integer sums as sum((q - 8) h) = sum(q h) - 8 sum(h)). A 64-byte chunk
 *    is 4 registers of 4 rows x 4 columns; `sdot acc, w, act.4b[c]` takes column quad c of the
 *    activation register (16 digits), so one load of 16 activation digits serves 4 chunks.
 *  - smmla (neon-i8mm, packed by q24_pack_mmla in quant_q24.c): per record, after the scales,
 *    registers of 2 rows x 8 columns: Q8_0: register (octet o < 4, row pair P < 8) at 16 (8 o + P) =
 *    {w[2P][8o..8o+8), w[2P+1][8o..8o+8)}; Q4_0 / Q4_1: register (o < 2, P) at 16 (8 o + P) =
 *    {qs[2P][8o..8o+8), qs[2P+1][8o..8o+8)}, whose low nibbles are columns 8o.. and high
 *    nibbles 16 + 8o... The result lanes are (row, token) pairs; the float steps run on them
 *    lane by lane with the scales laid out to match.
 *
 * Design for Apple M-series / Graviton (not measured: this machine is x86-64 and runs the arm64
 * build under qemu, which says nothing about speed):
 *  - sdot / smmla latency is 3-4 cycles, and M1..M4 / Neoverse V1/V2 issue 4 per cycle
 *    (Graviton2's N1: 2), so 12+ independent accumulators are needed. Decode (1 token) keeps all
 *    16 rows in flight: 4 row registers x 3 digits = 12 int32 accumulators + 4 float sums + 3
 *    activation + 4 weight registers; each weight byte is loaded once (decode is memory-bound).
 *  - prefill does 2 tokens per pass over a record, 8 rows at a time (the record's two halves
 *    one after the other, from L1): 2 x 2 x 3 = 12 accumulators + 8 float sums + 6 activation
 *    + 2 weight registers = 28 of the 32. Per block that is 56 loads for 192 sdot, well under
 *    the 3 (Apple) / 2 (Neoverse) 128-bit loads per cycle, so the kernel is sdot-bound.
 *  - smmla prefill: 8 rows x 2 tokens per pass: 4 row pairs x 3 digits = 12 accumulators + 8
 *    float sums + 3 activation registers (2 tokens' octet each) + 1 weight register.
 *  - each block ends with its float steps (per 4 lanes: 1 mla, 2 converts, 3 fma/mul), ~1/4 of
 *    the sdot count; they cannot be deferred, since every block has its own scales.
 */
#include "neon_common.h"
#include "q24.h"

/* ---------------------------------------------------------------------------------------
 * Activation quantization (every arm64 tier): the numbers of q24_scalar.c's quantize_block
 * ------------------------------------------------------------------------------------- */
static void quantize_block(const float *x, BlockQ24 *o) {
    float32x4_t v[8];
    for (int k = 0; k < 8; k++) v[k] = vld1q_f32(x + 4 * k);
    const float32x4_t inf = vdupq_n_f32(INFINITY);
    uint32x4_t fin = vcltq_f32(vabsq_f32(v[0]), inf); /* false for NaN and +-inf */
    float32x4_t mx = vabsq_f32(v[0]);
    for (int k = 1; k < 8; k++) {
        fin = vandq_u32(fin, vcltq_f32(vabsq_f32(v[k]), inf));
        mx = vmaxq_f32(mx, vabsq_f32(v[k]));
    }
    /* sum x in q24_sum32's order: a[i] += a[i + w] for w = 16, 8, 4, 2, 1 */
    float32x4_t s[4];
    for (int k = 0; k < 4; k++) s[k] = vaddq_f32(v[k], v[k + 4]);
    s[0] = vaddq_f32(s[0], s[2]), s[1] = vaddq_f32(s[1], s[3]);
    s[0] = vaddq_f32(s[0], s[1]);
    const float32x2_t s2 = vadd_f32(vget_low_f32(s[0]), vget_high_f32(s[0]));
    o->sx = vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
    const int bad = vminvq_u32(fin) == 0;
    float id;
    o->d = q24_act_scale(bad ? 0.0f : vmaxvq_f32(mx), bad, &id);
    if (bad) { /* d is NaN: zero digits, as the plain C */
        memset(o->h, 0, 3 * QK);
        o->sh = o->sml = 0;
        q24_set_halves(o, 0, 0);
        return;
    }
    const int32x4_t lo = vdupq_n_s32(-VMAX), hi = vdupq_n_s32(VMAX), bias = vdupq_n_s32(0x808080);
    int32_t sh[2], sv[2]; /* per 16 elements: sum(h), sum(v) */
    for (int half = 0; half < 2; half++) {
        int32x4_t svh = vdupq_n_s32(0);
        uint8x16_t w[4];
        for (int k = 0; k < 4; k++) {
            /* round to nearest even (fcvtns), clamp to +-VMAX */
            int32x4_t q = vcvtnq_s32_f32(vmulq_n_f32(v[4 * half + k], id));
            q = vminq_s32(vmaxq_s32(q, lo), hi);
            svh = vaddq_s32(svh, q);
            /* v = 65536 h + 256 m + l with signed digits: they are the bytes of (v + bias) ^ bias */
            w[k] = vreinterpretq_u8_s32(veorq_s32(vaddq_s32(q, bias), bias));
        }
        /* bytes 0, 1, 2 of each int32 -> l, m, h (16 each) */
        const uint8x16_t a = vuzp1q_u8(w[0], w[1]), b = vuzp1q_u8(w[2], w[3]);
        const uint8x16_t c = vuzp2q_u8(w[0], w[1]), d = vuzp2q_u8(w[2], w[3]);
        const int8x16_t hd = vreinterpretq_s8_u8(vuzp2q_u8(a, b));
        vst1q_s8(o->l + 16 * half, vreinterpretq_s8_u8(vuzp1q_u8(a, b)));
        vst1q_s8(o->m + 16 * half, vreinterpretq_s8_u8(vuzp1q_u8(c, d)));
        vst1q_s8(o->h + 16 * half, hd);
        sh[half] = vaddlvq_s8(hd);
        sv[half] = vaddvq_s32(svh);
    }
    /* sh = sum(h); sml = 256 sum(m) + sum(l) = sum(v) - 65536 sh (all exact in int32); the
     * same over the first 16 elements for q6k */
    o->sh = sh[0] + sh[1];
    o->sml = sv[0] + sv[1] - o->sh * 65536;
    q24_set_halves(o, sh[0], sv[0] - sh[0] * 65536);
}

static void quantize(const float *x, int64_t i0, int64_t i1, void *xq) {
    BlockQ24 *o = (BlockQ24 *)xq;
    for (int64_t i = i0; i < i1; i++) quantize_block(x + i * QK, o + i); /* rows are whole blocks */
}

#if !defined(__ARM_FEATURE_MATMUL_INT8)
/* The 4-row x 4-column weight register of row quad R, column quad C of column half HALF */
static inline __attribute__((always_inline)) int8x16_t
weights4x4(const int TYPE, const uint8_t *qp, const int HALF, const int C, int R) {
    if (TYPE == QWEN3C_TYPE_Q8_0) return vld1q_s8((const int8_t *)qp + 64 * (4 * HALF + C) + 16 * R);
    const uint8x16_t raw = vld1q_u8(qp + 64 * C + 16 * R);
    return vreinterpretq_s8_u8(HALF ? vshrq_n_u8(raw, 4) : vandq_u8(raw, vdupq_n_u8(0x0f)));
}

/* One group of 16 rows x NT (1 or 2) tokens over all nb blocks: out[t][0..valid) for t < NT.
 * The record is done RR 4-row registers at a time (NT = 1: all 16 rows, each weight loaded
 * once; NT = 2: 8 rows at a time, so that 12 accumulators suffice). TYPE and NT are
 * compile-time constants in every caller (always_inline). */
static inline __attribute__((always_inline)) void
group_tile(const int TYPE, const int NT, const uint8_t *g, int64_t nb, const BlockQ24 *x,
           int64_t x_stride, float *out, int64_t out_stride, int valid) {
    const int q41 = TYPE == QWEN3C_TYPE_Q4_1, rb = q24_record_bytes(TYPE);
    const int RR = NT == 1 ? 4 : 2;
    float32x4_t tot[2][4];
    for (int t = 0; t < NT; t++)
        for (int R = 0; R < 4; R++) tot[t][R] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = g + (size_t)b * (size_t)rb, *qp = p + (q41 ? 64 : 32);
        const BlockQ24 *xb[2];
        for (int t = 0; t < NT; t++) xb[t] = x + t * x_stride + b;
        for (int R0 = 0; R0 < 4; R0 += RR) {
            int32x4_t ah[2][4], am[2][4], al[2][4];
            for (int t = 0; t < NT; t++)
                for (int rr = 0; rr < RR; rr++) ah[t][rr] = am[t][rr] = al[t][rr] = vdupq_n_s32(0);
            for (int half = 0; half < 2; half++) { /* columns 16 half .. 16 half + 16 */
                int8x16_t h[2], m[2], l[2];
                for (int t = 0; t < NT; t++) {
                    h[t] = vld1q_s8(xb[t]->h + 16 * half);
                    m[t] = vld1q_s8(xb[t]->m + 16 * half);
                    l[t] = vld1q_s8(xb[t]->l + 16 * half);
                }
#define QUAD(C)                                                                                    \
                {                                                                                  \
                    int8x16_t w[4];                                                                \
                    for (int rr = 0; rr < RR; rr++) w[rr] = weights4x4(TYPE, qp, half, C, R0 + rr); \
                    for (int t = 0; t < NT; t++)                                                   \
                        for (int rr = 0; rr < RR; rr++) {                                          \
                            ah[t][rr] = DOT_LANE(ah[t][rr], w[rr], h[t], C);                       \
                            am[t][rr] = DOT_LANE(am[t][rr], w[rr], m[t], C);                       \
                            al[t][rr] = DOT_LANE(al[t][rr], w[rr], l[t], C);                       \
                        }                                                                          \
                }
                QUAD(0) QUAD(1) QUAD(2) QUAD(3)
#undef QUAD
            }
            /* the float steps of q24_scalar.c, 4 rows at a time */
            for (int rr = 0; rr < RR; rr++) {
                const int R = R0 + rr;
                const float32x4_t dw = neon_f16x4(p + 8 * R);
                for (int t = 0; t < NT; t++) {
                    int32x4_t ih = ah[t][rr], iml = vmlaq_n_s32(al[t][rr], am[t][rr], 256);
                    if (TYPE == QWEN3C_TYPE_Q4_0) { /* sum((q - 8) d) = sum(q d) - 8 sum(d) */
                        ih = vsubq_s32(ih, vdupq_n_s32(8 * xb[t]->sh));
                        iml = vsubq_s32(iml, vdupq_n_s32(8 * xb[t]->sml));
                    }
                    const float32x4_t f = vfmaq_n_f32(vcvtq_f32_s32(iml), vcvtq_f32_s32(ih), 65536.0f);
                    tot[t][R] = vfmaq_f32(tot[t][R], f, vmulq_n_f32(dw, xb[t]->d));
                    if (q41) tot[t][R] = vfmaq_n_f32(tot[t][R], neon_f16x4(p + 32 + 8 * R), xb[t]->sx);
                }
            }
        }
    }
    for (int t = 0; t < NT; t++) store_rows(out + t * out_stride, tot[t], valid);
}
#endif

#if defined(__ARM_FEATURE_MATMUL_INT8)
/* ---------------------------------------------------------------------------------------
 * i8mm: smmla on 2-row x 8-column weight tiles (q24_pack_mmla) and 2 tokens' 8 columns
 * ------------------------------------------------------------------------------------- */
/* The weight tile of octet O (columns 8 O .. 8 O + 8) and row pair P */
static inline __attribute__((always_inline)) int8x16_t weights2x8(const int TYPE, const uint8_t *qp, int O, int P) {
    if (TYPE == QWEN3C_TYPE_Q8_0) return vld1q_s8((const int8_t *)qp + 16 * (8 * O + P));
    const uint8x16_t raw = vld1q_u8(qp + 16 * (8 * (O & 1) + P)); /* octets 2, 3: the high nibbles */
    return vreinterpretq_s8_u8(O >= 2 ? vshrq_n_u8(raw, 4) : vandq_u8(raw, vdupq_n_u8(0x0f)));
}

/* Two tokens' 8 digits of octet O as one smmla operand (a1 NULL: the second token is zero) */
static inline int8x16_t act_pair(const int8_t *a0, const int8_t *a1, int O) {
    return vcombine_s8(vld1_s8(a0 + 8 * O), a1 ? vld1_s8(a1 + 8 * O) : vdup_n_s8(0));
}

/* {v0, v1, v0, v1}: a per-token value in the lanes of a (row, token) result */
static inline float32x4_t token_lanes(float v0, float v1) {
    const float32x2_t v = vset_lane_f32(v1, vdup_n_f32(v0), 1);
    return vcombine_f32(v, v);
}

/* One group of 16 rows x NT (1 or 2) tokens: out[t][0..valid). smmla lane 2 i + j of row pair
 * P is (row 2P + i, token j); the float steps run lane by lane with the row scales doubled
 * ({d_2P, d_2P, d_2P+1, d_2P+1}) and the token values interleaved, so every lane does exactly
 * the scalar steps of its (row, token). 8 rows (4 row pairs) at a time: 12 accumulators. */
static inline __attribute__((always_inline)) void
group_tile(const int TYPE, const int NT, const uint8_t *g, int64_t nb, const BlockQ24 *x,
           int64_t x_stride, float *out, int64_t out_stride, int valid) {
    const int q41 = TYPE == QWEN3C_TYPE_Q4_1, rb = q24_record_bytes(TYPE);
    float32x4_t tot[8];
    for (int P = 0; P < 8; P++) tot[P] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = g + (size_t)b * (size_t)rb, *qp = p + (q41 ? 64 : 32);
        const BlockQ24 *x0 = x + b, *x1 = NT == 2 ? x + x_stride + b : NULL;
        const float32x4_t xd = token_lanes(x0->d, x1 ? x1->d : 0.0f);
        const float32x4_t sx = token_lanes(x0->sx, x1 ? x1->sx : 0.0f);
        int32x4_t oh = vdupq_n_s32(0), oml = oh; /* Q4_0: 8 sum(h), 8 (256 sum(m) + sum(l)) per token lane */
        if (TYPE == QWEN3C_TYPE_Q4_0) {
            const int32x2_t h2 = vset_lane_s32(x1 ? 8 * x1->sh : 0, vdup_n_s32(8 * x0->sh), 1);
            const int32x2_t m2 = vset_lane_s32(x1 ? 8 * x1->sml : 0, vdup_n_s32(8 * x0->sml), 1);
            oh = vcombine_s32(h2, h2), oml = vcombine_s32(m2, m2);
        }
        for (int half = 0; half < 2; half++) { /* row pairs 4 half .. 4 half + 4 */
            int32x4_t ah[4], am[4], al[4];
            for (int j = 0; j < 4; j++) ah[j] = am[j] = al[j] = vdupq_n_s32(0);
            for (int O = 0; O < 4; O++) {
                const int8x16_t H = act_pair(x0->h, x1 ? x1->h : NULL, O);
                const int8x16_t M = act_pair(x0->m, x1 ? x1->m : NULL, O);
                const int8x16_t L = act_pair(x0->l, x1 ? x1->l : NULL, O);
                for (int j = 0; j < 4; j++) {
                    const int8x16_t w = weights2x8(TYPE, qp, O, 4 * half + j);
                    ah[j] = vmmlaq_s32(ah[j], w, H);
                    am[j] = vmmlaq_s32(am[j], w, M);
                    al[j] = vmmlaq_s32(al[j], w, L);
                }
            }
            for (int j = 0; j < 4; j++) {
                const int P = 4 * half + j;
                const float32x4_t d4 = neon_f16x4(p + 8 * (P / 2)); /* rows 4 (P / 2) .. + 4 */
                const float32x4_t dw = P % 2 ? vzip2q_f32(d4, d4) : vzip1q_f32(d4, d4);
                int32x4_t ih = ah[j], iml = vmlaq_n_s32(al[j], am[j], 256);
                if (TYPE == QWEN3C_TYPE_Q4_0) ih = vsubq_s32(ih, oh), iml = vsubq_s32(iml, oml);
                const float32x4_t f = vfmaq_n_f32(vcvtq_f32_s32(iml), vcvtq_f32_s32(ih), 65536.0f);
                tot[P] = vfmaq_f32(tot[P], f, vmulq_f32(dw, xd));
                if (q41) {
                    const float32x4_t m4 = neon_f16x4(p + 32 + 8 * (P / 2));
                    tot[P] = vfmaq_f32(tot[P], P % 2 ? vzip2q_f32(m4, m4) : vzip1q_f32(m4, m4), sx);
                }
            }
        }
    }
    float32x4_t t0[4], t1[4]; /* (row, token) lanes back to 4 rows per token */
    for (int q = 0; q < 4; q++) {
        t0[q] = vuzp1q_f32(tot[2 * q], tot[2 * q + 1]);
        t1[q] = vuzp2q_f32(tot[2 * q], tot[2 * q + 1]);
    }
    store_rows(out, t0, valid);
    if (NT == 2) store_rows(out + out_stride, t1, valid);
}
#define Q24_PACK q24_pack_mmla
#else
#define Q24_PACK q24_pack_signed
#endif

static inline __attribute__((always_inline)) void
group_all_tokens(const int TYPE, const uint8_t *g, int64_t nb, const BlockQ24 *x, int n_tok,
                 float *out, int64_t out_stride, int valid) {
    int t = 0;
    for (; t + 2 <= n_tok; t += 2)
        group_tile(TYPE, 2, g, nb, x + t * nb, nb, out + t * out_stride, out_stride, valid);
    if (t < n_tok) group_tile(TYPE, 1, g, nb, x + t * nb, nb, out + t * out_stride, out_stride, valid);
}

static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / QK;
    const size_t group_bytes = (size_t)nb * (size_t)q24_record_bytes(w->type);
    for (int64_t r = r0; r < r1; r += GR) {
        const uint8_t *g = (const uint8_t *)w->packed + (size_t)(r / GR) * group_bytes;
        const int valid = r1 - r < GR ? (int)(r1 - r) : GR;
        switch (w->type) {
        case QWEN3C_TYPE_Q8_0: group_all_tokens(QWEN3C_TYPE_Q8_0, g, nb, xq, n_tok, out + r, out_stride, valid); break;
        case QWEN3C_TYPE_Q4_0: group_all_tokens(QWEN3C_TYPE_Q4_0, g, nb, xq, n_tok, out + r, out_stride, valid); break;
        default: group_all_tokens(QWEN3C_TYPE_Q4_1, g, nb, xq, n_tok, out + r, out_stride, valid); break;
        }
    }
}

#if defined(__ARM_FEATURE_DOTPROD)
#define Q24_FAST true
#else
#define Q24_FAST false
#endif

const Q24Kernels TIER_TABLE(q24_kernels) = {Q24_FAST, q24_packed_size, Q24_PACK, q24_act_bytes, quantize, rows, NULL, 0, false};
