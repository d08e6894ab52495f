"""bench ab in the user's own repository (docs/GATING.md): a git repository outside this project
with a suite and a workload module; bench comes from its installation (here PYTHONPATH), the
workload module from each side's tree."""

import json
import subprocess
import sys
import textwrap

import pytest

MODEL = """
import torch
from torch import nn

from bench.api import Workload, WorkloadContext


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 4)

    def forward(self, x):
        # forward pass
        return self.fc2(torch.relu(self.fc1(x)))


def build(ctx: WorkloadContext) -> Workload:
    x = torch.randn(256, 32).to(ctx.device, ctx.dtype)
    y = torch.randint(0, 4, (256,), device=ctx.device)

    def next_batch():
        i = torch.randint(0, 256, (ctx.batch_size,), device=ctx.device)
        return x[i], y[i]

    return Workload(model=Net().to(ctx.device, ctx.dtype), next_batch=next_batch,
                    samples_per_step=ctx.batch_size)
"""

SUITE = """
[suite]
name = "train"
[base]
workload = "../src/model.py:build"
batch_size = 16
threads = 1
repeats = 2
warmup_steps = 3
min_steps = 30
max_steps = 30
min_time_s = 0.0
"""

# The candidate's forward sleeps 20 ms: a real slowdown of the user's model.
SLOWER = MODEL.replace(
    "        # forward pass\n",
    "        import time\n        time.sleep(0.020)\n",
)
COMMENT_ONLY = MODEL.replace("# forward pass", "# forward pass: two linear layers and a ReLU")


def git(repo, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run([*command, *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def user_repo(tmp_path):
    repo = tmp_path / "user-repo"
    (repo / "src").mkdir(parents=True)
    (repo / "suites").mkdir()
    (repo / "src" / "model.py").write_text(MODEL)
    (repo / "suites" / "train.toml").write_text(textwrap.dedent(SUITE))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def ab(repo, bench_env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", "ab", "suites/train.toml", "--base-ref", "HEAD~1"]
        + ["--device", "cpu", "--json", "verdicts.json"],
        cwd=repo,
        env=bench_env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize(("candidate", "regressed"), [(SLOWER, True), (COMMENT_ONLY, False)])
def test_ab_in_the_users_repository(user_repo, bench_env, candidate, regressed):
    (user_repo / "src" / "model.py").write_text(candidate)
    git(user_repo, "commit", "-q", "-am", "candidate")
    done = ab(user_repo, bench_env)
    output = done.stdout + done.stderr
    verdicts = json.loads((user_repo / "verdicts.json").read_text())
    print(output)  # the verdicts and their intervals, for the record
    (case,) = verdicts["cases"]
    if regressed:
        assert done.returncode == 1, output
        assert case["verdict"] == "regressed"
        step = next(m for m in case["metrics"] if m["metric"] == "step_time")
        assert step["ci_low"] > 1.05  # the whole interval beyond the threshold
    else:
        # A comment changes no step: never regressed (a noisy machine may leave it
        # inconclusive, which passes the gate).
        assert done.returncode == 0, output
        assert case["verdict"] != "regressed"
    (job,) = (user_repo / "results" / "ab" / "train").iterdir()
    sha = {}
    for side in ("base", "cand"):
        records = [json.loads(line) for line in (job / side / "records.jsonl").open()]
        assert {r["status"] for r in records} == {"ok"}
        sha[side] = records[0]["runtime"]["workload"]["sha256"]
    assert sha["base"] != sha["cand"]  # each side imported its own tree's model.py


def test_a_setting_of_one_side_only_compares_the_same_code_with_and_without_it(
    user_repo, bench_env
):
    # The profiled case and its unprofiled twin, interleaved: profile_steps runs after the
    # window, so it must not change the window's steps (never regressed; the figures measured
    # on a quiet core are in docs/METHOD.md, Profiles).
    argv = [sys.executable, "-m", "bench.cli", "ab", "suites/train.toml", "--base-ref", "HEAD"]
    argv += ["--device", "cpu", "--cand-set", "profile_steps=2", "--json", "verdicts.json"]
    done = subprocess.run(argv, cwd=user_repo, env=bench_env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    (case,) = json.loads((user_repo / "verdicts.json").read_text())["cases"]
    assert case["verdict"] != "regressed"
    (job,) = (user_repo / "results" / "ab" / "train").iterdir()
    profiles = {}
    for side in ("base", "cand"):
        records = [json.loads(line) for line in (job / side / "records.jsonl").open()]
        profiles[side] = [r["metrics"]["profile"] for r in records]
        assert [len(r["samples"]["step_time_s"]) for r in records] == [30, 30]  # the window
        run = json.loads((job / side / "run.json").read_text())
        assert run["ab"]["side_settings"] == {"base": [], "cand": ["profile_steps=2"]}
    assert profiles["base"] == [None, None]
    assert [p["num_steps"] for p in profiles["cand"]] == [2, 2]
    # A setting that changes the case id leaves the sides nothing to compare: one line, exit 2.
    argv[argv.index("profile_steps=2")] = "compile=default"
    bad = subprocess.run(argv, cwd=user_repo, env=bench_env, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("bench: error: --cand-set compile: only a run-length setting")
    assert len(bad.stderr.splitlines()) == 1
