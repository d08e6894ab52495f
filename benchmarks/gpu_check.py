"""Everything CUDA-specific, checked on a GPU machine in one command (``make gpu-check``).

Runs from the source tree with the interpreter it is given (no virtual environment, nothing
installed): each step has its own time limit, the whole check a budget (8 minutes by default),
and a step that would not fit in what is left is skipped, saying so. Writes
``OUT/summary.md`` and ``OUT/summary.json`` (default ``results/gpu-check``): every step passed,
failed or skipped with the reason, its figures, and the run directories. docs/GPU_CHECK.md says
what each step covers and how to read the summary.

    python3 benchmarks/gpu_check.py [--out DIR] [--budget-s 480] [--dry-run]
"""

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUITES = Path(__file__).resolve().parent / "gpu_suites"
DEFAULT_BUDGET_S = 480.0
# Import names of what the check needs (the GPU machine's image has them; nothing is installed).
REQUIRED = (
    "torch",
    "torchvision",
    "pandas",
    "seaborn",
    "rich",
    "pynvml",
    "pytest",
    "pytest_benchmark",
    "psutil",
    "sklearn",
    "scipy",
)
SHORT = ["--set", "repeats=1", "--set", "min_time_s=0.5", "--set", "max_time_s=3"]


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    limit_s: float
    kind: str
    """``pytest``, ``script`` (a python file of benchmarks/) or ``bench`` (a bench run)."""
    args: tuple[str, ...]


@dataclass
class Outcome:
    name: str
    status: str
    """``passed``, ``failed`` or ``skipped``."""
    reason: str = ""
    seconds: float = 0.0
    runs: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def plan() -> list[Step]:
    """The steps in order; the sum of their limits fits the default budget."""
    return [
        Step("gpu-tests", "pytest -m gpu: every GPU test", 70, "pytest", ("-m", "gpu", "-q")),
        Step(
            "timing",
            "CUDA-event step times against host-synchronised ones; syncs per block in the window",
            45,
            "script",
            ("benchmarks/gpu_timing.py",),
        ),
        Step(
            "compile",
            "compile_vs_eager: all five modes, CUDA graphs included",
            65,
            "bench",
            ("suites/compile_vs_eager", *SHORT),
        ),
        Step(
            "precision",
            "fp32, tf32, bf16, amp-bf16, amp-fp16 (GradScaler)",
            40,
            "bench",
            ("suites/precision", *SHORT),
        ),
        Step(
            "max-batch",
            "batch_size = 'max' up to the real memory wall: an OOM probe (its allocator snapshot), "
            "then the largest fit",
            60,
            "bench",
            (str(SUITES / "max_batch.toml"),),
        ),
        Step(
            "lora",
            "the finetune suite's LoRA cases",
            40,
            "bench",
            ("suites/finetune", "--set", "finetune=lora", *SHORT),
        ),
        Step(
            "ddp",
            "ddp_scaling with one rank per GPU (NCCL)",
            35,
            "bench",
            ("suites/ddp_scaling", *SHORT),
        ),
        Step(
            "mfu",
            "a GPT that loads the GPU, bf16 compiled: MFU against the datasheet peak",
            45,
            "bench",
            (str(SUITES / "gpt_mfu.toml"),),
        ),
        Step(
            "user-workload",
            "examples/tutorial.toml: a user's FILE.py:FUNCTION workload (the tutorial MLP) on CUDA",
            25,
            "bench",
            ("examples/tutorial.toml", "--set", "compile=eager", *SHORT),
        ),
        Step(
            "profile",
            "profile_steps and memory_snapshot on CUDA (trace, device idle, allocator history)",
            25,
            "bench",
            (str(SUITES / "profile.toml"),),
        ),
        Step(
            "zoos",
            "hf:gpt2 from a config (amp-bf16), its PEFT LoRA fine-tuning, timm:test_resnet",
            30,
            "bench",
            (str(SUITES / "zoos.toml"),),
        ),
    ]


def missing_packages() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def command(step: Step, python: str, out: Path) -> list[str]:
    if step.kind == "pytest":
        return [python, "-m", "pytest", *step.args, "tests"]
    if step.kind == "script":
        return [python, *step.args, "--out", str(out / step.name)]
    return [python, "-m", "bench.cli", "run", *step.args, "--device", "cuda", "--out", str(out)]


def run_step(step: Step, python: str, out: Path, left_s: float) -> Outcome:
    if step.limit_s > left_s:
        return Outcome(
            step.name, "skipped", f"needs {step.limit_s:.0f} s, {left_s:.0f} s of the budget left"
        )
    argv = command(step, python, out)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    log = out / "logs" / f"{step.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    before = {p for p in out.glob("*/*") if p.is_dir()}
    started = time.monotonic()
    with log.open("w") as sink:
        sink.write("$ " + shlex.join(argv) + "\n")
        sink.flush()
        try:
            done = subprocess.run(
                argv,
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=step.limit_s,
            )
            code: int | None = done.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.monotonic() - started
    runs = sorted(
        str(p)
        for p in out.glob("*/*")
        if p.is_dir() and p not in before and (p / "run.json").is_file()
    )
    outcome = Outcome(step.name, "passed" if code == 0 else "failed", seconds=seconds, runs=runs)
    if code is None:
        outcome.reason = f"past its limit of {step.limit_s:.0f} s (log: {log})"
    elif code != 0:
        outcome.reason = f"exit code {code} (log: {log})"
    records = [r for run in runs for r in read_records(Path(run))]
    outcome.figures = figures(step.name, records, out / step.name)
    return outcome


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "records.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def figures(step: str, records: list[dict[str, Any]], step_dir: Path) -> dict[str, Any]:
    """The key figures of a step, from its records (or, for timing, the file it wrote)."""
    ok = [r for r in records if r.get("status") == "ok"]
    found: dict[str, Any] = {
        "statuses": dict(sorted(_count(r.get("status", "?") for r in records).items()))
    }
    if step == "timing":
        path = step_dir / "timing.json"
        return json.loads(path.read_text()) if path.is_file() else {}
    if step == "compile":
        found["speedup_vs_eager"] = speedups(ok, "compile", "eager")
    if step == "precision":
        found["speedup_vs_fp32"] = speedups(ok, "precision", "fp32")
    if step == "max-batch":
        for r in records:
            metrics = r.get("metrics") or {}
            if "max_batch_size" in metrics:
                found["max_batch_size"] = metrics["max_batch_size"]
                found["max_batch_capped"] = metrics.get("max_batch_capped")
                found["probes"] = metrics.get("probes")
        # An oom probe dumps the allocator's state at the error (bench/measure/memory.py).
        found["oom_snapshots"] = [
            snapshot["file"]
            for r in records
            if r.get("status") == "oom"
            and (snapshot := ((r.get("metrics") or {}).get("memory") or {}).get("snapshot"))
        ]
    if step == "zoos":
        found["by_workload"] = {
            f"{r['config']['workload']} {r['config'].get('finetune') or 'train'}": (
                r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason')}"
            )
            for r in records
        }
        found["lora_impl"] = sorted(
            {(r["runtime"].get("finetune") or {}).get("lora_impl") for r in ok} - {None}
        )
    if step == "mfu":
        mfus = [
            (r["metrics"]["flops"] or {})
            for r in ok
            if (r["metrics"].get("flops") or {}).get("mfu")
        ]
        if mfus:
            found["mfu"] = median(f["mfu"] for f in mfus)
            found["peak"] = f"{mfus[0]['peak_device']} {mfus[0]['peak_dtype']}"
    energies = [
        g["energy_per_sample_j"]
        for r in ok
        if (g := r["metrics"].get("gpu") or {}).get("energy_per_sample_j") is not None
    ]
    if energies:
        found["energy_per_sample_j"] = median(energies)
    telemetry = [r["metrics"].get("gpu") or {} for r in ok]
    if telemetry:
        found["nvml_available"] = sum(bool(t.get("available")) for t in telemetry)
        found["nvml_fields_missing"] = sorted(
            {
                name
                for t in telemetry
                for device in t.get("devices") or []
                for name in device.get("unsupported") or []
            }
        )
    return found


def speedups(records: list[dict[str, Any]], axis: str, reference: str) -> dict[str, Any]:
    """Median step time of the reference over each other value's, per workload, with the
    ratio of medians' 95% interval from the hierarchical bootstrap (bench.significance)."""
    from bench.significance import ratio_of_medians_ci

    groups: dict[tuple[str, str], list[list[float]]] = {}
    for r in records:
        key = (r["config"]["workload"], str(r["config"][axis]))
        groups.setdefault(key, []).append(r["samples"]["step_time_s"])
    result: dict[str, Any] = {}
    for (workload, value), samples in sorted(groups.items()):
        base = groups.get((workload, reference))
        if value == reference or not base:
            continue
        # Step time CAND / BASE with its interval; the speedup is its inverse.
        step = ratio_of_medians_ci(base, samples)
        speedup = {"speedup": 1 / step.ratio, "ci95": [1 / step.high, 1 / step.low]}
        result[f"{workload} {value}"] = speedup
    return result


def _count(items) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def render_markdown(outcomes: list[Outcome], budget_s: float, device: str) -> str:
    lines = [
        f"# GPU check on {device}",
        "",
        f"Budget {budget_s:.0f} s; used {sum(o.seconds for o in outcomes):.0f} s.",
        "",
        "| step | status | seconds | reason | figures |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for o in outcomes:
        shown = json.dumps(o.figures, sort_keys=True) if o.figures else ""
        lines.append(f"| {o.name} | {o.status} | {o.seconds:.0f} | {o.reason} | {shown} |")
    lines += ["", "Runs:"] + [f"- {run}" for o in outcomes for run in o.runs]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu-check")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and run nothing")
    args = parser.parse_args(argv)
    steps = plan()
    if args.dry_run:
        total = sum(step.limit_s for step in steps)
        print(
            f"gpu check plan: {len(steps)} steps, {total:.0f} s of limits, "
            f"budget {args.budget_s:.0f} s"
        )
        for step in steps:
            print(f"  {step.name:<10} {step.limit_s:>4.0f} s  {step.what}")
            print(f"             $ {shlex.join(command(step, sys.executable, args.out))}")
        return 0
    if missing := missing_packages():
        print(f"gpu check: error: missing packages: {', '.join(missing)}", file=sys.stderr)
        return 2
    count = cuda_devices()
    if not count:
        print(
            "gpu check: error: no CUDA device here (torch.cuda.is_available() is False)",
            file=sys.stderr,
        )
        return 2
    import torch

    device = f"{count} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcomes = []
    for step in steps:
        left = args.budget_s - (time.monotonic() - started)
        outcome = run_step(step, sys.executable, args.out, left)
        print(f"{step.name}: {outcome.status} {outcome.reason}".rstrip(), flush=True)
        outcomes.append(outcome)
    (args.out / "summary.json").write_text(
        json.dumps(
            {"device": device, "budget_s": args.budget_s, "steps": [asdict(o) for o in outcomes]},
            indent=2,
        )
    )
    (args.out / "summary.md").write_text(render_markdown(outcomes, args.budget_s, device))
    print(f"summary: {args.out / 'summary.md'}")
    return 0 if all(o.status != "failed" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
