/*
 * fuzz_gguf.c -- libFuzzer target: load a GGUF model from arbitrary bytes.
 *
 * Runs the GGUF reader's public API (qwen3c_gguf_*: what `info` and `audit` read, also for
 * files that would not load) and everything qwen3c_model_load does after reading the file
 * (GGUF header, metadata, tensor table, Config, TransformerWeights, tokenizer build, packing
 * the weights into the q24 layout or a huge-page copy), on an in-memory image, then every
 * read-only call a caller can make on a loaded model: metadata keys and values, the tensor
 * table, the special tokens, a tokenizer round on a fixed text, and creating (and freeing) a
 * small context.
 *
 * A load may fail -- that is the point -- but it must fail with a status and a message, never
 * crash, leak or touch memory it does not own (ASan + UBSan + LeakSanitizer watch).
 *
 *   fuzz/run.sh gguf 60          build and run for 60 s (see fuzz/README.md)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The message must be a NUL-terminated, non-empty string within the buffer. */
static void check_message(int rc, const char *err, size_t err_size) {
    if (rc == QWEN3C_OK) return;
    if (memchr(err, '\0', err_size) == NULL || err[0] == '\0') __builtin_trap();
}

static void read_everything(const qwen3c_model *m) {
    qwen3c_config c;
    qwen3c_model_get_config(m, &c);
    if (c.n_layers < 1 || c.dim < 1 || c.vocab_size < 1) __builtin_trap();

    char buf[96];
    size_t len;
    for (int i = 0; i < qwen3c_model_meta_count(m); i++) {
        if (qwen3c_model_meta_key(m, i, buf, sizeof buf, &len) == QWEN3C_ERR_BUFFER) {
            char *big = malloc(len + 1);
            if (qwen3c_model_meta_key(m, i, big, len + 1, &len) != QWEN3C_OK) __builtin_trap();
            int at;
            uint64_t an;
            (void)qwen3c_model_meta_type(m, i, &at, &an);
            size_t vlen;
            if (qwen3c_model_meta_as_string(m, big, NULL, 0, &vlen) != QWEN3C_ERR_BUFFER) __builtin_trap();
            free(big);
            continue;
        }
        size_t vlen;
        char small[8];
        int rc = qwen3c_model_meta_as_string(m, buf, small, sizeof small, &vlen);
        if (rc == QWEN3C_ERR_BUFFER) {
            char *v = malloc(vlen + 1);
            if (qwen3c_model_meta_as_string(m, buf, v, vlen + 1, &vlen) != QWEN3C_OK) __builtin_trap();
            free(v);
        } else if (rc != QWEN3C_OK && rc != QWEN3C_ERR_INVALID_ARG) {
            __builtin_trap();  /* INVALID_ARG: a key with a NUL byte is not found by name */
        }
    }
    for (int i = 0; i < qwen3c_model_n_tensors(m); i++) {
        qwen3c_tensor_info ti;
        if (qwen3c_model_tensor_info(m, i, buf, sizeof buf, &ti) != QWEN3C_OK) __builtin_trap();
    }

    qwen3c_special_tokens sp;
    qwen3c_model_special_tokens(m, &sp);
    if (qwen3c_model_has_tokenizer(m)) {
        static const char text[] = "Hello, world! <|im_start|>user\n 123 \xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80  <think>x";
        int32_t ids[sizeof text];
        size_t n = 0;
        char err[256];
        for (int special = 0; special <= 1; special++) {
            int rc = qwen3c_tokenize(m, text, sizeof text - 1, special, ids, sizeof text, &n, err, sizeof err);
            if (rc != QWEN3C_OK) __builtin_trap();  /* valid UTF-8 and room for len + 1 ids */
            for (size_t k = 0; k < n; k++) {
                size_t nb;
                char piece[16];
                if (qwen3c_token_to_bytes(m, ids[k], piece, sizeof piece, &nb) == QWEN3C_ERR_INVALID_ARG)
                    __builtin_trap();
                (void)qwen3c_token_type(m, ids[k]);
            }
        }
        for (int i = 0; qwen3c_tokenizer_added_token(m, i) >= 0; i++) {}
        (void)qwen3c_tokenizer_normalizer(m);
        (void)qwen3c_token_lookup(m, "<|im_end|>", 10);
    }

    qwen3c_context_params cp = qwen3c_context_default_params();
    cp.n_ctx = 16;
    cp.n_threads = 1;
    cp.n_batch = 4;
    qwen3c_context *ctx = NULL;
    char err[256];
    int rc = qwen3c_context_create(m, &cp, &ctx, err, sizeof err);
    check_message(rc, err, sizeof err);
    qwen3c_context_free(ctx);
}

/* The reader API (qwen3c_gguf_*: `info`, `audit`) on the parsed file, also when the model
 * would not load: every entry's key, values and strings, every tensor. */
static void read_file_api(const uint8_t *image, size_t size) {
    gguf_file gf;
    char err[256];
    if (gguf_parse(image, size, &gf, err, sizeof err) != QWEN3C_OK) return;
    const qwen3c_gguf *g = &gf;
    qwen3c_gguf_header h;
    if (qwen3c_gguf_get_header(g, &h, err, sizeof err) != QWEN3C_OK) __builtin_trap();
    for (uint64_t i = 0; i < h.n_kv; i++) {
        char key[32];
        qwen3c_gguf_kv_info kv;
        int rc = qwen3c_gguf_kv(g, i, key, sizeof key, &kv, err, sizeof err);
        if (rc != QWEN3C_OK && rc != QWEN3C_ERR_BUFFER) __builtin_trap();
        char *full = malloc(kv.key_len + 1);
        if (qwen3c_gguf_kv(g, i, full, kv.key_len + 1, &kv, err, sizeof err) != QWEN3C_OK) __builtin_trap();
        int64_t index;
        if (qwen3c_gguf_find_kv(g, full, &index, err, sizeof err) != QWEN3C_OK) __builtin_trap();
        if (strlen(full) == kv.key_len && index != (int64_t)i) __builtin_trap();  /* keys are unique */
        free(full);
        const uint64_t n = kv.n < 64 ? kv.n : 64;  /* the first and the last elements */
        if (kv.elem_type == QWEN3C_GGUF_STRING) {
            uint64_t lens[64];
            size_t total = 0;
            rc = qwen3c_gguf_get_strings(g, i, 0, n, NULL, 0, lens, &total, err, sizeof err);
            if (rc != QWEN3C_OK && rc != QWEN3C_ERR_BUFFER) __builtin_trap();
            char *buf = malloc(total ? total : 1);
            if (qwen3c_gguf_get_strings(g, i, 0, n, buf, total, lens, &total, err, sizeof err) != QWEN3C_OK)
                __builtin_trap();
            free(buf);
            if (kv.n > 0 && qwen3c_gguf_get_strings(g, i, kv.n - 1, 1, NULL, 0, lens, &total, err,
                                                    sizeof err) == QWEN3C_ERR_INVALID_ARG)
                __builtin_trap();
        } else {
            double values[64];  /* 8 bytes per element at most */
            if (qwen3c_gguf_get_values(g, i, 0, n, values, sizeof values, err, sizeof err) != QWEN3C_OK)
                __builtin_trap();
            if (kv.n > 0 && qwen3c_gguf_get_values(g, i, kv.n - 1, 1, values, sizeof values, err,
                                                   sizeof err) != QWEN3C_OK)
                __builtin_trap();
        }
        if (qwen3c_gguf_get_values(g, i, kv.n, 1, NULL, 0, err, sizeof err) != QWEN3C_ERR_INVALID_ARG)
            __builtin_trap();  /* one past the end */
    }
    for (uint64_t i = 0; i < h.n_tensors; i++) {
        char name[16];
        size_t name_len;
        qwen3c_tensor_info ti;
        int rc = qwen3c_gguf_tensor(g, i, name, sizeof name, &name_len, &ti, err, sizeof err);
        if (rc != QWEN3C_OK && rc != QWEN3C_ERR_BUFFER) __builtin_trap();
        if (ti.offset + ti.nbytes > h.file_size) __builtin_trap();
    }
    gguf_close(&gf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a mapping is page-aligned: give the image the same start alignment (tensor data is
     * aligned relative to the start of the file) */
    uint8_t *image = aligned_alloc(64, size ? (size + 63) / 64 * 64 : 64);
    if (!image) return 0;
    if (size) memcpy(image, data, size);
    read_file_api(image, size);
    qwen3c_model_params params = qwen3c_model_default_params();
    for (int pack = 1; pack >= 0; pack--) {
        params.pack_weights = pack;
        qwen3c_model *m = NULL;
        char err[512];
        memset(err, 0x55, sizeof err);
        int rc = model_load_image(image, size, &params, &m, err, sizeof err);
        check_message(rc, err, sizeof err);
        if (rc != QWEN3C_OK) {
            if (m != NULL) __builtin_trap();  /* out-parameters untouched on failure */
            break;                              /* the other setting fails the same way */
        }
        read_everything(m);
        qwen3c_model_free(m);
    }
    free(image);
    return 0;
}
