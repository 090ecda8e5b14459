"""Benchmark `qwen3c serve` under concurrent greedy streams (and llama-cpp-python's server under
the same load, in the same run).

    python bench/bench_server.py --model x.gguf [--streams 1,2,4,8] [--tokens 128] [--threads N]
                                 [--prompt-tokens 32] [--schema] [--vs-llama-cpp-python]

For each number of concurrent clients k, k streamed /v1/completions requests start at once,
each with the same short text prompt (about --prompt-tokens tokens), temperature 0 and exactly
--tokens tokens (our `ignore_eos`; for llama.cpp a -100 logit bias on the end tokens). Printed:

  aggregate decode tok/s  all tokens after each stream's first one, divided by the time from
                          the first stream's first token to the last stream's last token
                          (a server that takes one request at a time counts at its own speed)
  per-stream tok/s        the same for each stream alone (mean over the streams)
  TTFT                    time from sending a request to its first token (mean, max)

Before the server runs, Model.generate decodes --tokens tokens in this process (same file,
threads and prompt): "server / generate" is the single-stream ratio. --schema adds a single
stream through /v1/chat/completions with and without a JSON schema (response_format), i.e.
the cost of the llguidance token masks. Servers are started as subprocesses on free local ports
and stopped at the end; the llama-cpp-python one needs its server extras (sse-starlette,
starlette-context, pydantic-settings, fastapi, uvicorn); it runs with --interrupt_requests
False, so that concurrent requests wait for each other (by default a new request cuts the
running stream off). The machine's load average is printed
with the results: compare ratios measured in the same run. --llama-no-extra-bufts runs
llama.cpp with use_extra_bufts = false (plain weights, no AMX / repacked copies): on a VM whose
CPU reports AMX, llama-cpp-python 0.3.36 segfaults in its AMX matmul on the first decode.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc, path: str, timeout: float = 300.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not come up")


def stream(port: int, path: str, body: dict, out: dict):
    """POST a streamed request; record the send time and each data chunk's arrival time."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    times, finish = [], None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            continue
        ch = json.loads(line[5:]).get("choices") or []
        if ch and "role" not in (ch[0].get("delta") or {}):   # (chat's first chunk: no token)
            times.append(time.perf_counter())
            finish = ch[0].get("finish_reason") or finish
    if finish != "length":
        print(f"warning: a stream ended with finish_reason {finish!r}", file=sys.stderr)
    out.update(t0=t0, times=times, n=body["max_tokens"])


def run_load(port: int, k: int, body: dict, path: str = "/v1/completions") -> dict:
    outs = [dict() for _ in range(k)]
    ts = [threading.Thread(target=stream, args=(port, path, body, o)) for o in outs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    firsts = [o["times"][0] for o in outs]
    lasts = [o["times"][-1] for o in outs]
    n_after = sum(o["n"] - 1 for o in outs)     # every stream makes exactly max_tokens tokens
    agg = n_after / (max(lasts) - min(firsts))
    per = [(o["n"] - 1) / max(o["times"][-1] - o["times"][0], 1e-9) for o in outs]
    ttft = [o["times"][0] - o["t0"] for o in outs]
    return dict(k=k, agg=agg, per=sum(per) / k, ttft=sum(ttft) / k, ttft_max=max(ttft))


def generate_speed(model_path, threads, prompt, n) -> float:
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import qwen3c
    with qwen3c.Model(model_path, n_ctx=max(512, len(prompt) + n + 8), n_threads=threads) as m:
        m.generate(prompt, max_tokens=4, sampler=qwen3c.Sampler.greedy())  # warm up
        g = m.generate(prompt, max_tokens=n, sampler=qwen3c.Sampler.greedy(), reuse_cache=False)
        list(g)
        return g.stats()["decode_tok_s"]


def start_ours(args, port, parallel):
    cmd = [sys.executable, "-m", "qwen3c", "serve", "--model", args.model, "--port", str(port),
           "--parallel", str(parallel), "--ctx", str(args.ctx), "--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# llama_cpp.server with llama_model_params.use_extra_bufts = False (no AMX / repacked weights)
NO_EXTRA_BUFTS = """
import runpy, sys
import llama_cpp.llama_cpp as L
default = L.llama_model_default_params
def params():
    p = default()
    p.use_extra_bufts = False
    return p
L.llama_model_default_params = params
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


def start_llama(args, port):
    opts = ["--model", args.model, "--port", str(port), "--n_ctx", str(args.ctx),
            "--n_threads", str(args.threads or os.cpu_count()),
            "--n_threads_batch", str(args.threads or os.cpu_count()),
            "--interrupt_requests", "False"]   # queue concurrent requests (default: a new one
    # cuts the running stream off)
    cmd = [sys.executable] + (["-c", NO_EXTRA_BUFTS] if args.llama_no_extra_bufts
                              else ["-m", "llama_cpp.server"]) + opts
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per stream")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--schema", action="store_true", help="also time a JSON-schema stream")
    ap.add_argument("--vs-llama-cpp-python", action="store_true")
    ap.add_argument("--llama-no-extra-bufts", action="store_true",
                    help="run llama.cpp without its extra weight buffers (AMX / repacked): its "
                         "AMX kernels crash on some virtual machines with AMX")
    args = ap.parse_args(argv)
    ks = [int(x) for x in args.streams.split(",")]
    words = "the quick brown fox jumps over a lazy dog while seven wise owls watch".split()
    prompt = " ".join(words[i % len(words)] for i in range(args.prompt_tokens))  # ~1 token a word
    body = dict(prompt=prompt, max_tokens=args.tokens, temperature=0, stream=True)
    print(f"load average before: {os.getloadavg()}", flush=True)

    gen = generate_speed(args.model, args.threads, prompt, args.tokens)
    print(f"Model.generate single stream: {gen:.2f} tok/s", flush=True)

    rows = {}
    port = free_port()
    proc = start_ours(args, port, max(ks))
    try:
        wait_ready(port, proc, "/health")
        run_load(port, 1, dict(body, max_tokens=8, ignore_eos=True))   # warm up
        for k in ks:
            rows[("qwen3c", k)] = run_load(port, k, dict(body, ignore_eos=True))
            print("qwen3c", rows[("qwen3c", k)], flush=True)
        if args.schema:
            schema = {"type": "array", "minItems": 200, "items": {
                "type": "object", "additionalProperties": False, "required": ["id", "name", "ok"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string", "maxLength": 12},
                               "ok": {"type": "boolean"}}}}
            chat = dict(messages=[{"role": "user", "content": "Make a list"}], max_tokens=args.tokens,
                        temperature=0, stream=True, ignore_eos=True,
                        chat_template_kwargs={"enable_thinking": False})
            free = run_load(port, 1, chat, "/v1/chat/completions")
            fmt = {"type": "json_schema", "json_schema": {"name": "list", "schema": schema}}
            run_load(port, 1, dict(chat, max_tokens=4, response_format=fmt), "/v1/chat/completions")
            con = run_load(port, 1, dict(chat, response_format=fmt), "/v1/chat/completions")
            print(f"schema: {con['per']:.2f} tok/s with, {free['per']:.2f} without "
                  f"({con['per'] / free['per']:.1%})", flush=True)
    finally:
        proc.terminate()
        proc.wait()

    if args.vs_llama_cpp_python:
        port = free_port()
        proc = start_llama(args, port)
        try:
            wait_ready(port, proc, "/v1/models")
            bias = {"151643": -100, "151645": -100}
            lbody = dict(body, logit_bias=bias)
            run_load(port, 1, dict(lbody, max_tokens=8))
            for k in ks:
                rows[("llama", k)] = run_load(port, k, lbody)
                print("llama-cpp-python", rows[("llama", k)], flush=True)
        finally:
            proc.terminate()
            proc.wait()

    print(f"\nload average after: {os.getloadavg()}\n")
    one = rows[("qwen3c", ks[0])]["agg"] if ks[0] == 1 else None
    print("| streams | qwen3c aggregate tok/s | per stream | TTFT mean / max (s) | x single |"
          + (" llama-cpp-python aggregate | qwen3c / llama |" if args.vs_llama_cpp_python else ""))
    print("|---|---|---|---|---|" + ("---|---|" if args.vs_llama_cpp_python else ""))
    for k in ks:
        r = rows[("qwen3c", k)]
        line = (f"| {k} | {r['agg']:.1f} | {r['per']:.1f} | {r['ttft']:.2f} / {r['ttft_max']:.2f} | "
                f"{r['agg'] / one:.2f}x |" if one else f"| {k} | {r['agg']:.1f} | {r['per']:.1f} | "
                f"{r['ttft']:.2f} / {r['ttft_max']:.2f} | - |")
        if args.vs_llama_cpp_python:
            lr = rows[("llama", k)]
            line += f" {lr['agg']:.1f} | {r['agg'] / lr['agg']:.2f}x |"
        print(line)
    if one:
        print(f"\nsingle stream through the server / Model.generate: {one / gen:.1%} "
              f"({one:.2f} vs {gen:.2f} tok/s)")


if __name__ == "__main__":
    main()
