"""The environment a run measured: software versions, devices, CPU, memory, git state.

Collected inside a worker process (it imports torch); ``bench env`` prints the same, collected
in a child process (:func:`collect_in_child`) so that the ``bench`` process never imports torch.
"""

import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench.machine.nvml import inventory
from bench.machine.paths import PROJECT_ROOT

# Variables that change what a run measures.
_ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "CUDA_", "NCCL_", "TORCH", "PYTORCH_", "BENCH_")


def relevant_env_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that change what a run measures (threads, devices, compilers)."""
    return {k: v for k, v in sorted(environ.items()) if k.startswith(_ENV_PREFIXES)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "reason": f"{repo} is not a git checkout"}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


WORKLOAD_PACKAGES = ("torch", "torchvision", "timm", "transformers", "peft")


def collect(repo: Path, found: dict[str, Any] | None = None) -> dict[str, Any]:
    """The environment, in the order env.json lists it. ``found``: :func:`torch_facts` as
    another process found them (bench env's child); None: found here, importing torch."""
    torch = found if found is not None else torch_facts()
    nvml = inventory()  # the hardware boundary: torch-free, faked in tests
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch["torch"],
        "torchvision": _version("torchvision"),
        "cuda": torch["cuda"],
        "cuda_available": torch["cuda_available"],
        "cudnn": torch["cudnn"],
        "nccl": torch["nccl"],
        "devices": torch["devices"],
        "driver": {"version": nvml["driver_version"], "reason": nvml["reason"]},
        "nvml": nvml,
        "cpu": {
            "model": cpu_model(),
            "logical_cores": psutil.cpu_count(logical=True),
            "physical_cores": psutil.cpu_count(logical=False),
            "torch_threads": torch["torch_threads"],
        },
        "memory_bytes": psutil.virtual_memory().total,
        # The repository the suite lives in (the user's, for their own workloads), and bench's.
        "git": git_state(repo),
        "bench_git": git_state(PROJECT_ROOT),
        # The packages a workload imports that matter to what it measures.
        "packages": {name: _version(name) for name in WORKLOAD_PACKAGES},
        "env_vars": relevant_env_vars(os.environ),
    }


def torch_facts() -> dict[str, Any]:
    """What only torch knows: its versions, CUDA devices and default threads."""
    import torch

    cuda = torch.cuda.is_available()
    devices = []
    for index in range(torch.cuda.device_count() if cuda else 0):
        props = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "index": index,
                "name": props.name,
                "memory_bytes": props.total_memory,
                "capability": f"{props.major}.{props.minor}",
            }
        )
    nccl = None
    if cuda and hasattr(torch.cuda, "nccl"):
        try:
            nccl = ".".join(map(str, torch.cuda.nccl.version()))
        except Exception:  # noqa: BLE001 - a build without NCCL
            nccl = None
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "nccl": nccl,
        "devices": devices,
        "torch_threads": torch.get_num_threads(),
    }


def collect_in_child(repo: Path) -> dict[str, Any]:
    """:func:`collect` with :func:`torch_facts` found in a new interpreter, which imports torch
    and exits: the caller does not. Its ``bench`` is this one (the checkout above this package
    first on its path); everything else (NVML, the CPU, git) is found here."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    code = "import json; from bench.machine.env import torch_facts as f; print(json.dumps(f()))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": path},
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"collecting the environment failed: {last}")
    return collect(repo, json.loads(done.stdout))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
