/*
 * sampler.c -- pick the next token from a row of logits.
 *
 * The pipeline, in the order transformers' logits processors apply it:
 *
 *   logits (V)
 *     -> penalties over the token history (repetition, presence, frequency)
 *     -> temperature == 0 (or top_k == 1): argmax, done
 *     -> top-k          keep the k largest logits
 *     -> temperature    p_i ~ exp((l_i - l_max) / T)
 *     -> top-p          keep the smallest prefix (by probability) holding top_p of the mass
 *     -> min-p          keep tokens with p_i >= min_p * p_max
 *     -> draw one token from what is left, with the sampler's own RNG (PCG32)
 *
 * Only the candidates that can survive are ever sorted: top-k is a bounded heap over the
 * vocabulary (O(V log k)); top-p without top-k grows a sorted prefix until it holds enough
 * mass. Ties are broken by the lower token id, so the result is a pure function of
 * (params, seed, history, logits).
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A candidate token: its id, its (penalized) logit and, once the temperature is known, its
 * unnormalized probability w = exp((logit - max_logit) / T). */
typedef struct {
    int32_t id;
    float   logit;
    float   w;
} Candidate;

struct qwen3c_sampler {
    qwen3c_sampler_params params;
    /* RNG: PCG32 (XSH RR variant), 64-bit state, fixed odd increment */
    uint64_t rng_state;
    uint64_t rng_inc;
    /* token history for the penalties */
    int32_t *history;     /* (history_cap) */
    size_t   n_history;
    size_t   history_cap;
    /* scratch, grown to the vocabulary size on first use */
    Candidate *cands;     /* (V) */
    int32_t   *counts;    /* (V) occurrences of each token in the penalty window, kept zeroed */
    int        scratch_n;
};

/* ---------------------------------------------------------------------------------------
 * RNG
 * ------------------------------------------------------------------------------------- */
static uint32_t rng_u32(qwen3c_sampler *s) {
    uint64_t old = s->rng_state;
    s->rng_state = old * 6364136223846793005ULL + s->rng_inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

/* Uniform double in [0, 1) with 53 random bits. */
static double rng_uniform(qwen3c_sampler *s) {
    uint64_t hi = rng_u32(s), lo = rng_u32(s);
    uint64_t bits = ((hi << 32) | lo) >> 11;
    return (double)bits * (1.0 / 9007199254740992.0);
}

static void rng_seed(qwen3c_sampler *s, uint64_t seed) {
    s->rng_state = 0;
    s->rng_inc = 0xda3e39cb94b95bdbULL | 1u;
    rng_u32(s);
    s->rng_state += seed;
    rng_u32(s);
}

/* ---------------------------------------------------------------------------------------
 * Create / free / history
 * ------------------------------------------------------------------------------------- */
qwen3c_sampler_params qwen3c_sampler_default_params(void) {
    qwen3c_sampler_params p;
    memset(&p, 0, sizeof p);
    /* Qwen3 generation_config, thinking mode */
    p.temperature = 0.6f;
    p.top_k = 20;
    p.top_p = 0.95f;
    p.min_p = 0.0f;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.repetition_penalty = 1.0f;
    p.penalty_last_n = 0;
    p.seed = 0;
    return p;
}

static int check_params(const qwen3c_sampler_params *p, char *err, size_t err_size) {
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "temperature must be a finite number >= 0, got %g", p->temperature);
    if (!(p->top_p > 0.0f))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "top_p must be in (0, 1], got %g", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "min_p must be in [0, 1], got %g", p->min_p);
    if (!isfinite(p->presence_penalty))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "presence_penalty must be finite, got %g", p->presence_penalty);
    if (!isfinite(p->frequency_penalty))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "frequency_penalty must be finite, got %g", p->frequency_penalty);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "repetition_penalty must be a finite number > 0, got %g",
                           p->repetition_penalty);
    return QWEN3C_OK;
}

int qwen3c_sampler_create(const qwen3c_sampler_params *params, qwen3c_sampler **out,
                          char *err, size_t err_size) {
    if (!params || !out)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "sampler_create: NULL argument");
    int rc = check_params(params, err, err_size);
    if (rc != QWEN3C_OK)
        return rc;
    qwen3c_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory creating a sampler");
    s->params = *params;
    rng_seed(s, params->seed);
    *out = s;
    return QWEN3C_OK;
}

void qwen3c_sampler_free(qwen3c_sampler *s) {
    if (!s)
        return;
    free(s->history);
    free(s->cands);
    free(s->counts);
    free(s);
}

void qwen3c_sampler_reset(qwen3c_sampler *s) {
    if (s)
        s->n_history = 0;
}

/* Make room for one more history entry (dropping what fell out of a bounded window). */
static int history_reserve(qwen3c_sampler *s, char *err, size_t err_size) {
    size_t keep = s->params.penalty_last_n > 0 ? (size_t)s->params.penalty_last_n : 0;
    if (keep > 0 && s->n_history >= 2 * keep) {  /* amortized O(1) per token */
        memmove(s->history, s->history + (s->n_history - keep), keep * sizeof *s->history);
        s->n_history = keep;
    }
    if (s->n_history == s->history_cap) {
        size_t cap = s->history_cap ? 2 * s->history_cap : 256;
        int32_t *h = realloc(s->history, cap * sizeof *h);
        if (!h)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory growing the token history");
        s->history = h;
        s->history_cap = cap;
    }
    return QWEN3C_OK;
}

int qwen3c_sampler_accept(qwen3c_sampler *s, int32_t token, char *err, size_t err_size) {
    if (!s)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "sampler_accept: NULL sampler");
    if (token < 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "token id must be >= 0, got %d", (int)token);
    int rc = history_reserve(s, err, err_size);
    if (rc != QWEN3C_OK)
        return rc;
    s->history[s->n_history++] = token;
    return QWEN3C_OK;
}

static int ensure_scratch(qwen3c_sampler *s, int n_vocab, char *err, size_t err_size) {
    if (s->scratch_n >= n_vocab)
        return QWEN3C_OK;
    Candidate *c = malloc((size_t)n_vocab * sizeof *c);
    int32_t *counts = calloc((size_t)n_vocab, sizeof *counts);
    if (!c || !counts) {
        free(c);
        free(counts);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for %d candidates", n_vocab);
    }
    free(s->cands);
    free(s->counts);
    s->cands = c;
    s->counts = counts;
    s->scratch_n = n_vocab;
    return QWEN3C_OK;
}

/* ---------------------------------------------------------------------------------------
 * Penalties
 * ------------------------------------------------------------------------------------- */
/* Apply the penalties to c[0..n_vocab) (c[i].id == i here) over the window of the history. */
static void apply_penalties(qwen3c_sampler *s, Candidate *c, int n_vocab) {
    const qwen3c_sampler_params *p = &s->params;
    if (p->repetition_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f)
        return;
    size_t start = 0;
    if (p->penalty_last_n > 0 && s->n_history > (size_t)p->penalty_last_n)
        start = s->n_history - (size_t)p->penalty_last_n;
    int32_t *counts = s->counts;
    for (size_t i = start; i < s->n_history; i++) {
        int32_t t = s->history[i];
        if (t < n_vocab)
            counts[t]++;
    }
    /* visit each distinct token once (the first time we see it), then zero its count */
    for (size_t i = start; i < s->n_history; i++) {
        int32_t t = s->history[i];
        if (t >= n_vocab || counts[t] == 0)
            continue;
        float l = c[t].logit;
        if (p->repetition_penalty != 1.0f)  /* CTRL (Keskar et al. 2019): push away from 0 */
            l = l > 0.0f ? l / p->repetition_penalty : l * p->repetition_penalty;
        l -= p->presence_penalty + p->frequency_penalty * (float)counts[t];
        if (l > FLT_MAX)  /* a negative penalty must not create +inf */
            l = FLT_MAX;
        c[t].logit = l;
        counts[t] = 0;
    }
}

/* ---------------------------------------------------------------------------------------
 * Selection
 * ------------------------------------------------------------------------------------- */
/* a ranks before b: larger logit first, then lower id */
static inline bool better(const Candidate *a, const Candidate *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_better(const void *pa, const void *pb) {
    const Candidate *a = pa, *b = pb;
    return better(a, b) ? -1 : (better(b, a) ? 1 : 0);
}

/* min-heap on `better` (the worst of the kept candidates at the root) */
static void heap_sift_down(Candidate *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l])) w = l;
        if (r < n && better(&h[w], &h[r])) w = r;
        if (w == i) return;
        Candidate t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

/* Reorder c[0..n) so that c[0..k) are the k best candidates, sorted best first. */
static void select_top(Candidate *c, int n, int k) {
    if (k >= n / 2) {
        qsort(c, (size_t)n, sizeof *c, cmp_better);
        return;
    }
    /* build a heap of the first k, then let every later candidate challenge the root */
    for (int i = k / 2 - 1; i >= 0; i--)
        heap_sift_down(c, k, i);
    for (int i = k; i < n; i++) {
        if (better(&c[i], &c[0])) {
            Candidate t = c[0]; c[0] = c[i]; c[i] = t;
            heap_sift_down(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_better);
}

/* Draw from the weights c[i].w over c[0..n). total = their sum. */
static int32_t draw(qwen3c_sampler *s, const Candidate *c, int n, double total) {
    double u = rng_uniform(s) * total, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += c[i].w;
        if (u < acc)
            return c[i].id;
    }
    /* rounding: u landed past the last partial sum; take the last candidate with weight */
    for (int i = n - 1; i > 0; i--)
        if (c[i].w > 0.0f)
            return c[i].id;
    return c[0].id;
}

static int sample(qwen3c_sampler *s, const float *logits, int n_vocab, const uint32_t *allowed,
                  int32_t *token_out, char *err, size_t err_size) {
    if (!s || !logits || !token_out)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "sampler_sample: NULL argument");
    if (n_vocab < 1)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "n_vocab must be >= 1, got %d", n_vocab);
    for (int i = 0; i < n_vocab; i++) {
        if (isnan(logits[i]))
            return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "logit %d is NaN", i);
        if (isinf(logits[i]) && logits[i] > 0)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "logit %d is +inf", i);
    }
    int rc = ensure_scratch(s, n_vocab, err, err_size);
    if (rc == QWEN3C_OK)
        rc = history_reserve(s, err, err_size);  /* before the draw: no failure after it */
    if (rc != QWEN3C_OK)
        return rc;
    const qwen3c_sampler_params *p = &s->params;
    const bool penalties = p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f ||
                           p->frequency_penalty != 0.0f;
    if ((p->temperature == 0.0f || p->top_k == 1) && !(penalties && s->n_history > 0)) {
        /* greedy without penalties: the argmax (lower id on ties) of what the mask admits */
        int best = -1;
        for (int i = 0; i < n_vocab; i++) {
            if (allowed && !((allowed[i >> 5] >> (i & 31)) & 1u)) continue;
            if (best < 0 || logits[i] > logits[best]) best = i;
        }
        if (best < 0 || isinf(logits[best]))
            return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                               allowed ? "the mask admits no token with a finite logit" : "every logit is -inf");
        s->history[s->n_history++] = best;
        *token_out = best;
        return QWEN3C_OK;
    }
    Candidate *c = s->cands;
    for (int i = 0; i < n_vocab; i++) {
        c[i].id = i;
        c[i].logit = logits[i];
    }
    if (allowed) /* constrained decoding: what the mask refuses can never be picked */
        for (int i = 0; i < n_vocab; i++)
            if (!((allowed[i >> 5] >> (i & 31)) & 1u)) c[i].logit = -INFINITY;
    apply_penalties(s, c, n_vocab);

    /* the best candidate; every later step keeps it */
    int best = 0;
    for (int i = 1; i < n_vocab; i++)
        if (better(&c[i], &c[best]))
            best = i;
    float lmax = c[best].logit;
    if (isinf(lmax))  /* penalties keep finite logits finite, so all were -inf */
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           allowed ? "the mask admits no token with a finite logit" : "every logit is -inf");

    int32_t tok;
    if (p->temperature == 0.0f || p->top_k == 1 || n_vocab == 1) {
        tok = c[best].id;
    } else {
        double inv_t = 1.0 / (double)p->temperature;  /* temperature > 0 here */
        int n = n_vocab;
        bool sorted = false;
        if (p->top_k > 0 && p->top_k < n) {
            select_top(c, n, p->top_k);
            n = p->top_k;
            sorted = true;
        }
        /* temperature: the weights, and the partition function of what top-k left */
        double z = 0.0;
        for (int i = 0; i < n; i++) {
            c[i].w = (float)exp((double)(c[i].logit - lmax) * inv_t);
            z += c[i].w;
        }

        if (p->top_p < 1.0f) {
            /* grow a sorted prefix until it holds top_p of the mass */
            double target = (double)p->top_p * z;
            int m = sorted ? n : (n < 64 ? n : 64);
            for (;;) {
                if (!sorted)
                    select_top(c, n, m);  /* c[0..m) = the m best, best first */
                double mass = 0.0;
                int cut = 0;
                for (int i = 0; i < m && !cut; i++) {
                    mass += c[i].w;
                    if (mass >= target)
                        cut = i + 1;
                }
                if (cut) { n = cut; break; }
                if (m == n) break;  /* rounding left us short: keep everything */
                m = m > n / 4 ? n : 4 * m;
            }
            sorted = true;
        }
        if (p->min_p > 0.0f) {
            /* p_i >= min_p * p_max, and the best candidate has w == 1 */
            int kept = 0;
            for (int i = 0; i < n; i++)
                if (c[i].w >= p->min_p)
                    c[kept++] = c[i];
            n = kept;  /* >= 1: the best candidate has weight 1 */
        }
        double total = 0.0;
        for (int i = 0; i < n; i++)
            total += c[i].w;
        tok = draw(s, c, n, total);
    }

    s->history[s->n_history++] = tok;
    *token_out = tok;
    return QWEN3C_OK;
}

int qwen3c_sampler_sample(qwen3c_sampler *s, const float *logits, int n_vocab, int32_t *token_out,
                          char *err, size_t err_size) {
    return sample(s, logits, n_vocab, NULL, token_out, err, err_size);
}

int qwen3c_sampler_sample_masked(qwen3c_sampler *s, const float *logits, int n_vocab,
                                 const uint32_t *allowed, int32_t *token_out, char *err,
                                 size_t err_size) {
    return sample(s, logits, n_vocab, allowed, token_out, err, err_size);
}
