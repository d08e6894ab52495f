"""How often does ``bench ab`` find a real slowdown? Detection rates of a 20% and a 2% slower
commit, measured on this machine (docs/GATING.md, "What bench ab detects"). Not part of the test
suite: it runs ``bench ab`` 2 x TRIALS times (an hour on the project's two shared CPU cores at
5 rounds).

    python benchmarks/ab_power.py [--trials 10] [--rounds 5] [--out tests/fixtures/ab_power]

What it does:

1. copies this project (its tracked and new files) into a temporary git repository, commit
   ``base``, with the suite below (the tutorial MLP, tiny, batch 8, eager, one thread);
2. measures the base's step time (one ``bench run``) and the cost of one unit of extra work (a
   (8, 784) x (784, 64) matrix product, the shape of the MLP's input) in a fresh process;
3. commits, on top of ``base``, one slower commit per slowdown: the MLP's forward pass does
   extra (8, 784) x (784, 16) matrix products, real work in the timed step; their number comes
   from a cost line measured by two 5-round ``bench ab`` calibration jobs (0 products: the
   patched forward alone; and the tight-loop estimate of a 20% slowdown), since a product costs
   more inside the step than in a tight loop and the wrapper costs something by itself
   (made.json keeps the line and what each job measured);
4. alternates the trials (20% trial 1, 2% trial 1, 20% trial 2, ...): each checks the slower
   commit out and runs ``bench ab SUITE --base-ref base --repeats ROUNDS``, and keeps both sides
   of the job (records with their step times, env.json, run.json) under OUT/<slowdown>/<trial>/;
5. judges every trial with the first n rounds, n = 2..ROUNDS (the first n rounds of an ABBA job
   are an n-round job), and prints the detection rates; ``summary.json`` in OUT has them.

tests/test_ab_power.py reads the recorded trials.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gate.compare import compare, load_side  # noqa: E402

SUITE = """\
# benchmarks/ab_power.py: a short suite for bench ab's detection rates.
[suite]
name = "ab_power"
description = "the tutorial MLP, tiny, a short run per round"

[base]
workload = "mlp"
model_size = "tiny"
batch_size = 8
compile = "eager"
threads = 1
warmup_steps = 5
min_steps = 30
max_steps = 300
min_time_s = 0.0
max_time_s = 2.0
repeats = 1
"""

EXTRA_WORK = {
    # Extra (8, 784) x (784, 16) matrix products: torch work in the step, costlier inside it than
    # in a tight loop, and not linear in the count for a few products (caches, dispatch).
    "matmul": """

# Added by benchmarks/ab_power.py: a slower commit. Every forward pass does {units} extra
# (8, 784) x (784, 16) matrix products (no autograd: neither operand needs a gradient):
# {percent:+.1f}% on the step time by the cost line calibrated on this machine (made.json).
_extra_weight = torch.randn(784, 16)
_forward = MLP.forward


def _slower_forward(self, x):
    flat = x.reshape(x.shape[0], -1)
    for _ in range({units}):
        torch.mm(flat, _extra_weight)
    return _forward(self, x)


MLP.forward = _slower_forward
""",
    # Iterations of a Python loop in forward, as a user's per-step Python code costs: host work
    # linear in the count, and fine-grained (about 20 ns each), for a slowdown of a few percent.
    "python": """

# Added by benchmarks/ab_power.py: a slower commit. Every forward pass runs a Python loop of
# {units} iterations: {percent:+.1f}% on the step time by the cost line calibrated on this
# machine (made.json).
_forward = MLP.forward


def _slower_forward(self, x):
    total = 0
    for i in range({units}):
        total += i
    return _forward(self, x)


MLP.forward = _slower_forward
""",
}

UNIT_COST = {
    "matmul": """\
import time, torch
torch.set_num_threads(1)
x, w = torch.randn(8, 784), torch.randn(784, 16)
for _ in range(200):
    torch.mm(x, w)
best = float("inf")
for _ in range(5):
    start = time.perf_counter()
    for _ in range(2000):
        torch.mm(x, w)
    best = min(best, (time.perf_counter() - start) / 2000)
print(best)
""",
    "python": """\
import time
best = float("inf")
for _ in range(5):
    start = time.perf_counter()
    total = 0
    for i in range(100_000):
        total += i
    best = min(best, (time.perf_counter() - start) / 100_000)
print(best)
""",
}


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=ab", "-c", "user.email=ab@example.com"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def project_copy(repo: Path) -> None:
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in listed.split("\0"):
        source = ROOT / name
        if name and source.is_file() and not name.startswith("tests/fixtures/"):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    (repo / "ab_power.toml").write_text(SUITE)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "tag", "base")


def bench(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    command = [sys.executable, "-m", "bench.cli", *args]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)


def base_step_s(repo: Path) -> float:
    done = bench(repo, "run", "ab_power.toml", "--device", "cpu", "--repeats", "3")
    assert done.returncode == 0, done.stderr
    (records,) = (repo / "results" / "ab_power").glob("*/records.jsonl")
    medians = sorted(json.loads(r)["metrics"]["step_time_s"]["median"] for r in records.open())
    shutil.rmtree(repo / "results")
    return medians[1]


def slower_commit(repo: Path, name: str, units: int, percent: float, work: str) -> None:
    git(repo, "checkout", "-q", "base")
    with (repo / "bench" / "workloads" / "mlp.py").open("a") as module:
        module.write(EXTRA_WORK[work].format(units=units, percent=percent))
    git(repo, "checkout", "-q", "-B", name)
    git(repo, "commit", "-q", "-am", f"slower: {units} units of extra {work} work per forward")


def ab_job(repo: Path, rounds: int) -> subprocess.CompletedProcess:
    return bench(
        repo,
        *("ab", "ab_power.toml", "--base-ref", "base", "--device", "cpu"),
        *("--repeats", str(rounds)),
    )


def measured_slowdown(repo: Path, rounds: int = 3) -> float:
    """The slower commit's step-time change, measured by a paired bench ab job of ``rounds``
    rounds (not one of the trials: those come after, on the calibrated commit)."""
    done = ab_job(repo, rounds)
    if done.returncode not in (0, 1):
        sys.exit(done.stderr)
    (job,) = (repo / "results" / "ab" / "ab_power").iterdir()
    base, cand = (load_side(str(job / side), job) for side in ("base", "cand"))
    (case,) = compare(base, cand).cases
    step = next(m for m in case.metrics if m.metric == "step_time")
    shutil.rmtree(repo / "results")
    return step.ratio - 1


def cost_line(repo: Path, units: int, work: str, rounds: int = 5) -> dict[str, Any]:
    """The slower commit's cost as a line, change = fixed + per_unit x units, through two
    calibration jobs of ``rounds`` rounds: 0 units of extra work (the patched forward's own
    call) and ``units`` of them (about a 20% slowdown). A
    product costs more inside the step than in a tight loop (cache, dispatch), and the wrapper
    costs something without any product, so neither the tight-loop unit nor a single
    measurement of a small count (a job's noise is about +-2%) can size a 2% commit."""
    measured = {}
    for count in (0, units):
        slower_commit(repo, "calibration", count, 0.0, work)
        measured[count] = measured_slowdown(repo, rounds)
        print(f"calibration: {count} products measured {measured[count]:+.1%}", flush=True)
    per_unit = (measured[units] - measured[0]) / units
    return {
        "work": work,
        "fixed": measured[0],
        "per_unit": per_unit,
        "measured": measured,
        "rounds": rounds,
    }


def calibrated_commit(repo: Path, name: str, slowdown: float, line: dict[str, Any]) -> int:
    """Commit ``name`` with the count of extra products the cost line gives for ``slowdown``
    (at least one: the commit does some extra work)."""
    units = max(1, round((slowdown - line["fixed"]) / line["per_unit"]))
    percent = 100 * (line["fixed"] + units * line["per_unit"])
    slower_commit(repo, name, units, percent, line["work"])
    return units


# What a kept record holds of its metrics: the ones bench compare reads, and the FLOPs per step
# (which show the slower commit's extra work).
KEPT_METRICS = (
    "step_time_s",
    "samples_per_s",
    "tokens_per_s",
    "compile_time_s",
    "stop_reason",
    "peak_alloc_bytes",
    "peak_rss_bytes",
    "lifetime_peak_rss_bytes",
    "final_train_loss",
    "steps_trained",
)


def compact(record: dict[str, Any]) -> dict[str, Any]:
    """The record as compare reads it, to keep the fixture small: the step times (rounded to the
    nanosecond, perf_counter's resolution: the digits below are float noise), the compared
    metrics, threads, device and load; no other raw series, no timing."""
    metrics = record["metrics"]
    kept = {k: v for k, v in metrics.items() if k in KEPT_METRICS}
    kept["flops"] = {"per_step": metrics["flops"]["per_step"]}
    gpu = metrics.get("gpu") or {}
    kept["gpu"] = {k: gpu.get(k) for k in ("available", "reason", "energy_per_sample_j")}
    runtime = {k: record["runtime"][k] for k in ("threads", "device_name", "load_avg_1m_at_start")}
    steps = [round(t, 9) for t in record["samples"]["step_time_s"]]
    rest = {k: v for k, v in record.items() if k not in ("timing", "metrics", "runtime")}
    return {**rest, "runtime": runtime, "metrics": kept, "samples": {"step_time_s": steps}}


def keep_job(job: Path, target: Path) -> None:
    for side in ("base", "cand"):
        (target / side).mkdir(parents=True)
        for name in ("env.json", "run.json"):
            shutil.copyfile(job / side / name, target / side / name)
        lines = (job / side / "records.jsonl").read_text().splitlines()
        kept = [json.dumps(compact(json.loads(line)), separators=(",", ":")) for line in lines]
        (target / side / "records.jsonl").write_text("\n".join(kept) + "\n")


def first_rounds(side, rounds: int):
    return replace(side, records=[r for r in side.records if r["repeat"] < rounds])


def judge_trial(trial: Path, rounds: int) -> dict[str, Any]:
    base, cand = (first_rounds(load_side(str(trial / s), trial), rounds) for s in ("base", "cand"))
    comparison = compare(base, cand)
    assert comparison.interleaved
    (case,) = comparison.cases
    step = next(m for m in case.metrics if m.metric == "step_time")
    return {
        "case": case.verdict,
        "step_time": step.verdict,
        "ratio": step.ratio,
        "low": step.ci_low,
        "high": step.ci_high,
        "smallest_detectable": step.smallest_detectable,
    }


def analyse(out: Path, max_rounds: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for slowdown in sorted(p for p in out.iterdir() if p.is_dir()):
        trials = sorted(p for p in slowdown.iterdir() if p.is_dir())
        by_rounds = {}
        for rounds in range(2, max_rounds + 1):
            judged = [judge_trial(trial, rounds) for trial in trials]
            detectable = sorted(j["smallest_detectable"] for j in judged)
            by_rounds[rounds] = {
                "regressed": sum(j["case"] == "regressed" for j in judged),
                "trials": len(judged),
                "verdicts": [j["case"] for j in judged],
                "median_ratio": sorted(j["ratio"] for j in judged)[len(judged) // 2],
                "median_smallest_detectable": detectable[len(detectable) // 2],
            }
        summary[slowdown.name] = by_rounds
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "ab_power")
    parser.add_argument("--slowdowns", type=float, nargs="+", default=[0.20, 0.02])
    parser.add_argument(
        "--work",
        choices=sorted(EXTRA_WORK),
        default="matmul",
        help="what the slower commits add to forward: matrix products or a Python loop",
    )
    parser.add_argument("--analyse-only", action="store_true", help="judge the recorded trials")
    args = parser.parse_args()
    if not args.analyse_only:
        record(args)
    summary = analyse(args.out, args.rounds)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for name, by_rounds in summary.items():
        for rounds, found in by_rounds.items():
            print(
                f"{name}: {rounds} rounds: regressed in {found['regressed']}/{found['trials']}, "
                f"median ratio {found['median_ratio']:.3f}, median smallest detectable change "
                f"+{found['median_smallest_detectable']:.1%}"
            )
    return 0


def record(args: argparse.Namespace) -> None:
    if args.out.exists():
        sys.exit(f"{args.out} exists: move it away, or give --analyse-only")
    with tempfile.TemporaryDirectory(prefix="ab-power-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        project_copy(repo)
        step = base_step_s(repo)
        cost = UNIT_COST[args.work]
        unit = float(subprocess.check_output([sys.executable, "-c", cost], text=True))
        estimate = max(1, round(0.20 * step / unit))  # the line's far point: about 20%
        line = cost_line(repo, estimate, args.work)
        names = {}
        for slowdown in args.slowdowns:
            name = f"slower-{slowdown * 100:g}pct"
            names[name] = calibrated_commit(repo, name, slowdown, line)
            predicted = line["fixed"] + names[name] * line["per_unit"]
            print(f"{name}: {names[name]} units, predicted {predicted:+.1%}", flush=True)
        info = {
            "base_step_s": step,
            "unit_s": unit,
            "units": names,
            "cost_line": line,
            "rounds": args.rounds,
        }
        args.out.mkdir(parents=True)
        (args.out / "made.json").write_text(json.dumps(info, indent=1) + "\n")
        for trial in range(args.trials):
            for name in names:
                git(repo, "checkout", "-q", name)
                done = ab_job(repo, args.rounds)
                print(f"{name} trial {trial + 1}: exit {done.returncode}", flush=True)
                if done.returncode not in (0, 1):
                    sys.exit(done.stderr)
                (job,) = (repo / "results" / "ab" / "ab_power").iterdir()
                keep_job(job, args.out / name / f"trial{trial + 1:02d}")
                shutil.rmtree(repo / "results")


if __name__ == "__main__":
    sys.exit(main())
