"""Benchmark the LLM service: measured TTFT and TPOT against the cost model, and under load.

Run ``python experiments/bench_llm_service.py`` (``--quick`` for a smoke run). It starts
``python -m dora_rl.serve --scenario envs/tiny_llm.yaml --http 127.0.0.1:0 --time-scale 4``
and streams completions with the card's prompt and output lengths (``/v1/completions``, a
31-byte prompt is 32 tokens with BOS), timing each token where a client sees it:

- *one client*: requests one after another on two fixed plans (the whole model on ``fast``;
  three stages ``slow | mid | fast`` over the WiFi), their median TTFT and TPOT (in the card's
  seconds: wall / time scale) against the cost model's figures of the same plan;
- *50 clients*: 50 concurrent clients for 60 s, each sending its next request when the last
  ended, on the plan the ``static`` controller serves; errors, p50 and p95 TTFT and TPOT
  (these include waiting for one of the service's 8 request slots and sharing the devices).

Target: one client within 15 % of the cost model; 50 clients: no error. Writes
``llm_service.{md,json}`` under ``--out`` (or, with ``--update-results``, ``experiments/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from dora_rl.benchmark.outputs import add_output_options, output_folder
from dora_rl.costmodel import CostModel
from dora_rl.runtime.control import parse_plan
from dora_rl.scenarios import load

RESULTS = Path(__file__).resolve().parent / "results"
CARD = "envs/tiny_llm.yaml"
TARGET = 0.15
PLANS = ("8:fast", "3:slow,6:mid,8:fast")


class Service:
    """``serve --http`` in a subprocess, stopped on exit."""

    def __init__(self, time_scale: float, plan: str | None) -> None:
        argv = [sys.executable, "-m", "dora_rl.serve", "--scenario", CARD, "--http",
                "127.0.0.1:0", "--time-scale", str(time_scale), "--progress", "off"]
        argv += ["--plan", plan] if plan else []
        env = dict(os.environ, TORCH_CPP_LOG_LEVEL="ERROR")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if not found:
            self.proc.kill()
            raise RuntimeError(f"serve did not start: {line!r} {self.proc.communicate()[1]}")
        self.url = f"http://127.0.0.1:{found.group(1)}"

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_: object) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def stream_once(client: httpx.Client, prompt: str, max_tokens: int,
                time_scale: float) -> tuple[float, float | None]:
    """One streamed completion: (TTFT, TPOT) in the card's seconds (TPOT None for one token)."""
    start = time.perf_counter()
    times = []
    with client.stream("POST", "/v1/completions",
                       json={"model": "chat", "prompt": prompt, "max_tokens": max_tokens,
                             "stream": True}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk["choices"][0]["finish_reason"] is None:  # one chunk per token
                    times.append(time.perf_counter())
    if not times:
        raise RuntimeError("no token streamed")
    ttft = (times[0] - start) / time_scale
    tpot = (times[-1] - times[0]) / (len(times) - 1) / time_scale if len(times) > 1 else None
    return ttft, tpot


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def one_client(time_scale: float, requests: int, prompt: str, tokens: int) -> list[dict[str, Any]]:
    """Median TTFT and TPOT of sequential requests on each of :data:`PLANS`, and the model's."""
    card = load(CARD)
    model = CostModel(card)
    names = [d.name for d in card.devices]
    rows = []
    for text in PLANS:
        plan = parse_plan(text, names, model.tables.n_layers)
        figures = model.evaluate(plan, model.nominal)
        with Service(time_scale, text) as service, \
                httpx.Client(base_url=service.url, timeout=120.0) as client:
            stream_once(client, prompt, tokens, time_scale)  # warm-up
            got = [stream_once(client, prompt, tokens, time_scale) for _ in range(requests)]
        ttft = statistics.median(t for t, _ in got) * 1e3
        tpot = statistics.median(p for _, p in got if p is not None) * 1e3
        model_ttft, model_tpot = figures["ttft_s"] * 1e3, figures["tpot_s"] * 1e3
        row = {"plan": text, "requests": requests, "ttft_ms": round(ttft, 2),
               "model_ttft_ms": round(model_ttft, 2),
               "ttft_error_pct": round(100 * (ttft / model_ttft - 1), 1),
               "tpot_ms": round(tpot, 3), "model_tpot_ms": round(model_tpot, 3),
               "tpot_error_pct": round(100 * (tpot / model_tpot - 1), 1)}
        row["within_15pct"] = abs(ttft / model_ttft - 1) <= TARGET and \
            abs(tpot / model_tpot - 1) <= TARGET
        print(row, flush=True)
        rows.append(row)
    return rows


def many_clients(time_scale: float, clients: int, duration_s: float, prompt: str,
                 tokens: int) -> dict[str, Any]:
    """``clients`` concurrent clients for ``duration_s`` on the ``static`` controller's plan."""
    ttfts: list[float] = []
    tpots: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    with Service(time_scale, None) as service:
        stop_at = time.perf_counter() + duration_s

        def client_loop() -> None:
            with httpx.Client(base_url=service.url, timeout=300.0) as client:
                while time.perf_counter() < stop_at:
                    try:
                        ttft, tpot = stream_once(client, prompt, tokens, time_scale)
                    except Exception as error:  # noqa: BLE001 - every failure is counted
                        with lock:
                            errors.append(f"{type(error).__name__}: {error}")
                        continue
                    with lock:
                        ttfts.append(ttft)
                        if tpot is not None:
                            tpots.append(tpot)

        threads = [threading.Thread(target=client_loop) for _ in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    out = {"clients": clients, "duration_s": duration_s, "wall_s": round(wall, 1),
           "completed": len(ttfts), "errors": len(errors), "first_error": errors[0] if errors
           else None, "requests_per_s": round(len(ttfts) / wall, 2)}
    for name, values in (("ttft", ttfts), ("tpot", tpots)):
        out[f"{name}_p50_ms"] = round(_pct(values, 0.5) * 1e3, 2) if values else None
        out[f"{name}_p95_ms"] = round(_pct(values, 0.95) * 1e3, 2) if values else None
    print(out, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_options(parser, RESULTS)
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer, shorter)")
    parser.add_argument("--time-scale", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--requests", type=int, default=10, help="one-client requests per plan")
    args = parser.parse_args()
    args.out = output_folder(args, RESULTS)
    if args.quick:
        args.clients, args.duration, args.requests = 10, 10.0, 3
    job = load(CARD).jobs[0]
    assert job.llm is not None
    prompt = ("The quick brown fox jumps over the lazy dog " * 8)[: job.llm.prompt_tokens - 1]
    tokens = job.llm.output_tokens
    sequential = one_client(args.time_scale, args.requests, prompt, tokens)
    load_row = many_clients(args.time_scale, args.clients, args.duration, prompt, tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "llm_service.json").write_text(json.dumps(
        {"time_scale": args.time_scale, "one_client": sequential, "many_clients": load_row},
        indent=2) + "\n")
    lines = [
        "# LLM service: measured against the cost model, and under load", "",
        f"`serve --http` on `{CARD}` at time scale {args.time_scale:g}; times where an HTTP "
        "client sees each streamed token, in the card's seconds (wall / time scale); prompt "
        f"{job.llm.prompt_tokens} tokens, up to {tokens} output tokens (greedy decoding of "
        "random weights may end earlier at EOS).",
        f"Reproduce: `python experiments/bench_llm_service.py`"
        f"{' --quick' if args.quick else ''}.", "",
        "## One client, requests one after another (median over the requests)", "",
        "| plan | requests | TTFT ms | model TTFT ms | error | TPOT ms | model TPOT ms | error "
        "| within 15 % |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sequential:
        lines.append(f"| `{r['plan']}` | {r['requests']} | {r['ttft_ms']} | {r['model_ttft_ms']}"
                     f" | {r['ttft_error_pct']:+} % | {r['tpot_ms']} | {r['model_tpot_ms']} | "
                     f"{r['tpot_error_pct']:+} % | {'yes' if r['within_15pct'] else 'no'} |")
    r = load_row
    lines += ["", f"## {r['clients']} concurrent clients for {r['duration_s']:g} s "
              "(the `static` controller's plan)", "",
              "| completed | errors | requests/s | TTFT p50 ms | TTFT p95 ms | TPOT p50 ms | "
              "TPOT p95 ms |", "|---|---|---|---|---|---|---|",
              f"| {r['completed']} | {r['errors']} | {r['requests_per_s']} | {r['ttft_p50_ms']} |"
              f" {r['ttft_p95_ms']} | {r['tpot_p50_ms']} | {r['tpot_p95_ms']} |", "",
              "Under load a request first waits for one of the service's 8 request slots "
              "(`max_in_flight`), then shares each device step by step with the others in "
              "flight: TTFT grows with the queue, TPOT with the requests in flight."]
    text = "\n".join(lines) + "\n"
    (args.out / "llm_service.md").write_text(text)
    print(text)
    ok = all(r["within_15pct"] for r in sequential) and load_row["errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
