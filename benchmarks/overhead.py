"""bench's overhead against a plain training loop, and its fixed cost per case.

Target (core issue): the median step time that bench records for the tutorial MLP (fp32, eager,
batch 64, Adam) is within 3% of a plain hand-written loop doing the same steps; the fixed cost
per case (process start, set-up, teardown) under 5 s on CPU.

Both sides run in fresh processes, interleaved in one run (bench, plain, plain, bench, ...: the
order alternates per round so that drift hits both alike), for the same number of steps. Prints
the per-round medians, the ratio of medians with its spread over rounds, and the fixed costs.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.config import Case
from bench.launcher import Job, Launcher

ROUNDS = 7
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


def main() -> None:
    case = Case.from_dict(
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
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        (run_dir / "logs").mkdir()
        launcher = Launcher(run_dir)
        started = time.perf_counter()
        bench_side(launcher, case, repeat=-1)  # starts the fork server; not counted below
        server_s = time.perf_counter() - started
        bench_medians, plain_medians, results = [], [], []
        for round_ in range(ROUNDS):
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
    ratios = [b / p for b, p in zip(bench_medians, plain_medians)]
    ratio = statistics.median(bench_medians) / statistics.median(plain_medians)
    print(f"tutorial MLP, fp32, eager, batch 64, Adam, {STEPS} steps per process, {ROUNDS} rounds")
    print("round  bench ms  plain ms  ratio")
    for i, (b, p) in enumerate(zip(bench_medians, plain_medians)):
        print(f"{i:5d}  {b * 1e3:8.3f}  {p * 1e3:8.3f}  {b / p:5.3f}")
    print(
        f"ratio of medians bench/plain: {ratio:.3f} "
        f"(per-round ratios: median {statistics.median(ratios):.3f}, "
        f"min {min(ratios):.3f}, max {max(ratios):.3f}); target <= 1.03"
    )

    def median_of(key: str) -> float:
        return statistics.median(r["timing"][key] for r in results)

    print(
        f"fixed cost per case: {median_of('fixed_s'):.3f} s median "
        f"(spawn {median_of('spawn_s'):.3f} s, set-up {median_of('setup_s'):.3f} s, "
        f"whole process {median_of('wall_s'):.3f} s); target < 5 s"
    )
    print(
        f"once per sweep: fork server start + first case {server_s:.2f} s; "
        f"for comparison, the imports alone in a new interpreter: {float(interpreter.stdout):.2f} s"
    )


if __name__ == "__main__":
    main()
