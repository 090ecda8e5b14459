/*
 * test_sampler.c -- C-level checks of sampler.c, meant to run under ASan/UBSan with leak
 * checks (cmake -DQWEN3C_BUILD_C_TESTS=ON -DQWEN3C_SANITIZE=ON; ctest).
 *
 * Every combination of the knobs on a Qwen3-sized vocabulary (151936 logits) and on tiny ones,
 * extreme temperatures and penalties, a long history with a bounded window, token ids beyond
 * the vocabulary in the history, and the error paths (NaN, +inf, all -inf, bad parameters),
 * checking that an error leaves the sampler usable and that the same seed repeats itself.
 */
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

#include "qwen3c.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

enum { V = 151936 };

static qwen3c_sampler *make(float t, int k, float p, float minp, uint64_t seed) {
    char err[256];
    qwen3c_sampler_params sp = qwen3c_sampler_default_params();
    sp.temperature = t; sp.top_k = k; sp.top_p = p; sp.min_p = minp; sp.seed = seed;
    qwen3c_sampler *s = NULL;
    CHECK(qwen3c_sampler_create(&sp, &s, err, sizeof err) == QWEN3C_OK);
    return s;
}

int main(void) {
    char err[256];
    float *logits = malloc(V * sizeof *logits);
    uint32_t x = 12345;
    for (int i = 0; i < V; i++) {
        x = x * 1664525u + 1013904223u;
        logits[i] = (float)(x >> 9) / (float)(1u << 23) * 8.0f - 4.0f;
    }
    logits[777] = 9.0f;  /* the argmax */

    /* greedy picks the argmax, at any setting of the other knobs */
    qwen3c_sampler *s = make(0.0f, 20, 0.5f, 0.3f, 1);
    int32_t tok = -1;
    CHECK(qwen3c_sampler_sample(s, logits, V, &tok, err, sizeof err) == QWEN3C_OK && tok == 777);
    qwen3c_sampler_free(s);

    /* every combination of the knobs runs and returns an id in range (on a 4096-token slice;
     * the full vocabulary below) */
    const float temps[] = {1e-30f, 0.6f, 1.0f, 50.0f};
    const int ks[] = {0, 1, 2, 20, 1000, 4096, 5000};
    const float ps[] = {1.0f, 0.95f, 0.5f, 1e-6f};
    const float mps[] = {0.0f, 0.05f, 1.0f};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 7; b++)
            for (int c = 0; c < 4; c++)
                for (int d = 0; d < 3; d++) {
                    s = make(temps[a], ks[b], ps[c], mps[d], (uint64_t)(a * 1000 + b * 100 + c * 10 + d));
                    for (int r = 0; r < 2; r++) {
                        int n = r == 1 ? 3 : 4096;
                        tok = -1;
                        CHECK(qwen3c_sampler_sample(s, logits, n, &tok, err, sizeof err) == QWEN3C_OK);
                        CHECK(tok >= 0 && tok < n);
                    }
                    qwen3c_sampler_free(s);
                }

    const int full_ks[] = {0, 20, V};
    for (int b = 0; b < 3; b++) {
        s = make(0.7f, full_ks[b], 0.8f, 0.01f, 3);
        CHECK(qwen3c_sampler_sample(s, logits, V, &tok, err, sizeof err) == QWEN3C_OK);
        CHECK(tok >= 0 && tok < V);
        qwen3c_sampler_free(s);
    }

    /* penalties: a long history, a window, ids beyond the vocabulary, extreme values */
    qwen3c_sampler_params sp = qwen3c_sampler_default_params();
    sp.presence_penalty = 1e30f; sp.frequency_penalty = -3e38f; sp.repetition_penalty = 1e-30f;
    sp.penalty_last_n = 7; sp.seed = 9;
    CHECK(qwen3c_sampler_create(&sp, &s, err, sizeof err) == QWEN3C_OK);
    for (int i = 0; i < 5000; i++)
        CHECK(qwen3c_sampler_accept(s, (int32_t)(i * 37 % (V + 100)), err, sizeof err) == QWEN3C_OK);
    for (int i = 0; i < 10; i++) {
        CHECK(qwen3c_sampler_sample(s, logits, V, &tok, err, sizeof err) == QWEN3C_OK);
        CHECK(tok >= 0 && tok < V);
    }
    qwen3c_sampler_free(s);

    /* errors: state unchanged, sampler still usable */
    s = make(0.0f, 0, 1.0f, 0.0f, 0);
    float bad[4] = {0.0f, NAN, 1.0f, 2.0f};
    tok = 42;
    CHECK(qwen3c_sampler_sample(s, bad, 4, &tok, err, sizeof err) == QWEN3C_ERR_INVALID_ARG && tok == 42);
    bad[1] = INFINITY;
    CHECK(qwen3c_sampler_sample(s, bad, 4, &tok, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    float ninf[3] = {-INFINITY, -INFINITY, -INFINITY};
    CHECK(qwen3c_sampler_sample(s, ninf, 3, &tok, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    CHECK(qwen3c_sampler_sample(s, logits, 0, &tok, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    CHECK(qwen3c_sampler_sample(s, NULL, 4, &tok, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    CHECK(qwen3c_sampler_accept(s, -1, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    bad[1] = 5.0f;
    CHECK(qwen3c_sampler_sample(s, bad, 4, &tok, NULL, 0) == QWEN3C_OK && tok == 1);
    qwen3c_sampler_reset(s);
    qwen3c_sampler_free(s);
    qwen3c_sampler_free(NULL);

    /* bad parameters are refused */
    const float bad_t[] = {-1.0f, NAN, INFINITY};
    for (int i = 0; i < 3; i++) {
        sp = qwen3c_sampler_default_params();
        sp.temperature = bad_t[i];
        s = NULL;
        CHECK(qwen3c_sampler_create(&sp, &s, err, sizeof err) == QWEN3C_ERR_INVALID_ARG && s == NULL);
    }
    sp = qwen3c_sampler_default_params(); sp.top_p = 0.0f;
    CHECK(qwen3c_sampler_create(&sp, &s, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    sp = qwen3c_sampler_default_params(); sp.min_p = 1.5f;
    CHECK(qwen3c_sampler_create(&sp, &s, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    sp = qwen3c_sampler_default_params(); sp.repetition_penalty = 0.0f;
    CHECK(qwen3c_sampler_create(&sp, &s, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    sp = qwen3c_sampler_default_params(); sp.top_k = -5;
    CHECK(qwen3c_sampler_create(&sp, &s, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    CHECK(strstr(err, "top_k must be >= 0") != NULL);
    sp = qwen3c_sampler_default_params(); sp.top_p = 1.5f;
    CHECK(qwen3c_sampler_create(&sp, &s, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);
    sp = qwen3c_sampler_default_params(); sp.penalty_last_n = -1;
    CHECK(qwen3c_sampler_create(&sp, &s, err, sizeof err) == QWEN3C_ERR_INVALID_ARG);

    /* the same seed repeats itself, another seed does not */
    int32_t seq[3][16];
    for (int r = 0; r < 3; r++) {
        s = make(1.0f, 0, 1.0f, 0.0f, r == 2 ? 8 : 7);
        for (int i = 0; i < 16; i++)
            CHECK(qwen3c_sampler_sample(s, logits, V, &seq[r][i], err, sizeof err) == QWEN3C_OK);
        qwen3c_sampler_free(s);
    }
    int same01 = 1, same02 = 1;
    for (int i = 0; i < 16; i++) {
        same01 &= seq[0][i] == seq[1][i];
        same02 &= seq[0][i] == seq[2][i];
    }
    CHECK(same01 && !same02);

    free(logits);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("test_sampler: all checks passed\n");
    return failures ? 1 : 0;
}
