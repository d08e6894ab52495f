"""Optimizers by name (torch.optim)."""

import torch
from torch import nn


def build_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    raise AssertionError(f"unvalidated optimizer {name!r}")
