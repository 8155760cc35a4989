"""Evaluation generation throughput: the server path (``generator: {backend: openai}``) against
local Hugging Face ``generate``, on the same tiny model and the same prompts, in one run.

The "server" is the project's OpenAI-compatible test server answering every request with the
same tiny model's ``generate`` on one prompt at a time (a lock: one request in the model at
once, no continuous batching). So the ratio measures what the server *path* costs us — HTTP,
JSON, concurrency, caching — against batched local generation; it is not what vLLM's batching
gains on a GPU, which this machine cannot show. Both paths must give the same greedy responses.

    .venv/bin/python benchmarks/eval_generation.py            # 256 prompts, 24 new tokens

Writes benchmarks/results/eval_generation.json and .md; prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "eval_generation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="Prompts.")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16, help="Local generate batch size.")
    parser.add_argument("--concurrency", type=int, default=8, help="Server requests in flight.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OPENAI_API_KEY", "sk-local")

    import torch

    from realign import __version__
    from realign.config import EvalConfig, GeneratorConfig
    from realign.modeling.generation import generate
    from realign.evaluate.generators import LocalGenerator, ServerGenerator
    from realign.judges.cache import VerdictCache
    from realign.modeling.sequences import prompt_messages
    from realign.synth import World, make_pairs
    from realign.synth.bootstrap import world_tokenizer
    from realign.testing.openai_server import FakeOpenAIServer
    from realign.testing.tiny import tiny_llama

    torch.manual_seed(0)
    world = World(0)
    tokenizer = world_tokenizer(world)
    model = tiny_llama(tokenizer, hidden=128, layers=4).eval()
    params = sum(p.numel() for p in model.parameters())
    prompts = list(dict.fromkeys(p.prompt for p in make_pairs(world, 4 * args.n)))[: args.n]
    lock = threading.Lock()

    def served(model_name: str, messages: list, max_tokens: int) -> str:
        user = [m["content"] for m in messages if m.get("role") == "user"][-1]
        with lock:  # one request in the model at a time
            return generate(model, tokenizer, [user], max_new_tokens=max_tokens, batch_size=1)[0]

    work = Path(tempfile.mkdtemp(prefix="eval-generation-"))
    settings = EvalConfig(model="tiny", policy="p", prompts="x", out=work / "m.json", max_new_tokens=args.new_tokens,
                          batch_size=args.batch_size)
    rows = {}
    with VerdictCache(work / "local.sqlite") as cache:
        start = time.perf_counter()
        local = LocalGenerator(model, tokenizer, "local", settings, cache, progress=False)(prompts)
        rows["local generate"] = time.perf_counter() - start
    one_by_one = settings.model_copy(update={"batch_size": 1})
    with VerdictCache(work / "local1.sqlite") as cache:
        start = time.perf_counter()
        LocalGenerator(model, tokenizer, "local1", one_by_one, cache, progress=False)(prompts)
        rows["local generate, batch 1 (the server's per-request work)"] = time.perf_counter() - start
    server = FakeOpenAIServer(generate=served, record=False)
    with server as url, VerdictCache(work / "server.sqlite") as cache:
        gen_config = GeneratorConfig(backend="openai", base_url=url, model="tiny", concurrency=args.concurrency)
        start = time.perf_counter()
        remote = ServerGenerator(gen_config, "tiny", settings, cache, progress=False, serves="tiny")(prompts)
        rows["server path"] = time.perf_counter() - start
        start = time.perf_counter()
        again = ServerGenerator(gen_config, "tiny", settings, cache, progress=False, serves="tiny")(prompts)
        rows["server path, rerun (cache)"] = time.perf_counter() - start
    same = sum(a == b for a, b in zip(local, remote))
    result = {
        "prompts": len(prompts),
        "new_tokens": args.new_tokens,
        "model_parameters": params,
        "local_batch_size": args.batch_size,
        "server_concurrency": args.concurrency,
        "seconds": {k: round(v, 3) for k, v in rows.items()},
        "responses_per_s": {k: round(len(prompts) / v, 2) for k, v in rows.items()},
        "server_over_local": round(rows["local generate"] / rows["server path"], 3),
        "server_path_overhead": round(rows["server path"] / rows["local generate, batch 1 (the server's per-request work)"], 3),
        "identical_responses": same,
        "rerun_identical": again == remote,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "version": __version__,
        "command": "python benchmarks/eval_generation.py "
                   f"--n {args.n} --new-tokens {args.new_tokens} --batch-size {args.batch_size} --concurrency {args.concurrency}",
        "note": ("the server answers with the same model's generate, one request at a time (no continuous batching): "
                 "the ratio is the cost of the server path, not vLLM's speed-up"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Evaluation generation throughput ({len(prompts)} prompts, {args.new_tokens} new tokens, "
        f"{params / 1e6:.1f}M-parameter model, CPU)", "",
        "| path | seconds | responses/s |", "|:---|---:|---:|",
        *(f"| {k} | {rows[k]:.2f} | {len(prompts) / rows[k]:.1f} |" for k in rows), "",
        f"Server path / local throughput: {result['server_over_local']:.2f}; server path time / the same "
        f"per-request generation done locally: {result['server_path_overhead']:.2f} (the cost of HTTP, JSON and the "
        f"client). Identical greedy responses: "
        f"{same}/{len(prompts)}. {result['note']}.", "", f"Reproduce: `{result['command']}`", "",
    ]
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines))
    print(f"{NAME}: local {len(prompts) / rows['local generate']:.1f} resp/s, server path "
          f"{len(prompts) / rows['server path']:.1f} resp/s (x{result['server_over_local']:.2f}), "
          f"cached rerun {rows['server path, rerun (cache)']:.2f} s, identical {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
