"""The PyTorch tutorial's MNIST network as your own workload for bench (docs/WORKLOADS.md).

    bench run tutorial.toml      # with this file next to the suite

``Net`` is the tutorial's 784 -> 512 -> 256 -> 10 network with ReLU and log-softmax; MNIST comes
through torchvision, normalised with mean 0.5 and std 0.5, in shuffled batches of 64. Without
MNIST on disk (``data_path`` of the suite, or ``./data``) it trains on scikit-learn's bundled
digits, upsampled from 8x8 to 28x28: the same shapes, offline.
"""

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.api import DataInfo, Workload, WorkloadContext

MEAN, STD = 0.5, 0.5  # the tutorial's transforms.Normalize((0.5,), (0.5,))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 784)  # (B, 1, 28, 28) -> (B, 784)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)  # (B, 10) log-probabilities


def mnist(root: Path):
    """MNIST's train and test splits as (N, 1, 28, 28) pixels in [0, 1], or None when absent."""
    from torchvision import datasets

    try:
        train = datasets.MNIST(root, train=True, download=False)
        test = datasets.MNIST(root, train=False, download=False)
    except RuntimeError:  # "Dataset not found"
        return None
    pixels = [split.data.unsqueeze(1).float() / 255 for split in (train, test)]
    return "mnist", pixels[0], train.targets, pixels[1], test.targets


def digits():
    """scikit-learn's 1,797 8x8 digits upsampled to 28x28 in [0, 1]; the last 20% held out."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    pixels = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16  # (N, 1, 8, 8)
    images = F.interpolate(pixels, size=(28, 28), mode="bilinear", align_corners=False)
    labels = torch.tensor(raw.target)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train, test = perm[: int(0.8 * len(perm))], perm[int(0.8 * len(perm)) :]
    return "digits", images[train], labels[train], images[test], labels[test]


def tutorial(ctx: WorkloadContext) -> Workload:
    name, x_train, y_train, x_test, y_test = mnist(Path(ctx.data_root or "data")) or digits()
    x_train, x_test = (x_train - MEAN) / STD, (x_test - MEAN) / STD
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=ctx.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(ctx.seed),
    )
    batches = iter(loader)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:  # a new epoch, reshuffled
            batches = iter(loader)
            x, y = next(batches)
        return x.to(ctx.device, ctx.dtype), y.to(ctx.device)

    x_eval, y_eval = x_test.to(ctx.device, ctx.dtype), y_test.to(ctx.device)

    def evaluate(model: nn.Module) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            scores = model(x_eval).float()  # (N, 10)
            loss = F.nll_loss(scores, y_eval).item()
            accuracy = (scores.argmax(dim=1) == y_eval).float().mean().item()
        model.train()
        return {"accuracy": accuracy, "loss": loss}

    digest = hashlib.sha256(x_train.numpy().tobytes() + y_train.numpy().tobytes()).hexdigest()
    return Workload(
        model=Net().to(ctx.device, ctx.dtype),
        next_batch=next_batch,
        samples_per_step=ctx.batch_size,
        evaluate=evaluate,
        data=DataInfo(name, num_train=len(y_train), num_val=len(y_test), sha256=digest),
        classifier=True,  # log-probabilities: the suite's loss applies to them
        head="fc3",
    )
