"""Peak memory over the measured window, behind one interface for CUDA and the host."""

import resource
from pathlib import Path
from typing import Any

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


class PeakMemory:
    """``reset()`` right before the window, ``read()`` right after it.

    CUDA: the caching allocator's peaks (allocated and reserved). Host: the process's resident
    high-water mark; writing 5 to /proc/self/clear_refs resets it (Linux >= 4.0, proc(5)), so
    the peak is the window's and not that of imports or compilation before it.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.host_reset = False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            _CLEAR_REFS.write_text("5")
            self.host_reset = True
        except OSError:
            self.host_reset = False  # not Linux, or no permission: the peak is the lifetime's

    def read(self) -> dict[str, int | None]:
        cuda = self.device.type == "cuda"
        lifetime_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return {
            "peak_alloc_bytes": torch.cuda.max_memory_allocated(self.device) if cuda else None,
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(self.device) if cuda else None,
            "peak_rss_bytes": _vm_hwm() if self.host_reset else None,
            "lifetime_peak_rss_bytes": lifetime_rss,
        }


def _storage(tensor: torch.Tensor) -> int | None:
    """The address of a tensor's storage (of its local shard for a DTensor), or None where it
    has none: FSDP2 resizes the storage of unsharded parameters to nothing between uses, and
    torch then refuses to read its data pointer."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    try:
        return local.untyped_storage().data_ptr()
    except RuntimeError:
        return None


def _vm_hwm() -> int | None:
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return None


def _vm_rss() -> int | None:
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # kB
    return None


class PhaseMemory:
    """Memory by phase (``metrics.memory``): what the model, its gradients and the optimizer
    hold, and the peaks of set-up, the first step and the optimizer step.

    On CUDA the caching allocator's figures, read on the host (no device sync). On a CPU the
    process's RSS before the model is built is the baseline, so that the window's peak can be
    given as its rise above it (the ~500 MB of an imported torch say nothing of the model).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.rss_before_build = _vm_rss()
        self.figures: dict[str, int | None] = {}

    def _allocated(self) -> int | None:
        return torch.cuda.memory_allocated(self.device) if self.cuda else None

    def after_build(self) -> None:
        self.figures["after_build_bytes"] = self._allocated()

    def before_first_step(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def after_first_step(self) -> None:
        peak = torch.cuda.max_memory_allocated(self.device) if self.cuda else None
        self.figures["first_step_peak_bytes"] = peak

    def optimizer_step_peak(self, step: Any, optimizers: list[torch.optim.Optimizer]) -> None:
        """One more training step (after the window) with hooks around each optimizer's
        ``step``: the allocator's peak inside it, and what it allocated beyond what it freed."""
        if not self.cuda:
            return
        marks: dict[str, int] = {}

        def before(optimizer: Any, args: Any, kwargs: Any) -> None:
            torch.cuda.reset_peak_memory_stats(self.device)
            marks["before"] = torch.cuda.memory_allocated(self.device)

        def after(optimizer: Any, args: Any, kwargs: Any) -> None:
            marks["peak"] = max(marks.get("peak", 0), torch.cuda.max_memory_allocated(self.device))

        handles = [o.register_step_pre_hook(before) for o in optimizers]
        handles += [o.register_step_post_hook(after) for o in optimizers]
        try:
            step()
        finally:
            for handle in handles:
                handle.remove()
        if "peak" in marks:
            self.figures["optimizer_step_peak_bytes"] = marks["peak"]

    def activations(self, step: Any, model: torch.nn.Module) -> None:
        """One more training step (after the window) with autograd's saved-tensor hooks: the
        bytes of what the forward pass keeps for the backward pass, the activations. Each
        storage is counted once, at the largest tensor saved from it (a flattened input and the
        input share one); parameters' storages, and their views (a transposed weight), are not
        activations. Tensors a compiled graph saves go through the same hook (AOTAutograd saves
        them with ``save_for_backward``), so the figure shows what compilation saves or adds.
        Device-independent: the same figure on a CPU and on CUDA."""
        parameters = {_storage(p) for p in model.parameters()}
        saved: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = _storage(tensor)
            # None: a storage FSDP2 frees after use (its all-gathered weights), not an activation.
            if storage is not None and storage not in parameters:
                size = tensor.numel() * tensor.element_size()
                saved[storage] = max(saved.get(storage, 0), size)
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            step()
        self.figures["activations_bytes"] = sum(saved.values())

    def result(
        self, model: torch.nn.Module, optimizer_state_bytes: int, window_peak_rss: int | None
    ) -> dict[str, Any]:
        params = [p for p in model.parameters()]
        rise = None
        if window_peak_rss is not None and self.rss_before_build is not None:
            rise = window_peak_rss - self.rss_before_build
        return {
            **self.figures,
            "parameters_bytes": sum(p.numel() * p.element_size() for p in params),
            "gradients_bytes": sum(
                p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None
            ),
            "optimizer_state_bytes": optimizer_state_bytes,
            "rss_before_build_bytes": self.rss_before_build,
            "window_rss_rise_bytes": rise,
        }


class MemorySnapshot:
    """``memory_snapshot = true`` (CUDA): the caching allocator's history from the first step to
    the end of warm-up, dumped as a pickle that PyTorch's memory visualiser
    (https://pytorch.org/memory_viz) opens. Started before the first step, dumped and stopped
    before the window, so the window runs without the recording's overhead."""

    MAX_ENTRIES = 100_000

    def __init__(self, artifacts: Path | None):
        self.path = artifacts.with_name(artifacts.name + ".memory.pickle") if artifacts else None
        torch.cuda.memory._record_memory_history(max_entries=self.MAX_ENTRIES)

    def dump(self) -> dict[str, Any]:
        try:
            if self.path is not None:
                torch.cuda.memory._dump_snapshot(str(self.path))
        finally:
            torch.cuda.memory._record_memory_history(enabled=None)
        # The file's name: it lies in the run's logs/, wherever the run directory is moved.
        name = self.path.name if self.path else None
        return {"file": name, "steps": "first step and warm-up"}


def oom_snapshot(artifacts: Path | None) -> dict[str, Any] | None:
    """On an out-of-memory error on CUDA: the caching allocator's state at that moment (its
    segments and blocks; with ``memory_snapshot = true`` also the history of the first steps,
    which is still recording when the error comes in them), dumped for PyTorch's memory
    visualiser as ``logs/<job>.oom.memory.pickle``. None on a CPU, or where CUDA was never
    initialised or the dump fails (the error record stays what it is)."""
    if artifacts is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    path = artifacts.with_name(artifacts.name + ".oom.memory.pickle")
    try:
        torch.cuda.memory._dump_snapshot(str(path))
    except Exception:  # noqa: BLE001 - a failed dump must not hide the oom itself
        return None
    return {"file": path.name, "steps": "the allocator's state at the out-of-memory error"}
