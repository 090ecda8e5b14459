/*
 * q24k_neon.c -- the q24k kernels for arm64 (quant_q24k.c has the packed format and the
 * arithmetic), compiled for every arm64 tier: q24's activation blocks x Q4_K / Q5_K / Q6_K
 * weights packed into 16-row groups. A packed chunk is 64 bytes = 4 registers of 4 rows x 4
 * columns, the layout q24_neon.c's sdot kernels read: per 32-column block the 4-6-bit weight
 * integers (0..63, so signed bytes serve) are unpacked from the nibble / high-bit planes with
 * shifts and masks, and each 16-byte register meets the three activation digits in sdot against
 * a 4-byte lane of the digit register (neon, neon-i8mm; neon-nodot computes the same sums with
 * widening multiplies and runs the K-quants as f32). The sub-block scales and mins are applied
 * per block (Q6_K: per 16 columns) in the order of q24k_scalar.c, so the results are the same
 * bits.
 *
 * Design for Apple M-series / Graviton (not measured here: see q24_neon.c): decode keeps the 16
 * rows of a group in flight (12 int32 accumulators, each weight byte loaded once; the unpacking
 * costs 2-5 simple ops per 16 bytes, hidden under the memory traffic); prefill does 2 tokens per
 * pass, 8 rows at a time (12 accumulators + 8 float sums + 6 activation registers). neon-i8mm
 * uses the same sdot kernels: smmla would need a second K-quant layout.
 */
#include "neon_common.h"
#include "q24.h"

#define QK_K 256

/* How block b (0..7) of a super-block record finds its weight integers: nibble plane `lo` at
 * right shift `lo_shift`, and (Q5_K) the bit b of plane `hi` or (Q6_K) bits 2k, 2k + 1 of `hi`. */
typedef struct {
    const uint8_t *lo, *hi;
    int8x16_t lo_shift, hi_shift; /* negative: vshlq shifts right */
    uint8x16_t hi_bit;            /* Q5_K: 1 << b */
} BlockUnpack;

static inline __attribute__((always_inline)) BlockUnpack block_unpack(const int TYPE, const uint8_t *rec, int b) {
    BlockUnpack u;
    if (TYPE == QWEN3C_TYPE_Q6_K) {
        const uint8_t *half = rec + 288 + 1536 * (b / 4);
        const int k = b % 4;
        u.lo = half + 512 * (k % 2);
        u.lo_shift = vdupq_n_s8((int8_t)(-4 * (k / 2)));
        u.hi = half + 1024;
        u.hi_shift = vdupq_n_s8((int8_t)(-2 * k));
        u.hi_bit = vdupq_n_u8(0);
    } else {
        u.lo = rec + 320 + 512 * (b / 2);
        u.lo_shift = vdupq_n_s8((int8_t)(-4 * (b % 2)));
        u.hi = rec + 2368;
        u.hi_shift = vdupq_n_s8(0);
        u.hi_bit = vdupq_n_u8((uint8_t)(1u << b));
    }
    return u;
}

/* The weight integers of chunk c (columns 4c..4c+3), rows 4R..4R+3 */
static inline __attribute__((always_inline)) int8x16_t weights4x4(const int TYPE, const BlockUnpack *u, int c, int R) {
    const size_t off = 64 * (size_t)c + 16 * (size_t)R;
    const uint8x16_t lo = vandq_u8(vshlq_u8(vld1q_u8(u->lo + off), u->lo_shift), vdupq_n_u8(0x0f));
    if (TYPE == QWEN3C_TYPE_Q4_K) return vreinterpretq_s8_u8(lo);
    const uint8x16_t h = vld1q_u8(u->hi + off);
    if (TYPE == QWEN3C_TYPE_Q5_K) /* + 16 where bit b is set */
        return vreinterpretq_s8_u8(vorrq_u8(lo, vandq_u8(vtstq_u8(h, u->hi_bit), vdupq_n_u8(16))));
    const uint8x16_t hs = vandq_u8(vshlq_u8(h, u->hi_shift), vdupq_n_u8(3)); /* bits 2k, 2k + 1 */
    return vreinterpretq_s8_u8(vsliq_n_u8(lo, hs, 4));
}

/* 4 bytes at p as 4 floats (signed or unsigned); p + 8 must be readable */
static inline float32x4_t u8x4_f32(const uint8_t *p) {
    return vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vld1_u8(p)))));
}
static inline float32x4_t s8x4_f32(const uint8_t *p) {
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vld1_s8((const int8_t *)p)))));
}

/* One group of 16 rows x NT (1 or 2) tokens over all ns super-blocks: out[t][0..valid). RR
 * 4-row registers per pass over a block (NT = 1: all 16 rows; NT = 2: 8 rows at a time).
 * TYPE and NT are compile-time constants in every caller (always_inline). */
static inline __attribute__((always_inline)) void
group_tile(const int TYPE, const int NT, const uint8_t *g, int64_t ns, const BlockQ24 *x,
           int64_t x_stride, float *out, int64_t out_stride, int valid) {
    const int q6 = TYPE == QWEN3C_TYPE_Q6_K, RR = NT == 1 ? 4 : 2;
    const size_t rb = TYPE == QWEN3C_TYPE_Q4_K ? 2368 : TYPE == QWEN3C_TYPE_Q5_K ? 2880 : 3360;
    float32x4_t tot[2][4];
    for (int t = 0; t < NT; t++)
        for (int R = 0; R < 4; R++) tot[t][R] = vdupq_n_f32(0.0f);
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *rec = g + (size_t)s * rb;
        for (int b = 0; b < QK_K / QK; b++) {
            const BlockQ24 *xb[2];
            for (int t = 0; t < NT; t++) xb[t] = x + t * x_stride + s * (QK_K / QK) + b;
            const BlockUnpack up = block_unpack(TYPE, rec, b);
            for (int R0 = 0; R0 < 4; R0 += RR) {
                int32x4_t ah[2][4], am[2][4], al[2][4];
                for (int t = 0; t < NT; t++)
                    for (int rr = 0; rr < RR; rr++) ah[t][rr] = am[t][rr] = al[t][rr] = vdupq_n_s32(0);
                for (int part = 0; part < 2; part++) { /* columns 16 part .. 16 part + 16 */
                    int8x16_t h[2], m[2], l[2];
                    for (int t = 0; t < NT; t++) {
                        h[t] = vld1q_s8(xb[t]->h + 16 * part);
                        m[t] = vld1q_s8(xb[t]->m + 16 * part);
                        l[t] = vld1q_s8(xb[t]->l + 16 * part);
                    }
#define QUAD(C4)                                                                                   \
                    {                                                                              \
                        int8x16_t w[4];                                                            \
                        for (int rr = 0; rr < RR; rr++) w[rr] = weights4x4(TYPE, &up, 4 * part + C4, R0 + rr); \
                        for (int t = 0; t < NT; t++)                                               \
                            for (int rr = 0; rr < RR; rr++) {                                      \
                                ah[t][rr] = DOT_LANE(ah[t][rr], w[rr], h[t], C4);                  \
                                am[t][rr] = DOT_LANE(am[t][rr], w[rr], m[t], C4);                  \
                                al[t][rr] = DOT_LANE(al[t][rr], w[rr], l[t], C4);                  \
                            }                                                                      \
                    }
                    QUAD(0) QUAD(1) QUAD(2) QUAD(3)
#undef QUAD
                    if (!q6) continue; /* Q4_K / Q5_K: one sub-block per block, below */
                    /* Q6_K sub-block 2b + part (16 columns): ih - 32 sh_part, iml - 32 sml_part (q6k: the negatives) */
                    for (int rr = 0; rr < RR; rr++) {
                        const int R = R0 + rr;
                        const float32x4_t ds = vmulq_f32(neon_f16x4(rec + 8 * R), s8x4_f32(rec + 32 + 16 * (2 * b + part) + 4 * R));
                        for (int t = 0; t < NT; t++) {
                            const int32x4_t ih = vaddq_s32(ah[t][rr], vdupq_n_s32(xb[t]->q6k[2 * part]));
                            const int32x4_t iml = vaddq_s32(vmlaq_n_s32(al[t][rr], am[t][rr], 256),
                                                            vdupq_n_s32(xb[t]->q6k[2 * part + 1]));
                            const float32x4_t f = vfmaq_n_f32(vcvtq_f32_s32(iml), vcvtq_f32_s32(ih), 65536.0f);
                            tot[t][R] = vfmaq_f32(tot[t][R], f, vmulq_n_f32(ds, xb[t]->d));
                            ah[t][rr] = am[t][rr] = al[t][rr] = vdupq_n_s32(0);
                        }
                    }
                }
                if (q6) continue;
                /* Q4_K / Q5_K: tot += f (d sc_b) dx - (dmin mn_b) sx */
                for (int rr = 0; rr < RR; rr++) {
                    const int R = R0 + rr;
                    const float32x4_t ds = vmulq_f32(neon_f16x4(rec + 8 * R), u8x4_f32(rec + 64 + 16 * b + 4 * R));
                    const float32x4_t dm = vmulq_f32(neon_f16x4(rec + 32 + 8 * R), u8x4_f32(rec + 192 + 16 * b + 4 * R));
                    for (int t = 0; t < NT; t++) {
                        const int32x4_t iml = vmlaq_n_s32(al[t][rr], am[t][rr], 256);
                        const float32x4_t f = vfmaq_n_f32(vcvtq_f32_s32(iml), vcvtq_f32_s32(ah[t][rr]), 65536.0f);
                        tot[t][R] = vfmaq_f32(tot[t][R], f, vmulq_n_f32(ds, xb[t]->d));
                        tot[t][R] = vfmsq_n_f32(tot[t][R], dm, xb[t]->sx);
                    }
                }
            }
        }
    }
    for (int t = 0; t < NT; t++) store_rows(out + t * out_stride, tot[t], valid);
}

static inline __attribute__((always_inline)) void
group_all_tokens(const int TYPE, const uint8_t *g, int64_t ns, const BlockQ24 *x, int n_tok,
                 float *out, int64_t out_stride, int valid) {
    const int64_t nb = ns * (QK_K / QK); /* activation blocks per token */
    int t = 0;
    for (; t + 2 <= n_tok; t += 2)
        group_tile(TYPE, 2, g, ns, x + t * nb, nb, out + t * out_stride, out_stride, valid);
    if (t < n_tok) group_tile(TYPE, 1, g, ns, x + t * nb, nb, out + t * out_stride, out_stride, valid);
}

static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    const int64_t ns = w->cols / QK_K;
    const size_t group_bytes = q24k_packed_size(w->type, GR, w->cols);
    for (int64_t r = r0; r < r1; r += GR) {
        const uint8_t *g = (const uint8_t *)w->packed + (size_t)(r / GR) * group_bytes;
        const int valid = r1 - r < GR ? (int)(r1 - r) : GR;
        switch (w->type) {
        case QWEN3C_TYPE_Q4_K: group_all_tokens(QWEN3C_TYPE_Q4_K, g, ns, xq, n_tok, out + r, out_stride, valid); break;
        case QWEN3C_TYPE_Q5_K: group_all_tokens(QWEN3C_TYPE_Q5_K, g, ns, xq, n_tok, out + r, out_stride, valid); break;
        default: group_all_tokens(QWEN3C_TYPE_Q6_K, g, ns, xq, n_tok, out + r, out_stride, valid); break;
        }
    }
}

const Q24KKernels TIER_TABLE(q24k_kernels) = {q24k_packed_size, q24k_pack, rows, NULL, 0};
