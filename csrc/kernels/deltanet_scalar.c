/*
 * deltanet_scalar.c -- the kernels of Qwen3.5's Gated DeltaNet layer (transformers: Qwen3_5GatedDeltaNet
 * and the torch fallbacks it calls in modeling_qwen3_5.py):
 *
 *   causal_conv1d_silu          causal_conv1d_fn / causal_conv1d_update, then SiLU
 *   l2norm_scaled               l2norm (FLA's use_qk_l2norm_in_kernel), times the query scale
 *   gated_delta_rule_recurrent  torch_recurrent_gated_delta_rule: token by token (decode)
 *   gated_delta_rule_chunked    torch_chunk_gated_delta_rule: 64-token chunks (prefill)
 *   rmsnorm_gated               Qwen3_5RMSNormGated
 *
 * The gated delta rule, per value head, with a state S of (HK, HV) and per token t the query
 * q_t, key k_t (HK, l2-normed), value v_t (HV), write strength beta_t in (0, 1) and log decay
 * g_t <= 0:
 *   S   = exp(g_t) * S                      forget a little of everything
 *   S  += k_t (beta_t (v_t - S^T k_t))^T    move what S recalls for k_t toward v_t (the delta rule)
 *   o_t = S^T q_t                           read it with the query
 * Columns of S never interact, so the kernels work on column blocks that stay in L1.
 *
 * Plain C with `omp simd` on the loops over channels / value dimensions, one function per
 * kernel (the DeltaNetKernels table, kernels.h), so that per-CPU-tier versions can replace them
 * one to one. None is hand-written yet: every tier compiles this file with its own flags
 * (SSE4.2: 4 lanes; AVX2: 8; AVX-512: 16; NEON), which is what makes it fast.
 * Shapes: see the legend at the top of internal.h (HK, HV, CD, K).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define DN_COLS 32 /* columns of S (value dims) per block: HK x 32 floats = 16 KB, L1-sized */

static inline float silu(float x) { return x / (1.0f + expf_simd(-x)); }

/* ---------------------------------------------------------------------------------------
 * The short causal convolution over time, per channel (depthwise), with its rolling state
 * ------------------------------------------------------------------------------------- */
static void causal_conv1d_silu(float *out, const float *x, float *state, const float *w, int n, int K,
                               int CD, int c0, int c1) {
    enum { CB = 256 }; /* channels per block */
    for (int cb = c0; cb < c1; cb += CB) {
        const int nc = c1 - cb < CB ? c1 - cb : CB;
        for (int t = 0; t < n; t++) {
            float acc[CB] = {0};
            /* out[t] = sum_j w[j] * window[t + j]: window row r is state row r (r < K-1) or x row r-(K-1) */
            for (int j = 0; j < K; j++) {
                const int r = t + j;
                const float *row = (r < K - 1 ? state + (size_t)r * CD : x + (size_t)(r - (K - 1)) * CD) + cb;
                const float *wj = w + (size_t)j * CD + cb;
#pragma omp simd
                for (int c = 0; c < nc; c++) acc[c] += wj[c] * row[c];
            }
            float *o = out + (size_t)t * CD + cb;
#pragma omp simd
            for (int c = 0; c < nc; c++) o[c] = silu(acc[c]);
        }
    }
    /* conv_state = the last K-1 rows of the window (ascending: a row moves to a lower index) */
    for (int r = 0; r < K - 1; r++) {
        const int src = n + r;
        const float *row = src < K - 1 ? state + (size_t)src * CD : x + (size_t)(src - (K - 1)) * CD;
        memcpy(state + (size_t)r * CD + c0, row + c0, (size_t)(c1 - c0) * sizeof(float));
    }
}

/* ---------------------------------------------------------------------------------------
 * Norms
 * ------------------------------------------------------------------------------------- */
static void l2norm_scaled(float *x, int n, float scale) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const float inv = 1.0f / sqrtf(ss + 1e-6f);
#pragma omp simd
    for (int i = 0; i < n; i++) x[i] = x[i] * inv * scale;
}

static void rmsnorm_gated(float *x, const float *gate, const float *weight, int n, float eps) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    /* norm before gate: weight * (x / rms), then * silu(gate) */
#pragma omp simd
    for (int i = 0; i < n; i++) x[i] = weight[i] * (x[i] * inv) * silu(gate[i]);
}

/* ---------------------------------------------------------------------------------------
 * The gated delta rule, one token at a time (decode, and short batches)
 *
 * One pass over S per token: the update and read-out of token t (S += k_t delta_t^T, o_t =
 * S^T q_t) are fused with the decay and recall of token t+1 (S *= exp(g_t+1), kv = S^T k_t+1),
 * which need exactly the rows just written. A block of DN_COLS columns of S (HK x 32 floats,
 * 16 KB) stays in L1 for all the tokens; the kv, delta and output vectors stay in registers.
 * ------------------------------------------------------------------------------------- */
static inline __attribute__((always_inline)) void
delta_rule_cols(const int NJ, float *S, int HV, int HK, float *o, int o_stride, const float *q,
                const float *k, int qk_stride, const float *v, int v_stride, const float *g,
                const float *beta, int gb_stride, int n) {
    float kv[DN_COLS] = {0}, delta[DN_COLS], acc[DN_COLS];
    /* token 0's decay and recall: S = S * exp(g_0); kv = S^T k_0 */
    const float d0 = expf(g[0]);
    for (int i = 0; i < HK; i++) {
        float *Si = S + (size_t)i * HV;
        const float ki = k[i];
#pragma omp simd
        for (int j = 0; j < NJ; j++) {
            Si[j] *= d0;
            kv[j] += Si[j] * ki;
        }
    }
    for (int t = 0; t < n; t++) {
        const float *qt = q + (size_t)t * qk_stride, *kt = k + (size_t)t * qk_stride;
        const float *vt = v + (size_t)t * v_stride;
        const float b = beta[(size_t)t * gb_stride];
        /* delta = (v_t - kv_mem) * beta_t */
#pragma omp simd
        for (int j = 0; j < NJ; j++) {
            delta[j] = (vt[j] - kv[j]) * b;
            acc[j] = 0.0f;
            kv[j] = 0.0f;
        }
        if (t + 1 < n) {
            /* S = S + k_t delta^T; o_t = S^T q_t; then token t+1: S = S * exp(g); kv = S^T k */
            const float *kn = k + (size_t)(t + 1) * qk_stride;
            const float dn = expf(g[(size_t)(t + 1) * gb_stride]);
            for (int i = 0; i < HK; i++) {
                float *Si = S + (size_t)i * HV;
                const float ki = kt[i], qi = qt[i], kni = kn[i];
#pragma omp simd
                for (int j = 0; j < NJ; j++) {
                    const float s = Si[j] + ki * delta[j];
                    acc[j] += s * qi;
                    const float sd = s * dn;
                    kv[j] += sd * kni;
                    Si[j] = sd;
                }
            }
        } else {
            for (int i = 0; i < HK; i++) {
                float *Si = S + (size_t)i * HV;
                const float ki = kt[i], qi = qt[i];
#pragma omp simd
                for (int j = 0; j < NJ; j++) {
                    const float s = Si[j] + ki * delta[j];
                    acc[j] += s * qi;
                    Si[j] = s;
                }
            }
        }
        memcpy(o + (size_t)t * o_stride, acc, (size_t)NJ * sizeof(float));
    }
}

static void gated_delta_rule_recurrent(float *S, float *o, int o_stride, const float *q, const float *k,
                                       int qk_stride, const float *v, int v_stride, const float *g,
                                       const float *beta, int gb_stride, int n, int HK, int HV) {
    for (int j0 = 0; j0 < HV; j0 += DN_COLS) { /* a block of columns of S, all tokens */
        const int nj = HV - j0 < DN_COLS ? HV - j0 : DN_COLS;
        if (nj == DN_COLS) /* the compiler keeps the vectors of a full block in registers */
            delta_rule_cols(DN_COLS, S + j0, HV, HK, o + j0, o_stride, q, k, qk_stride, v + j0, v_stride,
                            g, beta, gb_stride, n);
        else
            delta_rule_cols(nj, S + j0, HV, HK, o + j0, o_stride, q, k, qk_stride, v + j0, v_stride,
                            g, beta, gb_stride, n);
    }
}

/* ---------------------------------------------------------------------------------------
 * The gated delta rule, a chunk of up to 64 tokens at a time (prefill)
 *
 * Within a chunk (cum_t = g_0 + ... + g_t, the log of the decay since its start), the m delta
 * updates are one triangular system (the "UT transform" of the DeltaNet paper):
 *   T = I + strictly_lower(beta_i (k_i . k_j) exp(cum_i - cum_j))
 *   U = T^-1 (beta v)                  new_values
 *   W = T^-1 (beta exp(cum) k)         k_cumdecay
 * then, with the state S at the chunk's start:
 *   v_new = U - W S
 *   o_i   = exp(cum_i) q_i^T S + sum_{j<=i} (q_i . k_j) exp(cum_i - cum_j) v_new_j
 *   S     = exp(cum_last) S + sum_i exp(cum_last - cum_i) k_i v_new_i^T
 * ------------------------------------------------------------------------------------- */
static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* y[0..n) += a * x[0..n) */
static inline void axpy(float *y, float a, const float *x, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* The three products of a chunk that involve the state, on a block of NJ columns of S (and of
 * U, o): S stays in L1 while every row of the chunk uses it; the row's NJ sums stay in
 * registers. W, qd, kd: (m, HK) rows at stride HK; A: (m, C) lower triangle. */
static inline __attribute__((always_inline)) void
chunk_cols(const int NJ, float *S, int HV, int HK, float *U, float *o, int o_stride, const float *W,
           const float *qd, const float *kd, const float *A, int C, int m, float decay_all) {
    float acc[DN_COLS];
    /* v_new = new_values - k_cumdecay @ S */
    for (int i = 0; i < m; i++) {
        float *Ui = U + (size_t)i * HV;
#pragma omp simd
        for (int j = 0; j < NJ; j++) acc[j] = Ui[j];
        for (int r = 0; r < HK; r++) {
            const float w = W[(size_t)i * HK + r];
            const float *Sr = S + (size_t)r * HV;
#pragma omp simd
            for (int j = 0; j < NJ; j++) acc[j] -= w * Sr[j];
        }
#pragma omp simd
        for (int j = 0; j < NJ; j++) Ui[j] = acc[j];
    }
    /* core_attn_out = (query * exp(cum)) @ S + intra @ v_new */
    for (int i = 0; i < m; i++) {
#pragma omp simd
        for (int j = 0; j < NJ; j++) acc[j] = 0.0f;
        for (int r = 0; r < HK; r++) {
            const float qr = qd[(size_t)i * HK + r];
            const float *Sr = S + (size_t)r * HV;
#pragma omp simd
            for (int j = 0; j < NJ; j++) acc[j] += qr * Sr[j];
        }
        for (int l = 0; l <= i; l++) {
            const float a = A[(size_t)i * C + l];
            const float *Ul = U + (size_t)l * HV;
#pragma omp simd
            for (int j = 0; j < NJ; j++) acc[j] += a * Ul[j];
        }
        memcpy(o + (size_t)i * o_stride, acc, (size_t)NJ * sizeof(float));
    }
    /* S = S * exp(cum_last) + (key * exp(cum_last - cum))^T @ v_new */
    for (int r = 0; r < HK; r++) {
        float *Sr = S + (size_t)r * HV;
#pragma omp simd
        for (int j = 0; j < NJ; j++) acc[j] = Sr[j] * decay_all;
        for (int i = 0; i < m; i++) {
            const float kr = kd[(size_t)i * HK + r];
            const float *Ui = U + (size_t)i * HV;
#pragma omp simd
            for (int j = 0; j < NJ; j++) acc[j] += kr * Ui[j];
        }
#pragma omp simd
        for (int j = 0; j < NJ; j++) Sr[j] = acc[j];
    }
}

static void gated_delta_rule_chunked(float *S, float *o, int o_stride, const float *q, const float *k,
                                     int qk_stride, const float *v, int v_stride, const float *g,
                                     const float *beta, int gb_stride, int n, int HK, int HV, float *scratch) {
    const int C = DELTA_CHUNK;
    float *A = scratch, *U = A + (size_t)C * C, *W = U + (size_t)C * HV, *qd = W + (size_t)C * HK;
    float *kd = qd + (size_t)C * HK, *cum = kd + (size_t)C * HK, *ecum = cum + C;
    for (int t0 = 0; t0 < n; t0 += C) {
        const int m = n - t0 < C ? n - t0 : C;
        const float *qc = q + (size_t)t0 * qk_stride, *kc = k + (size_t)t0 * qk_stride;
#define QI(i) (qc + (size_t)(i) * qk_stride)
#define KI(i) (kc + (size_t)(i) * qk_stride)
#define BETA(i) beta[(size_t)(t0 + (i)) * gb_stride]
        /* cum_decay = cumsum(g) over the chunk */
        float c = 0.0f;
        for (int i = 0; i < m; i++) {
            c += g[(size_t)(t0 + i) * gb_stride];
            cum[i] = c;
            ecum[i] = expf(c);
        }
        /* ut_system = (k_beta @ key^T) * exp(cum_i - cum_j), strictly lower (unit diagonal implied) */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < i; j++) A[i * C + j] = BETA(i) * dot(KI(i), KI(j), HK) * expf(cum[i] - cum[j]);
        /* new_values = solve(ut_system, v * beta); k_cumdecay = solve(ut_system, k * beta * exp(cum)):
         * forward substitution, row i minus the rows before it */
        for (int i = 0; i < m; i++) {
            float *Ui = U + (size_t)i * HV, *Wi = W + (size_t)i * HK;
            const float *vi = v + (size_t)(t0 + i) * v_stride, *ki = KI(i);
            const float bi = BETA(i), be = BETA(i) * ecum[i];
#pragma omp simd
            for (int j = 0; j < HV; j++) Ui[j] = vi[j] * bi;
#pragma omp simd
            for (int j = 0; j < HK; j++) Wi[j] = ki[j] * be;
            for (int j = 0; j < i; j++) {
                axpy(Ui, -A[i * C + j], U + (size_t)j * HV, HV);
                axpy(Wi, -A[i * C + j], W + (size_t)j * HK, HK);
            }
        }
        /* intra-chunk attention: (q_i . k_j) exp(cum_i - cum_j) for j <= i; the decayed query
         * exp(cum_i) q_i and key exp(cum_last - cum_i) k_i the state products use */
        const float last = cum[m - 1];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j <= i; j++) A[i * C + j] = dot(QI(i), KI(j), HK) * expf(cum[i] - cum[j]);
            const float eq = ecum[i], ek = expf(last - cum[i]);
            const float *qi = QI(i), *ki = KI(i);
#pragma omp simd
            for (int r = 0; r < HK; r++) {
                qd[(size_t)i * HK + r] = qi[r] * eq;
                kd[(size_t)i * HK + r] = ki[r] * ek;
            }
        }
        /* v_new, core_attn_out and the new S, a block of columns at a time */
        for (int j0 = 0; j0 < HV; j0 += DN_COLS) {
            const int nj = HV - j0 < DN_COLS ? HV - j0 : DN_COLS;
            float *oc = o + (size_t)t0 * o_stride + j0;
            if (nj == DN_COLS)
                chunk_cols(DN_COLS, S + j0, HV, HK, U + j0, oc, o_stride, W, qd, kd, A, C, m, ecum[m - 1]);
            else
                chunk_cols(nj, S + j0, HV, HK, U + j0, oc, o_stride, W, qd, kd, A, C, m, ecum[m - 1]);
        }
#undef QI
#undef KI
#undef BETA
    }
}

const DeltaNetKernels TIER_TABLE(deltanet_kernels) = {causal_conv1d_silu, l2norm_scaled, gated_delta_rule_recurrent,
                                                      gated_delta_rule_chunked, rmsnorm_gated};
