"""The image data pipeline of the vision workloads (``cnn``, ``vit``), as real, measured steps.

Once per case, before training (bench/workloads/preprocess.py; timed: the record's
``timing.preprocess_s``):

1. **Cleaning**: drop images whose label is outside 0..9, blank images (one grey level
   everywhere), repeats of an earlier training image, and validation images that repeat a
   training image or an earlier validation one (they would leak into the held-out score).
   Exact byte-for-byte repeats; the counts are on the record (``runtime.data.pipeline``).
2. **Split**: the source's own (CIFAR-10's and MNIST's official train and test sets; the digits'
   80/20 split by a fixed seed, bench/workloads/data.py).
3. **Normalisation statistics**: the per-channel mean and standard deviation of the cleaned
   training images, at their stored size, in [0, 1] units.

Every step, through a ``torch.utils.data.DataLoader`` (in ``num_workers`` worker processes, or in
the training process between steps when it is 0), one batch at a time:

- gather the batch's stored uint8 images; **resize** them to ``image_size`` (bilinear,
  antialiased) where the stored side differs;
- **augment** each image with the case's recipe (``augment``; torchvision.transforms.v2),
  seeded per sample;
- convert to float in [0, 1] and **normalise** with the statistics.

Then the batch is copied to the device (asynchronously from pinned memory with ``pin_memory``)
and grey images are repeated to three channels there (a view). The time the training loop waits
for all of that is the record's ``metrics.data_wait_fraction`` (bench/measure/window.py).

Batches come from one endless stream: a fresh permutation of the training set per epoch, drawn
from a generator seeded with the case's seed, cut into batches (the last partial batch of an epoch
dropped; a batch larger than the set spans epochs instead). Each sample carries a seed for its
augmentation, so that the batches are the same whatever ``num_workers`` is. The one iterator lives
as long as the case, so its workers start once (at set-up) and never restart between epochs;
``close()`` shuts them down, and the launcher kills the case's process group, workers included,
on a timeout.

``data = "synthetic"`` bypasses the pipeline: normal pixels and uniform labels made once on the
CPU from the seed and kept on the device, for pure compute.
"""

import hashlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from bench.spec.case import Case
from bench.spec.vision_shapes import IMAGE_CHANNELS, NUM_CLASSES
from bench.workloads.batches import shuffled_batches
from bench.workloads.data import StoredImages
from bench.workloads.interface import DataInfo, Workload, classifier_evaluator
from bench.workloads.preprocess import Prepared, load, prepare

EVAL_BATCH_SIZE = 250
# Synthetic pools, small enough to make at 224x224 in a second or two (77 MB per 128 images).
SYNTHETIC_NUM_TRAIN = 256
SYNTHETIC_NUM_VAL = 64


def _recipes(side: int) -> dict[str, list[v2.Transform]]:
    """The augmentation recipes for images of ``side`` pixels (vision_shapes.AUGMENTS says why
    these): crop-flip pads by 1/8 of the side (4 pixels at 32, as He et al. 2016) and crops
    back at a random place."""
    crop_flip = [v2.RandomCrop(side, padding=max(1, side // 8)), v2.RandomHorizontalFlip()]
    affine = [
        v2.RandomAffine(
            degrees=15,
            translate=(0.1, 0.1),
            scale=(0.9, 1.1),
            interpolation=v2.InterpolationMode.BILINEAR,
        )
    ]
    return {
        "none": [],
        "crop-flip": crop_flip,
        "affine": affine,
        "affine-crop-flip": affine + crop_flip,
    }


RECIPES = tuple(_recipes(32))


def recipe(name: str, side: int) -> v2.Transform | None:
    """The augmentation recipe ``name`` for images of ``side`` pixels (None for ``none``)."""
    steps = _recipes(side)[name]
    return v2.Compose(steps) if steps else None


class ImageBatches(torch.utils.data.Dataset):
    """Stored images that turn into training batches: resize, augment, normalise.

    Indexed by ``(index, seed)`` pairs; ``__getitems__`` (which the DataLoader calls with a whole
    batch of keys) transforms the batch at once where every image gets the same operation, and
    image by image where they differ (augmentation).
    """

    def __init__(self, prepared: Prepared, side: int, augment: str, train: bool = True):
        images = prepared.images
        self.x, self.y = (images.x_train, images.y_train) if train else (images.x_val, images.y_val)
        self.side = side
        self.mean, self.std = list(prepared.mean), list(prepared.std)
        self.augment = recipe(augment, side)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([key])
        return x[0], y[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.tensor([i for i, _ in keys], dtype=torch.long)
        x = self.x[index]  # (B, C, H, W) uint8
        if x.shape[-1] != self.side or x.shape[-2] != self.side:
            x = TF.resize(x, [self.side, self.side], antialias=True)
        if self.augment is not None:
            # Seeded per sample, so that a batch is the same in any worker; the training
            # process's generator is restored afterwards.
            with torch.random.fork_rng(devices=[]):
                augmented = []
                for image, (_, seed) in zip(x, keys):
                    torch.default_generator.manual_seed(seed)
                    augmented.append(self.augment(image))
            x = torch.stack(augmented)
        return self.finish(x), self.y[index]

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 -> float in [0, 1] -> normalised with the training statistics."""
        x = TF.to_dtype(x, torch.float32, scale=True)
        return TF.normalize(x, self.mean, self.std)


class SeededBatches(torch.utils.data.Sampler):
    """An endless stream of batches of ``(index, seed)`` keys (module docstring)."""

    def __init__(self, num: int, batch_size: int, seed: int):
        self.num, self.batch_size, self.seed = num, batch_size, seed

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed)
        pending: list[tuple[int, int]] = []
        while True:
            order = torch.randperm(self.num, generator=generator).tolist()
            seeds = torch.randint(2**62, (self.num,), generator=generator).tolist()
            pending += zip(order, seeds)
            while len(pending) >= self.batch_size:
                yield pending[: self.batch_size]
                pending = pending[self.batch_size :]
            if self.batch_size <= self.num:
                pending = []  # the epoch's last partial batch


def _as_batch(batch: Any) -> Any:
    """The DataLoader's collate step: ``__getitems__`` returns the batch already stacked."""
    return batch


def build(
    case: Case,
    model: nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    stored: StoredImages | None = None,
) -> Workload:
    """The workload of ``model`` (a 10-class image classifier taking ``(B, 3, S, S)``) on the
    case's data (or ``stored``, a fine-tuning task's part of it), read through the pipeline (or
    synthetic)."""
    assert case.batch_size is not None and case.image_size is not None, "unresolved case"
    if case.data == "synthetic":
        return _synthetic(case, model, device, dtype)
    assert case.augment is not None and case.num_workers is not None, "unresolved case"
    prepared = prepare(stored if stored is not None else load(case))
    train = ImageBatches(prepared, case.image_size, case.augment)
    if case.batch_size > len(train):
        warnings.warn(
            f"batch_size = {case.batch_size} exceeds the {len(train)} training images of "
            f"{prepared.info.name}; a batch spans epochs",
            stacklevel=2,
        )
    pin = bool(case.pin_memory)
    loader = torch.utils.data.DataLoader(
        train,
        batch_sampler=SeededBatches(len(train), case.batch_size, case.seed),
        collate_fn=_as_batch,
        num_workers=case.num_workers,
        pin_memory=pin,
        # Workers are forked from this process, which has the data in memory and torch imported
        # (the start method is explicit: Python 3.14 makes forkserver the default on Linux).
        multiprocessing_context="fork" if case.num_workers else None,
    )
    batches = iter(loader)
    grey = prepared.images.x_train.shape[1] == 1

    def to_device(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(device=device, dtype=dtype, non_blocking=pin)
        y = y.to(device, non_blocking=pin)
        # (B, 1, S, S) -> (B, 3, S, S): a view on the device, no copy to transfer.
        return (x.expand(-1, IMAGE_CHANNELS, -1, -1) if grey else x), y

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        return to_device(*next(batches))

    val = ImageBatches(prepared, case.image_size, "none", train=False)

    def val_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(val), EVAL_BATCH_SIZE):
            keys = [(i, 0) for i in range(start, min(start + EVAL_BATCH_SIZE, len(val)))]
            yield to_device(*val.__getitems__(keys))

    def close() -> None:
        nonlocal batches
        # Dropping the last reference runs the iterator's shutdown: workers told to exit, joined.
        del batches

    info = DataInfo(
        prepared.info.name,
        num_train=prepared.info.num_train,
        num_val=prepared.info.num_val,
        sha256=prepared.info.sha256,
        path=prepared.info.path,
        pipeline={
            "stored_shape": list(prepared.images.x_train.shape[1:]),
            "dropped": prepared.dropped,
            "mean": list(prepared.mean),
            "std": list(prepared.std),
            "batch_steps": _batch_steps(prepared, case),
        },
        preprocess_s=prepared.preprocess_s,
    )
    return Workload(
        model=model,
        loss_fn=_cross_entropy,
        next_batch=next_batch,
        evaluate=classifier_evaluator(val_batches, len(val), device, F.cross_entropy),
        samples_per_step=case.batch_size,
        tokens_per_step=None,
        data=info,
        close=close,
    )


def _batch_steps(prepared: Prepared, case: Case) -> list[str]:
    """What each batch goes through, in order, for the record."""
    assert case.image_size is not None and case.augment is not None, "unresolved case"
    channels, height, width = prepared.images.x_train.shape[1:]
    steps = []
    if (height, width) != (case.image_size, case.image_size):
        steps.append(f"resize {height}x{width} -> {case.image_size}x{case.image_size}")
    if case.augment != "none":
        transforms = ", ".join(map(repr, _recipes(case.image_size)[case.augment]))
        steps.append(f"augment {case.augment}: {transforms}")
    steps.append("to float [0, 1], normalise")
    if channels == 1:
        steps.append("grey -> 3 channels (on the device)")
    return steps


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y)  # (B, 10), (B,) -> scalar, in float32


def _synthetic(case: Case, model: nn.Module, device: torch.device, dtype: torch.dtype) -> Workload:
    """Normal pixels and uniform labels, made on the CPU from the seed (the same values on every
    device) and kept on the device: no pipeline, nothing to learn."""
    assert case.batch_size is not None and case.image_size is not None, "unresolved case"
    side = case.image_size
    generator = torch.Generator().manual_seed(case.seed)
    num = SYNTHETIC_NUM_TRAIN + SYNTHETIC_NUM_VAL
    images = torch.randn(num, IMAGE_CHANNELS, side, side, generator=generator)  # (N, 3, S, S)
    labels = torch.randint(NUM_CLASSES, (num,), generator=generator)  # (N,)
    images, labels = images.to(device=device, dtype=dtype), labels.to(device)
    n = SYNTHETIC_NUM_TRAIN
    indices = shuffled_batches(n, case.batch_size, device, case.seed, "synthetic training images")

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        batch = indices()
        return images[batch], labels[batch]  # (B, 3, S, S), (B,)

    def val_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(n, num, EVAL_BATCH_SIZE):
            end = min(start + EVAL_BATCH_SIZE, num)
            yield images[start:end], labels[start:end]

    recipe_text = f"synthetic-vision-seed{case.seed}-randn-cpu-{side}px-{n}+{SYNTHETIC_NUM_VAL}"
    info = DataInfo(
        "synthetic",
        num_train=n,
        num_val=SYNTHETIC_NUM_VAL,
        sha256=hashlib.sha256(recipe_text.encode()).hexdigest(),
    )
    return Workload(
        model=model,
        loss_fn=_cross_entropy,
        next_batch=next_batch,
        evaluate=classifier_evaluator(val_batches, SYNTHETIC_NUM_VAL, device, F.cross_entropy),
        samples_per_step=case.batch_size,
        tokens_per_step=None,
        data=info,
    )
