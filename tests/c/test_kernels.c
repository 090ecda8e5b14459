/*
 * test_kernels.c -- every kernel tier this build holds and this CPU runs, against the scalar
 * tier (the readable reference) on random data (csrc/kernels/kernels.h has the families):
 *
 *   matmul     every weight type (13), decode (1 token) and prefill (3, 7, 13 tokens: the 6- and
 *              12-token micro-kernels and their remainders), odd row counts, two 1024-column
 *              panels; each tier within float32 rounding of a float64 reference (1e-5 of sum |w x|)
 *   q24        the activation quantization digit for digit (d, sum x, h, m, l, sum h, 256 sum m
 *              + sum l, Q6_K's half sums), and the matmul from the same quantized activations
 *              BIT FOR BIT (integer sums, then the same float steps), Q8_0 / Q4_0 / Q4_1, on
 *              random and extreme data (quants -128 / 127 / nibbles 0 / 15 against full-scale
 *              activations, a product past the 8355711 clamp, zero / subnormal / huge / NaN /
 *              inf blocks), partial 16-row groups, 1-5 tokens; then within 1e-5 of the float path,
 *              and where a tier has it (float_types), the float32 prefill from the packed
 *              groups bit for bit with the tier's own float path
 *   q24k       Q4_K / Q5_K / Q6_K packed for the tier x q24 activation blocks, bit for bit with
 *              scalar and within 1e-5 of the float path; where a tier has it (float_types), the
 *              float32 prefill from the packed groups bit for bit with the tier's own float path
 *   q16, int8  (opt-in paths) each tier's quantization + matmul within float rounding of scalar's
 *   attention  scores and softmax(scores) @ v for 1-8 query rows, float32 and float16 caches,
 *              head_dim 64 / 128 (and 80: the scalar fallback), within float32 rounding
 *   nn         softmax, SwiGLU within float32 rounding (and exp's 2e-7)
 *   deltanet   Qwen3.5's causal conv1d (+ its state), l2norm, gated RMSNorm and the gated delta
 *              rule (recurrent: a full and a partial 32-column block; chunked: across a chunk
 *              boundary), outputs and states within float32 rounding of scalar's
 *   halves     float -> half of quant.c (hardware on x86 F16C / arm64): every half round-trips,
 *              ties between halves go to even, overflow to inf
 *
 * The arm64 build runs it under qemu-aarch64 with CPU models with and without dotprod / i8mm
 * (tools/run_tests.sh); QWEN3C_EXPECT_BEST=<tier> makes it also check that the CPU detection
 * picked that tier as the best.
 */
#include <math.h>

#include "kernels/q24.h"
#include "testutil.h"

/* ---- data ------------------------------------------------------------------------------ */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float uniform(void) { return (float)((double)(next_u64() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }
static uint16_t half_of(float f) {
    uint16_t h;
    float_to_half_row(&f, &h, 1);
    return h;
}

static void random_floats(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = uniform() * scale;
}

/* x's n rows of cols floats at a stride of cols + GEMM_X_PAD (the pads NaN: never read) */
static float *padded_rows(const float *x, int n, int64_t cols) {
    float *xp = malloc(sizeof(float) * (size_t)n * (size_t)(cols + GEMM_X_PAD));
    for (int t = 0; t < n; t++)
        for (int64_t i = 0; i < cols + GEMM_X_PAD; i++) xp[t * (cols + GEMM_X_PAD) + i] = i < cols ? x[t * cols + i] : NAN;
    return xp;
}

/* offsets of the f16 scales in one block, which must be finite (the rest is random bytes) */
static int scale_offsets(int type, int *off) {
    switch (type) {
    case QWEN3C_TYPE_Q8_0: case QWEN3C_TYPE_Q4_0: case QWEN3C_TYPE_Q5_0: off[0] = 0; return 1;
    case QWEN3C_TYPE_Q4_1: case QWEN3C_TYPE_Q5_1: case QWEN3C_TYPE_Q4_K: case QWEN3C_TYPE_Q5_K:
        off[0] = 0, off[1] = 2; return 2;
    case QWEN3C_TYPE_Q6_K: off[0] = 208; return 1;
    case QWEN3C_TYPE_Q2_K: off[0] = 80, off[1] = 82; return 2;
    case QWEN3C_TYPE_Q3_K: off[0] = 108; return 1;
    default: return 0;
    }
}

/* A random (rows, cols) weight matrix of `type` (malloc'ed). */
static uint8_t *random_weights(int type, int64_t rows, int64_t cols, size_t *row_bytes) {
    const int bs = qwen3c_type_block_size(type);
    const int64_t rb = qwen3c_type_row_size(type, cols), ts = qwen3c_type_row_size(type, bs);
    uint8_t *w = malloc((size_t)(rb * rows));
    *row_bytes = (size_t)rb;
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = w + r * rb;
        for (int64_t j = 0; j < cols / bs; j++) {
            uint8_t *blk = row + j * ts;
            if (type == QWEN3C_TYPE_F32) {
                const float f = uniform();
                memcpy(blk, &f, 4);
                continue;
            }
            if (type == QWEN3C_TYPE_F16 || type == QWEN3C_TYPE_BF16) {
                const float f = uniform();
                uint32_t u;
                memcpy(&u, &f, 4);
                const uint16_t h = type == QWEN3C_TYPE_F16 ? half_of(f) : (uint16_t)(u >> 16);
                memcpy(blk, &h, 2);
                continue;
            }
            for (int64_t i = 0; i < ts; i++) blk[i] = (uint8_t)next_u64();
            int off[2];
            const int ns = scale_offsets(type, off);
            for (int k = 0; k < ns; k++) {
                const uint16_t h = half_of((0.002f + 0.02f * fabsf(uniform())) * (uniform() < 0 ? -1.0f : 1.0f));
                memcpy(blk + off[k], &h, 2);
            }
        }
    }
    return w;
}

/* The float64 reference out[t][r] and the scale sum |w| |x| for error bounds. */
static void reference(int type, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t cols, const float *x,
                      int n_tok, double *ref, double *mag) {
    float *row = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        dequantize_row(type, w + r * row_bytes, row, cols);
        for (int t = 0; t < n_tok; t++) {
            double s = 0, m = 0;
            for (int64_t i = 0; i < cols; i++) {
                s += (double)row[i] * x[t * cols + i];
                m += fabs((double)row[i] * x[t * cols + i]);
            }
            ref[t * rows + r] = s;
            mag[t * rows + r] = m;
        }
    }
    free(row);
}

static int close_to(double got, double want, double mag, double tol) {
    return fabs(got - want) <= tol * mag + 1e-30;
}

static int same_float(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0; }

static const Kernels *SCALAR;

/* ---- matmul (float32 activations) -------------------------------------------------------- */
static const int ALL_TYPES[] = {QWEN3C_TYPE_F32, QWEN3C_TYPE_F16, QWEN3C_TYPE_BF16, QWEN3C_TYPE_Q8_0,
                                QWEN3C_TYPE_Q4_0, QWEN3C_TYPE_Q4_1, QWEN3C_TYPE_Q5_0, QWEN3C_TYPE_Q5_1,
                                QWEN3C_TYPE_Q4_K, QWEN3C_TYPE_Q5_K, QWEN3C_TYPE_Q6_K, QWEN3C_TYPE_Q2_K,
                                QWEN3C_TYPE_Q3_K};

static void test_matmul(const Kernels *k) {
    for (size_t ti = 0; ti < sizeof ALL_TYPES / sizeof ALL_TYPES[0]; ti++) {
        const int type = ALL_TYPES[ti], bs = qwen3c_type_block_size(type);
        /* two panels of TILE_K = 1024 columns (five 256-column chunks of the AVX-512 GEMM); float
         * types also a ragged tail */
        const int64_t rows = 37, cols = bs == 1 ? 1283 : 1280;
        size_t rb;
        uint8_t *w = random_weights(type, rows, cols, &rb);
        const QTensor qt = {w, type, rows, cols, rb, NULL, false};
        const int toks[] = {1, 3, 7, 13}; /* decode; the 6- and 12-token micro-kernels and remainders */
        for (int ni = 0; ni < 4; ni++) {
            const int n_tok = toks[ni];
            float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
            float *out = malloc(sizeof(float) * (size_t)(n_tok * rows));
            double *ref = malloc(sizeof(double) * (size_t)(n_tok * rows)), *mag = malloc(sizeof(double) * (size_t)(n_tok * rows));
            random_floats(x, n_tok * cols, 1.0f);
            reference(type, w, rb, rows, cols, x, n_tok, ref, mag);
            /* in two calls, as threads split rows: [0, 20) and [20, 37) */
            k->matmul->rows(out, rows, x, n_tok, &qt, 0, 20);
            k->matmul->rows(out, rows, x, n_tok, &qt, 20, rows);
            int bad = 0;
            for (int64_t i = 0; i < n_tok * rows; i++) {
                if (!close_to(out[i], ref[i], mag[i], 1e-5)) {
                    if (bad++ < 3)
                        fprintf(stderr, "  matmul %s %s n_tok %d [%lld]: %.9g, reference %.9g (|w x| %.3g)\n",
                                k->tier, qwen3c_type_name(type), n_tok, (long long)i, out[i], ref[i], mag[i]);
                }
            }
            CHECK(bad == 0);
            free(x), free(out), free(ref), free(mag);
        }
        free(w);
    }
}

/* ---- q24 --------------------------------------------------------------------------------- */
static const int Q24_TYPES[] = {QWEN3C_TYPE_Q8_0, QWEN3C_TYPE_Q4_0, QWEN3C_TYPE_Q4_1};

/* every field of two activation blocks equal (sum x too: every tier adds it in one order) */
static int same_block(const BlockQ24 *a, const BlockQ24 *b) {
    return same_float(a->d, b->d) && same_float(a->sx, b->sx) && a->sh == b->sh && a->sml == b->sml &&
           !memcmp(a->q6k, b->q6k, sizeof a->q6k) && !memcmp(a->h, b->h, QK) && !memcmp(a->m, b->m, QK) &&
           !memcmp(a->l, b->l, QK);
}

/* W packed for the scalar tier (ws) and for tier k (wt), from ws's data: q24 or q24k by type
 * (free with os_aligned_free) */
static void pack_both(const Kernels *k, QTensor *ws, QTensor *wt) {
    *wt = *ws;
    void *ps = os_aligned_alloc(64, q24_any_packed_size(SCALAR, ws->type, ws->rows, ws->cols) + 64);
    void *pt = os_aligned_alloc(64, q24_any_packed_size(k, ws->type, ws->rows, ws->cols) + 64);
    q24_any_pack(SCALAR, ws, ps, 1);
    q24_any_pack(k, wt, pt, 1);
    ws->packed = ps, wt->packed = pt;
    ws->q8_min = wt->q8_min = q8_0_has_min(ws, 1);
}

/* x (n_tok, cols) -> pack W for the tier, quantize x with scalar and the tier (digit for digit),
 * and the tier's matmul from each quantization equals scalar's bit for bit. exact_x: compare
 * with the float path too (finite, non-extreme data). */
static void q24_case(const Kernels *k, int type, const uint8_t *w, size_t rb, int64_t rows, int64_t cols,
                     const float *x, int n_tok, int exact_x, const char *what) {
    const int64_t nb = cols / QK;
    const size_t act = q24_act_bytes(n_tok, cols);
    BlockQ24 *xs = os_aligned_alloc(64, act), *xt = os_aligned_alloc(64, act);
    SCALAR->q24->quantize(x, 0, n_tok * nb, xs);
    k->q24->quantize(x, 0, 5 < n_tok * nb ? 5 : n_tok * nb, xt); /* in two calls, as threads do */
    if (n_tok * nb > 5) k->q24->quantize(x, 5, n_tok * nb, xt);
    int bad = 0;
    for (int64_t i = 0; i < n_tok * nb; i++) {
        if (!same_block(&xs[i], &xt[i]) && bad++ < 3)
            fprintf(stderr, "  q24 quantize %s %s block %lld: d %g/%g sh %d/%d sml %d/%d sx %g/%g\n", k->tier,
                    what, (long long)i, xs[i].d, xt[i].d, xs[i].sh, xt[i].sh, xs[i].sml, xt[i].sml, xs[i].sx, xt[i].sx);
    }
    CHECK(bad == 0);
    QTensor ws = {w, type, rows, cols, rb, NULL, false}, wt;
    pack_both(k, &ws, &wt);
    float *os = malloc(sizeof(float) * (size_t)(n_tok * rows)), *ot = malloc(sizeof(float) * (size_t)(n_tok * rows));
    for (int from = 0; from < 2; from++) { /* the tier's rows on scalar's quantization, then on its own */
        const BlockQ24 *xq = from ? xt : xs;
        SCALAR->q24->rows(os, rows, xq, n_tok, &ws, 0, rows);
        k->q24->rows(ot, rows, xq, n_tok, &wt, 0, 16);  /* 16-row units, as threads split them */
        k->q24->rows(ot, rows, xq, n_tok, &wt, 16, rows);
        bad = 0;
        for (int64_t i = 0; i < n_tok * rows; i++)
            if (!same_float(os[i], ot[i]) && bad++ < 3)
                fprintf(stderr, "  q24 rows %s %s %s n_tok %d [%lld]: %.9g, scalar %.9g\n", k->tier,
                        qwen3c_type_name(type), what, n_tok, (long long)i, ot[i], os[i]);
        CHECK(bad == 0);
    }
    if (exact_x) { /* and within float32 rounding of the float path */
        double *ref = malloc(sizeof(double) * (size_t)(n_tok * rows)), *mag = malloc(sizeof(double) * (size_t)(n_tok * rows));
        reference(type, w, rb, rows, cols, x, n_tok, ref, mag);
        bad = 0;
        for (int64_t i = 0; i < n_tok * rows; i++)
            if (!close_to(ot[i], ref[i], mag[i], 1e-5) && bad++ < 3)
                fprintf(stderr, "  q24 %s %s n_tok %d [%lld]: %.9g, reference %.9g\n", k->tier,
                        qwen3c_type_name(type), n_tok, (long long)i, ot[i], ref[i]);
        CHECK(bad == 0);
        free(ref), free(mag);
        if (n_tok > 1 && (k->q24->float_types >> type & 1u)) { /* the float32 prefill from the packed groups */
            float *of = malloc(sizeof(float) * (size_t)(n_tok * rows));
            k->matmul->rows(of, rows, x, n_tok, &ws, 0, rows); /* the float path, from the file layout */
            /* rows 0..15 from x's rows padded as the forward pass pads them, the rest from x */
            float *xp = padded_rows(x, n_tok, cols);
            k->q24->rows_float(ot, rows, xp, cols + GEMM_X_PAD, n_tok, &wt, 0, 16);
            k->q24->rows_float(ot, rows, x, cols, n_tok, &wt, 16, rows);
            free(xp);
            bad = 0;
            for (int64_t i = 0; i < n_tok * rows; i++)
                if (!same_float(of[i], ot[i]) && bad++ < 3)
                    fprintf(stderr, "  q24 rows_float %s %s n_tok %d [%lld]: %.9g, float path %.9g\n", k->tier,
                            qwen3c_type_name(type), n_tok, (long long)i, ot[i], of[i]);
            CHECK(bad == 0);
            free(of);
        }
    }
    free(os), free(ot);
    os_aligned_free((void *)ws.packed), os_aligned_free((void *)wt.packed), os_aligned_free(xs), os_aligned_free(xt);
}

/* A copy of Q8_0 weights w with every -128 made -127 (QTensor.q8_min unset: the AVX2 kernels
 * without AVX-VNNI then take their signed byte products) */
static uint8_t *q8_0_without_min(const uint8_t *w, size_t rb, int64_t rows, int64_t cols) {
    uint8_t *c = malloc(rb * (size_t)rows);
    memcpy(c, w, rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < cols / QK; b++)
            for (int i = 0; i < QK; i++) {
                uint8_t *q = c + (size_t)r * rb + (size_t)b * 34 + 2 + i;
                if (*q == 0x80) *q = 0x81;
            }
    return c;
}

static void test_q24(const Kernels *k) {
    const int64_t rows = 40, cols = 256; /* 2.5 groups of 16 rows, 8 blocks */
    for (size_t ti = 0; ti < 3; ti++) {
        const int type = Q24_TYPES[ti];
        size_t rb;
        uint8_t *w = random_weights(type, rows, cols, &rb);
        for (int n_tok = 1; n_tok <= 5; n_tok++) {
            float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
            random_floats(x, n_tok * cols, 3.0f);
            q24_case(k, type, w, rb, rows, cols, x, n_tok, 1, "random");
            if (type == QWEN3C_TYPE_Q8_0) {
                uint8_t *w7 = q8_0_without_min(w, rb, rows, cols);
                q24_case(k, type, w7, rb, rows, cols, x, n_tok, 1, "random, no -128");
                free(w7);
            }
            free(x);
        }
        /* extreme weights: every quant -128 / 127 (Q8_0) or nibble 0 / 15, against full-scale x */
        const int ts = (int)qwen3c_type_row_size(type, QK);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t b = 0; b < cols / QK; b++) {
                uint8_t *blk = w + r * rb + b * ts;
                const int hdr = type == QWEN3C_TYPE_Q4_1 ? 4 : 2;
                memset(blk + hdr, (r + b) % 2 ? (type == QWEN3C_TYPE_Q8_0 ? 0x80 : 0x00) : (type == QWEN3C_TYPE_Q8_0 ? 0x7f : 0xff), (size_t)(ts - hdr));
            }
        const int n_tok = 3;
        float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
        for (int64_t i = 0; i < n_tok * cols; i++) x[i] = (i % 3 == 0 ? -1.0f : 1.0f) * (i % 7 == 0 ? 1e3f : 999.9f);
        q24_case(k, type, w, rb, rows, cols, x, n_tok, 1, "extreme weights");
        if (type == QWEN3C_TYPE_Q8_0) { /* -127 / 127 */
            uint8_t *w7 = q8_0_without_min(w, rb, rows, cols);
            q24_case(k, type, w7, rb, rows, cols, x, n_tok, 1, "extreme weights, no -128");
            free(w7);
        }
        /* special blocks: the clamp (x / d rounds past 8355711), zero, 1e-45, subnormal,
         * tiny-normal, huge, NaN, +inf, -inf */
        random_floats(x, n_tok * cols, 1.0f);
        float *b = x;
        for (int i = 0; i < 1000000; i++) { /* block 0: a max |x| whose x * (1 / d) rounds past VMAX */
            const float a = 1.0f + fabsf(uniform()), d = a / (float)VMAX, id = 1.0f / d;
            if (rintf(a * id) > (float)VMAX) {
                b[0] = a, b[1] = -a;
                break;
            }
        }
        for (int j = 0; j < QK; j++) b[QK + j] = 0.0f;
        for (int j = 0; j < QK; j++) b[2 * QK + j] = j == 5 ? 1e-45f : 0.0f;
        for (int j = 0; j < QK; j++) b[3 * QK + j] = uniform() * 1e-39f;
        for (int j = 0; j < QK; j++) b[4 * QK + j] = uniform() * 1e-30f;
        for (int j = 0; j < QK; j++) b[5 * QK + j] = uniform() * 3e38f;
        b[6 * QK + 3] = NAN, b[7 * QK + 9] = INFINITY, b[cols + 2 * QK + 1] = -INFINITY;
        for (int j = 0; j < QK; j++) b[cols + 3 * QK + j] = (float)VMAX * (j % 2 ? 1.0f : -1.0f);
        q24_case(k, type, w, rb, rows, cols, x, n_tok, 0, "special blocks");
        free(x);
        free(w);
    }
}

/* ---- q24k: q24's activation blocks x packed K-quants --------------------------------------- */
static void test_q24k(const Kernels *k) {
    const int types[] = {QWEN3C_TYPE_Q4_K, QWEN3C_TYPE_Q5_K, QWEN3C_TYPE_Q6_K};
    const int64_t rows = 40, cols = 512; /* 2.5 groups of 16 rows, 2 super-blocks */
    for (int ti = 0; ti < 3; ti++) {
        const int type = types[ti];
        size_t rb;
        uint8_t *w = random_weights(type, rows, cols, &rb);
        QTensor ws = {w, type, rows, cols, rb, NULL, false}, wt;
        pack_both(k, &ws, &wt);
        for (int n_tok = 1; n_tok <= 5; n_tok++) {
            float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
            random_floats(x, n_tok * cols, 3.0f);
            if (n_tok == 3) x[40] = 1e-39f, x[300] = -2e30f; /* a subnormal, a huge block */
            BlockQ24 *xq = os_aligned_alloc(64, q24_act_bytes(n_tok, cols));
            k->q24->quantize(x, 0, n_tok * cols / QK, xq); /* (bit-identical to scalar's: test_q24) */
            float *os = malloc(sizeof(float) * (size_t)(n_tok * rows)), *ot = malloc(sizeof(float) * (size_t)(n_tok * rows));
            double *ref = malloc(sizeof(double) * (size_t)(n_tok * rows)), *mag = malloc(sizeof(double) * (size_t)(n_tok * rows));
            reference(type, w, rb, rows, cols, x, n_tok, ref, mag);
            SCALAR->q24k->rows(os, rows, xq, n_tok, &ws, 0, rows);
            k->q24k->rows(ot, rows, xq, n_tok, &wt, 0, 16);
            k->q24k->rows(ot, rows, xq, n_tok, &wt, 16, rows);
            int bad = 0;
            for (int64_t i = 0; i < n_tok * rows; i++)
                if ((!same_float(os[i], ot[i]) || (n_tok != 3 && !close_to(ot[i], ref[i], mag[i], 1e-5))) && bad++ < 3)
                    fprintf(stderr, "  q24k %s %s n_tok %d [%lld]: %.9g, scalar %.9g, reference %.9g\n", k->tier,
                            qwen3c_type_name(type), n_tok, (long long)i, ot[i], os[i], ref[i]);
            CHECK(bad == 0);
            free(x), free(os), free(ot), free(ref), free(mag);
            os_aligned_free(xq);
        }
        if (k->q24k->float_types >> type & 1u) /* the float32 prefill from the packed groups */
            for (int n_tok = 12; n_tok <= 25; n_tok += 13) {
                float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
                random_floats(x, n_tok * cols, 3.0f);
                float *of = malloc(sizeof(float) * (size_t)(n_tok * rows)), *ot = malloc(sizeof(float) * (size_t)(n_tok * rows));
                double *ref = malloc(sizeof(double) * (size_t)(n_tok * rows)), *mag = malloc(sizeof(double) * (size_t)(n_tok * rows));
                reference(type, w, rb, rows, cols, x, n_tok, ref, mag);
                k->matmul->rows(of, rows, x, n_tok, &ws, 0, rows); /* the float path, from the file layout */
                float *xp = padded_rows(x, n_tok, cols); /* rows 0..15 from padded rows, as the forward pass */
                k->q24k->rows_float(ot, rows, xp, cols + GEMM_X_PAD, n_tok, &wt, 0, 16);
                k->q24k->rows_float(ot, rows, x, cols, n_tok, &wt, 16, rows);
                free(xp);
                int bad = 0;
                for (int64_t i = 0; i < n_tok * rows; i++)
                    if ((!same_float(of[i], ot[i]) || !close_to(ot[i], ref[i], mag[i], 1e-5)) && bad++ < 3)
                        fprintf(stderr, "  q24k rows_float %s %s n_tok %d [%lld]: %.9g, float path %.9g, reference %.9g\n",
                                k->tier, qwen3c_type_name(type), n_tok, (long long)i, ot[i], of[i], ref[i]);
                CHECK(bad == 0);
                free(x), free(of), free(ot), free(ref), free(mag);
            }
        os_aligned_free((void *)ws.packed), os_aligned_free((void *)wt.packed);
        free(w);
    }
}

/* ---- q16 / int8 (opt-in paths) -------------------------------------------------------------- */
static void test_actquant(const Kernels *k, const ActQuantKernels *kt, const ActQuantKernels *ks, const char *path) {
    const int64_t rows = 37, cols = 1024;
    for (size_t ti = 0; ti < 3; ti++) {
        const int type = Q24_TYPES[ti];
        size_t rb;
        uint8_t *w = random_weights(type, rows, cols, &rb);
        const QTensor qt = {w, type, rows, cols, rb, NULL, false};
        const int n_tok = 5;
        float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
        random_floats(x, n_tok * cols, 2.0f);
        double *ref = malloc(sizeof(double) * (size_t)(n_tok * rows)), *mag = malloc(sizeof(double) * (size_t)(n_tok * rows));
        reference(type, w, rb, rows, cols, x, n_tok, ref, mag);
        void *xs = os_aligned_alloc(64, ks->act_size(n_tok, cols) + 64), *xt = os_aligned_alloc(64, kt->act_size(n_tok, cols) + 64);
        ks->quantize(x, n_tok, cols, xs);
        kt->quantize(x, n_tok, cols, xt);
        float *os = malloc(sizeof(float) * (size_t)(n_tok * rows)), *ot = malloc(sizeof(float) * (size_t)(n_tok * rows));
        ks->rows(os, rows, xs, n_tok, &qt, 0, rows);
        kt->rows(ot, rows, xt, n_tok, &qt, 0, 16);
        kt->rows(ot, rows, xt, n_tok, &qt, 16, rows);
        int bad = 0;
        for (int64_t i = 0; i < n_tok * rows; i++)
            if (!close_to(ot[i], os[i], mag[i], 1e-5) && bad++ < 3)
                fprintf(stderr, "  %s %s %s [%lld]: %.9g, scalar %.9g\n", path, k->tier, qwen3c_type_name(type),
                        (long long)i, ot[i], os[i]);
        CHECK(bad == 0);
        free(x), free(ref), free(mag), free(os), free(ot), free(w);
        os_aligned_free(xs), os_aligned_free(xt);
    }
}

/* ---- attention --------------------------------------------------------------------------- */
static void test_attention(const Kernels *k) {
    const int hds[] = {64, 128, 80}, lens[] = {1, 5, 16, 17, 40, 100};
    for (int hi = 0; hi < 3; hi++)
        for (int f16 = 0; f16 < 2; f16++)
            for (int li = 0; li < 6; li++) {
                const int HD = hds[hi], n = lens[li], C = (n + KV_TILE - 1) / KV_TILE * KV_TILE, nr = 1 + (hi * 6 + li + f16) % 8;
                const size_t esz = f16 ? 2 : 4;
                float q[ATT_ROWS][128], kf[128 * 112], vf[112 * 128];
                uint8_t keys[128 * 112 * 4], values[112 * 128 * 4];
                const float *qr[ATT_ROWS];
                for (int r = 0; r < nr; r++) random_floats(q[r], HD, 1.0f), qr[r] = q[r];
                random_floats(kf, (int64_t)C * HD, 1.0f);
                random_floats(vf, (int64_t)C * HD, 1.0f);
                if (f16) {
                    float_to_half_row(kf, (uint16_t *)(void *)keys, (int64_t)C * HD);
                    float_to_half_row(vf, (uint16_t *)(void *)values, (int64_t)C * HD);
                    dequantize_row(QWEN3C_TYPE_F16, keys, kf, (int64_t)C * HD); /* the values the kernels see */
                    dequantize_row(QWEN3C_TYPE_F16, values, vf, (int64_t)C * HD);
                } else {
                    memcpy(keys, kf, (size_t)C * HD * esz);
                    memcpy(values, vf, (size_t)C * HD * esz);
                }
                const float scale = 1.0f / sqrtf((float)HD);
                static float as[ATT_ROWS][112], at[ATT_ROWS][112];
                SCALAR->attention->scores(nr, qr, keys, f16, HD, n, scale, &as[0][0], 112);
                k->attention->scores(nr, qr, keys, f16, HD, n, scale, &at[0][0], 112);
                int bad = 0;
                for (int r = 0; r < nr; r++)
                    for (int s = 0; s < n; s++) {
                        /* keys are tiles (HD, 16): element i of position s at (s/16) HD 16 + 16 i + s%16 */
                        double want = 0, mag = 0;
                        for (int i = 0; i < HD; i++) {
                            const double p = (double)q[r][i] * kf[(s / KV_TILE) * HD * KV_TILE + i * KV_TILE + s % KV_TILE];
                            want += p, mag += fabs(p);
                        }
                        want *= scale, mag *= scale;
                        if ((!close_to(at[r][s], want, mag, 1e-5) || !close_to(as[r][s], want, mag, 1e-5)) && bad++ < 3)
                            fprintf(stderr, "  scores %s HD %d f16 %d n %d [%d][%d]: %.9g, scalar %.9g, reference %.9g\n",
                                    k->tier, HD, f16, n, r, s, at[r][s], as[r][s], want);
                    }
                CHECK(bad == 0);
                /* weighted sums: softmax-like weights, zero past each row's own length */
                int len[ATT_ROWS];
                for (int r = 0; r < nr; r++) {
                    len[r] = r == 0 ? n : 1 + (int)(next_u64() % (uint64_t)n);
                    for (int s = 0; s < C; s++) as[r][s] = s < len[r] ? fabsf(uniform()) / (float)n : 0.0f;
                }
                float os[ATT_ROWS][128], ot[ATT_ROWS][128];
                float *orows[ATT_ROWS], *trows[ATT_ROWS];
                for (int r = 0; r < nr; r++) orows[r] = os[r], trows[r] = ot[r];
                SCALAR->attention->weighted_sum(nr, orows, &as[0][0], 112, values, f16, len, HD, 0);
                k->attention->weighted_sum(nr, trows, &as[0][0], 112, values, f16, len, HD, 0);
                /* the same sums in two calls (a KV cache's chunks: positions [0, s1), then [s1, n)
                 * with accumulate): the very same bits, on every tier */
                if (n > 16) {
                    const int s1 = 16 * (1 + (int)(next_u64() % (uint64_t)((n - 1) / 16)));
                    float ua[ATT_ROWS][128], ub[ATT_ROWS][128];
                    float *arows[ATT_ROWS], *brows[ATT_ROWS];
                    int l1[ATT_ROWS], l2[ATT_ROWS];
                    for (int r = 0; r < nr; r++) {
                        arows[r] = ua[r], brows[r] = ub[r];
                        l1[r] = len[r] < s1 ? len[r] : s1;
                        l2[r] = len[r] > s1 ? len[r] - s1 : 0;
                    }
                    const uint8_t *v2 = values + (size_t)s1 * HD * esz;
                    SCALAR->attention->weighted_sum(nr, arows, &as[0][0], 112, values, f16, l1, HD, 0);
                    SCALAR->attention->weighted_sum(nr, arows, &as[0][s1], 112, v2, f16, l2, HD, 1);
                    k->attention->weighted_sum(nr, brows, &as[0][0], 112, values, f16, l1, HD, 0);
                    k->attention->weighted_sum(nr, brows, &as[0][s1], 112, v2, f16, l2, HD, 1);
                    bad = 0;
                    for (int r = 0; r < nr; r++)
                        if ((memcmp(ua[r], os[r], (size_t)HD * 4) || memcmp(ub[r], ot[r], (size_t)HD * 4)) && bad++ < 3)
                            fprintf(stderr, "  weighted_sum %s HD %d f16 %d n %d row %d: in two calls (split at %d) not "
                                    "the bits of one\n", k->tier, HD, f16, n, r, s1);
                    CHECK(bad == 0);
                }
                bad = 0;
                for (int r = 0; r < nr; r++)
                    for (int i = 0; i < HD; i++) {
                        double want = 0, mag = 0;
                        for (int s = 0; s < len[r]; s++) {
                            const double p = (double)as[r][s] * vf[s * HD + i];
                            want += p, mag += fabs(p);
                        }
                        if ((!close_to(ot[r][i], want, mag, 1e-5) || !close_to(os[r][i], want, mag, 1e-5)) && bad++ < 3)
                            fprintf(stderr, "  weighted_sum %s HD %d f16 %d n %d [%d][%d]: %.9g, scalar %.9g, reference %.9g\n",
                                    k->tier, HD, f16, n, r, i, ot[r][i], os[r][i], want);
                    }
                CHECK(bad == 0);
            }
}

/* ---- nn ---------------------------------------------------------------------------------- */
static void test_nn(const Kernels *k) {
    const int ns[] = {1, 7, 8, 33, 1000};
    for (int ni = 0; ni < 5; ni++) {
        const int n = ns[ni];
        float a[1000], b[1000], g[1000], u[1000];
        random_floats(a, n, 20.0f);
        memcpy(b, a, sizeof(float) * (size_t)n);
        SCALAR->nn->softmax(a, n);
        k->nn->softmax(b, n);
        int bad = 0;
        for (int i = 0; i < n; i++)
            if (!(fabsf(a[i] - b[i]) <= 2e-6f * a[i] + 1e-30f) && bad++ < 3)
                fprintf(stderr, "  softmax %s n %d [%d]: %.9g, scalar %.9g\n", k->tier, n, i, b[i], a[i]);
        CHECK(bad == 0);
        random_floats(g, n, 12.0f);
        random_floats(u, n, 2.0f);
        memcpy(a, g, sizeof(float) * (size_t)n);
        memcpy(b, g, sizeof(float) * (size_t)n);
        SCALAR->nn->swiglu(a, u, n);
        k->nn->swiglu(b, u, n);
        bad = 0;
        for (int i = 0; i < n; i++) {
            const double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
            if ((!close_to(b[i], want, fabs(want), 1e-6) || !close_to(a[i], want, fabs(want), 1e-6)) && bad++ < 3)
                fprintf(stderr, "  swiglu %s n %d [%d]: %.9g, scalar %.9g, reference %.9g\n", k->tier, n, i, b[i], a[i], want);
        }
        CHECK(bad == 0);
    }
    float x[4] = {NAN, 1.0f, 2.0f, -INFINITY}; /* NaN / -inf must not crash or trap */
    k->nn->softmax(x, 4);
}

/* ---- deltanet ---------------------------------------------------------------------------- */
/* Count the elements of got that differ from want by more than tol * (max |want| + 1e-30). */
static int count_far(const char *what, const char *tier, const float *got, const float *want, size_t n, double tol) {
    double mag = 1e-30; /* (not fmax: gcc 12 for aarch64 crashes vectorizing that reduction) */
    for (size_t i = 0; i < n; i++) mag = fabs((double)want[i]) > mag ? fabs((double)want[i]) : mag;
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * mag) && bad++ < 3)
            fprintf(stderr, "  %s %s [%zu]: %.9g, scalar %.9g\n", what, tier, i, got[i], want[i]);
    return bad;
}

static void unit_rows(float *x, int rows, int n, float scale) { /* l2-normed rows, times scale */
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
        for (int i = 0; i < n; i++) x[r * n + i] = (float)(x[r * n + i] / sqrt(ss) * scale);
    }
}

static void test_deltanet(const Kernels *k) {
    const DeltaNetKernels *ks = SCALAR->deltanet, *kt = k->deltanet;
    /* causal conv1d + SiLU: 300 channels (no multiple of a vector), K 4, 5 tokens, all channels
     * and a [17, 250) share (as one thread's) */
    enum { CD = 300, K = 4, NT = 5 };
    static float x[NT * CD], w[K * CD], st0[(K - 1) * CD], st_s[(K - 1) * CD], st_t[(K - 1) * CD];
    static float out_s[NT * CD], out_t[NT * CD];
    random_floats(x, NT * CD, 2.0f);
    random_floats(w, K * CD, 0.5f);
    random_floats(st0, (K - 1) * CD, 2.0f);
    const int ranges[2][2] = {{0, CD}, {17, 250}};
    for (int r = 0; r < 2; r++) {
        memcpy(st_s, st0, sizeof st0);
        memcpy(st_t, st0, sizeof st0);
        memset(out_s, 0, sizeof out_s);
        memset(out_t, 0, sizeof out_t);
        ks->causal_conv1d_silu(out_s, x, st_s, w, NT, K, CD, ranges[r][0], ranges[r][1]);
        kt->causal_conv1d_silu(out_t, x, st_t, w, NT, K, CD, ranges[r][0], ranges[r][1]);
        CHECK(count_far("conv1d", k->tier, out_t, out_s, NT * CD, 1e-6) == 0);
        CHECK(memcmp(st_s, st_t, sizeof st_s) == 0); /* the state is moved, not computed */
    }
    /* l2norm and the gated RMSNorm over one head (128, and 37: a remainder) */
    for (int n = 37; n <= 128; n += 91) {
        float a[128], b[128], gate[128], weight[128];
        random_floats(a, n, 3.0f);
        random_floats(gate, n, 6.0f);
        random_floats(weight, n, 1.0f);
        memcpy(b, a, sizeof(float) * (size_t)n);
        ks->l2norm_scaled(a, n, 0.125f);
        kt->l2norm_scaled(b, n, 0.125f);
        CHECK(count_far("l2norm", k->tier, b, a, (size_t)n, 1e-6) == 0);
        random_floats(a, n, 3.0f);
        memcpy(b, a, sizeof(float) * (size_t)n);
        ks->rmsnorm_gated(a, gate, weight, n, 1e-6f);
        kt->rmsnorm_gated(b, gate, weight, n, 1e-6f);
        CHECK(count_far("rmsnorm_gated", k->tier, b, a, (size_t)n, 1e-6) == 0);
    }
    /* the gated delta rule: HK 64, HV 48 (a full 32-column block and a partial one), 70 tokens
     * (the chunked form: a whole chunk of 64 and a partial one); both forms, state and output */
    enum { HK = 64, HV = 48, N = 70 };
    float *q = malloc(sizeof(float) * N * HK), *kk = malloc(sizeof(float) * N * HK);
    float *v = malloc(sizeof(float) * N * HV), *g = malloc(sizeof(float) * N), *beta = malloc(sizeof(float) * N);
    float *S0 = malloc(sizeof(float) * HK * HV), *Ss = malloc(sizeof(float) * HK * HV), *St = malloc(sizeof(float) * HK * HV);
    float *os = malloc(sizeof(float) * N * HV), *ot = malloc(sizeof(float) * N * HV);
    float *scratch = malloc(sizeof(float) * delta_chunk_scratch(HK, HV));
    CHECK(q && kk && v && g && beta && S0 && Ss && St && os && ot && scratch);
    random_floats(q, N * HK, 1.0f);
    random_floats(kk, N * HK, 1.0f);
    unit_rows(q, N, HK, 0.125f);
    unit_rows(kk, N, HK, 1.0f);
    random_floats(v, N * HV, 1.0f);
    random_floats(S0, HK * HV, 0.5f);
    for (int t = 0; t < N; t++) {
        g[t] = -0.5f * (uniform() + 1.0f);           /* log decay in (-1, 0] */
        beta[t] = 0.05f + 0.45f * (uniform() + 1.0f); /* in (0.05, 0.95) */
    }
    for (int chunked = 0; chunked < 2; chunked++) {
        memcpy(Ss, S0, sizeof(float) * HK * HV);
        memcpy(St, S0, sizeof(float) * HK * HV);
        if (chunked) {
            ks->gated_delta_rule_chunked(Ss, os, HV, q, kk, HK, v, HV, g, beta, 1, N, HK, HV, scratch);
            kt->gated_delta_rule_chunked(St, ot, HV, q, kk, HK, v, HV, g, beta, 1, N, HK, HV, scratch);
        } else {
            ks->gated_delta_rule_recurrent(Ss, os, HV, q, kk, HK, v, HV, g, beta, 1, N, HK, HV);
            kt->gated_delta_rule_recurrent(St, ot, HV, q, kk, HK, v, HV, g, beta, 1, N, HK, HV);
        }
        const char *what = chunked ? "delta rule chunked" : "delta rule recurrent";
        CHECK(count_far(what, k->tier, ot, os, (size_t)N * HV, 1e-5) == 0);
        CHECK(count_far(what, k->tier, St, Ss, (size_t)HK * HV, 1e-5) == 0);
    }
    free(q), free(kk), free(v), free(g), free(beta), free(S0), free(Ss), free(St), free(os), free(ot), free(scratch);
}

/* ---- fma_exact (internal.h): the fused multiply-add of the scalar q24 steps ------------- */
static void test_fma_exact(void) {
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        /* products that need more than 24 bits, sums that cancel, and exact halfway cases */
        const float a = 1.0f + (float)(next_u64() >> 40) / 16777216.0f, b = 1.0f + (float)(next_u64() >> 40) / 16777216.0f;
        const float c = i % 3 == 0 ? -a * b : (float)(int64_t)(next_u64() >> 38) / -4194304.0f;
        const float got = fma_exact(a, b, c);
#if defined(__GLIBC__) || defined(__APPLE__)
        if (memcmp(&(float){fmaf(a, b, c)}, &got, 4)) bad++; /* a correctly rounded libm */
#endif
        /* and: |got - (a b + c)| <= half an ulp of got, from the exact value in two doubles */
        const double p = (double)a * b, s = p + c, bb = s - p, err = (p - (s - bb)) + (c - bb);
        const double d = fabs(((double)got - s) - err), ulp = ldexp(1.0, ilogb(got) - 23);
        if (got != 0.0f && isfinite(got) && d > 0.5 * ulp) bad++;
    }
    CHECK(bad == 0);
    CHECK(fma_exact(1.0f + 0x1p-23f, 1.0f - 0x1p-23f, -1.0f) == -0x1p-46f); /* needs one rounding */
}

/* ---- float -> half (quant.c: hardware on F16C / arm64, else the bit-exact software path) -- */
static void test_halves(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) { /* every half survives half -> float -> half */
        const uint16_t hh = (uint16_t)h;
        float f;
        dequantize_row(QWEN3C_TYPE_F16, &hh, &f, 1);
        const uint16_t back = half_of(f);
        if (isnan(f) ? (back & 0x7c00u) != 0x7c00u || !(back & 0x3ffu) : back != hh) bad++;
        if (!isnan(f) && (h & 0x7fffu) < 0x7bffu) { /* halfway to the next half: to the even one */
            float f2;
            const uint16_t up = (uint16_t)(h + 1);
            dequantize_row(QWEN3C_TYPE_F16, &up, &f2, 1);
            const float mid = (float)(((double)f + (double)f2) / 2);
            if (half_of(mid) != ((h & 1u) ? up : hh)) bad++;
        }
    }
    CHECK(bad == 0);
    CHECK(half_of(65520.0f) == 0x7c00u && half_of(65519.0f) == 0x7bffu && half_of(-1e9f) == 0xfc00u);
}

int main(void) {
    char err[256];
    qwen3c_cpu_info info;
    CHECK(qwen3c_cpu_info_get(&info, err, sizeof err) == QWEN3C_OK);
    printf("features: %s\ntiers: %s (best: %s)\n", info.features, info.tiers, info.best);
    const char *expect = getenv("QWEN3C_EXPECT_BEST");
    if (expect && *expect) CHECK(strcmp(info.best, expect) == 0);
    test_halves();
    test_fma_exact();
    int runnable = 0;
    size_t n = 0;
    while (kernels_tier(n, NULL)) n++;
    SCALAR = kernels_tier(n - 1, &runnable);
    CHECK(SCALAR && !strcmp(SCALAR->tier, "scalar") && runnable);
    for (size_t i = 0; i + 1 < n; i++) {
        const Kernels *k = kernels_tier(i, &runnable);
        if (!runnable) {
            printf("tier %s: not run (this CPU lacks its features)\n", k->tier);
            continue;
        }
        const int before = failures;
        test_matmul(k);
        test_q24(k);
        test_q24k(k);
        test_actquant(k, k->q16, SCALAR->q16, "q16");
        test_actquant(k, k->int8, SCALAR->int8, "int8");
        test_attention(k);
        test_nn(k);
        test_deltanet(k);
        printf("tier %s: %s (q24 %s)\n", k->tier, failures == before ? "same as scalar" : "DIFFERS",
               k->q24->fast ? "fast" : "test entry only");
    }
    /* the scalar tier itself against the float64 references */
    test_matmul(SCALAR);
    test_attention(SCALAR);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
