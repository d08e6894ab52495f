"""FLOPs of a training step, counted on the eager model, against hand counts and the formula."""

import pytest
import torch

from bench.measure.flops import count_step_flops, gpt_flops_per_token
from bench.spec.case import Case
from bench.train.losses import build_loss
from bench.worker.prepare import TrainModule
from bench.workloads.registry import build

CPU = torch.device("cpu")


def eager(case: Case) -> tuple[TrainModule, tuple[torch.Tensor, torch.Tensor]]:
    workload = build(case, CPU, torch.float32)
    return TrainModule(workload.model, build_loss(case.loss)), workload.next_batch()


def test_the_mlp_step_count_equals_the_hand_count():
    B = 64
    case = Case.from_dict(
        {"workload": "mlp", "model_size": "base", "batch_size": B, "data": "digits"}
    )
    module, batch = eager(case)
    before = [p.detach().clone() for p in module.parameters()]
    counted = count_step_flops(module, batch, torch.autocast("cpu", enabled=False))
    W1, W2, W3 = 784 * 512, 512 * 256, 256 * 10
    forward = 2 * B * (W1 + W2 + W3)
    weight_grads = 2 * B * (W1 + W2 + W3)
    input_grads = 2 * B * (W2 + W3)  # the first layer's input (the images) needs no gradient
    hand = forward + weight_grads + input_grads
    assert hand == 154_075_136
    assert counted == pytest.approx(hand, rel=0.01)
    # Counting trains nothing: same weights, no gradients left, training mode restored.
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert all(p.grad is None for p in module.parameters())
    assert module.training


def test_the_gpt_count_agrees_with_6n_plus_attention_within_ten_percent():
    case = Case.from_dict(
        {"workload": "gpt", "model_size": "tiny", "batch_size": 4, "data": "synthetic"}
    )
    module, batch = eager(case)
    counted = count_step_flops(module, batch, torch.autocast("cpu", enabled=False))
    analytic = gpt_flops_per_token("tiny", case.seq_len, tied=True) * 4 * case.seq_len
    assert counted == pytest.approx(analytic, rel=0.10)


def test_the_formula_by_hand_for_the_tiny_gpt():
    # tiny: L = 2, H = 4, d = 128 (Q = 32), T = 64, vocabulary 256, tied embeddings.
    # Per block 12 d^2 + 13 d = 198,272; N = 2 blocks + token embedding (as the head) + final
    # LayerNorm = 396,544 + 32,768 + 256 = 429,568 (the position table is left out).
    n = 2 * (12 * 128**2 + 13 * 128) + 256 * 128 + 2 * 128
    assert n == 429_568
    assert gpt_flops_per_token("tiny", 64, tied=True) == 6 * n + 12 * 2 * 4 * 32 * 64
    # Untied, the head is a second matrix but the embedding is still a lookup: the same N.
    assert gpt_flops_per_token("tiny", 64, tied=False) == 6 * n + 12 * 2 * 4 * 32 * 64


def test_activation_checkpointing_does_not_count_its_recomputation():
    base = {"workload": "gpt", "model_size": "tiny", "batch_size": 2, "data": "synthetic"}
    counts = []
    for checkpointing in (False, True):
        module, batch = eager(Case.from_dict({**base, "activation_checkpointing": checkpointing}))
        counts.append(count_step_flops(module, batch, torch.autocast("cpu", enabled=False)))
    assert counts[0] == counts[1]
