/*
 * testutil.h -- shared by the C tests: a CHECK macro and a tiny in-memory GGUF image writer.
 */
#ifndef QWEN3C_TESTUTIL_H
#define QWEN3C_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

/* A growable byte buffer holding a GGUF image. */
typedef struct { uint8_t *p; size_t n, cap; } Buf;
static inline void put(Buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) { b->cap = (b->n + n) * 2; b->p = realloc(b->p, b->cap); }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static inline void put_u32(Buf *b, uint32_t v) { put(b, &v, 4); }
static inline void put_u64(Buf *b, uint64_t v) { put(b, &v, 8); }
static inline void put_str(Buf *b, const char *s, size_t n) { put_u64(b, n); put(b, s, n); }
static inline void kv_str(Buf *b, const char *k, const char *v) {
    put_str(b, k, strlen(k)); put_u32(b, GGUF_TYPE_STRING); put_str(b, v, strlen(v));
}
static inline void kv_u32(Buf *b, const char *k, uint32_t v) {
    put_str(b, k, strlen(k)); put_u32(b, GGUF_TYPE_UINT32); put_u32(b, v);
}
static inline void kv_f32(Buf *b, const char *k, float v) {
    put_str(b, k, strlen(k)); put_u32(b, GGUF_TYPE_FLOAT32); put(b, &v, 4);
}
/* The GGUF v3 header and the 11 metadata keys of a qwen3 model (the tensor infos follow). */
static inline void qwen3_header(Buf *b, uint64_t n_tensors, uint32_t n_layers, uint32_t n_ctx, uint32_t dim,
                                uint32_t hidden, uint32_t n_heads, uint32_t n_kv_heads, uint32_t head_dim,
                                uint32_t alignment) {
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, n_tensors);
    put_u64(b, 11);
    kv_str(b, "general.architecture", "qwen3");
    kv_u32(b, "qwen3.block_count", n_layers);
    kv_u32(b, "qwen3.context_length", n_ctx);
    kv_u32(b, "qwen3.embedding_length", dim);
    kv_u32(b, "qwen3.feed_forward_length", hidden);
    kv_u32(b, "qwen3.attention.head_count", n_heads);
    kv_u32(b, "qwen3.attention.head_count_kv", n_kv_heads);
    kv_u32(b, "qwen3.attention.key_length", head_dim);
    kv_f32(b, "qwen3.rope.freq_base", 1e6f);
    kv_f32(b, "qwen3.attention.layer_norm_rms_epsilon", 1e-6f);
    kv_u32(b, "general.alignment", alignment);
}
/* A tensor info: name, n_dims (1 or 2), ne[0] (contiguous), ne[1], type, data offset. */
static inline void tensor_info(Buf *b, const char *name, int n_dims, uint64_t ne0, uint64_t ne1, uint32_t type,
                               uint64_t offset) {
    put_str(b, name, strlen(name));
    put_u32(b, (uint32_t)n_dims);
    put_u64(b, ne0);
    if (n_dims > 1) put_u64(b, ne1);
    put_u32(b, type);
    put_u64(b, offset);
}

#endif
