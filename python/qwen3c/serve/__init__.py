"""`qwen3c serve`: an OpenAI-compatible HTTP server for a GGUF model.

    qwen3c serve --model x.gguf [--host 127.0.0.1] [--port 8000] [--parallel N] [--ctx N]
                 [--api-key K]

Needs the `server` extra (pip install 'qwen3c[server]': starlette, uvicorn, llguidance,
prometheus-client). The package is split so that the engine never sees HTTP:
    scheduler.py    continuous batching over --parallel sessions (no HTTP)
    constraints.py  JSON / tool-call grammars (llguidance) as token masks for the sampler
    tools.py        reasoning_content / content / tool_calls out of the generated text
    protocol.py     OpenAI request checks, response shapes, error bodies
    app.py          the Starlette app (routes, SSE, auth, /metrics)
"""
from __future__ import annotations

import argparse
import os
import sys

EXTRA_MODULES = ("starlette", "uvicorn", "llguidance", "prometheus_client")
INSTALL_HINT = "pip install 'qwen3c[server]'"


def missing_extras() -> list:
    import importlib.util
    return [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="qwen3c serve",
        description="Serve a GGUF model over an OpenAI-compatible HTTP API (/v1/chat/completions, "
                    "/v1/completions, /v1/models, /health, /metrics), with continuous batching "
                    f"over --parallel sequences. Needs: {INSTALL_HINT}")
    ap.add_argument("--model", "-m", required=True,
                    help="a .gguf file, or a HuggingFace repo id (owner/repo[:file.gguf])")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes "
                         "the server: set --api-key then)")
    ap.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 = any free port)")
    ap.add_argument("--parallel", "-np", type=int, default=4,
                    help="sequences generated together (slots, each with its own KV cache; "
                         "default 4)")
    ap.add_argument("--ctx", type=int, default=0,
                    help="context length of each slot in tokens (default: the model's, at most 4096)")
    ap.add_argument("--queue", type=int, default=64,
                    help="requests that may wait for a free slot; more get HTTP 429 (default 64)")
    ap.add_argument("--batch", type=int, default=256,
                    help="most tokens per forward pass: decode tokens plus prefill chunks "
                         "(default 256)")
    ap.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    ap.add_argument("--api-key", default=os.environ.get("QWEN3C_API_KEY"),
                    help="require 'Authorization: Bearer KEY' on /v1/* (default: $QWEN3C_API_KEY, "
                         "else no key)")
    ap.add_argument("--model-name", help="the model id clients use (default: the file's name "
                                         "without .gguf)")
    ap.add_argument("--kv-cache", choices=("f32", "f16"), default="f32", help="KV cache type")
    ap.add_argument("--log-level", default="warning",
                    choices=("critical", "error", "warning", "info", "debug"),
                    help="uvicorn's log level (default warning)")
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    for name, v, lo in (("--parallel", args.parallel, 1), ("--port", args.port, 0),
                        ("--ctx", args.ctx, 0), ("--queue", args.queue, 0), ("--batch", args.batch, 1),
                        ("--threads", args.threads, 0)):
        if v < lo:
            sys.stderr.write(f"qwen3c serve: error: {name} must be >= {lo}\n")
            return 2
    if args.port > 65535:
        sys.stderr.write("qwen3c serve: error: --port must be <= 65535\n")
        return 2
    missing = missing_extras()
    if missing:
        sys.stderr.write(f"qwen3c serve: error: the server needs {', '.join(missing)}, which "
                         f"{'is' if len(missing) == 1 else 'are'} not installed; install the "
                         f"server extra: {INSTALL_HINT}\n")
        return 1
    import uvicorn

    from ..hub import resolve_model
    from ..model import Model
    from .app import Server

    path = resolve_model(args.model)
    model = Model(path, n_ctx=args.ctx, n_threads=args.threads, kv_cache=args.kv_cache)
    try:
        server = Server(model, model_name=args.model_name, n_slots=args.parallel, n_ctx=args.ctx or None,
                        max_queue=args.queue, step_tokens=args.batch, api_key=args.api_key)
        sys.stderr.write(f"qwen3c serve: {server.name} ({model.config.arch}), {args.parallel} slots "
                         f"of {server.n_ctx} tokens, http://{args.host}:{args.port}/v1"
                         f"{' (API key required)' if args.api_key else ''}\n")
        uvicorn.run(server.app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        model.close()
    return 0
