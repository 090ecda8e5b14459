/*
 * quant.c -- tensor types: block formats, the reference dequantization, the public kernel entries.
 *
 * Every weight matrix is used in its stored GGUF type. A row of n elements is n / bs blocks
 * of ts bytes each (bs = block size, ts = type size):
 *
 *   type   bs   ts   block layout (little-endian; "f16" = IEEE half)     element value
 *   F32     1    4   float                                               x
 *   F16     1    2   f16                                                 x
 *   BF16    1    2   upper 16 bits of a float                            x
 *   Q8_0   32   34   f16 d; int8 qs[32]                                  d * qs[j]
 *   Q4_0   32   18   f16 d; u8 qs[16]                                    d * (q - 8)
 *   Q4_1   32   20   f16 d, m; u8 qs[16]                                 d * q + m
 *   Q5_0   32   22   f16 d; u8 qh[4]; u8 qs[16]                          d * (q - 16)
 *   Q5_1   32   24   f16 d, m; u8 qh[4]; u8 qs[16]                       d * q + m
 *   Q2_K  256   84   u8 scales[16]; u8 qs[64]; f16 d, dmin              (d*sc) * q - (dmin*mn)
 *   Q3_K  256  110   u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d       (d*sc) * q
 *   Q4_K  256  144   f16 d, dmin; u8 scales[12]; u8 qs[128]              (d*sc) * q - (dmin*mn)
 *   Q5_K  256  176   f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]   (d*sc) * q - (dmin*mn)
 *   Q6_K  256  210   u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d       (d*sc) * (q - 32)
 *
 * 32-element blocks (Q4_0/Q4_1/Q5_x): element j < 16 is the low nibble of qs[j], element
 * j + 16 its high nibble; Q5 adds bit j of the 32-bit qh as bit 4 of element j.
 * Q4_K/Q5_K: 8 sub-blocks of 32 with 6-bit scales sc and mins mn packed in scales[12]; the
 * 32 bytes qs[32c .. 32c+32) hold sub-block 2c (low nibbles) and 2c+1 (high nibbles); Q5_K's
 * qh[l] bit s is bit 4 of element l of sub-block s.
 * Q6_K: two halves of 128; in a half, element i < 64 is the low nibble of ql[i], i >= 64 the
 * high nibble of ql[i - 64]; bits 4-5 are (qh[i % 32] >> 2 * (i / 32)) & 3; one int8 scale per
 * 16 elements.
 * Q2_K: 16 sub-blocks of 16, scales[j] = sc | mn << 4 (4 bits each); two halves of 128, in a
 * half element i (0..127) is (qs[32 h + i % 32] >> 2 * (i / 32)) & 3.
 * Q3_K: 16 sub-blocks of 16 with 6-bit scales (stored minus 32: sc - 32 is the signed scale),
 * low 4 bits of scale j in scales[j % 8] (nibble j / 8), high 2 bits in scales[8 + j % 4]
 * (bits 2 (j / 4)); quants as Q2_K's 2 bits, minus 4 where bit (i / 32) of hmask[i % 32]
 * (i = 0..255) is clear: q in -4..3.
 * Q2_K / Q3_K are computed through this exact dequantization (the f32 path: matmul_*.c), not
 * by q24k.
 *
 * Precision: activations stay float32; weights are dequantized in registers (or into a small
 * L1/L2 tile) and accumulated in float32 with FMA. dequantize_row reproduces the reference
 * dequantization (gguf-py's gguf.quants) bit for bit, including its rounding order.
 *
 * The matmul kernels that compute with these types are in kernels/ (one file per kernel
 * family and CPU tier, chosen at run time: kernels/kernels.h); this file keeps the type table,
 * the reference dequantization, float -> half and the validated public entry points, which
 * run the kernels of the tier QWEN3C_CPU / the CPU selects (cpu.c).
 */
#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__F16C__)
#include <immintrin.h> /* only in a -march=native build: the default build's baseline has no F16C */
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>  /* arm64: halves convert in hardware (part of the baseline) */
#endif

#include "kernels/kernels.h"

/* The reference dequantization rounds each product and sum separately: keep the compiler
 * from fusing them into an FMA there (it may fuse everywhere else). gcc fuses across
 * statements, hence the attribute; clang only within one expression, hence the temporaries
 * p0, p1 in the dq_* functions. */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define NO_FP_CONTRACT
#endif

#define QK 32      /* elements per block of the 32-element formats */
#define QK_K 256   /* elements per super-block of the K-quants */

/* ---------------------------------------------------------------------------------------
 * Type table
 * ------------------------------------------------------------------------------------- */
typedef struct {
    int         type;
    const char *name;
    int         block_size;  /* elements per block */
    int         type_size;   /* bytes per block */
    bool        supported;   /* we have kernels for it */
} TypeInfo;

static const TypeInfo type_table[] = {
    {QWEN3C_TYPE_F32,  "F32",   1,   4, true},
    {QWEN3C_TYPE_F16,  "F16",   1,   2, true},
    {QWEN3C_TYPE_BF16, "BF16",  1,   2, true},
    {QWEN3C_TYPE_Q4_0, "Q4_0", 32,  18, true},
    {QWEN3C_TYPE_Q4_1, "Q4_1", 32,  20, true},
    {QWEN3C_TYPE_Q5_0, "Q5_0", 32,  22, true},
    {QWEN3C_TYPE_Q5_1, "Q5_1", 32,  24, true},
    {QWEN3C_TYPE_Q8_0, "Q8_0", 32,  34, true},
    {QWEN3C_TYPE_Q8_1, "Q8_1", 32,  36, false},
    {QWEN3C_TYPE_Q2_K, "Q2_K", 256, 84, true},
    {QWEN3C_TYPE_Q3_K, "Q3_K", 256, 110, true},
    {QWEN3C_TYPE_Q4_K, "Q4_K", 256, 144, true},
    {QWEN3C_TYPE_Q5_K, "Q5_K", 256, 176, true},
    {QWEN3C_TYPE_Q6_K, "Q6_K", 256, 210, true},
    {QWEN3C_TYPE_Q8_K, "Q8_K", 256, 292, false},
};

static const TypeInfo *type_info(int type) {
    for (size_t i = 0; i < sizeof(type_table) / sizeof(type_table[0]); i++)
        if (type_table[i].type == type) return &type_table[i];
    return NULL;
}

const char *qwen3c_type_name(int type) {
    const TypeInfo *ti = type_info(type);
    if (ti) return ti->name;
    return type >= 0 ? gguf_type_name((uint32_t)type) : "unknown";
}

int qwen3c_type_block_size(int type) {
    const TypeInfo *ti = type_info(type);
    return ti ? ti->block_size : -1;
}

int64_t qwen3c_type_row_size(int type, int64_t n) {
    const TypeInfo *ti = type_info(type);
    if (!ti || n < 0 || n % ti->block_size != 0) return -1;
    int64_t nb = n / ti->block_size;
    if (nb > INT64_MAX / ti->type_size) return -1;
    return nb * ti->type_size;
}

bool type_supported(int type) {
    const TypeInfo *ti = type_info(type);
    return ti != NULL && ti->supported;
}

/* ---------------------------------------------------------------------------------------
 * Scalar helpers
 * ------------------------------------------------------------------------------------- */
/* float -> IEEE half, round to nearest even. Halves have 5 exponent bits (bias 15) and 10
 * significand bits: a float keeps its top 10 significand bits and rounds the 13 below;
 * below 2^-14 it becomes a multiple of 2^-24 (subnormal); from 65520 (halfway between the
 * largest half, 65504, and 2^16) it overflows to inf. NaN stays a NaN, made quiet, as the
 * F16C instructions do. */
static inline uint16_t fp32_to_fp16(float f) {
#if defined(__F16C__)
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    const __fp16 h = (__fp16)f; /* arm64: fcvt, the same rounding as below */
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
#else
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu); /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u;     /* >= 65520 (or inf): inf */
    if (a >= 0x38800000u) {                           /* >= 2^-14: a normal half */
        /* rebias the exponent (127 -> 15) and drop 13 significand bits; a carry out of the
         * significand correctly bumps the exponent */
        uint32_t h = (a - 0x38000000u) >> 13;
        const uint32_t rest = a & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
        return sign | (uint16_t)h;
    }
    if (a <= 0x33000000u) return sign;                /* <= 2^-25: rounds to (signed) zero */
    /* a subnormal half: round |f| / 2^-24 = m * 2^(e - 126) to an integer, m the 24-bit
     * significand; a carry to 1024 is the smallest normal half, as it should be */
    const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126u - e; /* 14..24 */
    uint32_t h = m >> shift;
    const uint32_t rest = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (h & 1u))) h++;
    return sign | (uint16_t)h;
#endif
}

void float_to_half_row(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)), vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
#endif
    for (; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}

/* ---------------------------------------------------------------------------------------
 * Reference dequantization (exact): one block of each type
 * ------------------------------------------------------------------------------------- */
NO_FP_CONTRACT static void dq_q8_0(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b));
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < QK; j++) y[j] = (float)qs[j] * d;
}

NO_FP_CONTRACT static void dq_q4_0(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b));
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * (float)((qs[j] & 0x0f) - 8);
        y[j + QK / 2] = d * (float)((qs[j] >> 4) - 8);
    }
}

NO_FP_CONTRACT static void dq_q4_1(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b)), m = fp16_to_fp32(read_u16(b + 2));
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        const float p0 = d * (float)(qs[j] & 0x0f), p1 = d * (float)(qs[j] >> 4);
        y[j] = p0 + m;
        y[j + QK / 2] = p1 + m;
    }
}

NO_FP_CONTRACT static void dq_q5_0(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b));
    const uint32_t qh = read_u32le(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * (float)(lo - 16);
        y[j + QK / 2] = d * (float)(hi - 16);
    }
}

NO_FP_CONTRACT static void dq_q5_1(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b)), m = fp16_to_fp32(read_u16(b + 2));
    const uint32_t qh = read_u32le(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        const float p0 = d * (float)lo, p1 = d * (float)hi;
        y[j] = p0 + m;
        y[j + QK / 2] = p1 + m;
    }
}

NO_FP_CONTRACT static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *qs = b + 16;
    const float d = fp16_to_fp32(read_u16(b + 80)), dmin = fp16_to_fp32(read_u16(b + 82));
    for (int e = 0; e < QK_K; e++) {
        const int j = e / 16, h = e / 128, i = e % 128;
        const float dl = d * (float)(scales[j] & 0x0f), ml = dmin * (float)(scales[j] >> 4);
        const float p0 = dl * (float)((qs[32 * h + i % 32] >> (2 * (i / 32))) & 3);
        y[e] = p0 - ml;
    }
}

NO_FP_CONTRACT static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
    const float d = fp16_to_fp32(read_u16(b + 108));
    for (int e = 0; e < QK_K; e++) {
        const int j = e / 16, h = e / 128, i = e % 128;
        const int sc = (((scales[j % 8] >> (4 * (j / 8))) & 0x0f) | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        const int q = ((qs[32 * h + i % 32] >> (2 * (i / 32))) & 3) - (((hmask[e % 32] >> (e / 32)) & 1) ? 0 : 4);
        y[e] = (d * (float)sc) * (float)q;
    }
}

NO_FP_CONTRACT static void dq_q4_k(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b)), dmin = fp16_to_fp32(read_u16(b + 2));
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int c = 0; c < 4; c++) {             /* 4 chunks of 64 = two sub-blocks */
        int sc0, mn0, sc1, mn1;
        k_scale_min(2 * c, scales, &sc0, &mn0);
        k_scale_min(2 * c + 1, scales, &sc1, &mn1);
        const float d0 = d * (float)sc0, m0 = dmin * (float)mn0;
        const float d1 = d * (float)sc1, m1 = dmin * (float)mn1;
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            const float p0 = d0 * (float)(q[l] & 0x0f), p1 = d1 * (float)(q[l] >> 4);
            y[64 * c + l] = p0 - m0;
            y[64 * c + 32 + l] = p1 - m1;
        }
    }
}

NO_FP_CONTRACT static void dq_q5_k(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b)), dmin = fp16_to_fp32(read_u16(b + 2));
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    for (int c = 0; c < 4; c++) {
        int sc0, mn0, sc1, mn1;
        k_scale_min(2 * c, scales, &sc0, &mn0);
        k_scale_min(2 * c + 1, scales, &sc1, &mn1);
        const float d0 = d * (float)sc0, m0 = dmin * (float)mn0;
        const float d1 = d * (float)sc1, m1 = dmin * (float)mn1;
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            int q0 = (q[l] & 0x0f) | (((qh[l] >> (2 * c)) & 1) << 4);
            int q1 = (q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
            const float p0 = d0 * (float)q0, p1 = d1 * (float)q1;
            y[64 * c + l] = p0 - m0;
            y[64 * c + 32 + l] = p1 - m1;
        }
    }
}

NO_FP_CONTRACT static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = fp16_to_fp32(read_u16(b + 208));
    /* two passes, each simple enough for the compiler to vectorize: the 6-bit quants, then
     * (d * scale) * q per group of 16 */
    int8_t q[QK_K];
    for (int h = 0; h < 2; h++) {             /* two halves of 128 */
        const uint8_t *l8 = ql + 64 * h, *h8 = qh + 32 * h;
        int8_t *qq = q + 128 * h;
        for (int l = 0; l < 32; l++) {        /* element l of each of the 4 groups of 32 */
            qq[l] = (int8_t)(((l8[l] & 0x0f) | ((h8[l] & 3) << 4)) - 32);
            qq[l + 32] = (int8_t)(((l8[l + 32] & 0x0f) | (((h8[l] >> 2) & 3) << 4)) - 32);
            qq[l + 64] = (int8_t)(((l8[l] >> 4) | (((h8[l] >> 4) & 3) << 4)) - 32);
            qq[l + 96] = (int8_t)(((l8[l + 32] >> 4) | (((h8[l] >> 6) & 3) << 4)) - 32);
        }
    }
    for (int g = 0; g < QK_K / 16; g++) {
        const float ds = d * (float)sc[g];
        for (int j = 0; j < 16; j++) y[16 * g + j] = ds * (float)q[16 * g + j];
    }
}

void dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const uint8_t *p = (const uint8_t *)src;
    switch (type) {
    case QWEN3C_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case QWEN3C_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_fp32(read_u16(p + 2 * i));
        return;
    case QWEN3C_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(read_u16(p + 2 * i));
        return;
    default:
        break;
    }
    void (*dq)(const uint8_t *, float *);
    int bs, ts;
    switch (type) {
    case QWEN3C_TYPE_Q8_0: dq = dq_q8_0; bs = QK; ts = 34; break;
    case QWEN3C_TYPE_Q4_0: dq = dq_q4_0; bs = QK; ts = 18; break;
    case QWEN3C_TYPE_Q4_1: dq = dq_q4_1; bs = QK; ts = 20; break;
    case QWEN3C_TYPE_Q5_0: dq = dq_q5_0; bs = QK; ts = 22; break;
    case QWEN3C_TYPE_Q5_1: dq = dq_q5_1; bs = QK; ts = 24; break;
    case QWEN3C_TYPE_Q2_K: dq = dq_q2_k; bs = QK_K; ts = 84; break;
    case QWEN3C_TYPE_Q3_K: dq = dq_q3_k; bs = QK_K; ts = 110; break;
    case QWEN3C_TYPE_Q4_K: dq = dq_q4_k; bs = QK_K; ts = 144; break;
    case QWEN3C_TYPE_Q5_K: dq = dq_q5_k; bs = QK_K; ts = 176; break;
    case QWEN3C_TYPE_Q6_K: dq = dq_q6_k; bs = QK_K; ts = 210; break;
    default:
        assert(!"dequantize_row: unsupported type (callers check type_supported)");
        return;
    }
    for (int64_t i = 0; i < n / bs; i++) dq(p + i * ts, dst + i * bs);
}


/* ---------------------------------------------------------------------------------------
 * Public, validated entry points (used by tests and benchmarks)
 * ------------------------------------------------------------------------------------- */
static int check_type_and_size(int type, int64_t n, int64_t rows, size_t have, const char *what,
                               char *err, size_t err_size) {
    const TypeInfo *ti = type_info(type);
    if (!ti || !ti->supported)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "tensor type %d (%s) is not supported", type, qwen3c_type_name(type));
    if (n <= 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: the number of elements per row must be positive, got %lld", what,
                           (long long)n);
    if (rows <= 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: the number of rows must be positive, got %lld", what,
                           (long long)rows);
    if (n % ti->block_size != 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: %lld elements is not a multiple of the %s block size %d", what,
                           (long long)n, ti->name, ti->block_size);
    int64_t row = qwen3c_type_row_size(type, n);
    if (row < 0 || rows > INT64_MAX / row)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "%s: size overflows", what);
    if ((uint64_t)(row * rows) > (uint64_t)have)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: %lld x %lld %s elements need %lld bytes, the buffer has %zu",
                           what, (long long)rows, (long long)n, ti->name,
                           (long long)(row * rows), have);
    return QWEN3C_OK;
}

int qwen3c_dequantize(int type, const void *src, size_t src_size, float *dst, int64_t n,
                      char *err, size_t err_size) {
    int rc = check_type_and_size(type, n, 1, src_size, "dequantize", err, err_size);
    if (rc != QWEN3C_OK) return rc;
    if (src == NULL || dst == NULL)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "dequantize: NULL buffer");
    const Kernels *k; /* the reference dequantization has no tiers; QWEN3C_CPU is checked all the same */
    if ((rc = kernels_select(&k, err, err_size)) != QWEN3C_OK) return rc;
    dequantize_row(type, src, dst, n);
    return QWEN3C_OK;
}

int qwen3c_float_to_half(const float *src, int64_t n, uint16_t *dst, char *err, size_t err_size) {
    if (src == NULL || dst == NULL || n < 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "float_to_half: NULL buffer or negative count (%lld)", (long long)n);
    float_to_half_row(src, dst, n);
    return QWEN3C_OK;
}

static int checked_matmul(const char *what, int type, const void *w, size_t w_size,
                          const float *x, int64_t n_tok, int64_t n, int64_t d, float *out,
                          int n_threads, char *err, size_t err_size) {
    int rc = check_type_and_size(type, n, d, w_size, what, err, err_size);
    if (rc != QWEN3C_OK) return rc;
    if (w == NULL || x == NULL || out == NULL)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "%s: NULL buffer", what);
    if (n_tok <= 0 || n_tok > INT_MAX)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: the number of tokens must be in [1, %d], got %lld", what, INT_MAX,
                           (long long)n_tok);
    const Kernels *k;
    if ((rc = kernels_select(&k, err, err_size)) != QWEN3C_OK) return rc;
    const QTensor qt = {w, type, d, n, (size_t)qwen3c_type_row_size(type, n), NULL, false};
    enum { UNIT = 4 }; /* rows per unit of the split: the micro-kernels' tile height */
    int nt = thread_limit(n_threads > 0 ? n_threads : cpu_count());
    if ((int64_t)nt > (d + UNIT - 1) / UNIT) nt = (int)((d + UNIT - 1) / UNIT);  /* >= 1 */
    /* contiguous row ranges, UNIT-aligned, one per thread */
    int64_t per = ((d + nt - 1) / nt + UNIT - 1) / UNIT * UNIT;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int i = 0; i < nt; i++) {
        int64_t a = (int64_t)i * per, b = a + per < d ? a + per : d;
        if (a < b) k->matmul->rows(out, d, x, (int)n_tok, &qt, a, b);
    }
    return QWEN3C_OK;
}

/* The validated public entry of a quantized-activation path (qwen3c_matmul_q24 / _q16 /
 * _int8): the arguments checked in qwen3c_matmul's order and words, W packed if the path reads
 * a packed copy, x quantized once, then the rows split into 16-row units, one range per thread. */
int quant_path_matmul(const QuantPath *qp, int type, const void *w, size_t w_size, const float *x,
                      int64_t n_tok, int64_t n, int64_t d, float *out, int n_threads, char *err,
                      size_t err_size) {
    const char *what = qp->what;
    if (!qp->supported(type))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "%s: tensor type %d (%s) is not supported by the %s path (%s)",
                           what, type, qwen3c_type_name(type), qp->path,
                           qp->supported(QWEN3C_TYPE_Q4_K) ? "Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K"
                                                            : "Q8_0, Q4_0, Q4_1");
    if (n <= 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: the number of elements per row must be positive, got %lld", what,
                           (long long)n);
    if (d <= 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: the number of rows must be positive, got %lld", what, (long long)d);
    const int bs = qwen3c_type_block_size(type);
    if (n % bs != 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: %lld elements is not a multiple of the %s block size %d", what,
                           (long long)n, qwen3c_type_name(type), bs);
    if (n_tok <= 0 || n_tok > INT_MAX)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: the number of tokens must be in [1, %d], got %lld", what, INT_MAX,
                           (long long)n_tok);
    const int64_t row = qwen3c_type_row_size(type, n);
    if (row < 0 || d > INT64_MAX / row)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "%s: size overflows", what);
    if ((uint64_t)(row * d) > (uint64_t)w_size)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: %lld x %lld %s elements need %lld bytes, the buffer has %zu", what,
                           (long long)d, (long long)n, qwen3c_type_name(type), (long long)(row * d),
                           w_size);
    if (w == NULL || x == NULL || out == NULL)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "%s: NULL buffer", what);
    const size_t per_tok = qp->act_size(1, n);
    if ((uint64_t)n_tok > (SIZE_MAX - 64) / per_tok)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "%s: size overflows", what);
    const size_t xq_size = (qp->act_size((int)n_tok, n) + 63) / 64 * 64;
    void *xq = os_aligned_alloc(64, xq_size);
    if (xq == NULL)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "%s: cannot allocate %zu bytes", what,
                           xq_size);
    QTensor qt = {w, type, d, n, (size_t)row, NULL, false};
    /* one range of whole 16-row units per thread (the q24 kernels work on 16-row groups) */
    const int64_t units = (d + 15) / 16;
    int nt = thread_limit(n_threads > 0 ? n_threads : cpu_count());
    if ((int64_t)nt > units) nt = (int)units;
    void *packed = NULL;
    if (qp->pack) { /* q24: the kernels read a packed copy of W (the model packs it once) */
        const size_t pb = (qp->packed_size(type, d, n) + 63) / 64 * 64;
        packed = os_aligned_alloc(64, pb);
        if (packed == NULL) {
            os_aligned_free(xq);
            return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, pb);
        }
        qp->pack(&qt, packed, nt);
        qt.packed = packed;
        qt.q8_min = q8_0_has_min(&qt, nt);
    }
    if (qp->quantize_rows) qp->quantize_rows(x, (int)n_tok, n, xq);
    else qp->quantize_blocks(x, 0, n_tok * (n / QK), xq);
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int i = 0; i < nt; i++) {
        const int64_t a = units * i / nt * 16, e = units * (i + 1) / nt * 16, b = e < d ? e : d;
        if (a < b) qp->rows(out, d, xq, (int)n_tok, &qt, a, b);
    }
    os_aligned_free(packed);
    os_aligned_free(xq);
    return QWEN3C_OK;
}

int qwen3c_matmul(int type, const void *w, size_t w_size, const float *x, int64_t n_tok,
                  int64_t n, int64_t d, float *out, int n_threads, char *err, size_t err_size) {
    return checked_matmul("matmul", type, w, w_size, x, n_tok, n, d, out, n_threads, err, err_size);
}

int qwen3c_matvec(int type, const void *w, size_t w_size, const float *x, int64_t n, int64_t d,
                  float *out, int n_threads, char *err, size_t err_size) {
    return checked_matmul("matvec", type, w, w_size, x, 1, n, d, out, n_threads, err, err_size);
}
