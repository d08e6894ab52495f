"""The interface between the worker and a workload: what a family (or a user's function) returns.

The dispatch from a case's ``workload`` to the family that builds it is
bench/workloads/registry.py.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class DataInfo:
    """Names the data a record measured, so that two records can be checked to match."""

    name: str
    """Source actually used: mnist, digits, stdlib, text, clicks or synthetic."""
    num_train: int
    """Training examples (tokens for text corpora)."""
    num_val: int
    """Held-out examples (tokens for text corpora)."""
    sha256: str
    """SHA-256 of the data's content (for synthetic data: of its generating recipe; for the
    generated click logs: of the generated tensors themselves)."""
    path: str | None = None
    """Where it was read from, if from disk."""
    pipeline: dict[str, Any] | None = None
    """What the image pipeline did to it (bench/workloads/pipeline.py): images dropped by
    cleaning, normalisation statistics, the steps of every batch. None where the data is used
    as loaded."""
    preprocess_s: float | None = None
    """Seconds spent on the pipeline's one-off preparation (cleaning, statistics)."""


@dataclass(frozen=True)
class WorkloadContext:
    """What a workload function receives (docs/WORKLOADS.md): build the model and data for
    this case. Part of the public API (``bench.api``)."""

    device: torch.device
    """Where the model and every batch must be."""
    dtype: torch.dtype
    """Parameter dtype of the case's precision policy (``torch.bfloat16`` for ``bf16``; fp32
    otherwise, autocast doing the rest): build the model and floating inputs in it."""
    batch_size: int
    """Samples per training step (per rank in a distributed case)."""
    model_size: str | int | None
    """The suite's ``model_size``, as written; None where it gives none."""
    seed: int
    """The case's seed (torch's global generator is already seeded with it)."""
    data_root: str | None
    """The suite's ``data_path``: where your data lives, if you read any."""
    args: dict[str, Any]
    """The case's ``workload_args`` (also passed to the function as keyword arguments)."""


@dataclass(kw_only=True)
class Workload:
    """Everything the worker needs to run training steps of one case; what a built-in family
    and a user's workload function (docs/WORKLOADS.md) return.

    ``model(x)`` returns the output that ``loss_fn(output, y)`` turns into a scalar loss; the
    worker trains on ``loss_fn`` where the case's ``loss`` key does not apply (a workload with its
    own objective: ``classifier`` False) and on the suite's classification loss otherwise.
    ``next_batch()`` returns ``(x, y)`` already on the device (floating inputs in ``dtype``);
    ``x`` may be a tuple of tensors (``recsys``: dense features and item ids; ``diffusion``:
    noisy images and time steps); it does not synchronise with the device.
    """

    model: nn.Module
    next_batch: Callable[[], tuple[Any, torch.Tensor]]
    samples_per_step: int
    """Samples in one batch (per rank)."""
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None
    """The workload's own loss of ``(model(x), y)``; required where ``classifier`` is False. A
    classifier's scores go to the suite's ``loss`` (cross-entropy by default) instead."""
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None
    """Held-out evaluation of a model (eval mode, no grad): named metrics (keys as in
    docs/RESULTS.md for the built-ins). None: no held-out evaluation."""
    tokens_per_step: int | None = None
    """Tokens in one batch (samples times tokens per sample), for tokens/s and MFU; None for
    data that is not made of tokens."""
    data: DataInfo | None = None
    """The data measured; None: a user's workload that does not say (recorded as ``user``)."""
    classifier: bool = True
    """``model(x)`` returns class scores and ``y`` holds class labels, so the suite's ``loss``
    (cross-entropy, mse, focal) applies; False: the workload trains on its own ``loss_fn``."""
    directions: dict[str, str] = field(default_factory=dict)
    """Per evaluation metric, ``"max"`` (higher is better) or ``"min"``, for ``target_metric``;
    accuracy, auc, loss and perplexity have theirs already."""
    fsdp_unit: type[nn.Module] | None = None
    """With ``strategy = "fsdp"``: each module of this class is one FSDP unit (a transformer
    block); None: the whole model is one (a user's) or the family's own layout (built-ins)."""
    head: str | None = None
    """Name of the output layer in ``model`` (``model.get_submodule(head)``): what a linear probe
    trains and a new task re-initialises (bench/train/finetune.py). None: no fine-tuning story."""
    source: dict[str, Any] | None = None
    """What the model was built from, recorded as ``runtime.workload`` (an ``hf:`` model: its
    files, weights and tokenizer); None for the built-ins. A user's workload is described by
    bench (its spec, file and SHA-256), not by this field."""
    close: Callable[[], None] = lambda: None
    """Releases what the workload holds beyond memory (DataLoader worker processes)."""


def classifier_evaluator(
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]],
    num: int,
    device: torch.device,
    loss: Callable[..., torch.Tensor],
) -> Callable[[nn.Module], dict[str, float]]:
    """Held-out accuracy and mean ``loss`` (``F.nll_loss`` for log-probabilities,
    ``F.cross_entropy`` for logits) over the ``num`` examples ``batches()`` yields, in eval mode
    (BatchNorm with its running statistics), without gradients."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        total_loss = torch.zeros((), device=device)
        num_correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.no_grad():
            for x, y in batches():
                scores = model(x).float()  # (B, classes)
                total_loss += loss(scores, y, reduction="sum")
                num_correct += (scores.argmax(dim=1) == y).sum()
        model.train(was_training)
        # One read of each total at the end, outside the timed window.
        return {"accuracy": num_correct.item() / num, "loss": total_loss.item() / num}

    return evaluate
