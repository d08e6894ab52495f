"""The ``vit`` workload: torchvision's ``VisionTransformer`` (Dosovitskiy et al. 2021) classifying
images into ten classes.

Every size is the same class, ``torchvision.models.vision_transformer.VisionTransformer``, with
the shape from ``vision_shapes.VIT_SIZES``: ``vit_b_16`` and ``vit_l_16`` are exactly
torchvision's builders of those names (a test compares the counts), ``vit_ti_16`` and
``vit_s_16`` the DeiT shapes, ``tiny`` and ``small`` toys on 32x32 images (8x8 and 4x4 patches). No
dropout (torchvision's default): a benchmark measures the deterministic step. Attention runs
through ``nn.MultiheadAttention``, that is ``scaled_dot_product_attention``.

Data and batches come from the image pipeline (bench/workloads/pipeline.py).
"""

import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from bench.spec.case import Case
from bench.spec.catalog import size_of
from bench.spec.vision_shapes import NUM_CLASSES, ViTSize
from bench.workloads import data, pipeline, preprocess
from bench.workloads.interface import Workload


def make_model(shape: ViTSize, image_size: int, num_classes: int = NUM_CLASSES) -> nn.Module:
    return VisionTransformer(
        image_size=image_size,
        patch_size=shape.patch_size,
        num_layers=shape.num_layers,
        num_heads=shape.num_heads,
        hidden_dim=shape.hidden_dim,
        mlp_dim=shape.mlp_dim,
        num_classes=num_classes,
    )


# The data as stored, before the pipeline (a fine-tuning task splits it: bench/train/finetune.py).
load = preprocess.load


def build(
    case: Case,
    device: torch.device,
    dtype: torch.dtype,
    stored: data.StoredImages | None = None,
) -> Workload:
    assert case.model_size is not None and case.image_size is not None, "unresolved case"
    shape = size_of("vit", case.model_size)
    assert isinstance(shape, ViTSize)
    torch.manual_seed(case.seed)
    # Built on the CPU, then moved: the same seed gives the same weights on every device.
    model = make_model(shape, case.image_size).to(device=device, dtype=dtype)
    workload = pipeline.build(case, model, device, dtype, stored)
    workload.head = "heads.head"  # torchvision's VisionTransformer: heads = Sequential(head=Linear)
    return workload
