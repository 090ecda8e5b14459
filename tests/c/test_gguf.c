/*
 * test_gguf.c -- the GGUF reader and model loader against corrupt input, meant to run under
 * ASan + UBSan with leak checking (cmake -DQWEN3C_BUILD_C_TESTS=ON -DQWEN3C_SANITIZE=ON; ctest).
 *
 * Builds a valid tiny qwen3 model image in memory, checks that it parses and loads, then
 * loads thousands of corrupted variants (every header / metadata / tensor-info byte replaced
 * by several values, 64-bit fields set to extremes, truncation at every length of the
 * metadata part) from a temporary file. Each load must return a status (never crash, never
 * read out of bounds) and, when it fails, leave a non-empty error message; nothing may leak.
 */
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#endif
#include <unistd.h>
#endif

#include "testutil.h"

/* A new empty temporary file's name in path (MAX_PATH = 260 bytes at least); 0 on success. */
static int make_temp_file(char *path, size_t size) {
#ifdef _WIN32
    char dir[MAX_PATH];
    if (size < MAX_PATH || !GetTempPathA(sizeof dir, dir)) return -1;
    return GetTempFileNameA(dir, "q3c", 0, path) ? 0 : -1;
#else
    snprintf(path, size, "/tmp/qwen3c_test_gguf_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    return 0;
#endif
}

/* tiny dims: dim 32, hidden 64, 2 heads, 1 kv head, head_dim 16, vocab 64, 1 layer */
enum { DIM = 32, HID = 64, NH = 2, NKV = 1, HD = 16, VOCAB = 64, ALIGN = 32 };

typedef struct { const char *name; int n_dims; uint64_t ne[2]; } TensorSpec;

static const TensorSpec TENSORS[] = {
    {"token_embd.weight", 2, {DIM, VOCAB}},
    {"blk.0.attn_norm.weight", 1, {DIM, 1}},
    {"blk.0.attn_q.weight", 2, {DIM, NH * HD}},
    {"blk.0.attn_k.weight", 2, {DIM, NKV * HD}},
    {"blk.0.attn_v.weight", 2, {DIM, NKV * HD}},
    {"blk.0.attn_output.weight", 2, {NH * HD, DIM}},
    {"blk.0.attn_q_norm.weight", 1, {HD, 1}},
    {"blk.0.attn_k_norm.weight", 1, {HD, 1}},
    {"blk.0.ffn_norm.weight", 1, {DIM, 1}},
    {"blk.0.ffn_gate.weight", 2, {DIM, HID}},
    {"blk.0.ffn_up.weight", 2, {DIM, HID}},
    {"blk.0.ffn_down.weight", 2, {HID, DIM}},
    {"output_norm.weight", 1, {DIM, 1}},
};
#define N_TENSORS (sizeof(TENSORS) / sizeof(TENSORS[0]))

/* Returns the image; *meta_end = where the tensor data section starts. */
static Buf make_model_image(size_t *meta_end) {
    Buf b = {0};
    qwen3_header(&b, N_TENSORS, 1, 128, DIM, HID, NH, NKV, HD, ALIGN);
    uint64_t offset = 0;
    for (size_t i = 0; i < N_TENSORS; i++) {
        const TensorSpec *t = &TENSORS[i];
        tensor_info(&b, t->name, t->n_dims, t->ne[0], t->ne[1], QWEN3C_TYPE_F32, offset);
        uint64_t bytes = t->ne[0] * (t->n_dims > 1 ? t->ne[1] : 1) * 4;
        offset += (bytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    while (b.n % ALIGN) put(&b, "", 1);
    *meta_end = b.n;
    /* tensor data: small deterministic values */
    for (uint64_t i = 0; i < offset / 4; i++) {
        float v = (float)((int)(i * 2654435761u % 201) - 100) / 1000.0f;
        put(&b, &v, 4);
    }
    return b;
}

/* Read every metadata value and tensor of an open file through the public qwen3c_gguf_* API
 * (under ASan: no accessor may read outside the mapping, whatever the file says). */
static void walk_gguf(const qwen3c_gguf *g) {
    char err[256], key[512];
    qwen3c_gguf_header h;
    CHECK(qwen3c_gguf_get_header(g, &h, err, sizeof(err)) == QWEN3C_OK);
    for (uint64_t i = 0; i < h.n_kv; i++) {
        qwen3c_gguf_kv_info info;
        int rc = qwen3c_gguf_kv(g, i, key, sizeof(key), &info, err, sizeof(err));
        CHECK(rc == QWEN3C_OK || (rc == QWEN3C_ERR_BUFFER && info.key_len >= sizeof(key)));
        if (info.elem_type == QWEN3C_GGUF_STRING) {
            size_t total = 0;
            uint64_t lens[4];
            uint64_t count = info.n < 4 ? info.n : 4;
            rc = qwen3c_gguf_get_strings(g, i, info.n - count, count, NULL, 0, lens, &total, err, sizeof(err));
            CHECK(rc == QWEN3C_OK || rc == QWEN3C_ERR_BUFFER);
            char *buf = malloc(total + 1);
            CHECK(qwen3c_gguf_get_strings(g, i, info.n - count, count, buf, total, lens, &total, err,
                                          sizeof(err)) == QWEN3C_OK);
            free(buf);
        } else {
            uint8_t vals[64];
            uint64_t count = info.n < 8 ? info.n : 8;
            CHECK(qwen3c_gguf_get_values(g, i, info.n - count, count, vals, sizeof(vals), err,
                                         sizeof(err)) == QWEN3C_OK);
            CHECK(qwen3c_gguf_get_values(g, i, info.n, 1, vals, sizeof(vals), err, sizeof(err)) ==
                  QWEN3C_ERR_INVALID_ARG);
        }
    }
    for (uint64_t i = 0; i < h.n_tensors; i++) {
        qwen3c_tensor_info ti;
        size_t len;
        int rc = qwen3c_gguf_tensor(g, i, key, sizeof(key), &len, &ti, err, sizeof(err));
        CHECK(rc == QWEN3C_OK || (rc == QWEN3C_ERR_BUFFER && len >= sizeof(key)));
        CHECK(ti.offset + ti.nbytes <= h.file_size);
    }
    qwen3c_tensor_info ti;
    size_t len;
    CHECK(qwen3c_gguf_tensor(g, h.n_tensors, key, sizeof(key), &len, &ti, err, sizeof(err)) ==
          QWEN3C_ERR_INVALID_ARG);
}

static int load_image(const uint8_t *p, size_t n, const char *path, char *err, size_t err_size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    if (n) fwrite(p, 1, n, f);
    fclose(f);
    /* the reader on its own (what `qwen3c info` uses) */
    qwen3c_gguf *g = NULL;
    if (qwen3c_gguf_open(path, &g, err, err_size) == QWEN3C_OK) {
        walk_gguf(g);
        qwen3c_gguf_free(g);
    } else {
        CHECK(err[0] != '\0');
        CHECK(g == NULL);
    }
    qwen3c_model *m = NULL;
    err[0] = '\0';
    int rc = qwen3c_model_load(path, &m, err, err_size);
    if (rc == QWEN3C_OK) {
        /* a loadable variant must also run */
        qwen3c_context *ctx = NULL;
        qwen3c_context_params prm = qwen3c_context_default_params();
        prm.n_ctx = 8;
        prm.n_threads = 1;
        if (qwen3c_context_create(m, &prm, &ctx, err, err_size) == QWEN3C_OK) {
            int32_t toks[3] = {1, 2, 3};
            float logits[VOCAB];
            qwen3c_forward(ctx, toks, 3, 0, logits, 0, err, err_size);
            qwen3c_context_free(ctx);
        }
        qwen3c_model_free(m);
    } else {
        CHECK(err[0] != '\0');
        CHECK(m == NULL);
    }
    return rc;
}

int main(void) {
    char path[512];
    if (make_temp_file(path, sizeof path) != 0) { perror("temporary file"); return 1; }
    char err[512];
    size_t meta_end;
    Buf img = make_model_image(&meta_end);

    /* the valid image loads and runs */
    CHECK(load_image(img.p, img.n, path, err, sizeof(err)) == QWEN3C_OK);

    /* the public reader API on the valid image */
    {
        qwen3c_gguf *g = NULL;
        CHECK(qwen3c_gguf_open(path, &g, err, sizeof(err)) == QWEN3C_OK);
        qwen3c_gguf_header h;
        CHECK(qwen3c_gguf_get_header(g, &h, err, sizeof(err)) == QWEN3C_OK);
        CHECK(h.version == 3 && h.n_kv == 11 && h.n_tensors == N_TENSORS && h.alignment == ALIGN);
        CHECK(h.data_offset == meta_end && h.file_size == img.n);
        int64_t idx = 0;
        CHECK(qwen3c_gguf_find_kv(g, "general.architecture", &idx, err, sizeof(err)) == QWEN3C_OK && idx == 0);
        CHECK(qwen3c_gguf_find_kv(g, "no.such.key", &idx, err, sizeof(err)) == QWEN3C_OK && idx == -1);
        char buf[8];
        uint64_t lens[1];
        size_t total = 0;
        CHECK(qwen3c_gguf_get_strings(g, 0, 0, 1, buf, 2, lens, &total, err, sizeof(err)) == QWEN3C_ERR_BUFFER);
        CHECK(total == 5);
        CHECK(qwen3c_gguf_get_strings(g, 0, 0, 1, buf, sizeof(buf), lens, &total, err, sizeof(err)) == QWEN3C_OK);
        CHECK(lens[0] == 5 && memcmp(buf, "qwen3", 5) == 0);
        CHECK(qwen3c_gguf_get_strings(g, 1, 0, 1, buf, sizeof(buf), lens, &total, err, sizeof(err)) ==
              QWEN3C_ERR_INVALID_ARG);
        uint32_t v = 0;
        CHECK(qwen3c_gguf_get_values(g, 1, 0, 1, &v, sizeof(v), err, sizeof(err)) == QWEN3C_OK && v == 1);
        CHECK(qwen3c_gguf_get_values(g, 1, 0, 1, &v, 2, err, sizeof(err)) == QWEN3C_ERR_INVALID_ARG);
        CHECK(qwen3c_gguf_get_values(g, 0, 0, 1, &v, sizeof(v), err, sizeof(err)) == QWEN3C_ERR_INVALID_ARG);
        qwen3c_gguf_kv_info info;
        CHECK(qwen3c_gguf_kv(g, 11, buf, sizeof(buf), &info, err, sizeof(err)) == QWEN3C_ERR_INVALID_ARG);
        CHECK(qwen3c_gguf_kv(g, 1, buf, sizeof(buf), &info, err, sizeof(err)) == QWEN3C_ERR_BUFFER);
        CHECK(info.key_len == strlen("qwen3.block_count") && info.type == QWEN3C_GGUF_UINT32 && info.n == 1);
        walk_gguf(g);
        qwen3c_gguf_free(g);
        qwen3c_gguf_free(NULL);
        CHECK(qwen3c_gguf_get_header(NULL, &h, err, sizeof(err)) == QWEN3C_ERR_INVALID_ARG);
    }

    /* empty strings, asked for with no buffer (the size query `qwen3c info` makes first):
     * nothing to copy, and no pointer arithmetic on the NULL buffer (found by fuzz/fuzz_gguf:
     * clang's UBSan "applying zero offset to null pointer"; fuzz/seeds/gguf/regress-*) */
    {
        Buf e = {0};
        put(&e, "GGUF", 4); put_u32(&e, 3); put_u64(&e, 0); put_u64(&e, 2);
        put_str(&e, "empty", 5); put_u32(&e, GGUF_TYPE_STRING); put_str(&e, "", 0);
        put_str(&e, "empties", 7); put_u32(&e, GGUF_TYPE_ARRAY); put_u32(&e, GGUF_TYPE_STRING);
        put_u64(&e, 3); put_str(&e, "", 0); put_str(&e, "", 0); put_str(&e, "", 0);
        gguf_file ef;
        CHECK(gguf_parse(e.p, e.n, &ef, err, sizeof(err)) == QWEN3C_OK);
        uint64_t lens[3] = {9, 9, 9};
        size_t total = 9;
        CHECK(qwen3c_gguf_get_strings(&ef, 0, 0, 1, NULL, 0, lens, &total, err, sizeof(err)) == QWEN3C_OK);
        CHECK(total == 0 && lens[0] == 0);
        CHECK(qwen3c_gguf_get_strings(&ef, 1, 0, 3, NULL, 0, lens, &total, err, sizeof(err)) == QWEN3C_OK);
        CHECK(total == 0 && lens[0] == 0 && lens[1] == 0 && lens[2] == 0);
        gguf_close(&ef);
        free(e.p);
    }

    /* the in-memory parser agrees */
    gguf_file gf;
    CHECK(gguf_parse(img.p, img.n, &gf, err, sizeof(err)) == QWEN3C_OK);
    CHECK(gf.n_tensors == N_TENSORS && gf.n_kv == 11 && gf.alignment == ALIGN);
    gguf_close(&gf);

    /* every metadata / tensor-info byte replaced by several values */
    uint8_t *copy = malloc(img.n);
    const uint8_t values[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
    int n_cases = 0, n_failed = 0;
    for (size_t pos = 0; pos < meta_end; pos++) {
        for (size_t v = 0; v < sizeof(values); v++) {
            if (img.p[pos] == values[v]) continue;
            memcpy(copy, img.p, img.n);
            copy[pos] = values[v];
            n_failed += load_image(copy, img.n, path, err, sizeof(err)) != QWEN3C_OK;
            n_cases++;
        }
    }
    /* 64-bit fields at every 8-byte-ish offset set to extremes */
    const uint64_t extremes[] = {UINT64_MAX, (uint64_t)INT64_MAX, 1ull << 40, 1ull << 62, 0};
    for (size_t pos = 4; pos + 8 <= meta_end; pos += 4) {
        for (size_t v = 0; v < sizeof(extremes) / sizeof(extremes[0]); v++) {
            memcpy(copy, img.p, img.n);
            memcpy(copy + pos, &extremes[v], 8);
            n_failed += load_image(copy, img.n, path, err, sizeof(err)) != QWEN3C_OK;
            n_cases++;
        }
    }
    /* truncated at every length up to the end of the metadata, and a few into the data */
    for (size_t n = 0; n < meta_end + 64; n++) {
        CHECK(load_image(img.p, n, path, err, sizeof(err)) != QWEN3C_OK);
        n_cases++;
        n_failed++;
    }
    CHECK(load_image(img.p, img.n - 1, path, err, sizeof(err)) != QWEN3C_OK);

    free(copy);
    free(img.p);
    remove(path);
    printf("test_gguf: %d corrupted images, %d rejected, %d checks failed\n", n_cases, n_failed, failures);
    return failures ? 1 : 0;
}
