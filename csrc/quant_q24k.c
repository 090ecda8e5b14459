/*
 * quant_q24k.c -- the default matmul for Q4_K / Q5_K / Q6_K weights: q24's 24-bit activation
 * blocks (quant_q24.c: x ~= d v per block of 32, v = 65536 h + 256 m + l in signed-byte
 * digits) times the K-quant super-blocks, repacked once at load into 16-row groups, with exact
 * integer dot products (vpdpbusd, or vpmaddubsw + vpmaddwd on AVX2 CPUs without AVX-VNNI).
 * The super-block scales and mins are applied per sub-block in float32, so the result stays
 * within float32 rounding of the float kernels in quant.c, as q24's does.
 *
 * The K-quants (quant.c has the file layouts): a super-block is 256 elements of one row.
 *   Q4_K / Q5_K: 8 sub-blocks of 32, element = (d sc_j) q - (dmin mn_j), q 4 / 5 bits,
 *                sc_j, mn_j 6 bits, d, dmin f16: a sub-block is exactly one activation block.
 *   Q6_K:        16 sub-blocks of 16, element = (d sc_j) (q - 32), q 6 bits, sc_j int8, d f16:
 *                an activation block holds two sub-blocks (BlockQ24.q6k holds the offset terms
 *                of its two halves).
 *
 * Packed weights (q24k_pack): rows in groups of 16 (a short last group padded with zero rows),
 * per group one record per super-block (256 columns). "Chunk" c (64 bytes) of a 32-column
 * block holds columns 4c..4c+3 of all 16 rows, byte 4r + i = row r, column 4c + i, so one
 * vpdpbusd against 4 broadcast activation bytes advances 16 rows by 4 columns (q24's layout).
 *   Q4_K (2368 bytes = 16 x 148):
 *     [0, 32)      f16 d[16]             row r's d at 2r
 *     [32, 64)     f16 dmin[16]
 *     [64, 192)    u8 sc[8][16]          sub-block j's scale of row r at 64 + 16 j + r
 *     [192, 320)   u8 mn[8][16]          its min at 192 + 16 j + r
 *     [320, 2368)  pair p < 4, chunk c < 8: 64 bytes at 320 + 512 p + 64 c, byte 4r + i =
 *                  qs[32p + 4c + i] of row r: low nibble = column 4c + i of sub-block 2p,
 *                  high nibble = the same column of sub-block 2p + 1
 *   Q5_K (2880 bytes = 16 x 180): as Q4_K, then
 *     [2368, 2880) chunk c < 8: 64 bytes, byte 4r + i = qh[4c + i] of row r: bit j = bit 4 of
 *                  column 4c + i of sub-block j
 *   Q6_K (3360 bytes = 16 x 210, the file's size):
 *     [0, 32)      f16 d[16]
 *     [32, 288)    int8 sc[16][16]       sub-block j's (16 elements) scale of row r at 32 + 16 j + r
 *     [288, 3360)  half h < 2 (128 elements = 4 blocks k), 1536 bytes each at 288 + 1536 h:
 *                  nibble plane q < 2, chunk c: 64 bytes at 512 q + 64 c, byte 4r + i =
 *                  ql[64h + 32q + 4c + i] of row r: low nibble = bits 0-3 of column 4c + i of
 *                  block k = q, high nibble = the same of block k = q + 2;
 *                  then the high plane, chunk c at 1024 + 64 c: byte 4r + i = qh[32h + 4c + i]:
 *                  bits 2k, 2k + 1 = bits 4-5 of column 4c + i of block k
 * 2.8% (Q4_K) / 2.3% (Q5_K) more bytes than the file, for the sub-block scales and mins as
 * whole bytes (the file packs them into 12 bytes of 6-bit fields); Q6_K the same bytes.
 *
 * The arithmetic, every tier in the same order (so all tiers agree bit for bit): per row, per
 * activation block (x quantized: dx, digits h, m, l, sums sh, sml, q6k, sx) the weight
 * integers u (Q4_K / Q5_K: q; Q6_K: q, offset 32) give exact int32 sums
 *     Q4_K / Q5_K:  ih = sum(u h), iml = 256 sum(u m) + sum(u l)           over the 32 columns
 *                   f = fma(float(ih), 65536, float(iml))
 *                   tot = fma(f, (d sc_j) dx, tot);  tot = fma(-(dmin mn_j), sx, tot)
 *     Q6_K, per half s < 2 of the block (sub-block j = 2 b + s, 16 columns):
 *                   ih = sum(u h) - 32 sh_s, iml = 256 sum(u m) + sum(u l) - 32 sml_s
 *                   (sh_s, sml_s: sh, sml over the half's 16 elements; BlockQ24.q6k has the negated
 *                   products with 32)
 *                   f = fma(float(ih), 65536, float(iml));  tot = fma(f, (d sc_j) dx, tot)
 * where d sc_j, dmin mn_j are exact float32 products (11-bit x 6/8-bit integers) and (d sc_j) dx
 * is rounded once. The int32 terms cannot overflow: |sum(u m)| <= 32 * 31 * 128 (Q5_K) and
 * 16 * 63 * 128 (Q6_K), so |iml| < 2^25.
 *
 * This file: the packing (shared by the tiers). The kernels are kernels/q24k_*.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#define QK_K 256 /* elements per super-block */
#define GR 16    /* rows per packed group */

/* Bytes of one packed record (16 rows x one super-block), 0 for other types; bytes of a
 * super-block in the file. */
static int record_bytes(int type) {
    switch (type) {
    case QWEN3C_TYPE_Q4_K: return 2368;
    case QWEN3C_TYPE_Q5_K: return 2880;
    case QWEN3C_TYPE_Q6_K: return 3360;
    default: return 0;
    }
}
static int file_block_bytes(int type) {
    return type == QWEN3C_TYPE_Q4_K ? 144 : type == QWEN3C_TYPE_Q5_K ? 176 : 210;
}

bool q24k_path_supported(int type) { return record_bytes(type) != 0; }

size_t q24k_packed_size(int type, int64_t rows, int64_t cols) {
    const int rb = record_bytes(type);
    if (rb == 0 || rows <= 0 || cols <= 0 || cols % QK_K) return 0;
    return (size_t)((rows + GR - 1) / GR) * (size_t)(cols / QK_K) * (size_t)rb;
}

/* 32 bytes src[0..32) of row r into 8 chunks of 64 bytes at dst: chunk c byte 4r + i = src[4c + i] */
static void scatter32(uint8_t *dst, const uint8_t *src, int r) {
    for (int c = 0; c < 8; c++) memcpy(dst + 64 * c + 4 * r, src + 4 * c, 4);
}

/* One row r's super-block blk (file layout) into the group's record rec. */
static void pack_row(int type, const uint8_t *blk, uint8_t *rec, int r) {
    if (type == QWEN3C_TYPE_Q6_K) {
        const uint8_t *ql = blk, *qh = blk + 128, *sc = blk + 192;
        memcpy(rec + 2 * r, blk + 208, 2); /* d */
        for (int j = 0; j < 16; j++) rec[32 + 16 * j + r] = sc[j];
        for (int h = 0; h < 2; h++) {
            uint8_t *half = rec + 288 + 1536 * h;
            scatter32(half, ql + 64 * h, r);
            scatter32(half + 512, ql + 64 * h + 32, r);
            scatter32(half + 1024, qh + 32 * h, r);
        }
        return;
    }
    memcpy(rec + 2 * r, blk, 2);           /* d */
    memcpy(rec + 32 + 2 * r, blk + 2, 2);  /* dmin */
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        k_scale_min(j, blk + 4, &sc, &mn);
        rec[64 + 16 * j + r] = (uint8_t)sc;
        rec[192 + 16 * j + r] = (uint8_t)mn;
    }
    const uint8_t *qs = blk + (type == QWEN3C_TYPE_Q5_K ? 48 : 16);
    for (int p = 0; p < 4; p++) scatter32(rec + 320 + 512 * p, qs + 32 * p, r);
    if (type == QWEN3C_TYPE_Q5_K) scatter32(rec + 2368, blk + 16, r); /* qh */
}

void q24k_pack(const QTensor *w, void *dst, int n_threads) {
    const int type = w->type, rb = record_bytes(type), fb = file_block_bytes(type);
    const int64_t nb = w->cols / QK_K, ng = (w->rows + GR - 1) / GR;
    n_threads = thread_limit(n_threads > 0 ? n_threads : cpu_count());
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t g = 0; g < ng; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *rec = (uint8_t *)dst + ((size_t)g * (size_t)nb + (size_t)b) * (size_t)rb;
            if ((g + 1) * GR > w->rows) memset(rec, 0, (size_t)rb); /* zero rows pad the last group */
            for (int r = 0; r < GR && g * GR + r < w->rows; r++)
                pack_row(type, (const uint8_t *)w->data + (size_t)(g * GR + r) * w->row_bytes +
                                   (size_t)b * (size_t)fb, rec, r);
        }
    }
}
