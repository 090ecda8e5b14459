"""Chat templates: render a conversation the way the model was trained to see it.

A GGUF carries its Jinja chat template in the `tokenizer.chat_template` metadata. Templates come
from files downloaded off the internet, so they are rendered in the bounded sandbox of
qwen3c.template_sandbox, configured like transformers' `apply_chat_template` (trim_blocks,
lstrip_blocks, loopcontrols, a non-escaping `tojson`, `raise_exception`, `strftime_now`, a
dunder-proof `namespace`): a template can format text, never run code, and never take more
than bounded time and memory (rendered size 16 characters per context position, 64 KiB to
2 MiB; 1M loop iterations; 2 s). Whatever goes wrong in a template is a ChatTemplateError.
Files without a template get the official Qwen3 one (QWEN3_CHAT_TEMPLATE below), or for a
Qwen3.5 ("qwen35") file the Qwen3.5 one (chat_template_qwen35.py).

enable_thinking=None (the default) leaves the variable undefined, as transformers does when
it is not passed: the template's own default applies (Qwen3 and Qwen3.5-4B+: thinking;
Qwen3.5-0.8B / -2B: no thinking). True / False set it.

    apply_chat_template(model, messages, tools=None, documents=None)
                                          -> str, byte-identical to transformers
    encode_chat(model, messages)          -> token ids: the template's own text with special
                                             tokens on, the message contents with them off
    thinking_switch(model)                -> does enable_thinking change the rendering?
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Mapping

import jinja2

from .chat_template_qwen35 import QWEN35_CHAT_TEMPLATE, QWEN35_SMALL_CHAT_TEMPLATE
from .errors import ChatTemplateError
from .template_sandbox import TemplateLimits, environment, limits_for_context, render_bounded

__all__ = ["apply_chat_template", "encode_chat", "render", "compile_template", "check_messages",
           "check_text", "thinking_switch", "template_limits", "TemplateLimits",
           "QWEN3_CHAT_TEMPLATE"]

# Message fields a conversation may carry a turn's reasoning under; like transformers, the
# first is filled from whichever is present so that every template finds it.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


@functools.lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template in the sandbox (cached). Raises ChatTemplateError when the
    template does not parse or is too long."""
    if not isinstance(source, str):
        raise TypeError(f"a chat template is a str, not {type(source).__name__}")
    try:
        return environment().from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ChatTemplateError(f"the chat template does not parse: {e} (line {e.lineno})") from None
    except RecursionError:
        raise ChatTemplateError("the chat template is nested too deeply to parse",
                                bound="recursion") from None


def template_limits(model) -> TemplateLimits:
    """The sandbox bounds for rendering `model`'s template (from its context length)."""
    config = getattr(model, "config", None)
    return limits_for_context(getattr(config, "n_ctx", None))


# ---- messages ---------------------------------------------------------------------------------

def check_text(text: str, where: str = "text") -> str:
    """text, or ValueError naming the first character that cannot be UTF-8 (a lone surrogate)
    and its index in text -- the same report as Model.encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{where} is not valid Unicode: lone surrogate {text[e.start]!r} at "
                         f"index {e.start}") from None
    return text


def _plain(value, where):
    """A copy of value made only of JSON types (subclasses stripped), so a template sees
    nothing with methods beyond str/list/dict; strings are checked to be valid Unicode."""
    if value is None or type(value) in (int, float, bool):
        return value
    if isinstance(value, str):
        return check_text(str.__str__(value), where)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k, f"{where} key"): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: values must be str, numbers, lists or dicts, "
                    f"got {type(value).__name__}")


def check_messages(messages) -> list:
    """Validate a conversation and return a plain copy of it (reasoning fields aliased).

    Every message is a dict with a 'role' string and a 'content' string; an assistant message
    that makes tool calls ('tool_calls') may have content None or none at all, as in the
    OpenAI format. Other fields (tool_calls, name, tool_call_id, ...) are passed to the
    template as they are."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, (list, tuple)):
        raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise TypeError(f"messages[{i}] must be a dict, got {type(m).__name__}")
        if not isinstance(m.get("role"), str):
            raise ValueError(f"messages[{i}] needs a 'role' string")
        content_ok = isinstance(m.get("content"), str) or (
            m.get("tool_calls") and m.get("content", None) is None)
        if not content_ok:
            raise ValueError(f"messages[{i}] needs a 'content' string"
                             + (" (or None, with tool_calls)" if m.get("role") == "assistant"
                                else ""))
        m = _plain(dict(m), f"messages[{i}]")
        reasoning = next((m[k] for k in REASONING_FIELDS if m.get(k) is not None), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


def _check_tools(tools, documents):
    """JSON-schema tool dicts and document dicts, as plain copies (None stays None)."""
    if tools is not None:
        if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, (list, tuple)):
            raise TypeError("tools must be a list of JSON-schema dicts, e.g. "
                            "[{'type': 'function', 'function': {'name': ..., 'parameters': ...}}]")
        for i, t in enumerate(tools):
            if not isinstance(t, Mapping):
                raise TypeError(f"tools[{i}] must be a JSON-schema dict, not {type(t).__name__} "
                                "(for a Python function, transformers.utils.get_json_schema(f) "
                                "makes one)")
        tools = _plain(list(tools), "tools")
    if documents is not None:
        if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, (list, tuple)):
            raise TypeError("documents must be a list of dicts (e.g. {'title': ..., 'text': ...})")
        for i, d in enumerate(documents):
            if not isinstance(d, Mapping):
                raise TypeError(f"documents[{i}] must be a dict, not {type(d).__name__}")
        documents = _plain(list(documents), "documents")
    return tools, documents


def _special_token_strings(model) -> dict:
    """bos_token / eos_token / ... as text, the way transformers hands them to templates."""
    out = {}
    if model is None:
        return out
    try:
        sp = model.special_tokens
    except Exception:  # a model without a tokenizer: the template gets no special names
        return out
    for name in ("bos", "eos", "pad", "unk"):
        tid = getattr(sp, name, -1)
        if tid is not None and tid >= 0:
            out[f"{name}_token"] = model.token_to_bytes(tid).decode("utf-8", "replace")
    return out


def template_source(model) -> str:
    """The model's own chat template, or a built-in one when it carries none: Qwen3.5's for a
    qwen35 file (the small models' variant, thinking off by default, below 3B parameters),
    else Qwen3's."""
    src = getattr(model, "chat_template", None) if model is not None else None
    if src:
        return src
    config = getattr(model, "config", None)
    if getattr(config, "arch", None) == "qwen35":
        return QWEN35_SMALL_CHAT_TEMPLATE if config.n_params < 3e9 else QWEN35_CHAT_TEMPLATE
    return QWEN3_CHAT_TEMPLATE


def render(source: str, messages, *, add_generation_prompt=True, enable_thinking=None,
           tools=None, documents=None, limits=None, n_ctx=None, **kwargs) -> str:
    """Render an already-checked conversation with the template `source` (enable_thinking None:
    undefined in the template), within `limits` (default: those of a context of n_ctx tokens,
    see template_sandbox). Raises ChatTemplateError for anything that goes wrong in the
    template."""
    template = compile_template(source)
    if limits is None:
        limits = limits_for_context(n_ctx)
    if enable_thinking is not None:
        kwargs["enable_thinking"] = enable_thinking
    variables = dict(messages=messages, tools=tools, documents=documents,
                     add_generation_prompt=add_generation_prompt, **kwargs)
    return render_bounded(template, variables, limits, n_ctx)


def _check_flags(enable_thinking, add_generation_prompt):
    if enable_thinking is not None and not isinstance(enable_thinking, bool):
        raise TypeError("enable_thinking must be True, False or None (the template's default)")
    if not isinstance(add_generation_prompt, bool):
        raise TypeError("add_generation_prompt must be True or False")


def _render_args(model, messages, enable_thinking, add_generation_prompt, tools, documents,
                 kwargs):
    """(source, checked messages, render keywords) for apply_chat_template / encode_chat."""
    _check_flags(enable_thinking, add_generation_prompt)
    msgs = check_messages(messages)
    tools, documents = _check_tools(tools, documents)
    config = getattr(model, "config", None) if model is not None else None
    render_kw = dict(add_generation_prompt=add_generation_prompt,
                     enable_thinking=enable_thinking, tools=tools, documents=documents,
                     n_ctx=getattr(config, "n_ctx", None),
                     **{**_special_token_strings(model), **_plain(kwargs, "template keyword")})
    return template_source(model), msgs, render_kw


def apply_chat_template(model, messages, enable_thinking=None, add_generation_prompt=True,
                        tools=None, documents=None, **kwargs) -> str:
    """The prompt text for `messages` -- byte-identical to transformers'
    `tokenizer.apply_chat_template(messages, tokenize=False, ...)` with the same template.

    model: a qwen3c.Model (its GGUF template, special tokens and context length are used) or
    None for the built-in Qwen3 template. enable_thinking: True / False, or None for the
    template's default (the variable stays undefined). tools: JSON-schema dicts of the
    functions the model may call (Qwen3 lists them in its system turn); documents: dicts for
    templates that take them. An assistant message may carry 'tool_calls' ([{'type': 'function', 'function':
    {'name': ..., 'arguments': {...}}}]) and a 'tool' message the result. Extra keyword
    arguments are passed to the template.
    Raises ChatTemplateError when the template fails or exceeds the sandbox's bounds.
    """
    source, msgs, render_kw = _render_args(model, messages, enable_thinking,
                                           add_generation_prompt, tools, documents, kwargs)
    return render(source, msgs, **render_kw)


@functools.lru_cache(maxsize=16)
def _has_thinking_switch(source: str):
    probe = [{"role": "user", "content": "Hello"}]
    try:
        on, off = (render(source, probe, enable_thinking=flag, add_generation_prompt=True)
                   for flag in (True, False))
    except ChatTemplateError:
        return None
    return on != off


def thinking_switch(model):
    """True when `model`'s chat template renders differently with enable_thinking=False (Qwen3
    writes an empty <think></think> block), False when the flag changes nothing (SmolLM2, and
    most non-Qwen3 templates: such a model has no thinking mode to switch), None when the
    template fails on a one-message probe."""
    return _has_thinking_switch(template_source(model))


# ---- tokenizing a rendered conversation -------------------------------------------------------

def _segments(source, msgs, text, render_kw):
    """Split the rendered `text` into [(str, is_content)] pieces.

    The conversation is rendered a second time with a unique sentinel in place of every
    message content; what lies between the sentinels is the template's own scaffolding.
    """
    nonce = secrets.token_hex(8)
    values = {}
    skel_msgs = []
    for i, m in enumerate(msgs):
        m = dict(m)
        if isinstance(m.get("content"), str):
            key = f"\ue000{nonce}c{i}\ue001"
            values[key] = m["content"]
            m["content"] = key
        if m.get("reasoning_content") is not None:
            rkey = f"\ue000{nonce}r{i}\ue001"
            values[rkey] = m["reasoning_content"]
            for f in REASONING_FIELDS:
                if m.get(f) == values[rkey]:
                    m[f] = rkey
        skel_msgs.append(m)
    skel = render(source, skel_msgs, **render_kw)
    parts = re.split(f"(\ue000{nonce}[cr][0-9]+\ue001)", skel)
    scaffold, keys = parts[0::2], parts[1::2]

    # 1. the template copied every content verbatim
    rebuilt = scaffold[0] + "".join(values[k] + s for k, s in zip(keys, scaffold[1:]))
    if rebuilt == text:
        segs = [(scaffold[0], False)]
        for k, s in zip(keys, scaffold[1:]):
            segs += [(values[k], True), (s, False)]
        return [(s, c) for s, c in segs if s]

    # 2. it edited some contents (e.g. dropped the thinking of old turns): anchor on the
    #    scaffolding pieces, which are literal
    if text.startswith(scaffold[0]):
        segs = [(scaffold[0], False)]
        pos = len(scaffold[0])
        ok = True
        for j, s in enumerate(scaffold[1:]):
            last = j == len(scaffold) - 2
            if last:
                end = len(text) - len(s) if text.endswith(s) and len(text) - len(s) >= pos else -1
            else:
                end = text.find(s, pos) if s else -1
            if end < 0:
                ok = False
                break
            segs += [(text[pos:end], True), (s, False)]
            pos = end + len(s)
        if ok and pos == len(text):
            return [(s, c) for s, c in segs if s]

    # 3. give up on telling them apart: the whole text is scaffolding
    return [(text, False)]


def encode_segments(model, segments) -> list:
    """Token ids for [(text, is_content)]: control tokens (<|im_start|>, ...) are recognized
    only in the scaffolding; every stretch of text between two of them -- scaffolding and
    contents alike -- is tokenized as one plain string, exactly as a tokenizer that splits on
    special tokens first would do for the whole prompt."""
    runs = []          # bytes (plain text) or int (a control token)
    plain_cache = {}

    def is_control(tid):
        if tid not in plain_cache:
            piece = model.token_to_bytes(tid)
            try:
                plain_cache[tid] = model.encode(piece.decode("utf-8"), special=False) != [tid]
            except (UnicodeDecodeError, ValueError):
                plain_cache[tid] = False
        return plain_cache[tid]

    for seg, is_content in segments:
        data = seg.encode("utf-8")
        if is_content:
            runs.append(data)
            continue
        ids = model.encode(seg, special=True)
        if ids == model.encode(seg, special=False):
            runs.append(data)
            continue
        seg_runs = [tid if is_control(tid) else model.token_to_bytes(tid) for tid in ids]
        if b"".join(x if isinstance(x, bytes) else model.token_to_bytes(x)
                    for x in seg_runs) != data:
            return None  # the tokenizer normalized the text: no byte-exact split
        runs.extend(seg_runs)

    ids, buf = [], b""
    for r in runs + [None]:
        if isinstance(r, bytes):
            buf += r
            continue
        if buf:
            ids.extend(model.encode(buf.decode("utf-8"), special=False))
            buf = b""
        if r is not None:
            ids.append(r)
    return ids


def encode_chat(model, messages, enable_thinking=None, add_generation_prompt=True,
                tools=None, documents=None, **kwargs) -> list:
    """The token ids of the rendered conversation, with special tokens recognized in the
    template's scaffolding only: a user typing "<|im_end|>" gets plain-text tokens.
    Arguments as apply_chat_template."""
    source, msgs, render_kw = _render_args(model, messages, enable_thinking,
                                           add_generation_prompt, tools, documents, kwargs)
    text = render(source, msgs, **render_kw)
    ids = encode_segments(model, _segments(source, msgs, text, render_kw))
    if ids is None:
        ids = model.encode(text, special=True)
    return ids


# The chat template of Qwen/Qwen3-* (tokenizer_config.json), verbatim: data, not code.
QWEN3_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""

