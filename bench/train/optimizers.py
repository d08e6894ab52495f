"""Optimizers by name (torch.optim), with the implementation asked for, as one stepping unit.

``muon`` is two optimizers: Muon (Jordan et al. 2024) orthogonalises the updates of 2-D weight
matrices, which suits hidden linear layers only; the rest (biases, norms, embeddings and the output
head) get AdamW, as the Muon authors recommend.
"""

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from bench.errors import NotApplicable
from bench.spec.case import Case
from bench.spec.choices import DEFAULT_LR

_CLASSES = {
    "sgd": torch.optim.SGD,
    "sgd-momentum": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "adafactor": torch.optim.Adafactor,
    "muon": torch.optim.Muon,
    "lbfgs": torch.optim.LBFGS,
}
SGD_MOMENTUM = 0.9  # the usual choice (Sutskever et al. 2013)


@dataclass
class Optimizers:
    """The case's optimizer(s), stepped and zeroed together."""

    optimizers: list[torch.optim.Optimizer]

    def zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_bytes(self) -> int:
        """Bytes held in optimizer state (moments, momentum buffers, LBFGS history)."""
        total = 0
        for optimizer in self.optimizers:
            for state in optimizer.state.values():
                for value in state.values():
                    tensors = value if isinstance(value, list) else [value]
                    total += sum(_local(t).nbytes for t in tensors if isinstance(t, torch.Tensor))
        return total

    @property
    def lr(self) -> float:
        return float(self.optimizers[0].param_groups[0]["lr"])


def implementation_flags(name: str, impl: str | None) -> dict[str, bool]:
    """Constructor flags for ``impl``; {} where the optimizer has no such choice."""
    takes = inspect.signature(_CLASSES[name]).parameters
    if impl is None or impl == "for-loop" and "foreach" not in takes:
        return {}
    if impl == "for-loop":
        return {"foreach": False}
    return {impl: True}


def build_optimizers(case: Case, model: nn.Module, tensor_lr: bool = False) -> Optimizers:
    """The case's optimizer over ``model``'s trainable parameters.

    ``tensor_lr`` holds the learning rate in a tensor, so that a compiled optimizer step does not
    recompile when a schedule changes it (torch.compile tutorial on LR schedulers).
    """
    assert case.lr is not None, "unresolved case"
    params = [p for p in model.parameters() if p.requires_grad]
    lr = torch.tensor(case.lr) if tensor_lr else case.lr
    flags = implementation_flags(case.optimizer, case.impl)
    try:
        if case.optimizer == "muon":
            hidden = _hidden_matrices(model)
            rest = [p for p in params if all(p is not h for h in hidden)]
            companion_lr = torch.tensor(DEFAULT_LR["adamw"]) if tensor_lr else DEFAULT_LR["adamw"]
            return Optimizers(
                [torch.optim.Muon(hidden, lr=lr), torch.optim.AdamW(rest, lr=companion_lr)]
            )
        extra: dict = {}
        if case.optimizer == "sgd-momentum":
            extra = {"momentum": SGD_MOMENTUM, "nesterov": bool(case.nesterov)}
        if case.optimizer == "lbfgs":
            # A line search that satisfies the strong Wolfe conditions (Nocedal & Wright, ch. 3)
            # keeps quasi-Newton steps from overshooting; without one, lr = 1 diverges on a net.
            # One quasi-Newton update per batch (max_iter = 1), as every other optimizer makes:
            # torch's default of 20 inner iterations overfits each mini-batch and diverges.
            extra = {"line_search_fn": "strong_wolfe", "max_iter": 1}
        return Optimizers([_CLASSES[case.optimizer](params, lr=lr, **flags, **extra)])
    except (RuntimeError, ValueError) as error:
        # torch refuses a combination it does not implement (e.g. fused on this device/dtype).
        raise NotApplicable(f"torch.optim refuses {case.optimizer} with {flags}: {error}") from None


def _hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """2-D weights of every Linear layer but the last (the output head), without duplicates."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    seen: set[int] = set()
    hidden = []
    for layer in linears[:-1]:
        weight = layer.weight
        if weight.requires_grad and id(weight) not in embeddings and id(weight) not in seen:
            seen.add(id(weight))
            hidden.append(weight)
    return hidden


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of a tensor this process holds: an FSDP-sharded state's shard, not the whole
    (a DTensor's ``nbytes`` is the global size)."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor
