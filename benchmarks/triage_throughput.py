"""Triage judge throughput: OpenAIJudge against the local OpenAI-compatible test server.

Judges N distinct (prompt, response) items with simulated per-request latency at a given
concurrency, twice: on a clean server, and on one that injects faults (429 with
Retry-After, 500, stalls past the client timeout, malformed bodies, dropped connections).
Reports judgements/s against the latency-bound ceiling (concurrency / latency), HTTP calls
against the minimum (one per item), and checks that the faulty run gives verdicts identical
to the clean run with every response answered successfully exactly once.

The server runs in its own process by default (a real endpoint never shares the client's
CPU or GIL); ``--in-process`` puts it in a thread of this process instead.

    .venv/bin/python benchmarks/triage_throughput.py            # N=2000, concurrency 16, 200 ms
    .venv/bin/python benchmarks/triage_throughput.py --n 200 --skip-faults

Writes benchmarks/results/triage_throughput.json and .md; prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

from realign import __version__ as realign_version
from realign.config import JudgeConfig, resolved
from realign.judges.base import JudgeItem
from realign.judges.openai_compat import OpenAIJudge
from realign.policy import Policy
from realign.testing import FakeOpenAIServer

NAME = "triage_throughput"
MARKER = "step-by-step instructions"
FAULT_RATES = {"rate_429": 0.20, "rate_500": 0.10, "rate_timeout": 0.05, "rate_malformed": 0.05, "rate_drop": 0.02}

POLICY = Policy(
    name="benchmark-policy",
    text="\n".join(
        [
            "Tier 1 (never allowed): operational uplift for weapons, malware, or self-harm methods.",
            "Tier 2 (context decides): security, medication, and chemistry questions are answered for",
            "education, therapy or professional work, with safety framing and a referral where relevant.",
            "Tier 3 (always allowed): general knowledge, everyday advice, creative writing.",
            "A flat refusal of an allowed request is NON-compliant. Responses must not moralise.",
        ]
        * 4
    ),
)

_TOPICS = ["network security", "medication dosage", "home chemistry", "lock picking", "stress at work",
           "password storage", "cooking with lye", "malware analysis", "first aid", "fireworks"]
_CONTEXTS = ["for my university class", "as a nurse", "for a novel I am writing", "", "as a pentester"]
_SENTENCES = [
    "Here is an overview of the main ideas and the safety considerations around them.",
    "The key point is to understand the risks before doing anything in practice.",
    "Professionals in this field follow established guidelines and use protective measures.",
    "If you are unsure, consult a qualified expert or a trusted resource.",
    "Many people find it helpful to start with the basics and build up gradually.",
    "Keep records of what you do so you can review and improve your approach.",
]


def make_items(n: int, seed: int) -> list[JudgeItem]:
    """N distinct pairs of realistic length (~40-word prompts, ~120-word responses); 1/3 violating."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        topic, context = rng.choice(_TOPICS), rng.choice(_CONTEXTS)
        prompt = f"Request #{i}: Can you explain {topic} {context}? I would like a detailed answer. " + " ".join(
            rng.sample(_SENTENCES, 2)
        )
        body = " ".join(rng.choice(_SENTENCES) for _ in range(8))
        if i % 3 == 0:
            body += f" Now here are {MARKER} that go beyond what is safe."
        items.append(JudgeItem(prompt=prompt, response=f"Answer #{i} on {topic}. {body}"))
    return items


# ------------------------------------------------------------------------ server (own process)


def _serve(conn: Any, options: dict[str, Any]) -> None:
    server = FakeOpenAIServer(**options)
    conn.send(server.start())
    conn.recv()  # wait for the stop request
    counters = {
        "total": server.total,
        "faults": dict(server.faults),
        "answered": dict(server.answered),
    }
    server.stop()
    conn.send(counters)


class ServerHandle:
    """A FakeOpenAIServer in a child process (default) or in this process."""

    def __init__(self, options: dict[str, Any], in_process: bool) -> None:
        self.options = dict(options, record=False)
        self.in_process = in_process
        self.counters: dict[str, Any] = {}

    def __enter__(self) -> str:
        if self.in_process:
            self._server = FakeOpenAIServer(**self.options)
            return self._server.start()
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.options), daemon=True)
        self._proc.start()
        return self._conn.recv()

    def __exit__(self, *exc: object) -> None:
        if self.in_process:
            s = self._server
            self.counters = {"total": s.total, "faults": dict(s.faults), "answered": dict(s.answered)}
            s.stop()
            return
        self._conn.send("stop")
        self.counters = self._conn.recv()
        self._proc.join(timeout=10)


# ------------------------------------------------------------------------ one run


def run(items: list[JudgeItem], config: JudgeConfig, server_options: dict[str, Any], in_process: bool) -> dict:
    arrivals: list[float] = []

    def on_verdict(i: int, verdict: Any) -> None:  # where the triage caches each verdict as it arrives
        arrivals.append(time.perf_counter())

    handle = ServerHandle(server_options, in_process)
    with handle as url:
        judge = OpenAIJudge(config.model_copy(update={"base_url": url}))
        wall0, cpu0 = time.perf_counter(), time.process_time()
        verdicts = judge.judge(items, POLICY, on_verdict=on_verdict)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    counters = handle.counters
    answered = counters["answered"]
    done = sorted(t - wall0 for t in arrivals)

    def until(q: float) -> float:  # seconds until a fraction q of the verdicts had arrived
        return round(done[max(0, math.ceil(q * len(done)) - 1)], 3)

    return {
        "verdicts": verdicts,
        "wall_s": round(wall, 3),
        "judgements_per_s": round(len(items) / wall, 2),
        "client_cpu_ms_per_judgement": round(1000 * cpu / len(items), 3),
        "calls": judge.calls,
        "min_calls": len(items),
        "calls_per_judgement": round(judge.calls / len(items), 3),
        "retries": judge.client.retries,
        "server_requests": counters["total"],
        "server_faults": dict(sorted(counters["faults"].items())),
        "answered_exactly_once": all(answered.get(it.response, 0) == 1 for it in items)
        and sum(answered.values()) == len(items),
        "callbacks": len(arrivals),
        "seconds_to_50_90_99_100_percent": [until(0.5), until(0.9), until(0.99), until(1.0)],
        "judgements_per_s_first_99_percent": round(math.ceil(0.99 * len(items)) / until(0.99), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="distinct items to judge")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per request (s)")
    parser.add_argument("--timeout", type=float, default=1.0, help="client timeout per request (s)")
    parser.add_argument("--retry-after", type=float, default=0.5, help="Retry-After sent with 429s (s)")
    parser.add_argument("--max-retries", type=int, default=20, help="client retries per request")
    parser.add_argument("--backoff-base", type=float, default=0.5, help="first retry delay (s), doubling")
    parser.add_argument("--backoff-max", type=float, default=10.0, help="longest retry delay (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-faults", action="store_true", help="only the clean run")
    parser.add_argument("--in-process", action="store_true", help="run the server in this process")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)

    import openai

    start = time.perf_counter()
    items = make_items(args.n, args.seed)
    config = JudgeConfig(
        backend="openai",
        model="bench-judge",
        base_url="http://127.0.0.1:1/v1",  # replaced by each run's server
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        max_retries=args.max_retries,
        backoff_base_s=args.backoff_base,
        backoff_max_s=args.backoff_max,
    )
    base_server = {"latency_s": args.latency, "seed": args.seed, "markers": [MARKER], "timeout_sleep_s": 5.0}
    ceiling = args.concurrency / args.latency if args.latency > 0 else float("inf")

    runs: dict[str, dict] = {}
    runs["clean"] = run(items, config, base_server, args.in_process)
    if not args.skip_faults:
        faulty = dict(base_server, retry_after_s=args.retry_after, **FAULT_RATES)
        runs["faults"] = run(items, config, faulty, args.in_process)

    clean_verdicts = runs["clean"].pop("verdicts")
    expected = [MARKER not in it.response for it in items]
    checks = {"clean_verdicts_correct": [v.compliant for v in clean_verdicts] == expected}
    if "faults" in runs:
        checks["fault_verdicts_identical_to_clean"] = runs["faults"].pop("verdicts") == clean_verdicts
    for name, r in runs.items():
        r["fraction_of_ceiling"] = round(r["judgements_per_s"] / ceiling, 3) if ceiling != float("inf") else None
        checks[f"{name}_answered_exactly_once"] = r["answered_exactly_once"]

    result = {
        "benchmark": NAME,
        "settings": {
            "n": args.n,
            "concurrency": args.concurrency,
            "latency_s": args.latency,
            "client_timeout_s": args.timeout,
            "retry_after_s": args.retry_after,
            "fault_rates": FAULT_RATES if "faults" in runs else None,
            "seed": args.seed,
            "server": "in-process thread" if args.in_process else "separate process",
            "ceiling_judgements_per_s": ceiling,
            "judge_config": {k: v for k, v in resolved(config).items() if k != "base_url"},
        },
        "runs": runs,
        "checks": checks,
        "versions": {
            "python": platform.python_version(),
            "openai": openai.__version__,
            "trace_realign": realign_version,
        },
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
        "wall_s": round(time.perf_counter() - start, 2),
    }

    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{NAME}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# Triage judge throughput ({args.n} items, concurrency {args.concurrency}, "
        f"{args.latency * 1000:g} ms latency, server: {result['settings']['server']})",
        "",
        f"Ceiling (concurrency / latency): {ceiling:.0f} judgements/s. "
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, openai {openai.__version__}.",
        "",
        "| run | judgements/s | of ceiling | wall s | s to 50/90/99 % | judgements/s first 99 % | calls | min calls "
        "| calls/judgement | client CPU ms/judgement | faults |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in runs.items():
        faults = ", ".join(f"{k}: {v}" for k, v in r["server_faults"].items()) or "-"
        share = "-" if r["fraction_of_ceiling"] is None else f"{r['fraction_of_ceiling']:.0%}"
        lines.append(
            f"| {name} | {r['judgements_per_s']:.1f} | {share} | {r['wall_s']:.1f} | "
            f"{' / '.join(f'{x:.1f}' for x in r['seconds_to_50_90_99_100_percent'][:3])} | "
            f"{r['judgements_per_s_first_99_percent']:.1f} | "
            f"{r['calls']} | {r['min_calls']} | {r['calls_per_judgement']:.2f} | "
            f"{r['client_cpu_ms_per_judgement']:.2f} | {faults} |"
        )
    lines += ["", "Checks: " + ", ".join(f"{k} = {v}" for k, v in checks.items()), ""]
    (args.out_dir / f"{NAME}.md").write_text("\n".join(lines), encoding="utf-8")

    summary = f"{NAME}: clean {runs['clean']['judgements_per_s']:.1f} judgements/s ({runs['clean']['calls']} calls / {args.n})"
    if "faults" in runs:
        f = runs["faults"]
        summary += f"; faults {f['judgements_per_s']:.1f} judgements/s ({f['calls']} calls / {args.n})"
    summary += f"; checks {'ok' if all(checks.values()) else 'FAILED'}"
    print(summary)
    return result


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(result["checks"].values()) else 1)
