"""``make benchmark``: bench's own overhead under pytest-benchmark.

- The tutorial MLP's training step, timed by pytest-benchmark in this process: the plain
  hand-written step (benchmarks/plain_loop.py) and bench's own (``bench.worker.prepare.prepare``),
  in one group, so pytest-benchmark's table shows their ratio.
- The experiment of benchmarks/overhead.py: both sides in fresh processes, interleaved, then the
  harness's window against a bare loop in one process. Its own design decides what is timed, so
  pytest-benchmark times the interleaved rounds once as a whole; the figures (the ratios, the
  fixed cost per case) are printed as overhead.py prints them and kept in ``extra_info`` of the
  saved run (``.benchmarks/``, which ``pytest-benchmark compare`` reads across commits).
- A compiled case's fixed cost next to an eager one's (benchmarks/fixed_cost.py).
"""

import os

import fixed_cost
import overhead
import plain_loop
import pytest
import torch

from bench.worker.prepare import prepare

STEP_GROUP = "tutorial MLP training step, in one process"


def show(lines: list[str], capsys) -> None:
    with capsys.disabled():
        print("\n" + "\n".join(lines))


@pytest.mark.benchmark(group=STEP_GROUP)
def test_step_plain_loop(benchmark):
    step = plain_loop.make_step()
    benchmark.pedantic(step, rounds=overhead.STEPS, warmup_rounds=overhead.WARMUP)


@pytest.mark.benchmark(group=STEP_GROUP)
def test_step_bench(benchmark):
    torch.set_num_threads(os.cpu_count() or 1)  # as the plain loop and overhead.py do
    step = prepare(overhead.tutorial_case(), torch.device("cpu")).step
    benchmark.pedantic(step, rounds=overhead.STEPS, warmup_rounds=overhead.WARMUP)


@pytest.mark.timeout(3600)
@pytest.mark.benchmark(group="harness overhead: overhead.py's experiment")
def test_overhead_experiment(benchmark, capsys):
    case = overhead.tutorial_case()
    rounds = benchmark.pedantic(overhead.interleaved_rounds, args=(case,), rounds=1)
    window_ratios = overhead.window_overhead(case)
    window_s, bare_s = overhead.cost_per_step()
    benchmark.extra_info.update(overhead.figures(rounds, window_ratios, window_s, bare_s))
    show(overhead.report_lines(rounds, window_ratios, window_s, bare_s), capsys)


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group="fixed cost per case: compiled vs eager")
def test_fixed_cost_compiled_vs_eager(benchmark, capsys):
    timings = benchmark.pedantic(fixed_cost.measure, rounds=1)
    for mode, runs in timings.items():
        benchmark.extra_info[f"{mode}_fixed_s"] = [t["fixed_s"] for t in runs]
    show(fixed_cost.report_lines(timings), capsys)
