"""A sweep: schedule the (case, repeat) jobs, run each through the launcher, append the records.

Repeats are interleaved across cases (round r runs every case's repeat r: A B C A B C ...), or in
a seeded random order within each round, so that drift of the machine spreads over all cases
instead of biasing one. The run directory's manifest holds everything needed to resume.
"""

import os
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench import testpoint
from bench.errors import UserError
from bench.machine.env import relevant_env_vars
from bench.results.store import (
    ENV,
    MANIFEST,
    PROBE_FLAG,
    RECORDS,
    SCHEMA,
    RecordWriter,
    new_run_dir,
    read_json,
    read_records,
    write_json,
)
from bench.run import executors
from bench.run.executors import SlurmOptions
from bench.run.launcher import Job
from bench.run.torchrun import Placement
from bench.spec.case import Case
from bench.spec.choices import RUN_LENGTH_KEYS
from bench.spec.labels import case_labels
from bench.spec.suite import Suite

Order = Literal["interleaved", "random"]


@dataclass(frozen=True)
class RunOptions:
    device: str
    overrides: dict[str, Any]
    order: Order = "interleaved"
    seed: int = 0
    executor: str = "local"
    """``local``, ``slurm`` or ``submitit-local`` (bench/run/executors.py)."""
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    placement: Placement = field(default_factory=Placement)
    """Where a multi-node case's ranks meet (bench/run/torchrun.py)."""


def create_run(results: Path, suite: Suite, cases: list[Case], options: RunOptions) -> Path:
    """Make the run directory and its manifest; nothing runs yet."""
    run_dir = new_run_dir(results, suite.name)
    write_json(
        run_dir / MANIFEST,
        {
            "schema": SCHEMA,
            "suite": suite.name,
            "description": suite.description,
            "suite_path": str(suite.path),
            "device": options.device,
            "overrides": options.overrides,
            "order": options.order,
            "seed": options.seed,
            "executor": options.executor,
            "slurm": asdict(options.slurm),
            "placement": options.placement.to_dict(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cases": [case.to_dict() for case in cases],
        },
    )
    return run_dir


def schedule(cases: list[Case], order: Order, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for repeat in range(max(case.repeats for case in cases)):
        round_ = [Job(case, repeat) for case in cases if case.repeats > repeat]
        if order == "random":
            rng.shuffle(round_)
        jobs += round_
    return jobs


def execute(run_dir: Path, console: Console) -> list[dict[str, Any]]:
    """Run every job of the run that has no record yet; return all of the run's records."""
    manifest = read_json(run_dir / MANIFEST)
    cases = [Case(**values) for values in manifest["cases"]]
    done = set()
    if (run_dir / RECORDS).exists():
        # A probe of a max-batch search has the id of the case at its batch size, which may be
        # a case of the sweep still to run: it is no record of that case.
        done = {
            (r["case_id"], r["repeat"])
            for r in read_records(run_dir)
            if PROBE_FLAG not in r.get("flags", [])
        }
    jobs = [
        job
        for job in schedule(cases, manifest["order"], manifest["seed"])
        if (job.case.id, job.repeat) not in done
    ]
    labels = case_labels({case.id: case.to_dict() for case in cases})
    # Runs from before these keys were recorded ran here.
    placement = Placement(**manifest.get("placement", {}))
    slurm = SlurmOptions(**manifest.get("slurm", {}))
    if manifest.get("executor", "local") == "local":
        placement.check(cases)
    compiles = any(job.case.compile != "eager" for job in jobs)
    executor = executors.create(
        manifest.get("executor", "local"), run_dir, placement, slurm, compiles
    )
    # The git state of the repository the suite lives in (a user's own, or this project's).
    env = executor.collect_env(Path(manifest["suite_path"]).resolve().parent)
    if env is not None:
        _record_env(run_dir, env)
    _warn_if_busy(console)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with RecordWriter(run_dir) as writer, Progress(*columns, console=console) as progress:
        task = progress.add_task("starting", total=len(jobs))
        sink = _Sink(run_dir, manifest["suite"], labels, len(jobs), writer, progress, task)
        executor.run(jobs, sink)
    return read_records(run_dir)


def _record_env(run_dir: Path, env: dict[str, Any]) -> None:
    """The run's env.json, or the check that a resumed run measures what it started on."""
    if "status" in env:  # the probe itself failed: the cases would too
        raise RuntimeError(f"cannot start a worker process: {env.get('reason')}")
    # As the user set them: libraries imported in the worker set some of their own.
    env["env_vars"] = relevant_env_vars(os.environ)
    if (run_dir / ENV).exists():
        check_same_environment(read_json(run_dir / ENV), env, run_dir)
    else:
        write_json(run_dir / ENV, env)


@dataclass
class _Sink:
    """Writes each job's record as it ends, and tells the terminal."""

    run_dir: Path
    suite: str
    labels: dict[str, str]
    total: int
    writer: RecordWriter
    progress: Progress
    task: Any
    num_started: int = 0
    num_finished: int = 0
    env_written: bool = False

    def started(self, job: Job) -> None:
        self.num_started += 1
        label = f"{self.labels[job.case.id]} r{job.repeat}"
        self.progress.update(self.task, description=f"[{self.num_started}/{self.total}] {label}")

    def probe(self, job: Job, result: dict[str, Any]) -> None:
        record = make_record(self.run_dir.name, self.suite, job, result)
        record["flags"].append(PROBE_FLAG)
        self.writer.append(record)
        self.progress.console.print(f"  probe batch_size={job.case.batch_size}: {describe(record)}")

    def finished(self, job: Job, result: dict[str, Any], env: dict[str, Any] | None) -> None:
        if env is not None and not self.env_written:
            # A job on a cluster node: the environment is that node's (the first to answer).
            if "status" in env:  # the node could not describe itself: nothing to check or keep
                pass
            elif (self.run_dir / ENV).exists():
                # A resumed cluster run: the same software and code as when it started (its jobs
                # ran on any of the cluster's nodes, so not the same host). Checked before this
                # job's record is written.
                recorded = read_json(self.run_dir / ENV)
                check_same_environment(recorded, env, self.run_dir, same_host=False)
            else:
                env["env_vars"] = relevant_env_vars(os.environ)
                write_json(self.run_dir / ENV, env)
            self.env_written = True
        record = make_record(self.run_dir.name, self.suite, job, result)
        self.writer.append(record)
        told = record["status"] == "skipped" and job.repeat > 0
        line = "skipped (the reason is on its first repeat)" if told else describe(record)
        label = f"{self.labels[job.case.id]} r{job.repeat}"
        self.num_finished += 1
        self.progress.console.print(f"[{self.num_finished}/{self.total}] {label}: {line}")
        self.progress.advance(self.task)
        testpoint.reached("between")


def _warn_if_busy(console: Console) -> None:
    """Other work on the machine is noise in every number: say so before measuring."""
    cores = len(os.sched_getaffinity(0))
    load_1m = os.getloadavg()[0]
    if load_1m > 0.5 * cores:
        console.print(
            f"[yellow]warning:[/] the machine is busy (load average {load_1m:.1f} on {cores} "
            "cores): other work will show in the step times; each record keeps the load"
        )


def check_same_environment(
    recorded: dict[str, Any], now: dict[str, Any], run_dir: Path, same_host: bool = True
) -> None:
    """A resumed run must measure what it started measuring: same machine (``same_host``),
    software and code."""
    keys = (("torch",), ("cuda",), ("git", "commit"), ("git", "dirty"))
    if same_host:
        keys = (("hostname",), *keys)
    for path in keys:
        before, after = recorded, now
        for key in path:
            before, after = (before or {}).get(key), (after or {}).get(key)
        if before != after:
            name = ".".join(path)
            raise UserError(
                f"--resume {run_dir}: {name} was {before!r} when the run started and is "
                f"{after!r} now; its records would mix two setups: start a new run"
            )


def make_record(run_id: str, suite: str, job: Job, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "suite": suite,
        "case_id": job.case.id,
        "repeat": job.repeat,
        "status": result["status"],
        "reason": result.get("reason"),
        "config": job.case.to_dict(),
        "runtime": result.get("runtime", {}),
        "metrics": result.get("metrics", {}),
        "samples": result.get("samples", {}),
        "flags": list(result.get("flags", [])),
        "timing": result.get("timing", {}),
    }


def describe(record: dict[str, Any]) -> str:
    """One line for the terminal: status, median step time with its CI, throughput."""
    if record["status"] != "ok":
        last_line = (record["reason"] or "").strip().splitlines()[-1:] or [""]
        # Escaped: an error's text is not markup (gloo's begin "[/path/pair.cc:545]").
        return f"[yellow]{record['status']}[/]: {escape(last_line[0])}"
    metrics = record["metrics"]
    if "max_batch_size" in metrics:
        capped = " (the search's limit: max_batch_limit)" if metrics["max_batch_capped"] else ""
        return f"[green]ok[/] largest batch that fits: {metrics['max_batch_size']}{capped}"
    step = metrics["step_time_s"]
    ci = ""
    if step["ci95_low"] is not None:
        ci = f" (95% CI {step['ci95_low'] * 1e3:.3g}-{step['ci95_high'] * 1e3:.3g})"
    rate = f"{metrics['samples_per_s']:,.0f} samples/s"
    if metrics.get("tokens_per_s"):
        rate += f", {metrics['tokens_per_s']:,.0f} tokens/s"
    flags = f" [red]{', '.join(record['flags'])}[/]" if record["flags"] else ""
    quality = _describe_target(metrics.get("target"))
    line = f"[green]ok[/] {step['median'] * 1e3:.3g} ms/step{ci}, n={step['n']}, {rate}{quality}"
    return line + flags


def _describe_target(target: dict[str, Any] | None) -> str:
    if not target:
        return ""
    goal = f"{target['metric']} {target['value']:g}"
    if target["reached"]:
        return (
            f"; {goal} after {target['steps_to_target']} steps, {target['time_to_target_s']:.3g} s"
        )
    best = "no evaluation" if target["best"] is None else f"best {target['best']:.4g}"
    return f"; {goal} not reached ({target['budget']}; {best})"


def unresolved_comparisons(records: list[dict[str, Any]]) -> list[str]:
    """Warnings for pairs of cases that differ in one setting and whose step times the project's
    comparison rule (:mod:`bench.comparison_rule`) cannot resolve at its 5% threshold.

    Such a pair is what the suite asks to resolve, and the machine's noise hides the difference.
    The cases of one run are interleaved (every case's repeat k runs in round k), so the rule
    pairs their repeats round by round.
    """
    # Here, not at the top: the rule's statistics load numpy and scipy, which a run's start
    # does not need.
    from bench.comparison_rule import DEFAULT_THRESHOLD, compare_samples

    by_case: dict[str, dict[Any, float]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for record in records:
        # A probe of a max-batch search has the id of the case at its batch size, but its few
        # steps are no repeat of that case.
        probe = PROBE_FLAG in record.get("flags", [])
        if record["status"] == "ok" and "step_time_s" in record["metrics"] and not probe:
            rounds = by_case.setdefault(record["case_id"], {})
            rounds[record.get("repeat", len(rounds))] = record["metrics"]["step_time_s"]["median"]
            configs[record["case_id"]] = {
                k: v for k, v in record["config"].items() if k not in RUN_LENGTH_KEYS
            }
    labels = {case_id: _label(configs[case_id]) for case_id in configs}
    warnings = []
    for a, b in combinations(sorted(by_case), 2):
        differing = [k for k in configs[a] if configs[a][k] != configs[b].get(k)]
        rounds = [k for k in by_case[a] if k in by_case[b]]
        if len(differing) != 1 or len(rounds) < 2:
            continue
        result = compare_samples(
            [[by_case[a][k]] for k in rounds],
            [[by_case[b][k]] for k in rounds],
            lower_is_better=True,
            threshold=DEFAULT_THRESHOLD,
            interleaved=True,
        )
        if result.verdict == "inconclusive":
            key = differing[0]
            warnings.append(
                f"{key}={configs[a][key]} vs {key}={configs[b][key]} ({labels[a]}): step time "
                f"{result.ratio - 1:+.1%} [{result.ci_low - 1:+.1%}, {result.ci_high - 1:+.1%}], "
                f"but with this run's spread between repeats only a difference beyond "
                f"{result.smallest_detectable:.1%} can be resolved; rerun with more --repeats"
            )
    return warnings


def _label(config: dict[str, Any]) -> str:
    return f"{config['workload']} {config['model_size']} batch {config['batch_size']}"
