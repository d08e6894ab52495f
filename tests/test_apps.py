"""The application-area workloads: recsys (DLRM on generated clicks), diffusion (DDPM UNet on
digits), hf-gpt2 (transformers from a config): counts, generators, training, FLOPs, the CLI."""

import hashlib
import importlib.util
import json
import math
import sys

import pytest
import torch
from sklearn.metrics import roc_auc_score

from bench.errors import ConfigError, NotApplicable
from bench.measure.flops import count_step_flops
from bench.spec.case import Case
from bench.spec.catalog import GPT_SIZES, RECSYS_SIZES, UNET_SIZES, RecsysSize, num_params
from bench.workloads import diffusion, recsys
from bench.workloads.interface import Workload
from bench.workloads.registry import build
from tests.conftest import write_suite
from tests.helpers import mean, train_steps

CPU = torch.device("cpu")
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


@pytest.fixture(autouse=True)
def one_thread():
    """Two cores shared with other runs: one thread keeps these tests' timing predictable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- models against the catalog -----------------------------------------------------------------


@pytest.mark.parametrize("size", RECSYS_SIZES)
def test_recsys_parameter_count_matches_catalog(size: str) -> None:
    with torch.device("meta"):
        model = recsys.DLRM(RECSYS_SIZES[size], "sum")
    assert sum(p.numel() for p in model.parameters()) == num_params("recsys", size)


def test_recsys_tiny_count_by_hand() -> None:
    # 4 tables x 1000 rows x 8; bottom 13 -> 32 -> 8; top (8 + 5*4/2 = 18) -> 32 -> 1.
    tables = 4 * 1000 * 8
    bottom = (13 * 32 + 32) + (32 * 8 + 8)
    top = (18 * 32 + 32) + (32 * 1 + 1)
    assert num_params("recsys", "tiny") == tables + bottom + top == 33_353


@pytest.mark.parametrize("size", UNET_SIZES)
def test_unet_parameter_count_matches_catalog(size: str) -> None:
    with torch.device("meta"):
        model = diffusion.UNet(UNET_SIZES[size])
    assert sum(p.numel() for p in model.parameters()) == num_params("diffusion", size)


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed (bench[hf])")
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("size", ["tiny", "mini", "small"])
def test_hf_gpt2_parameter_count_matches_catalog(size: str, tied: bool) -> None:
    from bench.workloads import hf

    shape = GPT_SIZES[size]
    with torch.device("meta"):
        model = hf.gpt2(shape, shape.seq_len, tied)
    assert sum(p.numel() for p in model.parameters()) == num_params("hf-gpt2", size, None, tied)


# --- the click-log generator --------------------------------------------------------------------


SHAPE = RecsysSize(num_tables=2, rows=1000, dim=4, hotness=2, bottom=(8,), top=(8,))


def test_clicks_are_deterministic_and_hashed_over_their_tensors() -> None:
    generate = recsys.generate_clicks.__wrapped__  # not the per-process cache
    a, b = generate(SHAPE, 0, 500, 100), generate(SHAPE, 0, 500, 100)
    c = generate(SHAPE, 1, 500, 100)
    assert a.info.sha256 == b.info.sha256 and torch.equal(a.ids, b.ids)
    assert c.info.sha256 != a.info.sha256
    digest = hashlib.sha256()
    for tensor in (a.dense, a.ids, a.labels):
        digest.update(tensor.numpy().tobytes())
    assert a.info.sha256 == digest.hexdigest()
    assert (a.info.name, a.info.num_train, a.info.num_val) == ("clicks", 500, 100)
    assert a.ids.shape == (600, 2, 2) and a.dense.shape == (600, 13)


def test_item_ids_follow_zipf_law() -> None:
    n, rows, s = 200_000, 1000, recsys.ZIPF_EXPONENT
    ids = recsys.zipf_ids(rows, (n,), s, torch.Generator().manual_seed(0))
    counts = torch.bincount(ids, minlength=rows).double()
    harmonic = sum(k**-s for k in range(1, rows + 1))  # H(1000, 1.05), by plain Python
    p_top = 1 / harmonic  # 0.156
    # The top item's share within 4 binomial standard deviations (about 0.003 here).
    assert counts[0] / n == pytest.approx(p_top, abs=4 * math.sqrt(p_top * (1 - p_top) / n))
    # Rank 1 over rank 10: 10^s = 11.2 under Zipf's law; the count of rank 10 is about 2800,
    # so the ratio's relative error is about 2%: 8% is four of them.
    assert float(counts[0] / counts[9]) == pytest.approx(10**s, rel=0.08)
    assert int(ids.min()) == 0 and int(ids.max()) < rows


def test_clicks_depend_on_dense_features_and_items() -> None:
    # An independent learner, scikit-learn's logistic regression, ranks held-out clicks better
    # than chance from the dense features alone, and better still when it also sees which item
    # clusters each bag holds: the labels carry both parts of the hidden model.
    from sklearn.linear_model import LogisticRegression

    log = recsys.generate_clicks.__wrapped__(SHAPE, 0, 20_000, 5_000)
    clusters = torch.nn.functional.one_hot(log.ids % recsys.NUM_CLUSTERS, recsys.NUM_CLUSTERS)
    bags = clusters.sum(dim=2).flatten(1).float()  # (N, tables * 32): cluster counts per bag
    y = log.labels.numpy()

    def held_out_auc(x: torch.Tensor) -> float:
        model = LogisticRegression(max_iter=1000).fit(x[:20_000].numpy(), y[:20_000])
        return roc_auc_score(y[20_000:], model.decision_function(x[20_000:].numpy()))

    dense_only = held_out_auc(log.dense)
    with_items = held_out_auc(torch.cat([log.dense, bags], dim=1))
    assert dense_only > 0.57  # 0.60 here; the held-out AUC's standard error is about 0.01
    assert with_items > dense_only + 0.05  # 0.69 here
    assert 0.2 < float(log.labels.mean()) < 0.45  # offset -1: about a third click


def test_synthetic_clicks_are_uniform_and_unlearnable() -> None:
    log = recsys.synthetic_clicks.__wrapped__(SHAPE, 0, 20_000, 100)
    counts = torch.bincount(log.ids.flatten(), minlength=1000).double()
    # 80,400 uniform draws over 1000 rows: 80.4 each; the top row is far below Zipf's 15.6%.
    assert float(counts.max() / counts.sum()) < 0.003
    assert log.info.name == "synthetic"


def test_auc_matches_sklearn_with_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(2, (500,), generator=generator)
    scores = torch.randint(20, (500,), generator=generator).float() + labels  # many ties
    assert recsys.auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # By hand: positives 0.9 and 0.4, negatives 0.4 and 0.1: pairs (0.9 > 0.4), (0.9 > 0.1),
    # (0.4 = 0.4: one half), (0.4 > 0.1): 3.5 of 4.
    by_hand = recsys.auc(torch.tensor([0.9, 0.4, 0.4, 0.1]), torch.tensor([1, 1, 0, 0]))
    assert by_hand == 3.5 / 4
    assert math.isnan(recsys.auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1])))


# --- real training on the offline data ----------------------------------------------------------


def test_recsys_learns_the_hidden_model() -> None:
    case = Case.from_dict({"workload": "recsys", "model_size": "tiny", "batch_size": 256})
    work = build(case, CPU, torch.float32)
    before = work.evaluate(work.model)
    losses = train_steps(work, 60, lr=1e-2)
    after = work.evaluate(work.model)
    assert mean(losses[-10:]) < mean(losses[:10]) - 0.05
    assert after["loss"] < before["loss"] - 0.05
    assert after["auc"] > 0.65  # a coin flip is 0.5; the Bayes-optimal model about 0.8
    assert set(after) == {"loss", "accuracy", "auc"}


def test_recsys_mean_pooling_divides_the_bag_sum() -> None:
    summed = build(Case.from_dict({"workload": "recsys", "model_size": "tiny"}), CPU, torch.float32)
    mean = build(
        Case.from_dict({"workload": "recsys", "model_size": "tiny", "pooling": "mean"}),
        CPU,
        torch.float32,
    )
    (_, ids), _ = summed.next_batch()
    bag = ids[:, 0]  # (B, 4): the first table's bags
    table_sum, table_mean = summed.model.tables[0], mean.model.tables[0]
    assert torch.equal(table_sum.weight, table_mean.weight)  # same seed, same init
    torch.testing.assert_close(table_mean(bag) * 4, table_sum(bag))


def test_diffusion_learns_to_predict_the_noise() -> None:
    case = Case.from_dict(
        {"workload": "diffusion", "model_size": "tiny", "batch_size": 32, "data": "digits"}
    )
    work = build(case, CPU, torch.float32)
    before = work.evaluate(work.model)
    assert work.evaluate(work.model) == before  # fixed images, time steps and noise
    losses = train_steps(work, 40, lr=3e-3)
    after = work.evaluate(work.model)
    # The untrained UNet is far from the noise (about 1.2); predicting zero would give 1.0.
    assert mean(losses[-10:]) < 0.5 * mean(losses[:10])
    assert after["loss"] < 0.5 and after["loss"] < before["loss"]
    assert work.data.name == "digits"


def test_diffusion_images_are_digits_in_minus_one_to_one_padded_to_32() -> None:
    case = Case.from_dict({"workload": "diffusion", "model_size": "tiny", "data": "digits"})
    x_train, x_val, info = diffusion.load(case)
    assert x_train.shape == (1437, 1, 32, 32) and x_val.shape == (360, 1, 32, 32)
    assert float(x_train.min()) == pytest.approx(-1.0, abs=1e-5)
    assert float(x_train.max()) <= 1.0 + 1e-5
    assert torch.all(x_train[:, :, :2] == -1.0)  # the padding rows are background


def test_noising_follows_the_linear_schedule() -> None:
    abar = diffusion.alpha_bars()
    # By hand: abar_0 = 1 - 1e-4; abar_1 = (1 - 1e-4)(1 - (1e-4 + 0.0199 / 999)).
    assert float(abar[0]) == pytest.approx(1 - 1e-4, rel=1e-12)
    assert float(abar[1]) == pytest.approx((1 - 1e-4) * (1 - (1e-4 + 0.0199 / 999)), rel=1e-12)
    x0, eps = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0)
    t = torch.tensor([999])
    a = float(abar[999])
    expected = math.sqrt(a) + math.sqrt(1 - a) * 2
    assert float(diffusion.noised(x0, t, eps, abar)[0, 0, 0, 0]) == pytest.approx(expected)


# --- FLOPs --------------------------------------------------------------------------------------


def test_recsys_flops_by_hand() -> None:
    case = Case.from_dict({"workload": "recsys", "model_size": "tiny", "batch_size": 64})
    work = build(case, CPU, torch.float32)
    module = _loss_module(work)
    flops = count_step_flops(module, work.next_batch(), torch.autocast("cpu", enabled=False))
    B = 64
    # Forward 2 FLOPs per multiply-add; backward twice that (input and weight gradients), but
    # the first bottom layer needs no input gradient (dense features are data). Lookups: none.
    bottom = 2 * B * 13 * 32 * 2 + 2 * B * 32 * 8 * 3
    dots = 2 * B * 5 * 5 * 8 * 3  # (B, 5, 8) x (B, 8, 5), backward to both operands
    top = 2 * B * 18 * 32 * 3 + 2 * B * 32 * 1 * 3
    assert flops == bottom + dots + top


def test_diffusion_flops_are_three_forwards_less_the_input_gradients() -> None:
    case = Case.from_dict({"workload": "diffusion", "model_size": "tiny", "batch_size": 4})
    work = build(case, CPU, torch.float32)
    batch = work.next_batch()
    # An independent count of the forward: hooks on every conv and linear, by output shape.
    forward: dict[str, int] = {}

    def hook(name):
        def count(module, inputs, output):
            if isinstance(module, torch.nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                forward[name] = 2 * output.numel() * module.in_channels * k
            else:
                forward[name] = 2 * output.numel() * module.in_features

        return count

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in work.model.named_modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    with torch.no_grad():
        work.model(batch[0])
    for handle in handles:
        handle.remove()
    flops = count_step_flops(_loss_module(work), batch, torch.autocast("cpu", enabled=False))
    # Backward: input and weight gradients of each, except the input gradient of the layers fed
    # by data: the image convolution and the first time-embedding linear (sinusoids of t).
    total = sum(forward.values())
    assert flops == 3 * total - forward["inp"] - forward["time_mlp.0"]


def _loss_module(work: Workload) -> torch.nn.Module:
    from bench.worker.prepare import TrainModule

    return TrainModule(work.model, work.loss_fn)


# --- configuration ------------------------------------------------------------------------------


def test_own_objective_workloads_drop_the_classification_loss() -> None:
    case = Case.from_dict({"workload": "recsys", "loss": "focal", "gamma": 1.0})
    assert (case.loss, case.gamma, case.alpha, case.pooling) == (None, None, None, "sum")
    assert case.id == Case.from_dict({"workload": "recsys"}).id  # loss changes nothing there
    diff = Case.from_dict({"workload": "diffusion", "loss": "mse"})
    assert diff.loss is None and diff.pooling is None
    mlp = Case.from_dict({"workload": "mlp", "pooling": "mean"})
    assert (mlp.loss, mlp.pooling) == ("cross-entropy", None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"workload": "recsys", "model_size": "huge"}, "allowed for recsys: tiny, small, base"),
        ({"workload": "recsys", "model_size": "25M"}, "allowed for recsys: tiny, small, base"),
        ({"workload": "diffusion", "data": "clicks"}, "allowed for diffusion: auto, mnist"),
        ({"workload": "recsys", "data": "digits"}, "allowed for recsys: auto, clicks, synthetic"),
        ({"workload": "recsys", "pooling": "max"}, "pooling = 'max': allowed: sum, mean"),
    ],
)
def test_bad_values_are_one_line_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        Case.from_dict(values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_targets_name_the_workloads_eval_keys() -> None:
    case = Case.from_dict({"workload": "recsys", "target_metric": "auc", "target_value": 0.7})
    assert (case.target_metric, case.target_value) == ("auc", 0.7)
    with pytest.raises(ConfigError, match="an AUC: 0 < value <= 1"):
        Case.from_dict({"workload": "recsys", "target_metric": "auc", "target_value": 70})
    with pytest.raises(ConfigError, match="diffusion evaluates: loss"):
        Case.from_dict({"workload": "diffusion", "target_metric": "accuracy", "target_value": 0.9})


def test_hf_without_transformers_is_not_applicable(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # how Python blocks an import
    with pytest.raises(NotApplicable, match=r"pip install 'bench\[hf\]'"):
        build(Case.from_dict({"workload": "hf-gpt2", "model_size": "tiny"}), CPU, torch.float32)


# --- through the CLI ----------------------------------------------------------------------------

APPS_SUITE = """
[suite]
name = "apps"
[base]
model_size = "tiny"
threads = 1
repeats = 1
warmup_steps = 2
min_steps = 5
max_steps = 5
min_time_s = 0.0
[matrix]
workload = ["recsys", "diffusion"]
[[include]]
workload = "diffusion"
data = "digits"
batch_size = 16
"""


def test_bench_run_measures_recsys_and_diffusion(bench, tmp_path) -> None:
    write_suite(tmp_path, "apps", APPS_SUITE)
    result = bench("run", "apps", "--device", "cpu", "--out", "results")
    assert result.returncode == 0, result.stderr
    (records_path,) = (tmp_path / "results" / "apps").glob("*/records.jsonl")
    records = {r["config"]["workload"]: r for r in map(json.loads, records_path.open())}
    assert {w: r["status"] for w, r in records.items()} == {"recsys": "ok", "diffusion": "ok"}
    for record in records.values():
        assert record["config"]["loss"] is None
        assert record["metrics"]["flops"]["per_step"] > 0
        assert record["metrics"]["flops"]["mfu"] > 0
    rec, dif = records["recsys"]["metrics"], records["diffusion"]["metrics"]
    assert set(rec["eval"]) == {"loss", "accuracy", "auc"}
    assert rec["num_params"] == num_params("recsys", "tiny")
    assert records["recsys"]["runtime"]["data"]["name"] == "clicks"
    assert records["recsys"]["config"]["pooling"] == "sum"
    assert set(dif["eval"]) == {"loss"} and dif["num_params"] == num_params("diffusion", "tiny")
    assert records["diffusion"]["runtime"]["data"]["name"] == "digits"


@pytest.mark.skipif(HAS_TRANSFORMERS, reason="checks the run without transformers installed")
def test_bench_run_skips_hf_without_transformers(bench, tmp_path) -> None:
    # The suite's [base] alone, with the workload set there: one case.
    write_suite(tmp_path, "apps", APPS_SUITE.split("[matrix]")[0] + 'workload = "hf-gpt2"\n')
    result = bench("run", "apps", "--device", "cpu", "--out", "results")
    assert result.returncode == 0, result.stderr
    (records_path,) = (tmp_path / "results" / "apps").glob("*/records.jsonl")
    (record,) = map(json.loads, records_path.open())
    assert record["status"] == "skipped"
    assert "pip install 'bench[hf]'" in record["reason"]


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed (bench[hf])")
def test_hf_gpt2_trains_on_the_stdlib_text() -> None:
    case = Case.from_dict({"workload": "hf-gpt2", "model_size": "tiny", "batch_size": 8})
    work = build(case, CPU, torch.float32)
    losses = train_steps(work, 30, lr=3e-3)
    assert mean(losses[-5:]) < mean(losses[:5]) - 0.5  # from ln 256 = 5.5 towards ~3
    assert work.data.name == "stdlib" and work.tokens_per_step == 8 * 64


def test_bench_run_rejects_an_unknown_size(bench, tmp_path) -> None:
    write_suite(tmp_path, "apps", APPS_SUITE.replace('"tiny"', '"huge"'))
    result = bench("run", "apps", "--device", "cpu", "--out", "results")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "model_size = 'huge'" in result.stderr
    assert not (tmp_path / "results").exists()
