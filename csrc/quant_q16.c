/*
 * quant_q16.c -- the opt-in activations="q16" matmul for Q8_0 / Q4_0 / Q4_1 weights: 16-bit
 * activations x the weights' integer quants with exact integer dot products (AVX-512 VNNI
 * vpdpwssd), for integer instead of float multiply-adds. Rounding the activations to 16 bits
 * costs ~2e-5 relative on Gaussian activations, but a block holding an outlier activation is
 * rounded in steps of outlier / 32767: 1.3e-3 of the logits on SmolLM2 (quant.c's float
 * kernels, the default: ~1e-7 per dot product, 3e-6 on SmolLM2; quant_int8.c: ~1e-2).
 *
 * Activation quantization (once per matmul, q16 ActQuantKernels.quantize): each block of 32
 * values x[0..32) of a token row gets
 *     d   = max|x| / 32767         (float32; d = 0 when d < FLT_MIN or not finite)
 *     id  = 1 / d                  (float32; 0 when d = 0)
 *     q   = rint(x * id)           (float32 product, rounded to nearest, ties to even,
 *                                   clamped to [-32767, 32767]; NaN -> 0)
 *     sxf = sum(x)                 (float32 sum of the ORIGINAL x, for Q4_1's min term)
 * A weight block (scale dw, integer quants w, plus the min m for Q4_1) then contributes
 *     dw * d * isum  (+ m * sxf for Q4_1),  isum = sum(w * q) computed exactly in int32,
 * with w = q8 (Q8_0), q4 - 8 (Q4_0), q4 (Q4_1). |isum| <= 32 * 128 * 32767 < 2^31: no
 * overflow. Everything after isum is float32; Q4_1's min term is exact up to float rounding
 * (it uses x itself, not the rounded q).
 *
 * Buffer layout of the quantized activations (q16_act_size bytes for n_tok rows, nb = cols/32,
 * ng = ceil(nb / 16)):
 *   plain part, per token (76 nb bytes): int16 q[nb][32]; float d[nb]; float sxf[nb];
 *     int32 qb[nb] = -8 sum(q) (decode adds it to Q4_0's unsigned q4 * q sums: exact)
 *   interleaved part (the avx512 tier only, filled when n_tok > 1), per token ng records of 1152
 *   bytes, one per group of 16 blocks (a short last group is padded with zero blocks):
 *     int16 q[16][16][2]   chunk c, lane j = elements 2c, 2c+1 of block j of the group
 *     float d[16]; float sxf[16]
 *
 * Kernels (the avx512 tier, VNNI):
 *   decode (n_tok == 1): per weight row, in chunks of up to SCH blocks: a first pass computes
 *     the scale products dw * d of the chunk's blocks, 8 at a time (the f16 scales assembled in
 *     general registers; Q4_1: also sums m * sxf); then per block: the 32 weight quants
 *     widened to int16 (Q8_0: vpmovsxbw into one zmm; Q4: nibbles of the zero-extended bytes
 *     as two ymm halves), vpmaddwd / vpdpwssd against the 32 int16 activations (Q4_0: the
 *     accumulator starts at qb, which removes the - 8 exactly), one convert and one FMA with
 *     the scale broadcast from memory; 4 independent accumulators. Memory-bound on 2 cores.
 *   prefill (n_tok > 1): a panel of PANEL_R rows x KG groups is repacked once into the same
 *     interleaved layout as the activations (weights sign-extended to int16, transposed so
 *     that lane j of a vector = block j), so that one vpdpwssd advances 16 blocks by 2
 *     elements and 16 of them finish 16 whole block dot products, one per int32 lane; the
 *     float work (convert, dw * d, FMA; Q4_1: + m * sxf) is then one step per 16 blocks. A
 *     register-blocked TILE_R x TILE_T (4 x 6) micro-kernel runs over every group of tokens:
 *     24 int32 accumulators in registers (the float ones, touched once per group, in L1);
 *     weights are read from memory once per batch.
 * Other tiers (kernels/q16_scalar.c): plain C with the same arithmetic and the plain layout
 * only (results equal up to float32 rounding).
 *
 * This file: the public entry; the kernels are kernels/q16_<tier>.c.
 */
#include <stdint.h>

#include "kernels/kernels.h"

bool q16_path_supported(int type) {
    return type == QWEN3C_TYPE_Q8_0 || type == QWEN3C_TYPE_Q4_0 || type == QWEN3C_TYPE_Q4_1;
}

/* ---------------------------------------------------------------------------------------
 * Public, validated entry point (tests and benchmarks)
 * ------------------------------------------------------------------------------------- */
int qwen3c_matmul_q16(int type, const void *w, size_t w_size, const float *x, int64_t n_tok,
                      int64_t n, int64_t d, float *out, int n_threads, char *err, size_t err_size) {
    const Kernels *k;
    int rc = kernels_select(&k, err, err_size);
    if (rc != QWEN3C_OK) return rc;
    const QuantPath qp = {"matmul_q16", "q16", q16_path_supported, k->q16->act_size, k->q16->quantize,
                          NULL, k->q16->rows, NULL, NULL};
    return quant_path_matmul(&qp, type, w, w_size, x, n_tok, n, d, out, n_threads, err, err_size);
}
