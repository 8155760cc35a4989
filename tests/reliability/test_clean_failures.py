"""Issue 18, items 2 and 3, beyond the one-line cases of test_bad_inputs.py: a disk that fills
up (outputs and the verdict cache, on a real full tmpfs) is one ``error:`` line and exit status
1 with the earlier outputs kept and no temporary file left; Ctrl-C says how to resume; a
100,000-deep JSON record is skipped under --skip-invalid; ``~`` expands in config paths and
relative paths in a config are taken from the config file's folder.

The disk-full tests mount a small tmpfs in a user and mount namespace of the child process
(Linux; skipped where the kernel does not allow it)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from rel_helpers import record_results, temp_files, write_jsonl

FIGURES: dict[str, dict] = {}
SENTINEL = "SENTINEL: an earlier run's output; must survive a failed run\n"


def pairs(n: int, pad: int = 0) -> list[dict]:
    return [{"id": f"p{i}", "prompt": f"How do I bake bread, question {i}?",
             "chosen": f"Here is an overview of baking, number {i}. " + "x" * pad, "rejected": "I can't help with that."}
            for i in range(n)]


def one_line_error(res, library_warnings: bool = False) -> str:
    """The one ``error:`` line of a failed run (no traceback). ``library_warnings``: lines a
    library warns with during normal training (transformers' FutureWarnings) are allowed too."""
    lines = [line for line in res.err.splitlines() if line.strip()]
    if library_warnings:
        lines = [line for line in lines if not ("Warning: " in line or line.strip() == "warnings.warn(")]
    assert "Traceback" not in res.err + res.out, res.err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------ disk full

FULL_DISK = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x00020000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
    sys.exit(77)
for name, text in (("setgroups", "deny"), ("uid_map", f"0 {UID} 1"), ("gid_map", f"0 {GID} 1")):
    try:
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)
    except OSError:
        sys.exit(77)
libc.mount(b"none", b"/", None, 16384 | (1 << 18), None)  # MS_REC | MS_PRIVATE
if libc.mount(b"tmpfs", MOUNT.encode(), b"tmpfs", 1 if READ_ONLY else 0, f"size={SIZE}".encode()) != 0:  # MS_RDONLY
    sys.exit(77)
for rel in SENTINELS:
    path = os.path.join(MOUNT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(SENTINEL_TEXT)
if not READ_ONLY:
    with open(os.path.join(MOUNT, "filler"), "wb") as fh:  # leave about FREE bytes
        try:
            fh.write(b"\0" * (SIZE - FREE))
        except OSError:
            pass
sys.argv = ["realign", *ARGV]
from realign.cli import main
try:
    main()
finally:
    survivors = {rel: open(os.path.join(MOUNT, rel)).read() == SENTINEL_TEXT for rel in SENTINELS}
    temps = sorted(n for _, _, names in os.walk(MOUNT) for n in names if n.startswith(".") and n.endswith(".tmp"))
    print("STATE " + __import__("json").dumps({"sentinels_kept": survivors, "temp_files": temps}))
"""


def run_on_full_disk(zygote, tmp_path: Path, argv: list[str], sentinels: list[str], size: int, free: int,
                     read_only: bool = False):
    mount = tmp_path / "full"
    mount.mkdir()
    code = FULL_DISK
    for name, value in (("UID", os.getuid()), ("GID", os.getgid()), ("MOUNT", str(mount)), ("SIZE", size),
                        ("FREE", free), ("SENTINELS", sentinels), ("SENTINEL_TEXT", SENTINEL), ("ARGV", argv),
                        ("READ_ONLY", read_only)):
        code = f"{name} = {value!r}\n" + code
    res = zygote.run(code=code, timeout=180)
    if res.code == 77:
        pytest.skip("no user/mount namespace to mount a small tmpfs in")
    state = json.loads(next(line[6:] for line in res.out.splitlines() if line.startswith("STATE ")))
    return res, state, mount


def test_disk_full_on_the_outputs_is_one_line_exit_1_and_the_old_outputs_are_kept(zygote, tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", pairs(300, pad=400))  # ~200 KB of triaged records
    full = tmp_path / "full"
    argv = ["triage", "--data", str(data), "--policy", "contextual-exceptions", "--judge", "rules",
            "--out", str(full / "out" / "triaged.jsonl"), "--cache", str(tmp_path / "cache.sqlite"), "-q"]
    res, state, _ = run_on_full_disk(zygote, tmp_path, argv, ["out/triaged.jsonl", "out/triaged.summary.json"],
                                     size=256 * 1024, free=64 * 1024)
    line = one_line_error(res.__class__(res.code, res.out.split("STATE ")[0], res.err, res.wall_s))
    assert res.code == 1, (res.code, res.err)
    assert "No space left on device" in line and str(full / "out") in line and "rerun the same command" in line, line
    assert all(state["sentinels_kept"].values()), state
    assert state["temp_files"] == [], state
    FIGURES["disk_full_outputs"] = {"exit": res.code, "message": line.replace(str(tmp_path), "<tmp>"), **state}


def test_disk_full_on_the_verdict_cache_is_one_line_exit_1(zygote, tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", pairs(400, pad=300))
    full = tmp_path / "full"
    argv = ["triage", "--data", str(data), "--policy", "contextual-exceptions", "--judge", "rules",
            "--out", str(tmp_path / "out" / "triaged.jsonl"), "--cache", str(full / "cache.sqlite"), "-q"]
    res, state, _ = run_on_full_disk(zygote, tmp_path, argv, ["keep.txt"], size=256 * 1024, free=112 * 1024)
    line = one_line_error(res.__class__(res.code, res.out.split("STATE ")[0], res.err, res.wall_s))
    assert res.code == 1, (res.code, res.err)
    assert "No space left on device" in line and "verdict cache" in line and str(full / "cache.sqlite") in line, line
    assert not (tmp_path / "out" / "triaged.jsonl").exists()
    assert "cannot open" not in line  # it filled up while judging, not before
    FIGURES["disk_full_cache"] = {"exit": res.code, "message": line.replace(str(tmp_path), "<tmp>")}


def test_a_read_only_out_is_refused_before_any_judging(zygote, tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", pairs(3))
    full = tmp_path / "full"
    argv = ["triage", "--data", str(data), "--policy", "contextual-exceptions", "--judge", "rules",
            "--out", str(full / "out" / "triaged.jsonl"), "--cache", str(tmp_path / "cache.sqlite"), "-q"]
    res, state, _ = run_on_full_disk(zygote, tmp_path, argv, [], size=64 * 1024, free=0, read_only=True)
    line = one_line_error(res.__class__(res.code, res.out.split("STATE ")[0], res.err, res.wall_s))
    assert res.code == 2, (res.code, res.err)
    assert f"--out {full}/out/triaged.jsonl cannot be written: {full} is read-only" in line, line
    assert not (tmp_path / "cache.sqlite").exists()  # refused before judging (the cache is opened first)
    FIGURES["read_only_out"] = {"exit": res.code, "message": line.replace(str(tmp_path), "<tmp>")}


# ------------------------------------------------------------------------------ Ctrl-C

SLOW_TRIAGE = r"""
import signal, sys, time
# a test run started in the background inherits SIGINT ignored; a user's terminal delivers it
signal.signal(signal.SIGINT, signal.default_int_handler)
import realign.triage.run
def slow(*args, **kwargs):
    print("in the stage", flush=True)  # the test interrupts only once the command is this far
    time.sleep(60)
realign.triage.run.run = slow
sys.argv = ["realign", *ARGV]
from realign.cli import main
main()
"""


def test_ctrl_c_says_how_to_resume(zygote, tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", pairs(3))
    argv = ["triage", "--data", str(data), "--policy", "contextual-exceptions", "--judge", "rules",
            "--out", str(tmp_path / "t.jsonl"), "--cache", str(tmp_path / "c.sqlite"), "-q"]
    child = zygote.start(code=f"ARGV = {argv!r}\n" + SLOW_TRIAGE)
    deadline = time.monotonic() + 120  # a busy machine imports slowly: wait for the stage, not a fixed time
    while time.monotonic() < deadline and not (child.stdout.exists() and "in the stage" in child.stdout.read_text()):
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGINT)
    res = zygote.wait(child, timeout=60)
    assert res.code == 130, (res.code, res.err)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert lines == ["interrupted — rerun the same command to resume"], res.err
    FIGURES["ctrl_c"] = {"exit": res.code, "message": lines[0]}


# ------------------------------------------------------------------------------ deep JSON


def test_a_100000_deep_record_is_skipped_under_skip_invalid(zygote, tmp_path):
    good = json.dumps(pairs(1)[0])
    deep = '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + ', "chosen": "a", "rejected": "b"}'
    data = tmp_path / "data.jsonl"
    data.write_text(good + "\n" + deep + "\n")
    res = zygote.run(["triage", "--data", data, "--policy", "contextual-exceptions", "--judge", "rules",
                      "--out", tmp_path / "t.jsonl", "--cache", tmp_path / "c.sqlite", "--skip-invalid", "-q"])
    assert res.code == 0 and "Traceback" not in res.err, res.err[-3000:]
    assert f"{data}:2: invalid JSON: nested too deeply" in res.err
    summary = json.loads((tmp_path / "t.summary.json").read_text())
    assert summary["skipped_invalid"] == 1 and summary["counts"]["RETAIN"] == 1


# ------------------------------------------------------------------------------ config paths


def test_config_paths_expand_home_and_resolve_against_the_config_folder(zygote, tmp_path):
    home, folder = tmp_path / "home", tmp_path / "configs"
    home.mkdir()
    folder.mkdir()
    write_jsonl(folder / "pairs.jsonl", pairs(3))
    (folder / "triage.yaml").write_text(
        "data: pairs.jsonl\n"            # beside the config, not in the working directory
        "out: ~/runs/triaged.jsonl\n"    # ~ is the home folder, not a folder named '~'
        "cache: cache/verdicts.sqlite\n"  # relative output: in the config's folder
        "policy: contextual-exceptions\n"  # a packaged name stays one
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    res = zygote.run(["triage", "--config", folder / "triage.yaml", "--judge", "rules", "-q"], cwd=cwd,
                     env={"HOME": str(home)})
    assert res.code == 0, res.err[-3000:]
    assert (home / "runs" / "triaged.jsonl").exists()
    assert (folder / "cache" / "verdicts.sqlite").exists()
    assert not (cwd / "~").exists() and list(cwd.iterdir()) == []
    # flags stay relative to the working directory
    write_jsonl(cwd / "other.jsonl", pairs(2))
    res = zygote.run(["triage", "--config", folder / "triage.yaml", "--judge", "rules", "--data", "other.jsonl",
                      "--out", "t.jsonl", "-q"], cwd=cwd, env={"HOME": str(home)})
    assert res.code == 0, res.err[-3000:]
    assert len((cwd / "t.jsonl").read_text().splitlines()) == 2
    assert temp_files(tmp_path) == []


def test_figures():
    # the dict itself: the checkpoint test below adds its figure after this one runs
    FIGURES["checks"] = ("disk full on outputs, the verdict cache and training checkpoints (a real full tmpfs): exit 1, "
                         "one 'error:' line naming the file, earlier outputs kept, no temporary file left; a read-only "
                         "--out refused before any work; Ctrl-C: exit 130 and the resume line; a 100,000-deep JSON "
                         "record skipped under --skip-invalid; ~ and config-relative paths")
    record_results("clean_failures", FIGURES)


def test_disk_full_while_writing_checkpoints_is_one_line_exit_1(zygote, tiny_model, tmp_path):
    import yaml

    from rel_helpers import TRAIN_YAML, triaged_rows

    data = write_jsonl(tmp_path / "weighted.jsonl", triaged_rows(6))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({**TRAIN_YAML, "max_steps": 6, "save_steps": 1}))
    full = tmp_path / "full"
    argv = ["train", "--config", str(tmp_path / "train.yaml"), "--model", str(tiny_model), "--data", str(data),
            "--out", str(full / "run"), "-q"]
    res, state, _ = run_on_full_disk(zygote, tmp_path, argv, ["keep.txt"], size=1024 * 1024, free=160 * 1024)
    line = one_line_error(res.__class__(res.code, res.out.split("STATE ")[0], res.err, res.wall_s), library_warnings=True)
    assert res.code == 1, (res.code, res.err[-3000:])
    assert "No space left on device" in line and str(full / "run") in line, line
    assert state["temp_files"] == [], state
    FIGURES["disk_full_checkpoints"] = {"exit": res.code, "message": line.replace(str(tmp_path), "<tmp>")}
