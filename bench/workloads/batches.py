"""Batches drawn on the device: shuffled index batches shared by the workloads whose data sits on
the device whole (mlp, recsys, diffusion, the synthetic image pipeline)."""

import warnings

import torch


class ShuffledBatches:
    """Indices of one batch per call, on the device, without synchronising with it.

    A fresh permutation every epoch, the last partial batch dropped; with replacement when the
    batch is larger than the data.
    """

    def __init__(self, num: int, batch_size: int, device: torch.device, seed: int):
        self.num = num
        self.batch_size = batch_size
        self.device = device
        # A generator on the device: drawing a permutation there needs no copy from the host.
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long, device=device)
        self.pos = 0

    def __call__(self) -> torch.Tensor:
        if self.batch_size > self.num:
            return torch.randint(
                self.num, (self.batch_size,), generator=self.generator, device=self.device
            )
        if self.pos + self.batch_size > len(self.order):
            self.order = torch.randperm(self.num, generator=self.generator, device=self.device)
            self.pos = 0
        batch = self.order[self.pos : self.pos + self.batch_size]  # (B,)
        self.pos += self.batch_size
        return batch


def shuffled_batches(
    num: int, batch_size: int, device: torch.device, seed: int, what: str
) -> ShuffledBatches:
    """:class:`ShuffledBatches` over ``num`` training samples, with a warning when the batch is
    larger than them (``what`` names them: "training images of digits"): the step costs what it
    costs, but epochs blur."""
    if batch_size > num:
        warnings.warn(
            f"batch_size = {batch_size} exceeds the {num} {what}; batches are drawn with "
            "replacement",
            stacklevel=3,  # the caller of the workload's build()
        )
    return ShuffledBatches(num, batch_size, device, seed)
