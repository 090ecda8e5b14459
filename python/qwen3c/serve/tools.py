"""The assistant's output, turned into OpenAI fields: reasoning_content, content, tool_calls.

Qwen3 writes its thinking as <think>...</think> before the answer, and a tool call (the Hermes
format its chat template teaches) as

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

OutputParser takes the generated text piece by piece and returns deltas -- ("reasoning", text),
("content", text), ("tool_call", {"name": ..., "arguments": "<json>"}) -- as soon as they are
certain, so the same parser serves streamed and whole answers. A <tool_call> block that does
not hold a valid call is handed back as content, unchanged.
"""
from __future__ import annotations

import json
import secrets

from ..chat import ThinkSplitter

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"


def parse_tool_call(body: str):
    """{"name", "arguments" (a JSON string)} from the text between the tags, or None."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            json.loads(args)
        except ValueError:
            return None
    elif isinstance(args, dict):
        args = json.dumps(args, ensure_ascii=False)
    else:
        return None
    return {"name": obj["name"], "arguments": args}


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


class ToolCallParser:
    """Answer text -> ("content", text) and ("tool_call", call) deltas."""

    def __init__(self):
        self.buf = ""
        self.inside = False
        self.after_call = False   # drop the newlines between a call and what follows

    def feed(self, text: str, final: bool = False) -> list:
        self.buf += text
        out = []
        while True:
            if not self.inside:
                if self.after_call:
                    self.buf = self.buf.lstrip("\n")
                    self.after_call = not self.buf

                i = self.buf.find(TOOL_OPEN)
                if i < 0:
                    # hold back what could be the start of <tool_call>
                    keep = 0 if final else next(
                        (n for n in range(min(len(TOOL_OPEN) - 1, len(self.buf)), 0, -1)
                         if self.buf.endswith(TOOL_OPEN[:n])), 0)
                    if len(self.buf) > keep:
                        out.append(("content", self.buf[:len(self.buf) - keep]))
                        self.buf = self.buf[len(self.buf) - keep:]
                    return out
                if i > 0:
                    out.append(("content", self.buf[:i]))
                self.buf, self.inside = self.buf[i:], True
            j = self.buf.find(TOOL_CLOSE)
            if j < 0:
                if final:     # an unfinished call is not a call
                    out.append(("content", self.buf))
                    self.buf, self.inside = "", False
                return out
            block = self.buf[:j + len(TOOL_CLOSE)]
            call = parse_tool_call(block[len(TOOL_OPEN):j].strip())
            out.append(("tool_call", call) if call else ("content", block))
            self.buf, self.inside, self.after_call = self.buf[j + len(TOOL_CLOSE):], False, bool(call)


class OutputParser:
    """Generated text -> ("reasoning" | "content" | "tool_call", value) deltas.

    thinking: split off a leading <think> block as reasoning (in_think: the prompt opened it,
    as Qwen3.5's template does). tools: parse tool calls out of the answer. Consecutive deltas
    of one kind are merged."""

    def __init__(self, thinking: bool = True, tools: bool = False, in_think: bool = False):
        self.think = ThinkSplitter(in_think) if thinking else None
        self.tools = ToolCallParser() if tools else None

    def feed(self, text: str, final: bool = False) -> list:
        out = []
        pieces = self.think.feed(text, final=final) if self.think else [_Answer(text)]
        for p in pieces:
            if p.kind == "thinking":
                out.append(("reasoning", str(p)))
            elif self.tools:
                out += self.tools.feed(str(p))
            else:
                out.append(("content", str(p)))
        if final and self.tools:
            out += self.tools.feed("", final=True)
        merged = []
        for kind, value in out:
            if kind != "tool_call" and not value:
                continue
            if merged and kind != "tool_call" and merged[-1][0] == kind:
                merged[-1] = (kind, merged[-1][1] + value)
            else:
                merged.append((kind, value))
        return merged


class _Answer(str):
    kind = "answer"
