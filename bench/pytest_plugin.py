"""bench's pytest plugin (the ``pytest11`` entry point ``bench``): the ``bench_case`` fixture.

``bench_case(workload="model.py:build", batch_size=32, ...)`` runs one case of your workload with
bench's method, each repeat in a fresh process (bench/run/from_python.py), and returns its
records. Where pytest-benchmark is installed, the test's ``benchmark`` fixture then holds the
measured steps of every ok repeat as its rounds, so that ``--benchmark-autosave``,
``--benchmark-compare`` and ``--benchmark-compare-fail=median:5%`` work on training steps.

pytest-benchmark has no public API for times measured elsewhere: the plugin marks the fixture
used (``_mode``) and fills the statistics object the fixture itself would
(``_make_stats(1)`` then ``update(seconds)`` per step), which its storage and ``compare``
read as usual (docs/GATING.md). Torch-free: loading the plugin costs pytest nothing.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.errors import UserError
from bench.run.from_python import run_cases

MODE = "bench_case(...): training steps measured by bench in fresh processes"


@pytest.fixture
def bench_case(request, tmp_path_factory) -> Callable[..., list[dict[str, Any]]]:
    """Run one case (suite keys as keyword arguments; a ``FILE.py`` relative to the test file)
    and return its records; with pytest-benchmark, its step times become the test's benchmark."""

    def run(device: str = "cpu", **settings: Any) -> list[dict[str, Any]]:
        settings.setdefault("workload_root", str(Path(request.path).parent))
        out = tmp_path_factory.mktemp("bench")
        records = run_cases(settings, device=device, out=out, name=_name(request))
        ok = [r for r in records if r["status"] == "ok"]
        if not ok:
            reasons = "; ".join(f"{r['status']}: {r['reason']}" for r in records)
            raise UserError(f"bench_case: no repeat of the case ran ({reasons})")
        benchmark = _benchmark(request)
        if benchmark is not None:
            hand_over(benchmark, ok)
        return records

    return run


def hand_over(benchmark: Any, records: list[dict[str, Any]]) -> None:
    """The measured step times of ``records`` as the rounds of pytest-benchmark's fixture."""
    if benchmark._mode:
        raise UserError(f"bench_case: the benchmark fixture was used already ({benchmark._mode})")
    benchmark._mode = MODE
    stats = benchmark._make_stats(1)  # one step per round: pytest-benchmark's own statistics
    for record in records:
        for seconds in record["samples"]["step_time_s"]:
            stats.update(seconds)
    first = records[0]
    benchmark.extra_info.update(
        {
            "bench_case_id": first["case_id"],
            "bench_repeats": len(records),
            "bench_samples_per_s": first["metrics"]["samples_per_s"],
            "bench_config": first["config"],
        }
    )


def _benchmark(request) -> Any:
    """The test's pytest-benchmark fixture, where that plugin is active."""
    try:
        return request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        return None


def _name(request) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in request.node.name)[:60]
