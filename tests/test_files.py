"""Atomic writes: a killed writer's temporary file is removed by the next write to the same path."""

import os
import signal
import subprocess
import sys
import time

from realign.runs.files import _HOST, remove_abandoned_temps, write_json


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_write_removes_only_abandoned_temps(tmp_path):
    out = tmp_path / "out.json"
    dead = tmp_path / f".out.json.{_HOST}-{dead_pid()}.abc.tmp"
    live = tmp_path / f".out.json.{_HOST}-{os.getpid()}.def.tmp"  # a writer still running
    other_host = tmp_path / f".out.json.elsewhere-{dead_pid()}.ghi.tmp"  # cannot tell: kept
    old_unowned, new_unowned = tmp_path / ".out.json.jkl.tmp", tmp_path / ".out.json.mno.tmp"
    other_file = tmp_path / f".other.json.{_HOST}-{dead_pid()}.pqr.tmp"
    for p in (dead, live, other_host, old_unowned, new_unowned, other_file):
        p.write_text("partial")
    hour_ago = time.time() - 3700
    os.utime(old_unowned, (hour_ago, hour_ago))
    write_json(out, {"a": 1})
    assert not dead.exists() and not old_unowned.exists()
    assert live.exists() and other_host.exists() and new_unowned.exists() and other_file.exists()
    assert out.read_text() == '{\n  "a": 1\n}\n'
    assert remove_abandoned_temps(out) == []


def test_sigkilled_writer_leaves_a_temp_that_the_next_run_removes(tmp_path):
    out = tmp_path / "rows.jsonl"
    code = (
        "import sys, time\nfrom realign.runs.files import write_jsonl\n"
        "def rows():\n    yield {'n': 0}\n    print('writing', flush=True)\n    time.sleep(60)\n    yield {'n': 1}\n"
        f"write_jsonl({str(out)!r}, rows())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"  # the temp file exists now
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and not out.exists()
    write_json(out, [])
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
