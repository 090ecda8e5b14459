"""The HTTP side of `qwen3c serve`: an OpenAI-compatible API on Starlette (run by uvicorn).

    POST /v1/chat/completions   messages -> the model's chat template -> an answer (SSE with
                                "stream": true); thinking as reasoning_content, tool calls,
                                JSON output (response_format), logprobs, n choices
    POST /v1/completions        a raw prompt (text or token ids) continued
    GET  /v1/models, /v1/models/{id}, /health, /metrics (Prometheus text)

It uses only the public Python API (Model, Sampler, chat_template.encode_chat) and the
scheduler (serve/scheduler.py), which knows nothing of HTTP. Each choice of a request is one
scheduler Job; the scheduler thread reports tokens through Job.emit, which hands them to the
request's asyncio queue. A client that disconnects has its jobs cancelled: the slot is free
before the next step. Request checks and response shapes are in serve/protocol.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..chat import prompt_thinking
from ..chat_template import encode_chat
from ..errors import ContextOverflowError, Qwen3cError
from ..sampler import Sampler
from . import protocol as P
from .constraints import Constraint, GrammarError, json_grammar, tool_call_grammar
from .scheduler import DoneEvent, Job, QueueFullError, Scheduler
from .tools import OutputParser, new_call_id

MAX_BODY = 16 * 1024 * 1024   # bytes of a request body (413 above)


def sse(obj) -> str:
    """One server-sent event carrying obj as JSON."""
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"


def chunk_maker(rid, created, obj, model_name):
    """chunk(choices, usage=None) -> the SSE line of one streamed chunk."""
    def chunk(choice_list, usage=None):
        d = {"id": rid, "object": obj, "created": created, "model": model_name,
             "choices": choice_list}
        if usage is not None:
            d["usage"] = usage
        return sse(d)
    return chunk


def error_event(ev) -> str:
    return sse(P.APIError(500, f"generation failed: {ev.error}").body())


class _Choice:
    """One choice of a request as it is generated: its job, parser and what it produced."""

    def __init__(self, index, job, parser):
        self.index, self.job, self.parser = index, job, parser
        self.reasoning, self.content, self.calls = "", "", []
        self.logprobs = []           # (token, (logprob, top)) entries not yet sent / all of them
        self.done: DoneEvent | None = None
        self.text = ""               # the raw generated text (completions)

    def absorb(self, deltas):
        for kind, v in deltas:
            if kind == "reasoning":
                self.reasoning += v
            elif kind == "content":
                self.content += v
            else:
                self.calls.append(dict(v, id=new_call_id()))

    def finish_reason(self) -> str:
        r = self.done.finish_reason
        return "tool_calls" if self.calls and r == "stop" else r


class Server:
    """The app and its state: the model, the scheduler, the served name, the metrics."""

    def __init__(self, model, *, model_name=None, n_slots=4, n_ctx=None, max_queue=64,
                 step_tokens=256, api_key=None):
        self.model = model
        self.name = model_name or os.path.splitext(os.path.basename(model.path))[0]
        self.served = {self.name, os.path.basename(model.path)}
        self.api_key = api_key
        self.scheduler = Scheduler(model, n_slots=n_slots, n_ctx=n_ctx, max_queue=max_queue,
                                   step_tokens=step_tokens)
        self.n_ctx = self.scheduler.n_ctx
        self.created = P.now()
        sp = model.special_tokens
        self.think_ids = (sp.think, sp.think_end) if sp.think is not None and sp.think_end is not None \
            else (None, None)
        self._metrics = _Metrics(self)
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.model_info, methods=["GET"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes, lifespan=self._lifespan,
                             exception_handlers={HTTPException: self._http_error,
                                                 Exception: self._server_error})

    # ---- lifetime -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        self.scheduler.start()
        try:
            yield
        finally:
            self.scheduler.stop()

    # ---- errors, auth, bodies -----------------------------------------------------------------
    @staticmethod
    def error(e: P.APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    async def _http_error(self, request, exc: HTTPException):
        status = exc.status_code
        msg = {404: f"no such endpoint: {request.method} {request.url.path}",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(status, exc.detail)
        return self.error(P.APIError(status, msg, None, {404: "not_found", 405: "method_not_allowed"}.get(status)))

    async def _server_error(self, request, exc: Exception):
        return self.error(P.APIError(500, f"internal error: {type(exc).__name__}: {exc}"[:500]))

    def _auth(self, request: Request):
        if self.api_key is None:
            return
        h = request.headers.get("authorization", "")
        token = h[7:].strip() if h[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise P.APIError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
                             None, "invalid_api_key")

    async def _json(self, request: Request) -> dict:
        n = request.headers.get("content-length")
        if n is not None and n.isdigit() and int(n) > MAX_BODY:
            raise P.APIError(413, f"the request body has {n} bytes; the limit is {MAX_BODY}",
                             None, "request_too_large")
        chunks, size = [], 0
        try:
            async for c in request.stream():
                size += len(c)
                if size > MAX_BODY:
                    raise P.APIError(413, f"the request body is larger than {MAX_BODY} bytes",
                                     None, "request_too_large")
                chunks.append(c)
        except ClientDisconnect:
            raise P.APIError(400, "the client disconnected while sending the request") from None
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, RecursionError) as e:
            raise P.APIError(400, f"the request body is not valid JSON: {e}"[:300], None,
                             "invalid_json") from None
        if not isinstance(body, dict):
            raise P.APIError(400, "the request body must be a JSON object", None, "invalid_json")
        return body

    def _endpoint(handler):
        """Wrap a route: APIError -> its response, and count the request for /metrics."""
        async def run(self, request):
            t0 = time.perf_counter()
            try:
                self._auth(request)
                resp = await handler(self, request)
            except P.APIError as e:
                resp = self.error(e)
            self._metrics.request(request.url.path, resp.status_code, time.perf_counter() - t0)
            return resp
        run.__name__ = handler.__name__
        return run

    # ---- simple endpoints ---------------------------------------------------------------------
    async def health(self, request):
        st = self.scheduler.stats()
        return JSONResponse({"status": "ok", "model": self.name, "slots": st["slots"],
                             "slots_busy": st["busy_slots"], "queue_length": st["queue_length"]})

    async def metrics(self, request):
        body, ctype = self._metrics.render()
        return Response(body, media_type=ctype)

    def _model_object(self):
        c = self.model.config
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "qwen3c",
                "meta": {"arch": c.arch, "n_ctx": self.n_ctx, "n_params": c.n_params,
                         "vocab_size": c.vocab_size, "slots": len(self.scheduler.slots)}}

    @_endpoint
    async def models(self, request):
        return JSONResponse({"object": "list", "data": [self._model_object()]})

    @_endpoint
    async def model_info(self, request):
        mid = request.path_params["model_id"]
        if mid not in self.served:
            raise P.APIError(404, f"The model '{mid}' does not exist", "model", "model_not_found")
        return JSONResponse(self._model_object())

    # ---- running jobs -------------------------------------------------------------------------
    def _constraint_for(self, tools, tool_choice, schema, parallel, thinking, in_think=False):
        """A factory of per-choice Constraints, or None (compiled once, checked here)."""
        if tool_choice == "required" or tool_choice not in ("auto", "none"):
            chosen = tools if tool_choice == "required" else \
                [t for t in tools if t["function"]["name"] == tool_choice]
            grammar = tool_call_grammar(chosen, only_one=tool_choice != "required" or not parallel)
        elif schema is not None:
            grammar = json_grammar(schema)
        else:
            return None
        think = self.think_ids if thinking or in_think else (None, None)
        first = Constraint(self.model, grammar, *think, in_think=in_think)
        made = [first]

        def make():
            return made.pop() if made else Constraint(self.model, grammar, *think, in_think=in_think)
        return make

    async def _submit(self, request, prompt, n, body, *, stop, max_tok, logprobs, constraint,
                      ignore_eos):
        """Queue one job per choice; returns (jobs, their event queue)."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        jobs = []

        def emitter(i):
            def emit(ev):
                try:
                    loop.call_soon_threadsafe(q.put_nowait, (i, ev))
                except RuntimeError:   # the event loop is gone (shutdown)
                    pass
            return emit

        for i in range(n):
            try:
                sampler = Sampler(**P.sampling_params(body, i))
            except ValueError as e:
                raise P.APIError(422, str(e)) from None
            jobs.append(Job(list(prompt), max_tok, sampler, stop=stop, ignore_eos=ignore_eos,
                            logprobs=logprobs, constraint=constraint() if constraint else None,
                            emit=emitter(i)))
        try:
            for j in jobs:
                self.scheduler.submit(j)
        except QueueFullError as e:
            for j in jobs:
                self.scheduler.cancel(j)
            raise P.APIError(429, f"The server is busy: {e}. Retry later.", None, "queue_full") from None
        except ContextOverflowError as e:
            for j in jobs:
                self.scheduler.cancel(j)
            raise P.overflow(e.n_prompt_tokens, self.n_ctx) from None
        return jobs, q

    async def _watch_disconnect(self, request, jobs):
        """Cancel the jobs when the client goes away (the body was read: the next message
        is the disconnect)."""
        try:
            while True:
                msg = await request.receive()
                if msg["type"] == "http.disconnect":
                    for j in jobs:
                        self.scheduler.cancel(j)
                    return
        except (asyncio.CancelledError, Exception):
            return

    async def _events(self, request, jobs, q):
        """Yield (choice index, event) until every job is done; jobs are cancelled if the
        consumer stops early (the client went away)."""
        watcher = asyncio.ensure_future(self._watch_disconnect(request, jobs))
        left = len(jobs)
        try:
            while left:
                i, ev = await q.get()
                if isinstance(ev, DoneEvent):
                    left -= 1
                yield i, ev
        finally:
            watcher.cancel()
            for j in jobs:
                if j.finish_reason is None:
                    self.scheduler.cancel(j)

    async def _stream_events(self, request, jobs, q, choices):
        """(choice, event, the SSE error line of a failed job or None) for a streamed response;
        a DoneEvent is recorded on its choice first."""
        async for i, ev in self._events(request, jobs, q):
            c = choices[i]
            failed = None
            if isinstance(ev, DoneEvent):
                c.done = ev
                failed = error_event(ev) if ev.finish_reason == "error" else None
            yield c, ev, failed

    # ---- /v1/chat/completions -----------------------------------------------------------------
    @_endpoint
    async def chat_completions(self, request):
        body = await self._json(request)
        P.check_model(body, self.served)
        msgs = P.check_chat_messages(body)
        tools, tool_choice = P.check_tools(body)
        schema = P.check_response_format(body)
        if schema is not None and tool_choice not in ("auto", "none"):
            raise P.APIError(400, "response_format cannot be combined with a required tool call",
                             "response_format", "invalid_value")
        kw = dict(P.get_object(body, "chat_template_kwargs", {}))
        thinking = kw.pop("enable_thinking", None)     # None: the template's default
        if thinking is not None and not isinstance(thinking, bool):
            raise P.APIError(422, "chat_template_kwargs.enable_thinking must be a boolean",
                             "chat_template_kwargs", "invalid_type")
        for k in ("messages", "tools", "add_generation_prompt", "documents"):
            kw.pop(k, None)
        n = P.get_number(body, "n", 1, P.MAX_N, integer=True, default=1)
        stream = P.get_bool(body, "stream")
        include_usage = P.get_bool(P.get_object(body, "stream_options", {}), "include_usage")
        want_lp = P.get_bool(body, "logprobs")
        top_lp = P.get_number(body, "top_logprobs", 0, P.MAX_TOP_LOGPROBS, integer=True)
        if top_lp is not None and not want_lp:
            raise P.APIError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs", "invalid_value")
        stop, mt = P.get_stop(body), P.max_tokens(body)
        ignore_eos = P.get_bool(body, "ignore_eos")
        parallel = P.get_bool(body, "parallel_tool_calls", True)
        P.sampling_params(body)                       # checked before any work
        use_tools = tools if tool_choice != "none" else None
        try:
            prompt = await run_in_threadpool(encode_chat, self.model, msgs,
                                             enable_thinking=thinking, tools=use_tools, **kw)
        except (ValueError, TypeError, Qwen3cError) as e:
            raise P.APIError(400, f"the messages cannot be rendered: {e}"[:1000], "messages",
                             "invalid_messages") from None
        thinking, in_think = prompt_thinking(self.model, prompt, thinking)
        if mt is not None and len(prompt) + mt > self.n_ctx:
            raise P.overflow(len(prompt), self.n_ctx, mt)
        if len(prompt) >= self.n_ctx:
            raise P.overflow(len(prompt), self.n_ctx)
        max_tok = mt if mt is not None else self.n_ctx - len(prompt)
        try:
            constraint = await run_in_threadpool(self._constraint_for, tools, tool_choice, schema,
                                                 parallel, thinking, in_think)
        except GrammarError as e:
            raise P.APIError(400, str(e)[:1000], "response_format" if schema else "tools",
                             "invalid_schema") from None
        jobs, q = await self._submit(request, prompt, n, body, stop=stop, max_tok=max_tok,
                                     logprobs=(top_lp or 0) if want_lp else None,
                                     constraint=constraint, ignore_eos=ignore_eos)
        choices = [_Choice(i, j, OutputParser(thinking=self.think_ids[0] is not None,
                                              tools=use_tools is not None, in_think=in_think))
                   for i, j in enumerate(jobs)]
        rid, created = "chatcmpl-" + secrets.token_hex(12), P.now()
        if stream:
            return StreamingResponse(
                self._chat_stream(request, rid, created, jobs, q, choices, include_usage),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        async for i, ev in self._events(request, jobs, q):
            c = choices[i]
            if isinstance(ev, DoneEvent):
                c.done = ev
                c.absorb(c.parser.feed(ev.text, final=True))
            else:
                c.absorb(c.parser.feed(ev.text))
                if ev.logprob is not None and ev.token not in self.scheduler.eog:
                    c.logprobs.append((ev.token, ev.logprob))
        self._check_errors(choices)
        out = []
        for c in choices:
            msg = {"role": "assistant", "content": c.content if (c.content or not c.calls) else None}
            if c.reasoning:
                msg["reasoning_content"] = c.reasoning
            if c.calls:
                msg["tool_calls"] = [{"id": k["id"], "type": "function",
                                      "function": {"name": k["name"], "arguments": k["arguments"]}}
                                     for k in c.calls]
            out.append({"index": c.index, "message": msg,
                        "logprobs": P.chat_logprobs(self.model, c.logprobs) if want_lp else None,
                        "finish_reason": c.finish_reason()})
        self._metrics.first_tokens(jobs)
        return JSONResponse({"id": rid, "object": "chat.completion", "created": created,
                             "model": self.name, "choices": out,
                             "usage": self._usage(choices)})

    def _usage(self, choices):
        d0 = choices[0].done
        return P.usage(d0.n_prompt, sum(c.done.n_completion for c in choices), d0.n_cached)

    @staticmethod
    def _check_errors(choices):
        bad = next((c.done for c in choices if c.done.finish_reason == "error"), None)
        if bad is not None:
            raise P.APIError(500, f"generation failed: {bad.error}", None, "generation_failed")

    async def _chat_stream(self, request, rid, created, jobs, q, choices, include_usage):
        chunk = chunk_maker(rid, created, "chat.completion.chunk", self.name)

        def delta_chunk(c, deltas, finish=None):
            out = []
            for kind, v in deltas:
                if kind == "tool_call":
                    k = len(c.calls)
                    c.calls.append(dict(v, id=new_call_id()))
                    out.append({"tool_calls": [{"index": k, "id": c.calls[-1]["id"], "type": "function",
                                                "function": {"name": v["name"], "arguments": ""}}]})
                    out.append({"tool_calls": [{"index": k, "function": {"arguments": v["arguments"]}}]})
                else:
                    out.append({"reasoning_content" if kind == "reasoning" else "content": v})
            if not out and (finish or c.logprobs):
                out.append({})
            lines = []
            for j, d in enumerate(out):
                e = {"index": c.index, "delta": d, "logprobs": None, "finish_reason": None}
                if c.logprobs and j == 0:
                    e["logprobs"] = P.chat_logprobs(self.model, c.logprobs)
                    c.logprobs = []
                if finish and j == len(out) - 1:
                    e["finish_reason"] = finish
                lines.append(chunk([e]))
            return "".join(lines)

        yield chunk([{"index": c.index, "delta": {"role": "assistant", "content": ""},
                      "logprobs": None, "finish_reason": None} for c in choices])
        async for c, ev, failed in self._stream_events(request, jobs, q, choices):
            if failed:
                yield failed
            elif isinstance(ev, DoneEvent):
                deltas = c.parser.feed(ev.text, final=True)
                reason = "tool_calls" if (c.calls or any(k == "tool_call" for k, _ in deltas)) \
                    and ev.finish_reason == "stop" else ev.finish_reason
                yield delta_chunk(c, deltas, finish=reason)
            else:
                if ev.logprob is not None and ev.token not in self.scheduler.eog:
                    c.logprobs.append((ev.token, ev.logprob))
                deltas = c.parser.feed(ev.text)
                if deltas:
                    yield delta_chunk(c, deltas)
        self._metrics.first_tokens(jobs)
        if include_usage and all(c.done is not None for c in choices):
            yield chunk([], self._usage(choices))
        yield "data: [DONE]\n\n"

    # ---- /v1/completions ----------------------------------------------------------------------
    def _prompts(self, body) -> list:
        p = body.get("prompt")
        if p is None:
            raise P.APIError(400, "'prompt' is required", "prompt", "missing_required_parameter")
        if isinstance(p, str) or (isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)):
            p = [p]
        if not isinstance(p, list) or not p or len(p) > P.MAX_N:
            raise P.APIError(422, f"'prompt' must be a string, an array of token ids, or an array "
                                  f"of at most {P.MAX_N} of those", "prompt", "invalid_type")
        out = []
        V = self.model.config.vocab_size
        for x in p:
            if isinstance(x, str):
                if not x:
                    raise P.APIError(400, "'prompt' is empty", "prompt", "invalid_value")
                try:
                    out.append(self.model.encode(x, special=True))
                except (ValueError, Qwen3cError) as e:
                    raise P.APIError(400, f"'prompt' cannot be tokenized: {e}"[:500], "prompt",
                                     "invalid_value") from None
            elif isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool) for t in x):
                bad = next((t for t in x if not 0 <= t < V), None)
                if bad is not None:
                    raise P.APIError(400, f"token id {bad} is outside the vocabulary [0, {V})",
                                     "prompt", "invalid_value")
                out.append(list(x))
            else:
                raise P.APIError(422, "'prompt' entries must be strings or non-empty arrays of "
                                      "token ids", "prompt", "invalid_type")
        return out

    @_endpoint
    async def completions(self, request):
        body = await self._json(request)
        P.check_model(body, self.served)
        n = P.get_number(body, "n", 1, P.MAX_N, integer=True, default=1)
        best_of = P.get_number(body, "best_of", 1, P.MAX_N, integer=True)
        if best_of is not None and best_of != n:
            raise P.APIError(400, "'best_of' other than 'n' is not supported", "best_of", "unsupported")
        if body.get("suffix") not in (None, ""):
            raise P.APIError(400, "'suffix' is not supported", "suffix", "unsupported")
        stream = P.get_bool(body, "stream")
        include_usage = P.get_bool(P.get_object(body, "stream_options", {}), "include_usage")
        echo = P.get_bool(body, "echo")
        lp = P.get_number(body, "logprobs", 0, 5, integer=True)
        if echo and lp is not None:
            raise P.APIError(400, "'echo' with 'logprobs' (prompt logprobs) is not supported",
                             "echo", "unsupported")
        stop, mt = P.get_stop(body), P.max_tokens(body)
        if mt is None:
            mt = 16                                     # the OpenAI default for completions
        ignore_eos = P.get_bool(body, "ignore_eos")
        schema = P.check_response_format(body)
        P.sampling_params(body)
        prompts = self._prompts(body)
        for pr in prompts:
            if len(pr) + mt > self.n_ctx:
                raise P.overflow(len(pr), self.n_ctx, mt, what="prompt")
        try:
            constraint = await run_in_threadpool(self._constraint_for, None, "none", schema, False, False)
        except GrammarError as e:
            raise P.APIError(400, str(e)[:1000], "response_format", "invalid_schema") from None
        all_jobs, queues = [], []
        try:
            for pr in prompts:
                jobs, q = await self._submit(request, pr, n, body, stop=stop, max_tok=mt, logprobs=lp,
                                             constraint=constraint, ignore_eos=ignore_eos)
                all_jobs.append(jobs)
                queues.append(q)
        except P.APIError:
            for jobs in all_jobs:
                for j in jobs:
                    self.scheduler.cancel(j)
            raise
        # one event stream over every prompt's choices: index = prompt * n + choice
        merged: asyncio.Queue = asyncio.Queue()
        flat = [j for jobs in all_jobs for j in jobs]
        if len(queues) == 1:
            merged = queues[0]
        else:
            for k, q in enumerate(queues):
                async def pump(q=q, k=k):
                    left = n
                    while left:
                        i, ev = await q.get()
                        left -= isinstance(ev, DoneEvent)
                        merged.put_nowait((k * n + i, ev))
                asyncio.ensure_future(pump())
        choices = [_Choice(i, j, None) for i, j in enumerate(flat)]
        prefix = [self.model.decode(prompts[i // n]) if echo else "" for i in range(len(flat))]
        rid, created = "cmpl-" + secrets.token_hex(12), P.now()
        if stream:
            return StreamingResponse(
                self._completion_stream(request, rid, created, flat, merged, choices, prefix,
                                        include_usage, lp, n),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        async for i, ev in self._events(request, flat, merged):
            c = choices[i]
            if isinstance(ev, DoneEvent):
                c.done = ev
                c.text += ev.text
            else:
                c.text += ev.text
                if ev.logprob is not None and ev.token not in self.scheduler.eog:
                    c.logprobs.append((ev.token, ev.logprob))
        self._check_errors(choices)
        out = [{"index": c.index, "text": prefix[c.index] + c.text,
                "logprobs": P.completion_logprobs(self.model, c.logprobs, len(prefix[c.index]))
                if lp is not None else None,
                "finish_reason": c.done.finish_reason} for c in choices]
        self._metrics.first_tokens(flat)
        return JSONResponse({"id": rid, "object": "text_completion", "created": created,
                             "model": self.name, "choices": out,
                             "usage": self._completion_usage(choices, n)})

    @staticmethod
    def _completion_usage(choices, n):
        n_prompt = sum(c.done.n_prompt for c in choices[::n])
        return P.usage(n_prompt, sum(c.done.n_completion for c in choices),
                       sum(c.done.n_cached for c in choices[::n]))

    async def _completion_stream(self, request, rid, created, jobs, q, choices, prefix,
                                 include_usage, lp, n):
        chunk = chunk_maker(rid, created, "text_completion", self.name)

        for c in choices:
            if prefix[c.index]:
                yield chunk([{"index": c.index, "text": prefix[c.index], "logprobs": None,
                              "finish_reason": None}])
        async for c, ev, failed in self._stream_events(request, jobs, q, choices):
            if failed:
                yield failed
                continue
            if isinstance(ev, DoneEvent):
                yield chunk([{"index": c.index, "text": ev.text, "logprobs": None,
                              "finish_reason": ev.finish_reason}])
                continue
            if ev.token in self.scheduler.eog:
                continue
            # one chunk per token, also when its text is held back (a partial character)
            entries = [(ev.token, ev.logprob)] if ev.logprob is not None else []
            yield chunk([{"index": c.index, "text": ev.text,
                          "logprobs": P.completion_logprobs(self.model, entries) if lp is not None else None,
                          "finish_reason": None}])
        self._metrics.first_tokens(jobs)
        if include_usage and all(c.done is not None for c in choices):
            yield chunk([], self._completion_usage(choices, n))
        yield "data: [DONE]\n\n"


class _Metrics:
    """Prometheus metrics (the prometheus_client package, one registry per server)."""

    def __init__(self, server):
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        self.registry = CollectorRegistry()
        self.requests = Counter("qwen3c_http_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("qwen3c_http_request_seconds", "time to the response's headers",
                                 ["path"], registry=self.registry)
        self.ttft = Histogram("qwen3c_time_to_first_token_seconds",
                              "from queueing a request to its first generated token",
                              buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                              registry=self.registry)
        sched = server.scheduler

        class Collector:
            def collect(self):
                st = sched.stats()
                g = GaugeMetricFamily
                yield g("qwen3c_slots", "slots (parallel sequences)", value=st["slots"])
                yield g("qwen3c_slots_busy", "slots generating or prefilling", value=st["busy_slots"])
                yield g("qwen3c_queue_length", "requests waiting for a slot", value=st["queue_length"])
                yield g("qwen3c_decode_tokens_per_second", "tokens generated per second, last 10 s",
                        value=st["decode_tokens_per_second"])
                c = CounterMetricFamily
                yield c("qwen3c_prompt_tokens", "prompt tokens of admitted jobs", value=st["prompt_tokens"])
                yield c("qwen3c_prompt_tokens_cached", "prompt tokens found in a slot's cache",
                        value=st["cached_prompt_tokens"])
                yield c("qwen3c_generated_tokens", "tokens sampled", value=st["generated_tokens"])
                yield c("qwen3c_forward_steps", "batched forward passes", value=st["steps"])
                jobs = c("qwen3c_jobs_finished", "sequences finished, by reason", labels=["reason"])
                for reason, v in sorted(st["finished"].items()):
                    jobs.add_metric([reason], v)
                yield jobs

        self.registry.register(Collector())

    def request(self, path, status, seconds):
        path = path if path.startswith("/v1/") else "other"
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def first_tokens(self, jobs):
        for j in jobs:
            if j.t_first_token is not None:
                self.ttft.observe(j.t_first_token - j.t_submit)

    def render(self):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
