"""Classification losses, over the model's class scores in the last dimension.

The MLP ends in log-softmax and the GPT in raw logits; every loss here starts from
``log_softmax(output)``, which leaves log-probabilities unchanged, so one definition serves both.
Computed in float32 whatever the precision, so that a loss reads the same under every policy.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _flat(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., C) scores and (...) class ids -> (N, C) float32 log-probabilities and (N,) ids."""
    scores = output.float().reshape(-1, output.size(-1))
    return F.log_softmax(scores, dim=-1), target.reshape(-1)


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    log_probs, target = _flat(output, target)
    return F.nll_loss(log_probs, target)


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the predicted class probabilities and one-hot targets."""
    log_probs, target = _flat(output, target)
    one_hot = F.one_hot(target, num_classes=log_probs.size(-1)).float()  # (N, C)
    return F.mse_loss(log_probs.exp(), one_hot)


def focal(gamma: float, alpha: float) -> LossFn:
    """Focal loss, FL(p_t) = -alpha (1 - p_t)^gamma log p_t (Lin et al. 2017, eq. 5), averaged.

    Multi-class form with one alpha for every class; gamma = 0 and alpha = 1 is cross-entropy.
    """

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs, target = _flat(output, target)
        log_pt = log_probs.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
        return (-alpha * (1 - log_pt.exp()) ** gamma * log_pt).mean()

    return loss


def build_loss(name: str, gamma: float | None = None, alpha: float | None = None) -> LossFn:
    if name == "cross-entropy":
        return cross_entropy
    if name == "mse":
        return mse
    if name == "focal":
        assert gamma is not None and alpha is not None, "unresolved focal case"
        return focal(gamma, alpha)
    raise AssertionError(f"unvalidated loss {name!r}")
