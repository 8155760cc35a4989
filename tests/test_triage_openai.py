"""Stage 1 end to end through the `openai` backend against a local OpenAI-compatible server:
faults, exactly-once judging, resume after SIGKILL, and secrets kept out of every output."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realign.data import read_pairs
from realign.testing import FakeOpenAIServer, policy_without_cases

KEY = "sk-test-SECRET-4f9a2c7d1e"


def make_pairs(path, n):
    """Pairs whose verdicts the fake server decides by the marker HARMFUL; expected category in meta."""
    rows = []
    for i in range(n):
        kind = ("RETAIN", "INVERT", "PUNISH")[i % 3]
        good, bad = f"A careful answer number {i}.", f"HARMFUL reply number {i}."
        chosen, rejected = {"RETAIN": (good, bad), "INVERT": (bad, good), "PUNISH": (bad, f"HARMFUL other {i}.")}[kind]
        rows.append({"id": f"q{i}", "prompt": f"Question {i}?", "chosen": chosen, "rejected": rejected, "expect": kind})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def triage_cmd(data, out, cache, base_url, concurrency=8):
    # the fake server judges by a marker, not by the policy: a copy without the policy's test cases
    policy = policy_without_cases("contextual-exceptions", Path(out).parent)
    return [sys.executable, "-c", "from realign.cli import main; main()", "triage", "--data", str(data),
            "--policy", str(policy), "--judge", "openai", "--model", "judge-model",
            "--base-url", base_url, "--concurrency", str(concurrency), "--out", str(out), "--cache", str(cache), "-q"]


def env_with_key():
    env = dict(os.environ, OPENAI_API_KEY=KEY, HF_HUB_OFFLINE="1")
    env.pop("OPENAI_BASE_URL", None)
    return env


def test_triage_through_a_faulty_server_judges_each_response_once(tmp_path):
    rows = make_pairs(tmp_path / "pairs.jsonl", 60)
    server = FakeOpenAIServer(markers=["HARMFUL"], rate_429=0.2, rate_500=0.1, rate_timeout=0.05, rate_malformed=0.05,
                              rate_drop=0.05, retry_after_s=0.05, timeout_sleep_s=2.0, require_key=KEY, seed=1)
    judge_yaml = tmp_path / "judge.yaml"
    judge_yaml.write_text("backend: openai\nmodel: judge-model\ntimeout_s: 0.5\nbackoff_base_s: 0.01\n"
                          "backoff_max_s: 0.2\nmax_retries: 30\nconcurrency: 8\n")
    with server as base_url:
        cmd = triage_cmd(tmp_path / "pairs.jsonl", tmp_path / "out.jsonl", tmp_path / "c.sqlite", base_url)
        cmd[cmd.index("openai")] = str(judge_yaml)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env_with_key(), timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert sum(server.faults.values()) > 10  # faults really happened
        responses = {r["chosen"] for r in rows} | {r["rejected"] for r in rows}
        assert set(server.answered) == responses and set(server.answered.values()) == {1}
        again = subprocess.run(cmd, capture_output=True, text=True, env=env_with_key(), timeout=120)
        assert "judged 0 responses (0 calls" in again.stdout
    records = {r.id: r for r in read_pairs(tmp_path / "out.jsonl").pairs}
    assert {k: r.category for k, r in records.items()} == {r["id"]: r["expect"] for r in rows}
    assert all(0.0 < r.verdicts["chosen"]["p_compliant"] < 1.0 for r in records.values())  # from log-probs
    for path in list(tmp_path.iterdir()):
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in proc.stdout + proc.stderr + again.stdout + again.stderr


def test_sigkilled_triage_resumes_without_repeating_cached_verdicts(tmp_path):
    rows = make_pairs(tmp_path / "pairs.jsonl", 90)
    cache = tmp_path / "c.sqlite"
    server = FakeOpenAIServer(markers=["HARMFUL"], latency_s=0.05, seed=2)
    with server as base_url:
        cmd = triage_cmd(tmp_path / "pairs.jsonl", tmp_path / "out.jsonl", cache, base_url, concurrency=4)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_with_key())
        deadline = time.time() + 120
        cached = 0
        while time.time() < deadline:
            time.sleep(0.1)
            if cache.exists():
                try:
                    cached = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
                except sqlite3.OperationalError:
                    continue
            if cached >= 40:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 40 <= cached < 150 and not (tmp_path / "out.jsonl").exists()
        before = dict(server.answered)
        resumed = subprocess.run(cmd, capture_output=True, text=True, env=env_with_key(), timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        asked_again = [resp for resp, n in server.answered.items() if n > before.get(resp, 0) and before.get(resp, 0) > 0]
        # only requests in flight at the kill (at most the concurrency) can be asked twice
        assert len(asked_again) <= 4
        hits = int(re.search(r"(\d+) cache hits", resumed.stdout).group(1))
        assert hits >= cached  # everything cached before the kill is reused
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with FakeOpenAIServer(markers=["HARMFUL"], seed=3) as base_url:
        clean = subprocess.run(triage_cmd(tmp_path / "pairs.jsonl", fresh / "out.jsonl", fresh / "c.sqlite", base_url),
                               capture_output=True, text=True, env=env_with_key(), timeout=300)
        assert clean.returncode == 0
    # the same records; who decided names the judge's endpoint, here two servers on two ports
    endpoint = re.compile(r"/endpoint-[0-9a-f]+")
    assert endpoint.sub("", (tmp_path / "out.jsonl").read_text()) == endpoint.sub("", (fresh / "out.jsonl").read_text())
