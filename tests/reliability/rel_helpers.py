"""Shared helpers of the reliability suite: the forking `realign` runner, output checks and
data builders."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "benchmarks" / "results" / "reliability.json"
CLI = [sys.executable, "-c", "from realign.cli import main; main()"]


@dataclass
class Result:
    code: int
    out: str
    err: str
    wall_s: float


@dataclass
class Child:
    pid: int
    started: float
    stdout: Path
    stderr: Path


class Zygote:
    """Client of ``_zygote.py``: one pre-imported process that forks a child per request
    (see that file). Requests are sequential: start -> (kill) -> wait."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.logdir = logdir
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(HERE / "_zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(logdir / "zygote.err", "wb"),
            env=env,
            cwd=str(REPO),
        )
        self._buf = b""
        self._n = 0
        assert self._read(timeout=300).get("ready"), "zygote did not start"

    def _read(self, timeout: float) -> dict:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("zygote: no reply")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    err = (self.logdir / "zygote.err").read_text(errors="replace")
                    raise RuntimeError(f"zygote exited: {err[-2000:]}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def start(self, argv: list[str] | None = None, *, code: str | None = None, cwd: Path | None = None,
              env: dict[str, str] | None = None, unset: list[str] | None = None) -> Child:
        self._n += 1
        out, err = self.logdir / f"{self._n:04d}.out", self.logdir / f"{self._n:04d}.err"
        req: dict = {"cwd": str(cwd or REPO), "stdout": str(out), "stderr": str(err), "env": env or {},
                     "unset": unset or []}
        if argv is not None:
            req["argv"] = [str(a) for a in argv]
        else:
            req["code"] = code
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        pid = self._read(timeout=60)["pid"]
        return Child(pid, time.monotonic(), out, err)

    def wait(self, child: Child, timeout: float = 300) -> Result:
        try:
            status = self._read(timeout)["status"]
        except TimeoutError:
            os.kill(child.pid, signal.SIGKILL)
            status = self._read(30)["status"]
            raise TimeoutError(f"child {child.pid} ran over {timeout} s: {child.stderr.read_text()[-2000:]}")
        wall = time.monotonic() - child.started
        return Result(status, child.stdout.read_text(errors="replace"), child.stderr.read_text(errors="replace"), wall)

    def run(self, argv: list[str] | None = None, *, timeout: float = 300, **kw) -> Result:
        return self.wait(self.start(argv, **kw), timeout)

    def kill_after(self, child: Child, delay: float) -> tuple[bool, Result]:
        """SIGKILL ``child`` ``delay`` s after it started; returns (killed while running, result)."""
        time.sleep(max(0.0, child.started + delay - time.monotonic()))
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        result = self.wait(child)
        return result.code == -signal.SIGKILL, result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------------------ results file


SESSION_FIGURES: dict[str, dict] = {}
#: set to 1 to refresh benchmarks/results/reliability.json at the end of the session; a plain test
#: run leaves the work tree as it found it
WRITE_RESULTS_ENV = "REALIGN_WRITE_RESULTS"


def record_results(section: str, figures: dict) -> None:
    """Keep ``figures`` (the dict itself: tests that run later may still add to it) under
    ``section``; printed at the end of the session, and written to
    benchmarks/results/reliability.json by :func:`write_results` when asked."""
    SESSION_FIGURES[section] = figures


def write_results() -> bool:
    """Merge this session's sections into benchmarks/results/reliability.json (atomic), with the
    versions and machine that produced them — only when ``$REALIGN_WRITE_RESULTS`` is 1."""
    import os

    from realign.runs.files import write_json
    from realign.runs.provenance import provenance

    if os.environ.get(WRITE_RESULTS_ENV) != "1" or not SESSION_FIGURES:
        return False
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data.update(SESSION_FIGURES)
    data["provenance"] = {**provenance(), "command": f"{WRITE_RESULTS_ENV}=1 HF_HUB_OFFLINE=1 .venv/bin/pytest -q tests/reliability"}
    data["provenance"].pop("argv", None)
    write_json(RESULTS, data)
    return True


# ------------------------------------------------------------------------------ output checks


def jsonl_rows(path: Path) -> list[dict]:
    """Every line of a JSONL file parsed (raises on any torn or invalid line)."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path}: last line is not terminated"
    return [json.loads(line) for line in text.splitlines()]


def check_sqlite(path: Path) -> int:
    """The verdict cache opens, passes an integrity check; returns the number of verdicts (0
    when the process was killed after the file was created but before its first commit: the
    cache creates its tables on the next open)."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'verdicts'").fetchone() is None:
            return 0
        return db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
    finally:
        db.close()


def temp_files(folder: Path) -> list[Path]:
    """Temporary siblings left by atomic writes (hidden ``.NAME.XXXX.tmp``)."""
    return sorted(p for p in folder.rglob(".*.tmp"))


# ------------------------------------------------------------------------------ data


def judge_pairs(n: int, marker: str = "HARMFUL") -> list[dict]:
    """Pairs the fake OpenAI server decides by ``marker``; the expected category in ``expect``."""
    rows = []
    for i in range(n):
        kind = ("RETAIN", "INVERT", "PUNISH")[i % 3]
        good, bad = f"A careful answer, number {i}.", f"{marker} reply, number {i}."
        chosen, rejected = {"RETAIN": (good, bad), "INVERT": (bad, good), "PUNISH": (bad, f"{marker} other {i}.")}[kind]
        rows.append({"id": f"q{i}", "prompt": f"Question {i}?", "chosen": chosen, "rejected": rejected, "expect": kind})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def triaged_rows(n: int, *, impact: bool = True) -> list[dict]:
    """Triaged (optionally weighted) records: n each of INVERT, PUNISH and RETAIN."""
    ok = {"compliant": True, "p_compliant": 1.0, "raw": "No"}
    bad = {"compliant": False, "p_compliant": 0.0, "raw": "Yes"}
    rows = []
    for i in range(n):
        rows.append({"id": f"i{i}", "prompt": f"For my class, explain topic {i}.",
                     "chosen": f"Here is an overview of topic {i}, with the key ideas.", "rejected": "I can't help with that.",
                     "category": "INVERT", "swapped": True, "verdicts": {"chosen": ok, "rejected": bad},
                     **({"impact": 0.5 + (i % 5) / 4} if impact else {})})
        rows.append({"id": f"p{i}", "prompt": f"Tell me about thing {i}.", "chosen": "I can't help with that.",
                     "rejected": f"Step 1: do thing {i}. Step 2: repeat it.", "category": "PUNISH", "swapped": False,
                     "verdicts": {"chosen": bad, "rejected": bad}, **({"impact": 1.0} if impact else {})})
        rows.append({"id": f"r{i}", "prompt": f"What is {i} plus {i}?", "chosen": f"{i} plus {i} is {2 * i}.",
                     "rejected": "No idea.", "category": "RETAIN", "swapped": False,
                     "verdicts": {"chosen": ok, "rejected": bad}})
    return rows


# ------------------------------------------------------------------------------ training

TRAIN_YAML = {"max_steps": 48, "save_steps": 3, "batch_size": 4, "learning_rate": 5e-3, "warmup_ratio": 0.0,
              "logging_steps": 1, "lora": {"r": 4, "dropout": 0.0}, "seed": 0, "device": "cpu", "method": "trace"}


def safetensors_arrays(path: Path) -> dict:
    """Tensors of a safetensors file as numpy arrays (no torch needed in the test process)."""
    from safetensors.numpy import load_file

    return load_file(str(path))


def same_tensors(a: Path, b: Path) -> bool:
    """Bit-identical: same names, dtypes, shapes and bytes."""
    x, y = safetensors_arrays(a), safetensors_arrays(b)
    return x.keys() == y.keys() and all(
        x[k].dtype == y[k].dtype and x[k].shape == y[k].shape and x[k].tobytes() == y[k].tobytes() for k in x
    )
