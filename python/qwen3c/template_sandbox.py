"""The Jinja sandbox chat templates run in: no code execution, and bounded time and memory.

A chat template comes from a downloaded file. jinja2's ImmutableSandboxedEnvironment stops it
from reaching Python internals, but not from exhausting the machine: `{{ 'a' * 10**10 }}`
allocates tens of GB in one step, and two nested `range(100000)` loops run for minutes. Here
every operation a template can perform passes a check before it does any work:

    bound           what it limits                                  default
    max_chars       the rendered text, and any one string a         16 per context position,
                    template builds (rendered size)                 64 KiB .. 2 MiB characters
    max_total       all the text and list items a template builds,  8 x max_chars
                    summed over the render (what it can hold; an
                    item counts as 8 characters, a pointer's size)
    max_items       one list, range or other collection             100,000 items
    max_iterations  loop iterations, all loops together             1,000,000
    max_seconds     wall time of one render                         2 s
    max_int_bits    the size of an integer                          16,384 bits

Where the checks sit (a pure-Python render cannot be interrupted from outside, and signals
only reach the main thread, so the render checks itself, often):

- binary operators (`+ - * / // % **`) are intercepted: `*` and `**` are refused *before*
  they run if their result would be too big, `%` formatting by its widths;
- `~` concatenation, every `{% for %}` (a counting iterator around the iterable), every
  output (`{{ }}` through `finalize`, literal text through a counter added to each output
  node), every call (`environment.call`: str methods with growing arguments such as
  `center`, `replace`, `join`, `format` are checked first, a Markup's (`|safe`) too, whose
  methods escape their arguments), every attribute and item lookup
  (a slice is a copy: counted), every filter (each wrapped with its own argument checks; the
  ones that loop over a long value count its items as iterations), and `range`;
- each check also compares the clock with the deadline.

Any value is sized before it is turned into text (`{{ some_list }}`, `tojson`, `join`, ...),
because str() of a list holding one big string many times is itself an amplifier.

Exceeding a bound raises ChatTemplateError naming it (`.bound`); so does every other failure
of a template (undefined values, `raise_exception(...)`, type errors, range's OverflowError).
Nothing is left behind: the next render starts afresh.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import math
import re
import time
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import jinja2
import jinja2.ext
import jinja2.filters
import jinja2.nodes as nodes
import jinja2.runtime
import jinja2.sandbox
import jinja2.utils
import jinja2.visitor
import markupsafe

from .errors import ChatTemplateError

__all__ = ["TemplateLimits", "limits_for_context", "SandboxEnvironment", "TemplateRaised",
           "environment", "render_bounded"]

CHARS_PER_POSITION = 16
MIN_CHARS = 64 * 1024
MAX_CHARS = 2 * 1024 * 1024
MAX_SOURCE_CHARS = 64 * 1024       # the template text itself (real ones: 4-20 KB; compiling
                                   # 64 KiB of tags takes ~1 s, which no bound could interrupt)
MAX_NESTING = 64                   # containers inside containers, when sized for str()/tojson
ITEM_CHARS = 8                     # one item of a list counts as 8 characters in max_total


@dataclass(frozen=True)
class TemplateLimits:
    """The bounds of one render (see the module docstring)."""

    max_chars: int = MAX_CHARS
    max_total: int = 8 * MAX_CHARS
    max_items: int = 100_000
    max_iterations: int = 1_000_000
    max_seconds: float = 2.0
    max_int_bits: int = 16_384


def limits_for_context(n_ctx=None) -> TemplateLimits:
    """The limits for a model with context length n_ctx: 16 characters per context position,
    at least 64 KiB and at most 2 MiB (None: 2 MiB)."""
    if n_ctx is None:
        return TemplateLimits()
    chars = min(MAX_CHARS, max(MIN_CHARS, CHARS_PER_POSITION * int(n_ctx)))
    return TemplateLimits(max_chars=chars, max_total=8 * chars)


# ---- the running render's budget ------------------------------------------------------------

class _Budget:
    """What one render has used so far, checked against its limits."""

    __slots__ = ("limits", "deadline", "total", "iterations", "n_ctx")

    def __init__(self, limits: TemplateLimits, n_ctx=None):
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.total = 0
        self.iterations = 0
        self.n_ctx = n_ctx

    def fail(self, what: str, bound: str):
        raise ChatTemplateError(f"the chat template {what}", bound=bound)

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            self.fail(f"ran longer than {self.limits.max_seconds:g} s", "max_seconds")

    def _chars_note(self) -> str:
        if self.n_ctx is None:
            return ""
        return f" ({CHARS_PER_POSITION} per position of the {self.n_ctx}-token context)"

    def chars(self, n: int, what: str = "builds a string") -> None:
        """A string of n characters is about to be made."""
        if n > self.limits.max_chars:
            self.fail(f"{what} of {n:,} characters, over the limit of "
                      f"{self.limits.max_chars:,}{self._chars_note()}", "max_chars")

    def items(self, n: int, what: str = "builds a collection") -> None:
        if n > self.limits.max_items:
            self.fail(f"{what} of {n:,} items, over the limit of {self.limits.max_items:,}",
                      "max_items")

    def add(self, n: int) -> None:
        """n more characters now exist (an item of a collection counts as ITEM_CHARS)."""
        self.total += n
        if self.total > self.limits.max_total:
            self.fail(f"builds more than {self.limits.max_total:,} characters and items in "
                      "all (the limit of what one render may build)", "max_total")

    def iterate(self) -> None:
        self.iterations += 1
        if self.iterations > self.limits.max_iterations:
            self.fail(f"runs more than {self.limits.max_iterations:,} loop iterations",
                      "max_iterations")
        self.tick()

    def int_bits(self, bits: int) -> None:
        if bits > self.limits.max_int_bits:
            self.fail(f"builds an integer of {bits:,} bits, over the limit of "
                      f"{self.limits.max_int_bits:,}", "max_int_bits")

    def made(self, value):
        """Account for a value an operation just made; returns it (iterators wrapped)."""
        if isinstance(value, str):
            self.chars(len(value))
            self.add(len(value))
        elif isinstance(value, bytes):
            self.chars(len(value))
            self.add(len(value))
        elif isinstance(value, (list, tuple, dict, set, frozenset)):
            self.items(len(value))
            self.add(ITEM_CHARS * len(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            self.int_bits(value.bit_length())
        elif isinstance(value, Iterator):
            return _counted(self, value)
        return value


_BUDGET: contextvars.ContextVar = contextvars.ContextVar("qwen3c_template_budget", default=None)


def _budget() -> _Budget:
    b = _BUDGET.get()
    if b is None:
        # only render_bounded() runs templates; also keeps jinja from folding constants at
        # compile time through these hooks (it treats the error as "not a constant")
        raise ChatTemplateError("chat templates are rendered through qwen3c.chat_template only")
    return b


def _counted(budget: _Budget, iterable):
    """Iterate, counting every item against max_iterations (and checking the clock)."""
    for item in iterable:
        budget.iterate()
        yield item


# ---- sizing values before they become text ----------------------------------------------------

def _scalar_text_size(x, depth: int):
    """len(str(x)) (inside a container when depth > 0) for a str / number / None / bool / bytes,
    or None for anything else. Inside a container, repr / JSON escape a printable text at most
    2x (quotes, backslashes), other characters at most 10x (\\U0001f600)."""
    t = type(x)
    if t is str or isinstance(x, str):
        n = len(x)
        return n if depth == 0 else (2 if x.isprintable() else 10) * n + 2
    if t is bool or x is None:
        return 5
    if t is int or (isinstance(x, int) and not isinstance(x, bool)):
        return x.bit_length() * 30103 // 100000 + 2
    if t is float:
        return 24
    if isinstance(x, (bytes, bytearray)):
        return 4 * len(x) + 3
    return None


class _TooBig(Exception):
    pass


def _text_size(value, limit: int, indent: int = 0, budget=None) -> int:
    """An upper bound of len(str(value)) (or of its JSON with `indent`), computed without
    building it; stops counting once past `limit`. Nesting deeper than MAX_NESTING counts as
    over the limit. A container referenced many times is sized once. With a budget, the clock
    is checked as it goes."""
    size = _scalar_text_size(value, 0)
    if size is not None:
        return size
    memo, seen = {}, [0]

    def walk(v, depth):
        key = (id(v), depth)
        if key in memo:
            return memo[key]
        if depth > MAX_NESTING:
            raise _TooBig
        if isinstance(v, Mapping):
            items = [*v.keys(), *v.values()]
            total = 2 + len(v) * (4 + indent * (depth + 1))
        elif isinstance(v, (list, tuple, set, frozenset)):
            items = v
            total = 2 + len(v) * (2 + indent * (depth + 1))
        elif isinstance(v, jinja2.utils.Namespace):
            items = [object.__getattribute__(v, "_Namespace__attrs")]
            total = 13
        else:
            return 80  # Undefined, macros, loop objects...: a short repr
        for x in items:
            size = _scalar_text_size(x, depth + 1)
            total += walk(x, depth + 1) if size is None else size
            if total > limit:
                raise _TooBig
            seen[0] += 1
            if budget is not None and seen[0] & 4095 == 0:
                budget.tick()
        memo[key] = total
        return total

    try:
        return walk(value, 0)
    except _TooBig:
        return limit + 1


def _check_text(budget: _Budget, value, factor: int = 1, what: str = "turns a value into text",
                indent: int = 0) -> None:
    limit = budget.limits.max_chars
    n = _text_size(value, limit // factor + 1, indent, budget)
    if n * factor > limit:
        budget.fail(f"{what} of more than {limit:,} characters (or nested deeper than "
                    f"{MAX_NESTING}){budget._chars_note()}", "max_chars")


def _as_text(budget: _Budget, value) -> str:
    """str(value), sized first."""
    if isinstance(value, str):
        return value
    _check_text(budget, value)
    return str(value)


# ---- operators ---------------------------------------------------------------------------------

_FORMAT_NUMBERS = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(budget: _Budget, fmt: str, args) -> None:
    """`fmt % args`: the text of the arguments plus every width and precision."""
    size = len(fmt) + _text_size(args, budget.limits.max_chars + 1)
    star = False
    for m in _FORMAT_NUMBERS.finditer(fmt):
        for g in m.groups():
            if g == "*":
                star = True
            elif g:
                size += int(g) if len(g) < 12 else budget.limits.max_chars + 1
    if star:  # widths taken from the arguments
        for a in (args if isinstance(args, tuple) else (args,)):
            if isinstance(a, int) and not isinstance(a, bool):
                size += abs(a)
    budget.chars(size, "formats a string")


def _seq_len(value):
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


def _check_binop(budget: _Budget, op: str, a, b) -> None:
    if op == "*":
        for seq, n in ((a, b), (b, a)):
            size = _seq_len(seq)
            if size is not None and isinstance(n, int):
                if isinstance(seq, (str, bytes)):
                    budget.chars(size * max(n, 0), "repeats a string into one")
                else:
                    budget.items(size * max(n, 0), "repeats a list into one")
        if isinstance(a, int) and isinstance(b, int):
            budget.int_bits(a.bit_length() + b.bit_length())
    elif op == "**":
        if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
            bits = b * math.log2(abs(a)) if b < 2**64 else math.inf
            budget.int_bits(int(min(bits, 2**62)) + 1)
    elif op == "+":
        la, lb = _seq_len(a), _seq_len(b)
        if la is not None and lb is not None:
            if isinstance(a, (str, bytes)):
                budget.chars(la + lb, "joins strings into one")
            else:
                budget.items(la + lb, "joins lists into one")
    elif op == "%":
        if isinstance(a, (str, bytes)):
            _check_percent_format(budget, a.decode("latin-1") if isinstance(a, bytes) else a, b)
        elif isinstance(a, int) and isinstance(b, int):
            budget.int_bits(max(a.bit_length(), b.bit_length()))


# ---- str methods ---------------------------------------------------------------------------------

_NESTED_FIELD = re.compile(r"\{[^{}]*:[^{}]*\{")


def _check_str_format(budget: _Budget, fmt: str, args, kwargs) -> None:
    """`fmt.format(...)`: the arguments' text plus every number in the format string (widths
    and precisions), plus the integer arguments when a width comes from one ({:{}})."""
    size = len(fmt) + _text_size((args, kwargs), budget.limits.max_chars + 1)
    size += sum(int(d) if len(d) < 12 else budget.limits.max_chars + 1
                for d in re.findall(r"\d+", fmt))
    if _NESTED_FIELD.search(fmt):
        size += sum(abs(v) for v in (*args, *kwargs.values())
                    if isinstance(v, int) and not isinstance(v, bool))
    budget.chars(size, "formats a string")


def _arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _splits(s, sep) -> int:
    """At most how many pieces s.split(sep) / splitlines() makes (s a str or bytes)."""
    if isinstance(sep, bytes if isinstance(s, bytes) else str) and sep:
        return s.count(sep) + 1  # (a Markup s: also a str)
    if s.isascii():
        spaces = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
        return sum(s.count(c if isinstance(s, str) else c.encode()) for c in spaces) + 1
    return len(s) // 2 + 1


# how much longer escaping makes a text, at most (markupsafe.escape: 5, '"' -> '&#34;'; 6 also
# covers xmlattr's quoting)
ESCAPE_GROWTH = 6


def _markup(x) -> bool:
    return hasattr(x, "__html__")


def _replace_forms(budget: _Budget, s, x, convert: bool, escapes: bool) -> list:
    """The strings (bytes) that a replace on s may take its argument x as: [] where it refuses
    x. A str method takes only a str (a Markup, a str subclass, included) and a bytes method
    only bytes; jinja's replace filter (convert) takes the text of any value; where escapes, x
    may be escaped first (a Markup's methods escape their arguments), so both forms count."""
    if isinstance(s, (bytes, bytearray)):
        return [x] if isinstance(x, (bytes, bytearray)) else []
    if not (isinstance(x, str) or convert or escapes):
        return []
    _check_text(budget, x, ESCAPE_GROWTH if escapes else 1, "turns a replace argument into text")
    text = str(x)
    return [text, str(markupsafe.escape(x))] if escapes else [text]


def _check_replace(budget: _Budget, s, old, new, count, convert: bool = False,
                   autoescape: bool = False) -> None:
    """s.replace(old, new, count), or (convert) jinja's replace filter under the template's
    autoescape setting, refused before it runs if the result could be too big. A Markup's
    replace escapes old and new. The filter replaces in str(s) with str(old), str(new); under
    autoescape it replaces as a Markup does where s is one, and where old or new is markup it
    escapes s first."""
    escape_s = convert and autoescape and not _markup(s) and (_markup(old) or _markup(new))
    escapes = (autoescape and (_markup(s) or escape_s)) if convert else _markup(s)
    olds = _replace_forms(budget, s, old, convert, escapes)
    news = _replace_forms(budget, s, new, convert, escapes)
    if not olds or not news:
        return  # the call itself refuses these arguments
    n = len(s)
    if escape_s:  # s grows up to ESCAPE_GROWTH-fold: bound the hits by its length alone
        n *= ESCAPE_GROWTH
        hits = max(n // len(o) + 1 if o else n + 1 for o in olds)
    else:
        hits = max(s.count(o) if o else n + 1 for o in olds)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    grow = max(len(x) for x in news) - min(len(o) for o in olds)
    budget.chars(n + hits * max(grow, 0), "replaces into a string")


def _check_str_method(budget: _Budget, s, name: str, args, kwargs):
    """Refuse a str (or bytes) method call whose result would be too big; returns
    (args, kwargs) (join() receives its iterable as a list)."""
    n = len(s)
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _arg(args, kwargs, 0, "width", 0)
        if isinstance(width, int):
            budget.chars(width, f"pads a string ({name})")
    elif name == "expandtabs":
        tab = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(tab, int):
            tabs = s.count("\t" if isinstance(s, str) else b"\t")
            budget.chars(n + tabs * max(tab, 0), "expands tabs into a string")
    elif name == "replace":
        _check_replace(budget, s, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"),
                       _arg(args, kwargs, 2, "count", -1))
    elif name == "join":
        items = _arg(args, kwargs, 0, "iterable")
        if not isinstance(items, (str, list, tuple)):
            items = list(_counted(budget, items))
            args = (items,)
        if _markup(s):  # Markup.join escapes every item, whatever it is (its text)
            limit = budget.limits.max_chars + 1
            total = sum(min(_text_size(x, limit, budget=budget), limit) *
                        (1 if _markup(x) else ESCAPE_GROWTH) for x in items)
        else:
            total = sum(len(x) if isinstance(x, (str, bytes)) else 0 for x in items)
        budget.chars(total + max(len(items) - 1, 0) * n, "joins strings into one")
    elif name == "translate":
        table = _arg(args, kwargs, 0, "table")
        grow = max((len(v) for v in table.values() if isinstance(v, str)), default=1) \
            if isinstance(table, Mapping) else 1
        budget.chars(n * max(grow, 1), "translates into a string")
    elif name in ("split", "rsplit"):
        sep = _arg(args, kwargs, 0, "sep")
        budget.items(_splits(s, sep), f"splits a string ({name}) into a list")
    elif name == "splitlines":
        budget.items(_splits(s, None), "splits a string into lines")
    return args, kwargs


# ---- filters -------------------------------------------------------------------------------------

# Filters that turn their value into text, and how much longer than str(value) the result can
# be (escape: '<' -> '&lt;'; urlencode: one UTF-8 byte -> '%XX'). tojson, pprint, join and
# format have their own checks below.
_TEXT_FILTERS = {"string": 1, "upper": 1, "lower": 1, "capitalize": 1, "title": 1, "trim": 1,
                 "striptags": 1, "wordcount": 1, "truncate": 1, "safe": 1, "e": ESCAPE_GROWTH,
                 "escape": ESCAPE_GROWTH, "forceescape": ESCAPE_GROWTH, "xmlattr": ESCAPE_GROWTH, "urlencode": 12, "urlize": 4, "wordwrap": 1,
                 "center": 1, "indent": 1, "replace": 1}
# Text filters that start with str(value) and whose arguments can make it longer.
_STR_FILTERS = ("center", "indent", "replace", "wordwrap", "urlize", "truncate")
# Filters that loop over their value in Python and accept any iterable for it.
_ITERATING_FILTERS = ("batch", "slice", "map", "select", "reject", "selectattr", "rejectattr",
                      "unique", "groupby", "list", "sort", "min", "max")
# Pure-Python text filters: their input is kept small enough to finish in time.
_SLOW_TEXT_FILTERS = ("wordwrap", "urlize")
_SLOW_TEXT_CHARS = 256 * 1024


def _check_filter(budget: _Budget, name: str, sig: inspect.Signature, args, kwargs,
                  autoescape: bool = False):
    """Refuse a filter call whose result would be too big (autoescape: the template's setting
    where the call is). Returns (args, kwargs), with iterators turned into (counted) lists where
    the filter would otherwise consume them unchecked."""
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return args, kwargs  # the filter itself will report the bad call
    a = bound.arguments
    value = next(iter(a.values()), None) if a else None
    if (name == "join" and not isinstance(value, (str, list, tuple))) or \
            (name == "sum" and isinstance(value, Iterator)):
        first = next(iter(a))
        a[first] = value = list(_counted(budget, value))
    factor = _TEXT_FILTERS.get(name)
    if factor is not None:
        _check_text(budget, value, factor, f"turns a value into text ({name})")
    if name in _SLOW_TEXT_FILTERS and isinstance(value, str) and len(value) > _SLOW_TEXT_CHARS:
        budget.fail(f"gives the {name} filter {len(value):,} characters, over its limit of "
                    f"{_SLOW_TEXT_CHARS:,}", "max_chars")
    text = value if isinstance(value, str) else None
    if name in _STR_FILTERS and text is None and factor is not None:
        # these filters work on str(value): make it here (sized above) and check that
        text = a[next(iter(a))] = str(value)
    if name == "center" and isinstance(a.get("width"), int):
        budget.chars(a["width"], "pads a string (center)")
    elif name == "indent":
        w = a.get("width", 4)
        w = len(w) if isinstance(w, str) else w if isinstance(w, int) else 0
        budget.chars(max(w, 0), "indents a string")  # " " * width comes first
        if text is not None:
            budget.chars(len(text) + (text.count("\n") + 1) * max(w, 0), "indents a string")
    elif name == "replace" and text is not None:
        count = a.get("count")
        _check_replace(budget, text, a.get("old"), a.get("new"), -1 if count is None else count,
                       convert=True, autoescape=autoescape)
    elif name == "wordwrap" and text is not None:
        width = a.get("width", 79)
        wrap = a.get("wrapstring") or "\n"
        if isinstance(width, int) and isinstance(wrap, str):
            lines = len(text) // max(width, 1) + text.count("\n") + 1
            budget.chars(len(text) + lines * len(wrap), "wraps a string")
    elif name == "urlize" and text is not None:
        extra = sum(len(x) for x in (a.get("target"), a.get("rel")) if isinstance(x, str))
        budget.chars(len(text) * 4 + (len(text) // 4 + 1) * extra, "turns URLs into links")
    elif name == "join":
        d = a.get("d", "")
        if isinstance(value, (list, tuple, str)):
            _check_text(budget, value, 1, "joins values into a string")
            budget.chars(_text_size(value, budget.limits.max_chars + 1)
                         + max(len(value) - 1, 0) * len(d if isinstance(d, str) else ""),
                         "joins values into a string")
    elif name == "format":
        if not isinstance(value, str):
            value = a[next(iter(a))] = _as_text(budget, value)  # the filter formats str(value)
        fmt_args = a.get("args", ()) or a.get("kwargs", {})
        _check_percent_format(budget, value, fmt_args)
    elif name == "tojson":
        indent = a.get("indent") or 0
        if isinstance(indent, str):
            indent = len(indent)
        if not isinstance(indent, int) or indent > 64:
            budget.fail(f"asks tojson for an indent of {indent!r} (at most 64)", "max_chars")
        _check_text(budget, value, 1, "turns a value into JSON", indent=max(indent, 0) + 1)
    elif name == "pprint":
        _check_text(budget, value, 2, "pretty-prints a value", indent=1)
    elif name in ("batch", "slice"):
        n = a.get("linecount" if name == "batch" else "slices")
        if isinstance(n, int):
            budget.items(n, "makes batches" if name == "batch" else "makes slices")
    elif name == "sum" and isinstance(value, (list, tuple)):
        total = sum(len(x) for x in value if isinstance(x, (list, tuple, str)))
        budget.items(total, "sums lists into one")
    elif name == "list" and isinstance(value, (str, list, tuple, Mapping)):
        budget.items(len(value), "makes a list")
    elif name == "int" and isinstance(value, str) and len(value) > 4300:
        budget.fail(f"converts a {len(value):,}-character string to an integer", "max_int_bits")
    if name in _ITERATING_FILTERS and isinstance(value, (str, list, tuple, Mapping, set)) \
            and len(value) > 4096:
        # the filter's own loop over a long value counts its iterations and sees the clock
        a[next(iter(a))] = _counted(budget, value)
    return bound.args, bound.kwargs


def _checked_filter(name: str, func):
    """func, with its arguments checked first and its result accounted for."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0  # context / env arg
    try:
        sig = inspect.signature(func)  # of the function under jinja's async wrapper, which
        params = list(sig.parameters.values())  # may or may not list the context argument
        if skip and params and params[0].name in ("context", "eval_ctx", "environment", "env"):
            params = params[1:]
        sig = sig.replace(parameters=params)
    except (TypeError, ValueError):
        sig = None

    @functools.wraps(func)
    def filter_(*args, **kwargs):
        budget = _budget()
        budget.tick()
        if sig is not None:
            autoescape = bool(getattr(args[0], "autoescape", False)) if skip and args else False
            rest, kwargs = _check_filter(budget, name, sig, args[skip:], kwargs, autoescape)
            args = (*args[:skip], *rest)
        return budget.made(func(*args, **kwargs))

    return filter_


# ---- template helpers ----------------------------------------------------------------------------

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


class TemplateRaised(jinja2.exceptions.TemplateError):
    """raise_exception(message) called by a template (e.g. "roles must alternate")."""


def _raise_exception(message):
    raise TemplateRaised(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # jinja's own tojson HTML-escapes; chat templates expect plain JSON
    import json
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt):
    from datetime import datetime
    budget = _budget()
    if isinstance(fmt, str):
        budget.chars(8 * len(fmt), "formats a date")
    return datetime.now().strftime(fmt)


def _range(*args):
    r = range(*args)
    _budget().items(len(r), "makes a range")
    return r


def _lipsum(n=5, html=True, min=20, max=100):  # noqa: A002 -- jinja's own parameter names
    budget = _budget()
    if isinstance(n, int) and isinstance(max, int):
        budget.items(n * max, "makes lorem ipsum words")
    return jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max)


# ---- the environment -----------------------------------------------------------------------------

class SandboxEnvironment(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox, configured like transformers' apply_chat_template
    (trim_blocks, lstrip_blocks, loopcontrols, a non-escaping tojson, raise_exception,
    strftime_now, a dunder-proof namespace), with every operation bounded (module docstring)."""

    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])

    def __init__(self):
        super().__init__(trim_blocks=True, lstrip_blocks=True, finalize=self._finalize,
                         extensions=[jinja2.ext.loopcontrols])
        self.filters["tojson"] = _tojson
        self.filters = {name: _checked_filter(name, f) for name, f in self.filters.items()}
        self.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now,
                            dict=_DictMaker(), namespace=_Namespace, range=_range,
                            lipsum=_lipsum)

    # -- the template source: every loop iterates through a counter, every output is counted
    def _parse(self, source, name, filename):
        if len(source) > MAX_SOURCE_CHARS:
            raise ChatTemplateError(f"the chat template is {len(source):,} characters long, "
                                    f"over the limit of {MAX_SOURCE_CHARS:,}",
                                    bound="max_source_chars")
        tree = _SliceHook(self).visit(super()._parse(source, name, filename))
        for node in list(tree.find_all(nodes.For)):
            node.iter = self._hook("qwen3c_loop", [node.iter], node.lineno)
        for node in list(tree.find_all(nodes.Output)):
            literal = sum(len(c.data) for c in node.nodes if isinstance(c, nodes.TemplateData))
            node.nodes.insert(0, self._hook("qwen3c_emit", [nodes.Const(literal)], node.lineno))
        for node in list(tree.find_all(nodes.Concat)):
            node.nodes = [self._hook("qwen3c_concat", [nodes.List(node.nodes)], node.lineno)]
        return tree

    def _hook(self, name, args, lineno):
        call = nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None)
        call.set_lineno(lineno)
        call.set_environment(self)
        return call

    def qwen3c_loop(self, iterable):
        budget = _budget()
        budget.tick()
        return _counted(budget, iterable)

    def qwen3c_emit(self, n_chars):
        """Literal template text about to be output (it accumulates in {% set %} blocks)."""
        _budget().add(n_chars)
        return ""

    def qwen3c_concat(self, values):
        """`a ~ b ~ ...`: the parts sized before they are joined."""
        budget = _budget()
        parts = [_as_text(budget, v) for v in values]
        budget.chars(sum(map(len, parts)), "concatenates a string (~)")
        return budget.made("".join(parts))

    def _finalize(self, value):
        """Every {{ ... }} output: sized, turned into text, counted."""
        if isinstance(value, jinja2.runtime.Undefined):
            return value
        budget = _budget()
        budget.tick()
        text = _as_text(budget, value)
        budget.chars(len(text), "outputs a value")
        budget.add(len(text))
        return text

    # -- operators, lookups, calls
    def call_binop(self, context, operator, left, right):
        budget = _budget()
        budget.tick()
        _check_binop(budget, operator, left, right)
        return budget.made(self.binop_table[operator](left, right))

    def getattr(self, obj, attribute):
        _budget().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        budget = _budget()
        budget.tick()
        value = super().getitem(obj, argument)
        return budget.made(value) if isinstance(argument, slice) and value is not obj else value

    def qwen3c_slice(self, obj, start, stop, step):
        """obj[start:stop:step] (jinja compiles slices to plain subscripts): a new copy."""
        budget = _budget()
        budget.tick()
        value = obj[start:stop:step]
        return budget.made(value) if value is not obj else value

    _HOOKS = ("qwen3c_loop", "qwen3c_emit", "qwen3c_concat", "qwen3c_slice")

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 -- jinja's signature
        budget = _budget()
        budget.tick()
        if getattr(__obj, "__self__", None) is __self and __obj.__name__ in __self._HOOKS:
            # the calls _parse added: they account for themselves
            return __obj(*args)
        # (inside loops and blocks jinja adds _loop_vars / _block_vars for Context.call)
        plain_kw = {k: v for k, v in kwargs.items() if k not in ("_loop_vars", "_block_vars")}
        wrapped = getattr(__obj, "__wrapped__", None)  # the sandbox's str.format wrapper
        if isinstance(wrapped, (types.MethodType, types.BuiltinMethodType)) \
                and isinstance(getattr(wrapped, "__self__", None), str):
            fmt_kwargs = args[0] if wrapped.__name__ == "format_map" and args else plain_kw
            _check_str_format(budget, wrapped.__self__,
                              () if wrapped.__name__ == "format_map" else args,
                              fmt_kwargs if isinstance(fmt_kwargs, Mapping) else {})
        elif isinstance(getattr(__obj, "__self__", None), (str, bytes)):  # also Markup's methods
            args, _ = _check_str_method(budget, __obj.__self__, __obj.__name__, args, plain_kw)
        elif isinstance(getattr(__obj, "__self__", None), int) and __obj.__name__ == "to_bytes":
            length = _arg(args, plain_kw, 0, "length", 1)
            if isinstance(length, int):
                budget.chars(length, "makes bytes (to_bytes)")
        elif isinstance(__obj, jinja2.runtime.LoopContext) and args:
            args = (_counted(budget, args[0]), *args[1:])  # a recursive loop's next level
        return budget.made(super().call(__context, __obj, *args, **kwargs))


class _SliceHook(jinja2.visitor.NodeTransformer):
    """x[a:b:c] -> environment.qwen3c_slice(x, a, b, c)."""

    def __init__(self, env):
        self.env = env

    def visit_Getitem(self, node):
        node = self.generic_visit(node)
        if not isinstance(node.arg, nodes.Slice) or node.ctx != "load":
            return node
        sl = node.arg
        parts = [p if p is not None else nodes.Const(None) for p in (sl.start, sl.stop, sl.step)]
        return self.env._hook("qwen3c_slice", [node.node, *parts], node.lineno)


@functools.lru_cache(maxsize=1)
def environment() -> SandboxEnvironment:
    return SandboxEnvironment()


def render_bounded(template: jinja2.Template, variables: dict, limits: TemplateLimits,
                   n_ctx=None) -> str:
    """Render `template` (compiled by environment()) within `limits`. Raises
    ChatTemplateError for a bound exceeded and for every other failure of the template."""
    budget = _Budget(limits, n_ctx)
    token = _BUDGET.set(budget)
    out, size = [], 0
    try:
        for piece in template.generate(**variables):
            size += len(piece)
            budget.chars(size, "renders a text")
            budget.tick()
            out.append(piece)
    except ChatTemplateError:
        raise
    except TemplateRaised as e:
        raise ChatTemplateError(f"the chat template rejected the conversation: {e}") from None
    except jinja2.exceptions.SecurityError as e:
        raise ChatTemplateError(f"the chat template tried an unsafe operation: {e}") from None
    except jinja2.exceptions.UndefinedError as e:
        raise ChatTemplateError(f"the chat template uses an undefined value: {e}") from None
    except OverflowError as e:
        raise ChatTemplateError(f"the chat template made a number or range too big: {e}",
                                bound="max_items") from None
    except RecursionError:
        raise ChatTemplateError("the chat template recurses too deeply",
                                bound="recursion") from None
    except MemoryError:
        raise ChatTemplateError("the chat template ran out of memory", bound="memory") from None
    except Exception as e:  # TypeError, ZeroDivisionError, TemplateError, ...: the template failed
        raise ChatTemplateError(f"the chat template failed: {type(e).__name__}: {e}") from None
    finally:
        _BUDGET.reset(token)
    return "".join(out)


