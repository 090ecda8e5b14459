/*
 * quant_q24.c -- the default matmul for Q8_0 / Q4_0 / Q4_1 weights (activations="q24"):
 * activations as 24-bit fixed point, weights in a 16-row interleaved copy, exact integer dot
 * products (AVX-512 VNNI vpdpbusd). Rounding x to 24 bits per block of 32 is float32-level
 * (the rounding step is max|x| / 8355711, about the float32 ulp of the block's largest value),
 * so the results stay within float32 rounding of the float kernels in quant.c; but vpdpbusd
 * does 64 multiply-adds per instruction, so decode runs at memory speed and prefill does 64/3
 * multiply-adds per instruction, against 16 for a float32 FMA.
 *
 * Activation quantization (once per matmul, Q24Kernels.quantize): each block of 32
 * values x[0..32) of a token row gets
 *     d  = max|x| / 8355711          (float32; 8355711 = 0x7F7F7F; d = 0 when max|x| is 0 or
 *                                     d < FLT_MIN; d = NaN when the block holds a NaN or inf,
 *                                     which makes every output it touches NaN, as float would)
 *     v  = rint(x * (1 / d))         (float32 product, round to nearest even, |v| <= 0x7F7F7F)
 *     v  = 65536 h + 256 m + l       (balanced base-256 digits, each a signed byte)
 *     sh = sum(h), sml = 256 sum(m) + sum(l), sx = sum(x) (float32, Q4_1's min term)
 *
 * Packed weights (q24_pack, once per model): rows in groups of 16 (a short last group padded
 * with zero rows); per group, per block b of 32 columns, one record:
 *     Q8_0 (544 bytes): f16 d[16]; then 8 chunks c of 64 bytes, byte 4r + i = w[r][32b+4c+i] ^ 0x80
 *     Q4_0 (288 bytes): f16 d[16]; then 4 vectors v of 64 bytes, byte 4r + i = qs[r][4v + i]
 *                       (low nibble: element 4v + i, high nibble: element 16 + 4v + i)
 *     Q4_1 (320 bytes): f16 d[16]; f16 m[16]; then 4 vectors as Q4_0
 * Same bytes per row as the file. Each 64-byte chunk holds 4 consecutive columns of all 16
 * rows, so one vpdpbusd against 4 broadcast activation bytes advances 16 rows (one int32 lane
 * each) by 4 columns, and a block ends with 16 finished row dot products: no horizontal sums.
 * q24_pack_signed is the same layout with the Q8_0 bytes as stored (w, signed): arm64's sdot
 * multiplies signed by signed bytes, and a 16-byte quarter of a chunk (4 rows x 4 columns) is
 * one sdot against an activation register's 4-byte lane (kernels/q24_neon.c). q24_pack_mmla
 * keeps the scales and puts the quants (as stored) in 2-row x 8-column tiles, one smmla operand
 * each (arm64 i8mm): Q8_0 tile (o < 4, P < 8) = w[2P][8o..8o+8) w[2P+1][8o..8o+8) at byte 16 (8 o
 * + P) of the quants; Q4_0 / Q4_1 tile (o < 2, P) the same of the stored bytes qs, whose low
 * nibbles are columns 8o.. and high nibbles 16 + 8o...
 *
 * The weight byte u is unsigned (Q8_0: w + 128; Q4: the nibble q), so with off = 128 / 8 / 0
 *     sum(w * v) = 65536 (sum(u h) - off sh) + (256 sum(u m) + sum(u l) - off sml)
 * where each int32 term is exact (|sum(u m)| <= 32 * 255 * 128 < 2^21); the two parts are
 * converted to float and joined with one FMA, and the block adds dw * d * that (+ m * sx for
 * Q4_1). Every tier's kernels (kernels/q24_*.c) do the same integer sums and the same float
 * steps in the same order, so all tiers agree bit for bit (but for Q4_1, whose sx is summed in
 * another order). Only tiers with integer dot-product instructions (avx512: VNNI) are fast
 * enough for the forward pass to use q24 (Q24Kernels.fast); elsewhere it runs as f32.
 *
 * This file: the packing (shared by the tiers) and the public entry qwen3c_matmul_q24.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/q24.h"

/* ---------------------------------------------------------------------------------------
 * Packed weights
 * ------------------------------------------------------------------------------------- */
bool q24_path_supported(int type) { return q24_record_bytes(type) != 0; }

size_t q24_packed_size(int type, int64_t rows, int64_t cols) {
    const int rb = q24_record_bytes(type);
    if (rb == 0 || rows <= 0 || cols <= 0 || cols % QK) return 0;
    return (size_t)((rows + GR - 1) / GR) * (size_t)(cols / QK) * (size_t)rb;
}

/* The packing: scales as above, then the quants in 4-column quads (x86, arm64 sdot) with the
 * Q8_0 ones flipped by q8_flip (0x80808080: w + 128; 0: as stored, signed), or (octets) in
 * 2-row x 8-column tiles for arm64's smmla: tile (o, P) at byte 16 (8 o + P) of the quants holds
 * bytes 8o..8o+8 of the stored quants of rows 2P and 2P + 1. */
static void pack_groups(const QTensor *w, void *dst, int n_threads, uint32_t q8_flip, int octets) {
    const int type = w->type, rb = q24_record_bytes(type);
    const int64_t nb = w->cols / QK, ng = (w->rows + GR - 1) / GR;
    const size_t src_block = type == QWEN3C_TYPE_Q8_0 ? 34 : type == QWEN3C_TYPE_Q4_0 ? 18 : 20;
    const int hdr = type == QWEN3C_TYPE_Q4_1 ? 4 : 2; /* bytes of d (and m) before the quants */
    n_threads = thread_limit(n_threads > 0 ? n_threads : cpu_count());
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t g = 0; g < ng; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *rec = (uint8_t *)dst + ((size_t)g * (size_t)nb + (size_t)b) * (size_t)rb;
            if ((g + 1) * GR > w->rows) memset(rec, 0, (size_t)rb); /* zero rows pad the last group */
            const int q41 = type == QWEN3C_TYPE_Q4_1;
            uint8_t *quants = rec + (q41 ? 64 : 32);
            for (int r = 0; r < GR && g * GR + r < w->rows; r++) {
                const uint8_t *blk = (const uint8_t *)w->data + (size_t)(g * GR + r) * w->row_bytes +
                                     (size_t)b * src_block;
                memcpy(rec + 2 * r, blk, 2);                 /* d */
                if (q41) memcpy(rec + 32 + 2 * r, blk + 2, 2); /* m */
                const uint8_t *qs = blk + hdr;
                if (octets) {
                    for (int o = 0; o < (type == QWEN3C_TYPE_Q8_0 ? 4 : 2); o++)
                        memcpy(quants + 16 * (8 * o + r / 2) + 8 * (r % 2), qs + 8 * o, 8);
                    continue;
                }
                const int words = type == QWEN3C_TYPE_Q8_0 ? 8 : 4; /* 4-byte column quads */
                const uint32_t flip = type == QWEN3C_TYPE_Q8_0 ? q8_flip : 0; /* int8 -> w + 128 */
                for (int c = 0; c < words; c++) {
                    uint32_t quad;
                    memcpy(&quad, qs + 4 * c, 4);
                    quad ^= flip;
                    memcpy(quants + 64 * c + 4 * r, &quad, 4);
                }
            }
        }
    }
}

bool q8_0_has_min(const QTensor *w, int n_threads) {
    if (w->type != QWEN3C_TYPE_Q8_0) return false;
    const int64_t nb = w->cols / QK;
    int found = 0;
    n_threads = thread_limit(n_threads > 0 ? n_threads : cpu_count());
#pragma omp parallel for num_threads(n_threads) schedule(static) reduction(| : found)
    for (int64_t r = 0; r < w->rows; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        int any = 0;
        for (int64_t b = 0; b < nb; b++)
            for (int i = 0; i < QK; i++) any |= row[34 * b + 2 + i] == 0x80; /* after the block's d */
        found |= any;
    }
    return found != 0;
}

void q24_pack(const QTensor *w, void *dst, int n_threads) { pack_groups(w, dst, n_threads, 0x80808080u, 0); }
void q24_pack_signed(const QTensor *w, void *dst, int n_threads) { pack_groups(w, dst, n_threads, 0, 0); }
void q24_pack_mmla(const QTensor *w, void *dst, int n_threads) { pack_groups(w, dst, n_threads, 0, 1); }

/* ---------------------------------------------------------------------------------------
 * Public entry (tests, tools): packs W, then runs the same kernels as the forward pass
 * (the q24 family for Q8_0 / Q4_0 / Q4_1, q24k for Q4_K / Q5_K / Q6_K)
 * ------------------------------------------------------------------------------------- */
static bool q24_any_supported(int type) { return q24_path_supported(type) || q24k_path_supported(type); }

int qwen3c_matmul_q24(int type, const void *w, size_t w_size, const float *x, int64_t n_tok,
                      int64_t n, int64_t d, float *out, int n_threads, char *err, size_t err_size) {
    const Kernels *k;
    int rc = kernels_select(&k, err, err_size);
    if (rc != QWEN3C_OK) return rc;
    const int kq = q24k_path_supported(type);
    const QuantPath path = {"matmul_q24", "q24", q24_any_supported, k->q24->act_size, NULL,
                            k->q24->quantize, kq ? k->q24k->rows : k->q24->rows,
                            kq ? k->q24k->packed_size : k->q24->packed_size, kq ? k->q24k->pack : k->q24->pack};
    return quant_path_matmul(&path, type, w, w_size, x, n_tok, n, d, out, n_threads, err, err_size);
}
