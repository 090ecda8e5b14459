/*
 * matmul_common.h -- the loops the matmul_<tier>.c files share; each tier plugs in its own dot
 * product, panel dequantization and micro-kernel (as compile-time constants: always_inline
 * turns the function pointers into direct, inlinable calls inside the tier's file). The x86
 * tiers' prefill is instead gemm_avx512.h / gemm_avx2.h (rows in the vector lanes); the
 * prefill below is the scalar and NEON tiers'.
 *
 *   decode (1 token):   one dot product per weight row (the tier's vec_dot); memory-bound.
 *   prefill (n tokens): dequantize a panel of PANEL_R rows x TILE_K columns once (it stays in
 *                       L2), then a register-blocked TILE_R x TILE_T micro-kernel runs over
 *                       every group of TILE_T tokens: weights are read once per batch, x once
 *                       per panel; compute-bound.
 */
#ifndef QWEN3C_MATMUL_COMMON_H
#define QWEN3C_MATMUL_COMMON_H

#include "kernels.h"

#define TILE_R 4      /* weight rows per micro-kernel tile */
#define TILE_K 1024   /* columns per tile (a multiple of every block size) */
#define TILE_T 6      /* tokens per micro-kernel call: TILE_R * TILE_T accumulators */
#define PANEL_R 16    /* rows dequantized together: a 64 KB panel of floats (on the stack) */

/* n elements (whole blocks) of `type` from src into floats */
typedef void (*DequantFn)(int type, const uint8_t *src, float *dst, int64_t n);
/* part[t * TILE_R + r] = dot(tile row r, x row t) over k elements, r < nr, t < nt (<= TILE_T);
 * tile rows at stride TILE_K (64-byte aligned), x rows at stride xs */
typedef void (*TileFn)(int nr, int nt, const float *tile, const float *x, int64_t xs, int64_t k,
                       float *part);
typedef float (*DotFn)(const float *a, const float *b, int64_t n);

/* The reference dequantization (quant.c) as a DequantFn. */
static inline void dequant_reference(int type, const uint8_t *src, float *dst, int64_t n) {
    dequantize_row(type, src, dst, n);
}

/* dot(row of any type, x): dequantize GENERIC_CHUNK elements (whole blocks) at a time into an
 * L1 buffer (with the tier's dequant), then the tier's float dot product. */
#define GENERIC_CHUNK 512
static inline __attribute__((always_inline)) float
vec_dot_dequantized(int type, const uint8_t *row, const float *x, int64_t n, DequantFn dequant, DotFn dot) {
    const int bs = qwen3c_type_block_size(type);
    const int64_t ts = qwen3c_type_row_size(type, bs);
    const int64_t step = GENERIC_CHUNK / bs * bs;
    float buf[GENERIC_CHUNK], s = 0.0f;
    for (int64_t i = 0; i < n; i += step) {
        const int64_t k = n - i < step ? n - i : step;
        dequant(type, row + i / bs * ts, buf, k);
        s += dot(buf, x + i, k);
    }
    return s;
}

/* static void tile_dispatch(...) as a TileFn for a tier's always_inline micro-kernel
 * KERNEL(NR, NT, tile, x, xs, k, part) whose NR (<= TILE_R) and NT (<= TILE_T = 6) must be
 * compile-time constants: whole TILE_R-row tiles, then leftover rows one at a time. */
#define MATMUL_TILE_DISPATCH(KERNEL)                                                                \
    static void tile_dispatch(int nr, int nt, const float *tile, const float *x, int64_t xs,      \
                              int64_t k, float *part) {                                           \
        if (nr == TILE_R) {                                                                        \
            switch (nt) {                                                                          \
            case 1: KERNEL(TILE_R, 1, tile, x, xs, k, part); return;                               \
            case 2: KERNEL(TILE_R, 2, tile, x, xs, k, part); return;                               \
            case 3: KERNEL(TILE_R, 3, tile, x, xs, k, part); return;                               \
            case 4: KERNEL(TILE_R, 4, tile, x, xs, k, part); return;                               \
            case 5: KERNEL(TILE_R, 5, tile, x, xs, k, part); return;                               \
            default: KERNEL(TILE_R, 6, tile, x, xs, k, part); return;                              \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < nr; r++) { /* a few leftover rows at the end of a matrix */            \
            float p1[TILE_R * TILE_T] = {0};                                                       \
            const float *t1 = tile + r * TILE_K;                                                   \
            switch (nt) {                                                                          \
            case 1: KERNEL(1, 1, t1, x, xs, k, p1); break;                                         \
            case 2: KERNEL(1, 2, t1, x, xs, k, p1); break;                                         \
            case 3: KERNEL(1, 3, t1, x, xs, k, p1); break;                                         \
            case 4: KERNEL(1, 4, t1, x, xs, k, p1); break;                                         \
            case 5: KERNEL(1, 5, t1, x, xs, k, p1); break;                                         \
            default: KERNEL(1, 6, t1, x, xs, k, p1); break;                                        \
            }                                                                                      \
            for (int t = 0; t < nt; t++) part[t * TILE_R + r] = p1[t * TILE_R];                    \
        }                                                                                          \
    }

/* dot(row of `type`, x) over n elements */
typedef float (*RowDotFn)(int type, const uint8_t *row, const float *x, int64_t n);
/* the same for two F32 / F16 / BF16 rows sharing the loads of x: *oa, *ob, each summed exactly
 * as the one-row dot product sums it */
typedef void (*RowDot2Fn)(int type, const uint8_t *ra, const uint8_t *rb, const float *x, int64_t n,
                          float *oa, float *ob);

/* Decode (one token) over rows [r0, r1): one streaming dot product per row; float rows two at a
 * time, one from each half of the range (two sequential streams per thread keep more cache
 * lines in flight than one). */
static inline __attribute__((always_inline)) void
matmul_decode(float *out, const float *x, const QTensor *w, int64_t r0, int64_t r1, RowDotFn dot, RowDot2Fn dot2) {
    const uint8_t *base = (const uint8_t *)w->data;
    const int t = w->type;
    int64_t r = r0;
    if (t == QWEN3C_TYPE_F32 || t == QWEN3C_TYPE_F16 || t == QWEN3C_TYPE_BF16) {
        const int64_t h = (r1 - r0) / 2;
        for (; r < r0 + h; r++)
            dot2(t, base + r * w->row_bytes, base + (r + h) * w->row_bytes, x, w->cols, out + r, out + r + h);
        r = r0 + 2 * h; /* the odd row left, if any */
    }
    for (; r < r1; r++) out[r] = dot(t, base + r * w->row_bytes, x, w->cols);
}

/* The prefill loop over rows [r0, r1) and all n_tok tokens (n_tok > 1). */
static inline __attribute__((always_inline)) void
matmul_panels(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w,
              int64_t r0, int64_t r1, DequantFn dequant, TileFn tile) {
    const int64_t n = w->cols;
    const uint8_t *base = (const uint8_t *)w->data;
    const int bs = qwen3c_type_block_size(w->type);
    const int64_t ts = qwen3c_type_row_size(w->type, bs);
    _Alignas(64) float panel[PANEL_R * TILE_K];
    float part[TILE_R * TILE_T];
    for (int64_t rp = r0; rp < r1; rp += PANEL_R) {
        const int npr = r1 - rp < PANEL_R ? (int)(r1 - rp) : PANEL_R;
        for (int64_t k0 = 0; k0 < n; k0 += TILE_K) {
            const int64_t kc = n - k0 < TILE_K ? n - k0 : TILE_K;
            const size_t off = (size_t)(k0 / bs) * (size_t)ts;
            for (int i = 0; i < npr; i++)
                dequant(w->type, base + (rp + i) * w->row_bytes + off, panel + i * TILE_K, kc);
            for (int t0 = 0; t0 < n_tok; t0 += TILE_T) {
                const int nt = n_tok - t0 < TILE_T ? n_tok - t0 : TILE_T;
                for (int i0 = 0; i0 < npr; i0 += TILE_R) {
                    const int nr = npr - i0 < TILE_R ? npr - i0 : TILE_R;
                    tile(nr, nt, panel + i0 * TILE_K, x + (int64_t)t0 * n + k0, n, kc, part);
                    for (int t = 0; t < nt; t++) {
                        float *o = out + (int64_t)(t0 + t) * out_stride + rp + i0;
                        for (int i = 0; i < nr; i++)
                            o[i] = (k0 == 0 ? 0.0f : o[i]) + part[t * TILE_R + i];
                    }
                }
            }
        }
    }
}

/* dot(row of `type`, x) over n elements: a tier's decode kernel */
typedef float (*VecDotFn)(int type, const uint8_t *row, const float *x, int64_t n);

/* A whole matmul_<tier>.c rows(): decode one vec_dot per row, prefill matmul_panels. */
static inline __attribute__((always_inline)) void
matmul_rows_with(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w, int64_t r0,
                 int64_t r1, VecDotFn vec_dot, DequantFn dequant, TileFn tile) {
    if (n_tok > 1) {
        matmul_panels(out, out_stride, x, n_tok, w, r0, r1, dequant, tile);
        return;
    }
    const uint8_t *base = (const uint8_t *)w->data;
    for (int64_t r = r0; r < r1; r++) out[r] = vec_dot(w->type, base + r * w->row_bytes, x, w->cols);
}

#endif /* QWEN3C_MATMUL_COMMON_H */
