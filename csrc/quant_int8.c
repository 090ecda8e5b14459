/*
 * quant_int8.c -- the opt-in fast matmul: 8-bit activations x Q8_0 / Q4_0 / Q4_1 weights with
 * integer dot products (AVX-512 VNNI vpdpbusd). Less exact than quant.c's kernels (the
 * activations are rounded to 8 bits, as llama.cpp does), so never the default.
 *
 * Activation quantization (once per matmul, int8 ActQuantKernels.quantize): each block of 32 values
 * x[0..32) of a token row gets
 *     d  = max|x| / 127            (float32; d = 0 when d < FLT_MIN, i.e. an all-~zero block)
 *     id = 1 / d                   (float32; 0 when d = 0)
 *     q  = rint(x * id)            (float32 product, rounded to nearest, ties to even; |q| <= 127)
 *     sx = sum(q)                  (int32)
 * A weight block (scale dw, quants w, plus the min m for Q4_1) then contributes
 *     dw * d * isum  (+ m * (d * sx) for Q4_1),  isum = sum(w * q) computed exactly in int32,
 * with w = q8 (Q8_0), q4 - 8 (Q4_0), q4 (Q4_1). Everything after isum is float32.
 *
 * Buffer layout of the quantized activations (int8_act_size bytes for n_tok rows, nb = cols/32,
 * ng = ceil(nb / 16)):
 *   plain part, per token (40 nb bytes): int8 q[nb][32]; float d[nb]; int32 sx[nb]
 *   interleaved part (the avx512 tier only, filled when n_tok > 1), per token ng records of 640
 *   bytes, one per group of 16 blocks (a short last group is padded with zero blocks):
 *     int8 q[8][16][4]   chunk c, lane j = elements 4c..4c+3 of block j of the group
 *     float d[16]; int32 sx[16]
 *
 * Kernels (the avx512 tier, VNNI):
 *   decode (n_tok == 1): per weight row, two blocks per 512-bit step against the plain layout:
 *     the signed product w * q is formed exactly as |w| * (q with w's sign) (vpdpbusd takes
 *     one unsigned operand), converted to float and scaled by dw * d per block. Memory-bound.
 *   prefill (n_tok > 1): a panel of PANEL_R rows x KG groups is repacked once into the same
 *     interleaved layout (gathers: lane j of a vector = block j), with the weights biased to
 *     unsigned bytes (Q8_0: w + 128; Q4_0: q4 = w + 8; Q4_1: q4), so that one vpdpbusd
 *     advances 16 blocks by 4 elements and 8 of them finish 16 whole block dot products, one
 *     per int32 lane. The bias is removed exactly in int32 by starting each accumulator at
 *     -bias * sx (per token, shared by all rows); the float work (convert, dw * d, FMA) is
 *     then one step per 16 blocks. A register-blocked TILE_R x TILE_T micro-kernel runs over
 *     every group of tokens: weights are read from memory once per batch.
 * Other tiers (kernels/int8_scalar.c): plain C with the same arithmetic and the plain layout
 * only (results equal up to float32 rounding).
 *
 * This file: the public entry; the kernels are kernels/int8_<tier>.c.
 */
#include <stdint.h>

#include "kernels/kernels.h"

bool int8_path_supported(int type) {
    return type == QWEN3C_TYPE_Q8_0 || type == QWEN3C_TYPE_Q4_0 || type == QWEN3C_TYPE_Q4_1;
}

/* ---------------------------------------------------------------------------------------
 * Public, validated entry point (tests and benchmarks)
 * ------------------------------------------------------------------------------------- */
int qwen3c_matmul_int8(int type, const void *w, size_t w_size, const float *x, int64_t n_tok,
                       int64_t n, int64_t d, float *out, int n_threads, char *err, size_t err_size) {
    const Kernels *k;
    int rc = kernels_select(&k, err, err_size);
    if (rc != QWEN3C_OK) return rc;
    const QuantPath qp = {"matmul_int8", "int8", int8_path_supported, k->int8->act_size, k->int8->quantize,
                          NULL, k->int8->rows, NULL, NULL};
    return quant_path_matmul(&qp, type, w, w_size, x, n_tok, n, d, out, n_threads, err, err_size);
}
