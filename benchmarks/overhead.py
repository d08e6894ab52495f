"""bench's overhead against a plain training loop, and its fixed cost per case.

Target (core issue): the median step time that bench records for the tutorial MLP (fp32, eager,
batch 64, Adam) is within 3% of a plain hand-written loop doing the same steps; the fixed cost
per case (process start, set-up, teardown) under 5 s on CPU.

Both sides run in fresh processes, interleaved in one run (bench, plain, plain, bench, ...: the
order alternates per round so that drift hits both alike), for the same number of steps. Prints
the per-round medians, the ratio of medians with its spread over rounds, and the fixed costs.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.run.launcher import Job, Launcher
from bench.spec.case import Case
from bench.statistics import summarize

ROUNDS = 10
STEPS = 600
WARMUP = 20
HERE = Path(__file__).resolve().parent


def bench_side(launcher: Launcher, case: Case, repeat: int) -> dict:
    result = launcher.run(Job(case, repeat))
    assert result["status"] == "ok", result.get("reason")
    return result


def plain_side() -> float:
    done = subprocess.run(
        [sys.executable, str(HERE / "plain_loop.py"), str(STEPS), str(WARMUP)],
        capture_output=True,
        text=True,
        check=True,
    )
    return statistics.median(json.loads(done.stdout))


def window_overhead(case: Case, rounds: int = 30, steps: int = 200) -> list[float]:
    """In one process, the same training step timed by bench's measured window and by a bare
    ``perf_counter`` loop, alternating every ``steps`` steps: the window's own per-step cost,
    free of the process-to-process noise. Returns the per-round ratios window / bare."""
    import time as clock

    import torch

    from bench.measure.timing import HostTimer
    from bench.measure.window import WindowPolicy, run_window
    from bench.worker.prepare import prepare

    torch.set_num_threads(os.cpu_count() or 1)
    device = torch.device("cpu")
    step = prepare(case, device).step
    for _ in range(WARMUP):
        step()
    policy = WindowPolicy(steps, steps, 0.0, 1e9, 1e-9)
    ratios = []
    for _ in range(rounds):
        window = run_window(step, HostTimer(), policy, 50, device)
        bare = []
        for _ in range(steps):
            start = clock.perf_counter()
            step()
            bare.append(clock.perf_counter() - start)
        ratios.append(statistics.median(window.step_times_s) / statistics.median(bare))
    return ratios


def cost_per_step(steps: int = 200_000) -> tuple[float, float]:
    """Seconds per step that the window and a bare timed loop add around a step that does
    nothing (returns a ready loss): the harness's own cost, resolvable on any machine."""
    import time as clock

    import torch

    from bench.measure.timing import HostTimer
    from bench.measure.window import WindowPolicy, run_window

    loss = torch.tensor(1.0)
    policy = WindowPolicy(steps, steps, 0.0, 1e9, 1e-9)
    window = run_window(lambda: loss, HostTimer(), policy, 50, torch.device("cpu"))
    started = clock.perf_counter()
    bare = []
    for _ in range(steps):
        start = clock.perf_counter()
        bare.append(clock.perf_counter() - start)
    return window.window_s / steps, (clock.perf_counter() - started) / steps


def tutorial_case() -> Case:
    """The tutorial's MLP, fp32, eager, batch 64, Adam, for exactly STEPS measured steps."""
    return Case.from_dict(
        {
            "workload": "mlp",
            "model_size": "base",
            "batch_size": 64,
            "optimizer": "adam",
            "precision": "fp32",
            "compile": "eager",
            "data": "digits",
            "warmup_steps": WARMUP - 1,  # + the first step, timed alone = WARMUP steps
            "min_steps": STEPS,
            "max_steps": STEPS,
            "min_time_s": 0.0,
        }
    )


@dataclass
class Rounds:
    """Both sides in fresh processes, interleaved: per-round medians and bench's results."""

    bench_medians: list[float]
    plain_medians: list[float]
    results: list[dict]
    server_s: float
    """Fork server start + first case, paid once per sweep."""
    imports_s: float
    """The imports alone in a new interpreter, for comparison."""


def interleaved_rounds(case: Case, rounds: int = ROUNDS) -> Rounds:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        (run_dir / "logs").mkdir()
        launcher = Launcher(run_dir)
        started = time.perf_counter()
        bench_side(launcher, case, repeat=-1)  # starts the fork server; not counted below
        server_s = time.perf_counter() - started
        bench_medians, plain_medians, results = [], [], []
        for round_ in range(rounds):
            sides = ("bench", "plain") if round_ % 2 == 0 else ("plain", "bench")
            for side in sides:
                if side == "bench":
                    result = bench_side(launcher, case, round_)
                    results.append(result)
                    bench_medians.append(result["metrics"]["step_time_s"]["median"])
                else:
                    plain_medians.append(plain_side())
        interpreter = subprocess.run(
            [
                sys.executable,
                "-c",
                "import time; t = time.perf_counter(); import torch, "
                "sklearn.datasets, torchvision.datasets; print(time.perf_counter() - t)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    return Rounds(bench_medians, plain_medians, results, server_s, float(interpreter.stdout))


def rounds_report(rounds: Rounds) -> list[str]:
    """The per-round table, the ratio of bench to plain, and the fixed cost per case."""
    bench_medians, plain_medians = rounds.bench_medians, rounds.plain_medians
    ratios = [b / p for b, p in zip(bench_medians, plain_medians)]
    ratio = statistics.median(bench_medians) / statistics.median(plain_medians)
    lines = [
        f"tutorial MLP, fp32, eager, batch 64, Adam, {STEPS} steps per process, "
        f"{len(ratios)} rounds",
        "round  bench ms  plain ms  ratio",
    ]
    for i, (b, p) in enumerate(zip(bench_medians, plain_medians)):
        lines.append(f"{i:5d}  {b * 1e3:8.3f}  {p * 1e3:8.3f}  {b / p:5.3f}")
    summary = summarize(ratios)
    interval = (
        f"95% CI {summary.ci95_low:.3f}-{summary.ci95_high:.3f}, "
        if summary.ci95_low is not None
        else ""
    )
    lines.append(
        f"ratio of medians bench/plain: {ratio:.3f}; per-round ratio (paired, same round): "
        f"median {summary.median:.3f}, {interval}"
        f"range {min(ratios):.3f}-{max(ratios):.3f}; target <= 1.03"
    )

    def median_of(key: str) -> float:
        return statistics.median(r["timing"][key] for r in rounds.results)

    lines.append(
        f"fixed cost per case: {median_of('fixed_s'):.3f} s median "
        f"(spawn {median_of('spawn_s'):.3f} s, set-up {median_of('setup_s'):.3f} s, "
        f"whole process {median_of('wall_s'):.3f} s); target < 5 s"
    )
    lines.append(
        f"once per sweep: fork server start + first case {rounds.server_s:.2f} s; "
        f"for comparison, the imports alone in a new interpreter: {rounds.imports_s:.2f} s"
    )
    return lines


def window_report(ratios: list[float]) -> str:
    in_process = summarize(ratios)
    return (
        f"in one process, bench's window vs a bare loop over the same step (30 rounds of 200 "
        f"steps): median ratio {in_process.median:.4f}, 95% CI "
        f"{in_process.ci95_low:.4f}-{in_process.ci95_high:.4f}"
    )


def cost_report(window_s: float, bare_s: float, step_s: float) -> str:
    return (
        f"around a step that does nothing: window {window_s * 1e6:.2f} us/step, bare timed loop "
        f"{bare_s * 1e6:.2f} us/step; bench adds {(window_s - bare_s) * 1e6:.2f} us per step = "
        f"{(window_s - bare_s) / step_s:.3%} of this MLP's {step_s * 1e3:.2f} ms step"
    )


def report_lines(
    rounds: Rounds, window_ratios: list[float], window_s: float, bare_s: float
) -> list[str]:
    """Everything the benchmark prints, in order."""
    lines = rounds_report(rounds)
    step_s = statistics.median(rounds.bench_medians)
    middle = [window_report(window_ratios), cost_report(window_s, bare_s, step_s)]
    return lines[:-2] + middle + lines[-2:]


def figures(
    rounds: Rounds, window_ratios: list[float], window_s: float, bare_s: float
) -> dict[str, object]:
    """The printed figures as numbers (for pytest-benchmark's extra_info)."""
    ratios = [b / p for b, p in zip(rounds.bench_medians, rounds.plain_medians)]
    return {
        "bench_step_medians_s": rounds.bench_medians,
        "plain_step_medians_s": rounds.plain_medians,
        "ratio_of_medians": statistics.median(rounds.bench_medians)
        / statistics.median(rounds.plain_medians),
        "per_round_ratio": summarize(ratios).to_dict(),
        "window_vs_bare_ratio": summarize(window_ratios).to_dict(),
        "window_s_per_step": window_s,
        "bare_s_per_step": bare_s,
        "fixed_cost_s": statistics.median(r["timing"]["fixed_s"] for r in rounds.results),
        "server_start_s": rounds.server_s,
        "imports_s": rounds.imports_s,
    }


def main() -> None:
    case = tutorial_case()
    rounds = interleaved_rounds(case)
    print("\n".join(report_lines(rounds, window_overhead(case), *cost_per_step())))


if __name__ == "__main__":
    main()
