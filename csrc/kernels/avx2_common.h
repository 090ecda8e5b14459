/*
 * avx2_common.h -- what the hand-written *_avx2.c kernel files share: the byte dot product of
 * the q24 / q24k kernels in its two forms, and small reductions.
 *
 * The avx2 files are compiled twice (kernels.h): with AVX-VNNI (__AVXVNNI__: vpdpbusd on ymm,
 * Alder Lake and later Intel laptop CPUs, Zen 5) for the tier table *_avx2vnni, and without it
 * for *_avx2 (Haswell .. Comet Lake, Zen 1-4 without AVX-512). DOTS is where they differ.
 */
#ifndef QWEN3C_AVX2_COMMON_H
#define QWEN3C_AVX2_COMMON_H

#include <immintrin.h>

#include "kernels.h"

/* The byte dot product of the q24 / q24k kernels: acc (8 int32 lanes) += the sums of 4
 * adjacent products u * s, u unsigned bytes (the weights' integers), s signed bytes (an
 * activation digit broadcast); lane j gets bytes 4j..4j+3. DOT_STEP chunks (32 bytes each) at
 * a time: DOTS(acc, u0, s0, u1, s1) uses u1, s1 only when DOT_STEP is 2.
 *
 * With AVX-VNNI: one vpdpbusd per chunk, exact.
 * Without: vpmaddubsw multiplies u by s and adds adjacent pairs into saturating int16 lanes,
 * vpmaddwd with ones adds adjacent int16 pairs into int32; two chunks share the int16 step.
 * Exact, with no saturation, as long as every u <= 63 (the q24 / q24k weights' integers: 4, 5,
 * 6 bits; Q8_0's bytes are split into nibbles first): with s in [-128, 127] a product is at most
 * 63 * 128 = 8064 in magnitude, a vpmaddubsw pair at most 16128, the vpaddw of two chunks' pairs
 * at most 32256 < 32767, so neither the saturating vpmaddubsw nor the wrapping vpaddw can
 * change a value, and the int32 lanes get two such sums (<= 64512) per call. */
#if defined(__AVXVNNI__)
#define DOT_STEP 1
#define DOTS(acc, u0, s0, u1, s1) ((acc) = _mm256_dpbusd_avx_epi32((acc), (u0), (s0)))
#else
#define DOT_STEP 2
#define DOTS(acc, u0, s0, u1, s1)                                                                 \
    ((acc) = _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16((u0), (s0)), \
                                                                        _mm256_maddubs_epi16((u1), (s1))), \
                                                       _mm256_set1_epi16(1))))
#endif

/* 4 bytes at p broadcast to the 8 int32 lanes */
static inline __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* 8 bytes at p as 8 floats (unsigned or signed bytes); 8 IEEE halves at p as floats */
static inline __m256 u8x8_ps(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
static inline __m256 s8x8_ps(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
static inline __m256 f16x8_ps(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* The first n (0..8) int32 lanes all ones: a mask for _mm256_maskstore_ps */
static inline __m256i first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The q24 / q24k files' group loop over rows [r0, r1) of a packed matrix (16-row groups of
 * group_bytes from `packed`, a short last one): HALVES(g, r, valid, H, hf0) for the group at g,
 * its first row r and its `valid` rows, on its 8-row halves hf0 .. hf0 + H - 1 that hold a valid
 * row -- both in one pass for one token (decode: each activation broadcast then serves two
 * chunks), one at a time for a batch (4-token tiles: the accumulators of two halves would not
 * fit the 16 ymm registers). */
#define AVX2_GROUP_HALVES(NT, r0, r1, packed, group_bytes, HALVES)                              \
    for (int64_t r_ = (r0); r_ < (r1); r_ += GR) {                                             \
        const uint8_t *g_ = (const uint8_t *)(packed) + (size_t)(r_ / GR) * (group_bytes);      \
        const int valid_ = (r1) - r_ < GR ? (int)((r1) - r_) : GR;                             \
        if ((NT) == 1 && valid_ > 8) {                                                          \
            HALVES(g_, r_, valid_, 2, 0);                                                       \
            continue;                                                                           \
        }                                                                                       \
        HALVES(g_, r_, valid_, 1, 0);                                                           \
        if (valid_ > 8) HALVES(g_, r_, valid_, 1, 1);                                           \
    }

/* The q24 / q24k files' results: tot[t][8 h .. 8 h + 8) (t < nt, h < n_halves) are rows
 * 8 (hf0 + h) .. + 7 of a 16-row group whose first `valid` rows exist, for token t at
 * out + t out_stride. */
static inline __attribute__((always_inline)) void
store_halves(float *out, int64_t out_stride, float (*tot)[16], int nt, int n_halves, int hf0, int valid) {
    for (int h = 0; h < n_halves; h++) {
        const int row0 = 8 * (hf0 + h);
        if (valid >= row0 + 8) {
            for (int t = 0; t < nt; t++) _mm256_storeu_ps(out + t * out_stride + row0, _mm256_load_ps(tot[t] + 8 * h));
        } else if (valid > row0) {
            const __m256i m = first_lanes(valid - row0);
            for (int t = 0; t < nt; t++) _mm256_maskstore_ps(out + t * out_stride + row0, m, _mm256_load_ps(tot[t] + 8 * h));
        }
    }
}

#endif /* QWEN3C_AVX2_COMMON_H */
