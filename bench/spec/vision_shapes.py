"""Shapes of the vision workloads (``cnn``, ``vit``), their exact parameter counts, and the names
of the augmentation recipes.

Torch-free, like ``catalog.py``, which lists these sizes: validation, ``bench list`` and
``--dry-run`` read them without importing torch. The models are built in ``cnn.py`` and
``vit.py``; a test checks every count here against the built model, and the ImageNet shapes
against the counts torchvision documents for its weights (1000 classes).
"""

import math
from dataclasses import dataclass
from typing import Literal

NUM_CLASSES = 10  # CIFAR-10, MNIST and the digits all have ten classes
IMAGE_CHANNELS = 3  # the models take RGB; grey sources are repeated to three channels

# Augmentation recipes (torchvision.transforms.v2; defined in pipeline.py, where a test checks the
# names match): none; crop-flip, the CIFAR recipe of He et al. 2016 (pad by 1/8 of the side,
# random crop back, horizontal flip); affine, the MNIST-style recipe (rotation up to 15 degrees,
# shift up to 10%, scale 0.9 to 1.1), which keeps digits readable; affine-crop-flip, all three.
# A horizontal flip does not preserve a digit's label: on digits, crop-flip costs what it costs
# on CIFAR, but it makes the task harder.
AUGMENTS = ("none", "crop-flip", "affine", "affine-crop-flip")


@dataclass(frozen=True)
class CNNSize:
    """A residual network (He et al. 2016) in torchvision's layout of blocks."""

    block: Literal["basic", "bottleneck"]
    """torchvision's ``BasicBlock`` (two 3x3 convolutions) or ``Bottleneck`` (1x1, 3x3, 1x1)."""
    layers: tuple[int, ...]
    """Blocks per stage; every stage after the first halves the resolution."""
    widths: tuple[int, ...]
    """Planes per stage (a bottleneck's output has four times as many channels)."""
    stem: Literal["imagenet", "cifar"]
    """``imagenet``: 7x7 convolution with stride 2 and a 3x3 max-pool (torchvision's ResNets);
    ``cifar``: one 3x3 convolution at full resolution (He et al. 2016, section 4.2)."""
    image_size: int
    """Default side of the input images; a suite may set ``image_size``."""
    builder: str | None = None
    """The ``torchvision.models`` builder that makes this network (``resnet18``); None for the
    CIFAR layout, which torchvision does not offer."""


@dataclass(frozen=True)
class ViTSize:
    """Shape of torchvision's ``VisionTransformer`` (Dosovitskiy et al. 2021)."""

    patch_size: int
    num_layers: int
    num_heads: int
    hidden_dim: int
    mlp_dim: int
    image_size: int
    """Default side of the input images; a suite may set ``image_size`` (a multiple of the
    patch size)."""
    builder: str | None = None
    """The ``torchvision.models`` builder with this shape, if any (a test compares them)."""


_IMAGENET = ("imagenet", 224)
CNN_SIZES: dict[str, CNNSize] = {
    # CIFAR ResNets (He et al. 2016, section 4.2): 6n + 2 layers, 16/32/64 planes; `tiny` is a
    # ResNet-8 at half width, for tests and quick CPU runs. Shortcuts that change shape are 1x1
    # convolutions (torchvision's; the paper's CIFAR nets pad with zeros instead).
    "tiny": CNNSize("basic", (1, 1, 1), (8, 16, 32), "cifar", 32),
    "resnet20": CNNSize("basic", (3, 3, 3), (16, 32, 64), "cifar", 32),
    "resnet56": CNNSize("basic", (9, 9, 9), (16, 32, 64), "cifar", 32),
    # torchvision's ImageNet ResNets, built by torchvision.models with a 10-class head.
    "resnet18": CNNSize("basic", (2, 2, 2, 2), (64, 128, 256, 512), *_IMAGENET, "resnet18"),
    "resnet34": CNNSize("basic", (3, 4, 6, 3), (64, 128, 256, 512), *_IMAGENET, "resnet34"),
    "resnet50": CNNSize("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), *_IMAGENET, "resnet50"),
}

VIT_SIZES: dict[str, ViTSize] = {
    # Toys on 32x32 images: `tiny` for tests and quick CPU runs (8x8 patches: 16 tokens and the
    # class token), `small` a common CIFAR-10 ViT shape (4x4 patches: 64 tokens).
    "tiny": ViTSize(
        patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, image_size=32
    ),
    "small": ViTSize(4, num_layers=6, num_heads=8, hidden_dim=256, mlp_dim=512, image_size=32),
    # DeiT-Ti and DeiT-S (Touvron et al. 2021), then torchvision's own ViT-B/16 and ViT-L/16.
    "vit_ti_16": ViTSize(16, 12, 3, 192, 768, 224),
    "vit_s_16": ViTSize(16, 12, 6, 384, 1536, 224),
    "vit_b_16": ViTSize(16, 12, 12, 768, 3072, 224, "vit_b_16"),
    "vit_l_16": ViTSize(16, 24, 16, 1024, 4096, 224, "vit_l_16"),
}


def cnn_params(shape: CNNSize, num_classes: int = NUM_CLASSES) -> int:
    """Exact parameter count of the network ``cnn.py`` builds (convolutions have no bias; each
    BatchNorm has a weight and a bias per channel; running statistics are buffers)."""

    def conv_bn(c_in: int, c_out: int, k: int) -> int:
        return k * k * c_in * c_out + 2 * c_out

    expansion = 4 if shape.block == "bottleneck" else 1
    if shape.stem == "imagenet":
        inplanes, count = 64, conv_bn(IMAGE_CHANNELS, 64, 7)
    else:
        inplanes, count = shape.widths[0], conv_bn(IMAGE_CHANNELS, shape.widths[0], 3)
    for stage, (blocks, planes) in enumerate(zip(shape.layers, shape.widths)):
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            # torchvision's _make_layer: a projection shortcut where the shape changes.
            if stride != 1 or inplanes != planes * expansion:
                count += conv_bn(inplanes, planes * expansion, 1)
            if shape.block == "basic":
                count += conv_bn(inplanes, planes, 3) + conv_bn(planes, planes, 3)
            else:  # width = planes for groups = 1 and base width 64
                count += conv_bn(inplanes, planes, 1) + conv_bn(planes, planes, 3)
                count += conv_bn(planes, planes * expansion, 1)
            inplanes = planes * expansion
    return count + inplanes * num_classes + num_classes


def vit_params(
    shape: ViTSize, image_size: int | None = None, num_classes: int = NUM_CLASSES
) -> int:
    """Exact parameter count of torchvision's ``VisionTransformer`` of this shape.

    Patch embedding (a convolution with bias), class token, one position embedding per patch
    and for the class token, per block two LayerNorms (2h each), attention in-projection
    (3h^2 + 3h) and out-projection (h^2 + h), MLP h -> m -> h (2hm + m + h); final LayerNorm,
    linear head.
    """
    h, m, p = shape.hidden_dim, shape.mlp_dim, shape.patch_size
    side = image_size or shape.image_size
    tokens = (side // p) ** 2 + 1
    per_block = 4 * h * h + 2 * h * m + 9 * h + m
    embedding = IMAGE_CHANNELS * p * p * h + h + h + tokens * h
    return embedding + shape.num_layers * per_block + 2 * h + h * num_classes + num_classes


def cnn_for_target(target: int) -> CNNSize:
    """A wide CIFAR ResNet-20 (Zagoruyko and Komodakis 2016): stages of 3 basic blocks with
    w, 2w, 4w planes, w a multiple of 4, the one whose exact count is closest to the target.
    The count grows as about 0.27M x (w / 16)^2."""
    best: tuple[int, CNNSize] | None = None
    width = 4
    while True:
        shape = CNNSize("basic", (3, 3, 3), (width, 2 * width, 4 * width), "cifar", 32)
        error = abs(cnn_params(shape) - target)
        if best is not None and error > best[0]:
            return best[1]  # the count only grows with the width: past the closest one
        best = (error, shape)
        width += 4


def vit_for_target(target: int) -> ViTSize:
    """A ViT on 32x32 images in 4x4 patches, depth and width grown together as ``gpt``'s rule
    does (64 dimensions per head and about 64 per layer; ViT-B/16 has 768 = 64 x 12 on 12
    layers), with an MLP of four times the width: among the three depths around
    (target / (12 x 64^2))^(1/3) and the two multiples of 64 around sqrt(target / (12 L)), the
    shape whose exact count is closest to the target."""
    layers = max(1, round((target / (12 * 64**2)) ** (1 / 3)))
    candidates = []
    for num_layers in range(max(1, layers - 1), layers + 2):
        width = math.sqrt(target / (12 * num_layers)) / 64
        for hidden in {64 * max(1, math.floor(width)), 64 * max(1, math.ceil(width))}:
            shape = ViTSize(4, num_layers, hidden // 64, hidden, 4 * hidden, 32)
            candidates.append((abs(vit_params(shape) - target), num_layers, hidden, shape))
    return min(candidates)[3]
