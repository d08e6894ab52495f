"""torchvision's ImageNet weights in the local torch hub cache: which sizes have them, and where
the file is (``checkpoint = "torchvision"``; bench/train/finetune.py loads it).

Torch-free, like ``catalog.py``: suite validation finds a missing file before anything runs.
Bench never downloads: the file must already be where ``torchvision.models.get_weight(...)
.get_state_dict()`` would have saved it, ``torch.hub.get_dir()/checkpoints/<basename of the URL>``.
A test checks this table against torchvision's enums (``ResNet18_Weights.DEFAULT.url``, ...) and
:func:`hub_dir` against ``torch.hub.get_dir()``.
"""

import os
from dataclasses import dataclass
from pathlib import Path

TORCHVISION = "torchvision"
"""The ``checkpoint`` that asks for these weights (a file of that name: ``./torchvision``)."""


@dataclass(frozen=True)
class HubWeights:
    """One ``torchvision.models`` weights enum member: the ``DEFAULT`` of its builder."""

    enum: str
    """``ResNet18_Weights.IMAGENET1K_V1``: what ``<Builder>_Weights.DEFAULT`` is in torchvision."""
    url: str
    """Where torchvision downloads it from; the file in the cache is named by its basename."""
    image_size: int | None
    """The only input side the weights accept (a ViT's position embeddings hold one per patch of
    a 224x224 image); None: any side (a ResNet pools globally)."""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


# torchvision 0.29's DEFAULT weights for the catalog's torchvision-built sizes; ImageNet-1k, 1000
# classes. resnet50's DEFAULT is the V2 recipe (80.9% top-1), the others V1.
WEIGHTS: dict[tuple[str, str], HubWeights] = {
    ("cnn", "resnet18"): HubWeights(
        "ResNet18_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        None,
    ),
    ("cnn", "resnet34"): HubWeights(
        "ResNet34_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/resnet34-b627a593.pth",
        None,
    ),
    ("cnn", "resnet50"): HubWeights(
        "ResNet50_Weights.IMAGENET1K_V2",
        "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        None,
    ),
    ("vit", "vit_b_16"): HubWeights(
        "ViT_B_16_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/vit_b_16-c867db91.pth",
        224,
    ),
    ("vit", "vit_l_16"): HubWeights(
        "ViT_L_16_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/vit_l_16-852ce7e3.pth",
        224,
    ),
}


def sizes_with_weights() -> str:
    """``cnn resnet18, resnet34, resnet50; vit vit_b_16, vit_l_16``: for error messages."""
    by_workload: dict[str, list[str]] = {}
    for workload, size in WEIGHTS:
        by_workload.setdefault(workload, []).append(size)
    return "; ".join(f"{w} {', '.join(sizes)}" for w, sizes in by_workload.items())


def hub_dir() -> Path:
    """``torch.hub.get_dir()`` without torch: ``$TORCH_HOME/hub``, ``$TORCH_HOME`` defaulting to
    ``$XDG_CACHE_HOME/torch`` and that to ``~/.cache/torch`` (torch/hub.py, ``_get_torch_home``).
    A ``torch.hub.set_dir`` call in the process is not seen: bench makes none."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def weights_path(workload: str, model_size: str) -> Path:
    """Where torchvision keeps the size's DEFAULT weights once downloaded."""
    return hub_dir() / "checkpoints" / WEIGHTS[workload, model_size].filename


def missing_reason(workload: str, model_size: str) -> str | None:
    """Why the size's weights cannot be read from the hub cache (one line naming the path and the
    URL to fetch them from); None when the file is there."""
    path = weights_path(workload, model_size)
    if path.is_file():
        return None
    weights = WEIGHTS[workload, model_size]
    return (
        f"no {path} (torchvision's {weights.enum}; bench never downloads: fetch "
        f"{weights.url} to that path, or run torchvision.models.{weights.enum}.get_state_dict() "
        "on a machine with network and copy the file)"
    )
