"""A run into MLflow (optional extra ``bench[mlflow]``): one MLflow run per case.

Each case becomes an MLflow run in the experiment named for the suite, tagged with the bench
run id, commit and machine: its config as params, its figures (median step time, throughput,
peak memory, final loss, repeats) as metrics, every measured step's time as the metric series
``step_time_s`` (step = its position over the case's repeats, in order), the loss readings as
``train_loss`` (step = steps trained), and the run's env.json, run.json and, when given, the
report as artifacts. The store is local by default: MLflow's own local backend (a SQLite file,
``mlflow.db``, with artifacts beside it) in the directory given; ``MLFLOW_TRACKING_URI``
(a server) is used instead when set and no directory is given. mlflow is imported here only.
"""

from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.names import NAME_RULE, is_path_name
from bench.results.export import RunCases, combine
from bench.results.export_dashboards import peak_memory, samples_per_step, step_summary
from bench.results.metrics import METRIC_PATHS
from bench.statistics import median

INSTALL = "pip install 'bench[mlflow]'"


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise UserError(f"--format mlflow needs MLflow: {INSTALL}") from None
    return mlflow


def tracking_uri(store: Path | None) -> str:
    """The store: ``sqlite:///STORE/mlflow.db`` for a directory, else MLflow's own default."""
    mlflow = _mlflow()
    if store is None:
        return mlflow.get_tracking_uri()
    return f"sqlite:///{store.resolve() / 'mlflow.db'}"


def export_mlflow(
    run: RunCases, run_dir: Path, store: Path | None, report: Path | None = None
) -> tuple[str, list[str]]:
    """Log each case of ``run`` as an MLflow run; returns the tracking URI and the run ids."""
    _mlflow()
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(store)
    client = MlflowClient(tracking_uri=uri)
    suite = str(next(iter(run.cases.values()))[1][0].get("suite"))
    experiment = client.get_experiment_by_name(suite)
    if experiment is None:
        if store is not None and not is_path_name(suite):  # from the records: stay in STORE
            raise UserError(f"records' suite {suite!r}: not a name for a folder ({NAME_RULE})")
        location = (store.resolve() / "artifacts" / suite).as_uri() if store else None
        experiment_id = client.create_experiment(suite, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    git = run.env.get("git") or {}
    ids = []
    for case_id, (case, ok) in run.cases.items():
        tags = {
            "bench.case_id": case_id,
            "bench.run_id": str(ok[0].get("run_id")),
            "bench.statuses": ", ".join(sorted({r["status"] for r in case})),
            "mlflow.source.git.commit": str(git.get("commit")),
            "bench.dirty": str(git.get("dirty")),
            "bench.device": str((ok[0].get("runtime") or {}).get("device_name")),
        }
        mlrun = client.create_run(experiment_id, run_name=run.name(case_id), tags=tags)
        run_id = mlrun.info.run_id
        params = [Param(key, str(value)) for key, value in sorted(ok[0]["config"].items())]
        stamp = int(mlrun.info.start_time)
        metrics = [Metric(k, v, stamp, 0) for k, v in _figures(ok).items() if v is not None]
        steps = [t for r in ok for t in r["samples"]["step_time_s"]]
        metrics += [Metric("step_time_s", t, stamp, i) for i, t in enumerate(steps)]
        # The loss readings of the first repeat: one value per step count.
        for done, loss in (ok[0].get("samples") or {}).get("loss") or []:
            metrics.append(Metric("train_loss", float(loss), stamp, int(done)))
        for chunk in range(0, len(metrics), 1000):  # MLflow's batch limit: 1000 metrics
            first = chunk == 0
            client.log_batch(
                run_id,
                metrics=metrics[chunk : chunk + 1000],
                params=params if first else [],
                tags=[RunTag(k, v) for k, v in tags.items()] if first else [],
            )
        for name in ("env.json", "run.json"):
            if (run_dir / name).is_file():
                client.log_artifact(run_id, str(run_dir / name))
        if report is not None:
            client.log_artifact(run_id, str(report))
        client.set_terminated(run_id)
        ids.append(run_id)
    return uri, ids


def _figures(ok: list[dict[str, Any]]) -> dict[str, float | None]:
    steps = step_summary(ok)
    per_step = samples_per_step(ok)
    return {
        "step_time_median_s": steps.median,
        "step_time_ci95_low_s": steps.ci95_low,
        "step_time_ci95_high_s": steps.ci95_high,
        "samples_per_s": per_step / steps.median if per_step else None,
        "peak_memory_bytes": peak_memory(ok),
        "final_train_loss": combine(ok, METRIC_PATHS["final_train_loss"], median),
        "num_repeats": float(len(ok)),
    }
