"""Shared helpers: run the real ``bench`` CLI in a subprocess, as a user would."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A suite of one tiny case with a fixed window: fast, and alike from run to run.
TINY_SUITE = """
[suite]
name = "tiny"
[base]
workload = "mlp"
model_size = "tiny"
data = "digits"
threads = 1
repeats = 2
warmup_steps = 3
min_steps = 30
max_steps = 30
min_time_s = 0.0
"""


@pytest.fixture(scope="session")
def inductor_cache(tmp_path_factory) -> Path:
    """One inductor cache for the whole test session: a compile is cold once, then warm."""
    return tmp_path_factory.mktemp("inductor")


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory) -> Path:
    """The session's cache of measured CPU peaks (bench/measure/cpu_peak.py): measured once, not
    in ~."""
    return tmp_path_factory.mktemp("bench-cache")


@pytest.fixture
def bench_env(inductor_cache, bench_cache) -> dict[str, str]:
    env = dict(os.environ)
    env["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache)
    env["BENCH_CACHE_DIR"] = str(bench_cache)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"  # rich wraps at the terminal width; keep lines whole for assertions
    return env


@pytest.fixture
def bench(bench_env, tmp_path):
    """Run ``bench ARGS...`` in ``tmp_path``; returns the CompletedProcess."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bench.cli", *args],
            cwd=tmp_path,
            env=bench_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def write_suite(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return path


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
