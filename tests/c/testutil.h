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
