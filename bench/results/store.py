"""Run directories on disk: the manifest, env.json and the append-only records file.

Layout and schema: docs/RESULTS.md. Records are appended one whole line per ``write`` and fsynced,
so a run killed at any moment keeps every record that finished; a cut-off last line (no newline)
is skipped by readers and removed by :meth:`RecordWriter.open` before a resume appends.
"""

import fcntl
import json
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import atomic, testpoint
from bench.errors import UserError
from bench.results.metrics import METRIC_PATHS

SCHEMA = 1
RECORDS = "records.jsonl"
MANIFEST = "run.json"
ENV = "env.json"
REQUIRED_FIELDS = ("case_id", "status", "config")
STATUSES = ("ok", "oom", "timeout", "error", "skipped")
# Records that are steps of a max-batch search (bench/run/maxbatch.py), not cases of the sweep.
PROBE_FLAG = "max_batch_probe"
# Directories under results/ that hold no suite's runs.
NOT_SUITES = ("report", "baselines")


def new_run_dir(results: Path, suite_name: str) -> Path:
    """Create ``results/<suite>/<run-id>`` with a fresh run id (the UTC start time)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    parent = results / suite_name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file in the way, a file system that takes no directories
        raise UserError(f"{results}: cannot create {parent} in it: {error.strerror}") from None
    for suffix in ("", *(f"-{i}" for i in range(2, 100))):
        run_dir = parent / f"{stamp}{suffix}"
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise UserError(f"{results}: cannot create {run_dir}: {error.strerror}") from None
        (run_dir / "logs").mkdir()
        return run_dir
    raise UserError(f"{parent}: cannot create a new run directory for {stamp}")


def write_json(path: Path, data: Any) -> None:
    """Write a whole JSON file of the run directory atomically, indented and key-sorted."""
    atomic.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable JSON file: {error}") from None


def find_latest_runs(results_dir: Path) -> list[Path]:
    """The latest run directory of each suite under ``results_dir``, sorted by suite."""
    if not results_dir.is_dir():
        raise UserError(f"{results_dir}: no such results directory")
    latest = []
    for suite_dir in sorted(results_dir.iterdir()):
        if not suite_dir.is_dir() or suite_dir.name in NOT_SUITES:
            continue
        runs = sorted(run.parent for run in suite_dir.glob(f"*/{RECORDS}"))
        if runs:
            latest.append(runs[-1])
    return latest


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of one run; ``path`` is the run directory or its ``records.jsonl``.

    A last line without its newline is a record whose write was cut off (the run was killed):
    it is skipped with a warning. Empty lines are skipped.
    """
    file = path / RECORDS if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{file}: no such records file")
    *lines, tail = file.read_bytes().split(b"\n")
    if tail.strip():
        warnings.warn(
            f"{file}:{len(lines) + 1}: last line has no newline (a write cut off); skipped",
            stacklevel=2,
        )
    return [
        _parse_line(file, number, line)
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]


def _parse_line(file: Path, number: int, line: bytes) -> dict[str, Any]:
    where = f"{file}:{number}:"
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        raise UserError(f"{where} not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{where} not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise UserError(f"{where} not a JSON object (got {type(record).__name__})")
    if record.get("schema") != SCHEMA:
        raise UserError(
            f"{where} unknown schema version {record.get('schema')!r} "
            f"(this version of bench reads schema {SCHEMA})"
        )
    for field in REQUIRED_FIELDS:
        if field not in record:
            raise UserError(f"{where} missing field {field!r}")
    if not isinstance(record["config"], dict):
        raise UserError(f"{where} field 'config' is not an object")
    if record["status"] not in STATUSES:
        raise UserError(f"{where} status {record['status']!r} is not one of {', '.join(STATUSES)}")
    metrics = record.get("metrics") or {}
    if record["status"] == "ok" and not ("step_time_s" in metrics or "max_batch_size" in metrics):
        raise UserError(f"{where} an ok record without metrics.step_time_s")
    _check_types(where, record)
    return record


def _check_types(where: str, record: dict[str, Any]) -> None:
    """The fields readers rely on hold their types: ``flags`` a list of strings, ``metrics`` an
    object whose figures read by the report, export and estimate (bench/results/metrics.py) are
    numbers or null, under objects."""
    flags = record.get("flags")
    if flags is not None and not (
        isinstance(flags, list) and all(isinstance(f, str) for f in flags)
    ):
        raise UserError(f"{where} flags is {_short(flags)}, not a list of strings")
    metrics = record.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise UserError(f"{where} metrics is {_short(metrics)}, not an object")
    for path in METRIC_PATHS.values():
        value: Any = metrics or {}
        for depth, key in enumerate(path, start=1):
            value = value.get(key)
            name = "metrics." + ".".join(path[:depth])
            if value is None:
                break
            if depth < len(path) and not isinstance(value, dict):
                raise UserError(f"{where} {name} is {_short(value)}, not an object")
            if depth == len(path) and not isinstance(value, int | float):  # a bool is an int
                raise UserError(f"{where} {name} is {_short(value)}, not a number")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def status_summary(records: list[dict[str, Any]]) -> str:
    """``"3 ok, 1 error"``: how many records have each status; ``"absent"`` for none."""
    statuses = [r["status"] for r in records]
    return ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses))) or "absent"


class RecordWriter:
    """Appends records to ``records.jsonl``, one durable line each."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / RECORDS
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            # One writer per run: a second `bench run --resume` of the same run would duplicate
            # its records. The lock goes with the process, however it ends.
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise UserError(f"{run_dir}: another bench process is writing this run") from None
        self._drop_cut_off_line()

    def _drop_cut_off_line(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            warnings.warn(
                f"{self.path}: removing an incomplete last record (a write cut off)", stacklevel=3
            )
            os.truncate(self.path, keep)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        written = os.write(self._fd, line)
        if written != len(line):  # a short write: disk full; leave no half record behind
            os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - written)
            raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
        testpoint.reached("record")
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
