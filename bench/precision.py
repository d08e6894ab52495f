"""Precision policies: the dtype of parameters and the autocast in effect during a step."""

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrecisionPolicy:
    name: str
    param_dtype: torch.dtype
    """Dtype of the parameters and of floating inputs."""
    autocast_dtype: torch.dtype | None
    """Dtype of ``torch.autocast`` around forward and loss; None runs without autocast."""

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    def describe(self) -> dict[str, str | None]:
        """What was in effect, for the record."""
        return {
            "param_dtype": str(self.param_dtype).removeprefix("torch."),
            "autocast_dtype": (
                str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else None
            ),
            "matmul_precision": torch.get_float32_matmul_precision(),
        }


POLICIES = {
    "fp32": PrecisionPolicy("fp32", torch.float32, None),
    "bf16": PrecisionPolicy("bf16", torch.bfloat16, None),
    "amp-bf16": PrecisionPolicy("amp-bf16", torch.float32, torch.bfloat16),
}


def unsupported_reason(name: str, device: torch.device) -> str | None:
    """Why this precision cannot run on this device, or None."""
    needs_bf16 = POLICIES[name].param_dtype == torch.bfloat16 or name == "amp-bf16"
    if needs_bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return f"{name} needs bf16, which {torch.cuda.get_device_name(device)} does not support"
    return None
