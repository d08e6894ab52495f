"""bench's cache directory: bench cache list and clear, its size in bench env, and one process
training a pretrained-weights entry at a time."""

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import write_suite


def _fill(cache: Path) -> None:
    """A pretrained entry of 1000 + 200 bytes and a CPU peak of 50 bytes."""
    (cache / "pretrained").mkdir(parents=True)
    (cache / "pretrained" / "mlp-0123456789abcdef.pt").write_bytes(b"w" * 1000)
    notes = {"key": {"model_size": "tiny", "pretrain_steps": 20, "task": "new-classes"}}
    text = json.dumps(notes).ljust(200)
    (cache / "pretrained" / "mlp-0123456789abcdef.json").write_text(text)
    (cache / "cpu_peak.json").write_text("{}".ljust(50))


def test_cache_list_env_and_clear(tmp_path, bench, bench_env):
    cache = Path(bench_env["BENCH_CACHE_DIR"]) / "listed"
    _fill(cache)
    env = bench_env | {"BENCH_CACHE_DIR": str(cache)}

    def run(*args):
        command = [sys.executable, "-m", "bench.cli", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    listed = run("cache", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["entries"]
    assert [(e["kind"], e["name"], e["bytes"]) for e in entries] == [
        ("pretrained", "mlp-0123456789abcdef", 1200),
        ("file", "cpu_peak.json", 50),
    ]
    assert entries[0]["what"] == "model_size=tiny task=new-classes pretrain_steps=20"
    shown = run("env", "--json")
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)["cache"]
    assert summary == {"dir": str(cache), "num_entries": 2, "bytes": 1250}
    cleared = run("cache", "clear")
    assert cleared.returncode == 0 and "removed 2 entries" in cleared.stdout, cleared.stderr
    assert "1.2 KiB" in cleared.stdout  # 1250 bytes
    assert [p for p in cache.rglob("*") if p.is_file()] == []


SUITE = """
[suite]
name = "pretrain"
[base]
workload = "mlp"
model_size = "tiny"
data = "digits"
finetune = "full"
pretrain_steps = 20
threads = 1
repeats = 1
warmup_steps = 1
min_steps = 5
max_steps = 5
min_time_s = 0.0
"""


def _waiters(lock: Path) -> int:
    """Processes blocked on an flock of ``lock`` (/proc/locks marks a waiter with ``->``)."""
    inode = os.stat(lock).st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and f":{inode} " in line)


def test_two_processes_missing_the_same_weights_train_them_once(tmp_path, bench_env):
    cache = tmp_path / "cache"
    lock = cache / "pretrained" / ".lock"
    lock.parent.mkdir(parents=True)
    env = bench_env | {"BENCH_CACHE_DIR": str(cache)}
    processes = []
    # Held here, as a process training would hold it: both runs reach it and wait.
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for out in ("a", "b"):
            write_suite(tmp_path, out, SUITE)
            command = [sys.executable, "-m", "bench.cli", "run", f"{out}.toml", "--out", out]
            processes.append(
                subprocess.Popen(
                    command + ["--device", "cpu"],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + 300
        while _waiters(lock) < 2:
            assert time.monotonic() < deadline, "the two runs never waited on the lock"
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            time.sleep(0.1)
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    weights = []
    for out in ("a", "b"):
        (records,) = (tmp_path / out / "pretrain").glob("*/records.jsonl")
        (record,) = [json.loads(line) for line in records.read_text().splitlines()]
        weights.append(record["runtime"]["finetune"]["weights"])
    assert sorted(weights) == ["cache", "trained"]
    assert len(list((cache / "pretrained").glob("*.pt"))) == 1
