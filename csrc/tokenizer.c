/*
 * tokenizer.c -- byte-level BPE read from the GGUF, identical to HuggingFace `tokenizers`.
 *
 * The pipeline of one qwen3c_tokenize call:
 *
 *   text (UTF-8, validated)
 *     -> added tokens: leftmost-longest match of the CONTROL / USER_DEFINED token strings on the
 *        raw text (HF's AddedVocabulary). A CONTROL match with special == 0 is skipped and stays
 *        plain text (HF's `encode_special_tokens = True`). The stretches in between are
 *     -> pre-tokenized: split into pieces by the regex tokenizer.ggml.pre names, hand-written
 *        below (qwen2; qwen35 = qwen2's with combining marks joined to letters; smollm = single
 *        digits then GPT-2's regex; gpt-2), using the generated Unicode classes of
 *        unicode_data.h;
 *     -> BPE: each piece starts as one symbol per byte and the adjacent pair with the lowest
 *        merge rank (leftmost on ties) is merged until none is left -- a heap, so a 10 MB piece
 *        costs O(n log n) rather than O(n^2).
 *
 * Normalization (NFC for qwen2 and qwen35) is NOT done here: the caller applies it, see
 * qwen3c_tokenizer_normalizer() and python/qwen3c/tokenizer.py.
 *
 * Vocabulary strings are stored in the GGUF in the byte-level alphabet (GPT-2's
 * bytes_to_unicode: printable bytes stand for themselves, the other 68 bytes for U+0100..U+0143),
 * so a merge "A B" produces the token spelled A+B. We hash those stored strings; the raw bytes
 * of each token (for decoding) are computed once at load.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "unicode_data.h"

/* ---------------------------------------------------------------------------------------
 * Data structures
 * ------------------------------------------------------------------------------------- */
enum { PRE_QWEN2 = 1, PRE_SMOLLM = 2, PRE_GPT2 = 3, PRE_QWEN35 = 4 };

typedef struct {
    uint64_t key;     /* (left id << 32) | right id; 0 with rank < 0 = empty slot */
    int32_t  rank;    /* position in tokenizer.ggml.merges (lower merges first); -1 = empty */
    int32_t  merged;  /* id of the token left+right */
} MergeEntry;

typedef struct {
    int32_t id;       /* token id */
    int32_t control;  /* 1 for CONTROL (matched only with special), 0 for USER_DEFINED */
    size_t  len;      /* bytes of its text */
    const char *text; /* its text (points into Tokenizer.raw) */
} AddedToken;

struct Tokenizer {
    int32_t     n_vocab;         /* V = length of tokenizer.ggml.tokens */
    uint8_t    *types;           /* (V) QWEN3C_TOKEN_* per token */
    const char **str;            /* (V) stored (byte-level alphabet) string, points into the mapping */
    uint32_t   *str_len;         /* (V) its length in bytes */
    char       *raw;             /* raw bytes of every token, concatenated */
    size_t     *raw_off;         /* (V + 1) token i's raw bytes are raw[raw_off[i] .. raw_off[i+1]) */
    int32_t    *vocab_ht;        /* (vocab_cap) open addressing: stored string -> id, -1 = empty */
    size_t      vocab_mask;      /* vocab_cap - 1 (a power of two) */
    MergeEntry *merge_ht;        /* (merge_cap) open addressing: (left, right) -> rank, merged */
    size_t      merge_mask;      /* merge_cap - 1 */
    int32_t     byte_token[256]; /* id of the one-byte token of each byte value, -1 if absent */
    AddedToken *added;           /* (n_added) sorted longest first */
    int         n_added;
    uint8_t     added_first[256];/* 1 if some added token starts with this byte */
    int         pre;             /* PRE_* */
    int         normalizer;      /* QWEN3C_NORM_* */
    qwen3c_special_tokens special; /* ids read from the file */
};

/* ---------------------------------------------------------------------------------------
 * Small helpers: hashing, UTF-8, the byte-level alphabet, Unicode classes
 * ------------------------------------------------------------------------------------- */
static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;  /* FNV-1a */
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {  /* splitmix64 finalizer */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* Length of the valid UTF-8 sequence at s[i] (strict: no overlongs, no surrogates, <= U+10FFFF),
 * or 0 if it is invalid. */
static size_t utf8_valid_len(const uint8_t *s, size_t n, size_t i) {
    uint8_t c = s[i];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (i + 1 < n && (s[i + 1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[i + 1] < 0xA0) return 0;   /* overlong */
        if (c == 0xED && s[i + 1] >= 0xA0) return 0;  /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
            (s[i + 3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[i + 1] < 0x90) return 0;   /* overlong */
        if (c == 0xF4 && s[i + 1] >= 0x90) return 0;  /* > U+10FFFF */
        return 4;
    }
    return 0;
}

/* Decode the (already validated) character at s[i]; its byte length goes to *len. */
static inline uint32_t utf8_decode(const uint8_t *s, size_t i, size_t *len) {
    uint8_t c = s[i];
    if (c < 0x80) { *len = 1; return c; }
    if (c < 0xE0) { *len = 2; return ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F); }
    if (c < 0xF0) {
        *len = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
           ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
}

static size_t utf8_encode(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { out[0] = (uint8_t)(0xC0 | (cp >> 6)); out[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    out[0] = (uint8_t)(0xE0 | (cp >> 12));
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;  /* the byte-level alphabet stays below U+0800 */
}

/* GPT-2's byte-level alphabet: the code point that stands for byte b. Printable bytes
 * ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) are themselves; the rest take U+0100.. in order. */
static uint32_t byte_to_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) k++;
    return 256u + (uint32_t)k;
}

static inline int uclass(uint32_t cp) { return unicode_class(cp); }
#define IS_L(k)     ((k) & UCLASS_L)
#define IS_N(k)     ((k) & UCLASS_N)
#define IS_WS(k)    ((k) & UCLASS_WS)
#define IS_OTHER(k) (!((k) & (UCLASS_L | UCLASS_N | UCLASS_WS)))

/* ---------------------------------------------------------------------------------------
 * Hash tables
 * ------------------------------------------------------------------------------------- */
static int32_t vocab_find(const Tokenizer *t, const char *s, size_t n) {
    size_t h = (size_t)hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        int32_t id = t->vocab_ht[h];
        if (id < 0) return -1;
        if (t->str_len[id] == n && memcmp(t->str[id], s, n) == 0) return id;
        h = (h + 1) & t->vocab_mask;
    }
}

/* Insert id under its stored string; a later duplicate replaces an earlier one (as a Python
 * dict built from the token list does). */
static void vocab_insert(Tokenizer *t, int32_t id) {
    size_t h = (size_t)hash_bytes(t->str[id], t->str_len[id]) & t->vocab_mask;
    for (;;) {
        int32_t cur = t->vocab_ht[h];
        if (cur < 0) { t->vocab_ht[h] = id; return; }
        if (t->str_len[cur] == t->str_len[id] && memcmp(t->str[cur], t->str[id], t->str_len[id]) == 0) {
            t->vocab_ht[h] = id;
            return;
        }
        h = (h + 1) & t->vocab_mask;
    }
}

static inline const MergeEntry *merge_find(const Tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t h = (size_t)hash_u64(key) & t->merge_mask;
    for (;;) {
        const MergeEntry *e = &t->merge_ht[h];
        if (e->rank < 0) return NULL;
        if (e->key == key) return e;
        h = (h + 1) & t->merge_mask;
    }
}

/* A later duplicate merge replaces the earlier one (HF builds a map from the list). */
static void merge_insert(Tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t h = (size_t)hash_u64(key) & t->merge_mask;
    for (;;) {
        MergeEntry *e = &t->merge_ht[h];
        if (e->rank < 0 || e->key == key) { e->key = key; e->rank = rank; e->merged = merged; return; }
        h = (h + 1) & t->merge_mask;
    }
}

/* ---------------------------------------------------------------------------------------
 * Build / free
 * ------------------------------------------------------------------------------------- */
void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->types);
    free(t->str);
    free(t->str_len);
    free(t->raw);
    free(t->raw_off);
    free(t->vocab_ht);
    free(t->merge_ht);
    free(t->added);
    free(t);
}

/* Raw bytes of a stored vocabulary string: undo the byte-level alphabet when every character
 * belongs to it, else (added tokens such as "<|im_start|>" may be stored verbatim) the string
 * itself. cp_to_byte maps U+0000..U+0143 to a byte, or -1. Returns the length written. */
static size_t token_raw_bytes(const uint8_t *s, size_t n, const int16_t *cp_to_byte, int verbatim,
                              char *out) {
    if (!verbatim) {
        size_t i = 0, k = 0;
        while (i < n) {
            size_t l = utf8_valid_len(s, n, i);
            if (!l) break;
            size_t dl;
            uint32_t cp = utf8_decode(s, i, &dl);
            if (cp >= 0x144 || cp_to_byte[cp] < 0) break;
            out[k++] = (char)cp_to_byte[cp];
            i += l;
        }
        if (i == n) return k;
    }
    memcpy(out, s, n);
    return n;
}

static int cmp_added(const void *a, const void *b) {
    const AddedToken *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;  /* longest first */
    return x->id < y->id ? -1 : (x->id > y->id);
}

static int read_opt_id(const gguf_file *gf, const char *key, int32_t n_vocab, int32_t *out,
                       char *err, size_t err_size) {
    *out = -1;
    if (!gguf_find_kv(gf, key)) return QWEN3C_OK;
    uint64_t v;
    int st = gguf_get_u64(gf, key, &v, err, err_size);
    if (st) return st;
    if (v >= (uint64_t)n_vocab)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "%s = %llu is outside the vocabulary (%d tokens)",
                           key, (unsigned long long)v, (int)n_vocab);
    *out = (int32_t)v;
    return QWEN3C_OK;
}

static int32_t find_cstr(const Tokenizer *t, const char *s) { return vocab_find(t, s, strlen(s)); }

static void add_eog(qwen3c_special_tokens *sp, int32_t id) {
    if (id < 0) return;
    for (int i = 0; i < sp->n_eog; i++) if (sp->eog[i] == id) return;
    if (sp->n_eog < 8) sp->eog[sp->n_eog++] = id;
}

int tokenizer_build(const gguf_file *gf, Tokenizer **out, char *err, size_t err_size) {
    *out = NULL;
    if (!gguf_find_kv(gf, "tokenizer.ggml.tokens")) return QWEN3C_OK;  /* no tokenizer */

    gguf_str model_name, pre_name;
    int st = gguf_get_str(gf, "tokenizer.ggml.model", &model_name, err, err_size);
    if (st) return st;
    if (!gguf_str_eq(model_name, "gpt2"))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "tokenizer.ggml.model '%.*s' is not supported (only byte-level BPE 'gpt2')",
                           (int)(model_name.len > 64 ? 64 : model_name.len), model_name.ptr);
    if (!gguf_find_kv(gf, "tokenizer.ggml.pre"))
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "tokenizer.ggml.pre is missing: cannot tell which pre-tokenizer to use");
    st = gguf_get_str(gf, "tokenizer.ggml.pre", &pre_name, err, err_size);
    if (st) return st;
    int pre, norm;
    if (gguf_str_eq(pre_name, "qwen2")) { pre = PRE_QWEN2; norm = QWEN3C_NORM_NFC; }
    /* Qwen3.5: transformers' Qwen3_5Tokenizer declares NFC, as Qwen2's tokenizer.json does
     * (llama.cpp normalizes nothing; its test vectors of decomposed text differ there) */
    else if (gguf_str_eq(pre_name, "qwen35")) { pre = PRE_QWEN35; norm = QWEN3C_NORM_NFC; }
    else if (gguf_str_eq(pre_name, "smollm")) { pre = PRE_SMOLLM; norm = QWEN3C_NORM_NONE; }
    else if (gguf_str_eq(pre_name, "gpt-2")) { pre = PRE_GPT2; norm = QWEN3C_NORM_NONE; }
    else
        return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED,
                           "tokenizer.ggml.pre '%.*s' is not supported (supported: qwen2, qwen35, smollm, gpt-2)",
                           (int)(pre_name.len > 64 ? 64 : pre_name.len), pre_name.ptr);

    gguf_str *toks = NULL, *merges = NULL;
    uint64_t n_tok = 0, n_merges = 0;
    st = gguf_get_str_array(gf, "tokenizer.ggml.tokens", &toks, &n_tok, err, err_size);
    if (st) return st;
    if (n_tok == 0 || n_tok > (1u << 30)) {
        free(toks);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries",
                           (unsigned long long)n_tok);
    }
    if (!gguf_find_kv(gf, "tokenizer.ggml.merges")) {
        free(toks);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "tokenizer.ggml.merges is missing (needed by BPE)");
    }
    st = gguf_get_str_array(gf, "tokenizer.ggml.merges", &merges, &n_merges, err, err_size);
    if (st) { free(toks); return st; }
    if (n_merges > (1u << 30)) {
        free(toks); free(merges);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT, "tokenizer.ggml.merges has %llu entries",
                           (unsigned long long)n_merges);
    }
    const uint8_t *type_data = NULL;
    uint64_t n_types = 0;
    if (gguf_find_kv(gf, "tokenizer.ggml.token_type")) {
        st = gguf_get_array(gf, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &type_data, &n_types, err, err_size);
        if (st) { free(toks); free(merges); return st; }
        if (n_types != n_tok) {
            free(toks); free(merges);
            return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                               "tokenizer.ggml.token_type has %llu entries but there are %llu tokens",
                               (unsigned long long)n_types, (unsigned long long)n_tok);
        }
    }

    int32_t V = (int32_t)n_tok;
    Tokenizer *t = calloc(1, sizeof *t);
    size_t raw_total = 0;
    for (int32_t i = 0; i < V; i++) raw_total += toks[i].len;  /* raw never exceeds stored */
    if (t) {
        t->n_vocab = V;
        t->pre = pre;
        t->normalizer = norm;
        t->types = malloc((size_t)V);
        t->str = malloc((size_t)V * sizeof *t->str);
        t->str_len = malloc((size_t)V * sizeof *t->str_len);
        t->raw = malloc(raw_total + 1);
        t->raw_off = malloc(((size_t)V + 1) * sizeof *t->raw_off);
        t->vocab_mask = pow2_at_least((size_t)V * 2) - 1;
        t->vocab_ht = malloc((t->vocab_mask + 1) * sizeof *t->vocab_ht);
        t->merge_mask = pow2_at_least((size_t)n_merges * 2) - 1;
        t->merge_ht = malloc((t->merge_mask + 1) * sizeof *t->merge_ht);
    }
    if (!t || !t->types || !t->str || !t->str_len || !t->raw || !t->raw_off || !t->vocab_ht || !t->merge_ht) {
        tokenizer_free(t); free(toks); free(merges);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory building the tokenizer");
    }
    memset(t->vocab_ht, 0xFF, (t->vocab_mask + 1) * sizeof *t->vocab_ht);
    for (size_t i = 0; i <= t->merge_mask; i++) t->merge_ht[i].rank = -1;

    /* the byte-level alphabet, both ways */
    int16_t cp_to_byte[0x144];
    for (int i = 0; i < 0x144; i++) cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) cp_to_byte[byte_to_cp(b)] = (int16_t)b;

    /* tokens: types, stored strings, raw bytes, hash */
    size_t off = 0;
    int n_added = 0;
    for (int32_t i = 0; i < V; i++) {
        int32_t ty = QWEN3C_TOKEN_NORMAL;
        if (type_data) memcpy(&ty, type_data + 4 * (size_t)i, 4);
        if (ty < QWEN3C_TOKEN_NORMAL || ty > QWEN3C_TOKEN_BYTE) ty = QWEN3C_TOKEN_NORMAL;
        t->types[i] = (uint8_t)ty;
        if (toks[i].len > UINT32_MAX) toks[i].len = 0;
        t->str[i] = toks[i].ptr;
        t->str_len[i] = (uint32_t)toks[i].len;
        int verbatim = ty == QWEN3C_TOKEN_CONTROL || ty == QWEN3C_TOKEN_USER_DEFINED;
        t->raw_off[i] = off;
        off += token_raw_bytes((const uint8_t *)toks[i].ptr, toks[i].len, cp_to_byte, verbatim, t->raw + off);
        vocab_insert(t, i);
        if (verbatim && toks[i].len > 0) n_added++;
    }
    t->raw_off[V] = off;
    free(toks);

    /* the one-byte tokens */
    for (int b = 0; b < 256; b++) {
        uint8_t s[4];
        size_t l = utf8_encode(byte_to_cp(b), s);
        t->byte_token[b] = vocab_find(t, (const char *)s, l);
    }

    /* merges "A B" -> rank; the merged token is spelled A+B in the stored alphabet */
    char *buf = NULL;
    size_t buf_cap = 0;
    for (uint64_t r = 0; r < n_merges; r++) {
        const char *m = merges[r].ptr;
        size_t n = merges[r].len;
        const char *sp = memchr(m, ' ', n);
        if (!sp || sp == m || sp == m + n - 1) continue;  /* malformed: skipped, as no pair can use it */
        size_t la = (size_t)(sp - m), lb = n - la - 1;
        int32_t a = vocab_find(t, m, la), b = vocab_find(t, sp + 1, lb);
        if (a < 0 || b < 0) continue;
        if (la + lb > buf_cap) {
            buf_cap = (la + lb) * 2;
            char *nb = realloc(buf, buf_cap);
            if (!nb) { free(buf); free(merges); tokenizer_free(t); return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory"); }
            buf = nb;
        }
        memcpy(buf, m, la);
        memcpy(buf + la, sp + 1, lb);
        int32_t ab = vocab_find(t, buf, la + lb);
        if (ab < 0) continue;
        merge_insert(t, a, b, (int32_t)r, ab);
    }
    free(buf);
    free(merges);

    /* added tokens: matched whole in the text */
    t->added = calloc((size_t)(n_added ? n_added : 1), sizeof *t->added);
    if (!t->added) { tokenizer_free(t); return qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory"); }
    for (int32_t i = 0; i < V; i++) {
        int ty = t->types[i];
        size_t len = t->raw_off[i + 1] - t->raw_off[i];
        if ((ty != QWEN3C_TOKEN_CONTROL && ty != QWEN3C_TOKEN_USER_DEFINED) || len == 0) continue;
        const char *s = t->raw + t->raw_off[i];
        /* a token whose text is not valid UTF-8 could never match valid text */
        size_t k = 0;
        while (k < len) { size_t l = utf8_valid_len((const uint8_t *)s, len, k); if (!l) break; k += l; }
        if (k != len) continue;
        AddedToken *a = &t->added[t->n_added++];
        a->id = i;
        a->control = ty == QWEN3C_TOKEN_CONTROL;
        a->len = len;
        a->text = s;
        t->added_first[(uint8_t)s[0]] = 1;
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);

    /* special tokens */
    qwen3c_special_tokens *sp = &t->special;
    if ((st = read_opt_id(gf, "tokenizer.ggml.bos_token_id", V, &sp->bos, err, err_size)) ||
        (st = read_opt_id(gf, "tokenizer.ggml.eos_token_id", V, &sp->eos, err, err_size)) ||
        (st = read_opt_id(gf, "tokenizer.ggml.padding_token_id", V, &sp->pad, err, err_size)) ||
        (st = read_opt_id(gf, "tokenizer.ggml.unknown_token_id", V, &sp->unk, err, err_size))) {
        tokenizer_free(t);
        return st;
    }
    sp->im_start = find_cstr(t, "<|im_start|>");
    sp->im_end = find_cstr(t, "<|im_end|>");
    sp->think = find_cstr(t, "<think>");
    sp->think_end = find_cstr(t, "</think>");
    sp->n_eog = 0;
    add_eog(sp, sp->eos);
    add_eog(sp, sp->im_end);
    add_eog(sp, find_cstr(t, "<|endoftext|>"));
    add_eog(sp, find_cstr(t, "<|eot_id|>"));
    add_eog(sp, find_cstr(t, "<|end|>"));
    add_eog(sp, find_cstr(t, "<end_of_turn>"));
    for (int i = sp->n_eog; i < 8; i++) sp->eog[i] = -1;

    *out = t;
    return QWEN3C_OK;
}

void tokenizer_special_tokens(const Tokenizer *t, qwen3c_special_tokens *out) {
    if (t) { *out = t->special; return; }
    memset(out, 0, sizeof *out);
    out->bos = out->eos = out->pad = out->unk = -1;
    out->im_start = out->im_end = out->think = out->think_end = -1;
    for (int i = 0; i < 8; i++) out->eog[i] = -1;
    out->n_eog = 0;
}

int tokenizer_vocab_size(const Tokenizer *t) { return t ? t->n_vocab : 0; }

/* ---------------------------------------------------------------------------------------
 * Encoding state of one call: the output ids, BPE scratch and a small piece cache
 * ------------------------------------------------------------------------------------- */
/* A candidate merge of the symbol at `pos` with its right neighbour. Entries go stale when a
 * neighbour merges first; a rank names exactly one pair, so an entry is still valid iff the
 * pair now at pos merges with this rank. */
typedef struct {
    int32_t rank;     /* merge rank: lower first */
    int32_t pos;      /* left symbol index: lower first on equal rank (leftmost wins) */
} HeapItem;

typedef struct {
    size_t  off;      /* piece = text[off .. off + len) */
    size_t  len;      /* 0 = empty slot */
    size_t  first;    /* its ids are out[first .. first + n) */
    size_t  n;
} CacheEntry;

typedef struct {
    const Tokenizer *t;
    const uint8_t   *text;     /* the whole input (pieces are ranges of it) */
    int32_t         *out;      /* output ids, growable */
    size_t           n_out, cap_out;
    int32_t         *sym_id;   /* (scratch) per symbol: token id; -1 = byte without a token, -2 = merged away */
    int32_t         *sym_prev; /* (scratch) previous live symbol or -1 */
    int32_t         *sym_next; /* (scratch) next live symbol or -1 */
    HeapItem        *heap;     /* (scratch) 3 * max symbols */
    size_t           cap_sym;
    CacheEntry      *cache;    /* direct-mapped piece -> ids, NULL for short texts */
    size_t           cache_mask;
    int              oom;      /* an allocation failed */
} Encoder;

static int push_out(Encoder *e, int32_t id) {
    if (e->n_out == e->cap_out) {
        size_t nc = e->cap_out ? e->cap_out * 2 : 256;
        int32_t *no = realloc(e->out, nc * sizeof *no);
        if (!no) { e->oom = 1; return -1; }
        e->out = no;
        e->cap_out = nc;
    }
    e->out[e->n_out++] = id;
    return 0;
}

static int reserve_sym(Encoder *e, size_t n) {
    if (n <= e->cap_sym) return 0;
    size_t nc = n < 64 ? 64 : n * 2;
    int32_t *a = realloc(e->sym_id, nc * sizeof *a);
    if (a) e->sym_id = a;
    int32_t *b = realloc(e->sym_prev, nc * sizeof *b);
    if (b) e->sym_prev = b;
    int32_t *c = realloc(e->sym_next, nc * sizeof *c);
    if (c) e->sym_next = c;
    HeapItem *h = realloc(e->heap, 3 * nc * sizeof *h);
    if (h) e->heap = h;
    if (!a || !b || !c || !h) { e->oom = 1; return -1; }
    e->cap_sym = nc;
    return 0;
}

static inline int heap_less(const HeapItem *a, const HeapItem *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(HeapItem *h, size_t *n, HeapItem it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static HeapItem heap_pop(HeapItem *h, size_t *n) {
    HeapItem top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static inline const MergeEntry *pair_merge(const Encoder *e, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return NULL;
    int32_t a = e->sym_id[l], b = e->sym_id[r];
    if (a < 0 || b < 0) return NULL;
    return merge_find(e->t, a, b);
}

static inline void try_push_pair(Encoder *e, size_t *hn, int32_t l, int32_t r) {
    const MergeEntry *m = pair_merge(e, l, r);
    if (!m) return;
    HeapItem it = { m->rank, l };
    heap_push(e->heap, hn, it);
}

/* BPE of one piece text[off .. off+n): append its ids. */
static void bpe_piece(Encoder *e, size_t off, size_t n) {
    const Tokenizer *t = e->t;
    const uint8_t *s = e->text + off;
    if (n == 1) {
        if (t->byte_token[s[0]] >= 0) push_out(e, t->byte_token[s[0]]);
        return;
    }
    CacheEntry *ce = NULL;
    if (e->cache && n <= 64) {
        ce = &e->cache[hash_bytes(s, n) & e->cache_mask];
        if (ce->len == n && memcmp(e->text + ce->off, s, n) == 0) {
            size_t first = ce->first;
            for (size_t k = 0; k < ce->n; k++) if (push_out(e, e->out[first + k])) return;
            return;
        }
    }
    if (n > (size_t)INT32_MAX / 4) { e->oom = 1; return; }
    if (reserve_sym(e, n)) return;
    int32_t *id = e->sym_id, *prev = e->sym_prev, *next = e->sym_next;
    for (size_t k = 0; k < n; k++) {
        id[k] = t->byte_token[s[k]];
        prev[k] = (int32_t)k - 1;
        next[k] = k + 1 < n ? (int32_t)k + 1 : -1;
    }
    size_t hn = 0;
    for (size_t k = 0; k + 1 < n; k++) try_push_pair(e, &hn, (int32_t)k, (int32_t)k + 1);
    while (hn > 0) {
        HeapItem it = heap_pop(e->heap, &hn);
        int32_t l = it.pos, r = next[l];
        const MergeEntry *m = pair_merge(e, l, r);
        if (!m || m->rank != it.rank) continue;  /* stale */
        id[l] = m->merged;
        id[r] = -2;  /* merged away */
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        try_push_pair(e, &hn, prev[l], l);
        try_push_pair(e, &hn, l, next[l]);
    }
    size_t first = e->n_out;
    for (int32_t k = 0; k >= 0; k = next[k])
        if (id[k] >= 0 && push_out(e, id[k])) return;
    if (ce) { ce->off = off; ce->len = n; ce->first = first; ce->n = e->n_out - first; }
}

/* ---------------------------------------------------------------------------------------
 * Pre-tokenizers: the split regexes, by hand. Each match function returns the end of the
 * match that starts at byte i of s[0..n) (n is the end of the stretch: lookaheads see it as
 * the end of the text, as HF does for each stretch between added tokens).
 * ------------------------------------------------------------------------------------- */
static inline size_t run_end(const uint8_t *s, size_t n, size_t i, int want) {
    /* end of the run of characters whose class has a bit of `want` (want == 0: "other") */
    while (i < n) {
        size_t l;
        int k = uclass(utf8_decode(s, i, &l));
        if (want ? !(k & want) : !IS_OTHER(k)) break;
        i += l;
    }
    return i;
}

/* end of the run of characters whose class has none of the bits of `stop` */
static inline size_t run_end_without(const uint8_t *s, size_t n, size_t i, int stop) {
    while (i < n) {
        size_t l;
        if (uclass(utf8_decode(s, i, &l)) & stop) break;
        i += l;
    }
    return i;
}

/* \s+(?!\S) | \s+ at i (s[i] is whitespace); with_newline also tries \s*[\r\n]+ first. */
static size_t match_space(const uint8_t *s, size_t n, size_t i, int with_newline) {
    size_t e = i, last_start = i, nl_end = 0;
    while (e < n) {
        size_t l;
        uint32_t c = utf8_decode(s, e, &l);
        if (!IS_WS(uclass(c))) break;
        if (c == '\r' || c == '\n') nl_end = e + l;
        last_start = e;
        e += l;
    }
    if (with_newline && nl_end) return nl_end;   /* \s*[\r\n]+ */
    if (e == n) return e;                        /* \s+(?!\S) at the end */
    if (last_start > i) return last_start;       /* \s+(?!\S): leave the last space to the next */
    return e;                                    /* \s+ */
}

static inline uint32_t fold_ascii(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';  /* LATIN SMALL LETTER LONG S case-folds to 's' */
    return c;
}

/* qwen2:  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *         \s*[\r\n]+|\s+(?!\S)|\s+                                  with letters = UCLASS_L
 * qwen35: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|
 *         \s*[\r\n]+|\s+(?!\S)|\s+                       with letters = UCLASS_L | UCLASS_M
 * (combining marks stay with the letters they modify, also when the text is not NFC) */
static size_t match_qwen2(const uint8_t *s, size_t n, size_t i, int letters) {
    size_t l0, l1 = 0;
    uint32_t c0 = utf8_decode(s, i, &l0), c1 = 0;
    size_t i1 = i + l0;
    int k0 = uclass(c0), k1 = 0;
    if (i1 < n) { c1 = utf8_decode(s, i1, &l1); k1 = uclass(c1); }
    if (c0 == '\'' && i1 < n) {
        uint32_t f1 = fold_ascii(c1);
        if (f1 == 's' || f1 == 't' || f1 == 'm' || f1 == 'd') return i1 + l1;
        if ((f1 == 'r' || f1 == 'v' || f1 == 'l') && i1 + l1 < n) {
            size_t l2;
            uint32_t f2 = fold_ascii(utf8_decode(s, i1 + l1, &l2));
            if ((f1 != 'l' && f2 == 'e') || (f1 == 'l' && f2 == 'l')) return i1 + l1 + l2;
        }
    }
    /* [^\r\n\p{L}\p{N}]? then letters+ */
    if (!IS_L(k0) && !IS_N(k0) && c0 != '\r' && c0 != '\n' && i1 < n && (k1 & letters))
        return run_end(s, n, i1, letters);
    if (k0 & letters) return run_end(s, n, i1, letters);
    if (IS_N(k0)) return i1;
    /*  ?[^\s letters \p{N}]+[\r\n]* */
    const int not_other = letters | UCLASS_N | UCLASS_WS;
    size_t j = SIZE_MAX;
    if (c0 == ' ' && i1 < n && !(k1 & not_other)) j = i1;
    else if (!(k0 & not_other)) j = i;
    if (j != SIZE_MAX) {
        j = run_end_without(s, n, j, not_other);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    return match_space(s, n, i, 1);
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const uint8_t *s, size_t n, size_t i) {
    size_t l0, l1 = 0;
    uint32_t c0 = utf8_decode(s, i, &l0), c1 = 0;
    size_t i1 = i + l0;
    int k0 = uclass(c0), k1 = 0;
    if (i1 < n) { c1 = utf8_decode(s, i1, &l1); k1 = uclass(c1); }
    if (c0 == '\'' && i1 < n) {
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i1 + 1;
        if ((c1 == 'r' || c1 == 'v' || c1 == 'l') && i1 + 1 < n) {
            uint8_t c2 = s[i1 + 1];
            if ((c1 != 'l' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return i1 + 2;
        }
    }
    size_t j = i;
    int k = k0;
    if (c0 == ' ' && i1 < n && !IS_WS(k1)) { j = i1; k = k1; }
    if (IS_L(k)) return run_end(s, n, j, UCLASS_L);
    if (IS_N(k)) return run_end(s, n, j, UCLASS_N);
    if (IS_OTHER(k)) return run_end(s, n, j, 0);
    return match_space(s, n, i, 0);
}

/* Pre-tokenize text[a..b) with GPT-2's regex (lookaheads see b as the end) and BPE each piece. */
static void encode_gpt2_range(Encoder *e, size_t a, size_t b) {
    const uint8_t *s = e->text + a;
    size_t n = b - a, i = 0;
    while (i < n && !e->oom) {
        size_t j = match_gpt2(s, n, i);
        bpe_piece(e, a + i, j - i);
        i = j;
    }
}

/* One stretch of plain text (between added tokens). */
static void encode_stretch(Encoder *e, size_t a, size_t b) {
    const Tokenizer *t = e->t;
    if (t->pre == PRE_QWEN2 || t->pre == PRE_QWEN35) {
        const uint8_t *s = e->text + a;
        const int letters = t->pre == PRE_QWEN35 ? UCLASS_L | UCLASS_M : UCLASS_L;
        size_t n = b - a, i = 0;
        while (i < n && !e->oom) {
            size_t j = match_qwen2(s, n, i, letters);
            bpe_piece(e, a + i, j - i);
            i = j;
        }
    } else if (t->pre == PRE_SMOLLM) {
        /* \p{N} first: every number character is a piece of its own; GPT-2's regex then runs on
         * each stretch in between, separately (its lookahead ends at the digit). */
        size_t r = a, i = a;
        while (i < b && !e->oom) {
            size_t l;
            uint32_t c = utf8_decode(e->text, i, &l);
            if (IS_N(uclass(c))) {
                if (r < i) encode_gpt2_range(e, r, i);
                bpe_piece(e, i, l);
                r = i + l;
            }
            i += l;
        }
        if (r < b && !e->oom) encode_gpt2_range(e, r, b);
    } else {
        encode_gpt2_range(e, a, b);
    }
}

/* ---------------------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------------------- */
int qwen3c_model_has_tokenizer(const qwen3c_model *model) { return model && model->tokenizer != NULL; }

void qwen3c_model_special_tokens(const qwen3c_model *model, qwen3c_special_tokens *out) {
    tokenizer_special_tokens(model ? model->tokenizer : NULL, out);
}

int qwen3c_token_type(const qwen3c_model *model, int32_t id) {
    const Tokenizer *t = model ? model->tokenizer : NULL;
    if (!t || id < 0 || id >= t->n_vocab) return -1;
    return t->types[id];
}

int qwen3c_tokenizer_normalizer(const qwen3c_model *model) {
    const Tokenizer *t = model ? model->tokenizer : NULL;
    return t ? t->normalizer : -1;
}

int32_t qwen3c_tokenizer_n_vocab(const qwen3c_model *model) {
    return tokenizer_vocab_size(model ? model->tokenizer : NULL);
}

int32_t qwen3c_tokenizer_added_token(const qwen3c_model *model, int i) {
    const Tokenizer *t = model ? model->tokenizer : NULL;
    if (!t || i < 0 || i >= t->n_added) return -1;
    return t->added[i].id;
}

int qwen3c_tokenize(const qwen3c_model *model, const char *text, size_t text_len, int special,
                    int32_t *ids, size_t ids_cap, size_t *n_ids, char *err, size_t err_size) {
    const Tokenizer *t = model ? model->tokenizer : NULL;
    if (!t) return qwen3c_fail(err, err_size, QWEN3C_ERR_UNSUPPORTED, "this model file has no tokenizer");
    if (!text && text_len) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "text is NULL");
    if (!n_ids) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "n_ids is NULL");
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < text_len;) {
        if (s[i] < 0x80) { i++; continue; }
        size_t l = utf8_valid_len(s, text_len, i);
        if (!l) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "invalid UTF-8 at byte %zu", i);
        i += l;
    }

    Encoder e = { .t = t, .text = s };
    if (text_len >= 2048) {
        size_t cap = pow2_at_least(text_len / 8);
        if (cap > 65536) cap = 65536;
        e.cache = calloc(cap, sizeof *e.cache);
        e.cache_mask = cap - 1;  /* no cache if calloc failed: just slower */
    }
    size_t seg = 0;
    for (size_t i = 0; i < text_len && !e.oom;) {
        if (!t->added_first[s[i]]) { i++; continue; }
        const AddedToken *hit = NULL;
        for (int k = 0; k < t->n_added; k++) {  /* longest first */
            const AddedToken *a = &t->added[k];
            if (a->len <= text_len - i && (uint8_t)a->text[0] == s[i] && memcmp(a->text, s + i, a->len) == 0) {
                hit = a;
                break;
            }
        }
        if (!hit) { i++; continue; }
        if (hit->control && !special) { i += hit->len; continue; }  /* stays plain text */
        if (seg < i) encode_stretch(&e, seg, i);
        push_out(&e, hit->id);
        i += hit->len;
        seg = i;
    }
    if (seg < text_len && !e.oom) encode_stretch(&e, seg, text_len);

    int st = QWEN3C_OK;
    if (e.oom) {
        st = qwen3c_fail(err, err_size, QWEN3C_ERR_NOMEM, "out of memory tokenizing %zu bytes", text_len);
    } else {
        *n_ids = e.n_out;
        if (e.n_out > ids_cap || (!ids && e.n_out)) {
            st = qwen3c_fail(err, err_size, QWEN3C_ERR_BUFFER, "%zu token ids do not fit in %zu", e.n_out, ids_cap);
        } else if (e.n_out) {
            memcpy(ids, e.out, e.n_out * sizeof *ids);
        }
    }
    free(e.out);
    free(e.sym_id);
    free(e.sym_prev);
    free(e.sym_next);
    free(e.heap);
    free(e.cache);
    return st;
}

int qwen3c_token_to_bytes(const qwen3c_model *model, int32_t id, char *buf, size_t buf_size, size_t *n_bytes) {
    const Tokenizer *t = model ? model->tokenizer : NULL;
    if (!t || id < 0 || id >= t->n_vocab || !n_bytes) return QWEN3C_ERR_INVALID_ARG;
    size_t n = t->raw_off[id + 1] - t->raw_off[id];
    *n_bytes = n;
    if (n > buf_size || (!buf && n)) return QWEN3C_ERR_BUFFER;
    if (n) memcpy(buf, t->raw + t->raw_off[id], n);
    return QWEN3C_OK;
}

int32_t qwen3c_token_lookup(const qwen3c_model *model, const char *piece, size_t piece_len) {
    const Tokenizer *t = model ? model->tokenizer : NULL;
    if (!t || (!piece && piece_len)) return -1;
    return vocab_find(t, piece ? piece : "", piece_len);
}
