/*
 * avx512_common.h -- small AVX-512 helpers shared by the *_avx512.c kernel files.
 */
#ifndef QWEN3C_AVX512_COMMON_H
#define QWEN3C_AVX512_COMMON_H

#include <immintrin.h>

#include "kernels.h"

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

static inline float hsum128(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)));
}

/* The 16 block scales (f16 at stride ts from p) of a group of Q8_0 / Q4_0 / Q4_1 blocks as
 * floats; *m_out gets the Q4_1 mins (the f16 right after each scale) when m_out != NULL. */
static inline __m512 group_scales(const uint8_t *p, int ts, __m512 *m_out) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(ts));
    const __m512i s = _mm512_i32gather_epi32(idx, p, 1);
    if (m_out) *m_out = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(s, 16)));
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(s));
}

#endif /* QWEN3C_AVX512_COMMON_H */
