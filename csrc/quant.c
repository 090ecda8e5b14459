/*
 * quant.c -- tensor types: block formats, dequantization and the matmul kernels.
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
 *
 * Precision: activations stay float32; weights are dequantized in registers (or into a small
 * L1/L2 tile) and accumulated in float32 with FMA. dequantize_row reproduces the reference
 * dequantization (gguf-py's gguf.quants) bit for bit, including its rounding order.
 *
 * Kernels (matmul_rows is one thread's share; forward.c splits the rows across threads):
 *   decode (1 token):   vec_dot_<type>(row, x, n): a SIMD dot product per weight row, the
 *                       per-block scale factored out (d * sum(q x)); memory-bound.
 *   prefill (n tokens): dequantize a panel of PANEL_R rows x TILE_K columns once (L2), then
 *                       a register-blocked TILE_R x TILE_T micro-kernel runs over every
 *                       group of TILE_T tokens: weights are read once per batch, x once per
 *                       panel; compute-bound.
 * Code paths, picked at build time: AVX-512 (F+BW+VL, F16C: every type), AVX2+FMA+F16C
 * (F32/F16/BF16/Q8_0/Q4_0/Q4_1 kernels, the others through dequantize + dot) and portable C
 * (correct everywhere; the compiler vectorizes what it can). Same results up to float32
 * rounding on all three. A faster, less exact path (int8 activations + VNNI) would be an
 * opt-in beside these, never the default.
 */
#include <assert.h>
#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

#include "internal.h"

/* The full AVX-512 path needs F (fp32), BW (int16 lanes), VL and F16C. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__)
#define QWEN3C_AVX512 1
#else
#define QWEN3C_AVX512 0
#endif
/* Without AVX-512: an AVX2 + FMA + F16C tier for the common types (most x86 machines). */
#if !QWEN3C_AVX512 && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define QWEN3C_AVX2 1
#else
#define QWEN3C_AVX2 0
#endif

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
    {QWEN3C_TYPE_Q2_K, "Q2_K", 256, 84, false},
    {QWEN3C_TYPE_Q3_K, "Q3_K", 256, 110, false},
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
static inline uint32_t read_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float bf16_to_fp32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/* float -> IEEE half, round to nearest even. Halves have 5 exponent bits (bias 15) and 10
 * significand bits: a float keeps its top 10 significand bits and rounds the 13 below;
 * below 2^-14 it becomes a multiple of 2^-24 (subnormal); from 65520 (halfway between the
 * largest half, 65504, and 2^16) it overflows to inf. NaN stays a NaN, made quiet, as the
 * F16C instructions do. */
static inline uint16_t fp32_to_fp16(float f) {
#if defined(__F16C__)
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
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
#endif
    for (; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block. */
static inline void k_scale_min(int j, const uint8_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
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
    const uint32_t qh = read_u32(b + 2);
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
    const uint32_t qh = read_u32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        const float p0 = d * (float)lo, p1 = d * (float)hi;
        y[j] = p0 + m;
        y[j + QK / 2] = p1 + m;
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
 * AVX-512 building blocks
 * ------------------------------------------------------------------------------------- */
#if QWEN3C_AVX512
/* 16 consecutive weights of a 32-element block as floats, low (j < 16) or high half. */
static inline __m512 q8_half(const uint8_t *qs) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)qs)));
}

/* The 16 packed bytes of a 4-bit block as 16 int32 lanes (nibbles not yet split). */
static inline __m512i nib_bytes(const uint8_t *qs) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
}

static inline __m512 load_f16x16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 load_bf16x16(const uint8_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

/* 5-bit quants of a Q5 block: nibbles | the 32 qh bits as bit 4. */
static inline void q5_split(const uint8_t *qs, uint32_t qh, __m512i *lo, __m512i *hi) {
    const __m512i v = nib_bytes(qs), m15 = _mm512_set1_epi32(15), b16 = _mm512_set1_epi32(16);
    *lo = _mm512_mask_or_epi32(_mm512_and_si512(v, m15), (__mmask16)(qh & 0xffff),
                               _mm512_and_si512(v, m15), b16);
    *hi = _mm512_mask_or_epi32(_mm512_srli_epi32(v, 4), (__mmask16)(qh >> 16),
                               _mm512_srli_epi32(v, 4), b16);
}
#endif

/* ---------------------------------------------------------------------------------------
 * Decode: dot(row, x) over n elements, one kernel per type
 * ------------------------------------------------------------------------------------- */
#if !QWEN3C_AVX512 && !QWEN3C_AVX2
/* Portable dot product with 8 independent partial sums (vectorizable). */
static float dot_f32_scalar(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}
#endif

#if !QWEN3C_AVX2  /* (the AVX2 tier has its own, vec_dot_f32_avx2) */
static float vec_dot_f32(const uint8_t *row, const float *x, int64_t n) {
    const float *w = (const float *)(const void *)row;
#if QWEN3C_AVX512
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#else
    return dot_f32_scalar(w, x, n);  /* GGUF aligns tensor data: rows are float-aligned */
#endif
}
#endif

#if QWEN3C_AVX512
static float vec_dot_f16(const uint8_t *row, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(load_f16x16(row + 2 * i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load_f16x16(row + 2 * i + 32), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(load_f16x16(row + 2 * i + 64), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(load_f16x16(row + 2 * i + 96), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(load_f16x16(row + 2 * i), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 w = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
        a1 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float vec_dot_bf16(const uint8_t *row, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i + 32), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i + 64), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i + 96), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(load_bf16x16(row + 2 * i), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * i));
        __m512 w = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        a1 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Two rows of a float type at once (dot(ra, x) -> *oa, dot(rb, x) -> *ob), each summed exactly
 * as vec_dot_f32 / _f16 / _bf16 sum one row (so the results are bit-identical), sharing the
 * loads of x. Decode reads rows from the two halves of its range with it: two long sequential
 * streams per thread, which keep more cache lines in flight than one. */
static inline __attribute__((always_inline)) __m512 load_float16(int type, const uint8_t *p) {
    return type == QWEN3C_TYPE_F32 ? _mm512_loadu_ps((const float *)(const void *)p)
         : type == QWEN3C_TYPE_F16 ? load_f16x16(p) : load_bf16x16(p);
}

static inline __attribute__((always_inline)) __m512 load_float16_masked(int type, const uint8_t *p,
                                                                        __mmask16 m) {
    if (type == QWEN3C_TYPE_F32) return _mm512_maskz_loadu_ps(m, p);
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (type == QWEN3C_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __attribute__((always_inline)) void
vec_dot2_float(const int type, const uint8_t *ra, const uint8_t *rb, const float *x, int64_t n,
               float *oa, float *ob) {
    const int es = type == QWEN3C_TYPE_F32 ? 4 : 2; /* bytes per element */
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
        const __m512 x2 = _mm512_loadu_ps(x + i + 32), x3 = _mm512_loadu_ps(x + i + 48);
        a0 = _mm512_fmadd_ps(load_float16(type, ra + es * i), x0, a0);
        b0 = _mm512_fmadd_ps(load_float16(type, rb + es * i), x0, b0);
        a1 = _mm512_fmadd_ps(load_float16(type, ra + es * (i + 16)), x1, a1);
        b1 = _mm512_fmadd_ps(load_float16(type, rb + es * (i + 16)), x1, b1);
        a2 = _mm512_fmadd_ps(load_float16(type, ra + es * (i + 32)), x2, a2);
        b2 = _mm512_fmadd_ps(load_float16(type, rb + es * (i + 32)), x2, b2);
        a3 = _mm512_fmadd_ps(load_float16(type, ra + es * (i + 48)), x3, a3);
        b3 = _mm512_fmadd_ps(load_float16(type, rb + es * (i + 48)), x3, b3);
    }
    for (; i + 16 <= n; i += 16) {
        const __m512 x0 = _mm512_loadu_ps(x + i);
        a0 = _mm512_fmadd_ps(load_float16(type, ra + es * i), x0, a0);
        b0 = _mm512_fmadd_ps(load_float16(type, rb + es * i), x0, b0);
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 x0 = _mm512_maskz_loadu_ps(m, x + i);
        a1 = _mm512_fmadd_ps(load_float16_masked(type, ra + es * i, m), x0, a1);
        b1 = _mm512_fmadd_ps(load_float16_masked(type, rb + es * i, m), x0, b1);
    }
    *oa = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    *ob = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)));
}

/* The f16 scales of up to 64 blocks of a row, converted once (the kernels then broadcast
 * them straight from memory). */
#define SCALE_CHUNK 64
static inline int row_scales(const uint8_t *p, int ts, int64_t nb, float *ds) {
    int k = nb < SCALE_CHUNK ? (int)nb : SCALE_CHUNK;
    for (int j = 0; j < k; j++) ds[j] = fp16_to_fp32(read_u16(p + (int64_t)j * ts));
    return k;
}

/* Q8_0: per block, s = sum(q * x) in 16 lanes, then acc += d * s (d factored out). */
static float vec_dot_q8_0(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    float ds[SCALE_CHUNK];
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t b0 = 0; b0 < nb; b0 += SCALE_CHUNK) {
        const int k = row_scales(row + b0 * 34, 34, nb - b0, ds);
        int j = 0;
        for (; j + 2 <= k; j += 2) {
            const uint8_t *p = row + (b0 + j) * 34;
            const float *xb = x + (b0 + j) * QK;
            __m512 s0 = _mm512_mul_ps(q8_half(p + 2), _mm512_loadu_ps(xb));
            __m512 s1 = _mm512_mul_ps(q8_half(p + 36), _mm512_loadu_ps(xb + 32));
            s0 = _mm512_fmadd_ps(q8_half(p + 18), _mm512_loadu_ps(xb + 16), s0);
            s1 = _mm512_fmadd_ps(q8_half(p + 52), _mm512_loadu_ps(xb + 48), s1);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j]), s0, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j + 1]), s1, a1);
        }
        if (j < k) {
            const uint8_t *p = row + (b0 + j) * 34;
            const float *xb = x + (b0 + j) * QK;
            __m512 s0 = _mm512_mul_ps(q8_half(p + 2), _mm512_loadu_ps(xb));
            s0 = _mm512_fmadd_ps(q8_half(p + 18), _mm512_loadu_ps(xb + 16), s0);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j]), s0, a0);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* Nibble -> float by table lookup: vpermps uses only the low 4 bits of each index lane, so
 * the low nibble needs no mask and neither needs an int -> float conversion. */
static inline __m512 nib_table(int offset) {
    return _mm512_add_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_ps((float)offset));
}

/* Q4_0: sum(d (q - 8) x) = d sum((q - 8) x), q - 8 looked up as floats; two blocks per
 * step for two independent accumulation chains. */
static inline __m512 q4_0_block_dot(const uint8_t *qs, const float *xb, __m512 tab) {
    __m512i v = nib_bytes(qs);
    __m512 lo = _mm512_permutexvar_ps(v, tab);
    __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab);
    return _mm512_fmadd_ps(hi, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(xb)));
}

static float vec_dot_q4_0(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    const __m512 tab = nib_table(-8);
    float ds[SCALE_CHUNK];
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t b0 = 0; b0 < nb; b0 += SCALE_CHUNK) {
        const int k = row_scales(row + b0 * 18, 18, nb - b0, ds);
        const uint8_t *p = row + b0 * 18;
        const float *xb = x + b0 * QK;
        int j = 0;
        for (; j + 2 <= k; j += 2) {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j]), q4_0_block_dot(p + j * 18 + 2, xb + j * QK, tab), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j + 1]),
                                 q4_0_block_dot(p + j * 18 + 20, xb + j * QK + QK, tab), a1);
        }
        if (j < k)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[j]), q4_0_block_dot(p + j * 18 + 2, xb + j * QK, tab), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* Q4_1: sum((d q + m) x) = d sum(q x) + m sum(x). */
static float vec_dot_q4_1(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    const __m512 tab = nib_table(0);
    __m512 ad = _mm512_setzero_ps(), am = ad;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = row + b * 20;
        const float *xb = x + b * QK;
        __m512i v = nib_bytes(p + 4);
        __m512 lo = _mm512_permutexvar_ps(v, tab);
        __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab);
        __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        __m512 s = _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
        ad = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p))), s, ad);
        am = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p + 2))),
                             _mm512_add_ps(x0, x1), am);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(ad, am));
}

static float vec_dot_q5_0(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    const __m512i k16 = _mm512_set1_epi32(16);
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = row + b * 22;
        const float *xb = x + b * QK;
        __m512i lo, hi;
        q5_split(p + 6, read_u32(p + 2), &lo, &hi);
        __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(lo, k16)), _mm512_loadu_ps(xb));
        s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(hi, k16)), _mm512_loadu_ps(xb + 16), s);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p))), s, a0);
    }
    return _mm512_reduce_add_ps(a0);
}

static float vec_dot_q5_1(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    __m512 ad = _mm512_setzero_ps(), am = ad;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = row + b * 24;
        const float *xb = x + b * QK;
        __m512i lo, hi;
        q5_split(p + 8, read_u32(p + 4), &lo, &hi);
        __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        __m512 s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), x1,
                                   _mm512_mul_ps(_mm512_cvtepi32_ps(lo), x0));
        ad = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p))), s, ad);
        am = _mm512_fmadd_ps(_mm512_set1_ps(fp16_to_fp32(read_u16(p + 2))),
                             _mm512_add_ps(x0, x1), am);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(ad, am));
}
/* K-quants, one 256-element super-block -> 256 floats (FMA-rounded: may differ from the
 * reference by 1 ulp). */
static void dqk_q4_k(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b)), dmin = fp16_to_fp32(read_u16(b + 2));
    const uint8_t *scales = b + 4, *qs = b + 16;
    const __m512i m15 = _mm512_set1_epi32(15);
    for (int c = 0; c < 4; c++) {
        int sc0, mn0, sc1, mn1;
        k_scale_min(2 * c, scales, &sc0, &mn0);
        k_scale_min(2 * c + 1, scales, &sc1, &mn1);
        const __m512 d0 = _mm512_set1_ps(d * (float)sc0), m0 = _mm512_set1_ps(dmin * (float)mn0);
        const __m512 d1 = _mm512_set1_ps(d * (float)sc1), m1 = _mm512_set1_ps(dmin * (float)mn1);
        for (int h = 0; h < 2; h++) {
            __m512i v = nib_bytes(qs + 32 * c + 16 * h);
            _mm512_storeu_ps(y + 64 * c + 16 * h,
                             _mm512_fmsub_ps(d0, _mm512_cvtepi32_ps(_mm512_and_si512(v, m15)), m0));
            _mm512_storeu_ps(y + 64 * c + 32 + 16 * h,
                             _mm512_fmsub_ps(d1, _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), m1));
        }
    }
}

static void dqk_q5_k(const uint8_t *b, float *y) {
    const float d = fp16_to_fp32(read_u16(b)), dmin = fp16_to_fp32(read_u16(b + 2));
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    const __m512i m15 = _mm512_set1_epi32(15), b16 = _mm512_set1_epi32(16);
    for (int c = 0; c < 4; c++) {
        int sc0, mn0, sc1, mn1;
        k_scale_min(2 * c, scales, &sc0, &mn0);
        k_scale_min(2 * c + 1, scales, &sc1, &mn1);
        const __m512 d0 = _mm512_set1_ps(d * (float)sc0), m0 = _mm512_set1_ps(dmin * (float)mn0);
        const __m512 d1 = _mm512_set1_ps(d * (float)sc1), m1 = _mm512_set1_ps(dmin * (float)mn1);
        const __m512i bit0 = _mm512_set1_epi32(1 << (2 * c)), bit1 = _mm512_set1_epi32(2 << (2 * c));
        for (int h = 0; h < 2; h++) {
            __m512i v = nib_bytes(qs + 32 * c + 16 * h), hb = nib_bytes(qh + 16 * h);
            __m512i lo = _mm512_and_si512(v, m15), hi = _mm512_srli_epi32(v, 4);
            lo = _mm512_mask_or_epi32(lo, _mm512_test_epi32_mask(hb, bit0), lo, b16);
            hi = _mm512_mask_or_epi32(hi, _mm512_test_epi32_mask(hb, bit1), hi, b16);
            _mm512_storeu_ps(y + 64 * c + 16 * h, _mm512_fmsub_ps(d0, _mm512_cvtepi32_ps(lo), m0));
            _mm512_storeu_ps(y + 64 * c + 32 + 16 * h, _mm512_fmsub_ps(d1, _mm512_cvtepi32_ps(hi), m1));
        }
    }
}

static void dqk_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = fp16_to_fp32(read_u16(b + 208));
    const __m512i m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3), k32 = _mm512_set1_epi32(32);
    for (int h = 0; h < 2; h++) {
        for (int l0 = 0; l0 < 32; l0 += 16) {
            __m512i a = nib_bytes(ql + 64 * h + l0), bb = nib_bytes(ql + 64 * h + 32 + l0);
            __m512i hq = nib_bytes(qh + 32 * h + l0);
            __m512i q[4];
            q[0] = _mm512_or_si512(_mm512_and_si512(a, m15), _mm512_slli_epi32(_mm512_and_si512(hq, m3), 4));
            q[1] = _mm512_or_si512(_mm512_and_si512(bb, m15),
                                   _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hq, 2), m3), 4));
            q[2] = _mm512_or_si512(_mm512_srli_epi32(a, 4),
                                   _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hq, 4), m3), 4));
            q[3] = _mm512_or_si512(_mm512_srli_epi32(bb, 4), _mm512_slli_epi32(_mm512_srli_epi32(hq, 6), 4));
            for (int g = 0; g < 4; g++) {
                const int e = 128 * h + 32 * g + l0;  /* first element of these 16 */
                __m512 ds = _mm512_set1_ps(d * (float)sc[e / 16]);
                _mm512_storeu_ps(y + e, _mm512_mul_ps(ds, _mm512_cvtepi32_ps(_mm512_sub_epi32(q[g], k32))));
            }
        }
    }
}

/* The 8 sub-block scales d*sc and mins dmin*mn of a Q4_K / Q5_K super-block. */
static inline void k_scales(const uint8_t *b, float *dsc, float *dmn) {
    const float d = fp16_to_fp32(read_u16(b)), dmin = fp16_to_fp32(read_u16(b + 2));
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        k_scale_min(j, b + 4, &sc, &mn);
        dsc[j] = d * (float)sc;
        dmn[j] = dmin * (float)mn;
    }
}

/* Q4_K decode, fused: per sub-block j, acc += (d sc_j) sum(q x) and accm += (dmin mn_j) sum(x). */
static float vec_dot_q4_k(const uint8_t *row, const float *x, int64_t n) {
    const __m512 tab = nib_table(0);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, am = a0;
    float dsc[8], dmn[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *p = row + b * 144, *qs = p + 16;
        const float *xb = x + b * QK_K;
        k_scales(p, dsc, dmn);
        for (int c = 0; c < 4; c++) {
            const __m512i v0 = nib_bytes(qs + 32 * c), v1 = nib_bytes(qs + 32 * c + 16);
            const float *xc = xb + 64 * c;
            const __m512 x0 = _mm512_loadu_ps(xc), x1 = _mm512_loadu_ps(xc + 16);
            const __m512 x2 = _mm512_loadu_ps(xc + 32), x3 = _mm512_loadu_ps(xc + 48);
            __m512 s0 = _mm512_mul_ps(_mm512_permutexvar_ps(v0, tab), x0);
            __m512 s1 = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v0, 4), tab), x2);
            s0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(v1, tab), x1, s0);
            s1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v1, 4), tab), x3, s1);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c]), s0, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c + 1]), s1, a1);
            am = _mm512_fmadd_ps(_mm512_set1_ps(dmn[2 * c]), _mm512_add_ps(x0, x1), am);
            am = _mm512_fmadd_ps(_mm512_set1_ps(dmn[2 * c + 1]), _mm512_add_ps(x2, x3), am);
        }
    }
    return _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(a0, a1), am));
}

/* Q5_K decode, fused like Q4_K; bit 4 of each quant comes from qh. */
static float vec_dot_q5_k(const uint8_t *row, const float *x, int64_t n) {
    const __m512 tab = nib_table(0), k16 = _mm512_set1_ps(16.0f);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, am = a0;
    float dsc[8], dmn[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *p = row + b * 176, *qs = p + 48;
        const float *xb = x + b * QK_K;
        const __m512i h0 = nib_bytes(p + 16), h1 = nib_bytes(p + 32);
        k_scales(p, dsc, dmn);
        for (int c = 0; c < 4; c++) {
            const __m512i v0 = nib_bytes(qs + 32 * c), v1 = nib_bytes(qs + 32 * c + 16);
            const __m512i bl = _mm512_set1_epi32(1 << (2 * c)), bh = _mm512_set1_epi32(2 << (2 * c));
            const float *xc = xb + 64 * c;
            const __m512 x0 = _mm512_loadu_ps(xc), x1 = _mm512_loadu_ps(xc + 16);
            const __m512 x2 = _mm512_loadu_ps(xc + 32), x3 = _mm512_loadu_ps(xc + 48);
            __m512 q0 = _mm512_permutexvar_ps(v0, tab), q1 = _mm512_permutexvar_ps(v1, tab);
            __m512 q2 = _mm512_permutexvar_ps(_mm512_srli_epi32(v0, 4), tab);
            __m512 q3 = _mm512_permutexvar_ps(_mm512_srli_epi32(v1, 4), tab);
            q0 = _mm512_mask_add_ps(q0, _mm512_test_epi32_mask(h0, bl), q0, k16);
            q1 = _mm512_mask_add_ps(q1, _mm512_test_epi32_mask(h1, bl), q1, k16);
            q2 = _mm512_mask_add_ps(q2, _mm512_test_epi32_mask(h0, bh), q2, k16);
            q3 = _mm512_mask_add_ps(q3, _mm512_test_epi32_mask(h1, bh), q3, k16);
            __m512 s0 = _mm512_fmadd_ps(q1, x1, _mm512_mul_ps(q0, x0));
            __m512 s1 = _mm512_fmadd_ps(q3, x3, _mm512_mul_ps(q2, x2));
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c]), s0, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c + 1]), s1, a1);
            am = _mm512_fmadd_ps(_mm512_set1_ps(dmn[2 * c]), _mm512_add_ps(x0, x1), am);
            am = _mm512_fmadd_ps(_mm512_set1_ps(dmn[2 * c + 1]), _mm512_add_ps(x2, x3), am);
        }
    }
    return _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(a0, a1), am));
}

/* Q6_K decode, fused: per 16 elements, acc += (d sc) sum((q - 32) x). */
static float vec_dot_q6_k(const uint8_t *row, const float *x, int64_t n) {
    const __m512i m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3), k32 = _mm512_set1_epi32(32);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    _Alignas(64) float ds[16];
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *p = row + b * 210;
        const float *xb = x + b * QK_K;
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 192))));
        _mm512_store_ps(ds, _mm512_mul_ps(sc, _mm512_set1_ps(fp16_to_fp32(read_u16(p + 208)))));
        for (int h = 0; h < 2; h++) {
            for (int l0 = 0; l0 < 32; l0 += 16) {
                const __m512i a = nib_bytes(p + 64 * h + l0), bb = nib_bytes(p + 64 * h + 32 + l0);
                const __m512i hq = nib_bytes(p + 128 + 32 * h + l0);
                __m512i q[4];
                q[0] = _mm512_or_si512(_mm512_and_si512(a, m15), _mm512_slli_epi32(_mm512_and_si512(hq, m3), 4));
                q[1] = _mm512_or_si512(_mm512_and_si512(bb, m15),
                                       _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hq, 2), m3), 4));
                q[2] = _mm512_or_si512(_mm512_srli_epi32(a, 4),
                                       _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hq, 4), m3), 4));
                q[3] = _mm512_or_si512(_mm512_srli_epi32(bb, 4), _mm512_slli_epi32(_mm512_srli_epi32(hq, 6), 4));
                for (int g = 0; g < 4; g++) {
                    const int e = 128 * h + 32 * g + l0;  /* first element of these 16 */
                    __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q[g], k32)),
                                             _mm512_loadu_ps(xb + e));
                    if (g & 1) a1 = _mm512_fmadd_ps(_mm512_set1_ps(ds[e / 16]), s, a1);
                    else       a0 = _mm512_fmadd_ps(_mm512_set1_ps(ds[e / 16]), s, a0);
                }
            }
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

#endif /* QWEN3C_AVX512 */

#if QWEN3C_AVX2
/* ---- AVX2 tier ---- */
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline __m256 load_f16x8(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16x8(const uint8_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* 8 bytes -> 8 int32 lanes (sign- or zero-extended) */
static inline __m256i s8x8(const uint8_t *p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
}
static inline __m256i u8x8(const uint8_t *p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

static float vec_dot_f32_avx2(const uint8_t *row, const float *x, int64_t n) {
    const float *w = (const float *)(const void *)row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float vec_dot_f16_avx2(const uint8_t *row, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_f16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(row + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += fp16_to_fp32(read_u16(row + 2 * i)) * x[i];
    return s;
}

static float vec_dot_bf16_avx2(const uint8_t *row, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_bf16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(row + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += bf16_to_fp32(read_u16(row + 2 * i)) * x[i];
    return s;
}

static float vec_dot_q8_0_avx2(const uint8_t *row, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK; b++) {
        const uint8_t *p = row + b * 34;
        const float *xb = x + b * QK;
        __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(s8x8(p + 2)), _mm256_loadu_ps(xb));
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s8x8(p + 10)), _mm256_loadu_ps(xb + 8), s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s8x8(p + 18)), _mm256_loadu_ps(xb + 16), s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s8x8(p + 26)), _mm256_loadu_ps(xb + 24), s);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(read_u16(p))), s, a0);
    }
    return hsum256(a0);
}

/* Q4_0 / Q4_1 (q_off = -8 / 0; has_min for Q4_1): bytes j and j + 8 of qs as two 8-lane
 * halves; low nibbles are elements 0..15, high nibbles 16..31. */
static inline float vec_dot_q4_avx2(const uint8_t *row, const float *x, int64_t n, int ts,
                                    int q_off, int has_min) {
    const __m256i m15 = _mm256_set1_epi32(15), off = _mm256_set1_epi32(q_off);
    __m256 ad = _mm256_setzero_ps(), am = ad;
    for (int64_t b = 0; b < n / QK; b++) {
        const uint8_t *p = row + b * ts, *qs = p + (has_min ? 4 : 2);
        const float *xb = x + b * QK;
        const __m256i v0 = u8x8(qs), v1 = u8x8(qs + 8);
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
        const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
        __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_and_si256(v0, m15), off)), x0);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_and_si256(v1, m15), off)), x1, s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_srli_epi32(v0, 4), off)), x2, s);
        s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_srli_epi32(v1, 4), off)), x3, s);
        ad = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(read_u16(p))), s, ad);
        if (has_min)
            am = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(read_u16(p + 2))),
                                 _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)), am);
    }
    return hsum256(_mm256_add_ps(ad, am));
}
#endif /* QWEN3C_AVX2 */

/* Any type: dequantize a few blocks at a time into an L1 buffer, then a float dot. */
#define GENERIC_CHUNK 512
static float vec_dot_generic(int type, const uint8_t *row, const float *x, int64_t n) {
    const TypeInfo *ti = type_info(type);
    const int64_t step = GENERIC_CHUNK / ti->block_size * ti->block_size;  /* whole blocks */
    float buf[GENERIC_CHUNK], s = 0.0f;
    for (int64_t i = 0; i < n; i += step) {
        int64_t k = n - i < step ? n - i : step;
        dequantize_row(type, row + i / ti->block_size * ti->type_size, buf, k);
#if QWEN3C_AVX512
        s += vec_dot_f32((const uint8_t *)buf, x + i, k);
#elif QWEN3C_AVX2
        s += vec_dot_f32_avx2((const uint8_t *)buf, x + i, k);
#else
        s += dot_f32_scalar(buf, x + i, k);
#endif
    }
    return s;
}

static float vec_dot(int type, const uint8_t *row, const float *x, int64_t n) {
    switch (type) {
#if QWEN3C_AVX2
    case QWEN3C_TYPE_F32:  return vec_dot_f32_avx2(row, x, n);
#else
    case QWEN3C_TYPE_F32:  return vec_dot_f32(row, x, n);
#endif
#if QWEN3C_AVX512
    case QWEN3C_TYPE_F16:  return vec_dot_f16(row, x, n);
    case QWEN3C_TYPE_BF16: return vec_dot_bf16(row, x, n);
    case QWEN3C_TYPE_Q8_0: return vec_dot_q8_0(row, x, n);
    case QWEN3C_TYPE_Q4_0: return vec_dot_q4_0(row, x, n);
    case QWEN3C_TYPE_Q4_1: return vec_dot_q4_1(row, x, n);
    case QWEN3C_TYPE_Q5_0: return vec_dot_q5_0(row, x, n);
    case QWEN3C_TYPE_Q5_1: return vec_dot_q5_1(row, x, n);
    case QWEN3C_TYPE_Q4_K: return vec_dot_q4_k(row, x, n);
    case QWEN3C_TYPE_Q5_K: return vec_dot_q5_k(row, x, n);
    case QWEN3C_TYPE_Q6_K: return vec_dot_q6_k(row, x, n);
#elif QWEN3C_AVX2
    case QWEN3C_TYPE_F16:  return vec_dot_f16_avx2(row, x, n);
    case QWEN3C_TYPE_BF16: return vec_dot_bf16_avx2(row, x, n);
    case QWEN3C_TYPE_Q8_0: return vec_dot_q8_0_avx2(row, x, n);
    case QWEN3C_TYPE_Q4_0: return vec_dot_q4_avx2(row, x, n, 18, -8, 0);
    case QWEN3C_TYPE_Q4_1: return vec_dot_q4_avx2(row, x, n, 20, 0, 1);
#endif
    default:               return vec_dot_generic(type, row, x, n);
    }
}

/* ---------------------------------------------------------------------------------------
 * Prefill: tile dequantization + register-blocked micro-kernel
 * ------------------------------------------------------------------------------------- */
#define TILE_R 4      /* weight rows per tile */
#define TILE_K 1024   /* columns per tile (a multiple of every block size) */
#define TILE_T 6      /* tokens per micro-kernel call: TILE_R * TILE_T accumulators */
#define PANEL_R 16    /* rows dequantized together: a 64 KB panel of floats (on the stack) */

/* Dequantize n elements (whole blocks) for computing: like dequantize_row, but free to fuse
 * multiply-adds (values may differ from the reference by 1 ulp for Q4_1/Q5_1/K-quants). */
static void dequantize_fast(int type, const uint8_t *src, float *dst, int64_t n) {
#if QWEN3C_AVX512
    switch (type) {
    case QWEN3C_TYPE_F16:
        if (n % 16 == 0) {
            for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(dst + i, load_f16x16(src + 2 * i));
            return;
        }
        break;
    case QWEN3C_TYPE_BF16:
        if (n % 16 == 0) {
            for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(dst + i, load_bf16x16(src + 2 * i));
            return;
        }
        break;
    case QWEN3C_TYPE_Q8_0:
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 34;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            _mm512_storeu_ps(dst + b * QK, _mm512_mul_ps(q8_half(p + 2), d));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_mul_ps(q8_half(p + 18), d));
        }
        return;
    case QWEN3C_TYPE_Q4_0: {
        const __m512i m15 = _mm512_set1_epi32(15), k8 = _mm512_set1_epi32(8);
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 18;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            __m512i v = nib_bytes(p + 2);
            __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, m15), k8));
            __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), k8));
            _mm512_storeu_ps(dst + b * QK, _mm512_mul_ps(d, lo));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_mul_ps(d, hi));
        }
        return;
    }
    case QWEN3C_TYPE_Q4_1: {
        const __m512i m15 = _mm512_set1_epi32(15);
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 20;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            __m512 m = _mm512_set1_ps(fp16_to_fp32(read_u16(p + 2)));
            __m512i v = nib_bytes(p + 4);
            __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, m15));
            __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
            _mm512_storeu_ps(dst + b * QK, _mm512_fmadd_ps(d, lo, m));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_fmadd_ps(d, hi, m));
        }
        return;
    }
    case QWEN3C_TYPE_Q5_0: {
        const __m512i k16 = _mm512_set1_epi32(16);
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 22;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            __m512i lo, hi;
            q5_split(p + 6, read_u32(p + 2), &lo, &hi);
            _mm512_storeu_ps(dst + b * QK, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, k16))));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, k16))));
        }
        return;
    }
    case QWEN3C_TYPE_Q5_1:
        for (int64_t b = 0; b < n / QK; b++) {
            const uint8_t *p = src + b * 24;
            __m512 d = _mm512_set1_ps(fp16_to_fp32(read_u16(p)));
            __m512 m = _mm512_set1_ps(fp16_to_fp32(read_u16(p + 2)));
            __m512i lo, hi;
            q5_split(p + 8, read_u32(p + 4), &lo, &hi);
            _mm512_storeu_ps(dst + b * QK, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lo), m));
            _mm512_storeu_ps(dst + b * QK + 16, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(hi), m));
        }
        return;
    case QWEN3C_TYPE_Q4_K:
        for (int64_t b = 0; b < n / QK_K; b++) dqk_q4_k(src + b * 144, dst + b * QK_K);
        return;
    case QWEN3C_TYPE_Q5_K:
        for (int64_t b = 0; b < n / QK_K; b++) dqk_q5_k(src + b * 176, dst + b * QK_K);
        return;
    case QWEN3C_TYPE_Q6_K:
        for (int64_t b = 0; b < n / QK_K; b++) dqk_q6_k(src + b * 210, dst + b * QK_K);
        return;
    default:
        break;
    }
#endif
    dequantize_row(type, src, dst, n);
}

#if QWEN3C_AVX512
/* The horizontal sums of a, b, c, d as one 4-float vector (a transposing reduction: far
 * fewer shuffles than four separate reductions). */
static inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    /* per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] and the same for c, d */
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    /* per lane: [sum a, sum b, sum c, sum d] */
    __m512 abcd = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* part[t * TILE_R + r] = dot(tile row r, x row t) over k elements; tile rows have stride TILE_K,
 * x rows stride xs. NR, NT are compile-time constants at every call site, so the loops
 * unroll and the NR*NT accumulators stay in registers. */
static inline __attribute__((always_inline)) void
tile_kernel(const int NR, const int NT, const float *tile, const float *x, int64_t xs,
            int64_t k, float *part) {
    __m512 acc[TILE_R][TILE_T];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m512 w[TILE_R];
        for (int r = 0; r < NR; r++) w[r] = _mm512_load_ps(tile + r * TILE_K + i);
        for (int t = 0; t < NT; t++) {
            __m512 xv = _mm512_loadu_ps(x + t * xs + i);
            /* keep xv in a register: otherwise gcc folds the load into each of the NR FMAs,
             * and the loads, not the FMAs, become the bottleneck */
            __asm__("" : "+v"(xv));
            for (int r = 0; r < NR; r++) acc[r][t] = _mm512_fmadd_ps(w[r], xv, acc[r][t]);
        }
    }
    if (i < k) {
        __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        __m512 w[TILE_R];
        for (int r = 0; r < NR; r++) w[r] = _mm512_maskz_loadu_ps(m, tile + r * TILE_K + i);
        for (int t = 0; t < NT; t++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + t * xs + i);
            for (int r = 0; r < NR; r++) acc[r][t] = _mm512_fmadd_ps(w[r], xv, acc[r][t]);
        }
    }
    if (NR == 4) {
        for (int t = 0; t < NT; t++)
            _mm_storeu_ps(part + t * TILE_R, hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]));
    } else {
        for (int r = 0; r < NR; r++)
            for (int t = 0; t < NT; t++) part[t * TILE_R + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

static void tile_dispatch(int nr, int nt, const float *tile, const float *x, int64_t xs,
                          int64_t k, float *part) {
    if (nr == TILE_R) {
        switch (nt) {
        case 1: tile_kernel(4, 1, tile, x, xs, k, part); return;
        case 2: tile_kernel(4, 2, tile, x, xs, k, part); return;
        case 3: tile_kernel(4, 3, tile, x, xs, k, part); return;
        case 4: tile_kernel(4, 4, tile, x, xs, k, part); return;
        case 5: tile_kernel(4, 5, tile, x, xs, k, part); return;
        default: tile_kernel(4, 6, tile, x, xs, k, part); return;
        }
    }
    /* a few leftover rows at the end of a matrix: one row at a time */
    for (int r = 0; r < nr; r++) {
        float p1[TILE_R * TILE_T] = {0};
        switch (nt) {
        case 1: tile_kernel(1, 1, tile + r * TILE_K, x, xs, k, p1); break;
        case 2: tile_kernel(1, 2, tile + r * TILE_K, x, xs, k, p1); break;
        case 3: tile_kernel(1, 3, tile + r * TILE_K, x, xs, k, p1); break;
        case 4: tile_kernel(1, 4, tile + r * TILE_K, x, xs, k, p1); break;
        case 5: tile_kernel(1, 5, tile + r * TILE_K, x, xs, k, p1); break;
        default: tile_kernel(1, 6, tile + r * TILE_K, x, xs, k, p1); break;
        }
        for (int t = 0; t < nt; t++) part[t * TILE_R + r] = p1[t * TILE_R];
    }
}
#elif QWEN3C_AVX2
/* AVX2 micro-kernel: 4 rows x 2 tokens = 8 accumulators of 8 lanes (16 ymm registers). */
static inline __attribute__((always_inline)) void
tile_kernel2(const int NR, const int NT, const float *tile, const float *x, int64_t xs, int64_t k,
             float *part) {
    __m256 acc[TILE_R][2];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 w[TILE_R];
        for (int r = 0; r < NR; r++) w[r] = _mm256_load_ps(tile + r * TILE_K + i);
        for (int t = 0; t < NT; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * xs + i);
            __asm__("" : "+x"(xv));  /* one load of x, not one per row */
            for (int r = 0; r < NR; r++) acc[r][t] = _mm256_fmadd_ps(w[r], xv, acc[r][t]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) {
            float s = hsum256(acc[r][t]);
            for (int64_t j = i; j < k; j++) s += tile[r * TILE_K + j] * x[t * xs + j];
            part[t * TILE_R + r] = s;
        }
}

static void tile_dispatch(int nr, int nt, const float *tile, const float *x, int64_t xs,
                          int64_t k, float *part) {
    for (int t = 0; t < nt; t += 2) {
        const int n2 = nt - t < 2 ? nt - t : 2;
        if (nr == TILE_R) {
            if (n2 == 2) tile_kernel2(4, 2, tile, x + t * xs, xs, k, part + t * TILE_R);
            else         tile_kernel2(4, 1, tile, x + t * xs, xs, k, part + t * TILE_R);
        } else {
            for (int r = 0; r < nr; r++) {
                float p1[2 * TILE_R] = {0};
                if (n2 == 2) tile_kernel2(1, 2, tile + r * TILE_K, x + t * xs, xs, k, p1);
                else         tile_kernel2(1, 1, tile + r * TILE_K, x + t * xs, xs, k, p1);
                for (int j = 0; j < n2; j++) part[(t + j) * TILE_R + r] = p1[j * TILE_R];
            }
        }
    }
}
#else
/* Portable micro-kernel: 8 partial sums per (row, token) so the compiler can vectorize. */
static void tile_dispatch(int nr, int nt, const float *tile, const float *x, int64_t xs,
                          int64_t k, float *part) {
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++)
            part[t * TILE_R + r] = dot_f32_scalar(tile + r * TILE_K, x + t * xs, k);
}
#endif

void matmul_rows(float *out, int64_t out_stride, const float *x, int n_tok, const QTensor *w,
                 int64_t r0, int64_t r1) {
    const int64_t n = w->cols;
    const uint8_t *base = (const uint8_t *)w->data;
    if (n_tok == 1) {
        /* decode: memory-bound, one streaming dot product per row */
        int64_t r = r0;
#if QWEN3C_AVX512
        const int t = w->type;
        if (t == QWEN3C_TYPE_F32 || t == QWEN3C_TYPE_F16 || t == QWEN3C_TYPE_BF16) {
            /* float rows two at a time, one from each half of the range */
            const int64_t h = (r1 - r0) / 2;
            for (; r < r0 + h; r++) {
                const uint8_t *ra = base + r * w->row_bytes, *rb = base + (r + h) * w->row_bytes;
                if (t == QWEN3C_TYPE_F32) vec_dot2_float(QWEN3C_TYPE_F32, ra, rb, x, n, out + r, out + r + h);
                else if (t == QWEN3C_TYPE_F16) vec_dot2_float(QWEN3C_TYPE_F16, ra, rb, x, n, out + r, out + r + h);
                else vec_dot2_float(QWEN3C_TYPE_BF16, ra, rb, x, n, out + r, out + r + h);
            }
            r = r0 + 2 * h; /* the odd row left, if any */
        }
#endif
        for (; r < r1; r++) out[r] = vec_dot(w->type, base + r * w->row_bytes, x, n);
        return;
    }
    /* prefill: a panel of PANEL_R rows x TILE_K columns is dequantized once (it stays in L2);
     * each group of TILE_T token rows of x (in L1) is then used against all of the panel's
     * TILE_R-row tiles, so x is read from memory once per PANEL_R rows. */
    const TypeInfo *ti = type_info(w->type);
    _Alignas(64) float panel[PANEL_R * TILE_K];
    float part[TILE_R * TILE_T];
    for (int64_t rp = r0; rp < r1; rp += PANEL_R) {
        const int npr = r1 - rp < PANEL_R ? (int)(r1 - rp) : PANEL_R;
        for (int64_t k0 = 0; k0 < n; k0 += TILE_K) {
            const int64_t kc = n - k0 < TILE_K ? n - k0 : TILE_K;
            const size_t off = (size_t)(k0 / ti->block_size) * (size_t)ti->type_size;
            for (int i = 0; i < npr; i++)
                dequantize_fast(w->type, base + (rp + i) * w->row_bytes + off, panel + i * TILE_K, kc);
            for (int t0 = 0; t0 < n_tok; t0 += TILE_T) {
                const int nt = n_tok - t0 < TILE_T ? n_tok - t0 : TILE_T;
                for (int i0 = 0; i0 < npr; i0 += TILE_R) {
                    const int nr = npr - i0 < TILE_R ? npr - i0 : TILE_R;
                    tile_dispatch(nr, nt, panel + i0 * TILE_K, x + (int64_t)t0 * n + k0, n, kc, part);
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
    const QTensor qt = {w, type, d, n, (size_t)qwen3c_type_row_size(type, n), NULL};
    int nt = n_threads > 0 ? n_threads : omp_get_num_procs();
    if ((int64_t)nt > (d + TILE_R - 1) / TILE_R) nt = (int)((d + TILE_R - 1) / TILE_R);  /* >= 1 */
    /* contiguous row ranges, TILE_R-aligned, one per thread */
    int64_t per = ((d + nt - 1) / nt + TILE_R - 1) / TILE_R * TILE_R;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int i = 0; i < nt; i++) {
        int64_t a = (int64_t)i * per, b = a + per < d ? a + per : d;
        if (a < b) matmul_rows(out, d, x, (int)n_tok, &qt, a, b);
    }
    return QWEN3C_OK;
}

/* The validated public entry of a quantized-activation path (qwen3c_matmul_int8 / _q16):
 * the arguments checked in qwen3c_matmul's order and words, x quantized once, then the rows
 * split into TILE_R-aligned ranges, one per thread. */
int quant_path_matmul(const QuantPath *qp, int type, const void *w, size_t w_size, const float *x,
                      int64_t n_tok, int64_t n, int64_t d, float *out, int n_threads, char *err,
                      size_t err_size) {
    const char *what = qp->what;
    if (!qp->supported(type))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "%s: tensor type %d (%s) is not supported by the %s path (Q8_0, Q4_0, Q4_1)",
                           what, type, qwen3c_type_name(type), qp->path);
    if (n <= 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: the number of elements per row must be positive, got %lld", what,
                           (long long)n);
    if (d <= 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: the number of rows must be positive, got %lld", what, (long long)d);
    if (n % QK != 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%s: %lld elements is not a multiple of the %s block size %d", what,
                           (long long)n, qwen3c_type_name(type), QK);
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
    void *xq = aligned_alloc(64, xq_size);
    if (xq == NULL)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "%s: cannot allocate %zu bytes", what,
                           xq_size);
    QTensor qt = {w, type, d, n, (size_t)row, NULL};
    /* one range of whole 16-row units per thread (the q24 kernels work on 16-row groups) */
    const int64_t units = (d + 15) / 16;
    int nt = n_threads > 0 ? n_threads : omp_get_num_procs();
    if ((int64_t)nt > units) nt = (int)units;
    void *packed = NULL;
    if (qp->pack) { /* q24: the kernels read a packed copy of W (the model packs it once) */
        const size_t pb = (qp->packed_size(type, d, n) + 63) / 64 * 64;
        packed = aligned_alloc(64, pb);
        if (packed == NULL) {
            free(xq);
            return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, pb);
        }
        qp->pack(&qt, packed, nt);
        qt.packed = packed;
    }
    qp->quantize(x, (int)n_tok, n, xq);
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int i = 0; i < nt; i++) {
        const int64_t a = units * i / nt * 16, e = units * (i + 1) / nt * 16, b = e < d ? e : d;
        if (a < b) qp->rows(out, d, xq, (int)n_tok, &qt, a, b);
    }
    free(packed);
    free(xq);
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
