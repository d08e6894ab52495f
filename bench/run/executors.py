"""Where the jobs of a sweep run: here, one after another, or each as a Slurm job (submitit).

Both executors run a job the same way (:func:`run_job`: skip, max-batch search, or the launcher)
and hand each result to the runner, which writes the records of every job into the one run
directory. With Slurm, the run directory must be on a file system the compute nodes share (the
jobs write their logs there), and a job's result comes back through submitit's pickles.

- ``local``: the launcher on this machine (fork server; torchrun for several ranks).
- ``slurm``: one Slurm job per (case, repeat), ``nnodes`` nodes with one task each; each task
  starts torchrun for its node, meeting the others at the first node (submitit's job
  environment gives the hosts and the node's rank).
- ``submitit-local``: the same jobs through submitit's local executor, on this machine: the
  Slurm path without a cluster (tests, a workstation).

Torch-free on the submitting side.
"""

import importlib.util
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from bench.errors import UserError
from bench.machine.nvml import cuda_device_count
from bench.run import maxbatch
from bench.run.launcher import Job, Launcher
from bench.run.torchrun import Placement
from bench.spec.catalog import hf_missing
from bench.spec.hf_source import is_hf

EXECUTORS = ("local", "slurm", "submitit-local")
# A Slurm job's time limit beyond the case's own timeout: node start-up, imports, the fork
# server, teardown.
SLURM_MARGIN_MIN = 5
POLL_S = 1.0
DEFAULT_RDZV_PORT = 29500


@dataclass(frozen=True)
class SlurmOptions:
    """``bench run --slurm-*``: how each job is asked of Slurm (docs/DISTRIBUTED.md)."""

    partition: str | None = None
    account: str | None = None
    gpus_per_node: int | None = None
    """Default: the case's ``nproc`` on CUDA, none on CPU."""
    cpus_per_task: int | None = None
    time_min: int | None = None
    """Default: the case's ``timeout_s`` (times the probes of a max-batch search) plus a margin."""
    max_parallel: int | None = None
    """Jobs queued at once; default: all (slurm), one (submitit-local: one machine)."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before each job (``module load ...``, ``source .venv/bin/activate``)."""
    params: dict[str, str | bool] = field(default_factory=dict)
    """Other sbatch options, e.g. ``{"constraint": "h100", "exclusive": True}`` (True: a flag)."""
    rdzv_port: int = DEFAULT_RDZV_PORT
    """Port on a multi-node job's first node where its torchruns meet."""


class Sink(Protocol):
    """The runner's side: what happens as jobs start and end."""

    def started(self, job: Job) -> None: ...

    def probe(self, job: Job, result: dict[str, Any]) -> None: ...

    def finished(self, job: Job, result: dict[str, Any], env: dict[str, Any] | None) -> None: ...


def run_job(
    launcher: Launcher, job: Job, on_probe: Callable[[Job, dict[str, Any]], None]
) -> dict[str, Any]:
    """One (case, repeat) on this node: skipped, searched (``batch_size = "max"``) or launched."""
    load_1m = os.getloadavg()[0]
    if reason := skip_reason(job):
        return {"status": "skipped", "reason": reason}
    if job.case.batch_size == "max":
        result = maxbatch.search(job, launcher.run, on_probe)
    else:
        result = launcher.run(job)
    if result["status"] != "skipped":
        # What else ran on the machine as the case started: one process's noise.
        result.setdefault("runtime", {})["load_avg_1m_at_start"] = load_1m
    return result


def skip_reason(job: Job) -> str | None:
    """The case's own reason, or one of this node: more ranks than GPUs, a workload's optional
    package missing. ``bench run --dry-run`` shows the same."""
    if reason := job.case.skip_reason():
        return reason
    if is_hf(job.case.workload) and importlib.util.find_spec("transformers") is None:
        return hf_missing(job.case.workload)
    if job.case.device == "cuda" and job.case.nproc > 1:
        count, why = cuda_device_count()
        if count < job.case.nproc:
            return (
                f"nproc = {job.case.nproc} ranks per node, one GPU each, but this node has "
                f"{count} CUDA devices{f' ({why})' if why else ''}"
            )
    return None


class LocalExecutor:
    """Every job on this machine, one after another, in the schedule's order."""

    def __init__(self, run_dir: Path, placement: Placement, compiles: bool):
        self.launcher = Launcher(run_dir, placement, compiles)

    def collect_env(self, repo: Path) -> dict[str, Any] | None:
        return self.launcher.collect_env(repo)

    def run(self, jobs: list[Job], sink: Sink) -> None:
        for job in jobs:
            sink.started(job)
            sink.finished(job, run_job(self.launcher, job, sink.probe), None)


class SubmititExecutor:
    """Each job a submitit job (Slurm, or submitit's local executor), its records gathered
    into the run directory as the jobs end (in the order they end)."""

    def __init__(self, run_dir: Path, cluster: Literal["slurm", "local"], options: SlurmOptions):
        try:
            import submitit
        except ImportError as error:
            raise UserError(f"--executor needs submitit ({error}): pip install submitit") from error
        self.run_dir = run_dir
        self.cluster = cluster
        self.options = options
        self.executor = submitit.AutoExecutor(folder=run_dir / "submitit", cluster=cluster)

    def collect_env(self, repo: Path) -> dict[str, Any] | None:
        return None  # the nodes' own, from each job

    def parameters(self, job: Job) -> dict[str, Any]:
        case, options = job.case, self.options
        searches = math.ceil(math.log2(case.max_batch_limit)) * 2 if case.batch_size == "max" else 1
        time_min = options.time_min or math.ceil(case.timeout_s * searches / 60) + SLURM_MARGIN_MIN
        gpus = options.gpus_per_node
        if gpus is None and case.device == "cuda":
            gpus = case.nproc
        values: dict[str, Any] = {
            "name": f"bench-{job.name}",
            "timeout_min": time_min,
            "nodes": case.nnodes,
            "tasks_per_node": 1,  # one torchrun per node starts the node's ranks
            "gpus_per_node": gpus,
            "cpus_per_task": options.cpus_per_task,
        }
        if self.cluster == "slurm":
            values |= {
                "slurm_partition": options.partition,
                "slurm_account": options.account,
                "slurm_setup": list(options.setup) or None,
                "slurm_additional_parameters": dict(options.params) or None,
            }
        return values

    def run(self, jobs: list[Job], sink: Sink) -> None:
        limit = self.options.max_parallel or (1 if self.cluster == "local" else len(jobs))
        pending, running = list(jobs), []
        try:
            while pending or running:
                while pending and len(running) < limit:
                    job = pending.pop(0)
                    if reason := job.case.skip_reason():  # known here: no job for it
                        sink.finished(job, {"status": "skipped", "reason": reason}, None)
                        continue
                    self.executor.update_parameters(**self.parameters(job))
                    handle = self.executor.submit(
                        node_job,
                        str(self.run_dir),
                        job,
                        Placement().to_dict(),
                        self.options.rdzv_port,
                    )
                    running.append((handle, job))
                    sink.started(job)
                done = [(h, j) for h, j in running if h.done()]
                for handle, job in done:
                    running.remove((handle, job))
                    outcome = _outcome(handle)
                    for probe, probe_result in outcome["probes"]:
                        sink.probe(probe, probe_result)
                    sink.finished(job, outcome["result"], outcome["env"])
                if not done:
                    time.sleep(POLL_S)
        finally:
            for handle, _ in running:  # Ctrl-C or an error here: no job left queued
                handle.cancel(check=False)


def _outcome(handle: Any) -> dict[str, Any]:
    """Node 0's outcome of a finished job, or an error record of a job that failed as a job."""
    try:
        return handle.results()[0]
    except Exception as error:  # noqa: BLE001 - the job's failure (time limit, node) is a record
        lines = str(error).strip().splitlines()[-20:]
        reason = f"{handle.job_id}: the job failed\n" + "\n".join(lines)
        return {"result": {"status": "error", "reason": reason}, "probes": [], "env": None}


def node_job(run_dir: str, job: Job, placement: dict[str, Any], rdzv_port: int) -> dict[str, Any]:
    """A job's task on its node (one per node): launch the node's part of the case."""
    import submitit

    if job.case.nnodes > 1:
        environment = submitit.JobEnvironment()
        # Every node knows the first node's host and its own rank: a static rendezvous there.
        placement = placement | {
            "rdzv_endpoint": f"{environment.hostnames[0]}:{rdzv_port}",
            "rdzv_backend": "static",
            "node_rank": environment.node,
        }
    from bench.machine.paths import PROJECT_ROOT

    launcher = Launcher(Path(run_dir), Placement(**placement), job.case.compile != "eager")
    env = launcher.collect_env(PROJECT_ROOT)
    probes: list[tuple[Job, dict[str, Any]]] = []
    result = run_job(launcher, job, lambda probe, res: probes.append((probe, res)))
    return {"result": result, "probes": probes, "env": env}


def create(
    name: str, run_dir: Path, placement: Placement, options: SlurmOptions, compiles: bool
) -> LocalExecutor | SubmititExecutor:
    """``compiles``: a case of the sweep compiles: its fork server preloads torch.compile."""
    if name == "local":
        return LocalExecutor(run_dir, placement, compiles)
    cluster: Literal["slurm", "local"] = "slurm" if name == "slurm" else "local"
    return SubmititExecutor(run_dir, cluster, options)
