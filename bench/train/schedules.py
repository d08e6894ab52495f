"""Learning-rate schedules, applied once per training step."""

import math

import torch


def lr_factor(step: int, schedule: str, total_steps: int | None, warmup_steps: int | None) -> float:
    """Multiplier of the base learning rate after ``step`` steps.

    cosine: 0.5 (1 + cos(pi t / T)) from 1 down to 0 over T = ``total_steps`` (Loshchilov &
    Hutter 2017, without restarts); warmup-cosine: linear from 1/W up to 1 over the first W =
    ``warmup_steps`` steps, then cosine over the remaining T - W.
    """
    if schedule == "constant":
        return 1.0
    assert total_steps is not None, "unresolved schedule"
    warmup = warmup_steps or 0
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizers: list[torch.optim.Optimizer],
    schedule: str,
    total_steps: int | None,
    warmup_steps: int | None,
) -> list[torch.optim.lr_scheduler.LambdaLR]:
    """One LambdaLR per optimizer (Muon's AdamW companion included); none for a constant rate,
    which would only add a scheduler's Python work to every step."""
    if schedule == "constant":
        return []
    return [
        torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, schedule, total_steps, warmup_steps)
        )
        for optimizer in optimizers
    ]
