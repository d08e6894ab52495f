"""Where a sweep's cases run: ``bench run``'s rendezvous and Slurm options, checked together.

An option that would have no effect with the chosen executor is an error (or, where it is only
redundant, a warning), before anything runs.
"""

import argparse
import shutil
import warnings

from bench.errors import UserError
from bench.run.executors import DEFAULT_RDZV_PORT, SlurmOptions
from bench.run.torchrun import Placement
from bench.spec.case import Case


def placement_and_slurm(
    args: argparse.Namespace, cases: list[Case]
) -> tuple[Placement, SlurmOptions]:
    """The placement and Slurm options of ``bench run``, checked against the executor."""

    rdzv_given = [
        name
        for name, value, default in (
            ("--rdzv-endpoint", args.rdzv_endpoint, None),
            ("--rdzv-backend", args.rdzv_backend, "c10d"),
            ("--node-rank", args.node_rank, None),
            ("--rdzv-id", args.rdzv_id, "bench"),
        )
        if value != default
    ]
    slurm_given = [
        name
        for name, value in vars(args).items()
        if name.startswith("slurm_") and value not in (None, [])
    ]
    # submitit's local executor takes the job's size and time, not the cluster's own options.
    cluster_only = ("slurm_partition", "slurm_account", "slurm_setup", "slurm_param")
    misplaced = [
        name
        for name in slurm_given
        if args.executor == "local" or (args.executor != "slurm" and name in cluster_only)
    ]
    if misplaced:
        options = ", ".join("--" + name.replace("_", "-") for name in misplaced)
        only_slurm = all(n in cluster_only for n in misplaced)
        allowed = "slurm" if only_slurm else "slurm or submitit-local"
        raise UserError(f"{options}: only with --executor {allowed}")
    if args.slurm_rdzv_port is not None and not 1 <= args.slurm_rdzv_port <= 65535:
        raise UserError(f"--slurm-rdzv-port {args.slurm_rdzv_port}: a port is 1 to 65535")
    if args.node_rank is not None and args.rdzv_backend != "static":
        raise UserError(
            f"--node-rank {args.node_rank}: only with --rdzv-backend static (c10d, the default, "
            "orders the nodes itself)"
        )
    # Malformed values first: an error, not a warning and then an error.
    placement = Placement(args.rdzv_endpoint, args.rdzv_backend, args.node_rank, args.rdzv_id)
    if args.executor != "local" and rdzv_given:
        raise UserError(
            f"{', '.join(rdzv_given)}: with --executor {args.executor}, each job finds its "
            "nodes itself (submitit's job environment); give these with --executor local only"
        )
    if rdzv_given and max(case.nnodes for case in cases) == 1:
        warnings.warn(
            f"{', '.join(rdzv_given)} has no effect: no case has nnodes > 1", stacklevel=1
        )
    for name in ("slurm_gpus_per_node", "slurm_cpus_per_task", "slurm_time", "slurm_max_parallel"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} {value}: must be a positive integer")
    params: dict[str, str | bool] = {}
    for text in args.slurm_param:
        key, sep, value = text.partition("=")
        if not key or (sep and not value):
            raise UserError(
                f"--slurm-param {text!r}: give KEY=VALUE (constraint=h100) or a flag (exclusive)"
            )
        params[key] = value if sep else True  # submitit writes True as a bare sbatch flag
    if args.executor == "slurm" and shutil.which("srun") is None:
        raise UserError(
            "--executor slurm: no srun on this machine's PATH; run bench on a Slurm login node "
            "(or try the same jobs here with --executor submitit-local)"
        )
    if args.executor == "local":
        placement.check(cases)
    slurm = SlurmOptions(
        partition=args.slurm_partition,
        account=args.slurm_account,
        gpus_per_node=args.slurm_gpus_per_node,
        cpus_per_task=args.slurm_cpus_per_task,
        time_min=args.slurm_time,
        max_parallel=args.slurm_max_parallel,
        setup=list(args.slurm_setup),
        params=params,
        rdzv_port=args.slurm_rdzv_port or DEFAULT_RDZV_PORT,
    )
    return placement, slurm
