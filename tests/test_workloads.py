"""Workloads: parameter counts against the catalog, data splits and hashes, real training."""

import hashlib
import math
import os
import struct
import sysconfig
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits

from bench.spec.case import Case
from bench.spec.catalog import GPT_SIZES, MLP_SIZES, num_params
from bench.workloads import data, gpt, mlp
from bench.workloads.interface import Workload
from bench.workloads.registry import build
from tests.helpers import mean, train_steps

CPU = torch.device("cpu")


def _case(**values: object) -> Case:
    return Case.from_dict({"model_size": "tiny", **values})


def _train(
    case: Case, steps: int, dtype: torch.dtype = torch.float32
) -> tuple[list[float], Workload]:
    """Real AdamW steps; returns the per-step losses and the workload."""
    work = build(case, CPU, dtype)
    return train_steps(work, steps, case.lr), work


@pytest.fixture(scope="module")
def digits() -> data.ImageSplits:
    return data.digits()


@pytest.fixture
def fake_mnist(tmp_path: Path) -> Path:
    """A 6 + 3 image MNIST in torchvision's raw layout (big-endian idx files)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, num in (("train", 6), ("t10k", 3)):
        pixels = bytes([0] * (28 * 28 - 1) + [255]) * num  # every image: black, last pixel white
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">4i", 2051, num, 28, 28) + pixels
        )
        labels = bytes(range(num))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, num) + labels)
    return tmp_path


# --- models against the catalog -----------------------------------------------------------------


@pytest.mark.parametrize("size", MLP_SIZES)
def test_mlp_parameter_count_matches_catalog(size: str) -> None:
    with torch.device("meta"):
        model = mlp.MLP(MLP_SIZES[size].hidden)
    assert sum(p.numel() for p in model.parameters()) == num_params("mlp", size)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("size", GPT_SIZES)
def test_gpt_parameter_count_matches_catalog(size: str, tied: bool) -> None:
    shape = GPT_SIZES[size]
    with torch.device("meta"):
        model = gpt.GPT(shape, shape.seq_len, tie_embeddings=tied)
    assert sum(p.numel() for p in model.parameters()) == num_params("gpt", size, None, tied)


def test_gpt_position_table_follows_seq_len() -> None:
    with torch.device("meta"):
        model = gpt.GPT(GPT_SIZES["tiny"], 100, tie_embeddings=True)
    # d = 128, per block 12 d^2 + 13 d = 198272; two blocks, 256 token and 100 position rows of
    # d, final LayerNorm 2 d: 396544 + 32768 + 12800 + 256 = 442368.
    assert sum(p.numel() for p in model.parameters()) == 442_368 == num_params("gpt", "tiny", 100)


def test_base_mlp_is_the_tutorial_network() -> None:
    linears = [m for m in mlp.MLP(MLP_SIZES["base"].hidden) if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 512), (512, 256), (256, 10)]


# --- data ---------------------------------------------------------------------------------------


def test_digits_split_is_1437_train_360_val(digits: data.ImageSplits) -> None:
    assert (digits.info.num_train, digits.info.num_val) == (1437, 360)
    assert digits.x_train.shape == (1437, 1, 28, 28) and digits.x_val.shape == (360, 1, 28, 28)
    # Together the splits hold every scan once: the label counts of the whole set.
    counts = torch.bincount(torch.cat([digits.y_train, digits.y_val]), minlength=10)
    assert counts.tolist() == torch.bincount(torch.tensor(load_digits().target)).tolist()


def test_digits_pixel_is_upsampled_and_normalised_by_hand(digits: data.ImageSplits) -> None:
    # The split is a permutation by seed 0 whose first 1437 entries train.
    perm = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    raw = torch.tensor(load_digits().images, dtype=torch.float64)[perm[:1437]] / 16  # (N, 8, 8)
    i = next(i for i in range(1437) if raw[i, 3:5, 3:5].sum() > 0)  # ink at the centre
    # Output pixel 12 of 28 samples source (12 + 0.5) * 8/28 - 0.5 = 3 + 1/14 (bilinear,
    # align_corners=False): weights 13/14 on source 3 and 1/14 on source 4, along each axis.
    w = torch.tensor([13 / 14, 1 / 14], dtype=torch.float64)
    v = float(w @ raw[i, 3:5, 3:5] @ w)
    assert float(digits.x_train[i, 0, 12, 12]) == pytest.approx((v - 0.1307) / 0.3081, abs=1e-5)


def test_digits_hash_is_reproducible(digits: data.ImageSplits) -> None:
    assert data.digits().info.sha256 == digits.info.sha256


def test_stdlib_corpus_is_the_stdlib_top_level_source_split_90_10() -> None:
    corpus = data.stdlib_corpus()
    root = Path(sysconfig.get_paths()["stdlib"])
    blob = b"\n".join(p.read_bytes() for p in sorted(root.glob("*.py")))
    assert len(blob) > 1_000_000  # CPython 3.11's top-level modules: about 4.7 MB
    assert corpus.info.sha256 == hashlib.sha256(blob).hexdigest()
    assert corpus.info.num_train == int(0.9 * len(blob)) == len(corpus.train)
    assert corpus.info.num_val == len(blob) - int(0.9 * len(blob)) == len(corpus.val)
    assert bytes(torch.cat([corpus.train, corpus.val]).numpy()) == blob
    assert data.stdlib_corpus().info.sha256 == corpus.info.sha256


def test_mnist_is_read_and_normalised(fake_mnist: Path) -> None:
    assert data.mnist_present(fake_mnist)
    splits = data.mnist(fake_mnist)
    assert (splits.info.name, splits.info.num_train, splits.info.num_val) == ("mnist", 6, 3)
    assert splits.x_train.shape == (6, 1, 28, 28) and splits.y_val.tolist() == [0, 1, 2]
    assert float(splits.x_train[0, 0, 0, 0]) == pytest.approx(-0.1307 / 0.3081)  # black
    assert float(splits.x_val[2, 0, 27, 27]) == pytest.approx((1 - 0.1307) / 0.3081)  # white


def test_auto_uses_mnist_when_present_and_digits_otherwise(
    fake_mnist: Path, tmp_path_factory
) -> None:
    empty = tmp_path_factory.mktemp("empty")
    assert not data.mnist_present(empty)
    found = build(
        _case(workload="mlp", data_path=str(fake_mnist), batch_size=4), CPU, torch.float32
    )
    assert found.data.name == "mnist"
    fallback = build(_case(workload="mlp", data_path=str(empty)), CPU, torch.float32)
    assert fallback.data.name == "digits"


def test_data_root_prefers_data_path_then_environment(monkeypatch) -> None:
    monkeypatch.setenv("BENCH_DATA_ROOT", "/env/root")
    assert data.data_root("/given") == Path("/given")
    assert data.data_root(None) == Path("/env/root")
    monkeypatch.delenv("BENCH_DATA_ROOT")
    assert data.data_root(None) == Path(os.path.expanduser("~/.cache/bench/data"))


def test_missing_text_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.txt"
    with pytest.raises(RuntimeError, match="nowhere.txt"):
        build(_case(workload="gpt", data="text", data_path=str(path)), CPU, torch.float32)


def test_text_too_short_for_seq_len_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_bytes(b"x" * 300)  # validation split: 30 bytes < 65 for seq_len 64
    with pytest.raises(RuntimeError, match=r"short\.txt.*seq_len = 64"):
        build(_case(workload="gpt", data="text", data_path=str(path)), CPU, torch.float32)


def test_text_file_trains_on_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "poem.txt"
    path.write_bytes(b"abc" * 1000)
    work = build(_case(workload="gpt", data="text", data_path=str(path)), CPU, torch.float32)
    assert (work.data.name, work.data.num_train, work.data.num_val) == ("text", 2700, 300)
    x, y = work.next_batch()
    # In "abcabc..." the next byte follows from the current one.
    assert torch.equal(y, (x - ord("a") + 1) % 3 + ord("a"))


# --- batches ------------------------------------------------------------------------------------


def test_mlp_epoch_visits_every_training_image_once(digits: data.ImageSplits) -> None:
    work = build(_case(workload="mlp", data="digits", batch_size=479), CPU, torch.float32)  # 1437/3
    labels = torch.cat([work.next_batch()[1] for _ in range(3)])
    assert torch.bincount(labels, minlength=10).tolist() == torch.bincount(digits.y_train).tolist()


def test_mlp_batch_larger_than_digits_draws_with_replacement() -> None:
    with pytest.warns(UserWarning, match="with replacement"):
        work = build(_case(workload="mlp", data="digits", batch_size=2000), CPU, torch.float32)
    x, y = work.next_batch()
    assert x.shape == (2000, 1, 28, 28) and y.shape == (2000,)


def test_gpt_targets_are_inputs_shifted_by_one() -> None:
    work = build(_case(workload="gpt", batch_size=4), CPU, torch.float32)
    x, y = work.next_batch()
    assert x.shape == y.shape == (4, 64) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert (work.samples_per_step, work.tokens_per_step) == (4, 256)


# --- training -----------------------------------------------------------------------------------


def test_mlp_learns_digits() -> None:
    losses, work = _train(_case(workload="mlp", data="digits"), steps=100)
    # Measured: 2.19 -> 0.21 mean loss, 95% validation accuracy (chance: 10%).
    assert mean(losses[-5:]) < 0.5 * mean(losses[:5])
    metrics = work.evaluate(work.model)
    assert metrics["accuracy"] > 0.8
    assert work.model.training  # evaluation restored training mode


def test_gpt_learns_stdlib_source() -> None:
    case = _case(workload="gpt", eval_batches=4)
    losses, work = _train(case, steps=30)
    # Measured: 4.70 -> 3.00 mean loss over 30 steps (uniform guessing: ln 256 = 5.55).
    assert mean(losses[-5:]) < mean(losses[:5]) - 0.5
    metrics = work.evaluate(work.model)
    assert metrics["loss"] < 4.0
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert work.evaluate(work.model) == metrics  # the same fixed windows every time


@pytest.mark.parametrize("workload, chance_loss", [("mlp", math.log(10)), ("gpt", math.log(256))])
def test_synthetic_data_has_nothing_to_learn(workload: str, chance_loss: float) -> None:
    work = build(_case(workload=workload, data="synthetic", eval_batches=4), CPU, torch.float32)
    assert work.data.name == "synthetic"
    assert (
        work.data.sha256
        != build(_case(workload=workload, data="synthetic", seed=1), CPU, torch.float32).data.sha256
    )
    # Random labels: an untrained model scores near chance (measured 2.31 and 5.57).
    assert work.evaluate(work.model)["loss"] == pytest.approx(chance_loss, abs=0.1)


@pytest.mark.parametrize("workload", ["mlp", "gpt"])
def test_bf16_builds_bf16_parameters_and_trains(workload: str) -> None:
    losses, work = _train(_case(workload=workload, precision="bf16"), steps=2, dtype=torch.bfloat16)
    assert {p.dtype for p in work.model.parameters()} == {torch.bfloat16}
    x, _ = work.next_batch()
    assert x.dtype == (torch.bfloat16 if workload == "mlp" else torch.long)
    assert all(math.isfinite(loss) for loss in losses)
