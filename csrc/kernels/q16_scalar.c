/*
 * q16_scalar.c -- the q16 kernels in plain C (quant_q16.c has the format): the activations in
 * the plain layout only, one exact int32 block sum per (row, token, block), then the float
 * steps. Equal to q16_avx512.c up to float32 rounding.
 */
#include "q16.h"

static size_t act_size(int n_tok, int64_t cols) { return (size_t)n_tok * plain_bytes(cols / QK); }

static void quantize_block(const float *x, int16_t *q, float *d_out, float *s_out, int32_t *qb_out) {
    float amax = 0.0f, s = 0.0f;
    for (int j = 0; j < QK; j++) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
        s += x[j];
    }
    float id;
    const float d = block_scale(amax, 32767.0f, &id);
    int32_t qs = 0;
    for (int j = 0; j < QK; j++) {
        const float v = nearbyintf(x[j] * id);
        q[j] = (int16_t)(v > 32767.0f ? 32767 : v < -32767.0f ? -32767 : v == v ? (int)v : 0);
        qs += q[j];
    }
    *d_out = d;
    *s_out = s;
    *qb_out = -8 * qs;
}

static void quantize(const float *x, int n_tok, int64_t cols, void *xq) {
    for (int t = 0; t < n_tok; t++) q16_quantize_plain(x, t, cols, xq, quantize_block);
}

/* One weight block as int16 w (the value is dw * w + m), exact. */
static void unpack_block(int type, const uint8_t *p, int16_t *wq, float *dw, float *m) {
    switch (type) {
    case QWEN3C_TYPE_Q8_0:
        *dw = fp16_to_fp32(read_u16(p));
        *m = 0.0f;
        for (int j = 0; j < QK; j++) wq[j] = (int8_t)p[2 + j];
        return;
    case QWEN3C_TYPE_Q4_0:
    case QWEN3C_TYPE_Q4_1: {
        const int q41 = type == QWEN3C_TYPE_Q4_1;
        const uint8_t *qs = p + (q41 ? 4 : 2);
        const int off = q41 ? 0 : 8;
        *dw = fp16_to_fp32(read_u16(p));
        *m = q41 ? fp16_to_fp32(read_u16(p + 2)) : 0.0f;
        for (int j = 0; j < QK / 2; j++) {
            wq[j] = (int16_t)((qs[j] & 0x0f) - off);
            wq[j + QK / 2] = (int16_t)((qs[j] >> 4) - off);
        }
        return;
    }
    default:
        memset(wq, 0, QK * sizeof *wq);
        *dw = *m = 0.0f;
        return;
    }
}

static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / QK;
    const int64_t ts = qwen3c_type_row_size(w->type, QK);
    const uint8_t *base = (const uint8_t *)w->data;
    const int q41 = w->type == QWEN3C_TYPE_Q4_1;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = base + r * w->row_bytes;
        for (int t = 0; t < n_tok; t++) out[(int64_t)t * out_stride + r] = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            int16_t wq[QK];
            float dw, m;
            unpack_block(w->type, row + b * ts, wq, &dw, &m);
            for (int t = 0; t < n_tok; t++) {
                const Q16Plain pl = q16_plain(xq, t, nb);
                const int16_t *q = pl.q + b * QK;
                const float dx = pl.d[b];
                int32_t isum = 0;
                for (int j = 0; j < QK; j++) isum += (int32_t)wq[j] * (int32_t)q[j];
                float v = (dw * dx) * (float)isum;
                if (q41) v += m * pl.sx[b];
                out[(int64_t)t * out_stride + r] += v;
            }
        }
    }
}

const ActQuantKernels TIER_TABLE(q16_kernels) = {act_size, quantize, rows};
