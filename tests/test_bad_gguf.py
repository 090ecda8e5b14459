"""Bad input: malformed GGUF files, unsupported models and bad forward() arguments.

One test per case. Every file here is a valid tiny Qwen3 GGUF (tests/ggufbuild.py) with
exactly one thing wrong. Loading must raise the documented exception whose message names the
problem, never crash; `qwen3c info` must agree (exit 1 with the same message for a malformed
file: it reads with the same C reader); the loader tests are marked `sanitize` and rerun under
ASan + UBSan.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import qwen3c
from qwen3c import gguf_info

sys.path.insert(0, os.path.dirname(__file__))
import ggufbuild as gb  # noqa: E402

HUGE = 1 << 40  # far past the end of any test file, still a plausible-looking number


# ---- helpers --------------------------------------------------------------------------------
def load(path, **kw):
    m = qwen3c.Model(str(path), n_ctx=kw.pop("n_ctx", 32), n_threads=kw.pop("n_threads", 1), **kw)
    m.close()


def expect(exc, path, *patterns):
    """Loading `path` raises `exc` whose message matches every regex in `patterns`, and
    `qwen3c info` agrees (info_agrees)."""
    with pytest.raises(exc) as info:
        load(path)
    msg = str(info.value)
    for p in patterns:
        assert re.search(p, msg, re.IGNORECASE | re.DOTALL), f"message {msg!r} lacks /{p}/"
    info_agrees(path, info.value)
    return msg


def info_agrees(path, load_error=None):
    """`qwen3c info` reads with the loader's C reader: a file that loads is safe_to_load; one
    that loading rejects as malformed (or cannot open) makes info exit 1 with the same message
    on stderr; a valid file qwen3c does not run is described, safe_to_load false, same reason."""
    if isinstance(load_error, qwen3c.UnsupportedModelError) or load_error is None:
        doc = gguf_info.model_info(path)
        assert doc["safe_to_load"] is (load_error is None), doc["safe_to_load_reasons"]
        if load_error is not None:
            assert str(load_error) in doc["why"]
        return
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = gguf_info.main_info([str(path)])
    assert rc == 1 and out.getvalue() == "", (rc, out.getvalue()[:200])
    want = load_error.strerror if isinstance(load_error, OSError) and load_error.strerror \
        else str(load_error)
    assert err.getvalue() == f"qwen3c info: error: {want}\n", (err.getvalue(), want)


def expect_format(path, *patterns):
    return expect(qwen3c.ModelFormatError, path, *patterns)


def write_bytes(tmp_path, data: bytes, name="bad.gguf"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def patch(data: bytes, offset: int, fmt: str, value) -> bytes:
    """data with struct `fmt` packed at `offset` (value wraps for unsigned formats)."""
    if fmt in ("<Q", "<I"):
        value &= (1 << (8 * struct.calcsize(fmt))) - 1
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def build(tmp_path, b: gb.GGUFBuilder, name="bad.gguf"):
    p = tmp_path / name
    b.write(p)
    return p


@pytest.fixture
def tiny():
    """A fresh builder of a valid tiny 1-layer Qwen3 model, to be corrupted by the test."""
    return gb.tiny_qwen3()


@pytest.fixture
def tiny_bytes(tiny):
    return tiny.build()


sanitize = pytest.mark.sanitize


# ---- the builder itself -------------------------------------------------------------------
def test_builder_file_is_read_by_gguf_reader(tmp_path):
    gguf = pytest.importorskip("gguf")
    b = gb.tiny_qwen3(n_layers=2)
    p = build(tmp_path, b, "ok.gguf")
    r = gguf.GGUFReader(str(p))
    assert len(r.tensors) == 1 + 11 * 2 + 1
    assert str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8") == "qwen3"
    assert int(r.fields["qwen3.block_count"].parts[-1][0]) == 2
    t = next(t for t in r.tensors if t.name == "blk.1.ffn_down.weight")
    assert list(t.shape) == [64, 32]
    np.testing.assert_array_equal(
        t.data, np.frombuffer(b.tensor("blk.1.ffn_down.weight").data, np.float32).reshape(32, 64))


# ---- valid controls -------------------------------------------------------------------------
@sanitize
def test_valid_tiny_file_loads(tmp_path):
    p = build(tmp_path, gb.tiny_qwen3(n_layers=2), "ok.gguf")
    info_agrees(p)
    with qwen3c.Model(str(p), n_ctx=16, n_threads=1) as m:
        c = m.config
        assert (c.arch, c.n_layers, c.dim, c.hidden_dim) == ("qwen3", 2, 32, 64)
        assert (c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size) == (2, 1, 16, 64)
        logits = m.forward([1, 2, 3])
        assert logits.shape == (64,) and logits.dtype == np.float32
        assert np.isfinite(logits).all()


@sanitize
def test_valid_file_without_alignment_key_loads(tmp_path):
    p = build(tmp_path, gb.tiny_qwen3(alignment_kv=False))
    load(p)
    info_agrees(p)


@sanitize
def test_valid_file_with_alignment_64_loads(tmp_path):
    b = gb.tiny_qwen3()
    b.alignment = 64
    b.kv("general.alignment").value = 64
    p = build(tmp_path, b)
    load(p)
    info_agrees(p)


# ---- header ---------------------------------------------------------------------------------
@sanitize
def test_empty_file(tmp_path):
    expect_format(write_bytes(tmp_path, b""), r"empty|too (small|short)|truncated")


@sanitize
def test_short_file(tmp_path, tiny_bytes):
    data, _ = tiny_bytes
    expect_format(write_bytes(tmp_path, data[:12]), r"too (small|short)|truncated|end of file|header")


@sanitize
def test_bad_magic(tmp_path, tiny_bytes):
    data, _ = tiny_bytes
    expect_format(write_bytes(tmp_path, b"GGML" + data[4:]), r"magic|not a GGUF")


@sanitize
@pytest.mark.parametrize("version", [1, 2, 4])
def test_unsupported_version(tmp_path, tiny_bytes, version):
    data, lay = tiny_bytes
    p = write_bytes(tmp_path, patch(data, lay.version, "<I", version))
    expect_format(p, r"version", rf"\b{version}\b")


@sanitize
@pytest.mark.parametrize("count", [HUGE, (1 << 64) - 1])
def test_absurd_tensor_count(tmp_path, tiny_bytes, count):
    data, lay = tiny_bytes
    p = write_bytes(tmp_path, patch(data, lay.n_tensors, "<Q", count))
    expect_format(p, r"tensor", r"count|too many|exceed|number")


@sanitize
@pytest.mark.parametrize("count", [HUGE, (1 << 64) - 1])
def test_absurd_kv_count(tmp_path, tiny_bytes, count):
    data, lay = tiny_bytes
    p = write_bytes(tmp_path, patch(data, lay.n_kv, "<Q", count))
    expect_format(p, r"kv|key|metadata", r"count|too many|exceed|number")


# ---- metadata key/values --------------------------------------------------------------------
PAST_END = r"past|beyond|end of (the )?file|eof|truncat|bounds|exceed|too (long|large|big)"


@sanitize
@pytest.mark.parametrize("length", [HUGE, (1 << 64) - 1])
def test_key_string_length_past_eof(tmp_path, tiny_bytes, length):
    data, lay = tiny_bytes
    p = write_bytes(tmp_path, patch(data, lay.kv["general.name"]["key_len"], "<Q", length))
    expect_format(p, PAST_END)


@sanitize
@pytest.mark.parametrize("length", [HUGE, (1 << 64) - 1])
def test_value_string_length_past_eof(tmp_path, tiny_bytes, length):
    data, lay = tiny_bytes
    p = write_bytes(tmp_path, patch(data, lay.kv["general.name"]["value"], "<Q", length))
    expect_format(p, PAST_END, r"general\.name")


@sanitize
@pytest.mark.parametrize("n", [HUGE, (1 << 62) + 1])  # the second overflows n * 4 in 64 bits
def test_array_length_past_eof(tmp_path, tiny, n):
    kv = tiny.add_kv("test.array", gb.ARRAY, [1, 2, 3], elem_type=gb.UINT32)
    kv.raw = struct.pack("<IQ", gb.UINT32, n) + struct.pack("<3I", 1, 2, 3)
    expect_format(build(tmp_path, tiny), PAST_END, r"test\.array")


@sanitize
def test_string_array_element_past_eof(tmp_path, tiny):
    kv = tiny.add_kv("test.strings", gb.ARRAY, ["a", "b"], elem_type=gb.STRING)
    kv.raw = struct.pack("<IQ", gb.STRING, 2) + struct.pack("<Q", 1) + b"a" + struct.pack("<Q", HUGE)
    expect_format(build(tmp_path, tiny), PAST_END, r"test\.strings")


@sanitize
@pytest.mark.parametrize("vtype", [13, 255, (1 << 32) - 1])
def test_unknown_value_type(tmp_path, tiny, vtype):
    tiny.add_kv("test.weird", vtype, raw=struct.pack("<I", 7))
    expect_format(build(tmp_path, tiny), r"type", r"test\.weird")


@sanitize
def test_unknown_array_element_type(tmp_path, tiny):
    tiny.add_kv("test.weird", gb.ARRAY, raw=struct.pack("<IQ", 13, 1) + struct.pack("<I", 7))
    expect_format(build(tmp_path, tiny), r"type", r"test\.weird")


@sanitize
def test_nested_array_is_rejected_or_skipped(tmp_path, tiny):
    # an array of arrays: either parse it or reject it cleanly -- never misread it
    inner = struct.pack("<IQ", gb.UINT8, 2) + b"\x01\x02"
    tiny.add_kv("test.nested", gb.ARRAY, raw=struct.pack("<IQ", gb.ARRAY, 2) + inner + inner)
    p = build(tmp_path, tiny)
    try:
        load(p)
    except qwen3c.ModelFormatError as e:
        assert re.search(r"test\.nested", str(e)), str(e)
        info_agrees(p, e)
    else:
        info_agrees(p)


@sanitize
def test_duplicate_key(tmp_path, tiny):
    tiny.add_kv("qwen3.block_count", gb.UINT32, 1)
    expect_format(build(tmp_path, tiny), r"duplicate", r"qwen3\.block_count")


@sanitize
@pytest.mark.parametrize("key,vtype,value", [
    ("qwen3.block_count", gb.STRING, "1"),
    ("qwen3.embedding_length", gb.FLOAT32, 32.0),
    ("qwen3.rope.freq_base", gb.STRING, "1000000"),
    ("qwen3.attention.layer_norm_rms_epsilon", gb.BOOL, True),
    ("general.architecture", gb.UINT32, 3),
])
def test_wrong_type_metadata_value(tmp_path, tiny, key, vtype, value):
    kv = tiny.kv(key)
    kv.vtype, kv.value = vtype, value
    expect_format(build(tmp_path, tiny), re.escape(key), r"type|expected|must be")


@sanitize
@pytest.mark.parametrize("key,value", [
    ("qwen3.block_count", -1),
    ("qwen3.attention.head_count", 0),
    ("qwen3.attention.head_count_kv", 0),
])
def test_negative_or_zero_metadata_value(tmp_path, tiny, key, value):
    kv = tiny.kv(key)
    kv.vtype, kv.value = gb.INT32, value
    expect_format(build(tmp_path, tiny), re.escape(key))


# Keys the loader may default instead of rejecting: key -> (config field, expected default).
# Empty = every key below is required (what the issue asks for: a Qwen3 file without
# rope.freq_base would otherwise silently run with the wrong RoPE).
DEFAULTED_KEYS: dict = {
    # "qwen3.attention.head_count_kv": ("n_kv_heads", 2),      # = head_count
    # "qwen3.attention.key_length": ("head_dim", 16),          # = embedding_length / head_count
    # "qwen3.rope.freq_base": ("rope_theta", 10000.0),
}


@sanitize
@pytest.mark.parametrize("key", [
    "qwen3.block_count", "qwen3.context_length", "qwen3.embedding_length",
    "qwen3.feed_forward_length", "qwen3.attention.head_count", "qwen3.attention.head_count_kv",
    "qwen3.attention.key_length", "qwen3.rope.freq_base",
    "qwen3.attention.layer_norm_rms_epsilon", "general.architecture",
])
def test_missing_required_key(tmp_path, tiny, key):
    tiny.remove_kv(key)
    if key in DEFAULTED_KEYS:
        # a key the loader fills in (as llama.cpp does): the default must be the documented one,
        # or -- where the default contradicts the tensors -- an error naming a tensor or key
        field, default = DEFAULTED_KEYS[key]
        p = build(tmp_path, tiny)
        try:
            with qwen3c.Model(str(p), n_ctx=8, n_threads=1) as m:
                assert getattr(m.config, field) == pytest.approx(default)
        except qwen3c.ModelFormatError as e:
            assert re.search(r"blk\.0\.|" + re.escape(key), str(e)), str(e)
        return
    expect_format(build(tmp_path, tiny), r"missing|not found|required", re.escape(key))


# ---- general.alignment ----------------------------------------------------------------------
@sanitize
def test_alignment_zero(tmp_path, tiny):
    tiny.kv("general.alignment").value = 0
    expect_format(build(tmp_path, tiny), r"general\.alignment|alignment")


@sanitize
@pytest.mark.parametrize("alignment", [3, 48, (1 << 31) + 1])
def test_alignment_not_power_of_two(tmp_path, tiny, alignment):
    tiny.kv("general.alignment").value = alignment
    expect_format(build(tmp_path, tiny), r"alignment", r"power of (two|2)|pow")


@sanitize
@pytest.mark.parametrize("vtype,value", [(gb.STRING, "32"), (gb.FLOAT32, 32.0)])
def test_alignment_wrong_type(tmp_path, tiny, vtype, value):
    kv = tiny.kv("general.alignment")
    kv.vtype, kv.value = vtype, value
    expect_format(build(tmp_path, tiny), r"alignment", r"type|uint32|expected|must be")


# ---- tensor infos ---------------------------------------------------------------------------
@sanitize
@pytest.mark.parametrize("ttype", [99, 1 << 31, (1 << 32) - 1])
def test_unknown_tensor_type(tmp_path, tiny, ttype):
    tiny.tensor("blk.0.attn_q.weight").ttype = ttype
    expect_format(build(tmp_path, tiny), r"type", r"blk\.0\.attn_q\.weight")


@sanitize
@pytest.mark.parametrize("n_dims", [5, 1 << 31])
def test_too_many_dims(tmp_path, tiny, n_dims):
    t = tiny.tensor("blk.0.attn_q.weight")
    t.dims = t.dims + [1, 1, 1]
    t.n_dims = n_dims
    expect_format(build(tmp_path, tiny), r"dim", r"blk\.0\.attn_q\.weight")


@sanitize
def test_zero_dim(tmp_path, tiny):
    t = tiny.tensor("blk.0.attn_q.weight")
    t.dims, t.data = [32, 0], b""
    expect_format(build(tmp_path, tiny), r"blk\.0\.attn_q\.weight")


@sanitize
def test_negative_dim(tmp_path, tiny):
    tiny.tensor("blk.0.attn_q.weight").dims = [32, -1]
    expect_format(build(tmp_path, tiny), r"blk\.0\.attn_q\.weight", r"dim|shape|negative|ne\[")


@sanitize
@pytest.mark.parametrize("dims", [[1 << 32, 1 << 32], [1 << 21, 1 << 21, 1 << 21], [(1 << 63) - 1, 3]])
def test_overflowing_shape(tmp_path, tiny, dims):
    tiny.tensor("blk.0.attn_q.weight").dims = dims
    expect_format(build(tmp_path, tiny), r"blk\.0\.attn_q\.weight", r"overflow|too (large|big)|shape|size")


@sanitize
def test_byte_size_overflow(tmp_path, tiny):
    # 2^62 elements fit in int64, but 2^62 * 4 bytes of F32 do not fit in 64 bits
    tiny.tensor("blk.0.attn_q.weight").dims = [1 << 31, 1 << 31]
    expect_format(build(tmp_path, tiny), r"blk\.0\.attn_q\.weight", r"overflow|too (large|big)|size")


@sanitize
def test_row_not_multiple_of_block_size(tmp_path, tiny):
    t = tiny.tensor("blk.0.attn_q.weight")
    t.ttype, t.dims, t.data = gb.Q8_0, [33, 32], bytes(34 * 32)
    expect_format(build(tmp_path, tiny), r"blk\.0\.attn_q\.weight", r"block|multiple")


@sanitize
def test_misaligned_offset(tmp_path, tiny_bytes):
    data, lay = tiny_bytes
    name = "blk.0.attn_k.weight"
    rel = lay.tensor_data[name] - lay.data_start
    p = write_bytes(tmp_path, patch(data, lay.tensor[name]["offset"], "<Q", rel + 4))
    expect_format(p, r"align", re.escape(name))


@sanitize
@pytest.mark.parametrize("offset", [HUGE, (1 << 64) - 32])  # the second overflows offset + size
def test_out_of_bounds_offset(tmp_path, tiny_bytes, offset):
    data, lay = tiny_bytes
    name = "blk.0.attn_k.weight"
    p = write_bytes(tmp_path, patch(data, lay.tensor[name]["offset"], "<Q", offset))
    expect_format(p, re.escape(name), PAST_END + r"|out of range|overflow")


@sanitize
def test_overlapping_tensors(tmp_path, tiny_bytes):
    data, lay = tiny_bytes
    a, b = "blk.0.attn_q.weight", "blk.0.attn_k.weight"
    p = write_bytes(tmp_path, patch(data, lay.tensor[b]["offset"], "<Q",
                                    lay.tensor_data[a] - lay.data_start))
    expect_format(p, r"overlap", r"blk\.0\.attn_(q|k)\.weight")


@sanitize
def test_truncated_data(tmp_path, tiny_bytes):
    data, lay = tiny_bytes
    # cut into the last tensor's data (output_norm.weight, 128 bytes)
    p = write_bytes(tmp_path, data[: lay.tensor_data["output_norm.weight"] + 64])
    expect_format(p, r"output_norm\.weight", PAST_END)


@sanitize
def test_truncated_tensor_infos(tmp_path, tiny_bytes):
    data, lay = tiny_bytes
    p = write_bytes(tmp_path, data[: lay.tensor["blk.0.ffn_up.weight"]["dims"] + 4])
    expect_format(p, PAST_END)


@sanitize
def test_tensor_name_length_past_eof(tmp_path, tiny_bytes):
    data, lay = tiny_bytes
    p = write_bytes(tmp_path, patch(data, lay.tensor["blk.0.ffn_up.weight"]["name_len"], "<Q", HUGE))
    expect_format(p, PAST_END)


@sanitize
def test_duplicate_tensor_name(tmp_path, tiny):
    t = tiny.tensor("blk.0.attn_q.weight")
    tiny.add_tensor(t.name, dims=t.dims, ttype=t.ttype, data=t.data)
    expect_format(build(tmp_path, tiny), r"duplicate", r"blk\.0\.attn_q\.weight")


# ---- model structure ------------------------------------------------------------------------
@sanitize
@pytest.mark.parametrize("name", [
    "token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight",
    "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight",
    "blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight", "blk.0.ffn_norm.weight",
    "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.1.ffn_down.weight",
])
def test_missing_required_tensor(tmp_path, name):
    b = gb.tiny_qwen3(n_layers=2)
    b.remove_tensor(name)
    expect_format(build(tmp_path, b), r"missing|not found|required", re.escape(name))


@sanitize
def test_block_count_larger_than_tensors(tmp_path, tiny):
    tiny.kv("qwen3.block_count").value = 2
    expect_format(build(tmp_path, tiny), r"blk\.1\.")


@sanitize
@pytest.mark.parametrize("name,dims", [
    ("blk.0.attn_q.weight", [32, 48]),       # 3 heads' worth of rows instead of 2
    ("blk.0.attn_k.weight", [16, 16]),       # input dim is not embedding_length
    ("blk.0.ffn_down.weight", [32, 64]),     # transposed
    ("blk.0.attn_q_norm.weight", [32]),      # head_dim is 16
    ("output_norm.weight", [16]),
])
def test_shape_disagrees_with_metadata(tmp_path, tiny, name, dims):
    t = tiny.tensor(name)
    t.dims, t.data = dims, bytes(4 * int(np.prod(dims)))
    expect_format(build(tmp_path, tiny), re.escape(name), r"shape|dim|expected|mismatch")


@sanitize
def test_extra_unit_dim_loads_or_fails_cleanly(tmp_path, tiny):
    # [32, 32, 1] has the right elements: loading must either work or name the tensor
    tiny.tensor("blk.0.attn_output.weight").dims = [32, 32, 1]
    p = build(tmp_path, tiny)
    try:
        load(p)
    except qwen3c.ModelFormatError as e:
        assert "blk.0.attn_output.weight" in str(e), str(e)
        info_agrees(p, e)
    else:
        info_agrees(p)


@sanitize
def test_embedding_length_disagrees_with_tensors(tmp_path, tiny):
    tiny.kv("qwen3.embedding_length").value = 48
    expect_format(build(tmp_path, tiny), r"shape|dim|expected|mismatch")


@sanitize
def test_heads_times_head_dim_disagree(tmp_path, tiny):
    tiny.kv("qwen3.attention.head_count").value = 3
    expect_format(build(tmp_path, tiny), r"attn_q|attn_output|head")


@sanitize
def test_heads_not_multiple_of_kv_heads(tmp_path):
    b = gb.tiny_qwen3(n_heads=3, n_kv_heads=2)
    expect_format(build(tmp_path, b), r"head")


# ---- valid but unsupported ------------------------------------------------------------------
@sanitize
def test_other_architecture_is_unsupported(tmp_path):
    b = gb.tiny_qwen3(arch="gpt2")
    expect(qwen3c.UnsupportedModelError, build(tmp_path, b), r"gpt2", r"architecture|arch")


@sanitize
def test_unsupported_tensor_type_iq4_nl(tmp_path):
    b = gb.tiny_qwen3()
    t = b.tensor("blk.0.ffn_down.weight")
    t.ttype, t.data = gb.IQ4_NL, gb.iq4_nl_bytes(64 * 32)
    expect(qwen3c.UnsupportedModelError, build(tmp_path, b), r"IQ4_NL", r"blk\.0\.ffn_down\.weight")


@sanitize
def test_q2_k_tensor_is_supported(tmp_path):
    # Q2_K (and Q3_K) compute through the exact float path: the file loads and runs.
    # hidden 256 so that ffn_down (ne = [256, 32]) is a whole number of Q2_K super-blocks
    b = gb.tiny_qwen3(hidden_dim=256)
    t = b.tensor("blk.0.ffn_down.weight")
    t.ttype, t.data = gb.Q2_K, gb.q2_k_bytes(256 * 32)
    with qwen3c.Model(str(build(tmp_path, b)), n_ctx=16) as m:
        assert np.isfinite(m.forward([1, 2, 3])).all()


@sanitize
def test_q2_k_file_reads_with_gguf_reader(tmp_path):
    gguf = pytest.importorskip("gguf")
    b = gb.tiny_qwen3(hidden_dim=256)
    t = b.tensor("blk.0.ffn_down.weight")
    t.ttype, t.data = gb.Q2_K, gb.q2_k_bytes(256 * 32)
    r = gguf.GGUFReader(str(build(tmp_path, b)))
    t = next(t for t in r.tensors if t.name == "blk.0.ffn_down.weight")
    assert t.tensor_type.name == "Q2_K" and list(t.shape) == [256, 32]


# ---- paths ----------------------------------------------------------------------------------
@sanitize
def test_missing_path(tmp_path):
    with pytest.raises(OSError, match=re.escape(str(tmp_path / "nope.gguf"))) as e:
        load(tmp_path / "nope.gguf")
    info_agrees(tmp_path / "nope.gguf", e.value)


@sanitize
def test_directory_path(tmp_path):
    with pytest.raises((OSError, qwen3c.Qwen3cError)) as e:
        load(tmp_path)
    info_agrees(tmp_path, e.value)


@sanitize
def test_info_cli_on_a_malformed_file(tmp_path, tiny_bytes):
    """The command itself: exit status 1 and the reader's message, one line, no traceback."""
    data, lay = tiny_bytes
    p = write_bytes(tmp_path, patch(data, lay.tensor["blk.0.attn_k.weight"]["offset"], "<Q",
                                    (1 << 64) - 32))
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(qwen3c.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg_root, os.environ.get("PYTHONPATH", "")]))
    for args in ([str(p)], [str(p), "--json"]):
        r = subprocess.run([sys.executable, "-m", "qwen3c", "info", *args], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
        assert re.fullmatch(r"qwen3c info: error: tensor 'blk\.0\.attn_k\.weight': data "
                            r"\[\d+, \+\d+\) lies outside .*\n", r.stderr), r.stderr
    r = subprocess.run([sys.executable, "-m", "qwen3c", "info", str(p), "--bogus"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr


# ---- forward() errors leave the KV cache as it was -----------------------------------------
@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("fwd") / "tiny.gguf"
    gb.tiny_qwen3(n_layers=2, seed=3).write(p)
    return p


def _reference_logits(path):
    """Logits of token 4 at pos 3 after the prompt [1, 2, 3], from a fresh model."""
    with qwen3c.Model(str(path), n_ctx=16, n_threads=1) as m:
        m.forward([1, 2, 3], pos=0)
        return m.forward([4], pos=3)


@sanitize
@pytest.mark.parametrize("bad_call,exc", [
    (dict(tokens=[5] * 17, pos=0), qwen3c.ContextOverflowError),   # 17 > n_ctx = 16
    (dict(tokens=[5, 6, 7], pos=14), qwen3c.ContextOverflowError),  # 14 + 3 > 16
    (dict(tokens=[5], pos=16), qwen3c.ContextOverflowError),
    (dict(tokens=[5, 6, 64], pos=0), ValueError),                  # vocab is 64
    (dict(tokens=[5, 6, -1], pos=0), ValueError),
    (dict(tokens=[5, 6], pos=-1), ValueError),
    (dict(tokens=[], pos=0), ValueError),
], ids=["longer-than-ctx", "pos+len>ctx", "pos=ctx", "id=vocab", "id=-1", "pos=-1", "empty"])
def test_forward_error_leaves_cache_unchanged(tiny_model_path, bad_call, exc):
    want = _reference_logits(tiny_model_path)
    with qwen3c.Model(str(tiny_model_path), n_ctx=16, n_threads=1) as m:
        m.forward([1, 2, 3], pos=0)
        with pytest.raises(exc):
            m.forward(bad_call["tokens"], pos=bad_call["pos"])
        got = m.forward([4], pos=3)
    np.testing.assert_array_equal(got, want)


@sanitize
def test_context_overflow_error_names_sizes(tiny_model_path):
    with qwen3c.Model(str(tiny_model_path), n_ctx=16, n_threads=1) as m:
        with pytest.raises(qwen3c.ContextOverflowError, match=r"16"):
            m.forward([1] * 3, pos=15)


@sanitize
def test_token_error_names_token(tiny_model_path):
    with qwen3c.Model(str(tiny_model_path), n_ctx=16, n_threads=1) as m:
        with pytest.raises(ValueError, match=r"1000"):
            m.forward([1, 1000], pos=0)


# ---- no leaks on the error path -------------------------------------------------------------
def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_failed_loads_do_not_leak(tmp_path):
    # 4000 extra keys make every parse allocate ~0.3 MB of metadata tables; the file then fails
    # late (a missing tensor), so a leak of those tables would show as ~60 MB over 200 loads.
    b = gb.tiny_qwen3()
    for i in range(4000):
        b.add_kv(f"test.filler.{i}", gb.UINT32, i)
    b.remove_tensor("output_norm.weight")
    p = build(tmp_path, b)
    for _ in range(20):
        with pytest.raises(qwen3c.ModelFormatError):
            load(p)
    rss0, vm0 = _status("VmRSS"), _status("VmSize")
    for _ in range(200):
        with pytest.raises(qwen3c.ModelFormatError):
            load(p)
    grow_rss, grow_vm = _status("VmRSS") - rss0, _status("VmSize") - vm0
    assert grow_rss < 20 << 20, f"RSS grew {grow_rss >> 20} MB over 200 failed loads"
    assert grow_vm < 40 << 20, f"VmSize grew {grow_vm >> 20} MB over 200 failed loads (mmap leak?)"


# ---- fuzz: corrupt bytes anywhere in the header/metadata/tensor infos -----------------------
FUZZ_SCRIPT = textwrap.dedent(r"""
    import os, random, sys, time
    import qwen3c, ggufbuild as gb
    from qwen3c.gguf_info import model_info
    out = sys.argv[1]
    seed, budget = int(sys.argv[2]), float(sys.argv[3])
    rng = random.Random(seed)
    base, lay = gb.tiny_qwen3(n_layers=1, seed=seed).build()
    cases = []
    for pos in range(lay.data_start):           # every byte before the tensor data, 2 ways
        for how in rng.sample(["xor", "zero", "ff", "rand", "bit"], 2):
            cases.append(("mutate", pos, how))
    specials = [0, 1, 31, 32, 33, 1 << 31, 1 << 32, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1,
                len(base), len(base) - lay.data_start]
    for _ in range(600):                        # a u64 field (count/length/dim/offset) set wild
        cases.append(("u64", rng.randrange(lay.data_start - 7), rng.choice(specials)))
    for _ in range(300):                        # random multi-byte damage
        cases.append(("multi", rng.randrange(lay.data_start), rng.randrange(1, 9)))
    for _ in range(150):                        # truncations anywhere
        cases.append(("truncate", rng.randrange(len(base)), None))
    rng.shuffle(cases)
    t0 = time.time(); n_ok = n_err = 0
    for i, (kind, pos, arg) in enumerate(cases):
        if time.time() - t0 > budget:
            break
        b = bytearray(base)
        if kind == "mutate":
            b[pos] = {"xor": b[pos] ^ 0xFF, "zero": 0, "ff": 0xFF,
                      "rand": rng.randrange(256), "bit": b[pos] ^ (1 << rng.randrange(8))}[arg]
        elif kind == "u64":
            b[pos:pos + 8] = arg.to_bytes(8, "little")
        elif kind == "multi":
            for j in range(pos, min(pos + arg, len(b))):
                b[j] = rng.randrange(256)
        else:
            del b[pos:]
        with open(out, "wb") as f:
            f.write(b)
        print(f"case {i}: {kind} pos={pos} arg={arg}", flush=True)
        load_error = None
        try:
            with qwen3c.Model(out, n_ctx=8, n_threads=1) as m:
                m.forward([0, 1], pos=0)
            n_ok += 1
        except (qwen3c.Qwen3cError, OSError, ValueError) as e:
            n_err += 1
            load_error = e
        # `info` reads with the same C reader: it must agree with loading, and never crash
        try:
            doc = model_info(out)
            agree = doc["safe_to_load"] == (load_error is None) or not doc["safe_to_load"]
        except (qwen3c.Qwen3cError, OSError, ValueError):
            agree = load_error is not None
        if not agree:
            print(f"info disagrees with loading ({load_error!r})", flush=True)
            sys.exit(3)
    print(f"done ok={n_ok} err={n_err} cases={n_ok + n_err}", flush=True)
""")


@sanitize
def test_fuzz_corrupted_files_never_crash(tmp_path):
    """Seeded byte flips and truncations: load either succeeds or raises a qwen3c error.

    Runs in a subprocess so that a crash is reported (with the recipe of the last case)
    instead of killing the test session."""
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(qwen3c.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, os.path.dirname(os.path.abspath(__file__)),
                                          env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ_SCRIPT, str(tmp_path / "fuzz.gguf"), "1234", "8"],
        env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, (
        f"crashed (rc={proc.returncode}) at {lines[-1] if lines else '?'}\n{proc.stderr[-3000:]}")
    assert lines and lines[-1].startswith("done"), proc.stdout[-2000:]
    n_cases = int(lines[-1].split("cases=")[1])
    assert n_cases >= 200, lines[-1]
