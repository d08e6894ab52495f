"""NVML (nvidia-ml-py), the hardware boundary for NVIDIA GPUs. Torch-free.

Tests on machines without a GPU replace ``pynvml`` with a fake module at this boundary.
"""

import os


def cuda_device_count() -> tuple[int, str | None]:
    """NVIDIA devices visible to this process, and the reason when there are none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - no library, no driver, no device: all mean none
        return 0, f"NVML unavailable ({error})"
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    if visible is not None:
        count = min(count, len([d for d in visible.split(",") if d.strip()]))
    return count, None if count else "NVML sees no GPU"
