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


@pytest.mark.parametrize("args", [["--thinking", "maybe"], ["--top-k", "many"], ["--bogus"],
                                  ["--ctx", "0"], ["--max-tokens", "0"],
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


def test_bad_sampling_value(tiny_chat_gguf):
    err = _one_line_error(run(["--model", str(tiny_chat_gguf), "--prompt", "x",
                               "--temperature", "-1"]), 1)
    assert "temperature" in err


def test_context_overflow_one_line(tiny_chat_gguf):
    err = _one_line_error(run(["--model", str(tiny_chat_gguf), "--ctx", "16", "--prompt",
                               "a long question " * 10]), 1)
    assert "16" in err


def test_default_model_offline_is_a_clear_error(tmp_path):
    r = run(["--prompt", "hi"], env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                                     "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")})
    err = _one_line_error(r, 1)
    assert "Qwen3-0.6B-Q8_0.gguf" in err and "HF_HUB_OFFLINE" in err


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
