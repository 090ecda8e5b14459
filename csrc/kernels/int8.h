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

/* The block's scale from its max |x|; 0 for blocks too small to scale (and NaN). */
static inline float i8_act_scale(float amax, float *id) {
    float d = amax / 127.0f;
    if (!(d >= FLT_MIN) || d > FLT_MAX) d = 0.0f;  /* also keeps 1/d finite */
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

#endif /* QWEN3C_INT8_H */
