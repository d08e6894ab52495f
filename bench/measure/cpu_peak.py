"""The CPU's peak for MFU: a matrix-multiply rate measured once per machine, then cached.

CPUs have no datasheet peak that torch reaches (it depends on the vector units, their clocks
under load, the BLAS torch ships and the threads used), so the peak is what ``torch.mm`` achieves
here: square products of growing size, each timed several times, and the best rate of any. The
figure is cached in ``cpu_peak.json`` under ``$BENCH_CACHE_DIR`` (default ``~/.cache/bench``), keyed
by CPU model, threads, dtype and torch version, so that every case on this machine divides by the
same number and only the first pays the second or two it takes.

A peak measured on a busy machine is no peak: each entry keeps the load per core it was measured
under, and is measured again (keeping the better of the two) when that load was above
:data:`BUSY_LOAD_PER_CORE` and the machine is no longer busy, or when a case achieves more than
:data:`SUSPECT_MFU` of it (bench/measure/mfu.py).
"""

import functools
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench import atomic
from bench.machine.cache import cache_dir
from bench.machine.env import cpu_model
from bench.machine.peaks import Peak
from bench.measure.timing import time_call

CACHE_FILE = "cpu_peak.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Sizes tried in order; larger ones reach nearer the peak, until a single product takes longer
# than _MAX_CALL_S (bf16 without hardware support is slow): then the larger ones are skipped.
_SIZES = (256, 512, 1024, 2048)
_REPEATS = 5
_MAX_CALL_S = 0.25
BUSY_LOAD_PER_CORE = 0.5
SUSPECT_MFU = 0.9


def load_per_core() -> float:
    """The 1-minute load average over the cores this process may use."""
    return os.getloadavg()[0] / max(1, len(os.sched_getaffinity(0)))


def cpu_peak(dtype: str, threads: int, remeasure: bool = False) -> Peak:
    """This machine's measured matmul peak in ``dtype`` with ``threads`` torch threads.

    ``remeasure``: measure again even if cached (a case came too close to the cached peak); the
    better of the two is kept."""
    model = cpu_model()
    key = f"{model} | threads={threads} | {dtype} | torch {torch.__version__}"
    path = cache_dir() / CACHE_FILE
    cache = _read(path)
    entry = cache.get(key)
    load = load_per_core()
    busy_then = entry is not None and entry.get("load_per_core", 0.0) > BUSY_LOAD_PER_CORE
    if entry is None or remeasure or (busy_then and load <= BUSY_LOAD_PER_CORE):
        flops_per_s, size = measure_matmul(DTYPES[dtype], threads)
        if entry is None or flops_per_s > entry["flops_per_s"]:
            entry = cache[key] = {
                "flops_per_s": flops_per_s,
                "matrix_size": size,
                # A date for whoever reads the cache (when was this measured), not a timing.
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "load_per_core": load,
            }
        else:  # the cached figure stays; it has now been confirmed at this load
            entry["load_per_core"] = min(entry.get("load_per_core", load), load)
        _write(path, cache)
    source = (
        f"measured: torch.mm {entry['matrix_size']}x{entry['matrix_size']} {dtype}, "
        f"{threads} threads, {entry['measured_at']}, load {entry.get('load_per_core', 0):.2f} "
        f"per core ({path})"
    )
    return Peak(entry["flops_per_s"], dtype, model, source)


def measure_matmul(dtype: torch.dtype, threads: int) -> tuple[float, int]:
    """Best FLOP/s of ``torch.mm`` on square matrices, and the size that reached it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best, best_size = 0.0, _SIZES[0]
        generator = torch.Generator().manual_seed(0)
        cpu = torch.device("cpu")
        for n in _SIZES:
            a = torch.randn(n, n, generator=generator).to(dtype)
            b = torch.randn(n, n, generator=generator).to(dtype)
            torch.mm(a, b)  # the first call pays for packing buffers and kernel selection
            product = functools.partial(torch.mm, a, b)
            fastest_s = min(time_call(product, cpu)[1] for _ in range(_REPEATS))
            rate = 2 * n**3 / fastest_s  # n^3 multiply-adds
            if rate > best:
                best, best_size = rate, n
            if fastest_s > _MAX_CALL_S:
                break
        return best, best_size
    finally:
        torch.set_num_threads(previous)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def _write(path: Path, cache: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, cache, indent=1, sort_keys=True)
