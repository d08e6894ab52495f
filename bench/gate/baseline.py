"""Baselines: compact copies of runs under ``results/baselines/NAME/``, meant to be committed.

A baseline holds what ``bench compare`` and ``bench gate`` read and nothing else: the run's
records with their step-time samples (other raw series, such as loss readings, are dropped),
its ``env.json``, and ``baseline.json`` saying where it came from. It is written to a temporary
directory and renamed into place, so a failed save leaves any earlier baseline as it was.
"""

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.names import NAME_RULE, is_path_name
from bench.results.store import ENV, MANIFEST, RECORDS, read_json, read_records, write_json

BASELINES = "baselines"
BASELINE_MANIFEST = "baseline.json"
# Samples kept in a baseline: the ones compare reads.
KEPT_SAMPLES = ("step_time_s",)


def baseline_dir(results: Path, name: str) -> Path:
    return results / BASELINES / name


def baseline_names(results: Path) -> list[str]:
    root = results / BASELINES
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / RECORDS).is_file())


def save(results: Path, name: str, run_dir: Path, force: bool = False) -> Path:
    """Copy ``run_dir`` as baseline ``name``; refuses to replace one unless ``force``."""
    if not is_path_name(name):
        raise UserError(f"baseline name {name!r}: use {NAME_RULE} characters")
    if not (run_dir / RECORDS).is_file():
        raise UserError(f"{run_dir}: not a run directory (it has no {RECORDS})")
    records = read_records(run_dir)
    if not records:
        raise UserError(f"{run_dir / RECORDS}: no records to keep as a baseline")
    env = read_json(run_dir / ENV)
    run = read_json(run_dir / MANIFEST) if (run_dir / MANIFEST).is_file() else None
    target = baseline_dir(results, name)
    if target.exists() and not force:
        raise UserError(f"{target}: baseline {name!r} exists; give --force to replace it")

    statuses = [r["status"] for r in records]
    manifest = {
        "schema": 1,
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source_run": str(run_dir),
        "suites": sorted({str(r.get("suite")) for r in records}),
        "run_ids": sorted({str(r.get("run_id")) for r in records}),
        "git": env.get("git") if isinstance(env, dict) else None,
        "num_cases": len({r["case_id"] for r in records}),
        "num_records": len(records),
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "kept_samples": list(KEPT_SAMPLES),
        "run": run,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    lines = [json.dumps(_compact(r), separators=(",", ":")) + "\n" for r in records]
    (staging / RECORDS).write_text("".join(lines))
    write_json(staging / ENV, env)
    write_json(staging / BASELINE_MANIFEST, manifest)
    if target.exists():
        old = target.with_name(f".{name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
    return target


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    samples = record.get("samples") or {}
    return {**record, "samples": {k: v for k, v in samples.items() if k in KEPT_SAMPLES}}


def list_baselines(results: Path) -> list[dict[str, Any]]:
    """One entry per baseline: its manifest, or the reason it cannot be read."""
    entries = []
    for name in baseline_names(results):
        path = baseline_dir(results, name) / BASELINE_MANIFEST
        try:
            manifest = read_json(path)
        except UserError as error:
            manifest = {"error": str(error)}
        entries.append({**manifest, "name": name, "path": str(path.parent)})
    return entries
