"""Precision policies: parameter dtype, autocast, loss scaling and the matmul modes in effect."""

import contextlib
from dataclasses import dataclass

import torch

from bench.spec.choices import PRECISION_DTYPES


@dataclass(frozen=True)
class PrecisionPolicy:
    name: str
    param_dtype: torch.dtype
    """Dtype of the parameters and of floating inputs."""
    autocast_dtype: torch.dtype | None
    """Dtype of ``torch.autocast`` around forward and loss; None runs without autocast."""
    grad_scaler: bool = False
    """Scale the loss (``torch.amp.GradScaler``): fp16's range needs it, bf16's does not."""
    tf32: bool = False
    """Let CUDA matmuls and cuDNN convolutions use TF32 tensor cores."""

    def apply(self) -> None:
        """Set torch's process-wide matmul modes. fp32 turns TF32 off for cuDNN too (torch's
        default there is on), so that an fp32 record is fp32 throughout."""
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32
        torch.set_float32_matmul_precision("high" if self.tf32 else "highest")

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    def describe(self) -> dict[str, str | bool | None]:
        """What was in effect, for the record."""
        return {
            "param_dtype": str(self.param_dtype).removeprefix("torch."),
            "autocast_dtype": (
                str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else None
            ),
            "grad_scaler": self.grad_scaler,
            "matmul_precision": torch.get_float32_matmul_precision(),
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        }


def _policy(name: str) -> PrecisionPolicy:
    dtypes = PRECISION_DTYPES[name]
    return PrecisionPolicy(
        name,
        getattr(torch, dtypes.param),
        getattr(torch, dtypes.autocast) if dtypes.autocast else None,
        grad_scaler=dtypes.autocast == "float16",  # fp16's range needs loss scaling
        tf32=name == "tf32",
    )


POLICIES = {name: _policy(name) for name in PRECISION_DTYPES}


def unsupported_reason(name: str, device: torch.device) -> str | None:
    """Why this precision cannot run on this device, or None (device must be usable)."""
    needs_bf16 = POLICIES[name].param_dtype == torch.bfloat16 or name == "amp-bf16"
    if needs_bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return f"{name} needs bf16, which {torch.cuda.get_device_name(device)} does not support"
    return None
