"""Model(activations=...): the four matmul paths for Q8_0 / Q4_0 / Q4_1 weights, wired through
the forward pass.

  "q24" (default)  24-bit activation blocks against packed weights, exact integer dot products:
                   float32-level, ~1e-6 of "f32" here (test_parity.py runs it against PyTorch)
  "f32"            float32 activations against the file's blocks: exact up to float32 rounding
  "q16" (opt-in)   16-bit activation blocks, exact integer dot products: ~1e-4 of "f32" here
  "q8"  (opt-in)   8-bit activation blocks (llama.cpp-like): within a few 1e-2

Each must keep token-by-token == batched, and leave float-weight files untouched (their matmuls
always use float32 activations). Kernel-level checks are in test_quant_q24.py / test_quant_q16.py /
test_quant_int8.py; the real-model precision (SmolLM2, Q4_1) in test_smollm2.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import qwen3c

TOKENS = [(7 * i + 3) % 256 for i in range(48)]


@pytest.fixture(scope="module")
def q8_path(make_tiny_model):
    return make_tiny_model(out_type="q8_0", seed=3)[1]


@pytest.fixture(scope="module")
def q8_logits(q8_path):
    out = {}
    for act in ("q24", "f32", "q16", "q8"):
        with qwen3c.Model(q8_path, n_ctx=64, activations=act) as m:
            assert m.activations == act
            out[act] = m.forward(TOKENS, all_logits=True)
    return out


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_default_is_q24(q8_path, q8_logits):
    with qwen3c.Model(q8_path, n_ctx=64) as m:
        assert m.activations == "q24"
        np.testing.assert_array_equal(m.forward(TOKENS, all_logits=True), q8_logits["q24"])


def test_q24_packs_only_when_used(q8_path):
    """q24 packs the Q8_0 matrices once (as many bytes as the file's); the other paths read the
    mapped file and pack nothing. A build without AVX-512 VNNI kernels packs nothing either
    (q24 then runs as f32)."""
    import gguf

    with qwen3c.Model(q8_path, n_ctx=64) as m:
        packed = m.packed_bytes
    if packed:  # an AVX-512 VNNI build
        mats = [int(t.n_bytes) for t in gguf.GGUFReader(q8_path).tensors
                if t.tensor_type == gguf.GGMLQuantizationType.Q8_0 and len(t.shape) == 2]
        assert sum(mats) <= packed <= sum(mats) + 64 * len(mats)  # each padded to 64 bytes at most
    for act in ("f32", "q16", "q8"):
        with qwen3c.Model(q8_path, n_ctx=64, activations=act) as m:
            assert m.packed_bytes == 0


def test_q24_is_float32_level(q8_logits):
    a, b = q8_logits["q24"], q8_logits["f32"]
    r = rel(a, b)
    assert r < 1e-5, r  # measured ~1e-6: both are float32 rounding of the same sums
    np.testing.assert_array_equal(a.argmax(-1), b.argmax(-1))
    assert r < rel(q8_logits["q16"], b) / 20  # far finer than q16


def test_q16_is_close_to_f32(q8_logits):
    a, b = q8_logits["q16"], q8_logits["f32"]
    r = rel(a, b)
    assert 1e-6 < r < 5e-4, r  # measured 8e-5: a different rounding, below the weights' (~4e-3)
    np.testing.assert_array_equal(a.argmax(-1), b.argmax(-1))
    assert r < rel(q8_logits["q8"], b) / 20  # and far finer than q8


def test_q8_is_close_to_f32(q8_logits):
    a, b = q8_logits["q8"], q8_logits["f32"]
    r = rel(a, b)
    assert 1e-4 < r < 5e-2, r  # clearly coarser than q16 ...
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.9  # ... but it mostly agrees


# Batched and token-by-token runs sum in different orders, so their float32 activations differ in
# the last bits; a quantized path then occasionally rounds a value to the neighbouring 16- or
# 8-bit step, which moves the output by about that path's own rounding error, not more.
@pytest.mark.parametrize("act, bound", [("q24", 1e-5), ("f32", 1e-5), ("q16", 3e-4), ("q8", 5e-2)])
def test_token_by_token_equals_batched(q8_path, act, bound):
    with qwen3c.Model(q8_path, n_ctx=64, activations=act) as m:
        batched = m.forward(TOKENS[:16], all_logits=True)
    with qwen3c.Model(q8_path, n_ctx=64, activations=act) as m:
        steps = np.stack([m.forward([t], pos=i) for i, t in enumerate(TOKENS[:16])])
    assert rel(steps, batched) < bound
    np.testing.assert_array_equal(steps.argmax(-1), batched.argmax(-1))


def test_float_files_ignore_the_setting(tiny_gguf):
    """A float file computes the same with every setting; q24 reads a byte-for-byte copy of its
    matrices in huge pages, the others the mapped file."""
    import gguf

    mats = [int(t.n_bytes) for t in gguf.GGUFReader(tiny_gguf).tensors
            if len(t.shape) == 2 and t.name != "token_embd.weight"]
    tied = "output.weight" not in [t.name for t in gguf.GGUFReader(tiny_gguf).tensors]
    if tied:  # the lm_head is the embedding table
        mats += [int(t.n_bytes) for t in gguf.GGUFReader(tiny_gguf).tensors
                 if t.name == "token_embd.weight"]
    res = []
    for act in ("q24", "f32", "q16", "q8"):
        with qwen3c.Model(tiny_gguf, n_ctx=64, activations=act) as m:
            if act == "q24":
                assert sum(mats) <= m.packed_bytes <= sum(mats) + 64 * len(mats)
            else:
                assert m.packed_bytes == 0
            res.append(m.forward(TOKENS, all_logits=True))
    for r in res[1:]:
        np.testing.assert_array_equal(res[0], r)


@pytest.mark.parametrize("bad", ["int8", "F32", "", None, 1, ["q16"]])
def test_bad_activations_value(tiny_gguf, bad):
    with pytest.raises(ValueError, match="activations must be one of"):
        qwen3c.Model(tiny_gguf, n_ctx=64, activations=bad)


def test_model_params_are_validated(q8_path):
    from qwen3c._native import ERR_SIZE, ffi, lib

    params = ffi.new("qwen3c_model_params *", lib.qwen3c_model_default_params())
    assert params.pack_weights == 1
    params.pack_weights = 2
    out = ffi.new("qwen3c_model **")
    err = ffi.new("char[]", ERR_SIZE)
    rc = lib.qwen3c_model_load_with(str(q8_path).encode(), params, out, err, ERR_SIZE)
    assert rc == lib.QWEN3C_ERR_INVALID_ARG
    assert b"pack_weights must be 0 or 1" in ffi.string(err)


def test_q8_0_weights_of_minus_128(q8_path, tmp_path):
    """Every Q8_0 quantizer writes -127..127, and the AVX2 kernels without AVX-VNNI multiply
    such weights as signed bytes (sign(s) * w must fit a byte). A file may still hold -128: the
    model finds it at load (QTensor.q8_min) and those matrices take the nibble products. Here
    every 37th quant of each matrix is -128, and q24 stays within float32 rounding of "f32" on
    every tier (tools/run_tests.sh runs this file under each forced tier)."""
    import gguf

    data = bytearray(open(q8_path, "rb").read())
    reader = gguf.GGUFReader(q8_path)
    changed = 0
    for t in reader.tensors:
        if t.tensor_type != gguf.GGMLQuantizationType.Q8_0 or len(t.shape) != 2:
            continue
        blocks = np.frombuffer(data, np.uint8, count=int(t.n_bytes),
                               offset=int(t.data_offset)).reshape(-1, 34).copy()
        quants = blocks[:, 2:].reshape(-1)
        quants[::37] = 0x80
        blocks[:, 2:] = quants.reshape(-1, 32)
        data[int(t.data_offset):int(t.data_offset) + int(t.n_bytes)] = blocks.tobytes()
        changed += 1
    assert changed >= 7  # every matrix of the layer(s)
    path = tmp_path / "q8_0_with_minus_128.gguf"
    path.write_bytes(bytes(data))
    out = {}
    for act in ("q24", "f32"):
        with qwen3c.Model(path, n_ctx=64, activations=act) as m:
            out[act] = m.forward(TOKENS, all_logits=True)
            out[act + " decode"] = np.stack([m.forward([tok], pos=i) for i, tok in enumerate(TOKENS[:8])])
    assert rel(out["q24"], out["f32"]) < 1e-5
    assert rel(out["q24 decode"], out["f32"][:8]) < 1e-5
