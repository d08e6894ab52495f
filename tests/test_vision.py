"""Vision workloads: parameter counts against the catalog and torchvision, shapes, training."""

import pytest
import torch
import torchvision

from bench.errors import ConfigError
from bench.spec.case import Case
from bench.spec.catalog import num_params, parse_target, size_of
from bench.spec.vision_shapes import CNN_SIZES, VIT_SIZES, cnn_params, vit_params
from bench.workloads import cnn, vit
from bench.workloads.registry import build
from tests.helpers import mean, train_steps

CPU = torch.device("cpu")


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _case(**values: object) -> Case:
    return Case.from_dict({"model_size": "tiny", "data": "digits", "threads": 1, **values})


# --- models against the catalog -----------------------------------------------------------------


@pytest.mark.parametrize("size", CNN_SIZES)
def test_cnn_parameter_count_matches_catalog(size: str) -> None:
    with torch.device("meta"):
        model = cnn.make_model(CNN_SIZES[size])
    assert _count(model) == num_params("cnn", size)


@pytest.mark.parametrize("size", VIT_SIZES)
def test_vit_parameter_count_matches_catalog(size: str) -> None:
    shape = VIT_SIZES[size]
    with torch.device("meta"):
        model = vit.make_model(shape, shape.image_size)
    assert _count(model) == num_params("vit", size)


def test_vit_position_table_follows_image_size() -> None:
    with torch.device("meta"):
        model = vit.make_model(VIT_SIZES["tiny"], 64)
    # 64 / 8 = 8 patches a side: 64 + 1 positions instead of 16 + 1, 48 more rows of 64.
    assert _count(model) == num_params("vit", "tiny", image_size=64)
    assert num_params("vit", "tiny", image_size=64) - num_params("vit", "tiny") == 48 * 64


@pytest.mark.parametrize(
    ("size", "documented"),
    # torchvision's documented parameter counts of its ImageNet weights (1000 classes), from the
    # weights' metadata (ResNet18_Weights.IMAGENET1K_V1.meta["num_params"], ...).
    [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("vit_b_16", 86_567_656),
        ("vit_l_16", 304_326_632),
    ],
)
def test_imagenet_shapes_have_torchvisions_documented_counts(size: str, documented: int) -> None:
    if size in CNN_SIZES:
        assert cnn_params(CNN_SIZES[size], num_classes=1000) == documented
    else:
        assert vit_params(VIT_SIZES[size], num_classes=1000) == documented


def test_vit_b_16_is_torchvisions_builder() -> None:
    with torch.device("meta"):
        ours = vit.make_model(VIT_SIZES["vit_b_16"], 224)
        theirs = torchvision.models.vit_b_16(weights=None, num_classes=10)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in theirs.named_parameters()
    ]


def test_resnet20_count_by_hand() -> None:
    # Stem 3*16*9 + 32 = 464. Stage 1: three blocks of two 16->16 convolutions with BatchNorm,
    # 6 * (2304 + 32) = 14016. Stage 2: 16->32 (4608 + 64), 32->32 (9216 + 64), the 1x1
    # shortcut (512 + 64), then four 32->32: 4672 + 9280 + 576 + 4 * 9280 = 51648. Stage 3 the
    # same at 64: 18560 + 36992 + 2176 + 4 * 36992 = 205696. Head 64 * 10 + 10 = 650.
    assert num_params("cnn", "resnet20") == 464 + 14016 + 51648 + 205696 + 650 == 272_474


def test_cifar_resnet_keeps_resolution_through_the_stem_and_halves_it_per_stage() -> None:
    model = cnn.make_model(CNN_SIZES["tiny"])
    x = torch.randn(2, 3, 32, 32)
    assert model.stem(x).shape == (2, 8, 32, 32)
    assert model.stages(model.stem(x)).shape == (2, 32, 8, 8)  # 32 -> 16 -> 8
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("workload", ["cnn", "vit"])
@pytest.mark.parametrize("target", ["1M", "25M"])
def test_target_counts_come_close(workload: str, target: str) -> None:
    count = num_params(workload, target)
    assert abs(count / parse_target(target) - 1) < 0.1
    shape = size_of(workload, target)
    with torch.device("meta"):
        model = cnn.make_model(shape) if workload == "cnn" else vit.make_model(shape, 32)
    assert _count(model) == count


def test_vit_image_size_must_be_a_multiple_of_the_patch() -> None:
    with pytest.raises(ConfigError, match=r"image_size = 36: .*multiple of 8"):
        _case(workload="vit", image_size=36)
    assert _case(workload="vit", image_size=40).image_size == 40


def test_image_size_defaults_to_the_sizes_own() -> None:
    assert _case(workload="cnn", model_size="resnet18").image_size == 224
    assert _case(workload="cnn").image_size == 32
    assert _case(workload="vit", model_size="vit_b_16").image_size == 224


# --- training -----------------------------------------------------------------------------------


def _train(case: Case, steps: int) -> list[float]:
    """Real AdamW steps on the case's batches; returns the per-step losses."""
    work = build(case, CPU, torch.float32)
    losses = train_steps(work, steps, case.lr)
    work.close()
    return losses


@pytest.mark.parametrize(
    ("workload", "lr", "steps"),
    # Measured on digits, batch 32: cnn tiny 2.25 -> 1.85 in 30 steps at lr 3e-3; vit tiny
    # 2.30 -> 1.77 in 60 steps at 1e-3 (chance: ln 10 = 2.30).
    [("cnn", 3e-3, 30), ("vit", 1e-3, 60)],
)
def test_tiny_vision_workload_learns_digits(workload: str, lr: float, steps: int) -> None:
    losses = _train(_case(workload=workload, batch_size=32, lr=lr), steps)
    assert mean(losses[-5:]) < mean(losses[:5]) - 0.25


def test_cnn_evaluates_held_out_digits_in_eval_mode() -> None:
    work = build(_case(workload="cnn", batch_size=32), CPU, torch.float32)
    before = work.evaluate(work.model)
    assert work.model.training  # restored
    # An untrained 10-class model: a loss near ln 10 and no more than chance plus noise.
    assert 0 <= before["accuracy"] <= 1
    assert before["loss"] == pytest.approx(2.3, abs=0.3)
    # BatchNorm's running statistics are untouched by evaluation: the same numbers again.
    assert work.evaluate(work.model) == before
    work.close()


@pytest.mark.parametrize("workload", ["cnn", "vit"])
def test_synthetic_images_have_the_input_shape_and_no_pipeline(workload: str) -> None:
    case = _case(workload=workload, data="synthetic", batch_size=4, image_size=16)
    assert (case.augment, case.num_workers, case.pin_memory) == (None, None, None)
    work = build(case, CPU, torch.float32)
    x, y = work.next_batch()
    assert x.shape == (4, 3, 16, 16) and y.shape == (4,)
    assert work.data.name == "synthetic" and work.data.pipeline is None
    other_seed = build(_case(workload=workload, data="synthetic", seed=1), CPU, torch.float32)
    assert other_seed.data.sha256 != work.data.sha256


def test_bf16_builds_bf16_parameters_and_inputs() -> None:
    work = build(_case(workload="cnn", batch_size=4, precision="bf16"), CPU, torch.bfloat16)
    x, y = work.next_batch()
    assert {p.dtype for p in work.model.parameters()} == {torch.bfloat16}
    assert x.dtype == torch.bfloat16
    loss = work.loss_fn(work.model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
