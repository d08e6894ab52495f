"""A compiled case's fixed cost next to an eager one's, as a sweep pays them.

Target (issue 16): a compiled case's fixed cost (everything but its first step, warm-up, window
and evaluation: process start, set-up, teardown) at most 0.5 s above an eager case's. Both run
interleaved (eager, compiled, compiled, eager, ...) through one launcher whose fork server
preloads the compiler stack, as ``bench run`` starts it for a sweep with a compiled case. The
compile itself is in the first step, which is not fixed cost; inductor's cache is warm after the
first, uncounted, compiled case.
"""

import statistics
import tempfile
from pathlib import Path

from bench.run.launcher import Job, Launcher
from bench.spec.case import Case

ROUNDS = 6
MODES = ("eager", "default")
TARGET_S = 0.5


def tiny_case(compile: str) -> Case:
    return Case.from_dict(
        {
            "workload": "mlp",
            "model_size": "tiny",
            "data": "digits",
            "compile": compile,
            "threads": 1,
            "warmup_steps": 2,
            "min_steps": 10,
            "max_steps": 10,
            "min_time_s": 0.0,
        }
    )


def measure(rounds: int = ROUNDS) -> dict[str, list[dict[str, float]]]:
    """Each mode's ``timing`` per round."""
    timings: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        (run_dir / "logs").mkdir()
        launcher = Launcher(run_dir, compiles=True)
        for mode in MODES:  # the fork server's start, and a warm inductor cache: not counted
            launcher.run(Job(tiny_case(mode), -1))
        for round_ in range(rounds):
            for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                result = launcher.run(Job(tiny_case(mode), round_))
                assert result["status"] == "ok", result.get("reason")
                timings[mode].append(result["timing"])
    return timings


def report_lines(timings: dict[str, list[dict[str, float]]]) -> list[str]:
    def median(mode: str, key: str) -> float:
        return statistics.median(t[key] for t in timings[mode])

    lines = [
        "fixed cost per case, mlp tiny on this CPU (medians of "
        f"{len(timings['eager'])} interleaved rounds):",
        "mode      fixed s  spawn s  set-up s  first step s",
    ]
    for mode in MODES:
        lines.append(
            f"{mode:8s}  {median(mode, 'fixed_s'):7.3f}  {median(mode, 'spawn_s'):7.3f}  "
            f"{median(mode, 'setup_s'):8.3f}  {median(mode, 'first_step_s'):12.3f}"
        )
    above = median("default", "fixed_s") - median("eager", "fixed_s")
    lines.append(f"compiled above eager: {above:+.3f} s; target <= {TARGET_S} s")
    return lines


def main() -> None:
    print("\n".join(report_lines(measure())))


if __name__ == "__main__":
    main()
