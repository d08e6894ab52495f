"""The image pipeline's one-off preparation: loading, cleaning, split, normalisation statistics.

What each step does and why: bench/workloads/pipeline.py's docstring. The result, a
:class:`Prepared`, feeds the per-batch part of the pipeline there.
"""

import hashlib
from dataclasses import dataclass

import torch

from bench.measure.timing import wall
from bench.spec.case import Case
from bench.spec.vision_shapes import NUM_CLASSES
from bench.workloads import data
from bench.workloads.interface import DataInfo

_STATS_CHUNK = 4096  # images per chunk when summing pixels for the statistics


@dataclass(frozen=True)
class Prepared:
    """Cleaned images (still as stored) and the normalisation statistics of the training split."""

    images: data.StoredImages
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dropped: dict[str, int]
    info: DataInfo
    preprocess_s: float
    """Seconds the cleaning and the statistics took (not the loading, nor the hash)."""


def clean(stored: data.StoredImages) -> tuple[data.StoredImages, dict[str, int]]:
    """Drop bad labels, blank images and exact repeats (module docstring); counts per reason."""
    dropped = {"bad_label": 0, "blank": 0, "duplicate_train": 0, "duplicate_val": 0}
    seen: set[bytes] = set()
    kept = []
    for split, x, y in (
        ("train", stored.x_train, stored.y_train),
        ("val", stored.x_val, stored.y_val),
    ):
        flat = x.reshape(len(x), -1)
        bad_label = (y < 0) | (y >= NUM_CLASSES)
        blank = ~bad_label & (flat.amin(dim=1) == flat.amax(dim=1))
        keep = ~bad_label & ~blank
        dropped["bad_label"] += int(bad_label.sum())
        dropped["blank"] += int(blank.sum())
        rows = flat.numpy()
        for i in keep.nonzero().flatten().tolist():
            digest = hashlib.blake2b(rows[i].tobytes(), digest_size=16).digest()
            if digest in seen:
                keep[i] = False
                dropped[f"duplicate_{split}"] += 1
            seen.add(digest)
        kept.append((x[keep].contiguous(), y[keep]))
    (x_train, y_train), (x_val, y_val) = kept
    return data.StoredImages(x_train, y_train, x_val, y_val, stored.name, stored.path), dropped


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 ``(N, C, H, W)`` images in
    [0, 1] units, summed in float64 chunk by chunk."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), _STATS_CHUNK):
        chunk = images[start : start + _STATS_CHUNK].double() / 255  # (n, C, H, W)
        total += chunk.sum(dim=(0, 2, 3))
        squares += (chunk * chunk).sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean * mean).clamp(min=0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def prepare(stored: data.StoredImages) -> Prepared:
    """Cleaning and normalisation statistics (the split is the source's); named and hashed."""
    start = wall()
    images, dropped = clean(stored)
    mean, std = channel_stats(images.x_train)
    preprocess_s = wall() - start
    # Hash what the pipeline reads (the cleaned images as stored): the per-batch transforms are
    # fixed code and the case's settings.
    sha = data.sha256_of(images.x_train, images.y_train, images.x_val, images.y_val)
    info = DataInfo(
        images.name,
        num_train=len(images.y_train),
        num_val=len(images.y_val),
        sha256=sha,
        path=images.path,
    )
    return Prepared(images, mean, std, dropped, info, preprocess_s)


def load(case: Case) -> data.StoredImages:
    """The case's stored images: ``auto`` takes CIFAR-10, else MNIST, where present under the data
    root, else the digits."""
    root = data.data_root(case.data_path)
    if case.data == "cifar10" or (case.data == "auto" and data.cifar10_present(root)):
        return data.stored_cifar10(root)
    if case.data == "mnist" or (case.data == "auto" and data.mnist_present(root)):
        return data.stored_mnist(root)
    assert case.data in ("auto", "digits"), f"unvalidated data {case.data!r}"
    return data.stored_digits()
