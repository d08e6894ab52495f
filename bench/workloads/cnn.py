"""The ``cnn`` workload: residual networks (He et al. 2016) classifying images into ten classes.

Two layouts (``vision_shapes.CNN_SIZES``):
- torchvision's ImageNet ResNets, built by ``torchvision.models.resnet18`` / ``34`` / ``50``
  (``weights=None``, a 10-class head): 7x7 stem with stride 2 and a max-pool, four stages; at
  their native 224x224 or at any ``image_size`` (the global average pool takes any side);
- the CIFAR layout of He et al. (section 4.2), from torchvision's own ``BasicBlock``: one 3x3
  convolution at full resolution, three stages of 16, 32, 64 planes (ResNet-20, ResNet-56,
  ``tiny``), or wider for a target parameter count.

Data and batches come from the image pipeline (bench/workloads/pipeline.py).
"""

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from bench.spec.case import Case
from bench.spec.catalog import size_of
from bench.spec.vision_shapes import IMAGE_CHANNELS, NUM_CLASSES, CNNSize
from bench.workloads import data, pipeline, preprocess
from bench.workloads.interface import Workload


class CifarResNet(nn.Module):
    """3x3 stem -> stages of basic blocks (stride 2 from the second on) -> pool -> linear.

    Initialised as torchvision's ResNet: Kaiming-normal convolutions (fan-out), BatchNorm weight 1
    and bias 0, PyTorch's default for the linear head.
    """

    def __init__(self, shape: CNNSize, num_classes: int = NUM_CLASSES):
        super().__init__()
        assert shape.stem == "cifar" and shape.block == "basic", "the CIFAR layout"
        width = shape.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(IMAGE_CHANNELS, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages, inplanes = [], width
        for stage, (blocks, planes) in enumerate(zip(shape.layers, shape.widths)):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                downsample = None
                if stride != 1 or inplanes != planes:  # torchvision's projection shortcut
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                        nn.BatchNorm2d(planes),
                    )
                stages.append(BasicBlock(inplanes, planes, stride, downsample))
                inplanes = planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, 3, S, S) -> (B, C, S / 4, S / 4)
        return self.fc(torch.flatten(self.pool(x), 1))  # (B, C) -> (B, 10) logits


def make_model(shape: CNNSize, num_classes: int = NUM_CLASSES) -> nn.Module:
    if shape.builder is not None:
        builder = getattr(torchvision.models, shape.builder)
        return builder(weights=None, num_classes=num_classes)
    return CifarResNet(shape, num_classes)


# The data as stored, before the pipeline (a fine-tuning task splits it: bench/train/finetune.py).
load = preprocess.load


def build(
    case: Case,
    device: torch.device,
    dtype: torch.dtype,
    stored: data.StoredImages | None = None,
) -> Workload:
    assert case.model_size is not None, "unresolved case"
    shape = size_of("cnn", case.model_size)
    assert isinstance(shape, CNNSize)
    torch.manual_seed(case.seed)
    # Built on the CPU, then moved: the same seed gives the same weights on every device.
    model = make_model(shape).to(device=device, dtype=dtype)
    workload = pipeline.build(case, model, device, dtype, stored)
    workload.head = "fc"  # both the CIFAR ResNets and torchvision's end in a Linear named fc
    return workload
