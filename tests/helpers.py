"""Helpers shared by the workload tests: real training steps on a built workload."""

import torch

from bench.workloads.interface import Workload


def train_steps(work: Workload, steps: int, lr: float) -> list[float]:
    """Real AdamW steps on the workload's own objective; returns the per-step losses."""
    optimizer = torch.optim.AdamW(work.model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        x, y = work.next_batch()
        loss = work.loss_fn(work.model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def mean(values: list[float]) -> float:
    return sum(values) / len(values)
