"""The C <-> transformers <-> GGUF mapping (qwen3c.mapping) checked against both code bases.

A rename in csrc/, in python/qwen3c/ or in transformers' modeling_qwen3 makes one of these
tests fail and names the row. docs/c_vs_transformers.md must be what tools/gen_docs_table.py
generates from the mapping.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from qwen3c import mapping

ROOT = Path(__file__).resolve().parent.parent

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers.models.qwen3 import modeling_qwen3  # noqa: E402
from transformers.models.qwen3_5 import modeling_qwen3_5  # noqa: E402


# ---- C side ----------------------------------------------------------------------------------

def _strip_c_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _c_source(rel: str) -> str:
    path = ROOT / rel
    if not path.is_file():
        pytest.fail(f"{rel} does not exist (yet)")
    return _strip_c_comments(path.read_text(encoding="utf-8"))


def _all_c_sources() -> dict:
    files = sorted((ROOT / "csrc").glob("*.[ch]"))
    return {f"csrc/{p.name}": _strip_c_comments(p.read_text(encoding="utf-8")) for p in files}


def _struct_body(text: str, name: str):
    """Body of `typedef struct ... { body } name;` in text, or None."""
    m = re.search(r"\}\s*" + re.escape(name) + r"\s*;", text)
    if not m:
        return None
    depth, i = 0, m.start()
    while i >= 0:  # walk back to the matching opening brace
        if text[i] == "}":
            depth += 1
        elif text[i] == "{":
            depth -= 1
            if depth == 0:
                return text[i + 1:m.start()]
        i -= 1
    return None


def _alias(sources: dict, name: str):
    """`typedef other name;` -> other (e.g. Config -> qwen3c_config), else None."""
    for text in sources.values():
        m = re.search(r"typedef\s+(?:struct\s+)?(\w+)\s+" + re.escape(name) + r"\s*;", text)
        if m:
            return m.group(1)
    return None


def _find_struct(sources: dict, name: str):
    """(file, body) of the struct `name`, following one typedef alias."""
    for n in (name, _alias(sources, name)):
        if n is None:
            continue
        for rel, text in sources.items():
            body = _struct_body(text, n)
            if body is not None:
                return rel, body
    return None, None


def _struct_fields(body: str) -> set:
    fields = set()
    for decl in body.split(";"):
        decl = decl.strip()
        if not decl:
            continue
        for part in decl.split(","):  # "int32_t bos, eos, pad" declares several
            m = re.search(r"(\w+)\s*(\[[^\]]*\])?\s*$", part.strip())
            if m:
                fields.add(m.group(1))
    return fields


def _py_defines(rel: str, dotted: str) -> bool:
    path = ROOT / rel
    if not path.is_file():
        pytest.fail(f"{rel} does not exist (yet)")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = tree.body
    *outer, last = dotted.split(".")
    for cls in outer:
        found = [n for n in body if isinstance(n, ast.ClassDef) and n.name == cls]
        if not found:
            return False
        body = found[0].body
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               and n.name == last for n in body)


def _ids(rows):
    return [f"{r.section}:{r.c}" for r in rows]


@pytest.mark.parametrize("row", mapping.ROWS, ids=_ids(mapping.ROWS))
def test_c_name_exists(row):
    if row.c_kind == "python":
        assert _py_defines(row.c_file, row.c), f"{row.c} is not defined in {row.c_file}"
        return
    sources = _all_c_sources()
    if row.c_kind == "function":
        text = _c_source(row.c_file)
        pat = r"\b" + re.escape(row.c) + r"\s*\([^;{}]*\)\s*\{"
        assert re.search(pat, text), f"function {row.c}() is not defined in {row.c_file}"
    elif row.c_kind == "struct":
        _c_source(row.c_file)
        text = sources[row.c_file]
        defined = (_struct_body(text, row.c) is not None
                   or re.search(r"typedef\s+\w+\s+" + re.escape(row.c) + r"\s*;", text))
        assert defined, f"struct {row.c} is not defined in {row.c_file}"
    elif row.c_kind == "field":
        struct, field = row.c.split(".")
        rel, body = _find_struct(sources, struct)
        assert body is not None, f"struct {struct} not found in csrc/"
        assert rel == row.c_file, f"struct {struct} is defined in {rel}, the mapping says {row.c_file}"
        assert field in _struct_fields(body), f"{struct} has no field {field!r} ({rel})"
    else:
        pytest.fail(f"unknown c_kind {row.c_kind!r}")


# Every field of these structs must have a row (so the table stays complete as C grows).
_COVERED_STRUCTS = {
    "LayerWeights": set(),
    "TransformerWeights": {"owned"},
    "RunState": {"memory", "kv_memory", "xq", "xf"},  # bookkeeping / quantized or padded matmul-input scratch: no transformers twin
    "Config": set(),
    # the one block both states live in, the checkpoint slots
    "RecurrentState": {"state", "state_floats", "n_slots", "slot_pos", "slot_age", "slot_mem", "age"},
}


@pytest.mark.parametrize("struct", sorted(_COVERED_STRUCTS))
def test_every_struct_field_has_a_row(struct):
    _, body = _find_struct(_all_c_sources(), struct)
    assert body is not None
    mapped = {r.c.split(".", 1)[1] for r in mapping.ROWS
              if r.c_kind == "field" and r.c.startswith(struct + ".")}
    missing = _struct_fields(body) - mapped - _COVERED_STRUCTS[struct]
    assert not missing, f"{struct} fields without a row in qwen3c/mapping.py: {sorted(missing)}"


# ---- transformers side -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_model():
    cfg = transformers.Qwen3Config(vocab_size=32, hidden_size=16, intermediate_size=24,
                                   num_hidden_layers=2, num_attention_heads=2,
                                   num_key_value_heads=1, head_dim=8,
                                   max_position_embeddings=64)
    return transformers.Qwen3ForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def hf_model35():
    """A Qwen3_5ForCausalLM with both kinds of layer (linear_attn at 0, self_attn at 1)."""
    cfg = transformers.Qwen3_5TextConfig(
        vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
        linear_num_key_heads=1, linear_num_value_heads=2, linear_key_head_dim=8,
        linear_value_head_dim=8, layer_types=["linear_attention", "full_attention"])
    return transformers.Qwen3_5ForCausalLM(cfg).eval()


def _walk(obj, parts, what):
    for i, part in enumerate(parts):
        if part == "N" and isinstance(obj, torch.nn.ModuleList):
            # any layer of the kind the rest of the path names
            for layer in obj:
                try:
                    return _walk(layer, parts[i + 1:], what)
                except AttributeError:
                    continue
            raise AttributeError(f"{what}: no layer has {'.'.join(parts[i + 1:])!r}")
        if part == "N":
            part = "0"
        if part.isdigit() and not hasattr(obj, part):
            obj = obj[int(part)]
        elif hasattr(obj, part):
            obj = getattr(obj, part)
        elif isinstance(obj, Mapping) and part in obj:
            obj = obj[part]
        else:
            raise AttributeError(f"{what}: no {part!r}")
    return obj


def resolve(ref: str, model, model35=None):
    space, path = ref.split(":", 1)
    parts = path.split(".")
    if space == "instance":
        return _walk(model, parts, ref)
    if space == "modeling":
        return _walk(modeling_qwen3, parts, ref)
    if space == "instance35":
        return _walk(model35, parts, ref)
    if space == "modeling35":
        return _walk(modeling_qwen3_5, parts, ref)
    if space == "transformers":
        # an attribute of the package, or of one of its submodules (cli.transformers.main)
        for i in range(len(parts), -1, -1):
            try:
                mod = importlib.import_module(".".join(["transformers", *parts[:i]]))
            except ImportError:
                continue
            try:
                return _walk(mod, parts[i:], ref)
            except (AttributeError, IndexError, KeyError):
                continue
        raise AttributeError(f"{ref}: does not resolve")
    raise ValueError(f"unknown reference space in {ref!r}")


@pytest.mark.parametrize("row", mapping.ROWS, ids=_ids(mapping.ROWS))
def test_transformers_name_resolves(row, hf_model, hf_model35):
    assert row.hf, "every row names its transformers counterpart"
    objs = [resolve(ref, hf_model, hf_model35) for ref in row.hf]
    if row.hf_local:
        src = inspect.getsource(inspect.unwrap(objs[0]))
        assert re.search(r"\b" + re.escape(row.hf_local) + r"\b", src), \
            f"{row.hf_local!r} does not appear in the source of {row.hf[0]}"
    if row.section in ("weights", "qwen35") and row.hf[0].endswith((".weight", "dt_bias", "A_log")):
        assert isinstance(objs[0], torch.nn.Parameter)


def test_weight_tensors_cover_the_state_dict(hf_model):
    """Every parameter of Qwen3ForCausalLM has a GGUF name, and back (lm_head <-> output)."""
    for name, _ in hf_model.named_parameters():
        g = mapping.hf_to_gguf(name)
        assert mapping.gguf_to_hf(g) == name
    assert mapping.gguf_to_hf("blk.1.ffn_down.weight") == "model.layers.1.mlp.down_proj.weight"
    assert mapping.hf_to_gguf("lm_head.weight") == "output.weight"
    assert mapping.layer_of("blk.12.attn_q.weight") == 12
    assert mapping.layer_of("output_norm.weight") is None
    with pytest.raises(KeyError):
        mapping.gguf_to_hf("blk.0.no_such_tensor.weight")


# ---- GGUF side -------------------------------------------------------------------------------

def test_gguf_names_are_the_gguf_package_names():
    gguf = pytest.importorskip("gguf")
    from gguf.constants import MODEL_ARCH, MODEL_TENSORS, TENSOR_NAMES

    known = {TENSOR_NAMES[t].replace("{bid}", "N") + ".weight"
             for t in MODEL_TENSORS[MODEL_ARCH.QWEN3]}
    known35 = {TENSOR_NAMES[t].replace("{bid}", "N") + suffix
               for t in MODEL_TENSORS[MODEL_ARCH.QWEN35] for suffix in (".weight", ".bias", "")}
    for row in mapping.ROWS:
        if row.section == "qwen35" and row.gguf and row.gguf.startswith("blk."):
            assert row.gguf in known35, f"{row.gguf} is not a qwen35 tensor name in gguf-py"
        elif row.gguf and row.gguf.endswith(".weight"):
            assert row.gguf in known, f"{row.gguf} is not a qwen3 tensor name in gguf-py"
    keys = {v for cls in (gguf.Keys.General, gguf.Keys.LLM, gguf.Keys.Attention, gguf.Keys.Rope)
            for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}
    keys |= {v for k, v in vars(gguf.Keys.SSM).items() if k.isupper() and isinstance(v, str)}
    for row in mapping.ROWS:
        if row.section in ("hyperparameters", "qwen35") and row.gguf and row.gguf.startswith("{arch}") \
                and row.gguf != "{arch}.*":
            assert row.gguf in keys, f"{row.gguf} is not a GGUF metadata key in gguf-py"


# ---- the table -------------------------------------------------------------------------------

REQUIRED_CONCEPTS = [
    "all hyperparameters", "token embeddings", "attention Q projection", "attention K projection",
    "attention V projection", "attention output projection", "per-head Q norm", "per-head K norm",
    "MLP gate projection", "MLP up projection", "MLP down projection", "pre-attention RMSNorm",
    "pre-MLP RMSNorm", "final RMSNorm", "LM head", "one forward pass (public API)", "RMSNorm",
    "RoPE (rotate-half pairing)", "attention (causal, grouped-query)",
    "matrix multiply (nn.Linear without bias)", "softmax", "SwiGLU MLP activation",
    "embedding lookup", "tokenisation (byte-level BPE)", "sampling the next token", "chat loop",
    "command line entry", "the loaded model (read-only, shareable)", "activations and KV cache",
]


def test_table_covers_the_issue_list():
    concepts = {r.concept for r in mapping.ROWS}
    assert not [c for c in REQUIRED_CONCEPTS if c not in concepts]
    assert {r.section for r in mapping.ROWS} == {k for k, _ in mapping.SECTIONS}
    assert len({(r.section, r.c) for r in mapping.ROWS}) == len(mapping.ROWS), "duplicate rows"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_docs_table", ROOT / "tools" / "gen_docs_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_table_is_generated_from_the_mapping():
    gen = _load_generator()
    text = gen.render(mapping)
    on_disk = (ROOT / "docs" / "c_vs_transformers.md").read_text(encoding="utf-8")
    assert on_disk == text, "docs/c_vs_transformers.md is stale: run tools/gen_docs_table.py"
    for row in mapping.ROWS:
        assert f"| {row.concept} |" in text
    assert "`LayerWeights.wq` (internal.h)" in text
    assert "`model.layers.N.self_attn.q_proj.weight`" in text
    assert "`blk.N.attn_q.weight`" in text
