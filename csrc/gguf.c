/*
 * gguf.c -- a validating reader for GGUF v3 files.
 *
 * The format (all integers little-endian):
 *
 *   header        u32 magic "GGUF" | u32 version (3) | u64 n_tensors | u64 n_kv
 *   n_kv times    string key | u32 value_type | value
 *   n_tensors     string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset
 *   padding       up to a multiple of general.alignment (default 32)
 *   data section  tensor bytes; every offset is relative to the start of this section and
 *                 a multiple of the alignment
 *
 *   string        u64 length | bytes (no NUL terminator)
 *   value         by type: u8 i8 u16 i16 u32 i32 f32 bool(u8) string u64 i64 f64, or an
 *                 array: u32 element_type | u64 count | count values
 *
 * The whole file is mapped read-only (os_posix.c / os_windows.c) and every read goes through a
 * cursor that checks the remaining length first, so no field can make us read past the end of
 * the mapping. Counts and sizes are multiplied with overflow checks before they are used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define GGUF_MAGIC            0x46554747u /* "GGUF" little-endian */
#define GGUF_VERSION          3u
#define GGUF_DEFAULT_ALIGN    32u
#define GGUF_MAX_DIMS         4u
#define GGUF_MAX_NAME         65535u      /* longer keys / tensor names are treated as corrupt */

/* ---------------------------------------------------------------------------------------
 * ggml tensor types: elements per block and bytes per block (0 = unknown type)
 * ------------------------------------------------------------------------------------- */
typedef struct { const char *name; uint32_t blck; uint32_t size; } ggml_type_traits;

static const ggml_type_traits TYPE_TRAITS[] = {
    [0] = {"F32", 1, 4},       [1] = {"F16", 1, 2},         [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},    [6] = {"Q5_0", 32, 22},      [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},    [9] = {"Q8_1", 32, 40},      [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110}, [12] = {"Q4_K", 256, 144},   [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 256, 292},   [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},[18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18}, [21] = {"IQ3_S", 256, 110},  [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},       [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},      [27] = {"I64", 1, 8},        [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56}, [30] = {"BF16", 1, 2},       [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66}, [39] = {"MXFP4", 32, 17},
};
#define N_TYPE_TRAITS (sizeof(TYPE_TRAITS) / sizeof(TYPE_TRAITS[0]))

static const ggml_type_traits *type_traits(uint32_t type) {
    if (type >= N_TYPE_TRAITS || TYPE_TRAITS[type].blck == 0) return NULL;
    return &TYPE_TRAITS[type];
}

const char *gguf_type_name(uint32_t type) {
    const ggml_type_traits *tt = type_traits(type);
    return tt ? tt->name : "unknown";
}

/* ---------------------------------------------------------------------------------------
 * Overflow-checked arithmetic
 * ------------------------------------------------------------------------------------- */
#if defined(__GNUC__) || defined(__clang__)
static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static bool add_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }
#else /* plain C: the same answers */
static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}
static bool add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return false;
    *out = a + b;
    return true;
}
#endif

/* ---------------------------------------------------------------------------------------
 * A bounds-checked cursor over the file image
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const uint8_t *base;
    uint64_t       size;
    uint64_t       pos;
    char          *err;
    size_t         err_size;
} cursor;

static uint64_t remaining(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > remaining(c))
        return qwen3c_fail(c->err, c->err_size, QWEN3C_ERR_FORMAT,
                           "truncated file: %s needs %llu bytes at offset %llu but only %llu remain",
                           what, (unsigned long long)n, (unsigned long long)c->pos,
                           (unsigned long long)remaining(c));
    return QWEN3C_OK;
}

static int read_bytes(cursor *c, void *dst, uint64_t n, const char *what) {
    int rc = need(c, n, what);
    if (rc) return rc;
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return QWEN3C_OK;
}

static int read_u32(cursor *c, uint32_t *v, const char *what) { return read_bytes(c, v, 4, what); }
static int read_u64(cursor *c, uint64_t *v, const char *what) { return read_bytes(c, v, 8, what); }

static int read_str(cursor *c, gguf_str *s, const char *what) {
    uint64_t len;
    int rc = read_u64(c, &len, what);
    if (rc) return rc;
    if (len > remaining(c))
        return qwen3c_fail(c->err, c->err_size, QWEN3C_ERR_FORMAT,
                           "%s: string length %llu at offset %llu runs past the end of the file",
                           what, (unsigned long long)len, (unsigned long long)(c->pos - 8));
    s->ptr = (const char *)(c->base + c->pos);
    s->len = len;
    c->pos += len;
    return QWEN3C_OK;
}

/* Size in bytes of one scalar value type (0 for string/array/unknown). */
uint64_t gguf_value_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* Print a key for error messages (keys are not NUL-terminated). */
#define KEYFMT "'%.*s'"
#define KEYARG(s) (int)((s).len > 200 ? 200 : (s).len), (s).ptr

static int skip_value(cursor *c, gguf_kv *kv) {
    uint64_t start = c->pos;
    if (kv->type == GGUF_TYPE_STRING) {
        gguf_str s;
        int rc = read_str(c, &s, "string value");
        if (rc) return rc;
        kv->data = (const uint8_t *)s.ptr - 8;
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        uint32_t et;
        uint64_t n;
        int rc = read_u32(c, &et, "array type");
        if (!rc) rc = read_u64(c, &n, "array length");
        if (rc) return rc;
        kv->arr_type = et;
        kv->arr_n = n;
        kv->data = c->base + c->pos;
        if (et == GGUF_TYPE_STRING) {
            /* each string needs at least its 8-byte length: bound n before walking */
            if (n > remaining(c) / 8)
                return qwen3c_fail(c->err, c->err_size, QWEN3C_ERR_FORMAT,
                                   "key " KEYFMT ": array of %llu strings runs past the end of the file",
                                   KEYARG(kv->key), (unsigned long long)n);
            for (uint64_t i = 0; i < n; i++) {
                gguf_str s;
                rc = read_str(c, &s, "array string");
                if (rc) return qwen3c_fail_prefix(c->err, c->err_size, rc, "array element");
            }
        } else if (et == GGUF_TYPE_ARRAY) {
            return qwen3c_fail(c->err, c->err_size, QWEN3C_ERR_FORMAT,
                               "key " KEYFMT ": nested arrays are not supported", KEYARG(kv->key));
        } else {
            uint64_t es = gguf_value_size(et), bytes;
            if (es == 0)
                return qwen3c_fail(c->err, c->err_size, QWEN3C_ERR_FORMAT,
                                   "key " KEYFMT ": unknown array element type %u", KEYARG(kv->key), et);
            if (!mul_u64(es, n, &bytes) || bytes > remaining(c))
                return qwen3c_fail(c->err, c->err_size, QWEN3C_ERR_FORMAT,
                                   "key " KEYFMT ": array length %llu runs past the end of the file",
                                   KEYARG(kv->key), (unsigned long long)n);
            c->pos += bytes;
        }
    } else {
        uint64_t es = gguf_value_size(kv->type);
        if (es == 0)
            return qwen3c_fail(c->err, c->err_size, QWEN3C_ERR_FORMAT,
                               "key " KEYFMT ": unknown value type %u", KEYARG(kv->key), kv->type);
        kv->data = c->base + c->pos;
        int rc = need(c, es, "value");
        if (rc) return rc;
        c->pos += es;
    }
    kv->size = c->pos - start;
    return QWEN3C_OK;
}

/* ---------------------------------------------------------------------------------------
 * Hash set over names, to reject duplicate keys / tensor names without O(n^2) work
 * ------------------------------------------------------------------------------------- */
static uint64_t hash_str(gguf_str s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < s.len; i++) h = (h ^ (uint8_t)s.ptr[i]) * 1099511628211ull;
    return h;
}

static bool str_eq(gguf_str a, gguf_str b) { return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0; }

/* Returns 1 if a duplicate exists among names[0..n), 0 if not, -1 on allocation failure. */
static int has_duplicate(const gguf_str *const *names, uint64_t n, uint64_t *dup_index) {
    if (n < 2) return 0;
    uint64_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    uint64_t *slots = malloc(cap * sizeof(uint64_t));
    if (!slots) return -1;
    for (uint64_t i = 0; i < cap; i++) slots[i] = UINT64_MAX;
    int found = 0;
    for (uint64_t i = 0; i < n && !found; i++) {
        uint64_t j = hash_str(*names[i]) & (cap - 1);
        while (slots[j] != UINT64_MAX) {
            if (str_eq(*names[slots[j]], *names[i])) { found = 1; *dup_index = i; break; }
            j = (j + 1) & (cap - 1);
        }
        if (!found) slots[j] = i;
    }
    free(slots);
    return found;
}

/* ---------------------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------------------- */
static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse(gguf_file *gf, char *err, size_t err_size) {
    cursor cur = {gf->base, gf->size, 0, err, err_size};
    cursor *c = &cur;
    int rc;

    /* header */
    uint32_t magic;
    if (gf->size < 4)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "not a GGUF file: %zu bytes is too short for a header", gf->size);
    read_u32(c, &magic, "magic");
    if (magic != GGUF_MAGIC)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "not a GGUF file: bad magic 0x%08x (expected \"GGUF\")", magic);
    if ((rc = read_u32(c, &gf->version, "version"))) return rc;
    if (gf->version != GGUF_VERSION)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "unsupported GGUF version %u (only version 3 is supported)", gf->version);
    if ((rc = read_u64(c, &gf->n_tensors, "tensor count"))) return rc;
    if ((rc = read_u64(c, &gf->n_kv, "metadata count"))) return rc;

    /* bound the counts by the smallest possible record before allocating anything:
     * a kv is >= 8 (key length) + 4 (type) + 1 (u8 value); a tensor info is >= 8 + 4 + 8 + 4 + 8 */
    if (gf->n_kv > remaining(c) / 13)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "absurd metadata count %llu for a file of %zu bytes",
                           (unsigned long long)gf->n_kv, gf->size);
    if (gf->n_tensors > remaining(c) / 32)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "absurd tensor count %llu for a file of %zu bytes",
                           (unsigned long long)gf->n_tensors, gf->size);

    /* metadata */
    gf->kv = calloc(gf->n_kv ? gf->n_kv : 1, sizeof(gguf_kv));
    if (!gf->kv) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for metadata");
    for (uint64_t i = 0; i < gf->n_kv; i++) {
        gguf_kv *kv = &gf->kv[i];
        if ((rc = read_str(c, &kv->key, "metadata key"))) return rc;
        if (kv->key.len == 0 || kv->key.len > GGUF_MAX_NAME)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "metadata key %llu has invalid length %llu",
                               (unsigned long long)i, (unsigned long long)kv->key.len);
        if ((rc = read_u32(c, &kv->type, "value type"))) return rc;
        if (kv->type >= GGUF_TYPE_COUNT)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "key " KEYFMT ": unknown value type %u", KEYARG(kv->key), kv->type);
        if ((rc = skip_value(c, kv))) {
            if (strstr(err ? err : "", "key '") != NULL) return rc; /* already names the key */
            char what[256];
            snprintf(what, sizeof(what), "metadata key " KEYFMT, KEYARG(kv->key));
            return qwen3c_fail_prefix(err, err_size, rc, what);
        }
    }
    {
        const gguf_str **names = malloc((gf->n_kv ? gf->n_kv : 1) * sizeof(*names));
        if (!names) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory");
        for (uint64_t i = 0; i < gf->n_kv; i++) names[i] = &gf->kv[i].key;
        uint64_t dup = 0;
        int d = has_duplicate(names, gf->n_kv, &dup);
        free(names);
        if (d < 0) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory");
        if (d) return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                                  "duplicate metadata key " KEYFMT, KEYARG(gf->kv[dup].key));
    }

    /* general.alignment */
    gf->alignment = GGUF_DEFAULT_ALIGN;
    const gguf_kv *akv = gguf_find_kv(gf, "general.alignment");
    if (akv) {
        uint32_t a;
        if (akv->type != GGUF_TYPE_UINT32)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "general.alignment must be a uint32 (found value type %u)", akv->type);
        memcpy(&a, akv->data, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "bad general.alignment %u: must be a non-zero power of two", a);
        gf->alignment = a;
    }

    /* tensor infos */
    gf->tensors = calloc(gf->n_tensors ? gf->n_tensors : 1, sizeof(gguf_tensor));
    if (!gf->tensors) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory for tensors");
    for (uint64_t i = 0; i < gf->n_tensors; i++) {
        gguf_tensor *t = &gf->tensors[i];
        if ((rc = read_str(c, &t->name, "tensor name"))) return rc;
        if (t->name.len == 0 || t->name.len > GGUF_MAX_NAME)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "tensor %llu has invalid name length %llu",
                               (unsigned long long)i, (unsigned long long)t->name.len);
        if ((rc = read_u32(c, &t->n_dims, "tensor n_dims"))) return rc;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "tensor " KEYFMT ": n_dims %u is out of range (1..4)",
                               KEYARG(t->name), t->n_dims);
        uint64_t nelem = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne;
            if ((rc = read_u64(c, &ne, "tensor shape"))) return rc;
            if (ne == 0 || ne > (uint64_t)INT64_MAX)
                return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                                   "tensor " KEYFMT ": invalid dimension %u of size %lld",
                                   KEYARG(t->name), d, (long long)ne);
            if (!mul_u64(nelem, ne, &nelem) || nelem > ((uint64_t)1 << 56))
                return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                                   "tensor " KEYFMT ": element count overflows", KEYARG(t->name));
            t->ne[d] = (int64_t)ne;
        }
        if ((rc = read_u32(c, &t->type, "tensor type"))) return rc;
        if ((rc = read_u64(c, &t->offset, "tensor offset"))) return rc;
        const ggml_type_traits *tt = type_traits(t->type);
        if (!tt)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "tensor " KEYFMT ": unknown tensor type %u", KEYARG(t->name), t->type);
        if (t->ne[0] % tt->blck != 0)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "tensor " KEYFMT ": row length %lld is not a multiple of the %s block size %u",
                               KEYARG(t->name), (long long)t->ne[0], tt->name, tt->blck);
        /* nbytes = nelem / blck * size, computed without overflow (nelem < 2^56) */
        if (!mul_u64(nelem / tt->blck, tt->size, &t->nbytes))
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "tensor " KEYFMT ": byte size overflows", KEYARG(t->name));
    }
    {
        const gguf_str **names = malloc((gf->n_tensors ? gf->n_tensors : 1) * sizeof(*names));
        if (!names) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory");
        for (uint64_t i = 0; i < gf->n_tensors; i++) names[i] = &gf->tensors[i].name;
        uint64_t dup = 0;
        int d = has_duplicate(names, gf->n_tensors, &dup);
        free(names);
        if (d < 0) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory");
        if (d) return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                                  "duplicate tensor name " KEYFMT, KEYARG(gf->tensors[dup].name));
    }

    /* data section: starts at the next multiple of the alignment */
    uint64_t data_off;
    if (!add_u64(c->pos, gf->alignment - 1, &data_off))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "data offset overflows");
    data_off -= data_off % gf->alignment;
    if (gf->n_tensors > 0 && data_off > gf->size)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "truncated file: the tensor data section (offset %llu) is missing",
                           (unsigned long long)data_off);
    gf->data_offset = data_off;
    uint64_t data_size = gf->size > data_off ? gf->size - data_off : 0;

    for (uint64_t i = 0; i < gf->n_tensors; i++) {
        gguf_tensor *t = &gf->tensors[i];
        uint64_t end;
        if (t->offset % gf->alignment != 0)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "tensor " KEYFMT ": offset %llu is not a multiple of the alignment %llu",
                               KEYARG(t->name), (unsigned long long)t->offset,
                               (unsigned long long)gf->alignment);
        if (!add_u64(t->offset, t->nbytes, &end) || end > data_size)
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "tensor " KEYFMT ": data [%llu, +%llu) lies outside the file's data "
                               "section of %llu bytes (truncated or corrupt file)",
                               KEYARG(t->name), (unsigned long long)t->offset,
                               (unsigned long long)t->nbytes, (unsigned long long)data_size);
        t->data = gf->base + data_off + t->offset;
    }
    /* no two tensors may share bytes */
    if (gf->n_tensors > 1) {
        gguf_tensor **order = malloc(gf->n_tensors * sizeof(*order));
        if (!order) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory");
        for (uint64_t i = 0; i < gf->n_tensors; i++) order[i] = &gf->tensors[i];
        qsort(order, gf->n_tensors, sizeof(*order), cmp_tensor_offset);
        for (uint64_t i = 0; i + 1 < gf->n_tensors; i++) {
            if (order[i]->offset + order[i]->nbytes > order[i + 1]->offset) {
                rc = qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                                 "tensors " KEYFMT " and " KEYFMT " overlap in the data section",
                                 KEYARG(order[i]->name), KEYARG(order[i + 1]->name));
                free(order);
                return rc;
            }
        }
        free(order);
    }
    return QWEN3C_OK;
}

int gguf_parse(const uint8_t *buf, size_t size, gguf_file *gf, char *err, size_t err_size) {
    memset(gf, 0, sizeof(*gf));
    gf->base = buf;
    gf->size = size;
    int rc = parse(gf, err, err_size);
    if (rc) gguf_close(gf);
    return rc;
}

int gguf_open(const char *path, gguf_file *gf, char *err, size_t err_size) {
    memset(gf, 0, sizeof(*gf));
    const uint8_t *map;
    size_t size;
    int rc = os_map_file(path, 24, &map, &size, err, err_size); /* 24: the header's bytes */
    if (rc) return rc;
    rc = gguf_parse(map, size, gf, err, err_size);
    if (rc) {
        os_unmap_file(map, size);
        return rc;
    }
    /* decode streams every weight once per token: where the kernel keeps this file's page cache
     * in 2 MB folios, map them as huge pages (fewer TLB misses); a hint, harmless if refused */
    os_advise_huge((void *)map, size);
    gf->mapped = 1;
    return QWEN3C_OK;
}

void gguf_close(gguf_file *gf) {
    if (!gf) return;
    free(gf->kv);
    free(gf->tensors);
    if (gf->mapped && gf->base) os_unmap_file(gf->base, gf->size);
    memset(gf, 0, sizeof(*gf));
}

/* ---------------------------------------------------------------------------------------
 * Lookups and typed getters
 * ------------------------------------------------------------------------------------- */
bool gguf_str_eq(gguf_str s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

const gguf_kv *gguf_find_kv(const gguf_file *gf, const char *key) {
    for (uint64_t i = 0; i < gf->n_kv; i++)
        if (gguf_str_eq(gf->kv[i].key, key)) return &gf->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *gf, const char *name) {
    for (uint64_t i = 0; i < gf->n_tensors; i++)
        if (gguf_str_eq(gf->tensors[i].name, name)) return &gf->tensors[i];
    return NULL;
}

const char *gguf_value_type_name(uint32_t t) {
    static const char *const names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32",
                                        "float32", "bool", "string", "array", "uint64", "int64",
                                        "float64"};
    return t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

static int find_required(const gguf_file *gf, const char *key, const gguf_kv **out, char *err,
                         size_t err_size) {
    *out = gguf_find_kv(gf, key);
    if (!*out)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "missing required metadata key '%s'", key);
    return QWEN3C_OK;
}

/* Read a scalar integer of any width; *neg set when it is negative. */
static bool scalar_int(const gguf_kv *kv, uint64_t *u, bool *neg) {
    const uint8_t *p = kv->data;
    *neg = false;
    switch (kv->type) {
    case GGUF_TYPE_UINT8:  { uint8_t v;  memcpy(&v, p, 1); *u = v; return true; }
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *u = v; return true; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *u = v; return true; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); *u = v; return true; }
    case GGUF_TYPE_INT8:   { int8_t v;   memcpy(&v, p, 1); *neg = v < 0; *u = (uint64_t)v; return true; }
    case GGUF_TYPE_INT16:  { int16_t v;  memcpy(&v, p, 2); *neg = v < 0; *u = (uint64_t)v; return true; }
    case GGUF_TYPE_INT32:  { int32_t v;  memcpy(&v, p, 4); *neg = v < 0; *u = (uint64_t)v; return true; }
    case GGUF_TYPE_INT64:  { int64_t v;  memcpy(&v, p, 8); *neg = v < 0; *u = (uint64_t)v; return true; }
    default: return false;
    }
}

int gguf_get_u64(const gguf_file *gf, const char *key, uint64_t *out, char *err, size_t err_size) {
    const gguf_kv *kv;
    int rc = find_required(gf, key, &kv, err, err_size);
    if (rc) return rc;
    uint64_t u;
    bool neg;
    if (!scalar_int(kv, &u, &neg))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "metadata key '%s' must be an integer (found %s)", key,
                           gguf_value_type_name(kv->type));
    if (neg)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "metadata key '%s' must not be negative (found %lld)", key, (long long)u);
    *out = u;
    return QWEN3C_OK;
}

int gguf_get_f64(const gguf_file *gf, const char *key, double *out, char *err, size_t err_size) {
    const gguf_kv *kv;
    int rc = find_required(gf, key, &kv, err, err_size);
    if (rc) return rc;
    if (kv->type == GGUF_TYPE_FLOAT32) { float v; memcpy(&v, kv->data, 4); *out = v; return QWEN3C_OK; }
    if (kv->type == GGUF_TYPE_FLOAT64) { double v; memcpy(&v, kv->data, 8); *out = v; return QWEN3C_OK; }
    uint64_t u;
    bool neg;
    if (scalar_int(kv, &u, &neg)) { *out = neg ? (double)(int64_t)u : (double)u; return QWEN3C_OK; }
    return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                       "metadata key '%s' must be a number (found %s)", key, gguf_value_type_name(kv->type));
}

int gguf_get_str(const gguf_file *gf, const char *key, gguf_str *out, char *err, size_t err_size) {
    const gguf_kv *kv;
    int rc = find_required(gf, key, &kv, err, err_size);
    if (rc) return rc;
    if (kv->type != GGUF_TYPE_STRING)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "metadata key '%s' must be a string (found %s)", key, gguf_value_type_name(kv->type));
    uint64_t len;
    memcpy(&len, kv->data, 8);
    out->ptr = (const char *)kv->data + 8;
    out->len = len;
    return QWEN3C_OK;
}

int gguf_get_str_array(const gguf_file *gf, const char *key, gguf_str **out, uint64_t *n,
                       char *err, size_t err_size) {
    const gguf_kv *kv;
    int rc = find_required(gf, key, &kv, err, err_size);
    if (rc) return rc;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "metadata key '%s' must be an array of strings", key);
    gguf_str *arr = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof(gguf_str));
    if (!arr) return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory reading '%s'", key);
    const uint8_t *p = kv->data; /* already validated by the parser */
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        arr[i].ptr = (const char *)p + 8;
        arr[i].len = len;
        p += 8 + len;
    }
    *out = arr;
    *n = kv->arr_n;
    return QWEN3C_OK;
}

int gguf_get_array(const gguf_file *gf, const char *key, uint32_t elem_type, const uint8_t **data,
                   uint64_t *n, char *err, size_t err_size) {
    const gguf_kv *kv;
    int rc = find_required(gf, key, &kv, err, err_size);
    if (rc) return rc;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != elem_type)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "metadata key '%s' must be an array of %s", key, gguf_value_type_name(elem_type));
    *data = kv->data;
    *n = kv->arr_n;
    return QWEN3C_OK;
}
