/*
 * test_golden.c -- golden logits: a tiny Qwen3 model per weight type (F32, F16, BF16, Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K; 2 layers, dim 256, 4 query heads over 2 kv heads of
 * 64, hidden 256, 256 tokens, tied embeddings), loaded through the public API and run on 7 tokens
 * batched and 2 more one at a time, under every kernel tier this CPU runs (QWEN3C_CPU), and
 * compared with the logits the x86-64 build's scalar tier computed, committed in
 * tests/data/golden/<type>.f32 (9 x 256 little-endian floats). The arm64 build runs it under
 * qemu-aarch64 (tools/arm64_tests.sh), so arm64's kernels must reproduce x86's numbers.
 *
 * The models are written here from integers (quants and scale bits from a fixed random stream,
 * float weights k * 2^-11, scales exact halves), so that every platform builds the same bytes;
 * the file goes to the temporary directory, as a user's GGUF would be mapped.
 *
 * Checked per type and tier: the default settings (q24 for Q8_0 / Q4_0 / Q4_1 and q24k for
 * Q4_K / Q5_K / Q6_K where the tier has SIMD integer dot products, with the packed weights), activations "f32", and for F16 / Q8_0 the
 * float16 KV cache. Tolerance, as the x86 tiers among themselves (tests/test_cpu.py): max |Δ| /
 * max |logit| < 2e-5 and the same argmax wherever the top two logits are 1e-4 apart (the f16
 * cache: 1e-2, its rounding).
 *   QWEN3C_GOLDEN_WRITE=1 test_golden     rewrites the files with the scalar tier (only after a
 *                                         change that is meant to change the numbers)
 */
#include <math.h>
#if defined(_WIN32)
#include <process.h>
#define getpid _getpid
#else
#include <unistd.h>
#endif

#include "kernels/kernels.h"
#include "testutil.h"

enum { L = 2, D = 256, H = 256, NH = 4, NKV = 2, HD = 64, V = 256, ALIGN = 32, N_PROMPT = 7, N_DECODE = 2 };
#define N_LOGITS ((N_PROMPT + N_DECODE) * V)
static const int32_t TOKENS[N_PROMPT + N_DECODE] = {7, 100, 3, 255, 42, 42, 17, 200, 5};

/* ---- the model --------------------------------------------------------------------------- */
static uint64_t rng;
static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* a half from an exact float (m / 16 * 2^e, 16 <= |m| < 32: no rounding anywhere) */
static void put_scale(uint8_t *p, int e, int negative) {
    const float f = ldexpf((float)(16 + (int)(next_u64() % 16)), e - 4) * (negative ? -1.0f : 1.0f);
    uint16_t h;
    float_to_half_row(&f, &h, 1);
    memcpy(p, &h, 2);
}

/* (rows, cols) of `type` into dst: float types (k - 127) 2^-11, block types random quants with
 * scales sized so that a row's dot product with a normalized x is O(1) */
static void fill(int type, uint8_t *dst, int64_t rows, int64_t cols) {
    const int bs = qwen3c_type_block_size(type);
    const int64_t ts = qwen3c_type_row_size(type, bs), n = rows * cols / bs;
    for (int64_t i = 0; i < n; i++) {
        uint8_t *b = dst + i * ts;
        if (type == QWEN3C_TYPE_F32 || type == QWEN3C_TYPE_F16 || type == QWEN3C_TYPE_BF16) {
            const float f = ldexpf((float)((int)(next_u64() % 255) - 127), -11);
            uint32_t u;
            memcpy(&u, &f, 4);
            if (type == QWEN3C_TYPE_F32) memcpy(b, &u, 4);
            else if (type == QWEN3C_TYPE_BF16) { const uint16_t h = (uint16_t)(u >> 16); memcpy(b, &h, 2); }
            else { uint16_t h; float_to_half_row(&f, &h, 1); memcpy(b, &h, 2); }
            continue;
        }
        for (int64_t j = 0; j < ts; j++) b[j] = (uint8_t)next_u64();
        const int neg = (int)(next_u64() & 1);
        switch (type) {
        case QWEN3C_TYPE_Q8_0: put_scale(b, -11, neg); break;
        case QWEN3C_TYPE_Q4_0: put_scale(b, -8, neg); break;
        case QWEN3C_TYPE_Q4_1: put_scale(b, -8, neg), put_scale(b + 2, -5, !neg); break;
        case QWEN3C_TYPE_Q5_0: put_scale(b, -9, neg); break;
        case QWEN3C_TYPE_Q5_1: put_scale(b, -9, neg), put_scale(b + 2, -5, !neg); break;
        case QWEN3C_TYPE_Q4_K: put_scale(b, -12, neg), put_scale(b + 2, -14, 0); break;
        case QWEN3C_TYPE_Q5_K: put_scale(b, -13, neg), put_scale(b + 2, -14, 0); break;
        case QWEN3C_TYPE_Q6_K: put_scale(b + 208, -14, neg); break;
        case QWEN3C_TYPE_Q2_K: put_scale(b + 80, -10, neg), put_scale(b + 82, -13, 0); break;
        case QWEN3C_TYPE_Q3_K: put_scale(b + 108, -12, neg); break;
        default: break;
        }
    }
}

typedef struct { char name[40]; int n_dims; int64_t ne0, ne1; int type; } Tensor;

/* The GGUF image of the model with matrices of `type` (norms F32). */
static Buf model_image(int type) {
    Tensor t[3 + 11 * L];
    int n = 0;
#define T(NAME, ND, NE0, NE1, TYPE) (snprintf(t[n].name, sizeof t[n].name, "%s", NAME), t[n].n_dims = ND, \
                                     t[n].ne0 = NE0, t[n].ne1 = NE1, t[n].type = TYPE, n++)
    T("token_embd.weight", 2, D, V, type);
    for (int l = 0; l < L; l++) {
        char s[40];
#define TL(SUFFIX, ND, NE0, NE1, TYPE) (snprintf(s, sizeof s, "blk.%d.%s.weight", l, SUFFIX), T(s, ND, NE0, NE1, TYPE))
        TL("attn_norm", 1, D, 1, QWEN3C_TYPE_F32);
        TL("attn_q", 2, D, NH * HD, type);
        TL("attn_k", 2, D, NKV * HD, type);
        TL("attn_v", 2, D, NKV * HD, type);
        TL("attn_output", 2, NH * HD, D, type);
        TL("attn_q_norm", 1, HD, 1, QWEN3C_TYPE_F32);
        TL("attn_k_norm", 1, HD, 1, QWEN3C_TYPE_F32);
        TL("ffn_norm", 1, D, 1, QWEN3C_TYPE_F32);
        TL("ffn_gate", 2, D, H, type);
        TL("ffn_up", 2, D, H, type);
        TL("ffn_down", 2, H, D, type);
#undef TL
    }
    T("output_norm.weight", 1, D, 1, QWEN3C_TYPE_F32);
#undef T
    Buf b = {0};
    qwen3_header(&b, (uint64_t)n, L, 64, D, H, NH, NKV, HD, ALIGN);
    uint64_t offset = 0, size[3 + 11 * L];
    for (int i = 0; i < n; i++) {
        size[i] = (uint64_t)qwen3c_type_row_size(t[i].type, t[i].ne0) * (uint64_t)t[i].ne1;
        tensor_info(&b, t[i].name, t[i].n_dims, (uint64_t)t[i].ne0, (uint64_t)t[i].ne1, (uint32_t)t[i].type, offset);
        offset += (size[i] + ALIGN - 1) / ALIGN * ALIGN;
    }
    while (b.n % ALIGN) put(&b, "", 1);
    rng = 0x51ED5EED00000000ull + (uint64_t)type; /* the same bytes on every platform */
    for (int i = 0; i < n; i++) {
        uint8_t *data = malloc((size_t)size[i]);
        if (t[i].type == QWEN3C_TYPE_F32 && t[i].n_dims == 1) { /* norm weights 1 + k / 256 */
            for (int64_t j = 0; j < t[i].ne0; j++) {
                const float f = 1.0f + (float)((int)(next_u64() % 64) - 32) / 256.0f;
                memcpy(data + 4 * j, &f, 4);
            }
        } else {
            fill(t[i].type, data, t[i].ne1, t[i].ne0);
        }
        put(&b, data, (size_t)size[i]);
        free(data);
        while (b.n % ALIGN) put(&b, "", 1);
    }
    return b;
}

/* ---- running it -------------------------------------------------------------------------- */
/* logits (9 x V): 7 tokens batched (all logits), then 2 tokens one at a time */
static int run(const char *path, const char *tier, int activations, int kv_type, float *logits) {
    char err[256];
#if defined(_WIN32)
    _putenv_s("QWEN3C_CPU", tier);
#else
    setenv("QWEN3C_CPU", tier, 1);
#endif
    qwen3c_model *m = NULL;
    qwen3c_context *ctx = NULL;
    int rc = qwen3c_model_load(path, &m, err, sizeof err);
    if (rc == QWEN3C_OK) {
        CHECK(strcmp(qwen3c_model_cpu_tier(m), tier) == 0);
        qwen3c_context_params prm = qwen3c_context_default_params();
        prm.n_ctx = 32, prm.n_threads = 2, prm.activations = activations, prm.kv_type = kv_type;
        rc = qwen3c_context_create(m, &prm, &ctx, err, sizeof err);
    }
    if (rc == QWEN3C_OK) rc = qwen3c_forward(ctx, TOKENS, N_PROMPT, 0, logits, 1, err, sizeof err);
    for (int i = 0; i < N_DECODE && rc == QWEN3C_OK; i++)
        rc = qwen3c_forward(ctx, TOKENS + N_PROMPT + i, 1, N_PROMPT + i, logits + (N_PROMPT + i) * V, 0, err, sizeof err);
    if (rc != QWEN3C_OK) fprintf(stderr, "  %s on %s: %s\n", path, tier, err);
    qwen3c_context_free(ctx);
    qwen3c_model_free(m);
    return rc;
}

/* max |got - want| / max |want| over all positions; the argmax of each position must agree
 * where the top two logits of `want` are more than 1e-4 max |want| apart */
static double compare(const float *got, const float *want, int *argmax_differs) {
    double worst = 0, amax = 0;
    for (int i = 0; i < N_LOGITS; i++)
        if (fabs(want[i]) > amax) amax = fabs(want[i]);
    *argmax_differs = 0;
    for (int p = 0; p < N_PROMPT + N_DECODE; p++) {
        const float *g = got + p * V, *w = want + p * V;
        int ag = 0, aw = 0;
        for (int i = 0; i < V; i++) {
            const double d = isnan(g[i]) ? INFINITY : fabs(g[i] - w[i]);
            if (d > worst) worst = d;
            if (g[i] > g[ag]) ag = i;
            if (w[i] > w[aw]) aw = i;
        }
        float second = -INFINITY;
        for (int i = 0; i < V; i++) if (i != aw && w[i] > second) second = w[i];
        if (ag != aw && w[aw] - second > 1e-4 * amax) (*argmax_differs)++;
    }
    return worst / amax;
}

static const int TYPES[] = {QWEN3C_TYPE_F32, QWEN3C_TYPE_F16, QWEN3C_TYPE_BF16, QWEN3C_TYPE_Q8_0, QWEN3C_TYPE_Q4_0,
                            QWEN3C_TYPE_Q4_1, QWEN3C_TYPE_Q5_0, QWEN3C_TYPE_Q5_1, QWEN3C_TYPE_Q4_K, QWEN3C_TYPE_Q5_K,
                            QWEN3C_TYPE_Q6_K, QWEN3C_TYPE_Q2_K, QWEN3C_TYPE_Q3_K};

static void golden_path(int type, char *buf, size_t size) {
    char name[16];
    snprintf(name, sizeof name, "%s", qwen3c_type_name(type));
    for (char *c = name; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    snprintf(buf, size, "tests/data/golden/%s.f32", name);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = getenv("TEMP");
    if (!tmp || !*tmp) tmp = "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/qwen3c_golden_%d.gguf", tmp, (int)getpid());
    const char *w = getenv("QWEN3C_GOLDEN_WRITE");
    const int write = w && *w == '1';
    static float got[N_LOGITS], want[N_LOGITS];
    int n_runs = 0;
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        const int type = TYPES[ti];
        Buf img = model_image(type);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(img.p, 1, img.n, f) == img.n);
        if (f) fclose(f);
        free(img.p);
        char gpath[128];
        golden_path(type, gpath, sizeof gpath);
        if (write) {
            CHECK(run(path, "scalar", QWEN3C_ACTIVATIONS_Q24, QWEN3C_KV_F32, want) == QWEN3C_OK);
            FILE *g = fopen(gpath, "wb");
            CHECK(g && fwrite(want, sizeof(float), N_LOGITS, g) == N_LOGITS);
            if (g) fclose(g);
            printf("wrote %s\n", gpath);
            continue;
        }
        FILE *g = fopen(gpath, "rb");
        CHECK(g && fread(want, sizeof(float), N_LOGITS, g) == N_LOGITS);
        if (g) fclose(g);
        const int q = type == QWEN3C_TYPE_Q8_0 || type == QWEN3C_TYPE_Q4_0 || type == QWEN3C_TYPE_Q4_1 ||
                      type == QWEN3C_TYPE_Q4_K || type == QWEN3C_TYPE_Q5_K || type == QWEN3C_TYPE_Q6_K;
        const int f16kv = type == QWEN3C_TYPE_F16 || type == QWEN3C_TYPE_Q8_0;
        const struct { int act, kv; double tol; const char *what; } CONFIGS[] = {
            {QWEN3C_ACTIVATIONS_Q24, QWEN3C_KV_F32, 2e-5, "default"},
            {QWEN3C_ACTIVATIONS_F32, QWEN3C_KV_F32, 2e-5, "activations f32"},
            {QWEN3C_ACTIVATIONS_Q24, QWEN3C_KV_F16, 1e-2, "kv f16"},
        };
        const Kernels *k;
        int runnable;
        for (size_t i = 0; (k = kernels_tier(i, &runnable)) != NULL; i++) {
            if (!runnable) continue;
            for (int c = 0; c < 3; c++) {
                if ((c == 1 && !q) || (c == 2 && !f16kv)) continue;
                if (run(path, k->tier, CONFIGS[c].act, CONFIGS[c].kv, got) != QWEN3C_OK) {
                    CHECK(!"the model runs");
                    continue;
                }
                int argmax_differs;
                const double rel = compare(got, want, &argmax_differs);
                const int ok = rel < CONFIGS[c].tol && (c == 2 || argmax_differs == 0);
                if (!ok || getenv("QWEN3C_GOLDEN_VERBOSE"))
                    printf("%-5s %-10s %-16s max |d| / max |logit| = %.2e, argmax differs at %d\n",
                           qwen3c_type_name(type), k->tier, CONFIGS[c].what, rel, argmax_differs);
                CHECK(ok);
                n_runs++;
            }
        }
    }
    remove(path);
    if (!write) printf("test_golden: %d runs (types x tiers x settings) against tests/data/golden, %d failed checks\n",
                       n_runs, failures);
    return failures ? 1 : 0;
}
