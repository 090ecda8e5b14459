/*
 * q24k_scalar.c -- the q24k kernels in plain C (quant_q24k.c has the packed format and the
 * arithmetic): q24's activation blocks x packed Q4_K / Q5_K / Q6_K groups. The readable
 * reference: q24k_avx2.c and q24k_avx512.c compute the same integer sums and the same float
 * steps in the same order, so every tier agrees with this one bit for bit. Not fast (q24k is
 * the forward pass's path only where Q24Kernels.fast); it serves qwen3c_matmul_q24 and tests.
 */
#include "q24.h"

#define QK_K 256

/* The weight integer u (q, 0..63) of row `lane`, column `col` (0..255) of a packed record. */
static int quant(int type, const uint8_t *rec, int lane, int col) {
    const int blk = col / QK, c = (col % QK) / 4, i = col % 4, byte = 64 * c + 4 * lane + i;
    if (type == QWEN3C_TYPE_Q6_K) {
        const uint8_t *half = rec + 288 + 1536 * (blk / 4);
        const int k = blk % 4;
        const int lo = (half[512 * (k % 2) + byte] >> (4 * (k / 2))) & 0x0f;
        const int hi = (half[1024 + byte] >> (2 * k)) & 3;
        return lo | hi << 4;
    }
    const int lo = (rec[320 + 512 * (blk / 2) + byte] >> (4 * (blk % 2))) & 0x0f;
    if (type == QWEN3C_TYPE_Q4_K) return lo;
    return lo | ((rec[2368 + byte] >> blk) & 1) << 4;
}

static void rows(float *out, int64_t out_stride, const void *xq, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    const int type = w->type, q6 = type == QWEN3C_TYPE_Q6_K;
    const size_t rb = q24k_packed_size(type, GR, QK_K);
    const int64_t ns = w->cols / QK_K, nb = w->cols / QK;
    const BlockQ24 *x = (const BlockQ24 *)xq;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *g = (const uint8_t *)w->packed + (size_t)(r / GR) * (size_t)ns * rb;
        const int lane = (int)(r % GR);
        for (int t = 0; t < n_tok; t++) {
            float tot = 0.0f;
            for (int64_t s = 0; s < ns; s++) {
                const uint8_t *rec = g + (size_t)s * rb;
                const float d = fp16_to_fp32(read_u16(rec + 2 * lane));
                for (int b = 0; b < QK_K / QK; b++) {
                    const BlockQ24 *xb = x + t * nb + s * (QK_K / QK) + b;
                    /* exact sums over each half of the block's 32 columns */
                    int32_t ih[2] = {0, 0}, iml[2] = {0, 0};
                    for (int k = 0; k < QK; k++) {
                        const int32_t u = quant(type, rec, lane, QK * b + k);
                        ih[k / 16] += u * xb->h[k];
                        iml[k / 16] += u * (256 * xb->m[k] + xb->l[k]);
                    }
                    if (!q6) {
                        const float f = fma_exact((float)(ih[0] + ih[1]), 65536.0f, (float)(iml[0] + iml[1]));
                        const float dsc = d * (float)rec[64 + 16 * b + lane];
                        const float dmn = fp16_to_fp32(read_u16(rec + 32 + 2 * lane)) * (float)rec[192 + 16 * b + lane];
                        tot = fma_exact(f, dsc * xb->d, tot);
                        tot = fma_exact(-dmn, xb->sx, tot);
                        continue;
                    }
                    for (int h = 0; h < 2; h++) {
                        const float f = fma_exact((float)(ih[h] + xb->q6k[2 * h]), 65536.0f, (float)(iml[h] + xb->q6k[2 * h + 1]));
                        const float dsc = d * (float)(int8_t)rec[32 + 16 * (2 * b + h) + lane];
                        tot = fma_exact(f, dsc * xb->d, tot);
                    }
                }
            }
            out[t * out_stride + r] = tot;
        }
    }
}

const Q24KKernels TIER_TABLE(q24k_kernels) = {q24k_packed_size, q24k_pack, rows, NULL, 0};
