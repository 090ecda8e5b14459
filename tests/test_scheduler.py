"""The server's scheduler without HTTP (qwen3c.serve.scheduler): continuous batching gives every
job its solo greedy tokens, prefix reuse (same slot, or a copy from another slot) prefills only
new tokens, cancellation frees a slot before the next step, a full queue refuses, and the
output parser (reasoning / content / tool calls) splits any chunking the same way."""
import pytest

from qwen3c.generate import generate
from qwen3c.model import Model
from qwen3c.sampler import Sampler
from qwen3c.serve.scheduler import DoneEvent, Job, QueueFullError, Scheduler, TokenEvent
from qwen3c.serve.tools import OutputParser, parse_tool_call
from qwen3c.errors import ContextOverflowError


@pytest.fixture(scope="module")
def model(tiny_chat_gguf):
    with Model(tiny_chat_gguf, n_ctx=256, n_threads=1) as m:
        yield m


def prompt(model, text):
    return model.encode(f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n", special=True)


def solo(model, ids, n):
    g = generate(model.session(), ids, max_tokens=n, sampler=Sampler.greedy())
    list(g)
    return g


def job(ids, n, events=None, **kw):
    return Job(ids, n, Sampler.greedy(), emit=(events.append if events is not None else lambda e: None), **kw)


def drain(sched, jobs, limit=1000):
    for _ in range(limit):
        if all(j.finish_reason for j in jobs):
            return
        sched.step()
    raise AssertionError("jobs did not finish")


def test_batched_jobs_equal_solo_generations(model):
    sched = Scheduler(model, n_slots=3, step_tokens=7)   # small steps: prefill in chunks
    texts = ["one", "a somewhat longer second question", "three", "four!", "and a fifth one"]
    ids = [prompt(model, t) for t in texts]
    events = [[] for _ in ids]
    jobs = [job(p, 6 + i, events[i]) for i, p in enumerate(ids)]
    for j in jobs:
        sched.submit(j)
    drain(sched, jobs)
    for i, (p, j) in enumerate(zip(ids, jobs)):
        ref = solo(model, p, 6 + i)
        assert j.tokens[:len(ref.tokens)] == ref.tokens
        toks = [e for e in events[i] if isinstance(e, TokenEvent)]
        done = events[i][-1]
        assert isinstance(done, DoneEvent) and done.finish_reason == j.finish_reason
        assert "".join(e.text for e in toks) + done.text == ref.text
        assert done.n_completion == len(j.tokens) and done.n_prompt == len(p)


def test_prefix_reuse_in_the_same_slot_and_copied_from_another(model):
    sched = Scheduler(model, n_slots=2)
    system = "<|im_start|>system\n" + "You answer questions about geography. " * 6 + "<|im_end|>\n"
    a = model.encode(system + "<|im_start|>user\nFrance?<|im_end|>\n<|im_start|>assistant\n", special=True)
    j1 = job(a, 4)
    sched.submit(j1)
    drain(sched, [j1])
    # the same conversation, one turn later: its slot already holds the first turn
    turn2 = j1._session.tokens + model.encode("<|im_end|>\n<|im_start|>user\nAnd?<|im_end|>\n", special=True)
    j2 = job(turn2, 3)
    sched.submit(j2)
    drain(sched, [j2])
    assert j2._session is j1._session and j2.n_cached >= len(a)
    # a new conversation with the same system prompt while the first slot is busy: copied
    busy = job(turn2 + [220], 50, ignore_eos=True)
    sched.submit(busy)
    sched.step()
    b = model.encode(system + "<|im_start|>user\nJapan?<|im_end|>\n<|im_start|>assistant\n", special=True)
    j3 = job(b, 4)
    sched.submit(j3)
    drain(sched, [j3])
    assert j3._session is not busy._session
    n_sys = len(model.encode(system, special=True))
    assert j3.n_cached >= n_sys
    assert j3.tokens == solo(model, b, 4).tokens
    sched.cancel(busy)
    drain(sched, [busy])
    assert busy.finish_reason == "cancelled"


def test_cancel_frees_the_slot_before_the_next_step(model):
    sched = Scheduler(model, n_slots=1, max_queue=1)
    ev = []
    long = job(prompt(model, "x"), 200, ev, ignore_eos=True)
    sched.submit(long)
    sched.step()
    waiting = job(prompt(model, "y"), 2)
    sched.submit(waiting)
    with pytest.raises(QueueFullError):
        sched.submit(job(prompt(model, "z"), 2))
    n = len(long.tokens)
    sched.cancel(long)
    sched.step()                          # drops `long`, admits `waiting`, runs it
    assert long.finish_reason == "cancelled" and len(long.tokens) == n
    assert isinstance(ev[-1], DoneEvent) and ev[-1].finish_reason == "cancelled"
    assert sched.running == [waiting]
    drain(sched, [waiting])
    assert sched.stats()["finished"] == {"cancelled": 1, "length": 1}


def test_submit_checks(model):
    sched = Scheduler(model, n_slots=1, n_ctx=32)
    with pytest.raises(ContextOverflowError):
        sched.submit(job(list(range(100, 140)), 2))
    with pytest.raises(ValueError):
        sched.submit(job([], 2))


def test_context_full_ends_with_length(model):
    sched = Scheduler(model, n_slots=1, n_ctx=24)
    j = job(prompt(model, "hi"), 1000, ignore_eos=True)
    sched.submit(j)
    drain(sched, [j])
    assert j.finish_reason == "length" and len(j.prompt) + len(j.tokens) == 24 + 1


def test_thread_runs_jobs(model):
    import threading
    sched = Scheduler(model, n_slots=2)
    done = threading.Event()
    got = []

    def emit(e):
        got.append(e)
        if isinstance(e, DoneEvent):
            done.set()
    sched.start()
    try:
        sched.submit(Job(prompt(model, "hello"), 5, Sampler.greedy(), emit=emit))
        assert done.wait(30)
    finally:
        sched.stop()
    assert got[-1].finish_reason in ("stop", "length")


# ---- the output parser -------------------------------------------------------------------------

RAW = ("<think>\nThe user wants weather.\n</think>\n\nLet me check.\n<tool_call>\n"
       '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n'
       '{"name": "bad json"\n</tool_call>')


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_output_parser_any_chunking(step):
    p = OutputParser(thinking=True, tools=True)
    out = []
    for i in range(0, len(RAW), step):
        out += p.feed(RAW[i:i + step])
    out += p.feed("", final=True)
    reasoning = "".join(v for k, v in out if k == "reasoning")
    content = "".join(v for k, v in out if k == "content")
    calls = [v for k, v in out if k == "tool_call"]
    assert reasoning == "The user wants weather."
    assert calls == [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    assert content == 'Let me check.\n<tool_call>\n{"name": "bad json"\n</tool_call>'  # (the \n
    # before the first call stays content: a stream cannot know a call follows)


def test_output_parser_without_tools_or_thinking():
    p = OutputParser(thinking=False, tools=False)
    assert p.feed("<think>x</think> <tool_call>{}</tool_call>", final=True) == [
        ("content", "<think>x</think> <tool_call>{}</tool_call>")]
    p = OutputParser(thinking=True, tools=True)
    assert p.feed("<tool_call>\n{\"name\": \"f\"", final=True) == [
        ("content", "<tool_call>\n{\"name\": \"f\"")]   # unfinished: not a call


@pytest.mark.parametrize("body,want", [
    ('{"name": "f", "arguments": {"a": 1}}', {"name": "f", "arguments": '{"a": 1}'}),
    ('{"name": "f", "arguments": "{\\"a\\": 1}"}', {"name": "f", "arguments": '{"a": 1}'}),
    ('{"name": "f"}', {"name": "f", "arguments": "{}"}),
    ('{"name": "", "arguments": {}}', None),
    ('{"arguments": {}}', None),
    ('{"name": "f", "arguments": 3}', None),
    ('{"name": "f", "arguments": "not json"}', None),
    ("[1]", None), ("", None),
])
def test_parse_tool_call(body, want):
    assert parse_tool_call(body) == want
