"""The bench_case fixture under pytest-benchmark, run by pytest's own pytester in a
subprocess: two saved runs, the second of a workload made twice as slow."""

import json
from importlib import metadata

import pytest

pytest_plugins = ["pytester"]
pytest.importorskip("pytest_benchmark")

# Every forward pass sleeps DELAY seconds: far above the step's own time, so that doubling it
# doubles the step (about 5 ms -> 10 ms) whatever else runs on the machine.
MODEL = """
import time

import torch
from torch import nn

from bench.api import Workload

DELAY = {delay}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        time.sleep(DELAY)
        return self.fc(x)


def build(ctx):
    x = torch.randn(64, 8).to(ctx.device, ctx.dtype)
    y = torch.randint(0, 2, (64,), device=ctx.device)
    return Workload(model=Net().to(ctx.device, ctx.dtype), samples_per_step=16,
                    next_batch=lambda: (x[:16], y[:16]))
"""

TEST = """
def test_step(bench_case):
    records = bench_case(workload="model.py:build", batch_size=16, repeats=2, threads=1,
                         warmup_steps=2, min_steps=20, max_steps=20, min_time_s=0.0)
    assert [r["status"] for r in records] == ["ok", "ok"]
"""


def run(pytester, *args):
    # Installed, bench registers its plugin through the pytest11 entry point (pyproject.toml);
    # from a bare checkout it is named with -p (both at once is a double registration).
    installed = any(
        ep.value.startswith("bench.pytest_plugin") for ep in metadata.entry_points(group="pytest11")
    )
    plugin = [] if installed else ["-p", "bench.pytest_plugin"]
    return pytester.runpytest_subprocess(
        *plugin, "-p", "no:cacheprovider", "--benchmark-storage=store", *args
    )


def test_pytest_benchmark_sees_a_twice_slower_step(pytester):
    pytester.makepyfile(model=MODEL.format(delay=0.005), test_train=TEST)
    first = run(pytester, "--benchmark-autosave")
    first.assert_outcomes(passed=1)
    (saved,) = pytester.path.glob("store/*/0001_*.json")
    (benchmark,) = json.loads(saved.read_text())["benchmarks"]
    # Two repeats of 20 measured steps: 40 rounds, each a real step of at least the sleep.
    assert benchmark["stats"]["rounds"] == 40
    assert benchmark["stats"]["min"] >= 0.005
    assert benchmark["extra_info"]["bench_repeats"] == 2

    pytester.makepyfile(model=MODEL.format(delay=0.010))
    second = run(pytester, "--benchmark-compare", "--benchmark-compare-fail=median:5%")
    output = second.stdout.str() + second.stderr.str()
    print(output)  # pytest-benchmark's compare table, for the record
    assert second.ret != 0
    assert "Performance has regressed" in output, output
    assert "median" in output.split("Performance has regressed", 1)[1]
