/*
 * forward.c -- the neural net: the building blocks and one forward pass.
 *
 * Reads like transformers' modeling_qwen3.py: rmsnorm() is Qwen3RMSNorm, rope() is
 * apply_rotary_pos_emb, attention() is eager_attention_forward, swiglu() is the act_fn(gate) *
 * up of Qwen3MLP, and forward() is Qwen3ForCausalLM.forward with Qwen3DecoderLayer.forward
 * inlined in its layer loop. A batch of B tokens goes through each layer together, so every
 * weight matrix is streamed from memory once per batch (prefill) rather than once per token.
 * The tokens of a batch may belong to several sequences, each with its own context (KV cache)
 * and positions (qwen3c_forward_batch): only RoPE, the cache update and attention look at
 * which sequence a token belongs to; one context's forward is a batch of one sequence.
 *
 * Shapes: see the legend at the top of internal.h (L, D, H, NH, NKV, HD, V, C, B).
 * The SIMD kernels (matmuls, attention scores and sums, softmax, SwiGLU) are per CPU tier in
 * kernels/ (kernels/kernels.h); a pass carries the model's tier table (Pass.k).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#define DEFAULT_BATCH 256
#define DEFAULT_CTX_CAP 4096
#define DEFAULT_BATCH_SEQS 64

/* ---------------------------------------------------------------------------------------
 * Building blocks
 * ------------------------------------------------------------------------------------- */

/* Qwen3RMSNorm: o = weight * x / sqrt(mean(x^2) + eps), over `size` elements. */
void rmsnorm(float *o, const float *x, const float *weight, int size, float eps) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int j = 0; j < size; j++) ss += x[j] * x[j];
    float inv = 1.0f / sqrtf(ss / (float)size + eps);
    for (int j = 0; j < size; j++) o[j] = weight[j] * (x[j] * inv);
}

/* out (n, w->rows) = x (n, w->cols) @ W^T: nn.Linear without bias, W in its stored type.
 * Several matmuls that read the same x (q/k/v, gate/up) share one parallel region. Their rows,
 * in units of 16, are split for decode into one contiguous share per thread, of equal weight
 * bytes (unit_at), and x is rounded to q24 blocks before the threads start: each thread
 * streams long runs of consecutive weight rows, which the prefetchers (the hardware's and the
 * q24 kernels' own, q24.h: q24_prefetch) keep at full memory speed (small interleaved chunks
 * cost a fifth of the decode speed). A thread that finishes its share early (a shared machine
 * slows one core down at times) takes chunks from the back of another's (ShareChunks). A batch,
 * which is compute-bound, is split into 8 contiguous pieces per thread taken in turn, each
 * starting on a whole micro-panel of the GEMM (piece_start). Each weight row is read once for
 * all n tokens. */
#define MATMUL_UNIT 16
#define MATMUL_PANEL_UNITS 2 /* units per micro-panel of the widest GEMM (gemm_avx512.h: 32 rows) */

/* Units [u0, u1) of the jobs (16 rows each; first[j] = job j's first unit), all n tokens; the
 * float32 prefill from packed weights (rows_float) reads ps->s->xf, x's copy with padded rows. */
static void matmul_units(const Pass *ps, const MatmulJob *jobs, const int64_t *first, int path,
                         const float *x, int n, int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1;) {
        int j = 0;
        while (u >= first[j + 1]) j++;
        const int64_t end = u1 < first[j + 1] ? u1 : first[j + 1];
        const QTensor *w = jobs[j].w;
        const int64_t r0 = (u - first[j]) * MATMUL_UNIT;
        const int64_t r1 = (end - first[j]) * MATMUL_UNIT < w->rows ? (end - first[j]) * MATMUL_UNIT : w->rows;
        const FloatRowsFn as_float = path == QWEN3C_ACTIVATIONS_Q24 ? q24_float_rows(ps->k, w->type, n) : NULL;
        if (as_float) as_float(jobs[j].out, w->rows, ps->s->xf, w->cols + GEMM_X_PAD, n, w, r0, r1);
        else if (path == QWEN3C_ACTIVATIONS_Q24) q24_any_rows(ps->k, w->type)(jobs[j].out, w->rows, ps->s->xq, n, w, r0, r1);
        else if (path == QWEN3C_ACTIVATIONS_Q16) ps->k->q16->rows(jobs[j].out, w->rows, ps->s->xq, n, w, r0, r1);
        else if (path == QWEN3C_ACTIVATIONS_Q8) ps->k->int8->rows(jobs[j].out, w->rows, ps->s->xq, n, w, r0, r1);
        else ps->k->matmul->rows(jobs[j].out, w->rows, x, n, w, r0, r1);
        u = end;
    }
}

/* The unit where share k of nth starts when the jobs' weight bytes are split evenly (decode
 * reads every byte once, so bytes are its time): the jobs of one call can differ in type, e.g.
 * a Q4_K_M file's Q6_K attn_v rows hold 1.5x the bytes of its Q4_K attn_q / attn_k rows. */
static int64_t unit_at(const MatmulJob *jobs, int n_jobs, const int64_t *first, int k, int nth) {
    if (k >= nth) return first[n_jobs];
    double bytes[4], want = 0.0; /* a job's bytes (n_jobs <= 4, as first[] in matmuls) */
    for (int j = 0; j < n_jobs; j++) want += bytes[j] = (double)(first[j + 1] - first[j]) * (double)jobs[j].w->row_bytes;
    want = want * k / nth;
    int j = 0;
    for (; j < n_jobs - 1 && want >= bytes[j]; j++) want -= bytes[j];
    const int64_t u = first[j] + (int64_t)(want / (double)jobs[j].w->row_bytes + 0.5);
    return u < first[j + 1] ? u : first[j + 1];
}

/* Decode's work sharing. Share k (units [u0, u1), thread k's) is cut into n chunks of about
 * MATMUL_CHUNK_BYTES of weights; its owner takes them from the front, in order, so it still
 * reads one sequential stream; a thread done with its own share takes the chunks left at the
 * back of the others' shares, one at a time. `left` packs the next chunk from the front (low
 * 32 bits) and the end (high 32 bits): one atomic compare-and-swap hands out a chunk. Which
 * thread computes a row changes no result: every row is one kernel call's, whoever makes it.
 * Measured against fixed shares (2 threads, decode, the two alternating in one process): README
 * #20, stop 32. */
#define MATMUL_CHUNK_BYTES (128 << 10)
#define MATMUL_MAX_SHARES 64 /* more threads than this: fixed shares */
typedef struct {
    int64_t u0, u1;
    int n;
    uint64_t left;
} ShareChunks;

/* A chunk of share c (its owner: from the front; another thread: from the back) as units
 * [*a, *b); 0 when the share has none left. */
static int take_chunk(ShareChunks *c, int from_back, int64_t *a, int64_t *b) {
    uint64_t cur = __atomic_load_n(&c->left, __ATOMIC_RELAXED);
    for (;;) {
        const uint32_t front = (uint32_t)cur, back = (uint32_t)(cur >> 32);
        if (front >= back) return 0;
        const uint32_t i = from_back ? back - 1 : front;
        const uint64_t next = from_back ? (uint64_t)i << 32 | front : (uint64_t)back << 32 | (front + 1);
        if (__atomic_compare_exchange_n(&c->left, &cur, next, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            *a = c->u0 + (c->u1 - c->u0) * i / c->n;
            *b = c->u0 + (c->u1 - c->u0) * (i + 1) / c->n;
            return 1;
        }
    }
}

/* The first unit of piece i of a batch's `pieces`: the i-th fraction of the units, moved back
 * to a whole number of micro-panels from the start of its job. The float32 GEMM computes a
 * panel of 32 rows at a time, so a piece edge inside one made both pieces compute it in full
 * (half of it zeros): SmolLM2-135M's 576-row matrices cut that way prefilled 1.04x slower. */
static int64_t piece_start(const int64_t *first, int64_t total, int i, int pieces) {
    if (i >= pieces) return total;
    const int64_t u = total * i / pieces;
    int j = 0;
    while (u >= first[j + 1]) j++;
    return first[j] + (u - first[j]) / MATMUL_PANEL_UNITS * MATMUL_PANEL_UNITS;
}

void matmuls(const Pass *ps, const MatmulJob *jobs, int n_jobs, const float *x, int n) {
    int64_t first[5], total = 0;  /* first unit of each job; first[n_jobs] = total */
    int path = ps->activations, all_float = 1, any_float = 0;
    for (int j = 0; j < n_jobs; j++) {
        first[j] = total;
        total += (jobs[j].w->rows + MATMUL_UNIT - 1) / MATMUL_UNIT;
        const int t = jobs[j].w->type;
        const int as_float = q24_float_rows(ps->k, t, n) != NULL;
        all_float &= as_float;
        any_float |= as_float;
        if ((path == QWEN3C_ACTIVATIONS_Q24 && !jobs[j].w->packed) ||
            (path == QWEN3C_ACTIVATIONS_Q16 && !q16_path_supported(t)) ||
            (path == QWEN3C_ACTIVATIONS_Q8 && !int8_path_supported(t)))
            path = QWEN3C_ACTIVATIONS_F32;
    }
    first[n_jobs] = total;
    any_float &= path == QWEN3C_ACTIVATIONS_Q24;
    /* quantized paths: round x once to 16- or 8-bit blocks for integer dot products */
    const int64_t cols = jobs[0].w->cols;
    if (path == QWEN3C_ACTIVATIONS_Q16) ps->k->q16->quantize(x, n, cols, ps->s->xq);
    if (path == QWEN3C_ACTIVATIONS_Q8) ps->k->int8->quantize(x, n, cols, ps->s->xq);
    const int nt = total < ps->n_threads ? (int)total : ps->n_threads;
    /* q24 for a few tokens: rounded here, before the threads start (a few microseconds, less
     * than the barrier that a shared rounding needs) */
    const int q24_first = path == QWEN3C_ACTIVATIONS_Q24 && n < 8;
    if (q24_first) ps->k->q24->quantize(x, 0, n * (cols / 32), ps->s->xq);
    ShareChunks shares[MATMUL_MAX_SHARES];
    const int chunked = n < 8 && nt <= MATMUL_MAX_SHARES;
    if (chunked) {
        double bytes = 0.0; /* the jobs' weight bytes per unit, on average */
        for (int j = 0; j < n_jobs; j++) bytes += (double)(first[j + 1] - first[j]) * (double)jobs[j].w->row_bytes;
        const double unit_bytes = bytes * MATMUL_UNIT / (double)total;
        for (int k = 0; k < nt; k++) {
            ShareChunks *c = &shares[k];
            c->u0 = unit_at(jobs, n_jobs, first, k, nt);
            c->u1 = unit_at(jobs, n_jobs, first, k + 1, nt);
            const double chunks = (double)(c->u1 - c->u0) * unit_bytes / MATMUL_CHUNK_BYTES;
            c->n = chunks < 1.0 ? 1 : chunks > (double)(c->u1 - c->u0) ? (int)(c->u1 - c->u0) : (int)chunks;
            if (c->u1 <= c->u0) c->n = 0;
            c->left = (uint64_t)(uint32_t)c->n << 32;
        }
    }
#pragma omp parallel num_threads(nt)
    {
        const int tid = thread_id(), nth = thread_count();
        if (any_float) /* rows_float: each thread copies a share of x's rows to xf, GEMM_X_PAD longer */
            for (int t = n * tid / nth; t < n * (tid + 1) / nth; t++)
                memcpy(ps->s->xf + (int64_t)t * (cols + GEMM_X_PAD), x + (int64_t)t * cols, (size_t)cols * sizeof(float));
        const int quantize = path == QWEN3C_ACTIVATIONS_Q24 && !q24_first && !all_float;
        if (quantize) { /* q24: each thread rounds a share of the blocks */
            const int64_t nblk = n * (cols / 32);
            ps->k->q24->quantize(x, nblk * tid / nth, nblk * (tid + 1) / nth, ps->s->xq);
        }
        if (any_float || quantize) {
#pragma omp barrier
        }
        if (n < 8 && !chunked) { /* decode on many threads: one contiguous share per thread */
            matmul_units(ps, jobs, first, path, x, n, unit_at(jobs, n_jobs, first, tid, nth),
                         unit_at(jobs, n_jobs, first, tid + 1, nth));
        } else if (n < 8) { /* decode: its own share's chunks in order, then what is left of the others' */
            int64_t a, b;
            for (int k = 0; k < nt; k++) { /* (all nt shares: the region may have fewer threads) */
                const int owner = (tid + k) % nt;
                while (take_chunk(&shares[owner], k > 0, &a, &b)) matmul_units(ps, jobs, first, path, x, n, a, b);
            }
        } else {     /* a batch: 8 pieces per thread, taken in turn, so that no thread waits long
                      * for another one the machine has slowed down */
            const int pieces = 8 * nth;
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < pieces; i++)
                matmul_units(ps, jobs, first, path, x, n, piece_start(first, total, i, pieces),
                             piece_start(first, total, i + 1, pieces));
        }
    }
}

void matmul(const Pass *ps, float *out, const float *x, int n, const QTensor *w) {
    const MatmulJob job = {out, w};
    matmuls(ps, &job, 1, x, n);
}

/* Rotary position embedding on n_heads vectors of head_dim at one position.
 * Qwen3 pairs element i with i + head_dim/2 (transformers' rotate_half); llama GGUFs, whose
 * q/k rows were permuted by the converter, pair (2i, 2i+1): the same rotation. */
static void rope(float *vec, int n_heads, int head_dim, const float *cos_p, const float *sin_p,
                 int interleaved) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = vec + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cos_p[i] - x1 * sin_p[i];
            v[b] = x1 * cos_p[i] + x0 * sin_p[i];
        }
    }
}

/* act_fn(gate) * up with act_fn = SiLU: hb = silu(hb) * hb2 over n elements (the tier's kernel,
 * large arrays split over the threads). */
static void swiglu(const Kernels *k, float *hb, const float *hb2, int64_t n, int n_threads) {
    const int nt = n >= 65536 ? n_threads : 1;
#pragma omp parallel num_threads(nt)
    {
        const int64_t a = n * thread_id() / thread_count(), b = n * (thread_id() + 1) / thread_count();
        k->nn->swiglu(hb + a, hb2 + a, b - a);
    }
}

/* Embedding lookup: x[t] = embed_tokens.weight[tokens[t]] (a row, dequantized). */
void embed(float *x, const QTensor *emb, const int32_t *tokens, int n) {
    for (int t = 0; t < n; t++)
        dequantize_row(emb->type, (const uint8_t *)emb->data + (size_t)tokens[t] * emb->row_bytes,
                       x + (size_t)t * emb->cols, emb->cols);
}

/* The element offset, in key_cache and in value_cache alike, of the block of cache layer l,
 * kv head h, chunk c: positions c P .. c P + P - 1 (P = kv_chunk), as P/16 key tiles (HD, 16)
 * or P value rows (HD). The caches are chunk-major (chunk, layer, head): a context's first
 * positions of every layer lie together at the front, so the memory it touches grows with its
 * positions, and it can be held in huge pages (fewer TLB misses, no page fault per 4 KB of new
 * positions) without committing the length it does not use yet. */
#define KV_CHUNK_BYTES ((size_t)64 << 20) /* at most this much of one cache per chunk (context_create) */
#define KV_ALIGN       ((size_t)2 << 20)  /* the caches start on a huge page */
static size_t kv_block(const qwen3c_context *ctx, int l, int h, int c) {
    const Config *p = &ctx->transformer->config;
    const size_t LA = (size_t)(p->n_layers - p->n_linear_layers);
    return (((size_t)c * LA + (size_t)l) * (size_t)p->n_kv_heads + (size_t)h) * (size_t)ctx->kv_chunk *
           (size_t)p->head_dim;
}

/* Causal grouped-query attention of layer l for a batch: each sequence's n tokens at positions
 * pos..pos+n-1 attend to its own context's cache. q: (B, NH*HD), rows t0..t0+n-1 for a
 * sequence. The cache holds this layer's keys in tiles of 16 positions, each tile
 * transposed (HD, 16), so that the scores of one query against a tile are 16 contiguous
 * lanes and a tile is one contiguous read; values in rows (HD). Both are float32, or IEEE
 * halves (the context's kv_type), widened to float32 as they are read. Both are stored in
 * chunks of kv_chunk positions (kv_block): the kernels run once per chunk, the weighted sum
 * going on from one chunk to the next (its bits are those of one run over all positions).
 * out: (B, NH*HD). Query head h reads kv head h / (NH/NKV); the rows (token t, head h) of one
 * kv head of one sequence are done ATT_ROWS at a time so each key is loaded once for all of
 * them; these jobs, over all sequences, are shared out between the threads.
 * att_scratch: (n_threads, ATT_ROWS, att_C) with att_C >= every sequence's cache length.
 * l indexes the caches' layers: qwen35 caches its attention layers only. */
void attention(const Kernels *k, float *out, const float *q, Seq *seqs, int n_seqs, int l,
               const Config *p, float *att_scratch, int att_C, int n_threads) {
    const int NH = p->n_heads, NKV = p->n_kv_heads, HD = p->head_dim, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HD);
    int jobs = 0;
    for (int i = 0; i < n_seqs; i++) { /* per sequence: NKV heads x blocks of ATT_ROWS rows */
        seqs[i].job0 = jobs;
        jobs += NKV * ((seqs[i].n * group + ATT_ROWS - 1) / ATT_ROWS);
    }
    int nt = jobs < n_threads ? jobs : n_threads;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int job_all = 0; job_all < jobs; job_all++) {
        int si = 0;
        while (si + 1 < n_seqs && job_all >= seqs[si + 1].job0) si++;
        const Seq *sq = &seqs[si];
        const qwen3c_context *cx = sq->ctx;
        const int n = sq->n, pos = sq->pos, C = cx->n_ctx_pad, P = cx->kv_chunk, f16 = cx->kv_type == QWEN3C_KV_F16;
        const size_t esz = f16 ? sizeof(uint16_t) : sizeof(float); /* bytes per cache entry */
        const char *kt = (const char *)cx->state.key_cache, *vc = (const char *)cx->state.value_cache;
        const float *q_seq = q + (size_t)sq->t0 * NH * HD;
        float *out_seq = out + (size_t)sq->t0 * NH * HD;
        const int rows_per_kv = n * group;
        const int blocks_per_kv = (rows_per_kv + ATT_ROWS - 1) / ATT_ROWS;
        const int job = job_all - sq->job0;
        const int kvh = job / blocks_per_kv, r0 = (job % blocks_per_kv) * ATT_ROWS;
        const int nr = rows_per_kv - r0 < ATT_ROWS ? rows_per_kv - r0 : ATT_ROWS;
        float *att = att_scratch + (size_t)thread_id() * ATT_ROWS * att_C;
        const float *qr[ATT_ROWS];
        int len[ATT_ROWS]; /* causal mask: row r attends to positions 0..pos+t */
        float *orow[ATT_ROWS];
        int n_max = 0;
        for (int r = 0; r < nr; r++) {
            int t = (r0 + r) / group, h = kvh * group + (r0 + r) % group;
            qr[r] = q_seq + (size_t)t * NH * HD + (size_t)h * HD;
            orow[r] = out_seq + (size_t)t * NH * HD + (size_t)h * HD;
            len[r] = pos + t + 1;
            if (len[r] > n_max) n_max = len[r];
        }
        /* scores = q . k / sqrt(head_dim), straight into att (rows of C floats), chunk by chunk */
        for (int c0 = 0; c0 < n_max; c0 += P)
            k->attention->scores(nr, qr, kt + kv_block(cx, l, kvh, c0 / P) * esz, f16, HD,
                                 n_max - c0 < P ? n_max - c0 : P, scale, att + c0, (size_t)C);
        for (int r = 0; r < nr; r++) {
            float *a = att + (size_t)r * C;
            k->nn->softmax(a, len[r]);
            if (sq->cap) { /* attn_weights[l, h, t, 0..pos+t] (the masked rest stays 0) */
                const AttnCapture *cap = sq->cap;
                const int t = (r0 + r) / group, h = kvh * group + (r0 + r) % group;
                float *dst = cap->p + (((size_t)l * NH + h) * cap->n_q + cap->q0 + t) * cap->n_k;
                memcpy(dst, a, (size_t)len[r] * sizeof(float));
            }
            for (int s = len[r]; s < n_max; s++) a[s] = 0.0f; /* the causal mask, for the shared sums */
        }
        /* out = softmax(scores) @ v, the sums going on from chunk to chunk */
        for (int c0 = 0; c0 < n_max; c0 += P) {
            int len_c[ATT_ROWS]; /* each row's causal length within the chunk */
            for (int r = 0; r < nr; r++) len_c[r] = len[r] - c0 < 0 ? 0 : len[r] - c0 < P ? len[r] - c0 : P;
            k->attention->weighted_sum(nr, orow, att + c0, (size_t)C, vc + kv_block(cx, l, kvh, c0 / P) * esz, f16,
                                       len_c, HD, c0 > 0);
        }
    }
}

/* The sequence token t (a row of the batch) belongs to */
const Seq *seq_of_token(const Seq *seqs, int t) {
    int si = 0;
    while (t >= seqs[si].t0 + seqs[si].n) si++;
    return &seqs[si];
}

/* The last layer's work past its keys and values (attention, o_proj, the MLP) and the final
 * norm matter only for the rows whose logits are wanted: the last token of each sequence that
 * has logits (transformers' logits_to_keep). These rows of the buffers (the residual x, the
 * queries, ...) move to the front, each sequence is shortened to its kept rows and their count
 * is returned: 0 when no sequence has logits (a prompt chunk before the last), the caller then
 * stops there. Else at least min(n, Q24_FLOAT_MIN_TOKENS) rows are kept (more of the
 * sequences' last tokens): the matmuls then take the kernels the whole batch takes, and as a
 * row's sums never depend on the rows computed beside it, the logits keep their bits.
 * output_row_count() is that count alone (seqs untouched). */
int output_row_count(const Seq *seqs, int n_seqs, int n) {
    int m = 0; /* rows with logits */
    for (int i = 0; i < n_seqs; i++) {
        if (seqs[i].cap) return n; /* attention capture wants every row's probabilities */
        m += seqs[i].logits && seqs[i].n > 0;
    }
    const int least = m == 0 ? 0 : n < Q24_FLOAT_MIN_TOKENS ? n : Q24_FLOAT_MIN_TOKENS;
    return m > least ? m : least;
}

int output_rows(Seq *seqs, int n_seqs, int n, float *const *bufs, const int *widths, int n_bufs) {
    const int kept = output_row_count(seqs, n_seqs, n);
    if (kept == n) return n;
    int m = 0, spare = 0; /* rows with logits; rows that can pad them */
    for (int i = 0; i < n_seqs; i++) {
        const int base = seqs[i].logits && seqs[i].n > 0;
        m += base;
        spare += seqs[i].n - base;
    }
    const int pad = kept - m; /* taken from the last sequences' spare rows */
    int t = 0;
    for (int i = 0; i < n_seqs; i++) {
        Seq *sq = &seqs[i];
        const int base = sq->logits && sq->n > 0, own = sq->n - base;
        spare -= own; /* now: the spare rows of the sequences after this one */
        const int want = pad - spare, keep = base + (want <= 0 ? 0 : want < own ? want : own);
        const int from = sq->t0 + sq->n - keep; /* >= t: rows only move down */
        for (int b = 0; b < n_bufs; b++)
            memmove(bufs[b] + (size_t)t * widths[b], bufs[b] + (size_t)from * widths[b],
                    (size_t)keep * widths[b] * sizeof(float));
        sq->pos += sq->n - keep;
        sq->t0 = t;
        sq->n = keep;
        t += keep;
    }
    return t;
}

/* past_key_values.update for one token at position `at` of ctx's cache layer cl: its keys k
 * (NKV*HD) go into their tiles (transposed), its values v (NKV*HD) into their rows; rounded to
 * IEEE halves for an f16 cache */
void kv_store(const qwen3c_context *ctx, int cl, const float *k, const float *v, int at) {
    const int NKV = ctx->transformer->config.n_kv_heads, HD = ctx->transformer->config.head_dim;
    const int P = ctx->kv_chunk, c = at / P, off = at % P, f16 = ctx->kv_type == QWEN3C_KV_F16;
    const size_t tile0 = (size_t)(off / KV_TILE) * KV_TILE * HD, lane = (size_t)(off % KV_TILE);
    for (int h = 0; h < NKV; h++) {
        const float *kh = k + (size_t)h * HD, *vh = v + (size_t)h * HD;
        const size_t blk = kv_block(ctx, cl, h, c); /* this chunk's tiles (P/16, HD, 16) and rows (P, HD) */
        if (!f16) {
            float *tile = (float *)ctx->state.key_cache + blk + tile0;
            for (int i = 0; i < HD; i++) tile[(size_t)i * KV_TILE + lane] = kh[i];
            memcpy((float *)ctx->state.value_cache + blk + (size_t)off * HD, vh, (size_t)HD * sizeof(float));
            continue;
        }
        uint16_t *tile = (uint16_t *)ctx->state.key_cache + blk + tile0;
        for (int i0 = 0; i0 < HD; i0 += KV_TILE) { /* round 16 keys at a time, then scatter */
            uint16_t kr[KV_TILE];
            const int m = HD - i0 < KV_TILE ? HD - i0 : KV_TILE;
            float_to_half_row(kh + i0, kr, m);
            for (int i = 0; i < m; i++) tile[(size_t)(i0 + i) * KV_TILE + lane] = kr[i];
        }
        float_to_half_row(vh, (uint16_t *)ctx->state.value_cache + blk + (size_t)off * HD, HD);
    }
}

/* One token's queries q (NH*HD) at position `at` of a context with state cs: q_norm (RMSNorm
 * over each head's head_dim, Qwen3 only), then apply_rotary_pos_emb */
static void query_norm_rope(const Config *p, const LayerWeights *lw, const RunState *cs, float *q, int at) {
    const int HD = p->head_dim;
    if (p->qk_norm)
        for (int h = 0; h < p->n_heads; h++) rmsnorm(q + h * HD, q + h * HD, lw->q_norm, HD, p->norm_eps);
    rope(q, p->n_heads, HD, cs->rope_cos + (size_t)at * (HD / 2), cs->rope_sin + (size_t)at * (HD / 2),
         p->rope_interleaved);
}

/* ---------------------------------------------------------------------------------------
 * The forward pass for one batch of n tokens (already validated): the tokens of seqs[0..n_seqs)
 * in rows t0.., each sequence in its own context. all_logits and hidden: one sequence only.
 * ------------------------------------------------------------------------------------- */
static void forward(const Pass *ps, const Transformer *tf, Seq *seqs, int n_seqs, const int32_t *tokens,
                    int n, int all_logits, float *hidden, int64_t hidden_stride_layer, float *logits_scratch) {
    const Config *p = &tf->config;
    const TransformerWeights *w = &tf->weights;
    RunState *s = ps->s;
    const int D = p->dim, HD = p->head_dim, NH = p->n_heads, NKV = p->n_kv_heads;
    const int QD = NH * HD, KVD = NKV * HD, nt = ps->n_threads;
    const int par = n >= 8 ? nt : 1; /* threads for the per-token loops of a batch */

    /* inputs_embeds = embed_tokens(input_ids) */
    embed(s->x, &w->token_embedding, tokens, n);
    if (hidden) memcpy(hidden, s->x, (size_t)n * D * sizeof(float));

    for (int l = 0; l < p->n_layers; l++) {
        const LayerWeights *lw = &w->layers[l];

        /* hidden_states = input_layernorm(hidden_states) */
#pragma omp parallel for num_threads(par) schedule(static)
        for (int t = 0; t < n; t++) rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, lw->attn_norm, D, p->norm_eps);

        /* the last layer, when only logits are wanted, goes on past its keys and values with the
         * rows that feed them only (output_rows): their queries alone are projected */
        const int keep = l == p->n_layers - 1 && !all_logits && !hidden ? output_row_count(seqs, n_seqs, n) : n;

        /* query_states, key_states, value_states = q_proj(x), k_proj(x), v_proj(x) */
        const MatmulJob qkv[3] = {{s->q, &lw->wq}, {s->k, &lw->wk}, {s->v, &lw->wv}};
        if (keep == n) matmuls(ps, qkv, 3, s->xb, n);
        else matmuls(ps, qkv + 1, 2, s->xb, n);

#pragma omp parallel for num_threads(par) schedule(static)
        for (int t = 0; t < n; t++) {
            const Seq *sq = seq_of_token(seqs, t); /* its positions and its cache */
            const RunState *cs = &sq->ctx->state;
            const int at = sq->pos + (t - sq->t0);
            float *k = s->k + (size_t)t * KVD, *v = s->v + (size_t)t * KVD;
            if (keep == n) query_norm_rope(p, lw, cs, s->q + (size_t)t * QD, at);
            /* k_norm: RMSNorm over each head's head_dim (Qwen3 only), then RoPE at `at` */
            if (p->qk_norm)
                for (int h = 0; h < NKV; h++) rmsnorm(k + h * HD, k + h * HD, lw->k_norm, HD, p->norm_eps);
            rope(k, NKV, HD, cs->rope_cos + (size_t)at * (HD / 2), cs->rope_sin + (size_t)at * (HD / 2),
                 p->rope_interleaved);
            /* past_key_values.update: store k (into its tile, transposed) and v at `at` */
            kv_store(sq->ctx, l, k, v, at);
        }

        if (keep < n) { /* the last layer: the rows that feed logits (the residual x, the normed xb) */
            float *const bufs[2] = {s->x, s->xb};
            const int widths[2] = {D, D};
            n = output_rows(seqs, n_seqs, n, bufs, widths, 2);
            if (n == 0) return; /* no logits wanted: the keys and values were all */
            matmul(ps, s->q, s->xb, n, &lw->wq);
#pragma omp parallel for num_threads(n >= 8 ? nt : 1) schedule(static)
            for (int t = 0; t < n; t++) {
                const Seq *sq = seq_of_token(seqs, t);
                query_norm_rope(p, lw, &sq->ctx->state, s->q + (size_t)t * QD, sq->pos + (t - sq->t0));
            }
        }

        /* attn_output = softmax(q k^T / sqrt(d) + causal_mask) v, grouped-query, per sequence */
        attention(ps->k, s->att_out, s->q, seqs, n_seqs, l, p, s->att, ps->att_C, nt);

        /* hidden_states = residual + o_proj(attn_output) */
        matmul(ps, s->xb2, s->att_out, n, &lw->wo);
        for (int64_t i = 0; i < (int64_t)n * D; i++) s->x[i] += s->xb2[i];

        /* hidden_states = residual + mlp(post_attention_layernorm(hidden_states)) */
        mlp_block(ps, tf, lw, n);
        if (hidden) memcpy(hidden + (size_t)(l + 1) * hidden_stride_layer, s->x, (size_t)n * D * sizeof(float));
    }

    /* logits = lm_head(norm(hidden_states)) */
    final_norm_logits(ps, tf, seqs, n_seqs, n, all_logits,
                      hidden ? hidden + (size_t)(p->n_layers + 1) * hidden_stride_layer : NULL, logits_scratch);
}

/* The second half of a decoder layer, on the residual stream s->x of n tokens. */
void mlp_block(const Pass *ps, const Transformer *tf, const LayerWeights *lw, int n) {
    const Config *p = &tf->config;
    RunState *s = ps->s;
    const int D = p->dim, par = n >= 8 ? ps->n_threads : 1;

    /* hidden_states = post_attention_layernorm(hidden_states) */
#pragma omp parallel for num_threads(par) schedule(static)
    for (int t = 0; t < n; t++) rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, lw->ffn_norm, D, p->norm_eps);

    /* mlp: down_proj(act_fn(gate_proj(x)) * up_proj(x)) */
    const MatmulJob gate_up[2] = {{s->hb, &lw->w1}, {s->hb2, &lw->w3}};
    matmuls(ps, gate_up, 2, s->xb, n);
    swiglu(ps->k, s->hb, s->hb2, (int64_t)n * p->hidden_dim, ps->n_threads);
    matmul(ps, s->xb2, s->hb, n, &lw->w2);

    /* hidden_states = residual + mlp output */
    for (int64_t i = 0; i < (int64_t)n * D; i++) s->x[i] += s->xb2[i];
}

/* The end of the model: norm, then the LM head, for one sequence (all its tokens with
 * all_logits or hidden, else its last) or for the last token of each of several. */
void final_norm_logits(const Pass *ps, const Transformer *tf, Seq *seqs, int n_seqs, int n, int all_logits,
                       float *hidden, float *logits_scratch) {
    const Config *p = &tf->config;
    const TransformerWeights *w = &tf->weights;
    RunState *s = ps->s;
    const int D = p->dim;
    if (n_seqs == 1) {
        /* hidden_states = norm(hidden_states): all tokens when asked for, else the last one */
        float *logits = seqs[0].logits;
        int first = (all_logits || hidden) ? 0 : n - 1;
        for (int t = first; t < n; t++) rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, w->rms_final, D, p->norm_eps);
        if (hidden) memcpy(hidden, s->xb, (size_t)n * D * sizeof(float));

        /* logits = lm_head(hidden_states) */
        if (logits) {
            if (all_logits) matmul(ps, logits, s->xb, n, &w->wcls);
            else matmul(ps, logits, s->xb + (size_t)(n - 1) * D, 1, &w->wcls);
        }
        return;
    }
    /* several sequences: the last token of each one that wants logits, normed into rows of xb,
     * through lm_head together (its weights read once), then handed out */
    int m = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (!seqs[i].logits) continue;
        const int t = seqs[i].t0 + seqs[i].n - 1;
        rmsnorm(s->xb + (size_t)m * D, s->x + (size_t)t * D, w->rms_final, D, p->norm_eps);
        m++;
    }
    if (m == 0) return;
    const int64_t V = p->vocab_size;
    matmul(ps, logits_scratch, s->xb, m, &w->wcls);
    m = 0;
    for (int i = 0; i < n_seqs; i++)
        if (seqs[i].logits) memcpy(seqs[i].logits, logits_scratch + (size_t)(m++) * V, (size_t)V * sizeof(float));
}

/* ---------------------------------------------------------------------------------------
 * Context: allocation and the public forward
 * ------------------------------------------------------------------------------------- */
/* The activations of a batch of B tokens: x, xb, xb2 (+ a spare block), q, att_out, k, v, hb,
 * hb2, qwen35's (qkv, conv_out, z, core, beta, g, qg, gate), the quantized matmul input of
 * the activations path `act` for the widest matmul input (H, NH*HD, D or qwen35's NV*HV),
 * 64-byte padded, and (q24 with a float32 prefill) that input's padded float copy, xf.
 * activation_floats() counts them, carve_activations() points s's fields into m and returns
 * the rest of m. */
/* the widest input of any matmul: floats per token */
static int64_t matmul_in_width(const Config *p) {
    const int64_t D = p->dim, H = p->hidden_dim, QD = (int64_t)p->n_heads * p->head_dim;
    const int64_t VD = (int64_t)p->linear_n_v_heads * p->linear_v_head_dim;
    int64_t widest = H > QD ? (H > D ? H : D) : (QD > D ? QD : D);
    return VD > widest ? VD : widest;
}

/* floats of RunState.xq, and of RunState.xf (0: not needed) */
static int64_t xq_floats(const qwen3c_model *model, int act, int B) {
    const int64_t widest = matmul_in_width(&model->config);
    const Kernels *k = model->kernels;
    const size_t xq_bytes = act == QWEN3C_ACTIVATIONS_Q16 ? k->q16->act_size(B, widest)
                          : act == QWEN3C_ACTIVATIONS_Q8  ? k->int8->act_size(B, widest)
                          : act == QWEN3C_ACTIVATIONS_Q24 && model->packed ? k->q24->act_size(B, widest) : 0;
    return ((int64_t)xq_bytes + 63) / 64 * 16;
}
static int64_t xf_floats(const qwen3c_model *model, int act, int B) {
    const Kernels *k = model->kernels;
    const int used = act == QWEN3C_ACTIVATIONS_Q24 && model->packed && (k->q24->rows_float || k->q24k->rows_float);
    return used ? (int64_t)B * (matmul_in_width(&model->config) + GEMM_X_PAD) : 0;
}

/* floats per token of qwen35's activations (0 for other models) */
static int64_t qwen35_floats(const Config *p) {
    if (!p->attn_output_gate) return 0;
    const int64_t VD = (int64_t)p->linear_n_v_heads * p->linear_v_head_dim;
    const int64_t CD = 2 * (int64_t)p->linear_n_k_heads * p->linear_k_head_dim + VD;
    const int64_t QD = (int64_t)p->n_heads * p->head_dim;
    return 2 * CD + 2 * VD + 2 * (int64_t)p->linear_n_v_heads + 3 * QD;
}

static int64_t activation_floats(const Config *p, int64_t B, int64_t xqf, int64_t xff) {
    const int64_t QD = (int64_t)p->n_heads * p->head_dim, KVD = (int64_t)p->n_kv_heads * p->head_dim;
    return xqf + xff + B * p->dim * 4 + B * QD * 2 + B * KVD * 2 + B * p->hidden_dim * 2 + B * qwen35_floats(p);
}

static float *carve_activations(RunState *s, float *m, const Config *p, int64_t B, int64_t xqf, int64_t xff) {
    const int64_t D = p->dim, H = p->hidden_dim;
    const int64_t QD = (int64_t)p->n_heads * p->head_dim, KVD = (int64_t)p->n_kv_heads * p->head_dim;
    s->xq = xqf ? (void *)m : NULL; m += xqf;
    s->xf = xff ? m : NULL; m += xff;
    s->x = m; m += B * D;
    s->xb = m; m += B * D;
    s->xb2 = m; m += B * D;
    s->q = m; m += B * QD;
    s->att_out = m; m += B * QD;
    s->k = m; m += B * KVD;
    s->v = m; m += B * KVD;
    s->hb = m; m += B * H;
    s->hb2 = m; m += B * H;
    m += B * D; /* spare row block (keeps the layout simple to extend) */
    if (p->attn_output_gate) { /* qwen35 */
        const int64_t NV = p->linear_n_v_heads, VD = NV * p->linear_v_head_dim;
        const int64_t CD = 2 * (int64_t)p->linear_n_k_heads * p->linear_k_head_dim + VD;
        s->qkv = m; m += B * CD;
        s->conv_out = m; m += B * CD;
        s->z = m; m += B * VD;
        s->core = m; m += B * VD;
        s->beta = m; m += B * NV;
        s->g = m; m += B * NV;
        s->qg = m; m += B * QD * 2;
        s->gate = m; m += B * QD;
    }
    return m;
}

static int check_activations(int act, char *err, size_t err_size) {
    if (act != QWEN3C_ACTIVATIONS_Q16 && act != QWEN3C_ACTIVATIONS_F32 && act != QWEN3C_ACTIVATIONS_Q8 &&
        act != QWEN3C_ACTIVATIONS_Q24)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "activations %d is not one of QWEN3C_ACTIVATIONS_F32 (0), _Q16 (1), _Q8 (2), _Q24 (3)", act);
    return QWEN3C_OK;
}

qwen3c_context_params qwen3c_context_default_params(void) {
    qwen3c_context_params p = {0, 0, 0, QWEN3C_ACTIVATIONS_Q24, QWEN3C_KV_F32, 0};
    return p;
}

int qwen3c_context_create(const qwen3c_model *model, const qwen3c_context_params *params,
                          qwen3c_context **out, char *err, size_t err_size) {
    if (!model || !out) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "model and out must not be NULL");
    qwen3c_context_params prm = params ? *params : qwen3c_context_default_params();
    const Config *p = &model->config;
    int n_ctx = prm.n_ctx;
    if (n_ctx < 0 || n_ctx > (1 << 22))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "n_ctx %d is out of range (0..%d)", n_ctx, 1 << 22);
    if (n_ctx == 0) n_ctx = p->n_ctx_train < DEFAULT_CTX_CAP ? p->n_ctx_train : DEFAULT_CTX_CAP;
    int n_threads = prm.n_threads;
    if (n_threads < 0 || n_threads > 1024)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "n_threads %d is out of range (0..1024)", n_threads);
    if (n_threads == 0) n_threads = cpu_count();
    n_threads = thread_limit(n_threads); /* 1 in a build without OpenMP */
    int n_batch = prm.n_batch;
    if (n_batch < 0 || n_batch > 65536)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "n_batch %d is out of range", n_batch);
    if (n_batch == 0) n_batch = DEFAULT_BATCH;
    if (n_batch > n_ctx) n_batch = n_ctx;
    if (prm.n_checkpoints < 0 || prm.n_checkpoints > 1024)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "n_checkpoints %d is out of range (0..1024)",
                           prm.n_checkpoints);

    const int n_ctx_pad = (n_ctx + KV_TILE - 1) / KV_TILE * KV_TILE;
    const int64_t HD = p->head_dim, B = n_batch, C = n_ctx_pad;
    const int64_t KVD = (int64_t)p->n_kv_heads * HD;
    /* one allocation, carved below (calloc: untouched KV pages cost no memory) */
    const int act = prm.activations;
    if (check_activations(act, err, err_size)) return QWEN3C_ERR_INVALID_ARG;
    const int kv_type = prm.kv_type;
    if (kv_type != QWEN3C_KV_F32 && kv_type != QWEN3C_KV_F16)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "kv_type %d is not one of QWEN3C_KV_F32 (0), QWEN3C_KV_F16 (1)", kv_type);
    /* The KV caches (keys, values) of the layers with attention (qwen35: one in
     * full_attention_interval), in chunks of P positions (kv_block): P the largest power of two
     * (16..8192) whose chunk of one cache is at most KV_CHUNK_BYTES (Qwen3-0.6B: 512 positions
     * of float32, 59 MB), or the whole cache when it is shorter. 2 MB aligned and advised as
     * huge pages; calloc: the chunks not reached yet cost no memory (a chunk is committed whole
     * when its first position is written: every huge page of it holds some layer's first
     * tile). Measured on Qwen3-0.6B Q5_K_M at positions 512-640, against the former
     * layer-major layout in 4 KB pages: decode 1.04x (kv_store: 26 -> 7 us per layer), prefill
     * 1.05x; one chunk of 1024 positions 1.05x, chunks of 128 1.02x. */
    const size_t kv_pos_bytes = (size_t)(p->n_layers - p->n_linear_layers) * (size_t)KVD *
                                (kv_type == QWEN3C_KV_F16 ? sizeof(uint16_t) : sizeof(float));
    int P = KV_TILE;
    while (P < 8192 && (size_t)(2 * P) * kv_pos_bytes <= KV_CHUNK_BYTES) P *= 2;
    const char *chunk_env = getenv("QWEN3C_KV_CHUNK"); /* a test knob: chunks of that many positions */
    if (chunk_env && *chunk_env) {
        char *end = NULL;
        const long v = strtol(chunk_env, &end, 10);
        if (*end || v < KV_TILE || v > 65536 || v % KV_TILE)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                               "QWEN3C_KV_CHUNK=%.32s is not a multiple of %d in %d..65536", chunk_env, KV_TILE, KV_TILE);
        P = (int)v;
    }
    if (P > C) P = (int)C;
    const size_t kv_bytes = kv_pos_bytes * (size_t)((C + P - 1) / P * P); /* one cache */
    const int64_t xqf = xq_floats(model, act, n_batch), xff = xf_floats(model, act, n_batch);
    int64_t total = activation_floats(p, B, xqf, xff) + (int64_t)n_threads * ATT_ROWS * C + C * (HD / 2) * 2;
    qwen3c_context *ctx = calloc(1, sizeof(*ctx));
    float *mem = calloc((size_t)total, sizeof(float));
    char *kv_mem = calloc(2 * kv_bytes + KV_ALIGN, 1);
    if (!ctx || !mem || !kv_mem) {
        free(ctx);
        free(mem);
        free(kv_mem);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM,
                           "out of memory for a context of %d tokens (%.1f MB)", n_ctx,
                           ((double)total * 4 + 2.0 * (double)kv_bytes) / 1e6);
    }
    RunState *s = &ctx->state;
    float *m = carve_activations(s, mem, p, B, xqf, xff);
    s->att = m; m += (int64_t)n_threads * ATT_ROWS * C;
    s->rope_cos = m; m += C * (HD / 2);
    s->rope_sin = m; m += C * (HD / 2);
    s->memory = mem;
    char *kv0 = kv_mem + (KV_ALIGN - (uintptr_t)kv_mem % KV_ALIGN) % KV_ALIGN;
    s->key_cache = kv0;              /* float or uint16_t entries: kv_type */
    s->value_cache = kv0 + kv_bytes;
    s->kv_memory = kv_mem;
    os_advise_huge(kv0, 2 * kv_bytes);

    /* RoPE tables, as Qwen3RotaryEmbedding: inv_freq[i] = theta^(-2i/RD) in float32 (RD = rope_dim:
     * head_dim, or qwen35's partial rotary dims, whose entries i >= RD/2 stay unused),
     * angle = position * inv_freq in float32, then cos/sin */
    const int64_t RD = p->rope_dim > 0 ? p->rope_dim : HD;
    for (int64_t i = 0; i < RD / 2; i++) {
        float inv_freq = (float)(1.0 / pow((double)p->rope_theta, (double)(2 * i) / (double)RD));
        for (int64_t pos = 0; pos < C; pos++) {
            float angle = (float)pos * inv_freq;
            s->rope_cos[pos * (HD / 2) + i] = (float)cos((double)angle);
            s->rope_sin[pos * (HD / 2) + i] = (float)sin((double)angle);
        }
    }
    ctx->transformer = model;
    ctx->n_ctx = n_ctx;
    ctx->n_ctx_pad = n_ctx_pad;
    ctx->kv_chunk = P;
    ctx->n_threads = n_threads;
    ctx->n_batch = n_batch;
    ctx->activations = act;
    ctx->kv_type = kv_type;
    /* qwen35: the Gated DeltaNet layers' conv and recurrent states */
    if (p->attn_output_gate) {
        int rc = qwen35_state_create(ctx, prm.n_checkpoints, err, err_size);
        if (rc) {
            qwen3c_context_free(ctx);
            return rc;
        }
    }
    *out = ctx;
    return QWEN3C_OK;
}

void qwen3c_context_free(qwen3c_context *ctx) {
    if (!ctx) return;
    qwen35_state_free(ctx->rs);
    free(ctx->state.memory);
    free(ctx->state.kv_memory);
    free(ctx);
}

int qwen3c_context_n_ctx(const qwen3c_context *ctx) { return ctx->n_ctx; }
int qwen3c_context_n_threads(const qwen3c_context *ctx) { return ctx->n_threads; }

static int check_forward_args(const qwen3c_context *ctx, const int32_t *tokens, int n_tokens, int pos,
                              char *err, size_t err_size) {
    if (!tokens || n_tokens < 1)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "forward needs at least one token");
    if (pos < 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "position %d is negative", pos);
    if ((int64_t)pos + n_tokens > ctx->n_ctx)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_CONTEXT,
                           "%d tokens at position %d do not fit in the context of %d tokens",
                           n_tokens, pos, ctx->n_ctx);
    const int V = ctx->transformer->config.vocab_size;
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                               "token id %d at index %d is outside the vocabulary [0, %d)", tokens[i], i, V);
    return QWEN3C_OK;
}

/* The forward of the public calls: chunks of n_batch tokens (only the last chunk's last token
 * needs logits unless all_logits); hidden and attn (both optional) as in qwen3c.h */
static int forward_calls(qwen3c_context *ctx, const int32_t *tokens, int n_tokens, int pos, float *logits,
                         int all_logits, float *hidden, float *attn, char *err, size_t err_size) {
    if (!ctx) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "context is NULL");
    int rc = check_forward_args(ctx, tokens, n_tokens, pos, err, err_size);
    if (!rc && ctx->rs) rc = qwen35_state_check(ctx, pos, err, err_size);
    if (rc) return rc;
    if (ctx->rs) qwen35_state_seek(ctx, pos); /* the recurrent state at pos */
    const Config *p = &ctx->transformer->config;
    const int64_t V = p->vocab_size, D = p->dim;
    const int64_t hidden_stride_layer = (int64_t)n_tokens * D;
    AttnCapture cap = {attn, n_tokens, pos + n_tokens, 0};
    if (attn) memset(attn, 0, (size_t)p->n_layers * p->n_heads * n_tokens * (size_t)(pos + n_tokens) * sizeof(float));
    for (int c0 = 0; c0 < n_tokens; c0 += ctx->n_batch) {
        int n = n_tokens - c0 < ctx->n_batch ? n_tokens - c0 : ctx->n_batch;
        int last = c0 + n == n_tokens;
        float *lg = NULL;
        if (logits && all_logits) lg = logits + (size_t)c0 * V;
        else if (logits && last) lg = logits;
        const Pass ps = {&ctx->state, ctx->n_threads, ctx->activations, ctx->n_ctx_pad, ctx->transformer->kernels};
        cap.q0 = c0;
        Seq seq = {ctx, 0, n, pos + c0, lg, 0, attn ? &cap : NULL};
        (ctx->rs ? forward_qwen35 : forward)(&ps, ctx->transformer, &seq, 1, tokens + c0, n, all_logits,
                                             hidden ? hidden + (size_t)c0 * D : NULL, hidden_stride_layer, NULL);
    }
    ctx->n_past = pos + n_tokens;
    return QWEN3C_OK;
}

int qwen3c_forward_trace(qwen3c_context *ctx, const int32_t *tokens, int n_tokens, int pos,
                         float *logits, int all_logits, float *hidden, char *err, size_t err_size) {
    return forward_calls(ctx, tokens, n_tokens, pos, logits, all_logits, hidden, NULL, err, err_size);
}

int qwen3c_forward(qwen3c_context *ctx, const int32_t *tokens, int n_tokens, int pos, float *logits,
                   int all_logits, char *err, size_t err_size) {
    return forward_calls(ctx, tokens, n_tokens, pos, logits, all_logits, NULL, NULL, err, err_size);
}

/* ---------------------------------------------------------------------------------------
 * Inspection: attention probabilities, the LM head on any hidden state (qwen3c.h, "viz")
 * ------------------------------------------------------------------------------------- */
int qwen3c_forward_attention(qwen3c_context *ctx, const int32_t *tokens, int n_tokens, int pos,
                             float *logits, int all_logits, float *hidden, float *attn, char *err,
                             size_t err_size) {
    if (!attn) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "attn must not be NULL");
    if (ctx && ctx->transformer->config.n_linear_layers > 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "attention capture is not supported for Qwen3.5 (its Gated DeltaNet layers have "
                           "no attention probabilities; the trace and the logit lens work)");
    return forward_calls(ctx, tokens, n_tokens, pos, logits, all_logits, hidden, attn, err, err_size);
}

int qwen3c_lm_head(qwen3c_context *ctx, const float *hidden, int n, float *logits, char *err,
                   size_t err_size) {
    if (!ctx || !hidden || !logits)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "context, hidden and logits must not be NULL");
    if (n < 1) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "lm_head needs at least one hidden state, got %d", n);
    const Config *p = &ctx->transformer->config;
    const TransformerWeights *w = &ctx->transformer->weights;
    const int D = p->dim;
    const int64_t V = p->vocab_size;
    float *xb = ctx->state.xb; /* (n_batch, D) scratch, as the end of forward() uses it */
    for (int c0 = 0; c0 < n; c0 += ctx->n_batch) {
        const int m = n - c0 < ctx->n_batch ? n - c0 : ctx->n_batch;
        /* hidden_states = norm(hidden_states); logits = lm_head(hidden_states) */
        for (int t = 0; t < m; t++)
            rmsnorm(xb + (size_t)t * D, hidden + (size_t)(c0 + t) * D, w->rms_final, D, p->norm_eps);
        const Pass ps = {&ctx->state, ctx->n_threads, ctx->activations, ctx->n_ctx_pad, ctx->transformer->kernels};
        matmul(&ps, logits + (size_t)c0 * V, xb, m, &w->wcls);
    }
    return QWEN3C_OK;
}

/* ---------------------------------------------------------------------------------------
 * Several contexts on one model: prefix reuse, prefix copies, batched forward passes
 * ------------------------------------------------------------------------------------- */
int qwen3c_context_rewind_point(const qwen3c_context *ctx, int pos) {
    if (!ctx || pos < 0) return 0;
    if (pos > ctx->n_ctx) pos = ctx->n_ctx;
    if (ctx->rs) return qwen35_rewind_point(ctx, pos); /* a recurrent state: n_past or a checkpoint */
    return pos; /* a KV cache keeps every prefix valid */
}

int qwen3c_context_copy_prefix(qwen3c_context *dst, const qwen3c_context *src, int n_tokens,
                               char *err, size_t err_size) {
    if (!dst || !src) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "context is NULL");
    if (dst->transformer != src->transformer)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "the contexts belong to different models");
    if (dst->kv_type != src->kv_type)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "the contexts have different KV cache types");
    if (n_tokens < 0 || n_tokens > src->n_ctx || n_tokens > dst->n_ctx)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%d tokens do not fit in contexts of %d and %d tokens", n_tokens, src->n_ctx, dst->n_ctx);
    if (dst->rs) { /* qwen35: the recurrent state at n_tokens too */
        int rc = qwen35_state_copy(dst, src, n_tokens, err, err_size);
        if (rc) return rc;
    }
    dst->n_past = n_tokens;
    if (dst == src || n_tokens == 0) return QWEN3C_OK;
    const Config *p = &src->transformer->config;
    const size_t esz = src->kv_type == QWEN3C_KV_F16 ? sizeof(uint16_t) : sizeof(float), HD = (size_t)p->head_dim;
    const int cached_layers = p->n_layers - p->n_linear_layers; /* qwen35: attention layers only */
    /* runs of positions inside one chunk of each context (the two chunk lengths may differ;
     * both are multiples of 16, so every run starts on a whole tile) */
    for (int s0 = 0; s0 < n_tokens;) {
        const int ps = src->kv_chunk, pd = dst->kv_chunk;
        int m = n_tokens - s0;
        if (ps - s0 % ps < m) m = ps - s0 % ps;
        if (pd - s0 % pd < m) m = pd - s0 % pd;
        const size_t key_len = (size_t)(m + KV_TILE - 1) / KV_TILE * KV_TILE * HD * esz; /* whole tiles */
        const size_t val_len = (size_t)m * HD * esz;
        for (int l = 0; l < cached_layers; l++)
            for (int h = 0; h < p->n_kv_heads; h++) { /* the run's tiles and rows in both chunk layouts */
                const size_t so = (kv_block(src, l, h, s0 / ps) + (size_t)(s0 % ps) * HD) * esz;
                const size_t doff = (kv_block(dst, l, h, s0 / pd) + (size_t)(s0 % pd) * HD) * esz;
                memcpy((char *)dst->state.key_cache + doff, (const char *)src->state.key_cache + so, key_len);
                memcpy((char *)dst->state.value_cache + doff, (const char *)src->state.value_cache + so, val_len);
            }
        s0 += m;
    }
    return QWEN3C_OK;
}

struct qwen3c_batch {
    const Transformer *transformer;
    RunState state;      /* activations of up to n_tokens tokens (its KV / RoPE fields unused) */
    int n_tokens, n_seqs, n_threads, activations;
    int att_C;           /* cache length the attention scratch state.att is sized for */
    float *logits;       /* (n_seqs, V) lm_head output, before it is copied to the callers */
    Seq *seqs;           /* (n_seqs) */
    int32_t *tokens;     /* (n_tokens) the token ids of a call, sequence after sequence */
};

qwen3c_batch_params qwen3c_batch_default_params(void) {
    qwen3c_batch_params p = {DEFAULT_BATCH, DEFAULT_BATCH_SEQS, 0, QWEN3C_ACTIVATIONS_Q24};
    return p;
}

void qwen3c_batch_free(qwen3c_batch *b) {
    if (!b) return;
    free(b->state.memory);
    free(b->state.att);
    free(b->logits);
    free(b->seqs);
    free(b->tokens);
    free(b);
}

int qwen3c_batch_create(const qwen3c_model *model, const qwen3c_batch_params *params,
                        qwen3c_batch **out, char *err, size_t err_size) {
    if (!model || !out) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "model and out must not be NULL");
    qwen3c_batch_params prm = params ? *params : qwen3c_batch_default_params();
    if (prm.n_tokens < 0 || prm.n_tokens > 65536)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "n_tokens %d is out of range (0..65536)", prm.n_tokens);
    if (prm.n_seqs < 0 || prm.n_seqs > 4096)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "n_seqs %d is out of range (0..4096)", prm.n_seqs);
    if (prm.n_threads < 0 || prm.n_threads > 1024)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "n_threads %d is out of range (0..1024)", prm.n_threads);
    if (check_activations(prm.activations, err, err_size)) return QWEN3C_ERR_INVALID_ARG;
    const int B = prm.n_tokens ? prm.n_tokens : DEFAULT_BATCH;
    const int S0 = prm.n_seqs ? prm.n_seqs : DEFAULT_BATCH_SEQS, S = S0 < B ? S0 : B;
    const int64_t xqf = xq_floats(model, prm.activations, B), xff = xf_floats(model, prm.activations, B);
    const int64_t total = activation_floats(&model->config, B, xqf, xff);
    qwen3c_batch *b = calloc(1, sizeof(*b));
    float *mem = calloc((size_t)total, sizeof(float));
    float *logits = malloc((size_t)S * model->config.vocab_size * sizeof(float));
    Seq *seqs = calloc((size_t)S, sizeof(Seq));
    int32_t *tokens = malloc((size_t)B * sizeof(int32_t));
    if (!b || !mem || !logits || !seqs || !tokens) {
        free(b), free(mem), free(logits), free(seqs), free(tokens);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for a batch of %d tokens (%.1f MB)", B,
                           ((double)total + (double)S * model->config.vocab_size) * 4 / 1e6);
    }
    carve_activations(&b->state, mem, &model->config, B, xqf, xff);
    b->state.memory = mem;
    b->transformer = model;
    b->n_tokens = B;
    b->n_seqs = S;
    b->n_threads = thread_limit(prm.n_threads ? prm.n_threads : cpu_count());
    b->activations = prm.activations;
    b->logits = logits;
    b->seqs = seqs;
    b->tokens = tokens;
    *out = b;
    return QWEN3C_OK;
}

int qwen3c_forward_batch(qwen3c_batch *b, const qwen3c_batch_seq *seqs, int n_seqs, char *err, size_t err_size) {
    if (!b || !seqs) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "batch and seqs must not be NULL");
    if (n_seqs < 1 || n_seqs > b->n_seqs)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "n_seqs %d is out of range (1..%d)", n_seqs, b->n_seqs);
    /* everything is checked before anything is computed */
    int64_t n = 0;
    int att_C = 0;
    for (int i = 0; i < n_seqs; i++) {
        const qwen3c_batch_seq *q = &seqs[i];
        char what[32];
        snprintf(what, sizeof what, "sequence %d", i);
        if (!q->ctx) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "sequence %d: context is NULL", i);
        if (q->ctx->transformer != b->transformer)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "sequence %d: its context belongs to another model", i);
        for (int j = 0; j < i; j++)
            if (seqs[j].ctx == q->ctx)
                return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "sequences %d and %d share a context", j, i);
        int rc = check_forward_args(q->ctx, q->tokens, q->n_tokens, q->pos, err, err_size);
        if (!rc && q->ctx->rs) rc = qwen35_state_check(q->ctx, q->pos, err, err_size);
        if (rc) return qwen3c_fail_prefix(err, err_size, rc, what);
        n += q->n_tokens;
        if (q->ctx->n_ctx_pad > att_C) att_C = q->ctx->n_ctx_pad;
    }
    if (n > b->n_tokens)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%lld tokens in all exceed the batch's %d", (long long)n, b->n_tokens);
    if (att_C > b->att_C) { /* attention scratch for the longest cache: (n_threads, ATT_ROWS, C) */
        float *att = malloc((size_t)b->n_threads * ATT_ROWS * att_C * sizeof(float));
        if (!att)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for the attention scratch of %d positions", att_C);
        free(b->state.att);
        b->state.att = att;
        b->att_C = att_C;
    }
    /* the batch's rows: the tokens of each sequence in turn */
    int32_t *tokens = b->tokens;
    int t0 = 0;
    for (int i = 0; i < n_seqs; i++) {
        const qwen3c_batch_seq *q = &seqs[i];
        Seq sq = {q->ctx, t0, q->n_tokens, q->pos, q->logits, 0, NULL};
        b->seqs[i] = sq;
        memcpy(tokens + t0, q->tokens, (size_t)q->n_tokens * sizeof(int32_t));
        t0 += q->n_tokens;
    }
    for (int i = 0; i < n_seqs; i++)
        if (seqs[i].ctx->rs) qwen35_state_seek(seqs[i].ctx, seqs[i].pos); /* each recurrent state at its pos */
    const Pass ps = {&b->state, b->n_threads, b->activations, b->att_C, b->transformer->kernels};
    (b->transformer->config.attn_output_gate ? forward_qwen35 : forward)(&ps, b->transformer, b->seqs, n_seqs, tokens,
                                                                      (int)n, 0, NULL, 0, b->logits);
    for (int i = 0; i < n_seqs; i++) seqs[i].ctx->n_past = seqs[i].pos + seqs[i].n_tokens;
    return QWEN3C_OK;
}
