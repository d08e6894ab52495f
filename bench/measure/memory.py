"""Peak memory over the measured window, behind one interface for CUDA and the host."""

import resource
from pathlib import Path

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


def _vm_hwm() -> int | None:
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return None
