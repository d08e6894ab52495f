"""Find run directories and read their records, with one-line errors for corrupt input.

Layout and record schema: docs/RESULTS.md. A run directory is ``results/<suite>/<run-id>/`` with
a ``records.jsonl``; run ids are UTC start times (``20261128-101502``) and so sort by time.
"""

import json
import warnings
from pathlib import Path
from typing import Any

from bench.errors import UserError

RECORDS_FILE = "records.jsonl"
SCHEMA_VERSION = 1
# Directories under results/ that hold no suite's runs.
NOT_SUITES = ("report", "baselines")
REQUIRED_FIELDS = ("case_id", "status", "config")


def find_latest_runs(results_dir: Path) -> list[Path]:
    """The latest run directory of each suite under ``results_dir``, sorted by suite."""
    if not results_dir.is_dir():
        raise UserError(f"{results_dir}: no such results directory")
    latest = []
    for suite_dir in sorted(results_dir.iterdir()):
        if not suite_dir.is_dir() or suite_dir.name in NOT_SUITES:
            continue
        runs = sorted(run.parent for run in suite_dir.glob(f"*/{RECORDS_FILE}"))
        if runs:
            latest.append(runs[-1])
    return latest


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of one run; ``path`` is the run directory or its ``records.jsonl``.

    A last line without its newline is a record whose write was cut off (the run was killed):
    it is skipped with a warning. Empty lines are skipped.
    """
    file = path / RECORDS_FILE if path.is_dir() else path
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
    if record.get("schema") != SCHEMA_VERSION:
        raise UserError(
            f"{where} unknown schema version {record.get('schema')!r} "
            f"(this version of bench reads schema {SCHEMA_VERSION})"
        )
    for field in REQUIRED_FIELDS:
        if field not in record:
            raise UserError(f"{where} missing field {field!r}")
    if not isinstance(record["config"], dict):
        raise UserError(f"{where} field 'config' is not an object")
    return record
