/*
 * q16.h -- what the q16 kernel files share: the layout of the quantized activations and the
 * block scale (quant_q16.c documents the format).
 */
#ifndef QWEN3C_Q16_H
#define QWEN3C_Q16_H

#include <float.h>
#include <math.h>

#include "kernels.h"

#define QK 32          /* elements per block */
#define GB 16          /* blocks per interleaved group (one per int32 lane) */
#define GREC 1152      /* bytes per interleaved group record: 1024 quant bytes + 16 + 16 floats */
#define GREC_D 1024    /* offset of the 16 scales in a record */
#define GREC_S 1088    /* offset of the 16 sums (activations) / the 16 mins (Q4_1 weights) */

static inline int64_t n_groups(int64_t nb) { return (nb + GB - 1) / GB; }
/* bytes per token of the plain part: int16 q[nb][32]; float d[nb]; float sxf[nb]; int32 qb[nb] */
static inline size_t plain_bytes(int64_t nb) { return (size_t)nb * 76; }

/* The plain part of token t's quantized activations (nb = cols / 32 blocks). */
typedef struct { int16_t *q; float *d, *sx; int32_t *qb; } Q16Plain;
static inline Q16Plain q16_plain(const void *xq, int t, int64_t nb) {
    uint8_t *pl = (uint8_t *)xq + (size_t)t * plain_bytes(nb);
    const Q16Plain r = {(int16_t *)(void *)pl, (float *)(void *)(pl + 64 * nb), (float *)(void *)(pl + 68 * nb),
                        (int32_t *)(void *)(pl + 72 * nb)};
    return r;
}

/* One block of 32: q (int16), d, the float sum sx and qb = -8 sum(q) (a tier's own). */
typedef void (*Q16BlockFn)(const float *x, int16_t *q, float *d, float *sx, int32_t *qb);

/* Token t's row of x (cols floats) into its plain part, block by block. */
static inline __attribute__((always_inline)) void
q16_quantize_plain(const float *x, int t, int64_t cols, void *xq, Q16BlockFn block) {
    const int64_t nb = cols / QK;
    const float *xr = x + (int64_t)t * cols;
    const Q16Plain p = q16_plain(xq, t, nb);
    for (int64_t b = 0; b < nb; b++) block(xr + b * QK, p.q + b * QK, p.d + b, p.sx + b, p.qb + b);
}

#endif /* QWEN3C_Q16_H */
