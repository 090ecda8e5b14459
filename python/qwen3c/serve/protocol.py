"""The OpenAI API shapes of `qwen3c serve`: request checks and response objects (no HTTP here).

Errors are APIError(status, message, param, code) and become
{"error": {"message", "type", "param", "code"}} bodies:
  400  the request cannot be served as asked: a body that is not a JSON object, a missing
       field, context overflow (the message names the token counts), an unknown tool, a
       schema the grammar engine refuses, an unsupported option
  401  --api-key is set and the request's bearer token is missing or wrong
  404  an unknown path, or a model name this server does not serve
  413  a request body above the size limit
  422  a field of the wrong type or out of its range (as FastAPI-based servers answer)
  429  every slot is busy and the queue is full
"""
from __future__ import annotations

import math
import numbers
import time

SAMPLING_DEFAULTS = dict(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, presence_penalty=0.0,
                         frequency_penalty=0.0, repetition_penalty=1.0)
MAX_N = 16
MAX_STOP = 16
MAX_TOP_LOGPROBS = 20


class APIError(Exception):
    """An error response: HTTP status, message, and the OpenAI error fields."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
             500: "server_error", 503: "server_error"}

    def __init__(self, status: int, message: str, param=None, code=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "error"),
                          "param": self.param, "code": self.code}}


# ---- field checks -------------------------------------------------------------------------------

def _type_name(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(v), type(v).__name__)


def get_number(body, name, lo=None, hi=None, integer=False, default=None, lo_open=False):
    v = body.get(name)
    if v is None:
        return default
    ok = isinstance(v, numbers.Integral) if integer else isinstance(v, numbers.Real)
    if isinstance(v, bool) or not ok or (not integer and not math.isfinite(v)):
        raise APIError(422, f"'{name}' must be {'an integer' if integer else 'a number'}, got "
                            f"{_type_name(v)} {v!r}"[:300], name, "invalid_type")
    if (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
        rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise APIError(422, f"'{name}' must be in {rng}, got {v}", name, "invalid_value")
    return int(v) if integer else float(v)


def _get_typed(body, name, kind, label, default):
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, kind):
        raise APIError(422, f"'{name}' must be {label}, got {_type_name(v)}", name, "invalid_type")
    return v


def get_bool(body, name, default=False):
    return _get_typed(body, name, bool, "a boolean", default)


def get_object(body, name, default=None):
    return _get_typed(body, name, dict, "an object", default)


def get_stop(body) -> tuple:
    v = body.get("stop")
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise APIError(422, "'stop' must be a string or an array of strings", "stop", "invalid_type")
    if len(v) > MAX_STOP:
        raise APIError(422, f"'stop' has {len(v)} strings, at most {MAX_STOP} are allowed", "stop",
                       "invalid_value")
    return tuple(s for s in v if s)


def sampling_params(body, choice: int = 0) -> dict:
    """The keyword arguments of qwen3c.Sampler for a request (and its n-th choice's seed)."""
    p = dict(
        temperature=get_number(body, "temperature", 0, 2, default=SAMPLING_DEFAULTS["temperature"]),
        top_p=get_number(body, "top_p", 0, 1, lo_open=True, default=1.0),
        top_k=get_number(body, "top_k", -1, 2**31 - 1, integer=True, default=0),
        min_p=get_number(body, "min_p", 0, 1, default=0.0),
        presence_penalty=get_number(body, "presence_penalty", -2, 2, default=0.0),
        frequency_penalty=get_number(body, "frequency_penalty", -2, 2, default=0.0),
        repetition_penalty=get_number(body, "repetition_penalty", 0, 10, lo_open=True, default=1.0),
    )
    p["top_k"] = max(p["top_k"], 0)
    seed = get_number(body, "seed", -(2**63), 2**64 - 1, integer=True)
    p["seed"] = None if seed is None else (seed + choice) % 2**64
    return p


def max_tokens(body):
    mt = get_number(body, "max_completion_tokens", 1, None, integer=True)
    if mt is None:
        mt = get_number(body, "max_tokens", 1, None, integer=True)
    return mt


def check_model(body, served: set):
    name = body.get("model")
    if name is None:
        return
    if not isinstance(name, str):
        raise APIError(422, "'model' must be a string", "model", "invalid_type")
    if name not in served:
        raise APIError(404, f"The model '{name}' does not exist; this server serves "
                            f"{', '.join(sorted(served))}", "model", "model_not_found")


def overflow(n_prompt: int, n_ctx: int, max_tok=None, what="messages") -> APIError:
    if max_tok is None:
        return APIError(400, f"This model's maximum context length is {n_ctx} tokens. However, "
                             f"your {what} resulted in {n_prompt} tokens (and at least one more "
                             "is needed for the answer). Please reduce the length of the "
                             f"{what}.", what if what != "prompt" else "prompt",
                        "context_length_exceeded")
    return APIError(400, f"This model's maximum context length is {n_ctx} tokens. However, you "
                         f"requested {n_prompt + max_tok} tokens ({n_prompt} in the {what}, "
                         f"{max_tok} in the completion). Please reduce the length of the {what} "
                         "or the completion.", "max_tokens", "context_length_exceeded")


# ---- messages and tools ---------------------------------------------------------------------------

def check_chat_messages(body) -> list:
    msgs = body.get("messages")
    if msgs is None:
        raise APIError(400, "'messages' is required", "messages", "missing_required_parameter")
    if not isinstance(msgs, list) or not msgs:
        raise APIError(422, "'messages' must be a non-empty array", "messages", "invalid_type")
    out = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise APIError(422, f"{where} must be an object", where, "invalid_type")
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise APIError(422, f"{where}.role must be system, developer, user, assistant or tool, "
                                f"got {role!r}"[:200], f"{where}.role", "invalid_value")
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or \
                        not isinstance(part.get("text"), str):
                    raise APIError(400, f"{where}.content[{j}]: only text parts are supported",
                                   f"{where}.content", "unsupported_content")
                texts.append(part["text"])
            content = "".join(texts)
        elif content is None:
            if role != "assistant":
                raise APIError(422, f"{where}.content is required", f"{where}.content", "invalid_type")
            content = ""
        elif not isinstance(content, str):
            raise APIError(422, f"{where}.content must be a string or an array of text parts",
                           f"{where}.content", "invalid_type")
        msg = {"role": "system" if role == "developer" else role, "content": content}
        for k in ("name", "tool_call_id", "reasoning_content"):
            if isinstance(m.get(k), str):
                msg[k] = m[k]
        if role == "assistant" and m.get("tool_calls") is not None:
            calls = m["tool_calls"]
            if not isinstance(calls, list) or not all(
                    isinstance(c, dict) and isinstance(c.get("function"), dict)
                    and isinstance(c["function"].get("name"), str) for c in calls):
                raise APIError(422, f"{where}.tool_calls must be an array of function calls",
                               f"{where}.tool_calls", "invalid_type")
            msg["tool_calls"] = [{"id": c.get("id"), "type": "function",
                                  "function": {"name": c["function"]["name"],
                                               "arguments": c["function"].get("arguments", "{}")}}
                                 for c in calls]
        out.append(msg)
    return out


def check_tools(body):
    """(tools or None, tool_choice: "auto" | "none" | "required" | a function name)."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None:
        if choice not in (None, "none", "auto"):
            raise APIError(400, "'tool_choice' needs 'tools'", "tool_choice", "invalid_value")
        return None, "none"
    if not isinstance(tools, list):
        raise APIError(422, "'tools' must be an array", "tools", "invalid_type")
    names = set()
    for i, t in enumerate(tools):
        f = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(f, dict) \
                or not isinstance(f.get("name"), str) or not f["name"]:
            raise APIError(422, f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}",
                           f"tools[{i}]", "invalid_type")
        if f.get("parameters") is not None and not isinstance(f["parameters"], dict):
            raise APIError(422, f"tools[{i}].function.parameters must be a JSON schema object",
                           f"tools[{i}].function.parameters", "invalid_type")
        names.add(f["name"])
    if choice is None:
        choice = "auto" if tools else "none"
    if isinstance(choice, dict):
        f = choice.get("function")
        name = f.get("name") if isinstance(f, dict) else None
        if choice.get("type") != "function" or not isinstance(name, str):
            raise APIError(422, "'tool_choice' must be none, auto, required or "
                                "{'type': 'function', 'function': {'name': ...}}", "tool_choice",
                           "invalid_type")
        if name not in names:
            raise APIError(400, f"'tool_choice' names the function '{name}', which is not in 'tools'",
                           "tool_choice", "invalid_value")
        choice = name
    elif choice not in ("none", "auto", "required"):
        raise APIError(422, "'tool_choice' must be none, auto, required or a named function",
                       "tool_choice", "invalid_value")
    elif choice == "required" and not tools:
        raise APIError(400, "'tool_choice' is 'required' but 'tools' is empty", "tool_choice",
                       "invalid_value")
    return tools, choice


def check_response_format(body):
    """None, or the JSON schema the answer must follow."""
    rf = get_object(body, "response_format")
    if rf is None:
        return None
    t = rf.get("type")
    if t == "text":
        return None
    if t == "json_object":
        return {"type": "object"}
    if t == "json_schema":
        js = rf.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        if not isinstance(schema, dict):
            raise APIError(422, "response_format.json_schema.schema must be a JSON schema object",
                           "response_format", "invalid_type")
        return schema
    raise APIError(422, "response_format.type must be text, json_object or json_schema",
                   "response_format", "invalid_value")


# ---- response objects -------------------------------------------------------------------------------

def usage(n_prompt: int, n_completion: int, n_cached: int) -> dict:
    return {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
            "total_tokens": n_prompt + n_completion,
            "prompt_tokens_details": {"cached_tokens": n_cached}}


def token_logprob(model, tok: int, lp: float) -> dict:
    b = model.token_to_bytes(tok)
    return {"token": b.decode("utf-8", "backslashreplace"), "logprob": lp, "bytes": list(b)}


def chat_logprobs(model, entries) -> dict:
    """entries: [(token, (logprob, [(id, logprob), ...]))] -> the chat `logprobs` object."""
    content = []
    for tok, (lp, top) in entries:
        e = token_logprob(model, tok, lp)
        e["top_logprobs"] = [token_logprob(model, t, l) for t, l in top]
        content.append(e)
    return {"content": content}


def completion_logprobs(model, entries, offset0: int = 0) -> dict:
    """The legacy completions `logprobs` object."""
    tokens, lps, tops, offsets = [], [], [], []
    pos = offset0
    for tok, (lp, top) in entries:
        t = model.token_to_bytes(tok).decode("utf-8", "backslashreplace")
        tokens.append(t)
        lps.append(lp)
        d = {}
        for i, l in top:
            d.setdefault(model.token_to_bytes(i).decode("utf-8", "backslashreplace"), l)
        tops.append(d)
        offsets.append(pos)
        pos += len(t)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def now() -> int:
    return int(time.time())
