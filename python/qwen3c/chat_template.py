"""Chat templates: render a conversation the way the model was trained to see it.

A GGUF carries its Jinja chat template in the `tokenizer.chat_template` metadata. Templates come
from files downloaded off the internet, so they are rendered in jinja2's
ImmutableSandboxedEnvironment, configured like transformers' `apply_chat_template`
(trim_blocks, lstrip_blocks, loopcontrols, a non-escaping `tojson`, `raise_exception`,
`strftime_now`, a dunder-proof `namespace`): a template can format text, never run code.
Files without a template get the official Qwen3 one (QWEN3_CHAT_TEMPLATE below), or for a
Qwen3.5 ("qwen35") file the Qwen3.5 one (chat_template_qwen35.py).

enable_thinking=None (the default) leaves the variable undefined, as transformers does when
it is not passed: the template's own default applies (Qwen3 and Qwen3.5-4B+: thinking;
Qwen3.5-0.8B / -2B: no thinking). True / False set it.

    apply_chat_template(model, messages)  -> str, byte-identical to transformers
    encode_chat(model, messages)          -> token ids: the template's own text with special
                                             tokens on, the message contents with them off
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Mapping
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.sandbox
import jinja2.utils

from .chat_template_qwen35 import QWEN35_CHAT_TEMPLATE, QWEN35_SMALL_CHAT_TEMPLATE
from .errors import ModelFormatError

# Message fields a conversation may carry a turn's reasoning under; like transformers, the
# first is filled from whichever is present so that every template finds it.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


# ---- the sandboxed environment --------------------------------------------------------------

class _Namespace(jinja2.utils.Namespace):
    """`namespace(...)` for templates, refusing underscore names (no reaching into internals)."""

    def __init__(*args, **kwargs):  # noqa: N805 -- same signature trick as jinja's Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates may not set underscore attributes on a namespace ({name!r})")


class _DictMaker:
    """`dict(...)` for templates: builds plain dicts, exposes nothing else."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # jinja's own tojson HTML-escapes; chat templates expect plain JSON
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template in the sandbox (cached). Raises ModelFormatError when the
    template does not parse."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _DictMaker()
    env.globals["namespace"] = _Namespace
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ModelFormatError(f"the chat template does not parse: {e} (line {e.lineno})") from None


# ---- messages ---------------------------------------------------------------------------------

def _plain(value, where):
    """A copy of value made only of JSON types (subclasses stripped), so a template sees
    nothing with methods beyond str/list/dict."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k, where): _plain(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    raise TypeError(f"{where}: values must be str, numbers, lists or dicts, "
                    f"got {type(value).__name__}")


def check_messages(messages) -> list:
    """Validate a conversation and return a plain copy of it (reasoning fields aliased)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, (list, tuple)):
        raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise TypeError(f"messages[{i}] must be a dict, got {type(m).__name__}")
        if not isinstance(m.get("role"), str):
            raise ValueError(f"messages[{i}] needs a 'role' string")
        if "content" not in m or not isinstance(m["content"], str):
            raise ValueError(f"messages[{i}] needs a 'content' string")
        m = _plain(dict(m), f"messages[{i}]")
        reasoning = next((m[k] for k in REASONING_FIELDS if m.get(k) is not None), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


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
           **kwargs) -> str:
    """Render an already-checked conversation with the template `source` (enable_thinking None:
    undefined in the template)."""
    template = compile_template(source)
    if enable_thinking is not None:
        kwargs["enable_thinking"] = enable_thinking
    try:
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               **{"tools": None, "documents": None, **kwargs})
    except jinja2.exceptions.SecurityError as e:
        raise ModelFormatError(f"the chat template tried an unsafe operation: {e}") from None
    except jinja2.exceptions.TemplateError as e:
        # raise_exception(...) from the template (e.g. roles that do not alternate) and
        # undefined variables: a problem with the conversation we were given
        raise ValueError(f"the chat template rejected the conversation: {e}") from None


def _check_flags(enable_thinking, add_generation_prompt):
    if enable_thinking is not None and not isinstance(enable_thinking, bool):
        raise TypeError("enable_thinking must be True, False or None (the template's default)")
    if not isinstance(add_generation_prompt, bool):
        raise TypeError("add_generation_prompt must be True or False")


def apply_chat_template(model, messages, enable_thinking=None, add_generation_prompt=True,
                        **kwargs) -> str:
    """The prompt text for `messages` -- byte-identical to transformers'
    `tokenizer.apply_chat_template(messages, tokenize=False, ...)` with the same template.

    model: a qwen3c.Model (its GGUF template and special tokens are used) or None for the
    built-in Qwen3 template. enable_thinking: True / False, or None for the template's default
    (the variable stays undefined). Extra keyword arguments are passed to the template.
    """
    _check_flags(enable_thinking, add_generation_prompt)
    msgs = check_messages(messages)
    extra = {**_special_token_strings(model), **kwargs}
    return render(template_source(model), msgs, add_generation_prompt=add_generation_prompt,
                  enable_thinking=enable_thinking, **extra)


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
                **kwargs) -> list:
    """The token ids of the rendered conversation, with special tokens recognized in the
    template's scaffolding only: a user typing "<|im_end|>" gets plain-text tokens."""
    _check_flags(enable_thinking, add_generation_prompt)
    msgs = check_messages(messages)
    source = template_source(model)
    render_kw = dict(add_generation_prompt=add_generation_prompt,
                     enable_thinking=enable_thinking,
                     **{**_special_token_strings(model), **kwargs})
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

