"""One rank of a distributed case: started by torchrun, one process per rank (bench/torchrun.py).

Each rank joins the process group (gloo on CPU, NCCL on CUDA, one GPU per rank), builds the case
with the worker (``worker.measure``) and wraps its model and loss in DistributedDataParallel or
FSDP2's ``fully_shard``. Every rank builds the weights, then takes rank 0's (a broadcast), so a
distributed case starts from the weights a one-process case of the same seed starts from; rank r
draws its batches from its own stream, seeded ``seed + r``.

Lockstep: the gradient all-reduce (DDP) or reduce-scatter (FSDP) of every step keeps the ranks
together; the block size of the measured window and the decision to stop it are rank 0's,
broadcast over a CPU (gloo) group, so that no rank leaves the window while another waits for it
in a collective, and no device is synchronised for the decision.

At the end every rank's result is gathered on every rank, and local rank 0 of each node writes
the merged result (bench/rank_merge.py). A rank that raises writes its own error file and exits
non-zero; torchrun then stops the others, and the launcher names the rank in the record's reason.

Run as ``python -m bench.distributed CASE_JSON RESULT_PATH LOG_DIR JOB_NAME LAUNCHED_AT``.
"""

import ctypes
import dataclasses
import json
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from bench import rank_merge, worker
from bench.config import Case
from bench.timing import epoch

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass
class Ranks:
    """This process's place in a distributed case, as ``worker.measure`` uses it."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    strategy: str
    control: Any
    """A gloo group for the harness's own decisions: CPU tensors, no device sync."""
    module: nn.Module | None = None
    param_checksum_start: float | None = None

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def wrap(self, module: nn.Module) -> nn.Module:
        """Rank 0's weights on every rank, then DDP or FSDP2 around the model and loss."""
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor, src=0)
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
        else:
            assert self.strategy == "fsdp", f"unvalidated strategy {self.strategy!r}"
            _fully_shard(module.model, self.device, self.world_size)  # type: ignore[arg-type]
        self.module = module
        self.param_checksum_start = self.param_checksum()
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


def _fully_shard(model: nn.Module, device: torch.device, world_size: int) -> None:
    """FSDP2: each transformer block (``gpt``) or each layer with weights (``mlp``) is one unit
    of communication, the rest of the model the root's (torch FSDP2 tutorial's layout)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
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
    return Ranks(rank, local_rank, world_size, device, case.strategy, control)


def run_rank(case: Case) -> dict[str, Any] | None:
    """This rank's part of the case; the merged result on local rank 0, None elsewhere."""
    ranks = start(case)
    if isinstance(ranks, str):
        return {"status": "skipped", "reason": ranks} if _local_rank() == 0 else None
    # Own batch stream per rank (seed + rank); the weights are rank 0's (Ranks.wrap).
    result = worker.measure(dataclasses.replace(case, seed=case.seed + ranks.rank), ranks)
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
    """Where a failed rank leaves its status and reason for the launcher."""
    return Path(log_dir) / f"{name}.rank{rank}.error.json"


def rank_log_path(log_dir: str, name: str, rank: int) -> Path:
    return Path(log_dir) / f"{name}.rank{rank}.log"


def main(argv: list[str]) -> None:
    case_path, result_path, log_dir, name, launched_at = argv
    started = epoch()
    if sys.platform == "linux":
        # Die with torchrun (even by SIGKILL): its ranks run in sessions of their own, so
        # killing torchrun's process group alone would leave them running.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    rank = int(os.environ["RANK"])
    log = os.open(rank_log_path(log_dir, name, rank), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        case = Case(**json.loads(Path(case_path).read_text()))
        result = run_rank(case)
    except BaseException as error:  # noqa: BLE001 - a failed rank becomes the case's reason
        traceback.print_exc()
        failure = {
            "status": worker.classify_failure(error),
            "reason": worker.error_tail(error),
            "rank": rank,
            "failed_at": epoch(),
        }
        _write_json(rank_error_path(log_dir, name, rank), failure)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)  # now: a collective's threads must not keep a failed rank alive
    if result is not None:
        timing = result.setdefault("timing", {})
        timing["spawn_s"] = started - float(launched_at)
        timing["worker_s"] = epoch() - started
        _write_json(Path(result_path), worker.finite_or_null(result))
    sys.stdout.flush()
    sys.stderr.flush()


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, allow_nan=False))
    os.replace(tmp, path)


if __name__ == "__main__":
    main(sys.argv[1:])
