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

/* The block's scale from its max |x|; 0 for blocks too small to scale (and NaN / inf). */
static inline float q16_act_scale(float amax, float *id) {
    float d = amax / 32767.0f;
    if (!(d >= FLT_MIN) || d > FLT_MAX) d = 0.0f;  /* also keeps 1/d finite */
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

#endif /* QWEN3C_Q16_H */
