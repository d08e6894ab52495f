"""Process facilities of the operating system that the launcher and the distributed agent share."""

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent: int | None = None) -> None:
    """Have the kernel SIGKILL this process when its parent exits, even by SIGKILL, so that a
    killed sweep (or case) leaves no process running on. Linux only: prctl(PR_SET_PDEATHSIG);
    elsewhere nothing happens. ``parent``: its pid when this process started; if it has died
    already, before the prctl, nothing would kill this process: it exits now."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if parent is not None and os.getppid() != parent:
            os._exit(1)
