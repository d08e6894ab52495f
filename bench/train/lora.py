"""LoRA: low-rank adapters on a frozen model's linear layers and attention projections.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models": a frozen weight W (out, in)
gets a trainable update (alpha / r) B A with A (r, in) and B (out, r), so that

    y = W x + b + (alpha / r) B A x

B starts at zero, so the adapted model starts as the pretrained one (section 4.1); A starts as
``nn.Linear`` initialises its weight (Kaiming-uniform), as the reference implementation (loralib)
does. Each adapter adds r (in + out) parameters.

Two forms, one update:
- :class:`LoRALinear` wraps an ``nn.Linear`` that is called as a module (or transformers'
  ``Conv1D``, GPT-2's linear layer with its weight stored transposed, (in, out)), and computes
  the adapter's path as two thin products, B (A x), never forming B A.
- ``nn.MultiheadAttention`` reads its projection weights as tensors (``in_proj_weight``,
  ``out_proj.weight``) instead of calling modules, so a wrapper would be silently bypassed: there
  the same update is a parametrization, W + (alpha / r) B A, formed at every forward.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) B A x`` with ``base`` frozen; (..., in) -> (..., out)."""

    def __init__(self, base: nn.Module, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        in_features, out_features = linear_features(base)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, **factory))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, **factory))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own weight init
        for param in base.parameters():
            param.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (..., in) -> (..., r) -> (..., out)
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_A), self.lora_B)


class LowRankDelta(nn.Module):
    """A parametrization: W (out, in) -> W + (alpha / r) B A, for weights read as tensors."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float):
        super().__init__()
        out_features, in_features = weight.shape
        self.scale = alpha / rank
        factory = {"device": weight.device, "dtype": weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, **factory))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, **factory))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_B @ self.lora_A)  # (out, in)


def linear_features(module: nn.Module) -> tuple[int, int]:
    """(in, out) of an ``nn.Linear``, or of transformers' ``Conv1D`` (y = x W + b with W of
    shape (in, out) and ``nf`` = out: GPT-2's attention and MLP projections)."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    n_in, n_out = module.weight.shape
    return n_in, n_out


def is_linear(module: nn.Module) -> bool:
    """A linear layer LoRA adapts: ``nn.Linear``, or a transformers ``Conv1D`` (known by its
    class name and ``nf``, so that this module needs no transformers)."""
    conv1d = type(module).__name__ == "Conv1D" and hasattr(module, "nf")
    return isinstance(module, nn.Linear) or conv1d


def add_peft_adapters(model: nn.Module, rank: int, alpha: float) -> int:
    """PEFT's LoRA (``peft.get_peft_model``) on ``model.hf``, a transformers model: rank-``rank``
    adapters, scale alpha / r, on every linear layer but the output one
    (``target_modules = "all-linear"``), no dropout; A Kaiming-uniform and B zero, as the
    built-in adapters. Returns the adapters' parameter count."""
    import peft

    config = peft.LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear", bias="none"
    )
    model.hf = peft.get_peft_model(model.hf, config)
    return sum(p.numel() for name, p in model.hf.named_parameters() if "lora_" in name)


def add_adapters(model: nn.Module, rank: int, alpha: float, skip: nn.Module | None = None) -> int:
    """Freeze ``model`` and put rank-``rank`` adapters on every linear layer and attention
    projection, except inside ``skip`` (the head). Returns the adapters' parameter count."""
    for param in model.parameters():
        param.requires_grad_(False)
    skipped = set(skip.modules()) if skip is not None else set()
    attention = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    inside_attention = {sub for m in attention for sub in m.modules()}
    added = 0
    for mha in attention:
        if mha in skipped:
            continue
        names = (
            ["in_proj_weight"]
            if mha._qkv_same_embed_dim
            else ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
        )
        for owner, name in [(mha, n) for n in names] + [(mha.out_proj, "weight")]:
            delta = LowRankDelta(getattr(owner, name), rank, alpha)
            parametrize.register_parametrization(owner, name, delta)
            added += delta.lora_A.numel() + delta.lora_B.numel()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_linear(child) and child not in skipped | inside_attention:
                adapter = LoRALinear(child, rank, alpha)
                setattr(parent, name, adapter)
                added += adapter.lora_A.numel() + adapter.lora_B.numel()
    return added
