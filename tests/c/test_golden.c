/*
 * test_golden.c -- golden logits: tiny Qwen3 files of every weight type (tests/data/golden/,
 * made by tools/gen_golden.py with the logits of the scalar tier) run on every CPU tier this
 * machine runs, and must give their logits to the tolerance golden.txt lists per file.
 *
 * This is the test the other platforms run: natively (ctest), the x86-64 build under
 * `qemu-x86_64 -cpu Haswell / Nehalem`, the mingw-w64 build under wine, the arm64 build under
 * qemu-aarch64 (tools/run_tests.sh, tools/cross_tests.sh).
 *
 *   test_golden [DIR]     (DIR: tests/data/golden, relative to the source tree by default)
 *
 * Per file and tier: a prefill of n_prompt tokens (all logits), then n_decode single-token
 * steps; Q8_0 / Q4_0 / Q4_1 files also with activations F32 (their default, Q24, is the
 * integer path on the avx512 tier). Prints the measured max |logit - golden| / max |golden|.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* setenv */
#endif
#include <math.h>

#include "kernels/kernels.h"
#include "testutil.h"

#define MAX_TOKENS 64

static void set_tier(const char *tier) {
#ifdef _WIN32
    _putenv_s("QWEN3C_CPU", tier);
#else
    setenv("QWEN3C_CPU", tier, 1);
#endif
}

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *p = malloc(n * sizeof *p);
    size_t got = p ? fread(p, sizeof *p, n, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) {
        free(p);
        return NULL;
    }
    return p;
}

/* Run one file on one tier; returns the relative error, or -1 on a failure (reported). */
static double run(const char *path, const char *tier, int activations, const int32_t *toks, int n_prompt,
                  int n_decode, const float *golden) {
    char err[512] = "";
    qwen3c_model *m = NULL;
    qwen3c_context *ctx = NULL;
    set_tier(tier);
    if (qwen3c_model_load(path, &m, err, sizeof err) != QWEN3C_OK) {
        fprintf(stderr, "%s on %s: %s\n", path, tier, err);
        return -1;
    }
    CHECK(strcmp(qwen3c_model_cpu_tier(m), tier) == 0);
    qwen3c_context_params cp = qwen3c_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    cp.activations = activations;
    qwen3c_config c;
    qwen3c_model_get_config(m, &c);
    const int V = c.vocab_size, n = n_prompt + n_decode;
    float *logits = malloc((size_t)n * V * sizeof *logits);
    double worst = -1;
    if (logits && qwen3c_context_create(m, &cp, &ctx, err, sizeof err) == QWEN3C_OK &&
        qwen3c_forward(ctx, toks, n_prompt, 0, logits, 1, err, sizeof err) == QWEN3C_OK) {
        int ok = 1;
        for (int i = n_prompt; i < n && ok; i++)
            ok = qwen3c_forward(ctx, toks + i, 1, i, logits + (size_t)i * V, 0, err, sizeof err) == QWEN3C_OK;
        if (ok) {
            double dmax = 0, gmax = 0;
            for (size_t i = 0; i < (size_t)n * V; i++) {
                const double d = fabs((double)logits[i] - golden[i]);
                dmax = d > dmax || d != d ? d : dmax; /* NaN counts as the worst */
                gmax = fabs(golden[i]) > gmax ? fabs(golden[i]) : gmax;
            }
            worst = gmax > 0 ? dmax / gmax : dmax;
        }
    }
    if (worst < 0) fprintf(stderr, "%s on %s: %s\n", path, tier, err);
    free(logits);
    qwen3c_context_free(ctx);
    qwen3c_model_free(m);
    return worst;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/data/golden";
    char path[1024], line[2048];
    qwen3c_cpu_info info;
    qwen3c_cpu_info_get(&info, NULL, 0);
    /* the tiers this CPU runs, best first, each name once (a name may have two rows: avx2); not
     * a search in info.tiers, where "neon" would also match "neon-i8mm" */
    char runnable_names[128] = "";
    const Kernels *kt;
    int can;
    for (size_t i = 0; (kt = kernels_tier(i, &can)) != NULL; i++) {
        char word[40];
        snprintf(word, sizeof word, " %s ", kt->tier);
        char have[132];
        snprintf(have, sizeof have, " %s ", runnable_names);
        if (can && !strstr(have, word))
            snprintf(runnable_names + strlen(runnable_names), sizeof runnable_names - strlen(runnable_names), "%s%s",
                     runnable_names[0] ? " " : "", kt->tier);
    }
    const char *runnable = runnable_names;
    printf("golden logits, %s, tiers run here: %s (%s)\n", info.compiler, runnable ? runnable : "?",
           info.features);
    snprintf(path, sizeof path, "%s/golden.txt", dir);
    FILE *manifest = fopen(path, "r");
    if (!manifest) {
        fprintf(stderr, "cannot open %s (run from the source tree, or pass the directory)\n", path);
        return 1;
    }
    int files = 0, runs = 0;
    double worst = 0;
    while (fgets(line, sizeof line, manifest)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char name[256];
        double tol;
        int n_prompt, n_decode, used;
        if (sscanf(line, "%255s %lf %d %d%n", name, &tol, &n_prompt, &n_decode, &used) != 4 ||
            n_prompt < 1 || n_decode < 0 || n_prompt + n_decode > MAX_TOKENS) {
            fprintf(stderr, "bad line in golden.txt: %s", line);
            failures++;
            continue;
        }
        int32_t toks[MAX_TOKENS];
        const char *p = line + used;
        for (int i = 0; i < n_prompt + n_decode; i++) {
            int k = 0;
            if (sscanf(p, "%d%n", &toks[i], &k) != 1) {
                fprintf(stderr, "%s: %d tokens expected\n", name, n_prompt + n_decode);
                return 1;
            }
            p += k;
        }
        snprintf(path, sizeof path, "%s/%s", dir, name);
        qwen3c_model *m = NULL;
        char err[512];
        if (qwen3c_model_load(path, &m, err, sizeof err) != QWEN3C_OK) {
            fprintf(stderr, "%s: %s\n", path, err);
            failures++;
            continue;
        }
        qwen3c_config c;
        qwen3c_model_get_config(m, &c);
        qwen3c_model_free(m);
        char lpath[1100];
        snprintf(lpath, sizeof lpath, "%s.logits", path);
        float *golden = read_floats(lpath, (size_t)(n_prompt + n_decode) * c.vocab_size);
        if (!golden) {
            fprintf(stderr, "%s: missing or wrong-sized logits\n", lpath);
            failures++;
            continue;
        }
        const int q24 = strstr(name, "q8_0") || strstr(name, "q4_0") || strstr(name, "q4_1");
        char tiers[sizeof runnable_names];
        snprintf(tiers, sizeof tiers, "%s", runnable ? runnable : "scalar");
        for (char *tier = strtok(tiers, " "); tier; tier = strtok(NULL, " ")) {
            for (int pass = 0; pass < 1 + q24; pass++) {
                const int act = pass ? QWEN3C_ACTIVATIONS_F32 : qwen3c_context_default_params().activations;
                const double rel = run(path, tier, act, toks, n_prompt, n_decode, golden);
                const int ok = rel >= 0 && rel <= tol;
                runs++;
                worst = rel > worst ? rel : worst;
                printf("  %-24s %-10s %-4s rel %.2e (tol %.0e) %s\n", name, tier, pass ? "f32" : "", rel, tol,
                       ok ? "ok" : "FAIL");
                if (!ok) failures++;
            }
        }
        free(golden);
        files++;
    }
    fclose(manifest);
    CHECK(files >= 9);
    printf("test_golden: %d files, %d runs on tiers %s, worst %.2e of the golden logits, %d failure(s)\n", files,
           runs, runnable ? runnable : "?", worst, failures);
    return failures ? 1 : 0;
}
