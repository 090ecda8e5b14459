/*
 * q24_scalar.c -- the q24 kernels in plain C (quant_q24.c has the format): the same integer
 * sums and the same float steps in the same order as q24_avx2.c and q24_avx512.c, so all tiers
 * agree bit for bit. Not fast: q24 is the forward pass's path only on tiers with SIMD integer
 * dot products (Q24Kernels.fast); here it serves qwen3c_matmul_q24 and the tests, and its
 * quantize is the reference of every tier's (the q24k family reads the same blocks).
 */
#include "q24.h"

static void quantize_block(const float *x, BlockQ24 *o) {
    float amax = 0.0f;
    int bad = 0;
    for (int i = 0; i < QK; i++) {
        if (!isfinite(x[i])) bad = 1;
        else amax = fmaxf(amax, fabsf(x[i]));
    }
    float id;
    o->d = q24_act_scale(amax, bad, &id);
    o->sx = q24_sum32(x);
    int32_t sh = 0, sm = 0, sl = 0, sh0 = 0, sml0 = 0;
    for (int i = 0; i < QK; i++) {
        if (i == QK / 2) sh0 = sh, sml0 = 256 * sm + sl;
        int32_t v = bad ? 0 : (int32_t)rintf(x[i] * id);
        v = v > VMAX ? VMAX : v < -VMAX ? -VMAX : v;
        const int32_t l = (int8_t)(v & 0xff), v1 = (v - l) / 256;
        const int32_t m = (int8_t)(v1 & 0xff), h = (v1 - m) / 256;
        o->h[i] = (int8_t)h, o->m[i] = (int8_t)m, o->l[i] = (int8_t)l;
        sh += h, sm += m, sl += l;
    }
    o->sh = sh;
    o->sml = 256 * sm + sl;
    q24_set_halves(o, sh0, sml0);
}

static void quantize(const float *x, int64_t i0, int64_t i1, void *xq) {
    BlockQ24 *o = (BlockQ24 *)xq;
    for (int64_t i = i0; i < i1; i++) quantize_block(x + i * QK, o + i); /* rows are whole blocks */
}

static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    const int type = w->type, rb = q24_record_bytes(type), q41 = type == QWEN3C_TYPE_Q4_1;
    const int32_t off = type == QWEN3C_TYPE_Q8_0 ? 128 : type == QWEN3C_TYPE_Q4_0 ? 8 : 0;
    const int64_t nb = w->cols / QK;
    const BlockQ24 *x = (const BlockQ24 *)xq;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *g = (const uint8_t *)w->packed + (size_t)(r / GR) * (size_t)nb * (size_t)rb;
        const int lane = (int)(r % GR);
        for (int t = 0; t < n_tok; t++) {
            float tot = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *p = g + (size_t)b * (size_t)rb, *qp = p + (q41 ? 64 : 32);
                const BlockQ24 *xb = x + t * nb + b;
                int32_t ih = 0, iml = 0;
                for (int k = 0; k < QK; k++) {
                    int32_t u;
                    if (type == QWEN3C_TYPE_Q8_0) u = qp[64 * (k / 4) + 4 * lane + k % 4];
                    else {
                        const uint8_t byte = qp[64 * ((k % 16) / 4) + 4 * lane + k % 4];
                        u = k < 16 ? (byte & 0x0f) : (byte >> 4);
                    }
                    const int32_t wv = u - off;
                    ih += wv * xb->h[k];
                    iml += wv * (256 * xb->m[k] + xb->l[k]);
                }
                uint16_t dbits, mbits;
                memcpy(&dbits, p + 2 * lane, 2);
                const float f = fma_exact((float)ih, 65536.0f, (float)iml);
                tot = fma_exact(f, fp16_to_fp32(dbits) * xb->d, tot);
                if (q41) {
                    memcpy(&mbits, p + 32 + 2 * lane, 2);
                    tot = fma_exact(fp16_to_fp32(mbits), xb->sx, tot);
                }
            }
            out[t * out_stride + r] = tot;
        }
    }
}

const Q24Kernels TIER_TABLE(q24_kernels) = {false, q24_packed_size, q24_pack, q24_act_bytes, quantize, rows, NULL, 0, false};
