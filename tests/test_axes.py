"""Every sweep axis: each combination trains for real or is skipped with a reason; numbers by hand.

In-process with a tiny MLP on the offline digits (prepare() builds exactly what a worker trains).
"""

import inspect
import itertools
import math

import pytest
import torch

from bench.errors import NotApplicable, UserError
from bench.spec.case import Case
from bench.spec.catalog import num_params, parse_target, size_of
from bench.spec.choices import COMPILE_MODES, IMPLS, LOSSES, OPTIMIZER_IMPLS, OPTIMIZERS, PRECISIONS
from bench.train.losses import cross_entropy, focal, mse
from bench.train.optimizers import _CLASSES, build_optimizers
from bench.train.schedules import lr_factor
from bench.worker.prepare import prepare

CPU = torch.device("cpu")
TINY = {"workload": "mlp", "model_size": "tiny", "batch_size": 16, "data": "digits", "threads": 1}


def trains(case: Case, max_steps: int = 3) -> bool:
    """Whether real optimizer steps change the weights within ``max_steps`` steps (an fp16 step
    that GradScaler skips for inf/NaN changes nothing, so allow a few)."""
    training = prepare(case, CPU)
    before = [p.detach().clone() for p in training.workload.model.parameters()]
    for _ in range(max_steps):
        loss = training.step()
        assert torch.isfinite(loss.detach()).all()
        after = training.workload.model.parameters()
        if any(not torch.equal(a, b) for a, b in zip(before, after)):
            return True
    return False


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch._dynamo.reset()


def test_eager_cross_product_trains_or_skips_with_a_reason():
    ran, skipped = 0, []
    for precision, optimizer, impl, loss in itertools.product(
        PRECISIONS, OPTIMIZERS, (None, *IMPLS), LOSSES
    ):
        case = Case.from_dict(
            {**TINY, "precision": precision, "optimizer": optimizer, "impl": impl, "loss": loss}
        )
        if reason := case.skip_reason():
            skipped.append(reason)
            continue
        try:
            assert trains(case), case
        except NotApplicable as error:
            skipped.append(str(error))
            continue
        ran += 1
    print(f"{ran} combinations trained, {len(skipped)} skipped with a reason")
    assert all(reason.strip() for reason in skipped)
    # tf32 on CPU (108 combinations), implementations torch does not offer, and lbfgs under
    # amp-fp16 are skipped; every other combination trains. Per precision and loss: 9 optimizers
    # x 4 impls = 36, of which rmsprop and adafactor lack fused (2), muon and lbfgs lack foreach
    # and fused (4); lbfgs with amp-fp16 loses its 2 remaining impls for each of 3 losses.
    assert ran == 4 * 3 * (36 - 6) - 2 * 3
    assert len(skipped) == 540 - ran


@pytest.mark.parametrize(
    "options",
    [
        {"compile": "default"},
        {"compile": "max-autotune-no-cudagraphs"},
        {"compile": "default", "compile_scope": "step"},
        {"compile": "default", "compile_scope": "step", "lr_schedule": "cosine"},
        {"compile": "default", "fullgraph": True},
        {"compile": "default", "dynamic": False},
    ],
)
def test_compile_modes_and_options_train(options):
    assert trains(Case.from_dict({**TINY, **options}))


@pytest.mark.parametrize(
    "mode", [m for m in COMPILE_MODES if m in ("reduce-overhead", "max-autotune")]
)
def test_cuda_graph_modes_skip_on_cpu(mode):
    assert "CUDA graphs" in Case.from_dict({**TINY, "compile": mode}).skip_reason()


def test_impossible_compile_combinations_skip_with_reasons():
    full = Case.from_dict(
        {**TINY, "compile": "default", "compile_scope": "step", "fullgraph": True}
    )
    assert "fullgraph" in full.skip_reason()
    lbfgs = Case.from_dict(
        {**TINY, "compile": "default", "compile_scope": "step", "optimizer": "lbfgs"}
    )
    assert "closure" in lbfgs.skip_reason()


def final_loss(case: Case, steps: int = 60) -> float:
    training = prepare(case, CPU)
    losses = [float(training.step().detach()) for _ in range(steps)]
    return sum(losses[-10:]) / 10


def test_reduced_precisions_and_compile_track_fp32_over_the_same_steps():
    base = {**TINY, "batch_size": 64}
    fp32 = final_loss(Case.from_dict(base))
    # Measured here over 60 steps: fp32 about 0.5; bf16 parameters round every update to 8 bits
    # of mantissa, so it is allowed the widest margin.
    tolerance = {"bf16": 0.15, "amp-bf16": 0.05, "amp-fp16": 0.02}
    for precision, allowed in tolerance.items():
        loss = final_loss(Case.from_dict({**base, "precision": precision}))
        assert abs(loss - fp32) <= allowed, (precision, loss, fp32)
    compiled = final_loss(Case.from_dict({**base, "compile": "default"}))
    assert compiled == pytest.approx(fp32, rel=1e-3)


def test_optimizer_impl_table_matches_torch():
    for name, impls in OPTIMIZER_IMPLS.items():
        takes = inspect.signature(_CLASSES[name]).parameters
        assert ("foreach" in impls) == ("foreach" in takes), name
        assert ("fused" in impls) == ("fused" in takes), name


def test_lbfgs_counts_its_function_evaluations():
    training = prepare(Case.from_dict({**TINY, "optimizer": "lbfgs"}), CPU)
    for _ in range(5):
        training.step()
    # At least one closure call per step, and the strong-Wolfe line search adds some.
    assert training.counters["function_evals"] >= 5


def test_adam_state_is_two_moments_per_parameter():
    case = Case.from_dict({**TINY, "optimizer": "adam"})
    training = prepare(case, CPU)
    training.step()
    n = num_params("mlp", "tiny")
    # exp_avg and exp_avg_sq in fp32 per parameter, plus one fp32 `step` scalar per tensor
    # (6 tensors: 3 weights, 3 biases).
    assert training.optimizers.state_bytes() == 2 * 4 * n + 6 * 4


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    case = Case.from_dict({**TINY, "optimizer": "muon"})
    model = prepare(case, CPU).workload.model
    muon, adamw = build_optimizers(case, model).optimizers
    muon_shapes = [tuple(p.shape) for group in muon.param_groups for p in group["params"]]
    assert muon_shapes == [(64, 784), (32, 64)]  # not the 10 x 32 head, no biases
    rest = sum(p.numel() for group in adamw.param_groups for p in group["params"])
    assert rest == num_params("mlp", "tiny") - 64 * 784 - 32 * 64


def test_losses_by_hand():
    # Two classes, scores (log 3, 0): p = (3/4, 1/4); target class 0.
    output = torch.tensor([[math.log(3.0), 0.0]])
    target = torch.tensor([0])
    assert cross_entropy(output, target).item() == pytest.approx(-math.log(0.75))
    # mse of (3/4, 1/4) against (1, 0): ((1/4)^2 + (1/4)^2) / 2
    assert mse(output, target).item() == pytest.approx(1 / 16)
    # focal: -alpha (1 - p_t)^gamma log p_t = -0.25 * (1/4)^2 * log(3/4)
    assert focal(2.0, 0.25)(output, target).item() == pytest.approx(-0.25 / 16 * math.log(0.75))
    # gamma = 0, alpha = 1 is cross-entropy; log-probabilities in give the same as logits.
    assert focal(0.0, 1.0)(output.log_softmax(-1), target).item() == pytest.approx(-math.log(0.75))


def test_lr_schedules_by_hand():
    assert lr_factor(5, "constant", None, None) == 1.0
    assert lr_factor(0, "cosine", 10, None) == 1.0
    assert lr_factor(5, "cosine", 10, None) == pytest.approx(0.5)  # half-way: (1 + cos pi/2) / 2
    assert lr_factor(10, "cosine", 10, None) == pytest.approx(0.0)
    # Warm-up of 4 steps: 1/4, 2/4, 3/4, 4/4, then cosine over the remaining 8 steps.
    assert [lr_factor(s, "warmup-cosine", 12, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(8, "warmup-cosine", 12, 4) == pytest.approx(0.5)


def test_schedule_reaches_the_optimizer():
    case = Case.from_dict({**TINY, "lr_schedule": "cosine", "lr_schedule_steps": 4, "lr": 0.1})
    training = prepare(case, CPU)
    training.step()
    training.step()
    assert training.optimizers.lr == pytest.approx(0.1 * 0.5)


def test_target_parameter_counts():
    assert parse_target("25M") == 25_000_000
    assert parse_target("1.5B") == 1_500_000_000
    assert parse_target("500k") == 500_000
    assert parse_target(2_000_000) == 2_000_000
    assert parse_target("big") is None and parse_target("0M") is None
    # MLP: w^2/2 + 790.5 w + 10 = 1M gives w = 832.4 -> 832 (a multiple of 16), widths (832, 416).
    assert size_of("mlp", "1M").hidden == (832, 416)
    assert num_params("mlp", "1M") == 784 * 832 + 832 + 832 * 416 + 416 + 416 * 10 + 10
    # GPT: n_layer ~= (25e6 / (12 * 64^2)) ** (1/3) = 8.05 -> 8; sqrt(25e6 / 96) / 64 = 7.97, so
    # d_model 448 or 512; with 7, 8 or 9 layers the closest count is 8 x 512 (25,482,240).
    shape = size_of("gpt", "25M")
    assert (shape.n_layer, shape.d_model, shape.n_head) == (8, 512, 8)
    assert num_params("gpt", "25M") == 25_482_240
    for target in ("2M", "25M", "100M"):
        assert abs(num_params("mlp", target) / parse_target(target) - 1) < 0.02
        assert abs(num_params("gpt", target) / parse_target(target) - 1) < 0.1


def test_target_size_trains_and_bad_size_is_a_clear_error():
    assert trains(Case.from_dict({**TINY, "model_size": "100K"}))
    with pytest.raises(UserError, match='or a parameter count such as "25M"'):
        Case.from_dict({**TINY, "model_size": "25Q"})


def test_activation_checkpointing_matches_plain_gradients():
    base = {"workload": "gpt", "model_size": "tiny", "seq_len": 32, "batch_size": 4}
    plain = prepare(Case.from_dict(base), CPU)
    checkpointed = prepare(Case.from_dict({**base, "activation_checkpointing": True}), CPU)
    assert checkpointed.workload.model.checkpointing
    for training in (plain, checkpointed):
        training.step()
    for a, b in zip(plain.workload.model.parameters(), checkpointed.workload.model.parameters()):
        torch.testing.assert_close(a, b)


def test_unknown_axis_value_lists_the_allowed_ones():
    for key, value, allowed in [
        ("loss", "hinge", "allowed: cross-entropy, mse, focal"),
        ("impl", "cuda", "allowed: for-loop, foreach, fused"),
        ("lr_schedule", "step", "allowed: constant, cosine, warmup-cosine"),
        ("compile_scope", "graph", "allowed: model, step"),
        ("compile_cache", "hot", "allowed: warm, cold"),
    ]:
        with pytest.raises(UserError, match=f"{key} = '{value}': {allowed}"):
            Case.from_dict({**TINY, key: value})
