"""A plain, hand-written training loop: the yardstick for bench's own overhead.

The tutorial's MLP (784-512-256-10, ReLU, log-softmax), Adam, batch 64, on the same offline digits
that bench uses, with a per-step ``time.perf_counter`` and nothing else. Prints the step times as
JSON on stdout. Run by benchmarks/overhead.py, in a fresh process each time.
"""

import json
import os
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.workloads.data import digits


def make_step(batch_size: int = 64, seed: int = 0) -> Callable[[], None]:
    """One plain training step of the tutorial MLP on the digits, as a closure."""
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(seed)
    splits = digits()
    x_train, y_train = splits.x_train, splits.y_train
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
        nn.LogSoftmax(dim=1),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x_train), generator=generator)
    position = 0

    def step() -> None:
        nonlocal order, position
        if position + batch_size > len(order):
            order, position = torch.randperm(len(x_train), generator=generator), 0
        index = order[position : position + batch_size]
        position += batch_size
        loss = F.nll_loss(model(x_train[index]), y_train[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(steps: int, warmup: int) -> list[float]:
    step = make_step()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
