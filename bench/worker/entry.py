"""The worker: runs one (case, repeat) in its own process and writes its result as JSON.

Order of events, as docs/METHOD.md explains: build data, model and optimizer
(bench/worker/prepare.py); time the first step alone (it carries compilation); warm up; run the
measured window; evaluate on held-out data (bench/worker/phases.py); the result
(bench/worker/result.py). The launcher turns the result into a record; this package imports
torch, the launcher does not.
"""

import os
import sys
import traceback
from pathlib import Path
from typing import Any

from bench.errors import CaseError
from bench.measure.memory import oom_snapshot
from bench.measure.timing import epoch
from bench.spec.case import Case
from bench.worker.failure import classify_failure, error_tail, write_result
from bench.worker.phases import measure


def main(case_dict: dict[str, Any], result_path: str, log_path: str, launched_at: float) -> None:
    """Entry point of the worker process (forked by the launcher's fork server)."""
    started = epoch()
    # Truncated: a resumed run's log holds this attempt only, not a killed one's lines.
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        result = measure(Case(**case_dict), artifacts=Path(log_path).with_suffix(""))
    except CaseError as error:  # a reason the user can act on, in one line: no traceback
        print(f"error: {error}")
        result = {"status": "error", "reason": str(error)}
    except BaseException as error:  # noqa: BLE001 - every failure becomes a record
        traceback.print_exc()
        result = {"status": classify_failure(error), "reason": error_tail(error)}
        if result["status"] == "oom" and (snapshot := oom_snapshot(Path(log_path).with_suffix(""))):
            result["metrics"] = {"memory": {"snapshot": snapshot}}
    timing = result.setdefault("timing", {})
    timing["spawn_s"] = started - launched_at
    timing["worker_s"] = epoch() - started
    sys.stdout.flush()
    sys.stderr.flush()
    write_result(Path(result_path), result)
