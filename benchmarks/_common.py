"""Shared pieces of the model benchmarks (impact_speed, train_speed): data, model shapes,
worker subprocesses, peak-memory readings, agreement statistics and result files.

Memory: every measured path runs in its own Python process (``python NAME.py --worker
SPEC.json``), so one path's allocations cannot inflate another's reading. On CPU the figure is
the resident-set high-water mark (``VmHWM`` of ``/proc/self/status``), reset just before the
measured work (``/proc/self/clear_refs`` ← 5), reported as the peak and as the peak minus the
resident set at the reset (the process's imports and interpreter); torch's CPU tensors come
from malloc, so they are in the resident set. On CUDA it is
``torch.cuda.max_memory_allocated`` (reset at the same point).
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

RESULTS = Path(__file__).resolve().parent / "results"

#: Llama-style shapes. ``tiny`` is the synthetic world's bootstrap shape (~1.1M parameters with
#: the world tokenizer); ``realistic`` is a >= 30M-parameter shape, where per-sample passes stop being cheap.
SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"hidden": 128, "layers": 4, "heads": 4, "intermediate": 384},
    "realistic": {"hidden": 512, "layers": 10, "heads": 8, "intermediate": 1536},
}


# --------------------------------------------------------------------------- data


def replace_blocks(readme: Path, blocks: dict[tuple[str, str], list[str]]) -> int:
    """Replace the text between each pair of markers ``readme`` has (``(begin, end)`` -> the
    lines that replace the block, markers included); returns how many were found. A README that
    has none of them is an error (its blocks would silently stay stale)."""
    text, done = readme.read_text(encoding="utf-8"), 0
    for (begin_marker, end_marker), lines in blocks.items():
        begin, end = text.find(begin_marker), text.find(end_marker)
        if begin >= 0 and end > begin:
            text = text[:begin] + "\n".join(lines) + text[end + len(end_marker):]
            done += 1
    if not done:
        raise SystemExit(f"{readme}: none of the blocks {[m[0] for m in blocks]} to regenerate")
    readme.write_text(text, encoding="utf-8")
    return done


def synth_records(n: int, seed: int = 0, shift: str = "synth-contextual", conflict_share: float = 0.75,
                  oracle_share: float = 0.5) -> list:
    """``n`` triaged records from the synthetic world (ground-truth triage under ``shift``):
    ``conflict_share`` of them INVERT and PUNISH in equal numbers, the rest RETAIN; PUNISH
    records keep their oracle response y_c with probability ``oracle_share`` (else dual NPO),
    so every per-sample loss kind occurs. Deterministic in ``seed``."""
    from realign.synth import World, make_pairs, truth_triage
    from realign.data import INVERT, PUNISH, RETAIN

    n_conflict = round(n * conflict_share)
    want = {INVERT: n_conflict // 2, PUNISH: n_conflict - n_conflict // 2}
    want[RETAIN] = n - want[INVERT] - want[PUNISH]
    world = World(seed)
    size = 1000
    while True:
        triaged = truth_triage(make_pairs(world, size), shift, world)
        by = {c: [r for r in triaged if r.category == c] for c in want}
        if all(len(by[c]) >= k for c, k in want.items()):
            break
        size = int(size * 1.2 * max(k / max(1, len(by[c])) for c, k in want.items())) + 100
    rng = random.Random(seed)
    out = []
    for c, k in want.items():
        for r in rng.sample(by[c], k):
            if c == PUNISH and rng.random() >= oracle_share:
                r = replace(r, oracle=None)
            out.append(r)
    rng.shuffle(out)
    return out


def world_tokenizer(seed: int = 0):
    """The tiny byte-level BPE tokenizer trained on the synthetic world's text."""
    from realign.synth import World
    from realign.testing.tiny import tiny_tokenizer

    return tiny_tokenizer(World(seed).corpus())


def lengthen(records: Sequence, tokenizer, low: int, high: int, seed: int = 0) -> list:
    """Records whose every (prompt, response) sequence is ``low``–``high`` tokens: the prompt
    gets other prompts appended as background, each response further sentences of responses of
    the same kind. Only the length matters to the speed benchmarks, so the text is a collage of
    the world's own sentences."""
    from realign.data import prompt_text, response_text
    from realign.modeling.sequences import encode

    rng = random.Random(seed)
    prompts = [prompt_text(r.prompt) for r in records]
    responses = [response_text(x) for r in records for x in (r.chosen, r.rejected)]

    def grow(text: str, pool: list[str], until) -> str:
        while not until(text):
            text = f"{text} {rng.choice(pool)}"
        return text

    out = []
    for r in records:
        target = rng.randint(low, high)
        prompt = grow(prompt_text(r.prompt), prompts, lambda t: len(tokenizer(t)["input_ids"]) >= 0.4 * target)

        def long_enough(t: str, prompt=prompt, target=target) -> bool:
            return len(encode(tokenizer, prompt, t, 10 * high).ids) >= target

        fields = {"prompt": prompt}
        for side in ("chosen", "rejected", "oracle"):
            value = getattr(r, side)
            if value is not None:
                fields[side] = grow(response_text(value), responses, long_enough)
        out.append(replace(r, **fields))
    return out


def token_stats(records: Sequence, tokenizer, max_length: int) -> dict:
    from realign.modeling.sequences import encode

    lengths = [len(encode(tokenizer, r.prompt, x, max_length).ids) for r in records for x in (r.chosen, r.rejected)]
    lengths.sort()
    return {"sequences": len(lengths), "mean_tokens": round(sum(lengths) / len(lengths), 1),
            "min_tokens": lengths[0], "median_tokens": lengths[len(lengths) // 2], "max_tokens": lengths[-1]}


def save_model(directory: Path, tokenizer, shape: dict, seed: int = 0, attn: str = "sdpa") -> tuple[Path, int]:
    """A randomly initialised Llama-style model of ``shape`` saved with its tokenizer; returns
    (path, parameter count)."""
    from realign.testing.tiny import save_tiny, tiny_llama

    model = tiny_llama(tokenizer, seed=seed, attn_implementation=attn, **shape)
    n = sum(p.numel() for p in model.parameters())
    save_tiny(directory, tokenizer=tokenizer, model=model)
    return directory, n


# --------------------------------------------------------------------------- workers


def run_worker(script: str | Path, spec: dict, threads: int, timeout: float | None = None,
               stream_stderr: bool = False) -> dict:
    """Run ``script --worker SPEC`` in a fresh Python process and return its JSON result.
    ``stream_stderr``: the worker's stderr goes to this process's as it is written (the progress
    of a worker that runs for hours) instead of into the error message of a failure."""
    with tempfile.TemporaryDirectory(prefix="realign-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps({**spec, "result": str(out_path)}), encoding="utf-8")
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
        proc = subprocess.run([sys.executable, str(script), "--worker", str(spec_path)], env=env,
                              stdout=subprocess.PIPE, stderr=None if stream_stderr else subprocess.PIPE,
                              text=True, timeout=timeout)
        if proc.returncode != 0 or not out_path.exists():
            said = "(its stderr is above)" if stream_stderr else proc.stderr[-4000:]
            raise RuntimeError(f"worker {spec.get('path')} failed ({proc.returncode}):\n{said}")
        return json.loads(out_path.read_text(encoding="utf-8"))


def worker_spec(argv: Sequence[str]) -> dict | None:
    if len(argv) >= 2 and argv[0] == "--worker":
        return json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    return None


def finish_worker(spec: dict, result: dict) -> None:
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")


class PeakMemory:
    """Peak memory of the work done between :meth:`reset` and :meth:`read` (module docstring)."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.base_rss = 0

    @staticmethod
    def _status(field: str) -> int:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def reset(self) -> None:
        import gc

        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base_cuda = torch.cuda.memory_allocated()
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        self.base_rss = self._status("VmRSS")

    def read(self) -> dict:
        peak = self._status("VmHWM")
        out = {"rss_before_mb": mb(self.base_rss), "rss_peak_mb": mb(peak), "rss_peak_increase_mb": mb(peak - self.base_rss)}
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            out["cuda_peak_allocated_mb"] = mb(torch.cuda.max_memory_allocated())
            out["cuda_peak_increase_mb"] = mb(torch.cuda.max_memory_allocated() - self.base_cuda)
        return out


def mb(n: float) -> float:
    return round(n / 2**20, 1)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# --------------------------------------------------------------------------- statistics


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (ranks by sort order; the scores are continuous)."""

    def ranks(x):
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0.0] * len(x)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb_ = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb_) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb_) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else float("nan")


def relative_error(reference: Sequence[float], other: Sequence[float]) -> float:
    """‖other − reference‖₂ / ‖reference‖₂ (as the tests measure it)."""
    num = sum((x - y) ** 2 for x, y in zip(reference, other)) ** 0.5
    den = sum(x * x for x in reference) ** 0.5
    return num / den if den else float("nan")


# --------------------------------------------------------------------------- results


def machine(threads: int, device: str = "cpu") -> dict:
    """The machine a benchmark runs on and the load average at its start (other jobs share the
    CPUs; :func:`finish_machine` adds the load at the end)."""
    info = {"cpus": os.cpu_count(), "torch_threads": threads, "processor": platform.processor() or platform.machine(),
            "device": device, "load_average": load_average()}
    if device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name()
    return info


def finish_machine(info: dict) -> dict:
    """``info`` with the load average at the end of the run."""
    return {**info, "load_average_end": load_average()}


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def command() -> str:
    """The command line that ran this process, with its niceness and thread setting."""
    import shlex

    prefix = [f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"] if "OMP_NUM_THREADS" in os.environ else []
    prefix += [f"nice -n {os.nice(0)}"] if os.nice(0) else []
    return " ".join([*prefix, "python", shlex.join(sys.argv)])


def results_name(name: str, device: str) -> str:
    """``NAME`` for CPU runs, ``NAME_cuda`` (etc.) for accelerator runs, so both can be kept."""
    return name if device == "cpu" else f"{name}_{device.split(':')[0]}"


def write_results(name: str, result: dict, markdown: list[str], out_dir: Path = RESULTS) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out_dir / f"{name}.md").write_text("\n".join(markdown) + "\n", encoding="utf-8")


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def best(values: Sequence[float]) -> float:
    return min(values)


def fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


# --------------------------------------------------------------------------- the sampling baselines at equal budgets

#: The baselines a practitioner would use (issue 30), as benchmark units: a unit name → (the
#: registered method, its judge budget as a multiple of the unit's triage judgements — TRACE's
#: budget: one verdict per distinct response of the old pairs).
BUDGETED = {"self-distill": ("self-distill", 1), "self-distill-4x": ("self-distill", 4),
            "online-dpo": ("online-dpo", 1), "online-dpo-4x": ("online-dpo", 4)}


def registered(unit: str) -> str:
    """The registered method a benchmark unit trains (a budgeted unit's, else the unit itself)."""
    return BUDGETED.get(unit, (unit, 0))[0]


def budget_overrides(unit: str, triaged: Path) -> dict:
    """The ``train`` overrides of a budgeted unit: its judge budget, its multiple of TRACE's —
    the triage judgements of the records in ``triaged`` plus the candidates its corrective
    search judged (the triage summary's ``corrective``, cache hits included: what TRACE's run
    pays); nothing for another unit."""
    if unit not in BUDGETED:
        return {}
    return {"train": {"sampling": {"judge_budget": BUDGETED[unit][1] * trace_judgements(triaged)}}}


def trace_judgements(triaged: Path) -> int:
    """TRACE's judge budget on the triage ``triaged``: one judgement per distinct old (prompt,
    response), plus each corrective candidate judged."""
    from realign.data import read_pairs
    from realign.metrics.costs import corrective_spent
    from realign.runs.stage import summary_path
    from realign.train.sampling import triage_judgements

    summary = json.loads(summary_path(triaged).read_text(encoding="utf-8")) if summary_path(triaged).exists() else {}
    return triage_judgements(read_pairs(str(triaged)).pairs) + int(corrective_spent(summary)["judge_calls"] or 0)
