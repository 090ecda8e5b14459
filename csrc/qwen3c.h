/*
 * qwen3c.h -- the one public header of the qwen3c C core.
 *
 * A Qwen3 (and llama-architecture, and Qwen3.5 "qwen35") inference engine for GGUF files:
 *
 *   qwen3c_model    read-only: the mmapped GGUF, Config, TransformerWeights and the
 *                   tokenizer. Safe to share between contexts.
 *   qwen3c_context  mutable: the RunState (activations + KV cache) sized to n_ctx, the
 *                   recurrent state of Qwen3.5's Gated DeltaNet layers, and the thread count.
 *                   One context per concurrent conversation.
 *   qwen3c_sampler  picks the next token from logits; owns its RNG and its token history.
 *
 * Conventions
 *   - Every fallible call returns a status (QWEN3C_OK == 0 on success) and, on failure,
 *     writes a NUL-terminated message into the caller-owned buffer `err` of `err_size`
 *     bytes (err may be NULL). Nothing is printed, nothing exits, there are no globals.
 *   - On failure, out-parameters are left untouched and object state is unchanged.
 *   - Sizes and counts that can exceed 2^31 are size_t / int64_t.
 *
 * This header is also the cffi cdef: the region between the CDEF markers must stay plain
 * declarations (no #if, no macros other than integer #defines).
 */
#ifndef QWEN3C_H
#define QWEN3C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CDEF BEGIN */

/* ---------------------------------------------------------------------------------------
 * Status codes
 * ------------------------------------------------------------------------------------- */
#define QWEN3C_OK                0  /* success */
#define QWEN3C_ERR_IO            1  /* file cannot be opened, read or mapped */
#define QWEN3C_ERR_FORMAT        2  /* malformed GGUF (corrupt, truncated, inconsistent) */
#define QWEN3C_ERR_UNSUPPORTED   3  /* valid file, but an architecture / type / tokenizer we do not run */
#define QWEN3C_ERR_CONTEXT       4  /* the tokens do not fit in the context (n_ctx) */
#define QWEN3C_ERR_INVALID_ARG   5  /* bad argument: token id, position, size, UTF-8, ... */
#define QWEN3C_ERR_NOMEM         6  /* allocation failed */
#define QWEN3C_ERR_BUFFER        7  /* caller's output buffer too small (the needed size is returned) */
#define QWEN3C_ERR_CPU           8  /* QWEN3C_CPU names a kernel tier that is unknown, not in this
                                       build, or not supported by this CPU */

/* Human-readable name of a status code ("ok", "io error", ...). Never NULL. */
const char *qwen3c_status_str(int status);

/* GGML tensor types (the numbering of the GGUF format). */
#define QWEN3C_TYPE_F32    0
#define QWEN3C_TYPE_F16    1
#define QWEN3C_TYPE_Q4_0   2
#define QWEN3C_TYPE_Q4_1   3
#define QWEN3C_TYPE_Q5_0   6
#define QWEN3C_TYPE_Q5_1   7
#define QWEN3C_TYPE_Q8_0   8
#define QWEN3C_TYPE_Q8_1   9
#define QWEN3C_TYPE_Q2_K  10
#define QWEN3C_TYPE_Q3_K  11
#define QWEN3C_TYPE_Q4_K  12
#define QWEN3C_TYPE_Q5_K  13
#define QWEN3C_TYPE_Q6_K  14
#define QWEN3C_TYPE_Q8_K  15
#define QWEN3C_TYPE_BF16  30

/* Name of a tensor type ("Q8_0", ...), or "unknown". */
const char *qwen3c_type_name(int type);

/* ---------------------------------------------------------------------------------------
 * Model: load / free / describe
 * ------------------------------------------------------------------------------------- */
typedef struct qwen3c_model qwen3c_model;

/* The hyperparameters, as read from the GGUF metadata (mirrors transformers' Qwen3Config, and
 * Qwen3_5TextConfig for "qwen35"). */
typedef struct qwen3c_config {
    char  arch[32];        /* general.architecture: "qwen3", "llama" or "qwen35" */
    int   n_layers;        /* num_hidden_layers        = {arch}.block_count */
    int   dim;             /* hidden_size              = {arch}.embedding_length */
    int   hidden_dim;      /* intermediate_size        = {arch}.feed_forward_length */
    int   n_heads;         /* num_attention_heads      = {arch}.attention.head_count */
    int   n_kv_heads;      /* num_key_value_heads      = {arch}.attention.head_count_kv */
    int   head_dim;        /* head_dim                 = {arch}.attention.key_length */
    int   vocab_size;      /* vocab_size               = rows of token_embd */
    int   n_ctx_train;     /* max_position_embeddings  = {arch}.context_length */
    float rope_theta;      /* rope_theta               = {arch}.rope.freq_base */
    float norm_eps;        /* rms_norm_eps             = {arch}.attention.layer_norm_rms_epsilon */
    int   tied_embeddings; /* tie_word_embeddings: 1 when there is no output.weight */
    int   qk_norm;         /* 1 for qwen3 (q_norm/k_norm per head), 0 for llama */
    int   rope_interleaved;/* 1: RoPE pairs (2i, 2i+1) (llama GGUFs); 0: (i, i+head_dim/2) (qwen3) */
    int64_t n_params;      /* total number of weight elements */
    /* Qwen3.5 ("qwen35"): most layers are Gated DeltaNet linear attention (qwen3c_model_layer_type),
     * the others gated full attention with partial rotary embeddings. 0 for qwen3 / llama. */
    int   n_linear_layers;    /* layers with layer_types[l] == "linear_attention"
                                 = {arch}.attention.recurrent_layers (or full_attention_interval) */
    int   linear_conv_kernel; /* linear_conv_kernel_dim  = {arch}.ssm.conv_kernel */
    int   linear_n_k_heads;   /* linear_num_key_heads    = {arch}.ssm.group_count */
    int   linear_n_v_heads;   /* linear_num_value_heads  = {arch}.ssm.time_step_rank */
    int   linear_k_head_dim;  /* linear_key_head_dim     = {arch}.ssm.state_size */
    int   linear_v_head_dim;  /* linear_value_head_dim   = {arch}.ssm.inner_size / time_step_rank */
    int   rope_dim;           /* rotated dims per head: head_dim * partial_rotary_factor
                                 = {arch}.rope.dimension_count (head_dim for qwen3 / llama) */
    int   attn_output_gate;   /* 1: q_proj also yields a per-head gate, attn_output *= sigmoid(gate) (qwen35) */
} qwen3c_config;

/* Load a GGUF file: parse and validate it, mmap the tensor data, build the weights and the
 * tokenizer, pick the CPU's kernel tier (qwen3c_cpu_info_get). Returns QWEN3C_OK and sets
 * *out, or an error status (FORMAT, UNSUPPORTED, IO, NOMEM, CPU) with a message naming the
 * problem. */
int qwen3c_model_load(const char *path, qwen3c_model **out, char *err, size_t err_size);

typedef struct qwen3c_model_params {
    int pack_weights; /* 1 (default): copy the weight matrices once into huge-page memory,
                         which decode streams every token: the Q8_0 / Q4_0 / Q4_1 ones into the
                         16-row interleaved layout of the q24 kernels (the default activations;
                         on the tiers with SIMD integer dot products only: avx512, avx2, neon,
                         neon-i8mm), the F32 / F16 / BF16 ones as
                         they are (~8% faster float decode than from the page cache's 4 KB
                         pages). The file's own pages of those matrices are then released.
                         0: compute from the mapped file only (no copy, fastest load; what
                         activations F32 / Q16 / Q8 read; Q24 then runs as F32) */
} qwen3c_model_params;

qwen3c_model_params qwen3c_model_default_params(void);

/* qwen3c_model_load with explicit params (NULL = defaults). */
int qwen3c_model_load_with(const char *path, const qwen3c_model_params *params,
                           qwen3c_model **out, char *err, size_t err_size);

/* Bytes of weights the model copied at load (pack_weights; 0 when nothing was copied). */
size_t qwen3c_model_packed_bytes(const qwen3c_model *model);

/* Release everything the model owns (unmaps the file). NULL is a no-op. */
void qwen3c_model_free(qwen3c_model *model);

void qwen3c_model_get_config(const qwen3c_model *model, qwen3c_config *out);

/* The token mixer of decoder layer `layer`: QWEN3C_LAYER_ATTENTION (self-attention with a KV
 * cache: every layer of qwen3 / llama, every full_attention_interval-th of qwen35) or
 * QWEN3C_LAYER_LINEAR (Qwen3.5's Gated DeltaNet: a recurrent state instead of a KV cache);
 * -1 for an index outside [0, n_layers). */
#define QWEN3C_LAYER_ATTENTION 0
#define QWEN3C_LAYER_LINEAR    1
int qwen3c_model_layer_type(const qwen3c_model *model, int layer);

/* GGUF metadata of a loaded model, as text (the chat template; typed values, string arrays and
 * files that do not load: the qwen3c_gguf_* reader API below, also via qwen3c_model_gguf).
 * qwen3c_model_meta_key: key i copied NUL-terminated into buf, its length into *len.
 * qwen3c_model_meta_type: GGUF value type of key i (0..12); array element type in *arr_type
 *   (or -1) and array length in *arr_n (or 0).
 * qwen3c_model_meta_as_string: the value of `key` as text (strings verbatim, numbers in
 *   decimal, bool as true/false, arrays as "[n items]"), NUL-terminated, length in *len.
 * Return QWEN3C_OK; QWEN3C_ERR_INVALID_ARG for a bad index or an absent key;
 * QWEN3C_ERR_BUFFER when buf_size <= *len (then *len is still the full length). */
int qwen3c_model_meta_count(const qwen3c_model *model);
int qwen3c_model_meta_key(const qwen3c_model *model, int i, char *buf, size_t buf_size, size_t *len);
int qwen3c_model_meta_type(const qwen3c_model *model, int i, int *arr_type, uint64_t *arr_n);
int qwen3c_model_meta_as_string(const qwen3c_model *model, const char *key, char *buf,
                                size_t buf_size, size_t *len);

/* Tensors of the file (qwen3c_gguf_tensor below: the same for any GGUF). Returns QWEN3C_OK or
 * QWEN3C_ERR_INVALID_ARG on a bad index. name is copied NUL-terminated into name_buf
 * (truncated if it does not fit). */
typedef struct qwen3c_tensor_info {
    int      type;       /* QWEN3C_TYPE_* */
    int      n_dims;
    int64_t  ne[4];      /* GGUF order: ne[0] is the contiguous (input) dimension */
    uint64_t offset;     /* byte offset from the start of the file */
    uint64_t nbytes;
} qwen3c_tensor_info;
int qwen3c_model_n_tensors(const qwen3c_model *model);
int qwen3c_model_tensor_info(const qwen3c_model *model, int i, char *name_buf, size_t name_size,
                             qwen3c_tensor_info *out);

/* ---------------------------------------------------------------------------------------
 * GGUF files: the validating reader on its own (`qwen3c info`, `qwen3c audit`)
 *
 * qwen3c_gguf_open runs the reader qwen3c_model_load starts with: the header, every metadata
 * value and the tensor table (types, shapes, byte sizes, alignment, bounds, no overlaps), all
 * checked against the file size, with the same messages. It builds no model and reads no
 * tensor data, so it also opens valid files of architectures or tensor types qwen3c does not
 * run. Metadata entries and tensors are numbered in file order from 0. Every accessor returns
 * QWEN3C_OK or QWEN3C_ERR_INVALID_ARG (NULL handle, index or range out of bounds, wrong value
 * type; named in err) or QWEN3C_ERR_BUFFER as documented.
 * ------------------------------------------------------------------------------------- */
typedef struct qwen3c_gguf qwen3c_gguf;

/* Metadata value types (the numbering of the GGUF format). */
#define QWEN3C_GGUF_UINT8    0
#define QWEN3C_GGUF_INT8     1
#define QWEN3C_GGUF_UINT16   2
#define QWEN3C_GGUF_INT16    3
#define QWEN3C_GGUF_UINT32   4
#define QWEN3C_GGUF_INT32    5
#define QWEN3C_GGUF_FLOAT32  6
#define QWEN3C_GGUF_BOOL     7
#define QWEN3C_GGUF_STRING   8
#define QWEN3C_GGUF_ARRAY    9
#define QWEN3C_GGUF_UINT64  10
#define QWEN3C_GGUF_INT64   11
#define QWEN3C_GGUF_FLOAT64 12

/* mmap and validate a GGUF file. QWEN3C_ERR_FORMAT (the reader's message), IO, NOMEM. */
int  qwen3c_gguf_open(const char *path, qwen3c_gguf **out, char *err, size_t err_size);
/* Unmap and free. NULL is a no-op. Never call it on qwen3c_model_gguf's result. */
void qwen3c_gguf_free(qwen3c_gguf *gguf);
/* The parsed file of a loaded model: borrowed, valid until qwen3c_model_free(model). */
const qwen3c_gguf *qwen3c_model_gguf(const qwen3c_model *model);

typedef struct qwen3c_gguf_header {
    uint32_t version;      /* GGUF version (3) */
    uint64_t n_kv;         /* metadata entries */
    uint64_t n_tensors;    /* tensor table entries */
    uint64_t alignment;    /* general.alignment, or the default 32 */
    uint64_t data_offset;  /* byte offset of the tensor data section */
    uint64_t file_size;    /* bytes */
} qwen3c_gguf_header;
int qwen3c_gguf_get_header(const qwen3c_gguf *gguf, qwen3c_gguf_header *out, char *err,
                           size_t err_size);

typedef struct qwen3c_gguf_kv_info {
    int      type;       /* QWEN3C_GGUF_* */
    int      elem_type;  /* an array's element type; the value type itself for a scalar */
    uint64_t n;          /* an array's length; 1 for a scalar (a string is one element) */
    size_t   key_len;    /* bytes of the key, without the NUL */
} qwen3c_gguf_kv_info;

/* Metadata entry i: its key copied NUL-terminated into key (key may be NULL when key_size is
 * 0) and its description into *info. QWEN3C_ERR_BUFFER when key_size <= key_len (*info is
 * still filled: info->key_len + 1 bytes are needed). */
int qwen3c_gguf_kv(const qwen3c_gguf *gguf, uint64_t i, char *key, size_t key_size,
                   qwen3c_gguf_kv_info *info, char *err, size_t err_size);
/* The index of the entry named key (NUL-terminated) in *index, or -1 when there is none
 * (still QWEN3C_OK). */
int qwen3c_gguf_find_kv(const qwen3c_gguf *gguf, const char *key, int64_t *index, char *err,
                        size_t err_size);
/* Elements [start, start + count) of a numeric or bool entry (scalar or array; a scalar is
 * one element), copied as stored into out: each element is the C type of its GGUF type
 * (uint8_t ... double; bool as one uint8_t 0/1), little-endian. INVALID_ARG for a string or
 * string-array entry, a range past the end, or out_size < count * element size. */
int qwen3c_gguf_get_values(const qwen3c_gguf *gguf, uint64_t i, uint64_t start, uint64_t count,
                           void *out, size_t out_size, char *err, size_t err_size);
/* Strings [start, start + count) of a string entry (one element) or an array of strings:
 * their bytes concatenated into buf (no separators, no NUL; strings are not checked for
 * UTF-8), the length of each into lens[0 .. count), and the total into *total.
 * QWEN3C_ERR_BUFFER when buf_size < *total (then only *total is written). INVALID_ARG for a
 * non-string entry or a range past the end. Costs O(start + count): strings have varying
 * lengths, so the walk starts at the first element. */
int qwen3c_gguf_get_strings(const qwen3c_gguf *gguf, uint64_t i, uint64_t start, uint64_t count,
                            char *buf, size_t buf_size, uint64_t *lens, size_t *total,
                            char *err, size_t err_size);
/* Tensor i of the tensor table: its name copied NUL-terminated into name, its length into
 * *name_len, and type, shape, absolute file offset and byte size into *info (see
 * qwen3c_tensor_info above). QWEN3C_ERR_BUFFER when name_size <= *name_len (*info and
 * *name_len are still filled). */
int qwen3c_gguf_tensor(const qwen3c_gguf *gguf, uint64_t i, char *name, size_t name_size,
                       size_t *name_len, qwen3c_tensor_info *info, char *err, size_t err_size);

/* ---------------------------------------------------------------------------------------
 * Context: KV cache + activations, forward pass
 * ------------------------------------------------------------------------------------- */
typedef struct qwen3c_context qwen3c_context;

/* How Q8_0 / Q4_0 / Q4_1 matmuls treat their input x (docs/precision.md has the numbers):
 *   Q24 (default): x rounded to 24-bit fixed point per block of 32 (step max|x| / 8355711, the
 *                  float32 ulp of the block's largest value) against the packed weights, exact
 *                  integer dot products: float32-level precision (SmolLM2 Q4_1: 3e-6 of the
 *                  float32 reference, as F32), memory-speed decode. Needs the model's packed
 *                  weights and a tier with SIMD integer dot products (avx512, avx2: vpdpbusd
 *                  or vpmaddubsw; neon: sdot; neon-i8mm: smmla); otherwise it runs as F32
 *   F32:           float32 x against the stored weight blocks decoded in registers: the float
 *                  reference path (3e-6 on SmolLM2), compute-bound
 *   Q16 (opt-in):  x rounded to 16-bit blocks of 32 (scale max|x| / 32767), exact integer dot
 *                  products: 1.3e-3 on SmolLM2 (outlier activations coarsen a block)
 *   Q8 (opt-in):   x rounded to 8-bit blocks as llama.cpp does: fastest, 4.4e-2 on SmolLM2 */
#define QWEN3C_ACTIVATIONS_F32 0
#define QWEN3C_ACTIVATIONS_Q16 1
#define QWEN3C_ACTIVATIONS_Q8  2
#define QWEN3C_ACTIVATIONS_Q24 3

/* How the context stores the KV cache (docs/precision.md):
 *   F32 (default): float32 keys and values, as computed
 *   F16 (opt-in):  IEEE float16, rounded to nearest even when stored (relative error
 *                  <= 2^-11 = 4.9e-4 per value; |values| >= 65520 become inf): half the memory,
 *                  and half the bytes attention reads per token at long context */
#define QWEN3C_KV_F32 0
#define QWEN3C_KV_F16 1

typedef struct qwen3c_context_params {
    int n_ctx;      /* KV cache length in tokens; 0 = the model's context_length (capped to 4096).
                       Reserved whole, committed in chunks of positions as they are first
                       written (up to 64 MB per cache each; huge pages where the OS gives them;
                       the environment variable QWEN3C_KV_CHUNK=N, a multiple of 16, sets the
                       positions per chunk: a test knob) */
    int n_threads;  /* OpenMP threads for this context; 0 = all cores (always 1 in a build
                       without OpenMP: qwen3c_cpu_info_get says which) */
    int n_batch;    /* max tokens per internal forward chunk; 0 = default (256) */
    int activations; /* matmul arithmetic for Q8_0 / Q4_0 / Q4_1 weights, and with Q24 / F32 for
                        Q4_K / Q5_K / Q6_K ones (QWEN3C_ACTIVATIONS_*; other weight types
                        always use float32 activations; Q24 computes batches of 12+ tokens
                        in float32, with F32's bits, where that is faster: the K-quants, Q8_0
                        and Q4_0 on AVX-512 and AVX2 CPUs, Q4_1 on AVX2) */
    int kv_type;    /* element type of the KV cache: QWEN3C_KV_F32 (default) or QWEN3C_KV_F16 */
    int n_checkpoints; /* slots for qwen3c_context_checkpoint (models with recurrent layers);
                          0 = default (4). Each slot, allocated when first used, holds a copy of
                          the recurrent state (Qwen3.5-0.8B: 19 MB) */
} qwen3c_context_params;

qwen3c_context_params qwen3c_context_default_params(void);

/* Create a context for `model` (the model must outlive it). */
int  qwen3c_context_create(const qwen3c_model *model, const qwen3c_context_params *params,
                           qwen3c_context **out, char *err, size_t err_size);
void qwen3c_context_free(qwen3c_context *ctx);
int  qwen3c_context_n_ctx(const qwen3c_context *ctx);
int  qwen3c_context_n_threads(const qwen3c_context *ctx);

/* Run the transformer on tokens[0..n_tokens) placed at positions pos..pos+n_tokens-1: writes
 * their keys/values into the KV cache and attends to every earlier position. Positions from pos
 * on are replaced, so a caller may rewind and continue differently -- but a model with
 * recurrent layers can restart only where the context holds a state (see "Recurrent state"
 * below: qwen3c_context_rewind_point).
 * logits: caller-owned; (vocab_size) floats for the last token, or (n_tokens, vocab_size)
 * when all_logits != 0. logits may be NULL to skip the LM head (prefill only). Without
 * all_logits, the last layer goes on past its keys and values only with the rows that feed
 * logits (transformers' logits_to_keep): the same bits, less work for a prompt.
 * Errors (before any compute, KV cache untouched): QWEN3C_ERR_CONTEXT when
 * pos + n_tokens > n_ctx; QWEN3C_ERR_INVALID_ARG for pos < 0, n_tokens < 1, a token id
 * outside [0, vocab_size), or (recurrent models) a pos the state cannot restart at. */
int qwen3c_forward(qwen3c_context *ctx, const int32_t *tokens, int n_tokens, int pos,
                   float *logits, int all_logits, char *err, size_t err_size);

/* Same as qwen3c_forward, and also copies the residual stream for inspection into hidden
 * (caller-owned, (n_layers + 2, n_tokens, dim) floats): [0] = embedding output, [1 + l] =
 * output of decoder layer l, [n_layers + 1] = after the final norm. */
int qwen3c_forward_trace(qwen3c_context *ctx, const int32_t *tokens, int n_tokens, int pos,
                         float *logits, int all_logits, float *hidden, char *err, size_t err_size);

/* ---------------------------------------------------------------------------------------
 * Recurrent state: where a context can continue (Qwen3.5)
 *
 * A Gated DeltaNet layer keeps, instead of a KV cache, a conv state (its last
 * linear_conv_kernel - 1 inputs) and a recurrent state S (linear_n_v_heads matrices of
 * linear_k_head_dim x linear_v_head_dim) that summarize every token seen so far -- transformers'
 * DynamicCache (LinearAttentionLayer: conv_states, recurrent_states). A KV cache can be cut back
 * to any position; S cannot: it is a sum over all past tokens. So the context tracks n_past,
 * the number of leading positions whose state it holds (pos + n_tokens after a forward), and
 * qwen3c_forward at position pos on a model with linear layers
 *   - continues           when pos == n_past;
 *   - starts over         when pos == 0 (the states are zeroed);
 *   - restores            when a checkpoint taken at position pos exists (it was taken on the
 *                         same leading tokens: the caller's contract, as for the KV cache);
 *   - fails (INVALID_ARG, nothing changed) otherwise: a state that includes tokens at or after
 *                         pos is never reused.
 * A forward at pos discards the checkpoints past pos (they include replaced tokens).
 * Models without linear layers restart anywhere (the KV cache of positions >= pos is
 * overwritten); for them checkpoints are no-ops.
 * ------------------------------------------------------------------------------------- */
/* The number of leading positions the context holds (0 for a new context). Where a forward
 * can start: qwen3c_context_rewind_point (below, with the batched forward). */
int qwen3c_context_n_past(const qwen3c_context *ctx);
/* Save the recurrent and conv states as they are now (at position n_past) into a checkpoint
 * slot: one already at that position is overwritten, else a free slot is used, else the
 * oldest is replaced. QWEN3C_ERR_NOMEM when the slot cannot be allocated (no state changed).
 * A no-op for models without linear layers. */
int qwen3c_context_checkpoint(qwen3c_context *ctx, char *err, size_t err_size);
/* The positions of the live checkpoints, ascending, into pos_out (room for cap); returns how
 * many there are (may exceed cap). */
int qwen3c_context_checkpoints(const qwen3c_context *ctx, int *pos_out, int cap);

/* ---------------------------------------------------------------------------------------
 * Inspection: attention probabilities and the LM head on any hidden state (for learners'
 * pictures: qwen3c attend / lens / explain)
 * ------------------------------------------------------------------------------------- */
/* qwen3c_forward_trace (hidden may be NULL), and also copies out every attention probability:
 * attn (caller-owned, not NULL) is (n_layers, n_heads, n_tokens, pos + n_tokens) floats, and
 * attn[l][h][t][s] = softmax(q k^T / sqrt(head_dim) + causal mask) of layer l, query head h,
 * token t (at position pos + t), key position s: transformers' output_attentions with eager
 * attention (attentions[l][0, h, t, s]). A row sums to 1 over s = 0..pos+t; the masked
 * positions s > pos + t are 0. Query head h reads key/value head h / (n_heads / n_kv_heads).
 * Keys before pos come from the KV cache. The capture happens only in this call; every other
 * forward skips it (one pointer test per row of scores). Errors as qwen3c_forward, and
 * QWEN3C_ERR_INVALID_ARG for attn == NULL, QWEN3C_ERR_UNSUPPORTED for a model with linear
 * layers (Qwen3.5: a Gated DeltaNet layer has no attention probabilities). */
int qwen3c_forward_attention(qwen3c_context *ctx, const int32_t *tokens, int n_tokens, int pos,
                             float *logits, int all_logits, float *hidden, float *attn, char *err,
                             size_t err_size);

/* The model's head on any n hidden states: logits (n, vocab_size) = lm_head(norm(hidden)) for
 * hidden (n, dim), with the same rmsnorm and matmul that end qwen3c_forward (the logit lens).
 * hidden = the last decoder layer's output (qwen3c_forward_trace's hidden[n_layers]) gives the
 * forward's own logits. Uses the context's scratch buffers and threads; the KV cache is not
 * touched. QWEN3C_ERR_INVALID_ARG for NULL pointers or n < 1. */
int qwen3c_lm_head(qwen3c_context *ctx, const float *hidden, int n, float *logits, char *err,
                   size_t err_size);

/* ---------------------------------------------------------------------------------------
 * Tokenizer (byte-level BPE read from the GGUF)
 * ------------------------------------------------------------------------------------- */
#define QWEN3C_TOKEN_NORMAL        1
#define QWEN3C_TOKEN_UNKNOWN       2
#define QWEN3C_TOKEN_CONTROL       3
#define QWEN3C_TOKEN_USER_DEFINED  4
#define QWEN3C_TOKEN_UNUSED        5
#define QWEN3C_TOKEN_BYTE          6

/* Special token ids read from the GGUF; -1 when the file does not define one. */
typedef struct qwen3c_special_tokens {
    int32_t bos, eos, pad, unk;
    int32_t im_start, im_end;      /* <|im_start|>, <|im_end|> */
    int32_t think, think_end;      /* <think>, </think> */
    int32_t eog[8];                /* end-of-generation ids (eos, <|im_end|>, <|endoftext|>, ...) */
    int     n_eog;
} qwen3c_special_tokens;

int  qwen3c_model_has_tokenizer(const qwen3c_model *model);  /* 1 if the GGUF carries one */
void qwen3c_model_special_tokens(const qwen3c_model *model, qwen3c_special_tokens *out);
int  qwen3c_token_type(const qwen3c_model *model, int32_t id);  /* QWEN3C_TOKEN_*, or -1 */

/* Encode UTF-8 text (text_len bytes; NUL bytes are ordinary characters) into token ids.
 * special != 0: CONTROL tokens written as text (e.g. "<|im_start|>") become their ids;
 * special == 0: they are tokenized as plain text. USER_DEFINED added tokens are always
 * recognized. No normalization happens here: the text must already be normalized as
 * qwen3c_tokenizer_normalizer() says (NFC of each stretch between added tokens, as HF does;
 * python/qwen3c/tokenizer.py does it).
 * ids has room for ids_cap entries; *n_ids receives the count. If ids_cap is too small,
 * returns QWEN3C_ERR_BUFFER with *n_ids = the needed count (ids_cap >= text_len + 1 is
 * always enough). Invalid UTF-8 -> QWEN3C_ERR_INVALID_ARG. No tokenizer -> UNSUPPORTED. */
int qwen3c_tokenize(const qwen3c_model *model, const char *text, size_t text_len, int special,
                    int32_t *ids, size_t ids_cap, size_t *n_ids, char *err, size_t err_size);

/* The raw bytes a token stands for (byte-level decoded; may be a partial UTF-8 sequence).
 * Writes up to buf_size bytes (no NUL) and the full length into *n_bytes. Returns QWEN3C_OK,
 * QWEN3C_ERR_INVALID_ARG for an id outside the vocabulary, or QWEN3C_ERR_BUFFER when
 * buf_size < *n_bytes. */
int qwen3c_token_to_bytes(const qwen3c_model *model, int32_t id, char *buf, size_t buf_size,
                          size_t *n_bytes);

/* Look a token up by its exact vocabulary string (as stored in the GGUF); -1 if absent. */
int32_t qwen3c_token_lookup(const qwen3c_model *model, const char *piece, size_t piece_len);

/* The normalization the tokenizer declares, which the caller applies before qwen3c_tokenize
 * (the Python layer does; see python/qwen3c/tokenizer.py): QWEN3C_NORM_NONE or QWEN3C_NORM_NFC
 * (Qwen2/Qwen3: HF's tokenizer.json declares NFC). -1 when the model has no tokenizer. */
#define QWEN3C_NORM_NONE 0
#define QWEN3C_NORM_NFC  1
int qwen3c_tokenizer_normalizer(const qwen3c_model *model);

/* Number of tokens in the tokenizer's vocabulary (tokenizer.ggml.tokens), 0 without one. */
int32_t qwen3c_tokenizer_n_vocab(const qwen3c_model *model);

/* The i-th added token (CONTROL or USER_DEFINED: the strings matched whole in the text),
 * i = 0, 1, ...; returns its id, or -1 once i is past the end. */
int32_t qwen3c_tokenizer_added_token(const qwen3c_model *model, int i);

/* ---------------------------------------------------------------------------------------
 * Sampler
 *
 * logits -> penalties over the history -> (temperature 0 or top_k 1: argmax) -> top-k ->
 * temperature -> top-p -> min-p -> one draw from the sampler's own PCG32 stream. Ties go to
 * the lower token id, so (params, seed, history, logits) determine the pick.
 * ------------------------------------------------------------------------------------- */
typedef struct qwen3c_sampler qwen3c_sampler;

typedef struct qwen3c_sampler_params {
    float    temperature;         /* >= 0; 0 = greedy (argmax) */
    int      top_k;               /* >= 0; 0 = disabled */
    float    top_p;               /* in (0, 1]; 1 = disabled */
    float    min_p;               /* in [0, 1]: keep p >= min_p * p_max; 0 = disabled */
    float    presence_penalty;    /* subtracted once from the logit of every token in history */
    float    frequency_penalty;   /* subtracted count times */
    float    repetition_penalty;  /* > 0; 1 = disabled; CTRL-style: positive logits / p, negative * p */
    int      penalty_last_n;      /* >= 0: history window for the penalties; 0 = all of it */
    uint64_t seed;                /* seeds the RNG */
} qwen3c_sampler_params;

/* Qwen3's thinking-mode settings: 0.6 / top_k 20 / top_p 0.95 / min_p 0, no penalties, seed 0. */
qwen3c_sampler_params qwen3c_sampler_default_params(void);

/* QWEN3C_ERR_INVALID_ARG for a parameter out of its range (named in err), NOMEM. */
int  qwen3c_sampler_create(const qwen3c_sampler_params *params, qwen3c_sampler **out,
                           char *err, size_t err_size);
void qwen3c_sampler_free(qwen3c_sampler *sampler);
/* Forget the token history (the RNG state is kept). */
void qwen3c_sampler_reset(qwen3c_sampler *sampler);
/* Add a token to the history the penalties look at (sample() adds its own picks).
 * INVALID_ARG for token < 0; ids >= n_vocab are kept but never match a logit. */
int  qwen3c_sampler_accept(qwen3c_sampler *sampler, int32_t token, char *err, size_t err_size);
/* Pick a token from logits[0..n_vocab); the logits are not modified. The pick is appended to
 * the history. QWEN3C_ERR_INVALID_ARG for a NaN or +inf logit, all logits -inf, or
 * n_vocab < 1 (state unchanged); NOMEM. */
int  qwen3c_sampler_sample(qwen3c_sampler *sampler, const float *logits, int n_vocab,
                           int32_t *token_out, char *err, size_t err_size);

/* ---------------------------------------------------------------------------------------
 * Kernels, exposed for tests (tests/test_quant.py compares them with gguf.quants)
 * ------------------------------------------------------------------------------------- */
/* Bytes taken by n elements of `type` (n a multiple of the block size), or -1. */
int64_t qwen3c_type_row_size(int type, int64_t n);
/* Block size (elements per block) of `type`, or -1 when unknown. */
int     qwen3c_type_block_size(int type);
/* Dequantize n elements (a whole number of blocks) of `type` from src into dst. */
int qwen3c_dequantize(int type, const void *src, size_t src_size, float *dst, int64_t n,
                      char *err, size_t err_size);
/* out[i] = dot(row i of W, x) for W of `type` with shape (d, n) stored row-major, x of n floats. */
int qwen3c_matvec(int type, const void *w, size_t w_size, const float *x, int64_t n, int64_t d,
                  float *out, int n_threads, char *err, size_t err_size);
/* Batched: out (n_tok, d) = x (n_tok, n) @ W^T, W of `type` with shape (d, n) row-major: the
 * prefill path (each weight row is streamed once for all n_tok tokens). n_threads <= 0 = all
 * cores. Both return QWEN3C_ERR_INVALID_ARG for bad sizes / NULL pointers and
 * QWEN3C_ERR_UNSUPPORTED for a type without kernels. */
int qwen3c_matmul(int type, const void *w, size_t w_size, const float *x, int64_t n_tok,
                  int64_t n, int64_t d, float *out, int n_threads, char *err, size_t err_size);
/* The opt-in int8 path, same arguments and shapes as qwen3c_matmul: x is quantized to 8-bit
 * blocks of 32 (one float scale each) and multiplied with integer dot products (AVX-512 VNNI
 * when built for it). Faster, slightly less exact (~1e-2 relative). Q8_0, Q4_0, Q4_1 only:
 * QWEN3C_ERR_UNSUPPORTED for any other type; QWEN3C_ERR_NOMEM; INVALID_ARG as qwen3c_matmul. */
int qwen3c_matmul_int8(int type, const void *w, size_t w_size, const float *x, int64_t n_tok,
                       int64_t n, int64_t d, float *out, int n_threads, char *err, size_t err_size);
/* The q16 path, same arguments and shapes as qwen3c_matmul: x is quantized to 16-bit blocks
 * of 32 (one float scale each, plus the float sum of each block for Q4_1's min term) and
 * multiplied with exact integer dot products (AVX-512 VNNI when built for it). ~2e-5
 * relative to the exact float path on Gaussian activations, more with outliers. Q8_0, Q4_0, Q4_1 only: QWEN3C_ERR_UNSUPPORTED for any
 * other type; QWEN3C_ERR_NOMEM; INVALID_ARG as qwen3c_matmul. */
int qwen3c_matmul_q16(int type, const void *w, size_t w_size, const float *x, int64_t n_tok,
                      int64_t n, int64_t d, float *out, int n_threads, char *err, size_t err_size);

/* The q24 path, same arguments and shapes as qwen3c_matmul: W is packed into 16-row groups,
 * x quantized to 24-bit blocks of 32 (three signed-byte digits and one float scale each) and
 * multiplied with exact integer dot products (AVX-512 VNNI, arm64 sdot / smmla, or plain C):
 * within float32 rounding of qwen3c_matmul, and the same bits on every tier (but for Q4_1,
 * whose sum of x a tier may add in another order). Q8_0, Q4_0, Q4_1 only: QWEN3C_ERR_UNSUPPORTED for any other type;
 * QWEN3C_ERR_NOMEM; INVALID_ARG as qwen3c_matmul. */
int qwen3c_matmul_q24(int type, const void *w, size_t w_size, const float *x, int64_t n_tok,
                      int64_t n, int64_t d, float *out, int n_threads, char *err, size_t err_size);

/* IEEE float -> half for n floats, rounded to nearest even (what a QWEN3C_KV_F16 cache stores):
 * overflow (|x| >= 65520) -> inf, small values -> subnormal halves or signed zero, NaN -> a
 * quiet NaN (sign and the top 9 payload bits kept). QWEN3C_ERR_INVALID_ARG for NULL buffers
 * or n < 0. (qwen3c_dequantize with QWEN3C_TYPE_F16 is the way back.) */
int qwen3c_float_to_half(const float *src, int64_t n, uint16_t *dst, char *err, size_t err_size);

/* ---------------------------------------------------------------------------------------
 * CPU kernels and threads (cpu.c)
 *
 * One build holds the kernels of several CPU tiers (x86-64: avx512, avx2, avx2-novnni, sse,
 * scalar; arm64: neon-i8mm, neon, neon-nodot, scalar) and picks the best one the CPU runs when a
 * model is loaded. The environment variable QWEN3C_CPU=<tier> forces a tier; a tier that is
 * unknown, not in this build or not supported by this CPU is refused with QWEN3C_ERR_CPU. avx2
 * uses AVX-VNNI where the CPU has it; avx2-novnni is the avx2 tier without it (to test that
 * variant).
 * ------------------------------------------------------------------------------------- */
typedef struct qwen3c_cpu_info {
    char features[256];  /* the CPU features qwen3c looks for that this CPU has, space-separated
                            ("sse4_2 popcnt avx avx2 fma f16c avx512f ...") */
    char tiers[64];      /* the kernel tiers in this build, best first ("avx512 avx2 avx2-novnni sse scalar") */
    char best[16];       /* the best tier this CPU runs */
    char tier[16];       /* the tier a model loaded now uses (QWEN3C_CPU or best); "" if refused */
    char requested[16];  /* QWEN3C_CPU as set ("" when unset; truncated) */
    int  openmp;         /* 1: built with OpenMP; 0: every context runs one thread */
    int  n_procs;        /* processors OpenMP sees (the default thread count); 1 without OpenMP */
    char compiler[32];   /* the compiler that built the library ("gcc 12.2.0", "clang 14.0.6") */
} qwen3c_cpu_info;

/* Fill *out. Returns QWEN3C_OK, or QWEN3C_ERR_CPU with the reason in err when QWEN3C_CPU is
 * refused (out is filled all the same, with tier ""). */
int qwen3c_cpu_info_get(qwen3c_cpu_info *out, char *err, size_t err_size);

/* The kernel tier a model computes with ("avx512", ...), chosen when it was loaded. */
const char *qwen3c_model_cpu_tier(const qwen3c_model *model);

/* ---------------------------------------------------------------------------------------
 * Several conversations on one model: sessions, batched forward passes (serve)
 *
 * Each conversation has its own context (KV cache); the model's weights are shared. A
 * qwen3c_batch runs one forward pass over tokens of several contexts at once -- prefill
 * chunks of some, one decode token of others -- streaming every weight matrix once for all
 * of them (decode is memory-bound: B sequences cost little more than one). Attention stays
 * per sequence, in each context's own cache, so every sequence gets the logits its solo
 * qwen3c_forward would give. The batch owns the activations of the combined tokens (scratch
 * that must not live in the read-only model); contexts keep their caches.
 * ------------------------------------------------------------------------------------- */

/* Where ctx can continue from when only its first pos positions are to be kept (prefix
 * reuse: a new prompt shares pos tokens with what the cache holds). A KV cache keeps every
 * prefix valid and returns pos; a state that cannot be cut back (a recurrent layer) returns
 * an earlier position it can resume from, 0 meaning "run everything again". pos is clamped
 * to [0, n_ctx]. For Qwen3.5 ("Recurrent state" above): n_past when pos >= n_past, else the
 * latest checkpoint at or before pos, else 0; re-running the tokens from there rebuilds the
 * state at pos. */
int qwen3c_context_rewind_point(const qwen3c_context *ctx, int pos);

/* Copy the keys and values of positions [0, n_tokens) of src into dst (a prompt prefix
 * prefilled once, reused by another conversation): dst then continues at position n_tokens
 * exactly as src would. Both contexts must belong to the same model and have the same
 * kv_type, with n_tokens <= both n_ctx; QWEN3C_ERR_INVALID_ARG otherwise (dst unchanged).
 * Qwen3.5: the recurrent state is copied too, so src must hold it at n_tokens -- its n_past
 * or one of its checkpoints -- else INVALID_ARG; dst's own checkpoints are dropped. */
int qwen3c_context_copy_prefix(qwen3c_context *dst, const qwen3c_context *src, int n_tokens,
                               char *err, size_t err_size);

typedef struct qwen3c_batch qwen3c_batch;

typedef struct qwen3c_batch_params {
    int n_tokens;    /* max tokens per qwen3c_forward_batch call, all sequences together;
                        0 = default (256) */
    int n_seqs;      /* max sequences per call; 0 = default (64) */
    int n_threads;   /* OpenMP threads; 0 = all cores */
    int activations; /* matmul arithmetic, QWEN3C_ACTIVATIONS_* (as qwen3c_context_params) */
} qwen3c_batch_params;

qwen3c_batch_params qwen3c_batch_default_params(void);

/* Create the scratch for batched forward passes over contexts of `model` (which must outlive
 * it). INVALID_ARG for a parameter out of range, NOMEM. */
int  qwen3c_batch_create(const qwen3c_model *model, const qwen3c_batch_params *params,
                         qwen3c_batch **out, char *err, size_t err_size);
void qwen3c_batch_free(qwen3c_batch *batch);  /* NULL is a no-op */

/* One sequence's share of a batched forward pass. */
typedef struct qwen3c_batch_seq {
    qwen3c_context *ctx;     /* whose KV cache the tokens go into (at most once per call) */
    const int32_t  *tokens;  /* n_tokens ids, placed at positions pos .. pos + n_tokens - 1 */
    int             n_tokens;
    int             pos;
    float          *logits;  /* caller-owned (vocab_size) floats: the last token's logits;
                                NULL to skip them (a prefill chunk) */
} qwen3c_batch_seq;

/* Run one forward pass over seqs[0..n_seqs): for each sequence, as qwen3c_forward(ctx,
 * tokens, n_tokens, pos, logits, 0) would -- same logits to float rounding, same cache
 * contents -- with every weight matrix read once for the whole batch. A sequence of one
 * token is a decode step; of several, a prefill chunk; both mix freely.
 * Errors, before any compute (every cache untouched): QWEN3C_ERR_INVALID_ARG for n_seqs out of
 * [1, the batch's n_seqs], a total of tokens above the batch's n_tokens, a NULL or repeated
 * context, a context of another model, n_tokens < 1, pos < 0 or a token id outside the
 * vocabulary (the message names the sequence); QWEN3C_ERR_CONTEXT when pos + n_tokens
 * exceeds a context's n_ctx; QWEN3C_ERR_NOMEM when the attention scratch for a longer
 * context cannot be grown. */
int qwen3c_forward_batch(qwen3c_batch *batch, const qwen3c_batch_seq *seqs, int n_seqs,
                         char *err, size_t err_size);

/* qwen3c_sampler_sample restricted to the tokens `allowed` admits (constrained decoding: a
 * grammar's mask for the next token): bit i % 32 of allowed[i / 32] set = token i may be
 * picked (the token bitmask layout of llguidance, ceil(n_vocab / 32) words); the others count
 * as logit -inf before the penalties and everything after. allowed == NULL admits every
 * token. QWEN3C_ERR_INVALID_ARG when no admitted token has a logit above -inf; otherwise as
 * qwen3c_sampler_sample. */
int qwen3c_sampler_sample_masked(qwen3c_sampler *sampler, const float *logits, int n_vocab,
                                 const uint32_t *allowed, int32_t *token_out, char *err,
                                 size_t err_size);

/* The gated delta rule of one value head of Qwen3.5's Gated DeltaNet (transformers:
 * torch_recurrent_gated_delta_rule / torch_chunk_gated_delta_rule), exposed for tests. state:
 * (hk, hv), updated in place; q, k: (n, hk), already l2-normalized (q also scaled by
 * 1/sqrt(hk)); v, out: (n, hv); g (log decays, <= 0) and beta: (n). chunked: 0 = one token at
 * a time (what the forward pass runs), 1 = transformers' chunked prefill algorithm.
 * QWEN3C_ERR_INVALID_ARG for NULL buffers or sizes < 1; QWEN3C_ERR_NOMEM. */
int qwen3c_gated_delta_rule(float *state, int hk, int hv, const float *q, const float *k,
                            const float *v, const float *g, const float *beta, int n, float *out,
                            int chunked, char *err, size_t err_size);

/* CDEF END */

#ifdef __cplusplus
}
#endif
#endif /* QWEN3C_H */
