"""Judge faults (issue 9, item 1): a 2,000-pair triage through the `openai` backend against
the local OpenAI-compatible server injecting 20 % 429s, 10 % 500s, 5 % timeouts, 5 % malformed
bodies and 5 % dropped connections completes with every verdict identical to a clean run.
Calls made vs the minimum (one per unique response) go to benchmarks/results/reliability.json."""

from __future__ import annotations

import json
import re
import subprocess
import time

import yaml

from realign.testing import FakeOpenAIServer, policy_without_cases
from rel_helpers import CLI, jsonl_rows, judge_pairs, record_results, write_jsonl

PAIRS = 2000
RATES = {"rate_429": 0.20, "rate_500": 0.10, "rate_timeout": 0.05, "rate_malformed": 0.05, "rate_drop": 0.05}
JUDGE_YAML = """backend: openai
model: judge-model
concurrency: 32
timeout_s: 0.5
max_retries: 40
backoff_base_s: 0.01
backoff_max_s: 0.1
"""


def triage(tmp, name, base_url, data, judge_yaml, env):
    folder = tmp / name
    folder.mkdir()
    policy = policy_without_cases("contextual-exceptions", folder)  # the fake judge decides by a marker
    cmd = [*CLI, "triage", "--data", str(data), "--policy", str(policy), "--judge", str(judge_yaml),
           "--base-url", base_url, "--out", str(folder / "triaged.jsonl"), "--cache", str(folder / "cache.sqlite"), "-q"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, wall, json.loads((folder / "triaged.summary.json").read_text())


def test_faulty_judge_gives_the_clean_verdicts(tmp_path, base_env):
    rows = judge_pairs(PAIRS)
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    judge_yaml = tmp_path / "judge.yaml"
    judge_yaml.write_text(JUDGE_YAML)
    clean_yaml = tmp_path / "clean-judge.yaml"  # no timeouts on a busy machine: the clean run is the baseline
    clean_yaml.write_text(JUDGE_YAML.replace("timeout_s: 0.5", "timeout_s: 30"))
    env = dict(base_env, OPENAI_API_KEY="sk-faults-test")
    unique = len({r["chosen"] for r in rows} | {r["rejected"] for r in rows})

    with FakeOpenAIServer(markers=["HARMFUL"], seed=0) as url:
        clean, clean_wall, clean_summary = triage(tmp_path, "clean", url, data, clean_yaml, env)
    faulty_server = FakeOpenAIServer(markers=["HARMFUL"], retry_after_s=0.02, timeout_sleep_s=1.0, seed=1, **RATES)
    with faulty_server as url:
        faulty, faulty_wall, summary = triage(tmp_path, "faulty", url, data, judge_yaml, env)

    # every verdict (compliant, P(compliant) from log-probs, raw answer) identical to the clean run
    # byte-identical records but for the judge's endpoint in decided_by (two servers, two ports)
    endpoint = re.compile(rb"/endpoint-[0-9a-f]+")
    assert endpoint.sub(b"", (faulty / "triaged.jsonl").read_bytes()) == endpoint.sub(b"", (clean / "triaged.jsonl").read_bytes())
    records = jsonl_rows(faulty / "triaged.jsonl")
    assert {r["id"]: r["category"] for r in records} == {r["id"]: r["expect"] for r in rows}
    assert summary["dropped"] == 0 and summary["abstentions"] == 0 and summary["judged"] == unique

    # the faults really happened, at about the configured rates
    total = faulty_server.total
    faults = dict(faulty_server.faults)
    for kind, rate in (("429", 0.20), ("500", 0.10), ("timeout", 0.05), ("malformed", 0.05), ("drop", 0.05)):
        assert abs(faults.get(kind, 0) / total - rate) < 0.03, (kind, faults, total)
    assert set(faulty_server.answered) == set(faulty_server.seen) and len(faulty_server.answered) == unique
    assert clean_summary["judge_calls"] == unique  # a clean run makes the minimum number of calls
    calls = summary["judge_calls"]
    assert calls >= total  # a request on a connection the server had dropped never reaches it
    figures = {
        "pairs": PAIRS,
        "unique_responses": unique,
        "minimum_calls": unique,
        "calls_clean": clean_summary["judge_calls"],
        "calls_with_faults": calls,
        "requests_reaching_server": total,
        "calls_per_judgement": round(calls / unique, 3),
        "answered_more_than_once": sum(1 for n in faulty_server.answered.values() if n > 1),
        "injected": {k: faults.get(k, 0) for k in ("429", "500", "timeout", "malformed", "drop")},
        "configured_rates": {k.removeprefix("rate_"): v for k, v in RATES.items()},
        "verdicts_identical_to_clean": True,
        "wall_s": {"clean": round(clean_wall, 1), "faults": round(faulty_wall, 1)},
        "judge": yaml.safe_load(JUDGE_YAML),
    }
    record_results("judge_faults", figures)
