"""Real runs for ``bench history`` (docs/HISTORY.md): a nightly job's history, made on this
machine, kept as tests/fixtures/history. Not part of the test suite (about 8 minutes on the
project's two shared CPU cores).

    python benchmarks/history_runs.py [--unchanged 24] [--slower 8] [--out tests/fixtures/history]

What it does, as a new user would:

1. makes a user's git repository in a temporary directory: the tutorial's workload
   (examples/tutorial.py) and the suite below (that workload and the built-in MLP, eager, three
   repeats of about a second), commit ``base``;
2. runs ``bench run history.toml`` UNCHANGED times, one after another, into its results/;
3. commits a real slowdown of the user's workload (its first layer computed twice in the
   forward pass: more real work in the timed step; the MLP is untouched) and runs SLOWER more;
4. copies every run directory to OUT/runs/<run-id>/, trimmed to what history and the exports
   read (records' step times, loss readings, the compared figures, runtime's load; env.json
   and run.json as written; no logs), and writes OUT/README.md's facts to OUT/collection.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SUITE = """\
# benchmarks/history_runs.py: a nightly suite, a second or so per process.
[suite]
name = "nightly"
description = "the tutorial's network (the user's code) and the built-in MLP, eager, short"

[base]
batch_size = 64
compile = "eager"
threads = 1
warmup_steps = 3
min_steps = 20
max_steps = 150
min_time_s = 0.3
max_time_s = 1.0
repeats = 3

[matrix]
workload = ["tutorial.py:tutorial", "mlp"]
"""

SLOWER = (
    "        x = F.relu(self.fc1(x))\n",
    "        x = F.relu(self.fc1(x) + 0 * self.fc1(x))  # the regression: fc1 computed twice\n",
)
KEPT_METRICS = (
    "step_time_s",
    "samples_per_s",
    "tokens_per_s",
    "final_train_loss",
    "peak_rss_bytes",
    "lifetime_peak_rss_bytes",
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def run_once(repo: Path) -> float:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "bench.cli", "run", "history.toml", "--device", "cpu"]
    start = time.monotonic()
    subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True)
    return time.monotonic() - start


def trim(record: dict[str, Any]) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    kept = {key: metrics.get(key) for key in KEPT_METRICS if key in metrics}
    samples = record.get("samples") or {}
    runtime = record.get("runtime") or {}
    return {
        **record,
        "metrics": kept,
        "samples": {key: samples.get(key) for key in ("step_time_s", "loss")},
        "runtime": {
            key: runtime.get(key) for key in ("threads", "device_name", "load_avg_1m_at_start")
        },
        "timing": None,
    }


def keep(run_dir: Path, out: Path) -> None:
    target = out / run_dir.name
    target.mkdir(parents=True)
    lines = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    text = "".join(json.dumps(trim(r), separators=(",", ":")) + "\n" for r in lines)
    (target / "records.jsonl").write_text(text)
    for name in ("env.json", "run.json"):
        shutil.copy(run_dir / name, target / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unchanged", type=int, default=24)
    parser.add_argument("--slower", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/history")
    args = parser.parse_args()
    repo = Path(tempfile.mkdtemp(prefix="bench-history-"))
    shutil.copy(ROOT / "examples/tutorial.py", repo / "tutorial.py")
    (repo / "history.toml").write_text(SUITE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "base")
    durations, loads = [], []
    for index in range(args.unchanged + args.slower):
        if index == args.unchanged:
            source = (repo / "tutorial.py").read_text()
            assert SLOWER[0] in source
            (repo / "tutorial.py").write_text(source.replace(*SLOWER))
            git(
                repo,
                *("-c", "user.name=bench", "-c", "user.email=bench@localhost"),
                *("commit", "-qam", "slower: fc1 computed twice in the forward pass"),
            )
        loads.append(os.getloadavg()[0])
        durations.append(run_once(repo))
        print(f"run {index + 1}: {durations[-1]:.1f} s, load {loads[-1]:.2f}", flush=True)
    runs = sorted(p.parent for p in (repo / "results/nightly").glob("*/records.jsonl"))
    assert len(runs) == args.unchanged + args.slower, runs
    shutil.rmtree(args.out / "runs", ignore_errors=True)
    for run_dir in runs:
        keep(run_dir, args.out / "runs")
    facts = {
        "unchanged": args.unchanged,
        "slower": args.slower,
        "first_slower_run": runs[args.unchanged].name,
        "commits": {
            "base": git(repo, "rev-parse", "HEAD~1"),
            "slower": git(repo, "rev-parse", "HEAD"),
        },
        "run_seconds": [round(d, 1) for d in durations],
        "load_avg_1m_before_each_run": [round(x, 2) for x in loads],
        "nproc": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
    }
    (args.out / "collection.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(json.dumps(facts, indent=2))
    shutil.rmtree(repo)


if __name__ == "__main__":
    main()
