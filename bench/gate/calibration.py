"""The machine's run-to-run drift, measured by an A/A: ``bench calibrate`` (docs/GATING.md).

Runs of unchanged code, one after the other, land apart by more than the spread inside each run
shows (a neighbour on the machine, its thermal and frequency state, where the allocator and the
scheduler put things). A calibration measures that per case and metric from K sequential runs:
each run's value is the metric's median over its ok repeats (the statistic ``bench compare``
takes the ratio of), and the drift is the 99% prediction bound of the ratio between two new runs
(:func:`bench.significance.drift_bound`). ``bench compare`` and ``bench gate`` widen the interval
of separate runs by it (:mod:`bench.comparison_rule`).

Calibrations are cached per machine in ``<cache>/calibrations.json`` (the cache of
:func:`bench.machine.cache.cache_dir`), keyed by the machine (host, CPU, GPUs from ``env.json``),
then by case id (which holds every measured setting and the device), then by metric.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import atomic
from bench.comparison_rule import NoiseFloor
from bench.errors import UserError
from bench.gate.metrics import METRICS, Metric
from bench.machine.cache import cache_dir
from bench.results.store import PROBE_FLAG
from bench.significance import drift_bound
from bench.statistics import median

CACHE_FILE = "calibrations.json"
MIN_RUNS = 3  # two runs give one degree of freedom: a bound too wide to use
COVERAGE = 0.99  # of the prediction bound: a pair of A/A runs passes it 99 times in 100


def machine_key(env: dict[str, Any]) -> str:
    """The machine a run was measured on, from its ``env.json``: host, CPU model, GPU names."""
    cpu = (env.get("cpu") or {}).get("model") or "unknown CPU"
    gpus = [str(d.get("name")) for d in env.get("devices") or [] if isinstance(d, dict)]
    return " / ".join([str(env.get("hostname") or "unknown host"), cpu, *gpus])


def run_value(records: list[dict[str, Any]], metric: Metric) -> float | None:
    """One run's value of a metric for one case: the median of its values over the ok repeats
    (None where not measured, or not all positive)."""
    values = [
        x
        for r in records
        if r["status"] == "ok" and PROBE_FLAG not in (r.get("flags") or [])
        for x in metric.values(r) or []
    ]
    return median(values) if values and min(values) > 0 else None


def measure_drift(runs: list[list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per case id and metric, the drift of ``runs`` (each a run's records) of unchanged code:
    ``drift`` (the prediction bound), ``observed`` (the largest ratio between two of them, less
    1), ``runs`` and ``repeats``. A case or metric measured in fewer than MIN_RUNS is left out."""
    if len(runs) < MIN_RUNS:
        raise UserError(f"a calibration needs at least {MIN_RUNS} runs, got {len(runs)}")
    by_run = [_by_case(records) for records in runs]
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for case_id in sorted({c for cases in by_run for c in cases}):
        for metric in METRICS:
            values = [
                v
                for cases in by_run
                if (v := run_value(cases.get(case_id, []), metric)) is not None
            ]
            if len(values) < MIN_RUNS:
                continue
            repeats = [sum(r["status"] == "ok" for r in cases.get(case_id, [])) for cases in by_run]
            entries.setdefault(case_id, {})[metric.name] = {
                "drift": drift_bound(values, coverage=COVERAGE),
                "observed": max(values) / min(values) - 1,
                "runs": len(values),
                "repeats": min(repeats),
            }
    if not entries:
        raise UserError("the calibration runs have no case measured in three runs")
    return entries


def _by_case(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    cases: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        cases.setdefault(record["case_id"], []).append(record)
    return cases


@dataclass(frozen=True)
class Calibration:
    """The drift calibrated on one machine, per case id and metric."""

    machine: str
    cases: dict[str, dict[str, dict[str, Any]]]

    def floor(self, case_id: str, metric: str) -> NoiseFloor | None:
        entry = self.cases.get(case_id, {}).get(metric)
        if entry is None:
            return None
        source = (
            f"calibrated: bench calibrate, {entry['runs']} runs of {entry['repeats']} repeats, "
            f"{entry.get('calibrated_at', 'undated')}"
        )
        return NoiseFloor(float(entry["drift"]), source)


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def load(env: dict[str, Any], path: Path | None = None) -> Calibration | None:
    """The calibration of the machine described by ``env`` (a run's env.json), if any."""
    cache = _read(path or cache_path())
    key = machine_key(env)
    return Calibration(key, cache[key]) if key in cache else None


def for_sides(base_env: dict[str, Any], cand_env: dict[str, Any]) -> Calibration | None:
    """The calibration to judge two separate runs with: their machine's, when both ran on it."""
    if machine_key(base_env) != machine_key(cand_env):
        return None
    return load(cand_env)


def save(
    env: dict[str, Any],
    entries: dict[str, dict[str, dict[str, Any]]],
    suite: str,
    path: Path | None = None,
) -> Path:
    """Store ``entries`` for the machine of ``env``; a case calibrated again is replaced whole."""
    path = path or cache_path()
    cache = _read(path)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    machine = cache.setdefault(machine_key(env), {})
    for case_id, metrics in entries.items():
        machine[case_id] = {
            name: {**entry, "suite": suite, "calibrated_at": stamp}
            for name, entry in metrics.items()
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_json(path, cache, indent=1, sort_keys=True)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        cache = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: unreadable calibration cache ({error}); delete it") from error
    if not isinstance(cache, dict):
        raise UserError(f"{path}: not a calibration cache (a JSON object); delete it")
    return cache
