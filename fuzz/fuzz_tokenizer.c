/*
 * fuzz_tokenizer.c -- libFuzzer target: the tokenizer on arbitrary text and arbitrary ids.
 *
 * The tokenizers are real ones, read once from the GGUF files listed (':'-separated) in
 * QWEN3C_FUZZ_TOKENIZERS (fuzz/run.sh makes them: Qwen3's qwen2 pre-tokenizer, SmolLM2's
 * smollm one, and the same vocabulary with gpt-2's). Only the tokenizer is built from them.
 *
 * Input: byte 0 picks the tokenizer (bits 0-1), special on/off (bit 2) and the mode (bit 3);
 * the rest is the payload.
 *   encode mode: the payload is text. Valid UTF-8 must encode (checked against an independent
 *     validator here), every id must be in the vocabulary, the size query (ids_cap = 0) must
 *     agree with the real call, and decoding the ids must give back the exact bytes: byte-level
 *     BPE loses nothing and the C core does no normalization -- except the bytes the
 *     vocabulary has no token for, which are dropped, as HF tokenizers drops them (SmolLM2
 *     lacks 83 of the 256, e.g. 0xF1). Invalid UTF-8 must be refused with
 *     QWEN3C_ERR_INVALID_ARG.
 *   decode mode: the payload is a list of little-endian int32 ids (any value): token_to_bytes,
 *     token_type and token_lookup must answer or refuse, never read out of bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_TOKENIZERS 4

static qwen3c_model *models[MAX_TOKENIZERS];
static uint8_t has_byte[MAX_TOKENIZERS][256];  /* 1: the vocabulary has a token for this byte */
static int n_models;

/* GPT-2's byte-level alphabet: byte b is spelled as one printable character. */
static uint32_t byte_char(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) return (uint32_t)b;
    int n = 0;  /* the others, in order, from U+0100 */
    for (int k = 0; k < b; k++)
        if (!((k >= '!' && k <= '~') || (k >= 0xa1 && k <= 0xac) || (k >= 0xae && k <= 0xff))) n++;
    return 256u + (uint32_t)n;
}

static void find_byte_tokens(int i) {
    for (int b = 0; b < 256; b++) {
        uint32_t c = byte_char(b);
        char s[2] = {(char)(c < 0x80 ? c : 0xc0 | (c >> 6)), (char)(0x80 | (c & 0x3f))};
        has_byte[i][b] = qwen3c_token_lookup(models[i], s, c < 0x80 ? 1 : 2) >= 0;
    }
}

/* A model holding only a tokenizer (the file may have no weights at all). */
static qwen3c_model *load_tokenizer(const char *path) {
    char err[512];
    qwen3c_model *m = calloc(1, sizeof *m);
    if (!m || gguf_open(path, &m->file, err, sizeof err) != QWEN3C_OK ||
        tokenizer_build(&m->file, &m->tokenizer, err, sizeof err) != QWEN3C_OK || !m->tokenizer) {
        fprintf(stderr, "fuzz_tokenizer: cannot build a tokenizer from %s: %s\n", path, err);
        exit(1);
    }
    return m;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *list = getenv("QWEN3C_FUZZ_TOKENIZERS");
    if (!list || !*list) {
        fprintf(stderr, "fuzz_tokenizer: set QWEN3C_FUZZ_TOKENIZERS=a.gguf:b.gguf (fuzz/run.sh does)\n");
        exit(1);
    }
    char *copy = strdup(list), *save = NULL;
    for (char *p = strtok_r(copy, ":", &save); p && n_models < MAX_TOKENIZERS; p = strtok_r(NULL, ":", &save)) {
        models[n_models] = load_tokenizer(p);
        find_byte_tokens(n_models++);
    }
    free(copy);
    return 0;
}

/* An independent UTF-8 validator (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += len;
    }
    return 1;
}

static void encode(int which, const uint8_t *text, size_t n, int special) {
    const qwen3c_model *m = models[which];
    char err[256];
    size_t need = 0, got = 0;
    int rc = qwen3c_tokenize(m, (const char *)text, n, special, NULL, 0, &need, err, sizeof err);
    if (!utf8_valid(text, n)) {
        if (rc != QWEN3C_ERR_INVALID_ARG) __builtin_trap();
        return;
    }
    if (rc != (need ? QWEN3C_ERR_BUFFER : QWEN3C_OK) || need > n) __builtin_trap();
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    rc = qwen3c_tokenize(m, (const char *)text, n, special, ids, n + 1, &got, err, sizeof err);
    if (rc != QWEN3C_OK || got != need) __builtin_trap();

    /* decode: the exact bytes back, less those without a token */
    uint8_t *want = malloc(n + 1);
    size_t n_want = 0;
    for (size_t k = 0; k < n; k++)
        if (has_byte[which][text[k]]) want[n_want++] = text[k];
    const int32_t V = qwen3c_tokenizer_n_vocab(m);
    uint8_t *back = malloc(n + 1);
    size_t pos = 0;
    for (size_t k = 0; k < got; k++) {
        size_t nb;
        if (ids[k] < 0 || ids[k] >= V) __builtin_trap();
        if (qwen3c_token_to_bytes(m, ids[k], NULL, 0, &nb) == QWEN3C_ERR_INVALID_ARG) __builtin_trap();
        if (nb > n - pos) __builtin_trap();  /* more bytes than went in */
        if (qwen3c_token_to_bytes(m, ids[k], (char *)back + pos, n - pos, &nb) != QWEN3C_OK) __builtin_trap();
        pos += nb;
    }
    if (pos != n_want || (n_want && memcmp(back, want, n_want) != 0)) __builtin_trap();
    free(want);
    free(back);
    free(ids);
}

static void decode(const qwen3c_model *m, const uint8_t *p, size_t n) {
    const int32_t V = qwen3c_tokenizer_n_vocab(m);
    for (size_t i = 0; i + 4 <= n; i += 4) {
        int32_t id;
        memcpy(&id, p + i, 4);
        if (i == 0 && n >= 8) id %= V + 2;  /* reach the valid range often */
        char buf[8];
        size_t nb = 0;
        int rc = qwen3c_token_to_bytes(m, id, buf, sizeof buf, &nb);
        int valid = id >= 0 && id < V;
        if (valid != (rc != QWEN3C_ERR_INVALID_ARG)) __builtin_trap();
        if (rc == QWEN3C_ERR_BUFFER) {
            char *big = malloc(nb);
            if (qwen3c_token_to_bytes(m, id, big, nb, &nb) != QWEN3C_OK) __builtin_trap();
            /* its own spelling (byte-level alphabet) may differ; looking up raw bytes must not crash */
            (void)qwen3c_token_lookup(m, big, nb);
            free(big);
        } else if (rc == QWEN3C_OK) {
            (void)qwen3c_token_lookup(m, buf, nb);
        }
        int type = qwen3c_token_type(m, id);
        if (valid != (type >= 0)) __builtin_trap();
    }
    (void)qwen3c_token_lookup(m, (const char *)p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int which = (data[0] & 3) % n_models;
    const int special = (data[0] >> 2) & 1, decode_mode = (data[0] >> 3) & 1;
    if (decode_mode) decode(models[which], data + 1, size - 1);
    else encode(which, data + 1, size - 1, special);
    return 0;
}
