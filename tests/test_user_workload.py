"""A workload from the user's own code (docs/WORKLOADS.md): suites, bad input, records."""

import json
import textwrap
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.spec import suite as suites
from bench.spec.case import Case
from tests.conftest import write_suite

# A classifier of 4 classes on 16 features; `hidden` is a workload argument. Its FLOPs per step
# at batch 32 (torch's counter, eager): forward 2*32*(16*h + h*4), the weight gradients as much,
# the input gradient of the second layer 2*32*h*4 (the first layer's input needs none).
MODULE = """
import torch
from torch import nn
from bench.api import Workload, WorkloadContext


class Own(nn.Module):
    def forward(self, x):
        return (x ** 2).mean()


class Net(nn.Sequential):
    # A graph break where the suite asks for one: an .item() in forward, as a user's check of a
    # value would do.

    item_in_forward = False

    def forward(self, x):
        out = super().forward(x)
        if self.item_in_forward and out.abs().max().item() > 1e6:
            raise ValueError("diverged")
        return out


def build(
    ctx: WorkloadContext, hidden: int = 8, classifier: bool = True, item_in_forward: bool = False
) -> Workload:
    model = Net(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, 4))
    model.item_in_forward = item_in_forward
    model = model.to(ctx.device, ctx.dtype)
    g = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(256, 16, generator=g).to(ctx.device, ctx.dtype)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()

    def next_batch():
        i = torch.randint(0, 256, (ctx.batch_size,), device=ctx.device)
        return x[i], y[i]

    def evaluate(m):
        with torch.no_grad():
            return {"hit_rate": (m(x).argmax(1) == y).float().mean().item()}

    return Workload(
        model=model,
        next_batch=next_batch,
        samples_per_step=ctx.batch_size,
        evaluate=evaluate,
        directions={"hit_rate": "max"},
        classifier=classifier,
        loss_fn=None if classifier else (lambda out, y: out.float().pow(2).mean()),
        head="2",
    )


def raises(ctx):
    raise ValueError("the user's own bug")


def not_a_workload(ctx):
    return {"model": None}


NOT_CALLABLE = 3
"""

SUITE = """
[suite]
name = "own"
[base]
workload = "work/model.py:build"
batch_size = 32
threads = 1
repeats = 1
warmup_steps = 1
min_steps = 3
max_steps = 3
min_time_s = 0.0
"""


def project(tmp_path: Path, suite: str = SUITE, module: str = MODULE) -> Path:
    (tmp_path / "work").mkdir(exist_ok=True)
    (tmp_path / "work" / "model.py").write_text(textwrap.dedent(module))
    return write_suite(tmp_path, "own", suite)


def records(tmp_path: Path) -> list[dict]:
    (path,) = tmp_path.glob("results/own/*/records.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_workload_args_are_axes_and_part_of_the_id_but_not_the_directory(tmp_path):
    suite_text = SUITE + "[matrix]\nworkload_args.hidden = [8, 16]\n"
    cases = suites.expand(suites.load(str(project(tmp_path, suite_text))), "cpu")
    assert [case.workload_args for case in cases] == [{"hidden": 8}, {"hidden": 16}]
    assert cases[0].id != cases[1].id
    assert cases[0].workload_root == str(tmp_path.resolve())
    # The same suite elsewhere (bench ab's worktree) makes the same case ids.
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = suites.expand(suites.load(str(project(other, suite_text))), "cpu")
    assert [case.id for case in moved] == [case.id for case in cases]


def test_base_workload_args_table_and_set_override(tmp_path):
    text = SUITE + "[base.workload_args]\nhidden = 12\nclassifier = true\n"
    suite = suites.load(str(project(tmp_path, text)))
    (case,) = suites.expand(suite, "cpu", {"workload_args.hidden": 24})
    assert case.workload_args == {"classifier": True, "hidden": 24}


def test_user_workload_defaults():
    case = Case.from_dict({"workload": "model.py:build"})
    # No named sizes, the batch of 64, and the loss left to the workload (cross-entropy on a
    # classifier's scores, its own loss otherwise).
    assert (case.model_size, case.batch_size, case.loss) == (None, 64, None)
    with pytest.raises(ConfigError, match="workload_args are for your own"):
        Case.from_dict({"workload": "mlp", "workload_args": {"hidden": 3}})


@pytest.mark.parametrize(
    ("workload", "args", "message"),
    [
        ("work/missing.py:build", "", "no such file"),
        ("work/model.py:nothing", "", "has no 'nothing' (its functions: build, not_a_workload"),
        ("work/model.py:NOT_CALLABLE", "", "work/model.py:NOT_CALLABLE is a int, not a function"),
        ("work/model.py:build", "[base.workload_args]\nwidth = 3\n", "workload_args.width: the"),
        ("work/broken.py:build", "", "cannot import"),
        ("nosuchpackage.models:build", "", "ModuleNotFoundError: No module named 'nosuchpackage'"),
    ],
)
def test_bad_workload_is_one_line_exit_2_nothing_written(bench, tmp_path, workload, args, message):
    suite = project(tmp_path, SUITE.replace("work/model.py:build", workload) + args)
    (tmp_path / "work" / "broken.py").write_text("import torch\nraise ImportError('no cuda')\n")
    done = bench("run", str(suite))
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("bench: error: ") and message in line, line
    if "broken" in workload:
        assert "ImportError: no cuda" in line  # the user's own error, first line
    assert not (tmp_path / "results").exists()


def test_raising_or_wrong_return_is_an_error_record_and_the_sweep_goes_on(bench, tmp_path):
    text = SUITE + '[matrix]\nworkload = ["work/model.py:raises", "work/model.py:not_a_workload"]\n'
    done = bench("run", str(project(tmp_path, text)))
    assert done.returncode == 1, done.stderr
    raised, wrong = records(tmp_path)
    assert raised["status"] == "error" and "ValueError: the user's own bug" in raised["reason"]
    assert "model.py" in raised["reason"]  # the tail of the user's traceback
    assert wrong["status"] == "error"
    assert "returned builtins.dict, not a bench.api.Workload" in wrong["reason"]


def test_a_user_classifier_trains_records_its_source_and_flops(bench, tmp_path):
    text = SUITE + (
        '[matrix]\nloss = ["cross-entropy", "mse"]\n[base.workload_args]\nhidden = 8\n'
        '[[include]]\nloss = "cross-entropy"\ntarget_metric = "hit_rate"\ntarget_value = 0.01\n'
    )
    done = bench("run", str(project(tmp_path, text)))
    assert done.returncode == 0, done.stderr
    ce, mse = records(tmp_path)
    source = ce["runtime"]["workload"]
    module = tmp_path / "work" / "model.py"
    import hashlib

    assert source == {
        "spec": "work/model.py:build",
        "args": {"hidden": 8},
        "path": str(module.resolve()),
        "sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
    }
    assert (ce["runtime"]["loss"], mse["runtime"]["loss"]) == ("cross-entropy", "mse")
    h = 8
    assert ce["metrics"]["flops"]["per_step"] == 2 * 32 * (16 * h + h * 4) * 2 + 2 * 32 * h * 4
    # The user's metric with the user's direction: 0.01 of hit rate is met at the first check.
    assert ce["metrics"]["target"]["reached"] is True
    assert "hit_rate" in ce["metrics"]["eval"]


def test_loss_on_a_workload_that_is_no_classifier_is_skipped(bench, tmp_path):
    text = SUITE + (
        "[base.workload_args]\nclassifier = false\n"
        '[[include]]\nloss = "mse"\n[[include]]\nseed = 1\n'
    )
    done = bench("run", str(project(tmp_path, text)))
    assert done.returncode == 0, done.stderr
    by_loss = {r["config"]["loss"]: r for r in records(tmp_path)}
    assert by_loss["mse"]["status"] == "skipped"
    assert "is no classifier" in by_loss["mse"]["reason"]
    assert by_loss[None]["status"] == "ok" and by_loss[None]["runtime"]["loss"] == "own"


def test_env_names_the_suites_repository(bench, tmp_path):
    import subprocess

    suite = project(tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "work"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
        ],
        check=True,
    )
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert bench("run", str(suite)).returncode == 0
    (env_path,) = tmp_path.glob("results/own/*/env.json")
    env = json.loads(env_path.read_text())
    assert env["git"]["commit"] == head
    assert env["git"]["dirty"] is False  # the suite file is untracked, the module committed
    assert {"torch", "torchvision", "timm", "transformers", "peft"} <= set(env["packages"])


def test_the_docs_example_runs_as_written(bench, tmp_path):
    """docs/WORKLOADS.md's suite and module, as a user copies them (the axes cut to one case)."""
    text = (Path(__file__).parent.parent / "docs" / "WORKLOADS.md").read_text()
    toml_block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    python_block = text.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "model.py").write_text(python_block)
    suite = tmp_path / "suite.toml"
    suite.write_text(toml_block + "[device.cpu]\nrepeats = 1\nmin_steps = 3\nmax_steps = 3\n")
    done = bench(
        "run",
        str(suite),
        "--set",
        "compile=eager",
        "--set",
        "precision=fp32",
        "--set",
        "min_time_s=0",
        "--set",
        "warmup_steps=1",
    )
    assert done.returncode == 0, done.stderr
    (path,) = tmp_path.glob("results/*/*/records.jsonl")
    got = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["config"]["workload_args"] for r in got] == [
        {"depth": 1, "hidden": 64},
        {"depth": 2, "hidden": 64},
    ]
    assert all(r["status"] == "ok" and "hit_rate" in r["metrics"]["eval"] for r in got)


def test_tutorial_copied_alone_counts_the_hand_flops(bench, tmp_path):
    """examples/tutorial.* in an empty directory: the tutorial's Net at batch 64 does, per
    forward and backward, 2*64*(784*512 + 512*256 + 256*10) forward, as much for the weight
    gradients, and 2*64*(512*256 + 256*10) for the input gradients of fc2 and fc3 (fc1's input
    needs none): 154,075,136. lbfgs evaluates the model several times per step."""
    examples = Path(__file__).parent.parent / "examples"
    for name in ("tutorial.py", "tutorial.toml"):
        (tmp_path / name).write_bytes((examples / name).read_bytes())
    forward = 2 * 64 * (784 * 512 + 512 * 256 + 256 * 10)
    per_evaluation = 2 * forward + 2 * 64 * (512 * 256 + 256 * 10)
    assert per_evaluation == 154_075_136
    done = bench(
        "run",
        "tutorial.toml",
        "--set",
        "compile=eager",
        "--set",
        "precision=fp32",
        "--set",
        "loss=cross-entropy",
        "--set",
        'optimizer=["sgd", "lbfgs"]',
    )
    assert done.returncode == 0, done.stderr
    (path,) = tmp_path.glob("results/tutorial/*/records.jsonl")
    sgd, lbfgs = [json.loads(line) for line in path.read_text().splitlines()]
    assert sgd["status"] == lbfgs["status"] == "ok"
    assert sgd["metrics"]["flops"]["per_step"] == per_evaluation
    evals = lbfgs["metrics"]["optimizer"]["function_evals_per_step"]
    assert evals >= 1
    assert lbfgs["metrics"]["flops"]["per_step"] == pytest.approx(per_evaluation * evals)
    assert sgd["runtime"]["data"]["name"] in ("mnist", "digits")


def test_importing_the_api_starts_nothing(tmp_path):
    import subprocess
    import sys

    code = (
        "import psutil, torch; threads = torch.get_num_threads(); import bench.api; "
        "assert psutil.Process().children() == [], psutil.Process().children(); "
        "assert torch.get_num_threads() == threads; print(sorted(bench.api.__all__))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "['DataInfo', 'Workload', 'WorkloadContext', 'run_cases']"


def test_run_cases_from_python_returns_the_records(tmp_path, monkeypatch, bench_env):
    from bench.api import run_cases

    for key in ("TORCHINDUCTOR_CACHE_DIR", "BENCH_CACHE_DIR"):
        monkeypatch.setenv(key, bench_env[key])
    project(tmp_path)
    monkeypatch.chdir(tmp_path)
    settings = {"workload": "work/model.py:build", "batch_size": 32, "repeats": 2, "threads": 1}
    settings |= {"warmup_steps": 1, "min_steps": 3, "max_steps": 3, "min_time_s": 0.0}
    got = run_cases(settings, out=tmp_path / "out")
    assert [(r["status"], r["repeat"]) for r in got] == [("ok", 0), ("ok", 1)]
    assert [len(r["samples"]["step_time_s"]) for r in got] == [3, 3]
    assert list((tmp_path / "out" / "python").glob("*/records.jsonl"))


AXES = """
[[include]]
compile = "default"
compile_scope = "step"
workload_args.item_in_forward = true
[[include]]
batch_size = "max"
max_batch_limit = 128
[[include]]
finetune = "frozen"
[[include]]
finetune = "lora"
lora_rank = 2
[[include]]
nproc = 2
strategy = "fsdp"
[[include]]
lr_schedule = "warmup-cosine"
optimizer = "sgd-momentum"
[[include]]
precision = "amp-fp16"
"""


def test_every_axis_runs_on_a_user_workload(bench, tmp_path):
    done = bench("run", str(project(tmp_path, SUITE + AXES)), timeout=900)
    assert done.returncode == 0, done.stderr
    got = [r for r in records(tmp_path) if "max_batch_probe" not in r["flags"]]
    assert [r["status"] for r in got] == ["ok"] * 7, [r["reason"] for r in got]
    step, maxb, frozen, lora, fsdp, schedule, amp = got
    compiled = step["runtime"]["compile"]
    assert compiled["scope"] == "step"
    # The .item() in forward: a graph break with dynamo's own reason, counted, in the record
    # and in the report's compile view.
    (reason,) = [r for r in compiled["graph_break_counts"] if "item()" in r]
    assert compiled["graph_break_counts"][reason] >= 1 and compiled["num_graphs"] >= 2
    reported = bench("report", "--out", "rep")
    assert reported.returncode == 0, reported.stderr
    page = (tmp_path / "rep" / "report.md").read_text()
    assert "compilation: graphs, graph breaks and recompiles" in page and reason in page
    assert maxb["metrics"]["max_batch_size"] == 128  # the search's limit: the model is tiny
    # hidden = 8: the head Linear(8, 4) alone trains when frozen; LoRA adds r (in + out) per
    # adapted layer, the first Linear(16, 8) only (the head is left out): 2 * (16 + 8) = 48.
    assert frozen["metrics"]["trainable_params"] == 8 * 4 + 4
    assert lora["runtime"]["finetune"]["adapter_params"] == 2 * (16 + 8)
    assert fsdp["runtime"]["distributed"]["world_size"] == 2
    assert schedule["metrics"]["optimizer"]["final_lr"] < 0.01  # decayed from sgd's 0.01
    assert amp["runtime"]["grad_scaler"] is True
