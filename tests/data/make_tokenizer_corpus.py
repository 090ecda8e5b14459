"""Generate tests/data/tokenizer_corpus.jsonl, the committed tokenizer parity corpus.

    python tests/data/make_tokenizer_corpus.py

Deterministic (seeded). Every string is written here or generated from these seeds (no
third-party text). One JSON object per line: {"cat": category, "text": string}.
"""
import json
import random
import unicodedata
from pathlib import Path

R = random.Random(20240531)

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a small engine, but it doesn't cut corners: every token must match.",
    "We'll see whether they're right; I'd bet they've missed something.",
    "Tokenizers split text into pieces, then merge bytes by learned ranks.",
    "A context window of 2,048 tokens holds roughly 1,500 English words.",
    "She said, \"Don't panic!\" -- and then, quietly, (almost) nobody did.",
    "Mr. O'Neil's dog (aged 7) won the 3rd prize at 10:30 a.m. on May 4th.",
    "THE END? NO... IT'S ONLY THE BEGINNING!!!",
    "Email me at first.last+tag@example.org or visit https://example.com/a/b?c=d&e=f#g.",
    "Caching helps: repeated words are looked up once and reused afterwards.",
    "In 1969, humans walked on the Moon; in 2007, phones got touchscreens.",
    "Read the file, parse the header, validate every offset, then map the data.",
    "Why is the sky blue?  Because shorter wavelengths scatter more strongly.",
    "Well—that's odd… the em dash and ellipsis aren't ASCII at all.",
    "“Smart quotes” and ‘single ones’ are common in copied text.",
    "naïve café résumé coöperate façade jalapeño Ångström",
]
CHINESE = ["今天天气很好，我们去公园散步吧。", "机器学习模型需要大量的数据进行训练。",
           "这个分词器必须与参考实现完全一致。", "北京是中华人民共和国的首都。",
           "他说：“你好，世界！”然后笑了。", "一二三四五六七八九十，百千万亿。"]
JAPANESE = ["今日はとても良い天気ですね。", "東京タワーは三百三十三メートルです。",
            "カタカナとひらがなと漢字を混ぜて書きます。", "ﾊﾝｶｸｶﾀｶﾅもあります。",
            "私は寿司が大好きです！", "「こんにちは」と彼女は言った。"]
KOREAN = ["안녕하세요, 만나서 반갑습니다.", "서울은 대한민국의 수도입니다.",
          "한국어 형태소 분석은 어렵습니다.", "오늘 저녁에 뭐 먹을까요?"]
ARABIC = ["مرحبا بالعالم، كيف حالك اليوم؟", "اللغة العربية تكتب من اليمين إلى اليسار.",
          "القاهرة هي عاصمة مصر.", "الأرقام: ١٢٣٤٥٦٧٨٩٠"]
HINDI = ["नमस्ते, आप कैसे हैं?", "भारत की राजधानी नई दिल्ली है।", "हिन्दी देवनागरी लिपि में लिखी जाती है।",
         "संख्याएँ: १२३४५६७८९०"]
RUSSIAN = ["Привет, мир! Как дела?", "Москва — столица России.", "Съешь же ещё этих мягких французских булок, да выпей чаю.",
           "ЁЖИК В ТУМАНЕ и ёжик в тумане"]
OTHER = ["Γειά σου Κόσμε! Καλημέρα.", "שלום עולם, מה שלומך?", "สวัสดีครับ ยินดีที่ได้รู้จัก",
         "Xin chào thế giới, tôi là người Việt Nam.", "Zażółć gęślą jaźń.", "Straße, Größe, Fußgänger",
         "İstanbul ılık ışık", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ქართული ენა", "Հայերեն լեզու", "தமிழ் மொழி", "ગુજરાતી ભાષા"]
EMOJI = ["🙂", "😂", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "1️⃣", "❤️", "🧑🏿‍💻", "🐍", "✨", "🤷‍♀️", "👩🏻‍❤️‍💋‍👨🏼",
         "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "☃", "⌚", "🀄", "🅰️"]
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
           "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|vision_start|>",
           "<|im_start", "im_end|>", "<think", "<|", "|>", "<tool_response>", "</tool_response>",
           "<|file_sep|>", "<|repo_name|>", "<repo_name>", "<jupyter_code>", "<empty_output>"]
WORDS = ("alpha beta gamma delta value result index count buffer token model layer weight "
         "cache state error data item node tree list map size len x y z i j k n").split()
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2003", "\u202f", "\v", "\f",
          "\u0085", "\u2028", " \n", "\n\n", "\t\t", "    "]
COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u0327", "\u0323", "\u031b",
             "\u0338", "\u20d7", "\u0345", "\u05b0", "\u093c", "\u3099", "\u309a"]
MULTI = CHINESE + JAPANESE + KOREAN + ARABIC + HINDI + RUSSIAN + OTHER


def ident():
    return R.choice(WORDS) + R.choice(["", "_" + R.choice(WORDS), str(R.randint(0, 99)), "Count"])


def python_code():
    name, args = ident(), ", ".join(ident() for _ in range(R.randint(0, 3)))
    ind = R.choice(["    ", "  ", "\t"])
    body = []
    for _ in range(R.randint(1, 6)):
        kind = R.randint(0, 5)
        if kind == 0:
            body.append(f"{ind}{ident()} = {ident()}[{R.randint(0, 9)}] * {R.random():.3f}")
        elif kind == 1:
            body.append(f"{ind}if {ident()} >= {R.randint(-5, 500)}:\n{ind}{ind}return None")
        elif kind == 2:
            body.append(f"{ind}for {ident()} in range(len({ident()})):  # {R.choice(PROSE)[:30]}")
        elif kind == 3:
            body.append(f"{ind}print(f\"{{{ident()}!r}} -> {{{ident()}:.2f}}\")")
        elif kind == 4:
            body.append(f"{ind}{ident()} += {{'{ident()}': [{R.randint(0, 9)}, {R.randint(10, 99)}]}}")
        else:
            body.append("")
    doc = f'{ind}"""{R.choice(PROSE)}"""\n' if R.random() < 0.5 else ""
    return f"def {name}({args}):\n{doc}" + "\n".join(body) + R.choice(["\n", "\n\n", "", "\n\n\n"])


def c_code():
    t = R.choice(["int", "float", "size_t", "const char *", "uint8_t", "void"])
    n = ident()
    lines = [f"static {t} {n}({R.choice(['void', 'int argc, char **argv', 'const float *x, int n'])}) {{"]
    for _ in range(R.randint(1, 6)):
        k = R.randint(0, 4)
        if k == 0:
            lines.append(f"    for (int i = 0; i < n; i++) {{ s += x[i] * {R.random():.4f}f; }}")
        elif k == 1:
            lines.append(f"    if (!{ident()}) return -{R.randint(1, 9)};  /* {R.choice(PROSE)[:25]} */")
        elif k == 2:
            lines.append(f"    memcpy(dst + {R.randint(0, 64)}, src, sizeof(*src) * {R.randint(1, 8)});")
        elif k == 3:
            lines.append(f"    x->{ident()} = (0x{R.randint(0, 2**32):08X}u >> {R.randint(0, 31)}) & 0xFF;")
        else:
            lines.append(f"#define {ident().upper()} {R.randint(0, 4096)}")
    lines.append("}")
    return "\n".join(lines) + R.choice(["\n", "\r\n", ""])


def json_text():
    def val(d):
        k = R.randint(0, 6 if d < 3 else 3)
        if k == 0:
            return R.randint(-10**6, 10**6)
        if k == 1:
            return round(R.uniform(-1e3, 1e3), R.randint(0, 6))
        if k == 2:
            return R.choice(PROSE + MULTI + EMOJI)[: R.randint(1, 40)]
        if k == 3:
            return R.choice([True, False, None])
        if k == 4:
            return [val(d + 1) for _ in range(R.randint(0, 4))]
        return {ident(): val(d + 1) for _ in range(R.randint(0, 4))}
    obj = {ident(): val(0) for _ in range(R.randint(1, 5))}
    return json.dumps(obj, indent=R.choice([None, 2, 4, "\t"]), ensure_ascii=R.random() < 0.3)


def number_text():
    k = R.randint(0, 7)
    if k == 0:
        return str(R.randint(0, 10 ** R.randint(1, 30)))
    if k == 1:
        return f"{R.uniform(-1e6, 1e6):,.{R.randint(0, 5)}f}"
    if k == 2:
        return f"{R.uniform(1e-9, 1e9):.4e}"
    if k == 3:
        return f"{R.randint(1900, 2100)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}T{R.randint(0, 23):02d}:{R.randint(0, 59):02d}"
    if k == 4:
        return f"+{R.randint(1, 99)} ({R.randint(100, 999)}) {R.randint(100, 999)}-{R.randint(1000, 9999)}"
    if k == 5:
        return " ".join(str(R.randint(0, 999)) for _ in range(R.randint(2, 12)))
    if k == 6:
        return R.choice(["½ ¾ ² ³ ⅷ Ⅻ ① ⑳ ٣ ४ ๕ 〇", "3.14159265358979", "v1.2.3-rc.4", "0xDEADBEEF", "1e-10", "$1,299.99", "€5", "100%"])
    return f"{R.choice(PROSE)} {R.randint(0, 10**8)}"


def mixed_lang():
    parts = [R.choice(MULTI) for _ in range(R.randint(1, 3))]
    if R.random() < 0.4:
        parts.insert(R.randint(0, len(parts)), R.choice(PROSE))
    s = R.choice(["", " ", "\n", " - "]).join(parts)
    if R.random() < 0.3:
        a = R.randint(0, len(s))
        s = s[a:a + R.randint(1, 30)]
    return s


def emoji_text():
    n = R.randint(1, 6)
    return "".join(R.choice(EMOJI) + R.choice(["", " ", "", "!", " ok ", "\n"]) for _ in range(n)) + R.choice(["", R.choice(PROSE)])


def combining_text():
    k = R.randint(0, 4)
    base = R.choice(PROSE + MULTI)
    if k == 0:
        return unicodedata.normalize("NFD", base)
    if k == 1:
        return unicodedata.normalize(R.choice(["NFKD", "NFKC"]), base + " ﬁ ﬀ ① ㎏ Ａ")
    if k == 2:
        return "".join(c + (R.choice(COMBINING) if R.random() < 0.3 else "") for c in base[:40])
    if k == 3:
        return unicodedata.normalize("NFD", R.choice(KOREAN))
    return "e" + "".join(R.sample(COMBINING, R.randint(1, 5))) + " A\u030a \u212b \u2126 \u1e9b\u0323 q\u0307\u0323"


def crlf_text():
    seps = ["\r\n", "\n", "\r", "\n\r", "\r\r\n", " \r\n", "\t\n", "\n \n"]
    return "".join(R.choice(PROSE + WORDS)[: R.randint(0, 25)] + R.choice(seps) for _ in range(R.randint(1, 8)))


def whitespace_text():
    ws = "".join(R.choice(SPACES) for _ in range(R.randint(1, 60)))
    k = R.randint(0, 3)
    if k == 0:
        return ws
    if k == 1:
        return R.choice(WORDS) + ws + R.choice(WORDS)
    if k == 2:
        return ws + R.choice(PROSE) + ws
    return " " * R.randint(1, 300) + R.choice(["x", "\n", "", "!"])


def special_text():
    parts = []
    for _ in range(R.randint(1, 6)):
        r = R.random()
        if r < 0.45:
            parts.append(R.choice(SPECIAL))
        elif r < 0.8:
            parts.append(R.choice(PROSE + MULTI + WORDS)[: R.randint(0, 30)])
        else:
            parts.append(R.choice(["\n", " ", "system\n", "user\n", "assistant\n", "\u0301", "\u0338"]))
    return "".join(parts)


def chat_text():
    msgs = []
    for role in R.sample(["system", "user", "assistant"], R.randint(1, 3)):
        body = R.choice(PROSE + MULTI)
        if role == "assistant" and R.random() < 0.5:
            body = f"<think>\n{R.choice(PROSE)}\n</think>\n\n{body}"
        msgs.append(f"<|im_start|>{role}\n{body}<|im_end|>\n")
    return "".join(msgs) + R.choice(["", "<|im_start|>assistant\n"])


def contraction_text():
    subj = R.choice(["it", "IT", "She", "they", "We", "you", "I", "John", "ſ", "o"])
    tail = R.choice(["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL",
                     "'lL", "'d", "'D", "'ſ", "'x", "'", "''", "'\u212a", "’s", "'ﬆ", "'ß", "'5"])
    return subj + tail + R.choice(["", " ", "a", "x go", "!", "\n", "'s"])


def random_unicode():
    k = R.randint(0, 3)
    n = R.randint(1, 30)
    if k == 0:
        cps = [R.randint(0x20, 0x2FF) for _ in range(n)]
    elif k == 1:
        cps = [R.randint(0x300, 0x33FF) for _ in range(n)]
    elif k == 2:
        cps = [R.randint(0x1, 0x10FFFF) for _ in range(n)]
    else:
        cps = [R.choice([0x20, 0x0A, 0x27, 0x3C, 0x7C, 0x3E, R.randint(0x21, 0x7E), R.randint(0x4E00, 0x9FFF)]) for _ in range(n)]
    return "".join(chr(c) for c in cps if not 0xD800 <= c < 0xE000)


CATEGORIES = {
    "prose": (lambda: " ".join(R.sample(PROSE, R.randint(1, 4))), 220),
    "python": (python_code, 200),
    "c": (c_code, 120),
    "json": (json_text, 150),
    "numbers": (number_text, 160),
    "multilingual": (mixed_lang, 300),
    "emoji": (emoji_text, 120),
    "combining": (combining_text, 150),
    "crlf": (crlf_text, 100),
    "whitespace": (whitespace_text, 120),
    "special": (special_text, 160),
    "chat": (chat_text, 60),
    "contractions": (contraction_text, 100),
    "random": (random_unicode, 160),
}


def main():
    out = []
    for cat, (gen, n) in CATEGORIES.items():
        seen = set()
        while len(seen) < n:
            s = gen()
            if s not in seen:
                seen.add(s)
                out.append({"cat": cat, "text": s})
    for s in MULTI + PROSE + EMOJI + SPECIAL:  # every seed verbatim too
        out.append({"cat": "seed", "text": s})
    out.append({"cat": "edge", "text": ""})
    out.append({"cat": "edge", "text": "a\x00b\x00\x00 c"})
    path = Path(__file__).with_name("tokenizer_corpus.jsonl")
    with path.open("w", encoding="utf-8") as f:
        for rec in out:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"{len(out)} strings -> {path}")


if __name__ == "__main__":
    main()
