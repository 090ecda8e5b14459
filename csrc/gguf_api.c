/*
 * gguf_api.c -- the GGUF reader's public face: qwen3c_gguf_* (see qwen3c.h).
 *
 * `qwen3c info` and `qwen3c audit` describe a file with the same validating reader that
 * loading uses (gguf.c), instead of a second parser that could accept what loading rejects.
 * A qwen3c_gguf is the internal gguf_file: every view below reads the mapping through the
 * bounds the parser already checked, so none of them can read past the end of the file.
 */
#include <stdlib.h>

#include "internal.h"

#define CHECK_HANDLE(g)                                                                        \
    do {                                                                                       \
        if (!(g)) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "gguf is NULL");   \
    } while (0)

/* A key in an error message (keys are not NUL-terminated): at most 200 bytes of it. */
#define KEYARG(s) (int)((s).len > 200 ? 200 : (s).len), (s).ptr

int qwen3c_gguf_open(const char *path, qwen3c_gguf **out, char *err, size_t err_size) {
    if (!path || !out)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "path and out must not be NULL");
    gguf_file *gf = calloc(1, sizeof(*gf));
    if (!gf) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory");
    int rc = gguf_open(path, gf, err, err_size);
    if (rc) {
        free(gf);
        return rc;
    }
    *out = gf;
    return QWEN3C_OK;
}

void qwen3c_gguf_free(qwen3c_gguf *gguf) {
    if (!gguf) return;
    gguf_close(gguf);
    free(gguf);
}

const qwen3c_gguf *qwen3c_model_gguf(const qwen3c_model *model) {
    return model ? &model->file : NULL;
}

int qwen3c_gguf_get_header(const qwen3c_gguf *g, qwen3c_gguf_header *out, char *err,
                           size_t err_size) {
    CHECK_HANDLE(g);
    if (!out) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "out must not be NULL");
    out->version = g->version;
    out->n_kv = g->n_kv;
    out->n_tensors = g->n_tensors;
    out->alignment = g->alignment;
    out->data_offset = g->data_offset;
    out->file_size = g->size;
    return QWEN3C_OK;
}

/* Copy a name NUL-terminated (truncated when it does not fit); BUFFER when it did not fit. */
static int copy_name(gguf_str s, char *buf, size_t buf_size) {
    if (buf && buf_size > 0) {
        size_t n = s.len < buf_size - 1 ? (size_t)s.len : buf_size - 1;
        memcpy(buf, s.ptr, n);
        buf[n] = '\0';
    }
    return buf_size > s.len ? QWEN3C_OK : QWEN3C_ERR_BUFFER;
}

static int get_kv(const qwen3c_gguf *g, uint64_t i, const gguf_kv **kv, char *err, size_t err_size) {
    CHECK_HANDLE(g);
    if (i >= g->n_kv)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "metadata index %llu is out of range (the file has %llu entries)",
                           (unsigned long long)i, (unsigned long long)g->n_kv);
    *kv = &g->kv[i];
    return QWEN3C_OK;
}

int qwen3c_gguf_kv(const qwen3c_gguf *g, uint64_t i, char *key, size_t key_size,
                   qwen3c_gguf_kv_info *info, char *err, size_t err_size) {
    const gguf_kv *kv = NULL;
    int rc = get_kv(g, i, &kv, err, err_size);
    if (rc) return rc;
    if (!info) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "info must not be NULL");
    const bool arr = kv->type == GGUF_TYPE_ARRAY;
    info->type = (int)kv->type;
    info->elem_type = (int)(arr ? kv->arr_type : kv->type);
    info->n = arr ? kv->arr_n : 1;
    info->key_len = (size_t)kv->key.len;
    if (copy_name(kv->key, key, key_size) != QWEN3C_OK)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_BUFFER,
                           "the key needs %zu bytes, the buffer has %zu", info->key_len + 1, key_size);
    return QWEN3C_OK;
}

int qwen3c_gguf_find_kv(const qwen3c_gguf *g, const char *key, int64_t *index, char *err,
                        size_t err_size) {
    CHECK_HANDLE(g);
    if (!key || !index)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "key and index must not be NULL");
    const gguf_kv *kv = gguf_find_kv(g, key);
    *index = kv ? (int64_t)(kv - g->kv) : -1;
    return QWEN3C_OK;
}

/* Entry i, its element type, and the check that [start, start + count) lies within its
 * elements (a scalar is one element). */
static int get_range(const qwen3c_gguf *g, uint64_t i, uint64_t start, uint64_t count,
                     const gguf_kv **out, uint32_t *type, char *err, size_t err_size) {
    const gguf_kv *kv = NULL;
    int rc = get_kv(g, i, &kv, err, err_size);
    if (rc) return rc;
    const bool arr = kv->type == GGUF_TYPE_ARRAY;
    const uint64_t n = arr ? kv->arr_n : 1;
    *type = arr ? kv->arr_type : kv->type;
    if (start > n || count > n - start)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "elements [%llu, +%llu) of '%.*s' are out of range (it has %llu)",
                           (unsigned long long)start, (unsigned long long)count, KEYARG(kv->key),
                           (unsigned long long)n);
    *out = kv;
    return QWEN3C_OK;
}

int qwen3c_gguf_get_values(const qwen3c_gguf *g, uint64_t i, uint64_t start, uint64_t count,
                           void *out, size_t out_size, char *err, size_t err_size) {
    const gguf_kv *kv = NULL;
    uint32_t type = 0;
    int rc = get_range(g, i, start, count, &kv, &type, err, err_size);
    if (rc) return rc;
    const uint64_t es = gguf_value_size(type);
    if (es == 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "'%.*s' holds %s values, not numbers: use qwen3c_gguf_get_strings",
                           KEYARG(kv->key), gguf_value_type_name(type));
    if (count == 0) return QWEN3C_OK;
    if (!out || out_size / es < count)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "%llu %s values need %llu bytes, the buffer has %zu",
                           (unsigned long long)count, gguf_value_type_name(type),
                           (unsigned long long)(count * es), out ? out_size : 0);
    memcpy(out, kv->data + start * es, (size_t)(count * es));
    return QWEN3C_OK;
}

int qwen3c_gguf_get_strings(const qwen3c_gguf *g, uint64_t i, uint64_t start, uint64_t count,
                            char *buf, size_t buf_size, uint64_t *lens, size_t *total,
                            char *err, size_t err_size) {
    const gguf_kv *kv = NULL;
    uint32_t type = 0;
    int rc = get_range(g, i, start, count, &kv, &type, err, err_size);
    if (rc) return rc;
    if (type != GGUF_TYPE_STRING)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "'%.*s' holds %s values, not strings", KEYARG(kv->key),
                           gguf_value_type_name(type));
    if (!total || (count > 0 && !lens))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "lens and total must not be NULL");
    /* kv->data points at the first string's u64 length; the parser checked every length */
    const uint8_t *p = kv->data;
    uint64_t len;
    for (uint64_t k = 0; k < start; k++) {
        memcpy(&len, p, 8);
        p += 8 + len;
    }
    const uint8_t *first = p;
    size_t sum = 0;
    for (uint64_t k = 0; k < count; k++) {
        memcpy(&len, p, 8);
        sum += (size_t)len;
        p += 8 + len;
    }
    *total = sum;
    if (buf_size < sum || (sum > 0 && !buf))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_BUFFER,
                           "the strings need %zu bytes, the buffer has %zu", sum, buf_size);
    p = first;
    char *dst = buf;
    for (uint64_t k = 0; k < count; k++) {
        memcpy(&len, p, 8);
        if (len) memcpy(dst, p + 8, (size_t)len);
        dst += len;
        lens[k] = len;
        p += 8 + len;
    }
    return QWEN3C_OK;
}

int qwen3c_gguf_tensor(const qwen3c_gguf *g, uint64_t i, char *name, size_t name_size,
                       size_t *name_len, qwen3c_tensor_info *info, char *err, size_t err_size) {
    CHECK_HANDLE(g);
    if (i >= g->n_tensors)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG,
                           "tensor index %llu is out of range (the file has %llu tensors)",
                           (unsigned long long)i, (unsigned long long)g->n_tensors);
    if (!name_len || !info)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "name_len and info must not be NULL");
    const gguf_tensor *t = &g->tensors[i];
    info->type = (int)t->type;
    info->n_dims = (int)t->n_dims;
    for (int d = 0; d < 4; d++) info->ne[d] = t->ne[d];
    info->offset = g->data_offset + t->offset;
    info->nbytes = t->nbytes;
    *name_len = (size_t)t->name.len;
    if (copy_name(t->name, name, name_size) != QWEN3C_OK)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_BUFFER,
                           "the tensor name needs %zu bytes, the buffer has %zu", *name_len + 1,
                           name_size);
    return QWEN3C_OK;
}
