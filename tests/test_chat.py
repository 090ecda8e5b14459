"""Chat on a tiny random Qwen3 with the real tokenizer: the prompt tokens equal HF's, multi-turn
reuses the KV cache (counted in forwarded tokens), overflow is refused before any compute,
and streamed thinking / answer pieces are labelled."""
import pytest

from qwen3c.chat import Chat, Piece, _soft_switch, ThinkSplitter, split_thinking
from qwen3c.chat_template import apply_chat_template, encode_chat
from qwen3c.errors import ContextOverflowError
from qwen3c.generate import cached_tokens, common_prefix, generate
from qwen3c.model import Model
from qwen3c.sampler import Sampler

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model(tiny_chat_gguf):
    with Model(tiny_chat_gguf, n_ctx=256, n_threads=1) as m:
        yield m


@pytest.fixture(scope="module")
def hf_tok(qwen_tokenizer_dir):
    return transformers.AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir))


CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"},
    {"role": "user", "content": "Ünïcode and <|im_start|> in text /no_think"},
]


@pytest.mark.parametrize("thinking", [True, False])
def test_model_template_and_tokens_match_transformers(model, hf_tok, thinking):
    text = hf_tok.apply_chat_template(CONV, tokenize=False, add_generation_prompt=True,
                                      enable_thinking=thinking)
    assert apply_chat_template(model, CONV, enable_thinking=thinking) == text
    assert model.apply_chat_template(CONV, enable_thinking=thinking) == text
    ids = encode_chat(model, CONV, enable_thinking=thinking)
    # HF would turn the user's "<|im_start|>" into the control token; we keep it as text
    im_start = hf_tok.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(im_start) == 5
    safe = [dict(m, content=m["content"].replace("<|im_start|>", "im_start")) for m in CONV]
    safe_text = hf_tok.apply_chat_template(safe, tokenize=False, add_generation_prompt=True,
                                           enable_thinking=thinking)
    assert encode_chat(model, safe, enable_thinking=thinking) == hf_tok.encode(
        safe_text, add_special_tokens=False)


def test_send_records_history(model):
    chat = Chat(model, system="S", max_tokens=4, temperature=0.0)
    answer = chat.send("hello")
    assert chat.history == [{"role": "user", "content": "hello"},
                            {"role": "assistant", "content": answer}]
    assert answer == split_thinking(chat.last.text)[1]
    assert chat.last.finish_reason in ("length", "stop")
    chat.reset()
    assert chat.history == []


def test_multi_turn_prefills_only_new_tokens(model):
    chat = Chat(model, system="Be brief.", thinking=False, max_tokens=5, temperature=0.0)
    chat.send("first question")
    held = cached_tokens(chat.session)
    t1 = chat.last.prompt_tokens
    assert held == t1 + chat.last.tokens[:len(held) - len(t1)]

    before = chat.session.n_tokens_forwarded
    chat.send("second question")
    g = chat.last
    t2 = g.prompt_tokens
    assert t2 == encode_chat(model, chat.messages()[:-1], enable_thinking=False)
    reused = common_prefix(held, t2)
    # everything up to the first answer is reused: the rendered answer differs from the
    # generated one only by the empty think block the template drops from history
    assert reused >= len(t1) - len(model.encode("<think>\n\n</think>\n\n", special=True))
    assert g.n_cached == reused
    assert g.n_prefilled == len(t2) - reused
    n_decode_forwards = len(g.tokens) - (1 if g.finish_reason == "length" else 0)
    assert chat.session.n_tokens_forwarded - before == g.n_prefilled + n_decode_forwards
    # and the reused cache gives exactly what a fresh prefill gives
    fresh = generate(model, t2, max_tokens=5, sampler=Sampler.greedy(), reuse_cache=False)
    list(fresh)
    assert fresh.tokens == g.tokens


def test_single_turn_mode_starts_fresh(model):
    chat = Chat(model, system="S", multi_turn=False, max_tokens=3, temperature=0.0)
    chat.send("one")
    chat.send("two")
    assert [m["content"] for m in chat.history if m["role"] == "user"] == ["two"]
    expected = encode_chat(model, [{"role": "system", "content": "S"},
                                   {"role": "user", "content": "two"}])
    assert chat.last.prompt_tokens == expected


def test_overflow_is_refused_before_any_compute(tiny_chat_gguf):
    with Model(tiny_chat_gguf, n_ctx=32, n_threads=1) as m:
        chat = Chat(m, max_tokens=2, temperature=0.0)
        chat.send("hi")
        history = [dict(x) for x in chat.history]
        before = chat.session.n_tokens_forwarded
        with pytest.raises(ContextOverflowError) as ei:
            chat.send("word " * 40)
        assert ei.value.n_ctx == 32 and ei.value.n_prompt_tokens > 32
        assert chat.session.n_tokens_forwarded == before
        assert chat.history == history


def test_thinking_off_renders_the_empty_think_block(model):
    chat = Chat(model, thinking=False, max_tokens=2, temperature=0.0)
    chat.send("x")
    tail = model.encode("<|im_start|>assistant\n<think>\n\n</think>\n\n", special=True)
    assert chat.last.prompt_tokens[-len(tail):] == tail


def test_stream_pieces_are_labelled(model):
    chat = Chat(model, max_tokens=6, seed=3)
    pieces = list(chat.stream("tell me"))
    assert all(isinstance(p, Piece) and p.kind in ("thinking", "answer") for p in pieces)
    assert "".join(p for p in pieces if p.kind == "answer") == chat.history[-1]["content"]


def test_seeded_chats_are_reproducible(model):
    a = Chat(model, max_tokens=6, seed=11, temperature=1.0)
    b = Chat(model, max_tokens=6, seed=11, temperature=1.0)
    assert a.send("q") == b.send("q")


def test_interrupted_answer_keeps_the_conversation_usable(model):
    chat = Chat(model, max_tokens=8, temperature=0.0, thinking=False)
    it = chat.stream("hello")
    next(it, None)
    it.close()                       # what Ctrl-C does to the stream in the CLI
    assert chat.history[0] == {"role": "user", "content": "hello"}
    chat.send("again")
    assert len(chat.history) == 4


@pytest.mark.parametrize("kw,exc", [
    (dict(system=3), TypeError),
    (dict(thinking="yes"), TypeError),
    (dict(max_tokens=0), ValueError),
    (dict(temperature=-1.0), ValueError),
    (dict(top_q=0.5), TypeError),
    (dict(sampler="x"), TypeError),
])
def test_bad_chat_arguments(model, kw, exc):
    with pytest.raises(exc):
        Chat(model, **kw)


def test_bad_message(model):
    with pytest.raises(TypeError):
        Chat(model).send(b"bytes")


# ---- thinking / answer labelling, soft switches -----------------------------------------------

RAW = "<think>\nLet me see.\n2+2 is 4.\n</think>\n\nThe answer is **4**."


@pytest.mark.parametrize("step", [1, 2, 3, 5, 8, 1000])
def test_think_splitter_any_chunking(step):
    sp = ThinkSplitter()
    out = []
    for i in range(0, len(RAW), step):
        out += sp.feed(RAW[i:i + step])
    out += sp.feed("", final=True)
    assert "".join(p for p in out if p.kind == "thinking") == "Let me see.\n2+2 is 4."
    assert "".join(p for p in out if p.kind == "answer") == "The answer is **4**."
    assert split_thinking(RAW) == ("Let me see.\n2+2 is 4.", "The answer is **4**.")


@pytest.mark.parametrize("raw,thinking,answer", [
    ("Just an answer.", "", "Just an answer."),
    ("<think>\n\n</think>\n\nNo thoughts.", "", "No thoughts."),
    ("<think>\nunfinished", "unfinished", ""),
    ("<thi", "", "<thi"),
    ("<", "", "<"),
])
def test_think_splitter_edge_cases(raw, thinking, answer):
    sp = ThinkSplitter()
    out = [p for ch in raw for p in sp.feed(ch)] + sp.feed("", final=True)
    assert "".join(p for p in out if p.kind == "thinking") == thinking
    assert "".join(p for p in out if p.kind == "answer") == answer


def test_soft_switch_follows_the_latest_instruction():
    u = lambda c: {"role": "user", "content": c}  # noqa: E731
    assert _soft_switch([u("hi")], True) is True
    assert _soft_switch([u("hi /no_think")], True) is False
    assert _soft_switch([u("a /no_think"), {"role": "assistant", "content": "b"}, u("c /think")],
                        True) is True
    assert _soft_switch([{"role": "system", "content": "/no_think"}, u("q")], True) is False


def test_soft_switch_picks_the_non_thinking_sampler(model):
    chat = Chat(model, max_tokens=2)
    chat.send("quick one /no_think")
    s = chat.last.sampler
    assert (s.temperature, s.top_p) == (0.7, 0.8)
    chat.send("think again /think")
    assert (chat.last.sampler.temperature, chat.last.sampler.top_p) == (0.6, 0.95)


def test_interactive_chat_function(tiny_chat_gguf, monkeypatch, capsys):
    import io

    from qwen3c.chat import chat
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n\n"))
    chat(str(tiny_chat_gguf), thinking=False, temperature=0.0, max_tokens=3, n_ctx=128,
                n_threads=1)
    out = capsys.readouterr().out
    with Model(tiny_chat_gguf, n_ctx=128, n_threads=1) as m:
        want = Chat(m, thinking=False, temperature=0.0, max_tokens=3).send("hello")
    assert out == want + "\n"
