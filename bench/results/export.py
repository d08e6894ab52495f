"""Export a run to pytest-benchmark's saved-run JSON, which its ``compare`` command reads.

One pytest-benchmark "benchmark" per case with an ok record: its statistics come from every
measured step time of the case's ok repeats (pooled), computed by pytest-benchmark's own
``Stats`` so that every field means what pytest-benchmark means by it. The sweep's varying axes
are the benchmark's ``params``; throughput, MFU, memory, energy and the other figures go to
``extra_info``; ``machine_info`` and ``commit_info`` describe the machine and commit that ran
(from the run's ``env.json``, not the machine that exports).
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_benchmark import __version__ as PYTEST_BENCHMARK_VERSION
from pytest_benchmark.stats import Stats

from bench.errors import UserError
from bench.results.metrics import METRIC_PATHS, metric_value
from bench.results.store import (
    ENV,
    MANIFEST,
    PROBE_FLAG,
    RECORDS,
    read_json,
    read_records,
    status_summary,
)
from bench.spec.labels import varying_keys
from bench.statistics import median

FORMATS = ("pytest-benchmark",)
STEPS = "step_time_s"  # the raw samples pytest-benchmark's statistics are computed from
# extra_info keys: figures of the report's metric table (bench/results/metrics.py, one path per
# figure for every reader); repeats combine by their median (rates, times, losses, energy) or,
# for memory peaks, by their maximum.
MEDIAN_METRICS = {
    key: METRIC_PATHS[key]
    for key in (
        "samples_per_s",
        "tokens_per_s",
        "mfu",
        "achieved_flops_per_s",
        "energy_per_sample_j",
        "energy_per_step_j",
        "first_step_s",
        "compile_time_s",
        "final_train_loss",
        "num_params",
    )
}
MAX_METRICS = {
    key: METRIC_PATHS[key] for key in ("peak_alloc_bytes", "peak_reserved_bytes", "peak_rss_bytes")
}


@dataclass(frozen=True)
class RunCases:
    """A run as every exporter reads it: its cases with measured steps, and what it ran on."""

    env: dict[str, Any]
    manifest: dict[str, Any]
    axes: list[str]
    """The settings that vary between the run's cases (a case's parameters)."""
    cases: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]
    """case id: (all its records, its ok records with measured steps)."""
    left_out: list[str]
    """Cases without measured steps, as text (their statuses)."""

    def name(self, case_id: str) -> str:
        """``suite[param-param]``: a case's name in every export (pytest-benchmark's style)."""
        config = self.cases[case_id][1][0]["config"]
        suite = str(self.cases[case_id][1][0].get("suite"))
        param = "-".join(str(config.get(axis)) for axis in self.axes)
        return f"{suite}[{param or case_id}]"

    def params(self, case_id: str) -> dict[str, Any] | None:
        config = self.cases[case_id][1][0]["config"]
        return {axis: config.get(axis) for axis in self.axes} or None


def read_run_cases(run_dir: Path) -> RunCases:
    """The cases of a run with measured steps; an error when it has none."""
    if not (run_dir / RECORDS).is_file():
        raise UserError(f"{run_dir}: not a run directory (it has no {RECORDS})")
    records = read_records(run_dir)
    env = read_json(run_dir / ENV)
    manifest = read_json(run_dir / MANIFEST) if (run_dir / MANIFEST).is_file() else {}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if PROBE_FLAG not in (record.get("flags") or []):
            grouped.setdefault(record["case_id"], []).append(record)
    axes = varying_keys([case[0]["config"] for case in grouped.values()])
    cases, left_out = {}, []
    for case_id, case in grouped.items():
        ok = [r for r in case if r["status"] == "ok" and (r.get("samples") or {}).get(STEPS)]
        if ok:
            cases[case_id] = (case, ok)
        else:
            left_out.append(f"{case_id} ({status_summary(case)}, no measured steps)")
    if not cases:
        raise UserError(f"{run_dir}: no case with measured steps to export")
    return RunCases(env, manifest, axes, cases, left_out)


def export_pytest_benchmark(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The pytest-benchmark document of a run, and the cases left out (no ok record), as text."""
    run = read_run_cases(run_dir)
    env, manifest = run.env, run.manifest
    benchmarks = [
        _benchmark(run, case_id, case, ok, manifest) for case_id, (case, ok) in run.cases.items()
    ]
    left_out = run.left_out
    document = {
        "machine_info": machine_info(env),
        "commit_info": commit_info(env),
        "benchmarks": benchmarks,
        "datetime": env.get("started_at") or manifest.get("created_at"),
        "version": PYTEST_BENCHMARK_VERSION,
    }
    return document, left_out


def _benchmark(
    run: RunCases,
    case_id: str,
    case: list[dict[str, Any]],
    ok: list[dict[str, Any]],
    manifest: dict[str, Any],
) -> dict[str, Any]:
    config = ok[0]["config"]
    suite = str(ok[0].get("suite"))
    params = run.params(case_id)
    param = "-".join(str(value) for value in params.values()) if params else None
    name = run.name(case_id)
    stats = Stats()
    for record in ok:
        for step_time in record["samples"][STEPS]:
            stats.update(step_time)
    extra: dict[str, Any] = {
        "case_id": case_id,
        "statuses": status_summary(case),
        "num_repeats": len(ok),
        "device_name": (ok[0].get("runtime") or {}).get("device_name"),
    }
    for key, path in MEDIAN_METRICS.items():
        extra[key] = combine(ok, path, median)
    for key, path in MAX_METRICS.items():
        extra[key] = combine(ok, path, max)
    extra["flags"] = sorted({flag for r in ok for flag in r.get("flags") or []})
    extra["config"] = config
    return {
        "group": suite,
        "name": name,
        "fullname": f"{manifest.get('suite_path') or suite}::{name}",
        "params": params,
        "param": param,
        "extra_info": extra,
        "options": {
            "timer": "cuda_event" if config.get("device") == "cuda" else "perf_counter",
            "disable_gc": False,
            "min_rounds": config.get("min_steps"),
            "max_time": config.get("max_time_s"),
            "min_time": config.get("min_time_s"),
            "warmup": config.get("warmup_steps"),
        },
        "stats": {**stats.as_dict(), "data": stats.data, "iterations": 1},
    }


def combine(records: list[dict[str, Any]], path: tuple[str, ...], how) -> float | None:
    values = [v for r in records if (v := metric_value(r, *path)) is not None]
    return how(values) if values else None


def machine_info(env: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's machine_info fields, from the run's env.json, plus torch and devices."""
    platform = str(env.get("platform") or "")
    parts = platform.split("-")
    cpu = env.get("cpu") or {}
    return {
        "node": env.get("hostname"),
        "processor": cpu.get("model"),
        "machine": next((p for p in parts if p in ("x86_64", "aarch64", "arm64")), None),
        "python_compiler": None,
        "python_implementation": "CPython",
        "python_implementation_version": env.get("python"),
        "python_version": env.get("python"),
        "python_build": None,
        "release": parts[1] if len(parts) > 1 else None,
        "system": parts[0] or None,
        "cpu": {"brand_raw": cpu.get("model"), "count": cpu.get("logical_cores"), **cpu},
        "platform": platform,
        "memory_bytes": env.get("memory_bytes"),
        "torch": env.get("torch"),
        "cuda": env.get("cuda"),
        "devices": env.get("devices"),
        "driver": env.get("driver"),
    }


def commit_info(env: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's commit_info: the commit that ran, its times when git here knows it."""
    git = env.get("git") or {}
    commit = git.get("commit")
    times = _commit_times(commit) if commit else (None, None)
    return {
        "id": commit or "unversioned",
        "time": times[0],
        "author_time": times[1],
        "dirty": bool(git.get("dirty")),
        "project": "bench",
        "branch": "(unknown)",
    }


def _commit_times(commit: str) -> tuple[str | None, str | None]:
    from bench.machine.paths import PROJECT_ROOT

    done = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "show", "-s", "--format=%cI%n%aI", commit],
        capture_output=True,
        text=True,
    )
    lines = done.stdout.split()
    return (lines[0], lines[1]) if done.returncode == 0 and len(lines) == 2 else (None, None)
