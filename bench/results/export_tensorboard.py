"""A run as TensorBoard event files (optional extra ``bench[tensorboard]``), written with
tensorboard's own writer and protos (no TensorFlow, no torch): one TensorBoard run per case,
``LOGDIR/<suite>/<bench run id>/<case name>/``, holding

- scalars at step 0: ``step_time_ms/median`` and its 95% interval, ``throughput/samples_per_s``,
  ``memory/peak_MiB``, ``loss/final``;
- ``step_time_ms/step``: every measured step's time, at its position over the case's repeats;
- ``loss/train``: the first repeat's loss readings against steps trained;
- hparams: the settings that vary between the run's cases, with those scalars as its metrics
  (the HParams tab compares the cases).

tensorboard is imported here only.
"""

import time
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.names import NAME_RULE, is_path_name
from bench.results.export import RunCases, combine
from bench.results.export_dashboards import peak_memory, samples_per_step, step_summary
from bench.results.metrics import METRIC_PATHS
from bench.statistics import median

INSTALL = "pip install 'bench[tensorboard]'"
METRICS = (
    "step_time_ms/median",
    "throughput/samples_per_s",
    "memory/peak_MiB",
    "loss/final",
)


def _tensorboard() -> Any:
    try:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise UserError(f"--format tensorboard needs TensorBoard: {INSTALL}") from None
    return EventFileWriter


def _folder(name: str, case_id: str) -> str:
    """A case's folder: its name where that is one safe path component, else its id."""
    safe = name.replace("[", "_").replace("]", "").replace("/", "_").replace(":", "_")
    return safe if is_path_name(safe) else case_id


def export_tensorboard(run: RunCases, logdir: Path) -> list[Path]:
    """Write the event files of each case; returns their directories."""
    writer_class = _tensorboard()
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import summary_v2

    first = next(iter(run.cases.values()))[1][0]
    suite, run_id = str(first.get("suite")), str(first.get("run_id"))
    for what, name in (("suite", suite), ("run_id", run_id)):
        if not is_path_name(name):  # from the records: never a way out of LOGDIR
            raise UserError(f"records' {what} {name!r}: not a name for a folder ({NAME_RULE})")
    root = logdir / suite / run_id
    wall = time.time()
    written = []
    for case_id, (_, ok) in run.cases.items():
        folder = root / _folder(run.name(case_id), case_id)
        folder.mkdir(parents=True, exist_ok=True)
        writer = writer_class(str(folder))

        def scalar(tag: str, value: float, step: int, writer=writer) -> None:
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
            writer.add_event(Event(wall_time=wall, step=step, summary=summary))

        steps = step_summary(ok)
        per_step = samples_per_step(ok)
        memory = peak_memory(ok)
        loss = combine(ok, METRIC_PATHS["final_train_loss"], median)
        figures = {
            "step_time_ms/median": steps.median * 1e3,
            "step_time_ms/ci95_low": steps.ci95_low * 1e3 if steps.ci95_low else None,
            "step_time_ms/ci95_high": steps.ci95_high * 1e3 if steps.ci95_high else None,
            "throughput/samples_per_s": per_step / steps.median if per_step else None,
            "memory/peak_MiB": memory / 2**20 if memory is not None else None,
            "loss/final": loss,
        }
        for tag, value in figures.items():
            if value is not None:
                scalar(tag, value, 0)
        for index, t in enumerate(t for r in ok for t in r["samples"]["step_time_s"]):
            scalar("step_time_ms/step", t * 1e3, index)
        for done, value in (ok[0].get("samples") or {}).get("loss") or []:
            scalar("loss/train", value, int(done))
        hparams = {axis: _hparam(value) for axis, value in (run.params(case_id) or {}).items()} or {
            "case_id": case_id
        }
        pb = summary_v2.hparams_pb(hparams, trial_id=run.name(case_id), start_time_secs=wall)
        writer.add_event(Event(wall_time=wall, step=0, summary=pb))
        writer.flush()
        writer.close()
        written.append(folder)
    # The HParams tab's columns: the hyperparameters and the metrics above, once for the run.
    config = summary_v2.hparams_config_pb(
        hparams=[summary_v2.HParam(axis) for axis in run.axes] or [summary_v2.HParam("case_id")],
        metrics=[summary_v2.Metric(tag) for tag in METRICS],
    )
    writer = writer_class(str(root))
    writer.add_event(Event(wall_time=wall, step=0, summary=config))
    writer.close()
    return written


def _hparam(value: Any) -> bool | float | str:
    """An hparam value as TensorBoard takes it: bool, number or string."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)
