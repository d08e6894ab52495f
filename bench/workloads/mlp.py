"""The MLP workload: the PyTorch tutorial's fully connected classifier of 28x28 handwritten digits.

``base`` is the tutorial's network exactly: 784 -> 512 -> 256 -> 10, ReLU between layers and a
log-softmax output trained with the negative log-likelihood (together: cross-entropy). Other sizes
change only the hidden widths (``catalog.MLP_SIZES``).

Data: ``auto`` uses MNIST when it is under the data root and scikit-learn's bundled digits
otherwise (the record's ``data.name`` says which); ``mnist``, ``digits`` or ``synthetic`` force one.
Batches walk a fresh seeded permutation every epoch and drop the last partial batch. A batch larger
than the training split (possible with digits' 1437 images) is drawn with replacement instead,
with a warning: the step still costs what a batch of that size costs, but an "epoch" no longer
means one pass.
"""

import hashlib
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from bench.spec.case import Case
from bench.spec.catalog import MLP_IN, MLP_OUT, MLPSize, size_of
from bench.workloads import data
from bench.workloads.batches import shuffled_batches
from bench.workloads.interface import DataInfo, Workload, classifier_evaluator

# Evaluation batch: large enough that the held-out pass is a handful of forward calls, small
# enough that the biggest size's activations stay far below any device's memory.
EVAL_BATCH_SIZE = 1000
# Synthetic data has MNIST's split sizes, so its epochs are as long as real MNIST epochs.
SYNTHETIC_NUM_TRAIN = 60_000
SYNTHETIC_NUM_VAL = 10_000


class MLP(nn.Sequential):
    """Flatten -> (Linear -> ReLU) per hidden width -> Linear -> LogSoftmax; (B, 1, 28, 28) in."""

    def __init__(self, hidden: tuple[int, ...]):
        widths = (MLP_IN, *hidden, MLP_OUT)
        layers: list[nn.Module] = [nn.Flatten()]  # (B, 1, 28, 28) -> (B, 784)
        for w_in, w_out in itertools.pairwise(widths):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        layers[-1] = nn.LogSoftmax(dim=1)  # no ReLU on the logits: (B, 10) log-probabilities
        super().__init__(*layers)


def loss_fn(log_probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the log-softmax output, (B, 10) and (B,) -> scalar.

    Computed in float32, as autocast runs ``nll_loss`` (torch.amp autocast op reference, ops that
    autocast to float32), so a bf16 case's loss is averaged as precisely as an amp case's.
    """
    return F.nll_loss(log_probs.float(), y)


def load(case: Case) -> data.ImageSplits:
    """The case's images and labels on the CPU, as ``case.data`` asks."""
    root = data.data_root(case.data_path)
    if case.data == "mnist" or (case.data == "auto" and data.mnist_present(root)):
        return data.mnist(root)
    if case.data in ("auto", "digits"):
        return data.digits()
    assert case.data == "synthetic", f"unvalidated data {case.data!r}"
    return synthetic(case.seed)


def synthetic(seed: int) -> data.ImageSplits:
    """Normal pixels (the scale of normalised MNIST) and uniform labels: nothing to learn.

    Drawn on the CPU from a generator seeded by ``seed``, so that every device trains on the same
    values and the recipe in ``sha256`` names them exactly (CPU and CUDA generators differ).
    """
    generator = torch.Generator().manual_seed(seed)
    num = SYNTHETIC_NUM_TRAIN + SYNTHETIC_NUM_VAL
    images = torch.randn(num, 1, 28, 28, generator=generator)  # (N, 1, 28, 28)
    labels = torch.randint(MLP_OUT, (num,), generator=generator)  # (N,)
    recipe = f"synthetic-mlp-seed{seed}-randn-cpu-{SYNTHETIC_NUM_TRAIN}+{SYNTHETIC_NUM_VAL}"
    info = DataInfo(
        "synthetic",
        num_train=SYNTHETIC_NUM_TRAIN,
        num_val=SYNTHETIC_NUM_VAL,
        sha256=hashlib.sha256(recipe.encode()).hexdigest(),
    )
    n = SYNTHETIC_NUM_TRAIN
    return data.ImageSplits(images[:n], labels[:n], images[n:], labels[n:], info)


def build(
    case: Case, device: torch.device, dtype: torch.dtype, splits: data.ImageSplits | None = None
) -> Workload:
    assert case.model_size is not None and case.batch_size is not None, "unresolved case"
    splits = splits if splits is not None else load(case)
    torch.manual_seed(case.seed)
    # Built on the CPU, then moved: the same seed gives the same weights on every device.
    shape = size_of("mlp", case.model_size)
    assert isinstance(shape, MLPSize)
    model = MLP(shape.hidden).to(device=device, dtype=dtype)

    # Everything on the device once; a step only gathers rows from it.
    x_train = splits.x_train.to(device=device, dtype=dtype)  # (N, 1, 28, 28)
    y_train = splits.y_train.to(device)  # (N,)
    x_val = splits.x_val.to(device=device, dtype=dtype)
    y_val = splits.y_val.to(device)
    num_train, num_val = len(y_train), len(y_val)
    what = f"training images of {splits.info.name}"
    indices = shuffled_batches(num_train, case.batch_size, device, case.seed, what)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        batch = indices()
        return x_train[batch], y_train[batch]  # (B, 1, 28, 28), (B,)

    def val_batches():
        for start in range(0, num_val, EVAL_BATCH_SIZE):
            yield x_val[start : start + EVAL_BATCH_SIZE], y_val[start : start + EVAL_BATCH_SIZE]

    evaluate = classifier_evaluator(val_batches, num_val, device, F.nll_loss)

    return Workload(
        model=model,
        loss_fn=loss_fn,
        next_batch=next_batch,
        evaluate=evaluate,
        samples_per_step=case.batch_size,
        tokens_per_step=None,
        data=splits.info,
        head=str(len(model) - 2),  # the last Linear, before the LogSoftmax
    )
