"""The `qwen3c` command end to end, in a subprocess, on the tiny random Qwen3 (real tokenizer):
one-shot, interactive through a pipe and through a pseudo-terminal, errors, offline hub."""
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import qwen3c
from qwen3c.chat import Chat
from qwen3c.model import Model

PKG_PARENT = str(Path(qwen3c.__file__).resolve().parent.parent)
GREEDY = ["--temperature", "0", "--threads", "1", "--ctx", "256"]


def run(args, stdin=None, env=None, timeout=120):
    e = dict(os.environ, PYTHONPATH=PKG_PARENT)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "qwen3c", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=e)


def expected_answers(gguf, questions, **kw):
    """What the library answers, for comparison with the CLI's stdout."""
    with Model(gguf, n_ctx=256, n_threads=1) as m:
        chat = Chat(m, temperature=0.0, **kw)
        return [chat.send(q) for q in questions]


def test_one_shot_answer_on_stdout(tiny_chat_gguf):
    r = run(["--model", str(tiny_chat_gguf), "--prompt", "Hi there", "--max-tokens", "6",
             "--thinking", "off", *GREEDY])
    assert r.returncode == 0, r.stderr
    (want,) = expected_answers(tiny_chat_gguf, ["Hi there"], thinking=False, max_tokens=6)
    assert r.stdout == want + "\n"
    assert "Traceback" not in r.stderr


def test_one_shot_verbose_stats_on_stderr(tiny_chat_gguf):
    r = run(["--model", str(tiny_chat_gguf), "--prompt", "Hi", "--max-tokens", "4",
             "--verbose", "--system", "Be brief.", *GREEDY])
    assert r.returncode == 0, r.stderr
    assert "prompt" in r.stderr and "tok/s" in r.stderr and "first token after" in r.stderr
    assert "finish length" in r.stderr
    (want,) = expected_answers(tiny_chat_gguf, ["Hi"], system="Be brief.", max_tokens=4)
    assert r.stdout == want + "\n"


def test_show_probs(tiny_chat_gguf):
    r = run(["--model", str(tiny_chat_gguf), "--prompt", "Hi", "--max-tokens", "5",
             "--show-probs", "3", *GREEDY])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 5
    for i, line in enumerate(lines):
        assert line.split()[0] == str(i)
        assert line.count("%") == 4          # the chosen token + 3 runners-up


def test_interactive_through_a_pipe(tiny_chat_gguf):
    r = run(["--model", str(tiny_chat_gguf), "--max-tokens", "5", "--thinking", "off", *GREEDY],
            stdin="first\nsecond\n\nnot read\n")
    assert r.returncode == 0, r.stderr
    want = expected_answers(tiny_chat_gguf, ["first", "second"], thinking=False, max_tokens=5)
    assert r.stdout == "".join(a + "\n" for a in want)


def test_interactive_commands(tiny_chat_gguf):
    r = run(["--model", str(tiny_chat_gguf), "--max-tokens", "3", *GREEDY],
            stdin="/no_think\n/reset\nq\n")
    assert r.returncode == 0, r.stderr
    assert "[thinking off]" in r.stderr and "[new conversation]" in r.stderr
    (want,) = expected_answers(tiny_chat_gguf, ["q"], thinking=False, max_tokens=3)
    assert r.stdout == want + "\n"


def _read_until(fd, needle: bytes, timeout=60.0) -> bytes:
    buf = b""
    end = time.time() + timeout
    while needle not in buf:
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {needle!r}; got {buf!r}")
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_interactive_in_a_terminal(tiny_chat_gguf):
    env = dict(os.environ, PYTHONPATH=PKG_PARENT, TERM="dumb")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on the pty
        os.execve(sys.executable, [sys.executable, "-m", "qwen3c", "--model", str(tiny_chat_gguf),
                                   "--max-tokens", "4", *GREEDY], env)
    try:
        out = _read_until(fd, b"> ")
        assert b"Ctrl-D" in out                    # the banner, only on a terminal
        os.write(fd, b"hello\r")
        out = _read_until(fd, b"> ")
        assert b"hello" in out                     # echoed by the terminal
        os.write(fd, b"\x04")                      # Ctrl-D
        _read_until(fd, b"", timeout=5)
    finally:
        deadline = time.time() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.time() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise AssertionError("the CLI did not exit on Ctrl-D")
            time.sleep(0.1)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_thinking_is_marked_when_not_a_terminal():
    import io

    from qwen3c import __main__ as cli
    from qwen3c.chat import Piece
    out = io.StringIO()
    p = cli._Printer(out)
    for piece in [Piece("hmm", "thinking"), Piece(" ok", "thinking"), Piece("Yes.", "answer")]:
        p.write(piece)
    p.finish()
    assert out.getvalue() == "<think>\nhmm ok\n</think>\nYes.\n"


# ---- errors: one line, exit status 1 / 2 ------------------------------------------------------

def _one_line_error(r, code):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 or code == 2, r.stderr
    return r.stderr


def test_missing_file(tmp_path):
    err = _one_line_error(run(["--model", str(tmp_path / "nope.gguf"), "--prompt", "x"]), 1)
    assert "nope.gguf" in err


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTGGUF" + bytes(100))
    err = _one_line_error(run(["--model", str(bad), "--prompt", "x"]), 1)
    assert err.startswith("qwen3c: error:")


@pytest.mark.parametrize("args", [["--top-k", "many"], ["--bogus"],
                                  ["--ctx", "0"],
                                  ["--activations", "q4"], ["--kv-cache", "f8"]])
def test_bad_command_line(args, tiny_chat_gguf):
    _one_line_error(run(["--model", str(tiny_chat_gguf), *args]), 2)


@pytest.mark.parametrize("sub, args", [
    ("next", ["--tokens", "1", "--activations", "q4"]),
    ("diff", ["--hf", "x", "--tokens", "1", "--kv-cache", "f8"])])
def test_subcommand_bad_numerics_choice(sub, args, tmp_path):
    """next / diff take --activations / --kv-cache; a bad choice is argparse's usage and one
    error line, exit status 2, before any file is opened."""
    err = _one_line_error(run([sub, "--model", str(tmp_path / "x.gguf"), *args]), 2)
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1]
    assert errors[0].startswith(f"qwen3c {sub}: error: argument --")
    assert "invalid choice" in errors[0]


# ---- the exit-status rule (docs/cli.md, "Exit status"): one test per row ------------------------

def _usage_error(r, option):
    """Exit status 2 with argparse's usage line and one error line naming the option."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and option in errors[0], r.stderr
    return errors[0]


@pytest.mark.parametrize("args,option", [
    (["--temperature", "-1"], "--temperature"),
    (["--temperature", "nan"], "--temperature"),
    (["--top-k", "-5"], "--top-k"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "2"], "--top-p"),
    (["--min-p", "1.5"], "--min-p"),
    (["--presence-penalty", "inf"], "--presence-penalty"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**64)], "--seed"),
    (["--max-tokens", "0"], "--max-tokens"),
    (["--ctx", "8"], "--ctx"),
    (["--ctx", str(2**23)], "--ctx"),
    (["--threads", "-1"], "--threads"),
    (["--threads", "10000"], "--threads"),
    (["--show-probs", "-1"], "--show-probs"),
    (["--thinking", "maybe"], "--thinking"),
    (["--prompt", "  "], "--prompt is empty"),
])
def test_out_of_range_values_are_usage_errors(args, option, tmp_path):
    """2: a bad option value, refused before any file is opened (the model does not exist)."""
    err = _usage_error(run(["--model", str(tmp_path / "none.gguf"), "--prompt", "x", *args]),
                       option)
    assert err.startswith("qwen3c: error:")


def test_cli_ranges_are_the_samplers(tmp_path):
    """The command line's sampling ranges are qwen3c.Sampler's (and the C sampler's)."""
    from qwen3c import Sampler
    from qwen3c.__main__ import build_parser
    parser = build_parser()
    for option, key, values in [("--temperature", "temperature", ["0", "-0.001", "5"]),
                                ("--top-k", "top_k", ["0", "-1", "40"]),
                                ("--top-p", "top_p", ["0", "1e-9", "1", "1.0001"]),
                                ("--min-p", "min_p", ["0", "1", "-0.1", "1.1"]),
                                ("--seed", "seed", ["0", "-1", str(2**64 - 1), str(2**64)])]:
        for v in values:
            try:
                parser.parse_args([option, v])
                cli_ok = True
            except SystemExit:
                cli_ok = False
            try:
                Sampler(**{key: int(v) if key in ("top_k", "seed") else float(v)})
                lib_ok = True
            except ValueError:
                lib_ok = False
            assert cli_ok == lib_ok, (option, v)


@pytest.mark.parametrize("sub,args,option", [
    ("next", ["--model", "x.gguf", "--tokens", "1,x"], "--tokens"),
    ("next", ["--model", "x.gguf", "--tokens", "1", "-k", "0"], "-k"),
    ("next", ["--model", "x.gguf"], "give either a prompt or --tokens"),
    ("next", ["--model", "x.gguf", "--tokens", "1", "--threads", "5000"], "--threads"),
    ("diff", ["--model", "x.gguf", "--hf", "x", "--tokens", "1", "--tol", "-1"], "--tol"),
    ("convert", ["a", "b", "--type", "q4_k"], "--type"),
    ("convert", ["only-one"], "out"),
])
def test_subcommand_usage_errors(sub, args, option):
    err = _usage_error(run([sub, *args]), option)
    assert err.startswith(f"qwen3c {sub}: error:")


def test_unknown_option_is_a_usage_error():
    _usage_error(run(["--bogus"]), "--bogus")


@pytest.mark.parametrize("sub,args,needle", [
    ("next", ["--model", "{missing}", "--tokens", "1"], "no such model file"),
    ("diff", ["--model", "{missing}", "--hf", "{tmp}", "--tokens", "1"], "no such model file"),
    ("convert", ["{tmp}/nodir", "{tmp}/out.gguf"], "not a directory"),
])
def test_subcommand_runtime_failures_exit_1(sub, args, needle, tmp_path):
    args = [a.format(missing=tmp_path / "missing.gguf", tmp=tmp_path) for a in args]
    err = _one_line_error(run([sub, *args]), 1)
    assert err.startswith(f"qwen3c {sub}: error:") and needle in err


def test_interrupted_answer_exits_130(tiny_chat_gguf):
    """130: Ctrl-C (SIGINT) during a one-shot answer."""
    import signal
    e = dict(os.environ, PYTHONPATH=PKG_PARENT)
    # SIGINT at its default in the child: a test run started in the background of a
    # non-interactive shell (`bash .ci/run &`) inherits it ignored, and Python then never
    # turns it into KeyboardInterrupt
    p = subprocess.Popen([sys.executable, "-m", "qwen3c", "--model", str(tiny_chat_gguf),
                          "--prompt", "Hi", "--thinking", "off", "--max-tokens", "3500",
                          "--temperature", "0", "--threads", "1", "--ctx", "4096"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stdout.read(1)          # the answer is streaming
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert b"Traceback" not in err


def test_version(capsys):
    r = run(["--version"])
    assert r.returncode == 0 and r.stdout == f"qwen3c {qwen3c.__version__}\n"
    import re
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", qwen3c.__version__)


def test_help_names_both_architectures():
    r = run(["--help"])
    assert r.returncode == 0
    assert "llama" in r.stdout and "Qwen3" in r.stdout and "Exit status" in r.stdout
    assert "Chat with a Qwen3 GGUF model" not in r.stdout


def test_pluralization():
    from qwen3c.__main__ import _stats_line
    from qwen3c.util import plural
    assert plural(1, "token") == "1 token" and plural(0, "token") == "0 tokens"
    assert plural(2, "token") == "2 tokens"

    class G:
        def stats(self):
            return dict(n_prompt_tokens=1, n_cached=0, n_prefilled=1, prefill_tok_s=None,
                        n_generated=1, decode_tok_s=None, time_to_first_token=None,
                        finish_reason="stop")
    assert _stats_line(G()).startswith("[prompt 1 token (0 cached, 1 prefilled)")


def test_context_overflow_one_line(tiny_chat_gguf):
    err = _one_line_error(run(["--model", str(tiny_chat_gguf), "--ctx", "16", "--prompt",
                               "a long question " * 10]), 1)
    assert "16" in err


def test_default_model_offline_is_a_clear_error(tmp_path):
    r = run(["--prompt", "hi"], env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                                     "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")})
    err = _one_line_error(r, 1)
    assert "Qwen3-0.6B-Q8_0.gguf" in err and "HF_HUB_OFFLINE" in err
    assert "--model FILE" in err and "SmolLM2" in err


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: connections are refused


@pytest.fixture
def silent_server():
    """A port that accepts connections (the kernel's backlog) but never answers."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_no_network_fails_fast_with_the_offline_route(tmp_path, kind, request):
    """Without --model and without network: one error line within seconds (not ~24 s of hub
    retries and ten warnings), saying to pass a local file or use the offline SmolLM2 model.
    HF_ENDPOINT points at a local port, so nothing touches the real network."""
    port = _closed_port() if kind == "refused" else request.getfixturevalue("silent_server")
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "0"}
    t0 = time.monotonic()
    r = run(["--prompt", "hi"], env=env)
    took = time.monotonic() - t0
    err = _one_line_error(r, 1)
    assert took < 15, took
    assert f"127.0.0.1:{port}" in err and "cannot be reached" in err
    assert "--model FILE" in err and "SmolLM2" in err
    assert "Retrying" not in r.stderr


def test_python_chat_without_network_fails_fast(tmp_path):
    code = ("import time, qwen3c\n"
            "t0 = time.monotonic()\n"
            "try:\n"
            "    qwen3c.chat()\n"
            "except qwen3c.ModelNotAvailableError as e:\n"
            "    print(round(time.monotonic() - t0, 1), e)\n")
    env = dict(os.environ, PYTHONPATH=PKG_PARENT, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
               HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    took, msg = r.stdout.split(" ", 1)
    assert float(took) < 15
    assert "cannot be reached" in msg and "qwen3c.chat(FILE)" in msg
    assert r.stderr == ""                        # no hub warnings


def test_resolve_model_local_and_bad(tmp_path, tiny_chat_gguf):
    from qwen3c.errors import ModelNotAvailableError
    from qwen3c.hub import resolve_model
    assert resolve_model(tiny_chat_gguf) == str(tiny_chat_gguf)
    with pytest.raises(ModelNotAvailableError, match="no such model file"):
        resolve_model(str(tmp_path / "x.gguf"))
    with pytest.raises(ModelNotAvailableError, match="directory"):
        resolve_model(tmp_path)
    with pytest.raises(TypeError):
        resolve_model(3)


# ---- subcommands are dispatched on the first word ------------------------------------------------

@pytest.mark.parametrize("word,module,fn", [("convert", "qwen3c.convert", "main"),
                                            ("diff", "qwen3c.introspect", "main_diff"),
                                            ("next", "qwen3c.introspect", "main_next"),
                                            ("info", "qwen3c.gguf_info", "main_info"),
                                            ("audit", "qwen3c.audit", "main")])
def test_subcommand_dispatch(monkeypatch, word, module, fn):
    import importlib
    from qwen3c.__main__ import main
    mod = importlib.import_module(module)
    seen = []
    monkeypatch.setattr(mod, fn, lambda argv: seen.append(argv) or 3, raising=False)
    assert main([word, "a", "--b"]) == 3
    assert seen == [["a", "--b"]]
