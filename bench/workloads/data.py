"""Data sources of the workloads: real data read from disk, split and hashed, as CPU tensors.

Each source returns its train and validation tensors together with a :class:`DataInfo` that names
what was read (source, sizes, SHA-256 of the content, path). The workload modules move the tensors
to the device once; synthetic data is made there too, from a recipe named in its ``DataInfo``.

Images come out as float32 ``(N, 1, 28, 28)`` normalised like the PyTorch MNIST example; text
comes out as uint8 byte tokens (a byte-level vocabulary of 256, ``catalog.GPT_VOCAB``).
"""

import functools
import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.workloads.interface import DataInfo

# MNIST's training-set pixel mean and standard deviation, as the PyTorch MNIST example normalises
# with ``transforms.Normalize((0.1307,), (0.3081,))`` (pytorch/examples, mnist/main.py).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
IMAGE_SIDE = 28
DIGITS_VAL_FRACTION = 0.2
# The digits split must not move with the case seed: every case trains on the same 1437 images.
DIGITS_SPLIT_SEED = 0
TEXT_TRAIN_FRACTION = 0.9
DATA_ROOT_ENV = "BENCH_DATA_ROOT"


@dataclass(frozen=True)
class ImageSplits:
    """Images ``(N, 1, 28, 28)`` float32, normalised; labels ``(N,)`` int64 in 0..9; on the CPU."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    info: DataInfo


@dataclass(frozen=True)
class TokenSplits:
    """Byte tokens ``(N,)`` uint8 on the CPU; ``val`` is the text's last 10%, ``train`` the rest."""

    train: torch.Tensor
    val: torch.Tensor
    info: DataInfo


def data_root(data_path: str | None) -> Path:
    """Where MNIST lives: ``data_path`` if given, else ``$BENCH_DATA_ROOT``, else a user cache."""
    if data_path is not None:
        return Path(data_path).expanduser()
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV]).expanduser()
    return Path("~/.cache/bench/data").expanduser()


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> zero mean, unit variance by MNIST's statistics."""
    return (images - MNIST_MEAN) / MNIST_STD


@functools.cache  # read-only tensors: one load per process serves every case in it
def digits() -> ImageSplits:
    """scikit-learn's bundled handwritten digits (1,797 8x8 scans), made to look like MNIST.

    Pixels 0..16 are scaled to [0, 1], upsampled bilinearly to 28x28 and normalised with MNIST's
    statistics. A permutation fixed by seed 0 holds out its last 20%: 1437 train, 360 validation.
    """
    x_train, y_train, x_val, y_val = _digits_pixels()
    x_train, x_val = normalize(x_train), normalize(x_val)
    # Hash what is trained on (after resizing and normalising), so that a change of the
    # preprocessing changes the hash too.
    sha = sha256_of(x_train, y_train, x_val, y_val)
    info = DataInfo("digits", num_train=len(y_train), num_val=len(y_val), sha256=sha)
    return ImageSplits(x_train, y_train, x_val, y_val, info)


@functools.cache
def _digits_pixels() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits as 28x28 pixels in [0, 1] (not normalised), split 1437 / 360 by seed 0."""
    from sklearn.datasets import load_digits  # ~1 s import; preloaded by the fork server

    raw = load_digits()
    pixels = torch.tensor(raw.images, dtype=torch.float32) / 16.0  # (N, 8, 8), 16 = white
    labels = torch.tensor(raw.target, dtype=torch.int64)  # (N,)
    images = F.interpolate(
        pixels.unsqueeze(1), size=(IMAGE_SIDE, IMAGE_SIDE), mode="bilinear", align_corners=False
    )  # (N, 1, 28, 28)
    num = len(labels)
    num_train = int(num * (1 - DIGITS_VAL_FRACTION))
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    train, val = perm[:num_train], perm[num_train:]
    return images[train].contiguous(), labels[train], images[val].contiguous(), labels[val]


@dataclass(frozen=True)
class StoredImages:
    """Images as a dataset stores them: uint8 ``(N, C, H, W)``, labels int64 ``(N,)`` in 0..9,
    split as the source splits them, on the CPU. The vision workloads' pipeline starts here."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    name: str
    """cifar10, mnist or digits."""
    path: str | None = None


def stored_digits() -> StoredImages:
    """The 28x28 digits of :func:`digits` before normalisation, as 8-bit grey levels (rounded
    to the nearest of 256; the 8x8 scans had 17)."""
    x_train, y_train, x_val, y_val = _digits_pixels()
    return StoredImages(_to_uint8(x_train), y_train, _to_uint8(x_val), y_val, "digits")


def stored_mnist(root: str | Path) -> StoredImages:
    """MNIST from ``root`` as stored: (N, 1, 28, 28) grey levels, the official split."""
    train, test = _mnist_datasets(root)
    return StoredImages(
        train.data.unsqueeze(1),
        train.targets.long(),
        test.data.unsqueeze(1),
        test.targets.long(),
        "mnist",
        str(root),
    )


def _present(dataset, root: str | Path) -> bool:
    """Whether torchvision's ``dataset`` class finds both splits under ``root``; never downloads."""
    try:
        dataset(root, train=True, download=False)
        dataset(root, train=False, download=False)
    except RuntimeError:  # torchvision's "Dataset not found (or corrupted)"
        return False
    return True


def cifar10_present(root: str | Path) -> bool:
    """Whether torchvision finds CIFAR-10 (both splits, checksums intact) under ``root``; never
    downloads."""
    from torchvision.datasets import CIFAR10

    return _present(CIFAR10, root)


def stored_cifar10(root: str | Path) -> StoredImages:
    """CIFAR-10 from ``root`` (torchvision's layout, ``cifar-10-batches-py``): the official 50k
    train and 10k test images, (N, 3, 32, 32) uint8.

    Downloads only if absent (170 MB), which needs a network; the error then says what to do.
    """
    from torchvision.datasets import CIFAR10

    train, test = _splits(CIFAR10, root, "CIFAR-10", "torchvision's cifar-10-batches-py")
    return StoredImages(
        *cifar_tensors(train.data, train.targets),
        *cifar_tensors(test.data, test.targets),
        "cifar10",
        str(root),
    )


def cifar_tensors(images, labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's CIFAR arrays, (N, 32, 32, 3) uint8 and a list of ints, as (N, 3, 32, 32)
    uint8 and (N,) int64 tensors."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.int64)


def mnist_present(root: str | Path) -> bool:
    """Whether torchvision finds MNIST (both splits) under ``root``; never downloads."""
    from torchvision.datasets import MNIST

    return _present(MNIST, root)


def mnist(root: str | Path) -> ImageSplits:
    """MNIST from ``root`` (torchvision's layout): the official 60k train and 10k test images.

    Downloads only if absent, which needs a network; the error then says what to do offline.
    """
    train, test = _mnist_datasets(root)
    # Hash the stored bytes (uint8 pixels and labels): the preprocessing below is fixed code.
    sha = sha256_of(train.data, train.targets, test.data, test.targets)
    info = DataInfo(
        "mnist", num_train=len(train.targets), num_val=len(test.targets), sha256=sha, path=str(root)
    )
    x_train, x_val = _mnist_images(train.data), _mnist_images(test.data)
    return ImageSplits(x_train, train.targets.long(), x_val, test.targets.long(), info)


def _mnist_datasets(root: str | Path):
    """torchvision's MNIST train and test sets under ``root``, downloaded if absent."""
    from torchvision.datasets import MNIST

    return _splits(MNIST, root, "MNIST", "torchvision's MNIST layout")


def _splits(dataset, root: str | Path, name: str, layout: str):
    """The train and test sets of torchvision's ``dataset`` class under ``root``, downloaded if
    absent; when that fails, an error that names ``name``, where it goes (``layout``) and what to
    do offline."""
    try:
        return dataset(root, train=True), dataset(root, train=False)
    except RuntimeError:
        try:
            train = dataset(root, train=True, download=True)
            test = dataset(root, train=False, download=True)
        except (RuntimeError, OSError) as error:  # torchvision's, or urllib's URLError
            raise RuntimeError(
                f"{name} is not under {root} and downloading it failed ({_first_line(error)}); "
                f"put it there ({layout}), set data_path or ${DATA_ROOT_ENV}, "
                'or use data = "digits", which works offline'
            ) from error
    return train, test


@functools.cache  # read-only tensors: one load per process serves every case in it
def stdlib_corpus() -> TokenSplits:
    """The Python standard library's own source as bytes: real code text present on any machine.

    The ``.py`` files directly in the stdlib directory (not its packages), sorted by name and
    joined with newlines; the first 90% trains, the last 10% validates.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.iterdir() if p.suffix == ".py" and p.is_file())
    blob = b"\n".join(p.read_bytes() for p in files)
    assert blob, f"no .py files in {root}"  # a Python without its stdlib cannot run this
    return _split_text("stdlib", blob, str(root))


@functools.cache  # read-only tensors: one load per process serves every case in it
def docs_corpus() -> TokenSplits:
    """Python's language reference in plain English, as pydoc shows it: real prose on any machine.

    CPython ships the reference's topics (``help("if")``, ``help("with")``, ...) as a dict of
    texts in ``pydoc_data/topics.py``, generated from its documentation sources: 79 topics, about
    465 KB of text in 3.11. The topics, sorted by name and joined with blank lines; the first 90%
    trains, the last 10% validates. Not in the ``stdlib`` corpus, which has the top-level
    modules only: the two corpora share no text.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as error:
        raise RuntimeError(
            "this Python has no pydoc_data (some distributions split it off): the docs corpus "
            'is its language reference; install the full standard library or use data = "text"'
        ) from error
    blob = "\n\n".join(topics[name] for name in sorted(topics)).encode()
    path = str(Path(sysconfig.get_paths()["stdlib"]) / "pydoc_data" / "topics.py")
    return _split_text("docs", blob, path)


def text_file(path: str | Path) -> TokenSplits:
    """A user's text file as bytes; the first 90% trains, the last 10% validates."""
    try:
        blob = Path(path).expanduser().read_bytes()
    except OSError as error:
        raise RuntimeError(f"cannot read the text file {path}: {error.strerror}") from error
    if not blob:
        raise RuntimeError(f"the text file {path} is empty")
    return _split_text("text", blob, str(path))


def _split_text(name: str, blob: bytes, path: str) -> TokenSplits:
    tokens = torch.frombuffer(bytearray(blob), dtype=torch.uint8)  # (N,), one token per byte
    num_train = int(len(tokens) * TEXT_TRAIN_FRACTION)
    info = DataInfo(
        name,
        num_train=num_train,
        num_val=len(tokens) - num_train,
        sha256=hashlib.sha256(blob).hexdigest(),
        path=path,
    )
    return TokenSplits(tokens[:num_train], tokens[num_train:], info)


def _mnist_images(data: torch.Tensor) -> torch.Tensor:
    return normalize(data.float().unsqueeze(1) / 255.0)  # (N, 28, 28) uint8 -> (N, 1, 28, 28)


def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels * 255).round().clamp(0, 255).to(torch.uint8)


def sha256_of(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
