"""Distributed cases on real processes: two gloo ranks on the CPU through torchrun's agent, DDP
and FSDP2 training real steps, the merged record, a rank that raises, dies or hangs, and the
submitit executor. Failures are injected from outside bench: a ``sitecustomize`` module on the
PYTHONPATH patches optimizers' steps to fail on rank 1 only."""

import json
import math
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import write_suite

from bench.errors import ConfigError
from bench.spec import suite as suites
from bench.spec.case import Case
from bench.worker import rank_merge
from bench.workloads import mlp

TINY_DIST = """
[suite]
name = "dist"
[base]
workload = "mlp"
model_size = "tiny"
data = "digits"
threads = 1
repeats = 1
warmup_steps = 3
min_steps = 30
max_steps = 30
min_time_s = 0.0
timeout_s = 120
"""


def records_of(results: Path, suite: str) -> list[dict]:
    (run_dir,) = (results / suite).iterdir()
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def test_ddp_and_fsdp_ranks_train_and_merge_into_one_record(tmp_path, bench):
    path = write_suite(
        tmp_path, "dist", TINY_DIST + '[matrix]\nnproc = [2]\nstrategy = ["ddp", "fsdp"]\n'
    )
    done = bench("run", str(path), "--out", "res", "--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    ddp, fsdp = records_of(tmp_path / "res", "dist")
    assert (ddp["config"]["strategy"], fsdp["config"]["strategy"]) == ("ddp", "fsdp")
    # The weights every rank starts from are rank 0's, which are a one-process case's: built
    # here from the same seed, independently of the ranks.
    case = Case.from_dict({"model_size": "tiny", "data": "digits"})
    torch.manual_seed(case.seed)
    reference = mlp.build(case, torch.device("cpu"), torch.float32).model
    start = sum(p.detach().double().sum().item() for p in reference.parameters())
    for record in (ddp, fsdp):
        assert record["status"] == "ok", record["reason"]
        metrics, samples = record["metrics"], record["samples"]
        ranks = metrics["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1]
        assert [r["local_rank"] for r in ranks] == [0, 1]
        # Real training: the weights moved, identically on both ranks (DDP's all-reduce, or
        # FSDP's shards gathered), from the same start.
        for rank in ranks:
            assert rank["param_checksum_start"] == pytest.approx(start, rel=1e-12)
        assert ranks[0]["param_checksum_end"] == ranks[1]["param_checksum_end"]
        assert ranks[0]["param_checksum_end"] != pytest.approx(start, rel=1e-6)
        losses = [loss for _, loss in samples["loss"]]
        assert all(math.isfinite(loss) for loss in losses)
        # Untrained, the 10-class loss is about ln 10 = 2.30 on held-out digits.
        assert metrics["eval"]["loss"] < 2.0 and metrics["eval"]["accuracy"] > 0.4
        # The merge, by hand from the ranks' own figures.
        medians = [r["step_time_s"]["median"] for r in ranks]
        assert metrics["samples_per_s"] == pytest.approx(sum(64 / m for m in medians))
        assert [r["samples_per_s"] for r in ranks] == pytest.approx([64 / m for m in medians])
        slowest = medians.index(max(medians))
        assert metrics["slowest_rank"] == slowest
        assert metrics["step_time_s"] == ranks[slowest]["step_time_s"]
        assert samples["step_time_s"] == samples["rank_step_time_s"][slowest]
        assert statistics.median(samples["step_time_s"]) == pytest.approx(max(medians))
        assert [len(t) for t in samples["rank_step_time_s"]] == [30, 30]  # the same window
        assert metrics["peak_rss_bytes"] == max(r["peak_rss_bytes"] for r in ranks)
        assert metrics["final_train_loss"] == pytest.approx(
            (ranks[0]["final_train_loss"] + ranks[1]["final_train_loss"]) / 2
        )
        distributed = record["runtime"]["distributed"]
        assert distributed["world_size"] == 2 and distributed["backend"] == "gloo"
        assert distributed["threads_per_rank"] == [1, 1]
    # FSDP computes DDP's update (mean gradient, elementwise AdamW) on shards.
    assert fsdp["metrics"]["ranks"][0]["param_checksum_end"] == pytest.approx(
        ddp["metrics"]["ranks"][0]["param_checksum_end"], rel=1e-9
    )
    # FSDP keeps half of AdamW's two moments per rank (tiny mlp: 52,650 parameters, 4 bytes).
    assert ddp["metrics"]["optimizer"]["state_bytes"] >= 2 * 4 * 52_650
    assert fsdp["metrics"]["optimizer"]["state_bytes"] < 0.6 * 2 * 4 * 52_650


FAULTS = """
import os
import signal
import time

import torch.optim


def fault(cls, act):
    original = cls.step
    calls = [0]

    def step(self, *args, **kwargs):
        # RANK is set in a rank only (the ranks are forked from bench's fork server, which
        # imported this module before any rank existed).
        if os.environ.get("RANK") == "1":
            calls[0] += 1
            if calls[0] == 3:
                act()
        return original(self, *args, **kwargs)

    cls.step = step


def raise_():
    raise RuntimeError("injected failure on rank 1")


fault(torch.optim.AdamW, raise_)
fault(torch.optim.Adam, lambda: os.kill(os.getpid(), signal.SIGKILL))
fault(torch.optim.SGD, lambda: time.sleep(3600))
fault(torch.optim.RMSprop, lambda: os._exit(3))
"""


def test_a_rank_that_raises_dies_or_hangs_is_a_record_and_the_sweep_goes_on(
    tmp_path, bench, bench_env
):
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(textwrap.dedent(FAULTS))
    bench_env["PYTHONPATH"] = f"{faults}:{bench_env.get('PYTHONPATH', '')}"
    timeout_s = 15
    path = write_suite(
        tmp_path,
        "dist",
        TINY_DIST
        + f"""
[[include]]
optimizer = "adamw"
nproc = 2
[[include]]
optimizer = "adam"
nproc = 2
[[include]]
optimizer = "sgd"
nproc = 2
timeout_s = {timeout_s}
[[include]]
optimizer = "rmsprop"
nproc = 2
[[include]]
optimizer = "sgd"
nproc = 1
""",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(path), "--out", "res", "--device", "cpu"],
        cwd=tmp_path,
        env=bench_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr, family = watch(process)
    assert process.returncode == 1, stdout + stderr  # crashes and a hang: failures
    raised, killed, hung, exited, after = records_of(tmp_path / "res", "dist")
    assert raised["status"] == "error"
    assert raised["reason"].startswith("rank 1 of 2 failed first")
    assert raised["reason"].endswith("RuntimeError: injected failure on rank 1")
    assert killed["status"] == "error"
    assert killed["reason"].startswith("rank 1 of 2 died")
    assert hung["status"] == "timeout"
    assert hung["reason"].startswith(f"killed after timeout_s = {timeout_s} s with 2 ranks")
    assert "\nrank 0: " in hung["reason"] and "\nrank 1: " in hung["reason"]
    assert timeout_s <= hung["timing"]["wall_s"] < timeout_s + 10
    assert exited["status"] == "error"
    # The agent names rank 1's exit code when it sees rank 1 end first; when it sees rank 0's
    # lost peer first, it never learns the code, and the reason must not claim a signal.
    assert exited["reason"].startswith(("rank 1 of 2 died: exit code 3\n", "rank 1 of 2 died "))
    assert "died: exit code 3" in exited["reason"] or "an exit code or a signal" in exited["reason"]
    assert after["status"] == "ok", after["reason"]
    # Nothing of the failed cases runs on: every agent and rank bench had was reaped (and the
    # fork server left with bench).
    assert len(family) >= 4
    _, alive = psutil.wait_procs(list(family), timeout=5)
    assert alive == [], [p.cmdline() for p in alive]


def watch(process: subprocess.Popen, timeout: float = 300) -> tuple[str, str, set]:
    """Wait for ``process``; its output and every descendant it had while it ran (fork server,
    agents, ranks: all forked, so their command lines do not name the run)."""
    family: set = set()
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        assert time.monotonic() < deadline, "bench did not finish"
        try:
            family.update(psutil.Process(process.pid).children(recursive=True))
        except psutil.Error:
            pass
        time.sleep(0.1)
    stdout, stderr = process.communicate()
    return stdout, stderr, family


HANG = """
import time

import torch.optim

original = torch.optim.SGD.step
calls = [0]


def step(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == 3:
        print("third step: sleeping", flush=True)
        time.sleep(3600)
    return original(self, *args, **kwargs)


torch.optim.SGD.step = step
"""


def test_a_sigkilled_bench_leaves_no_case_running(tmp_path, bench_env):
    """SIGKILL cannot be handled: the fork server and the case's process must see the launcher
    go by themselves (EOF on the fork server's alive pipe, then PDEATHSIG)."""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(HANG)
    bench_env["PYTHONPATH"] = f"{faults}:{bench_env.get('PYTHONPATH', '')}"
    path = write_suite(tmp_path, "dist", TINY_DIST + 'optimizer = "sgd"\n')
    with open(tmp_path / "out.txt", "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.cli", "run", str(path), "--out", "res"],
            cwd=tmp_path,
            env=bench_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while not any("sleeping" in p.read_text() for p in tmp_path.glob("res/*/*/logs/*.log")):
        assert process.poll() is None, (tmp_path / "out.txt").read_text()
        assert time.monotonic() < deadline, "the case did not start"
        time.sleep(0.1)
    family = psutil.Process(process.pid).children(recursive=True)
    assert len(family) >= 2  # the fork server, the case
    process.kill()
    process.wait()
    _, alive = psutil.wait_procs(family, timeout=10)
    for left in alive:
        left.kill()
    assert alive == [], [p.pid for p in alive]


def test_submitit_executor_gathers_every_job_into_one_run(tmp_path, bench):
    path = write_suite(tmp_path, "dist", TINY_DIST + "[matrix]\nnproc = [1, 2]\n")
    executor = ("--executor", "submitit-local")
    done = bench("run", str(path), "--out", "res", "--device", "cpu", *executor)
    assert done.returncode == 0, done.stdout + done.stderr
    one, two = records_of(tmp_path / "res", "dist")
    assert (one["config"]["nproc"], two["config"]["nproc"]) == (1, 2)
    assert one["status"] == two["status"] == "ok"
    assert len(two["metrics"]["ranks"]) == 2
    (run_dir,) = (tmp_path / "res" / "dist").iterdir()
    env = json.loads((run_dir / "env.json").read_text())
    assert env["torch"] == torch.__version__  # written from a job's own environment
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["executor"] == "submitit-local"
    # submitit kept each job's pickled result and its output in the run directory.
    assert len(list((run_dir / "submitit").glob("*_result.pkl"))) == 2


# Validation and pure parts: no processes.


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nproc": 0}, "nproc = 0: must be a positive integer"),
        ({"nnodes": -1}, "nnodes = -1: must be a positive integer"),
        ({"nproc": 2, "strategy": "zero"}, "strategy = 'zero': allowed: ddp, fsdp"),
        ({"nproc": 2, "batch_size": "max"}, "batch_size = 'max': 'max' probes one process"),
    ],
)
def test_bad_distributed_settings_are_config_errors(values, message):
    with pytest.raises(ConfigError) as error:
        Case.from_dict(values)
    assert str(error.value).startswith(message)


def test_strategy_applies_only_with_more_than_one_rank():
    assert Case.from_dict({"strategy": "fsdp"}).strategy is None
    assert Case.from_dict({"nproc": 2}).strategy == "ddp"
    assert Case.from_dict({"nnodes": 2}).strategy == "ddp"
    assert Case.from_dict({"nproc": 2}).world_size == 2
    one, two = Case.from_dict({}), Case.from_dict({"nproc": 2})
    assert one.id == Case.from_dict({"strategy": "ddp"}).id  # no effect, no new case
    assert one.id != two.id


def test_what_fsdp_cannot_do_is_skipped_with_the_reason():
    case = Case.from_dict({"nproc": 2, "strategy": "fsdp", "optimizer": "lbfgs"})
    assert "fsdp shards parameters" in case.skip_reason()
    ddp = Case.from_dict({"nproc": 2, "strategy": "ddp", "optimizer": "lbfgs"})
    assert ddp.skip_reason() is None
    fp16 = Case.from_dict({"nproc": 2, "strategy": "fsdp", "precision": "amp-fp16"})
    assert "use amp-bf16 with fsdp" in fp16.skip_reason()
    step = Case.from_dict({"nproc": 2, "compile": "default", "compile_scope": "step"})
    assert "compiled whole step" in step.skip_reason()
    finetune = Case.from_dict({"nproc": 2, "finetune": "lora", "data": "digits"})
    assert finetune.skip_reason().startswith("fine-tuning runs in one process")


def test_multi_node_needs_an_endpoint_and_a_node_rank_below_nnodes(tmp_path, bench):
    path = write_suite(tmp_path, "dist", TINY_DIST + "nnodes = 2\n")
    no_endpoint = bench("run", str(path), "--device", "cpu", "--dry-run")
    assert no_endpoint.returncode == 2
    assert "nnodes = 2: give --rdzv-endpoint HOST:PORT" in no_endpoint.stderr
    bad_rank = bench(
        "run", str(path), "--device", "cpu", "--dry-run",
        "--rdzv-endpoint", "node0:29500", "--rdzv-backend", "static", "--node-rank", "2",
    )  # fmt: skip
    assert bad_rank.returncode == 2 and "--node-rank 2: must be below nnodes = 2" in bad_rank.stderr
    slurm_here = bench("run", str(path), "--device", "cpu", "--slurm-partition", "gpu")
    assert slurm_here.returncode == 2
    assert "--slurm-partition: only with --executor slurm" in slurm_here.stderr
    no_cluster = bench("run", str(path), "--device", "cpu", "--executor", "slurm")
    assert no_cluster.returncode == 2 and "--executor slurm: no srun" in no_cluster.stderr
    assert not (tmp_path / "results").exists()


def test_nodes_that_never_meet_are_an_error_of_the_rendezvous(tmp_path, bench):
    """Node 1 never comes: node 0's agent gives up after half of timeout_s (the rendezvous
    timeout), an error that says so, not a hang killed at timeout_s."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = write_suite(tmp_path, "dist", TINY_DIST.replace("120", "16") + "nnodes = 2\n")
    alone = bench(
        "run", str(path), "--out", "res", "--device", "cpu", "--rdzv-endpoint",
        f"127.0.0.1:{port}", "--rdzv-backend", "static", "--node-rank", "0",
    )  # fmt: skip
    assert alone.returncode == 1, alone.stdout + alone.stderr
    (record,) = records_of(tmp_path / "res", "dist")
    assert record["status"] == "error", record["reason"]
    assert record["reason"].startswith("torchrun's agent failed on this node")
    assert 8 <= record["timing"]["wall_s"] < 16


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--executor", "submitit-local", "--slurm-partition", "gpu"],
            "--slurm-partition: only with --executor slurm",
        ),
        (["--slurm-time", "29500"], "--slurm-time: only with --executor slurm or submitit-local"),
        (
            ["--rdzv-endpoint", "node0:29500", "--node-rank", "0"],
            "--node-rank 0: only with --rdzv-backend static",
        ),
        (["--rdzv-endpoint", "node0:0"], "--rdzv-endpoint 'node0:0': give HOST:PORT with a port"),
        (["--rdzv-endpoint", "node0:99999"], "--rdzv-endpoint 'node0:99999': give HOST:PORT"),
        (
            ["--executor", "submitit-local", "--slurm-rdzv-port", "-5"],
            "--slurm-rdzv-port -5: a port is 1 to 65535",
        ),
    ],
)
def test_options_that_would_be_ignored_or_are_malformed_are_errors(
    tmp_path, bench, options, message
):
    path = write_suite(tmp_path, "dist", TINY_DIST + "nnodes = 2\n")
    done = bench("run", str(path), "--device", "cpu", "--dry-run", *options)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"bench: error: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # no warning before it, no traceback


def test_two_nodes_meet_and_each_records_the_merged_case(tmp_path, bench_env):
    """Two ``bench run`` processes as two nodes of one machine, as docs/DISTRIBUTED.md's worked
    example runs them on two hosts: a static rendezvous at node 0's port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = write_suite(tmp_path, "dist", TINY_DIST + "nnodes = 2\n")
    nodes = []
    for node_rank in (0, 1):
        out = tmp_path / f"node{node_rank}"
        args = ["run", str(path), "--out", str(out), "--device", "cpu"]
        args += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-backend", "static"]
        args += ["--node-rank", str(node_rank)]
        nodes.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.cli", *args],
                cwd=tmp_path,
                env=bench_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    (first,), (second,) = (records_of(tmp_path / f"node{n}", "dist") for n in (0, 1))
    for record in (first, second):
        assert record["status"] == "ok", record["reason"]
        assert record["config"]["nnodes"] == 2 and record["config"]["strategy"] == "ddp"
        assert record["runtime"]["distributed"]["world_size"] == 2
        assert [r["rank"] for r in record["metrics"]["ranks"]] == [0, 1]
    # One case measured once: both nodes hold the same merged figures.
    assert first["case_id"] == second["case_id"]
    assert first["metrics"]["samples_per_s"] == second["metrics"]["samples_per_s"]
    assert first["samples"]["rank_step_time_s"] == second["samples"]["rank_step_time_s"]
    ranks = first["metrics"]["ranks"]
    assert ranks[0]["param_checksum_end"] == ranks[1]["param_checksum_end"]


SHARED_NODE = """
import json, sys
from pathlib import Path
from bench.spec.case import Case
from bench.run.executors import Launcher, run_job
from bench.run.launcher import Job
from bench.run.torchrun import Placement

if __name__ == "__main__":  # the fork server imports this module too
    case = Case.from_dict(json.loads(sys.argv[3]))
    launcher = Launcher(Path("shared"), Placement(sys.argv[2], "static", int(sys.argv[1])))
    print(json.dumps(run_job(launcher, Job(case, 0), lambda *a: None)))
"""


def test_nodes_sharing_a_run_directory_keep_their_own_result_and_log(tmp_path, bench_env):
    """A Slurm job's nodes run the launcher in one run directory on shared storage (as
    executors.node_job does): each node's result and log are its own."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "shared" / "logs").mkdir(parents=True)
    (tmp_path / "node.py").write_text(SHARED_NODE)
    values = {"model_size": "tiny", "data": "digits", "nnodes": 2, "threads": 1,
              "warmup_steps": 2, "min_steps": 10, "max_steps": 10, "min_time_s": 0.0,
              "timeout_s": 120, "device": "cpu"}  # fmt: skip
    nodes = [
        subprocess.Popen(
            [sys.executable, "node.py", str(n), f"127.0.0.1:{port}", json.dumps(values)],
            cwd=tmp_path,
            env=bench_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (0, 1)
    ]
    outputs = [node.communicate(timeout=240) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert [r["status"] for r in results] == ["ok", "ok"], [r.get("reason") for r in results]
    name = f"{Case.from_dict(values).id}-r0"
    logs = tmp_path / "shared" / "logs"
    assert sorted(p.name for p in logs.glob(f"{name}.node*.log")) == [
        f"{name}.node0.log",
        f"{name}.node1.log",
    ]
    assert results[0]["metrics"]["samples_per_s"] == results[1]["metrics"]["samples_per_s"]
    assert not list(logs.glob("*.result.json*"))  # each node read and removed its own


def _rank(rank: int, median: float, rss: int, loss: float, times: list[float]) -> dict:
    return {
        "status": "ok",
        "reason": None,
        "rank": {"rank": rank, "local_rank": rank, "host": "h", "device": "cpu", "backend": "gloo"},
        "runtime": {"threads": 1},
        "metrics": {
            "step_time_s": {"median": median},
            "samples_per_s": 64 / median,
            "tokens_per_s": None,
            "first_step_s": 0.5 + rank,
            "compile_time_s": None,
            "window_s": 2.0 + rank,
            "final_train_loss": loss,
            "peak_rss_bytes": rss,
            "optimizer": {"state_bytes": 100 * (rank + 1), "final_lr": 0.1},
            "flops": {"per_step": 1e9, "analytic_per_step": None, "peak_per_s": 1e11},
            "gpu": {
                "available": True,
                "energy_j": 10.0 * (rank + 1),
                "energy_source": "counter",
                "energy_per_step_j": 1.0 * (rank + 1),
                "energy_per_sample_j": (rank + 1) / 64,
                "throttled_fraction": 0.1 * rank,
                "devices": [{"index": rank}],
            },
            "eval": {"accuracy": 0.9},
        },
        "samples": {"step_time_s": times, "loss": [[10, loss + 1], [20, loss]]},
        "timing": {"setup_s": 1.0 + rank, "window_s": 2.0, "pretrain_s": None},
    }


def test_merge_by_hand():
    merged = rank_merge.merge(
        [_rank(1, 0.020, 300, 1.0, [0.02, 0.02]), _rank(0, 0.010, 500, 2.0, [0.01, 0.01])]
    )
    metrics = merged["metrics"]
    assert metrics["samples_per_s"] == pytest.approx(64 / 0.010 + 64 / 0.020)  # 6400 + 3200
    assert metrics["step_time_s"] == {"median": 0.020} and metrics["slowest_rank"] == 1
    assert merged["samples"]["step_time_s"] == [0.02, 0.02]
    assert metrics["peak_rss_bytes"] == 500 and metrics["optimizer"]["state_bytes"] == 200
    assert metrics["first_step_s"] == 1.5 and metrics["window_s"] == 3.0
    assert metrics["final_train_loss"] == 1.5
    assert merged["samples"]["loss"] == [[10, 2.5], [20, 1.5]]
    # Two ranks' FLOPs at the slowest pace, against two devices' peak.
    assert metrics["flops"]["per_step"] == 2e9
    assert metrics["flops"]["achieved_per_s"] == pytest.approx(2e9 / 0.020)
    assert metrics["flops"]["mfu"] == pytest.approx(1e11 / 2e11)
    gpu = metrics["gpu"]
    assert [d["index"] for d in gpu["devices"]] == [0, 1]
    assert gpu["energy_j"] == 30.0 and gpu["energy_per_step_j"] == 3.0
    assert gpu["energy_per_sample_j"] == pytest.approx(3.0 / 128)
    assert gpu["throttled_fraction"] == 0.1
    assert merged["timing"] == {"setup_s": 2.0, "window_s": 2.0, "pretrain_s": None}
    assert [r["rank"] for r in metrics["ranks"]] == [0, 1]


def test_merge_of_a_skip_decided_on_every_rank_keeps_its_reason():
    skipped = {"status": "skipped", "reason": "no CUDA device", "rank": {"rank": 0}}
    merged = rank_merge.merge([skipped, {**skipped, "rank": {"rank": 1}}])
    assert (merged["status"], merged["reason"]) == ("skipped", "no CUDA device")


def test_suite_ddp_scaling_expands_one_single_process_case(tmp_path):
    suite = suites.load(str(Path(__file__).resolve().parent.parent / "suites" / "ddp_scaling"))
    cases = suites.expand(suite, "cpu")
    singles = [case for case in cases if case.world_size == 1]
    assert len(singles) == 1 and singles[0].strategy is None
    assert {(c.nproc, c.strategy) for c in cases} >= {(1, None), (2, "ddp")}


def test_an_error_line_that_looks_like_markup_prints_as_it_is():
    """Regression: gloo's errors begin "[/__w/.../pair.cc:545]", which rich read as a closing
    tag; printing the record's line raised MarkupError and ended the sweep."""
    from io import StringIO

    from rich.console import Console

    from bench.run.sweep import describe

    line = "RuntimeError: [/__w/pytorch/gloo/transport/tcp/pair.cc:545] Connection reset by peer"
    out = StringIO()
    Console(file=out, width=200).print(describe({"status": "error", "reason": f"x\n{line}"}))
    assert out.getvalue() == f"error: {line}\n"


def test_a_slurm_job_asks_for_the_case_s_nodes_and_gpus(tmp_path, monkeypatch):
    """The sbatch script submitit writes for a two-node case. Slurm is the boundary: a stand-in
    ``srun`` on the PATH lets submitit's Slurm executor be built on a machine without one."""
    from submitit.slurm.slurm import _make_sbatch_string

    from bench.run.executors import SlurmOptions, SubmititExecutor
    from bench.run.launcher import Job

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    options = SlurmOptions(
        partition="gpu", setup=["source venv/bin/activate"], params={"exclusive": True}
    )
    executor = SubmititExecutor(tmp_path, "slurm", options)
    case = Case.from_dict({"nproc": 8, "nnodes": 2, "device": "cuda", "timeout_s": 600})
    executor.executor.update_parameters(**executor.parameters(Job(case, 1)))
    script = _make_sbatch_string(
        command="python -m x", folder=tmp_path, **executor.executor._executor.parameters
    )
    lines = script.splitlines()
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",  # one agent per node starts its 8 ranks
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --exclusive",
        "#SBATCH --time=15",  # timeout_s 600 s = 10 min, + 5 min
        f"#SBATCH --job-name=bench-{case.id}-r1",
        "source venv/bin/activate",
    ):
        assert line in lines


def test_more_ranks_than_gpus_is_skipped_before_any_process_starts(monkeypatch):
    from bench.run import executors
    from bench.run.launcher import Job

    # NVML is the hardware boundary: a node with 4 GPUs.
    monkeypatch.setattr(executors, "cuda_device_count", lambda: (4, None))
    case = Case.from_dict({"nproc": 8, "device": "cuda"})
    assert executors.skip_reason(Job(case, 0)) == (
        "nproc = 8 ranks per node, one GPU each, but this node has 4 CUDA devices"
    )
    assert executors.skip_reason(Job(Case.from_dict({"nproc": 4, "device": "cuda"}), 0)) is None
