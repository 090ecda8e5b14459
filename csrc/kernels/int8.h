/*
 * int8.h -- what the int8 kernel files share: the layout of the quantized activations and the
 * block scale (quant_int8.c documents the format).
 */
#ifndef QWEN3C_INT8_H
#define QWEN3C_INT8_H

#include <float.h>
#include <math.h>

#include "kernels.h"

#define QK 32          /* elements per block */
#define GB 16          /* blocks per interleaved group (one per int32 lane) */
#define GREC 640       /* bytes per interleaved group record: 512 quants + 16 floats + 16 ints */
#define GREC_D 512     /* offset of the 16 scales in a record */
#define GREC_S 576     /* offset of the 16 sums (activations) / the 16 mins (Q4_1 weights) */

static inline int64_t n_groups(int64_t nb) { return (nb + GB - 1) / GB; }
/* bytes per token of the plain part: int8 q[nb][32]; float d[nb]; int32 sx[nb] */
static inline size_t plain_bytes(int64_t nb) { return (size_t)nb * 40; }

/* The plain part of token t's quantized activations (nb = cols / 32 blocks). */
typedef struct { int8_t *q; float *d; int32_t *sx; } I8Plain;
static inline I8Plain i8_plain(const void *xq, int t, int64_t nb) {
    uint8_t *pl = (uint8_t *)xq + (size_t)t * plain_bytes(nb);
    const I8Plain r = {(int8_t *)pl, (float *)(void *)(pl + 32 * nb), (int32_t *)(void *)(pl + 36 * nb)};
    return r;
}

/* One block of 32: q (int8), d and sx = sum(q) (a tier's own). */
typedef void (*I8BlockFn)(const float *x, int8_t *q, float *d, int32_t *sx);

/* Token t's row of x (cols floats) into its plain part, block by block. */
static inline __attribute__((always_inline)) void
i8_quantize_plain(const float *x, int t, int64_t cols, void *xq, I8BlockFn block) {
    const int64_t nb = cols / QK;
    const float *xr = x + (int64_t)t * cols;
    const I8Plain p = i8_plain(xq, t, nb);
    for (int64_t b = 0; b < nb; b++) block(xr + b * QK, p.q + b * QK, p.d + b, p.sx + b);
}

#endif /* QWEN3C_INT8_H */
