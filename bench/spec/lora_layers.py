"""The weights LoRA adapts in each workload, worked out from the catalog's shapes (torch-free).

bench/train/lora.py puts a rank-r adapter on every linear layer and attention projection outside the
model's head. A weight W (out, in) has rank at most min(in, out), so an adapter of rank
r >= min(in, out) can express any update of it: that is full fine-tuning of the layer with more
parameters than the layer has, not low-rank adaptation. Suite validation checks ``lora_rank``
against the narrowest of these layers before anything runs; a test checks this list against
the adapters of the built models.

Each layer is ``(name, in_features, out_features)``, named as the weight is in the model before
adapters (``model.named_parameters()``).
"""

from bench.spec.catalog import MLP_IN, GPTSize, MLPSize, size_of
from bench.spec.vision_shapes import CNNSize, ViTSize

Layer = tuple[str, int, int]


def adapted_layers(workload: str, size: str | int) -> list[Layer]:
    """The weights of ``workload`` at ``size`` that get adapters (none for a workload without a
    fine-tuning task, or one whose only linear layer is its head)."""
    shape = size_of(workload, size)
    if isinstance(shape, MLPSize):
        # MLP: Flatten, then (Linear, ReLU) per hidden width: the Linears are modules 1, 3, ...;
        # the last one is the head.
        widths = (MLP_IN, *shape.hidden)
        return [(f"{2 * i + 1}.weight", widths[i], widths[i + 1]) for i in range(len(shape.hidden))]
    if isinstance(shape, GPTSize) and workload == "gpt":
        d = shape.d_model
        block = [
            ("attn.c_attn", d, 3 * d),  # q, k, v at once
            ("attn.c_proj", d, d),
            ("mlp.c_fc", d, 4 * d),
            ("mlp.c_proj", 4 * d, d),
        ]
        return [
            (f"blocks.{i}.{name}.weight", n_in, n_out)
            for i in range(shape.n_layer)
            for name, n_in, n_out in block
        ]
    if isinstance(shape, ViTSize):
        # torchvision's EncoderBlock: nn.MultiheadAttention (packed q, k, v projection and
        # out_proj) and MLPBlock (Linear, GELU, Dropout, Linear, Dropout).
        h, m = shape.hidden_dim, shape.mlp_dim
        block = [
            ("self_attention.in_proj_weight", h, 3 * h),
            ("self_attention.out_proj.weight", h, h),
            ("mlp.0.weight", h, m),
            ("mlp.3.weight", m, h),
        ]
        return [
            (f"encoder.layers.encoder_layer_{i}.{name}", n_in, n_out)
            for i in range(shape.num_layers)
            for name, n_in, n_out in block
        ]
    if isinstance(shape, CNNSize):
        return []  # a ResNet's only linear layer is its head (fc)
    return []  # no fine-tuning task (recsys, diffusion, hf-gpt2)


def narrowest(layers: list[Layer]) -> Layer | None:
    """The layer of smallest min(in, out): the highest rank that is still low is one below it."""
    return min(layers, key=lambda layer: min(layer[1], layer[2]), default=None)
