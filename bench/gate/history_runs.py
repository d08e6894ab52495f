"""The runs of a history: every run of the suites named, found under the results directory and
its baselines, each run once, in the order they ran, with what each ran on and with.

A baseline (``bench baseline save``) is a copy of a run: when that run is also here, its
records carry the same ``run_id`` and the run is counted once (the run directory is read).
A run's time is ``started_at`` in its env.json (when the sweep collected its environment), else
``created_at`` in its run.json. Torch-free.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.gate.baseline import BASELINES, baseline_names
from bench.results.store import (
    ENV,
    MANIFEST,
    NOT_SUITES,
    PROBE_FLAG,
    RECORDS,
    read_json,
    read_records,
)

# The software a run's env.json names that annotates a series (never splits it).
VERSION_KEYS = ("torch", "cuda", "cudnn", "nccl", "python", "torchvision")


@dataclass(frozen=True)
class Run:
    """One run of the history."""

    run_id: str
    path: Path
    started_at: datetime
    records: list[dict[str, Any]]
    env: dict[str, Any] = field(default_factory=dict)

    @property
    def machine(self) -> str:
        """What a series is never mixed across: the CPU model and the GPUs (name and count)."""
        cpu = (self.env.get("cpu") or {}).get("model") or "unknown CPU"
        gpus = [str(d.get("name")) for d in self.env.get("devices") or []]
        if not gpus:
            return f"{cpu}, no GPU"
        counted = ", ".join(f"{gpus.count(n)} x {n}" for n in sorted(set(gpus)))
        return f"{cpu}, {counted}"

    @property
    def commit(self) -> str | None:
        return (self.env.get("git") or {}).get("commit")

    @property
    def dirty(self) -> bool | None:
        return (self.env.get("git") or {}).get("dirty")

    def software(self) -> dict[str, Any]:
        """The versions that annotate a change point: torch, CUDA, driver, packages, host."""
        versions = {key: self.env.get(key) for key in VERSION_KEYS}
        versions["driver"] = (self.env.get("driver") or {}).get("version")
        for name, version in (self.env.get("packages") or {}).items():
            versions.setdefault(name, version)
        versions["hostname"] = self.env.get("hostname")
        return versions


def parse_since(text: str | None) -> datetime | None:
    """``--since``: an ISO date or time (``2026-12-01``, ``2026-12-01T08:00``), UTC if no zone."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"--since {text!r}: not a date; give an ISO date or time, e.g. 2026-12-01 or "
            "2026-12-01T08:00"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def find_runs(args: list[str], results: Path) -> list[Run]:
    """The runs that ``args`` name (run directories, suites' folders, suite files or names),
    each once, ordered by when they ran."""
    from bench.names import NAME_RULE, is_path_name
    from bench.spec import suite as suites

    found: dict[str, Run] = {}
    for arg in args:
        path = Path(arg)
        if (path / RECORDS).is_file() or (path.name == RECORDS and path.is_file()):
            dirs = [path if path.is_dir() else path.parent]
        else:
            if path.is_dir():
                name = path.name
            elif path.suffix == ".toml" or "/" in arg:
                if not (path.exists() or path.with_name(path.name + ".toml").is_file()):
                    raise UserError(
                        f"{arg}: no such file or directory; give a run directory, a suite's "
                        "folder of runs, a suite file or a suite's name"
                    )
                name = suites.load(arg).name
            elif is_path_name(arg):
                name = arg
            else:
                raise UserError(f"{arg!r}: a suite's name is {NAME_RULE} characters")
            dirs = suite_runs(name, path if path.is_dir() else results / name, results)
            if not dirs:
                raise UserError(f"{arg}: no run of suite {name!r} in {results} or its baselines")
        for directory in dirs:
            run = read_run(directory)
            if run.run_id not in found or BASELINES in found[run.run_id].path.parts:
                found[run.run_id] = run
    return sorted(found.values(), key=lambda run: (run.started_at, run.run_id))


def suite_runs(name: str, folder: Path, results: Path) -> list[Path]:
    """Run directories of suite ``name``: those in its folder, then the baselines holding it."""
    if folder.name in NOT_SUITES:
        return []
    runs = sorted(p.parent for p in folder.glob(f"*/{RECORDS}")) if folder.is_dir() else []
    for baseline in baseline_names(results):
        directory = results / BASELINES / baseline
        records = read_records(directory)
        if any(str(r.get("suite")) == name for r in records):
            runs.append(directory)
    return runs


def read_run(directory: Path) -> Run:
    records = [r for r in read_records(directory) if PROBE_FLAG not in (r.get("flags") or [])]
    if not records:
        raise UserError(f"{directory / RECORDS}: no records")
    env = read_json(directory / ENV) if (directory / ENV).is_file() else {}
    manifest = read_json(directory / MANIFEST) if (directory / MANIFEST).is_file() else {}
    env = env if isinstance(env, dict) else {}
    stamp = env.get("started_at") or (manifest or {}).get("created_at")
    try:
        started = datetime.fromisoformat(str(stamp))
    except ValueError:
        raise UserError(
            f"{directory}: no start time (started_at in {ENV}, created_at in {MANIFEST})"
        ) from None
    run_id = str(records[0].get("run_id") or directory.name)
    return Run(
        run_id, directory, started if started.tzinfo else started.replace(tzinfo=UTC), records, env
    )
