/*
 * test_tokenizer.c -- C-level checks of tokenizer.c, meant to run under ASan/UBSan
 * (cmake -DQWEN3C_BUILD_C_TESTS=ON -DQWEN3C_SANITIZE=ON; ctest).
 *
 * Builds a GGUF image in memory holding only tokenizer metadata: a byte-level vocabulary of the
 * 256 byte tokens plus a few merges and added tokens, parses it with gguf_parse and drives
 * qwen3c_tokenize / qwen3c_token_to_bytes on edge cases: empty text, embedded NUL, invalid
 * UTF-8, a caller buffer that is too small, control vs user-defined added tokens, a 4 MB single
 * piece (heap BPE) and a 4 MB mixed text (piece cache).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* GPT-2's byte-level spelling of byte c, UTF-8 encoded into out; returns its length */
static size_t byte_spelling(int c, char *out) {
    int printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
    unsigned cp = (unsigned)c;
    if (!printable) {
        int k = 0;
        for (int x = 0; x < c; x++)
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) k++;
        cp = 256u + (unsigned)k;
    }
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* ids: 0..255 bytes (by byte value), 256 "ab", 257 "abc", 258 "Ġa" (" a"), 259 "<|ctl|>" (CONTROL),
 * 260 "<u>" (USER_DEFINED) */
static Buf make_image(const char *pre) {
    Buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);  /* tensors */
    put_u64(&b, 6);  /* kv */
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_str(&b, "tokenizer.ggml.pre", pre);
    const char *extra[] = {"ab", "abc", ("\xc4\xa0" "a"), "<|ctl|>", "<u>"};
    put_str(&b, "tokenizer.ggml.tokens", strlen("tokenizer.ggml.tokens"));
    put_u32(&b, GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_STRING); put_u64(&b, 261);
    for (int c = 0; c < 256; c++) { char s[2]; size_t n = byte_spelling(c, s); put_str(&b, s, n); }
    for (int i = 0; i < 5; i++) put_str(&b, extra[i], strlen(extra[i]));
    put_str(&b, "tokenizer.ggml.token_type", strlen("tokenizer.ggml.token_type"));
    put_u32(&b, GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_INT32); put_u64(&b, 261);
    for (int i = 0; i < 261; i++) put_u32(&b, i == 259 ? 3 : i == 260 ? 4 : 1);
    const char *merges[] = {"a b", "ab c", "\xc4\xa0 a"};
    put_str(&b, "tokenizer.ggml.merges", strlen("tokenizer.ggml.merges"));
    put_u32(&b, GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_STRING); put_u64(&b, 3);
    for (int i = 0; i < 3; i++) put_str(&b, merges[i], strlen(merges[i]));
    put_str(&b, "tokenizer.ggml.eos_token_id", strlen("tokenizer.ggml.eos_token_id"));
    put_u32(&b, GGUF_TYPE_UINT32); put_u32(&b, 259);
    return b;
}

static int encode(const Transformer *m, const char *s, size_t n, int special, int32_t *ids, size_t cap, size_t *n_ids) {
    char err[256];
    return qwen3c_tokenize(m, s, n, special, ids, cap, n_ids, err, sizeof err);
}

int main(void) {
    char err[256];
    Buf img = make_image("qwen2");
    gguf_file gf;
    int st = gguf_parse(img.p, img.n, &gf, err, sizeof err);
    if (st) { fprintf(stderr, "gguf_parse: %s\n", err); return 1; }
    Transformer m;
    memset(&m, 0, sizeof m);
    st = tokenizer_build(&gf, &m.tokenizer, err, sizeof err);
    if (st || !m.tokenizer) { fprintf(stderr, "tokenizer_build: %s\n", err); return 1; }
    CHECK(tokenizer_vocab_size(m.tokenizer) == 261);

    int32_t ids[64];
    size_t n = 99;
    CHECK(encode(&m, "", 0, 0, ids, 64, &n) == QWEN3C_OK && n == 0);
    CHECK(encode(&m, "abc ab a", 8, 0, ids, 64, &n) == QWEN3C_OK);
    /* pieces "abc" " ab" " a": "a b" (rank 0) beats "Ġ a" (rank 2) inside " ab" */
    CHECK(n == 4 && ids[0] == 257 && ids[1] == ' ' && ids[2] == 256 && ids[3] == 258);
    CHECK(encode(&m, "a\0b", 3, 0, ids, 64, &n) == QWEN3C_OK && n == 3 && ids[1] == 0);
    CHECK(encode(&m, "x\xff", 2, 0, ids, 64, &n) == QWEN3C_ERR_INVALID_ARG);
    CHECK(encode(&m, "\xed\xa0\x80", 3, 0, ids, 64, &n) == QWEN3C_ERR_INVALID_ARG);
    CHECK(encode(&m, "abcabc", 6, 0, ids, 1, &n) == QWEN3C_ERR_BUFFER && n == 2);
    CHECK(encode(&m, "<|ctl|>", 7, 1, ids, 64, &n) == QWEN3C_OK && n == 1 && ids[0] == 259);
    CHECK(encode(&m, "<|ctl|>", 7, 0, ids, 64, &n) == QWEN3C_OK && n > 1);
    CHECK(encode(&m, "<u>", 3, 0, ids, 64, &n) == QWEN3C_OK && n == 1 && ids[0] == 260);

    char bytes[16];
    size_t nb;
    CHECK(qwen3c_token_to_bytes(&m, 258, bytes, sizeof bytes, &nb) == QWEN3C_OK && nb == 2 &&
          memcmp(bytes, " a", 2) == 0);
    CHECK(qwen3c_token_to_bytes(&m, 261, bytes, sizeof bytes, &nb) == QWEN3C_ERR_INVALID_ARG);
    CHECK(qwen3c_token_to_bytes(&m, 257, bytes, 1, &nb) == QWEN3C_ERR_BUFFER && nb == 3);
    CHECK(qwen3c_token_lookup(&m, "<u>", 3) == 260);
    qwen3c_special_tokens sp;
    qwen3c_model_special_tokens(&m, &sp);
    CHECK(sp.eos == 259 && sp.n_eog == 1 && sp.im_start == -1);

    /* big inputs: one 4 MB piece of "abcabc..." and 4 MB of "ab a ab a ..." */
    size_t big = 4u << 20;
    char *text = malloc(big);
    size_t cap = big + 1;
    int32_t *out = malloc(cap * sizeof *out);
    for (size_t i = 0; i < big; i++) text[i] = "abc"[i % 3];
    size_t want = big / 3 + (big % 3 != 0);
    CHECK(encode(&m, text, big, 0, out, cap, &n) == QWEN3C_OK && n == want && out[0] == 257);
    for (size_t i = 0; i < big; i++) text[i] = "ab a "[i % 5];
    CHECK(encode(&m, text, big - big % 5, 0, out, cap, &n) == QWEN3C_OK && n == (big / 5) * 3);
    free(text);
    free(out);

    tokenizer_free(m.tokenizer);
    gguf_close(&gf);
    free(img.p);

    /* an unknown pre-tokenizer is UNSUPPORTED */
    img = make_image("falcon");
    CHECK(gguf_parse(img.p, img.n, &gf, err, sizeof err) == QWEN3C_OK);
    Tokenizer *t = NULL;
    CHECK(tokenizer_build(&gf, &t, err, sizeof err) == QWEN3C_ERR_UNSUPPORTED && t == NULL);
    CHECK(strstr(err, "falcon") != NULL);
    gguf_close(&gf);
    free(img.p);

    if (failures) { fprintf(stderr, "%d check(s) failed\n", failures); return 1; }
    printf("test_tokenizer: ok\n");
    return 0;
}
