"""A distributed case on one node: torchrun's agent and its ranks, one process per rank.

:func:`launch` runs in the process the launcher forks from its fork server (torch already
imported) and starts the node's ranks through torch.distributed.run's API (``elastic_launch``,
what the ``torchrun`` command runs) with the ``fork`` start method: a rank starts in well under a
second instead of the seconds a fresh interpreter spends importing torch. The rendezvous is
torchrun's: ``--standalone``'s for one node, the :class:`~bench.run.torchrun.Placement`'s for
several.

Each rank joins the process group (gloo on CPU, NCCL on CUDA, one GPU per rank), builds the case
with the worker (``bench.worker.phases.measure``) and wraps its model and loss in
DistributedDataParallel or FSDP2's ``fully_shard``. Every rank builds the weights, then takes rank
0's (a broadcast), so a distributed case starts from the weights a one-process case of the same
seed starts from; rank r draws its batches from its own stream, seeded ``seed + r``.

Lockstep: the gradient all-reduce (DDP) or reduce-scatter (FSDP) of every step keeps the ranks
together; the block size of the measured window and the decision to stop it are rank 0's,
broadcast over a CPU (gloo) group, so that no rank leaves the window while another waits for it
in a collective, and no device is synchronised for the decision.

At the end every rank's result is gathered on every rank, and local rank 0 of each node writes
the merged result (bench/worker/rank_merge.py). A rank that raises writes its own error file and
exits non-zero; the agent then stops the others and writes the case's result, naming the rank.
"""

import dataclasses
import os
import sys
import traceback
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from bench.machine.process import die_with_parent
from bench.measure.timing import epoch
from bench.run import torchrun
from bench.spec.case import Case
from bench.worker import rank_merge
from bench.worker.failure import classify_failure, error_tail, write_result
from bench.worker.phases import measure


@dataclass
class Ranks:
    """This process's place in a distributed case, as ``bench.worker.phases.measure`` uses it."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    strategy: str
    control: Any
    """A gloo group for the harness's own decisions: CPU tensors, no device sync."""
    module: nn.Module | None = None
    param_checksum_start: float | None = None
    agreed: int = 0

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        if self.agreed == 0:
            self.log(f"window: blocks of {box[0]} steps")
        self.agreed += 1
        return box[0]

    def log(self, message: str) -> None:
        """A line in this rank's log: the phases a hung case's reason shows."""
        print(message, flush=True)

    def wrap(self, module: nn.Module) -> nn.Module:
        """Rank 0's weights on every rank, then DDP around the model and loss, or FSDP2 on the
        model (its units and root)."""
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor, src=0)
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
        else:
            assert self.strategy == "fsdp", f"unvalidated strategy {self.strategy!r}"
            units = getattr(module, "fsdp_units", None)
            _fully_shard(module.model, self.device, self.world_size, units)  # type: ignore[arg-type]
        self.module = module
        self.param_checksum_start = self.param_checksum()
        self.log(f"{self.strategy} wrapped the model; first step, warm-up")
        return module

    def param_checksum(self) -> float:
        """Sum of every parameter value, in float64: equal on all ranks when their replicas agree
        (FSDP: of the whole parameters, gathered from the shards; a collective)."""
        assert self.module is not None
        total = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for param in self.module.parameters():
                full = param.full_tensor() if hasattr(param, "full_tensor") else param
                total += full.detach().double().sum().cpu()
        return float(total)


def _fully_shard(
    model: nn.Module, device: torch.device, world_size: int, units: list[nn.Module] | None = None
) -> None:
    """FSDP2: each transformer block (``gpt``) or each layer with weights (``mlp``) is one unit
    of communication, the rest of the model the root's (torch FSDP2 tutorial's layout); a user's
    workload: ``units`` (its ``fsdp_unit`` modules, none: the whole model is one)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    if units is None:
        blocks = getattr(model, "blocks", None)
        if isinstance(blocks, nn.ModuleList):
            units = list(blocks)
        else:
            # Leaf layers with weights of their own (an MLP's Linear layers).
            units = [m for m in model.children() if not list(m.children()) and list(m.parameters())]
    for unit in units:
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)


def start(case: Case) -> Ranks | str:
    """Join the process group; or the reason this rank cannot run (the same on every rank)."""
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    assert world_size == case.world_size, "torchrun started as many ranks as the case has"
    if case.device == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device is available to this process"
        if case.nproc > torch.cuda.device_count():
            return (
                f"nproc = {case.nproc} ranks per node, one GPU each, but this node has "
                f"{torch.cuda.device_count()} CUDA devices"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    # A collective that waits longer than the case may run is a hang: the launcher's timeout_s
    # kills the case first, and names the ranks.
    timeout = timedelta(seconds=case.timeout_s)
    extra = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend, timeout=timeout, **extra)
    control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    assert case.strategy is not None, "a case with more than one rank has a strategy"
    ranks = Ranks(rank, local_rank, world_size, device, case.strategy, control)
    ranks.log(f"joined the {backend} process group of {world_size} on {device}")
    return ranks


def run_rank(case: Case, artifacts: Path | None = None) -> dict[str, Any] | None:
    """This rank's part of the case; the merged result on local rank 0, None elsewhere.
    ``artifacts``: this rank's path prefix in the run's logs (profile traces)."""
    ranks = start(case)
    if isinstance(ranks, str):
        return {"status": "skipped", "reason": ranks} if _local_rank() == 0 else None
    # Own batch stream per rank (seed + rank); the weights are rank 0's (Ranks.wrap).
    result = measure(dataclasses.replace(case, seed=case.seed + ranks.rank), ranks, artifacts)
    ranks.log(f"measured: {result['status']}; gathering the ranks' results")
    if result["status"] == "ok":
        result["metrics"]["param_checksum_start"] = ranks.param_checksum_start
        result["metrics"]["param_checksum_end"] = ranks.param_checksum()
    result["rank"] = {
        "rank": ranks.rank,
        "local_rank": ranks.local_rank,
        "host": os.uname().nodename,
        "device": str(ranks.device),
        "backend": dist.get_backend(),
    }
    gathered: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(gathered, result, group=ranks.control)
    dist.destroy_process_group()
    return rank_merge.merge(gathered) if ranks.local_rank == 0 else None


def _local_rank() -> int:
    return int(os.environ["LOCAL_RANK"])


def rank_error_path(log_dir: str, name: str, rank: int) -> Path:
    """Where a failed rank leaves its status and reason for the agent."""
    return Path(log_dir) / f"{name}.rank{rank}.error.json"


def rank_log_path(log_dir: str, name: str, rank: int) -> Path:
    return Path(log_dir) / f"{name}.rank{rank}.log"


def rendezvous_timeout_s(case: Case) -> int:
    """How long a node waits for the others: half the case's timeout_s, at most 10 minutes."""
    return max(1, min(int(case.timeout_s // 2), 600))


def launch(
    case_dict: dict[str, Any],
    placement_dict: dict[str, Any],
    job_name: str,
    result_path: str,
    log_path: str,
    launched_at: float,
) -> None:
    """This node's part of a case: torchrun's agent starts the ranks and waits for them; a
    failure becomes the case's result, naming the first rank that failed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    case = Case(**case_dict)
    placement = torchrun.Placement(**placement_dict)
    log_dir = str(Path(result_path).parent)
    for stale in Path(log_dir).glob(f"{job_name}.rank*.error.json"):
        stale.unlink()  # left by a killed attempt of a resumed run
    if case.nnodes == 1:
        # torchrun --standalone: a c10d store on a free local port, a fresh id.
        rdzv = {"rdzv_backend": "c10d", "rdzv_endpoint": "localhost:0", "run_id": str(uuid.uuid4())}
        rdzv_configs: dict[str, Any] = {}
    else:
        assert placement.rdzv_endpoint is not None, "Placement.check ran before the sweep"
        rdzv = {
            "rdzv_backend": placement.rdzv_backend,
            "rdzv_endpoint": placement.rdzv_endpoint,
            # The same on every node: the case and repeat.
            "run_id": f"{placement.rdzv_id}-{job_name}",
        }
        # Nodes that start a case apart wait for each other, but not for the whole of the
        # case's limit: nodes that never meet are an error of the rendezvous (the agent's),
        # before the launcher's timeout_s kills the case as a hang.
        wait_s = rendezvous_timeout_s(case)
        rdzv_configs = {"join_timeout": wait_s, "timeout": wait_s}
        if placement.rdzv_backend == "static":
            rdzv_configs["rank"] = placement.node_rank
    config = LaunchConfig(
        min_nodes=case.nnodes,
        max_nodes=case.nnodes,
        nproc_per_node=case.nproc,
        rdzv_configs=rdzv_configs,
        # A failed rank fails the case: a restart would measure a second attempt as the first.
        max_restarts=0,
        monitor_interval=0.2,
        start_method="fork",
        **rdzv,
    )
    try:
        elastic_launch(config, rank_main)(case_dict, result_path, log_dir, job_name, launched_at)
    except ChildFailedError as error:
        failures = {
            rank: {"exitcode": f.exitcode, "signal": f.signal_name() if f.exitcode < 0 else None}
            for rank, f in error.failures.items()
        }
        first, _ = error.get_first_failure()
        result = torchrun.failure(case, Path(log_dir), job_name, failures, first)
        write_result(Path(result_path), result)
    except Exception as error:  # noqa: BLE001 - the agent's own failure (a rendezvous timeout)
        traceback.print_exc()
        reason = f"torchrun's agent failed on this node:\n{error_tail(error)}"
        write_result(Path(result_path), {"status": "error", "reason": reason})
    sys.stdout.flush()
    sys.stderr.flush()


def rank_main(
    case_dict: dict[str, Any], result_path: str, log_dir: str, name: str, launched_at: float
) -> None:
    """One rank, forked by torchrun's agent: its output goes to ``<job>.rankN.log``."""
    started = epoch()
    die_with_parent()  # with the agent, so that a killed case leaves no rank behind
    rank = int(os.environ["RANK"])
    log = os.open(rank_log_path(log_dir, name, rank), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        artifacts = rank_log_path(log_dir, name, rank).with_suffix("")
        result = run_rank(Case(**case_dict), artifacts)
    except BaseException as error:  # noqa: BLE001 - a failed rank becomes the case's reason
        traceback.print_exc()
        failure = {
            "status": classify_failure(error),
            "reason": error_tail(error),
            "rank": rank,
            "failed_at": epoch(),
        }
        write_result(rank_error_path(log_dir, name, rank), failure)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)  # now: a collective's threads must not keep a failed rank alive
    if result is not None:
        timing = result.setdefault("timing", {})
        timing["spawn_s"] = started - launched_at
        timing["worker_s"] = epoch() - started
        write_result(Path(result_path), result)
    sys.stdout.flush()
    sys.stderr.flush()
