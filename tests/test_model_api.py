"""qwen3c.Model's Python surface: argument checks, lifetime, and what it reports."""
from __future__ import annotations

import numpy as np
import pytest

import qwen3c


@pytest.fixture
def m(tiny_gguf):
    with qwen3c.Model(tiny_gguf, n_ctx=32, n_threads=1) as model:
        yield model


@pytest.mark.parametrize("tokens,exc", [
    ([1.5], TypeError),          # never truncated to 1
    ([True, False], TypeError),
    (["a"], TypeError),
    ("abc", TypeError),
    ([[1, 2]], ValueError),
    ([], ValueError),
    ([2**40], ValueError),
])
def test_forward_rejects_non_token_input(m, tokens, exc):
    with pytest.raises(exc):
        m.forward(tokens)
    assert m.n_tokens_forwarded == 0


def test_forward_accepts_any_integer_array(m):
    a = m.forward([1, 2, 3])
    b = m.forward(np.array([1, 2, 3], dtype=np.int16))
    c = m.forward([np.int64(1), np.int32(2), 3])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (m.config.vocab_size,)


@pytest.mark.parametrize("kw,exc", [
    (dict(n_ctx=-1), ValueError), (dict(n_ctx=2.5), TypeError),
    (dict(n_threads="2"), TypeError), (dict(n_batch=-3), ValueError),
])
def test_model_argument_checks(tiny_gguf, kw, exc):
    with pytest.raises(exc):
        qwen3c.Model(tiny_gguf, **kw)


def test_config_and_metadata(m):
    c = m.config
    assert (c.arch, c.n_layers, c.dim, c.hidden_dim, c.n_heads, c.n_kv_heads, c.head_dim,
            c.vocab_size, c.n_ctx) == ("qwen3", 2, 64, 128, 4, 2, 32, 256, 32)
    assert c.rope_theta == pytest.approx(1e6) and c.norm_eps == pytest.approx(1e-6)
    assert m.metadata["general.architecture"] == "qwen3"
    names = {t[0] for t in m.tensors}
    assert "token_embd.weight" in names and "output.weight" not in names  # tied


def test_close_is_idempotent_and_use_after_close_raises(tiny_gguf):
    model = qwen3c.Model(tiny_gguf, n_ctx=8)
    model.close()
    model.close()
    assert model.closed and "closed" in repr(model)
    with pytest.raises(qwen3c.Qwen3cError, match="closed"):
        model.forward([1])


def test_n_ctx_zero_means_model_context_capped(tiny_gguf):
    with qwen3c.Model(tiny_gguf, n_ctx=0) as model:
        assert model.config.n_ctx == 512  # the file's context_length (below the 4096 cap)


def test_c_status_codes_raise_qwen3c_errors(tmp_path):
    """What the C library refuses comes back as a Qwen3cError subclass that is also the matching
    builtin (ValueError / OSError / MemoryError), so both kinds of except clause catch it."""
    from qwen3c import _native

    with pytest.raises(qwen3c.InvalidArgumentError, match="need 64 bytes") as e:
        _native.dequantize("F32", b"\0" * 8, 16)  # 16 floats from 8 bytes
    assert isinstance(e.value, ValueError) and isinstance(e.value, qwen3c.Qwen3cError)
    with pytest.raises(qwen3c.ModelIOError, match="not a regular file") as e:
        _native.model_load(str(tmp_path))  # a directory
    assert isinstance(e.value, OSError) and isinstance(e.value, qwen3c.Qwen3cError)
    assert issubclass(qwen3c.OutOfMemoryError, MemoryError)
    assert issubclass(qwen3c.OutOfMemoryError, qwen3c.Qwen3cError)


# ---- the error tree ------------------------------------------------------------------------------

def test_missing_file_is_a_model_io_error_and_a_file_not_found_error(tmp_path):
    import errno
    p = tmp_path / "nope.gguf"
    with pytest.raises(qwen3c.ModelFileNotFoundError) as e:
        qwen3c.Model(p)
    err = e.value
    assert isinstance(err, qwen3c.ModelIOError) and isinstance(err, qwen3c.Qwen3cError)
    assert isinstance(err, FileNotFoundError) and isinstance(err, OSError)
    assert str(err) == f"cannot open '{p}': No such file or directory"  # once, no "[Errno 2]"
    assert err.errno == errno.ENOENT and err.filename == str(p)


def test_unicode_errors_point_into_the_users_text(tiny_chat_gguf):
    with qwen3c.Model(tiny_chat_gguf, n_ctx=64, n_threads=1) as model:
        with pytest.raises(ValueError, match=r"^the prompt is not valid Unicode: lone surrogate "
                                             r"'\\udc80' at index 3$"):
            model.top_k("abc\udc80def", k=2)
        with pytest.raises(ValueError, match="^text is not valid Unicode: lone surrogate "
                                             r"'\\ud800' at index 1$"):
            model.encode("a\ud800")
        chat = qwen3c.Chat(model)
        with pytest.raises(ValueError, match=r"^the message is not valid Unicode: lone surrogate "
                                             r"'\\udfff' at index 5$"):
            chat.send("hello\udfff")
        assert chat.history == []
        with pytest.raises(ValueError, match=r"^the system prompt is not valid Unicode: lone "
                                             r"surrogate '\\ud83d' at index 0$"):
            qwen3c.Chat(model, system="\ud83d!")
        with pytest.raises(ValueError, match=r"^messages\[1\]\['content'\] is not valid Unicode: "
                                             r"lone surrogate '\\udc00' at index 2$"):
            model.apply_chat_template([{"role": "user", "content": "ok"},
                                       {"role": "assistant", "content": "no\udc00"}])


# ---- after close() -------------------------------------------------------------------------------

STILL_THERE = {"path", "closed", "close"}   # like a closed file's name and .closed
CALLS = {"forward": ([1],), "forward_trace": ([1],), "encode": ("hi",), "decode": ([1],),
         "token_to_bytes": (1,), "stream_decoder": (), "generate": ("hi",), "top_k": ("hi",),
         "apply_chat_template": ([{"role": "user", "content": "hi"}],), "session": (),
         "forward_batch": ([],), "attention": ([1],), "forward_attention": ([1],),
         "lm_head": (np.zeros(64, dtype=np.float32),), "rewind_point": (0,), "checkpoint": ()}
PROPERTIES = {"config", "activations", "kv_cache", "packed_bytes", "n_tokens_forwarded",
              "metadata", "tensors", "chat_template", "tokenizer", "special_tokens",
              "default_session", "n_past", "checkpoints", "cpu_tier"}


def test_everything_but_path_raises_after_close(tiny_chat_gguf):
    model = qwen3c.Model(tiny_chat_gguf, n_ctx=16, n_threads=1)
    # fill every cache first: a cached answer must not outlive the model either
    model.metadata, model.special_tokens, model.decode(model.encode("hi")), model.config
    tok = model.tokenizer
    model.close()
    public = {n for n in (*dir(qwen3c.Model), *vars(model)) if not n.startswith("_")}
    assert public == STILL_THERE | set(CALLS) | PROPERTIES, "a new attribute: add it here"
    for name in sorted(PROPERTIES):
        with pytest.raises(qwen3c.Qwen3cError, match="the model is closed"):
            getattr(model, name)
    for name, args in sorted(CALLS.items()):
        with pytest.raises(qwen3c.Qwen3cError, match="the model is closed"):
            getattr(model, name)(*args)
    with pytest.raises(qwen3c.Qwen3cError, match="the model is closed"):
        tok.decode([1])                      # a tokenizer kept from before
    with pytest.raises(qwen3c.Qwen3cError, match="the model is closed"):
        with model:
            pass
    assert model.closed and model.path == str(tiny_chat_gguf)
    assert repr(model) == f"<qwen3c.Model {tiny_chat_gguf.name!r} closed>"
    model.close()
