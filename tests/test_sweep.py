"""Real sweeps on CPU through the CLI: fresh processes, records field by field, failures as
records, a killed run resumed. Tiny sizes and short windows keep each under a few seconds."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from conftest import write_suite

from bench.spec import suite as suites
from bench.spec.catalog import num_params

SHORT = """
threads = 1
warmup_steps = 2
min_steps = 10
min_time_s = 0.1
max_time_s = 0.4
"""

TWO_CASES = f"""
[suite]
name = "two"
[base]
model_size = "tiny"
repeats = 2
{SHORT}
[matrix]
workload = ["mlp", "gpt"]
"""


def records_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def only_run(results: Path, suite: str) -> Path:
    (run_dir,) = (results / suite).iterdir()
    return run_dir


def test_two_case_sweep_records_every_field(tmp_path, bench):
    path = write_suite(tmp_path, "two", TWO_CASES)
    done = bench("run", str(path.with_suffix("")), "--out", "res", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    run_dir = only_run(tmp_path / "res", "two")
    records = records_of(run_dir)
    expected = suites.expand(suites.load(str(path)), "cpu")
    mlp, gpt = expected
    # Interleaved: every case's repeat 0, then every case's repeat 1.
    assert [(r["case_id"], r["repeat"]) for r in records] == [
        (mlp.id, 0),
        (gpt.id, 0),
        (mlp.id, 1),
        (gpt.id, 1),
    ]
    for record in records:
        case = mlp if record["case_id"] == mlp.id else gpt
        assert record["schema"] == 1
        assert record["run_id"] == run_dir.name
        assert record["suite"] == "two"
        assert record["status"] == "ok" and record["reason"] is None
        assert record["config"] == case.to_dict()
        assert record["flags"] == []
        times = record["samples"]["step_time_s"]
        step = record["metrics"]["step_time_s"]
        # Statistics against independent implementations (Python's statistics, numpy).
        assert step["n"] == len(times) >= 10
        assert step["median"] == pytest.approx(statistics.median(times))
        assert step["mean"] == pytest.approx(statistics.fmean(times))
        assert step["p10"] == pytest.approx(np.percentile(times, 10))
        assert step["p90"] == pytest.approx(np.percentile(times, 90))
        q75, q25 = np.percentile(times, [75, 25])
        assert step["iqr"] == pytest.approx(q75 - q25)
        assert step["ci95_low"] <= step["median"] <= step["ci95_high"]
        metrics = record["metrics"]
        assert metrics["samples_per_s"] == pytest.approx(case.batch_size / step["median"])
        assert metrics["num_params"] == num_params(case.workload, "tiny", case.seq_len)
        assert metrics["compile_time_s"] is None  # eager
        assert metrics["first_step_s"] > 0
        assert metrics["window_s"] >= sum(times)
        assert metrics["stop_reason"] in ("ci", "max_time", "max_steps")
        assert metrics["peak_alloc_bytes"] is None  # CPU: no CUDA allocator
        assert metrics["peak_rss_bytes"] > 50 * 2**20
        # The loss is read at block boundaries; the last reading covers the last steps.
        loss = record["samples"]["loss"]
        assert [s for s, _ in loss] == sorted(s for s, _ in loss)
        assert loss[-1][0] == step["n"]
        assert metrics["final_train_loss"] == loss[-1][1]
        runtime = record["runtime"]
        assert runtime["threads"] == 1
        assert runtime["param_dtype"] == "float32" and runtime["autocast_dtype"] is None
        assert runtime["compile"] == {"mode": "eager", "cache": None}
        timing = record["timing"]
        assert 0 < timing["spawn_s"] < timing["wall_s"]
        assert timing["fixed_s"] == pytest.approx(
            timing["wall_s"]
            - timing["first_step_s"]
            - timing["warmup_s"]
            - timing["window_s"]
            - timing["eval_s"]
        )
        if case.workload == "mlp":
            assert metrics["tokens_per_s"] is None
            assert runtime["data"]["name"] == "digits"
            assert (runtime["data"]["num_train"], runtime["data"]["num_val"]) == (1437, 360)
            assert set(metrics["eval"]) == {"accuracy", "loss"}
        else:
            tokens = case.batch_size * case.seq_len
            assert metrics["tokens_per_s"] == pytest.approx(tokens / step["median"])
            assert runtime["data"]["name"] == "stdlib"
            assert metrics["eval"]["perplexity"] == pytest.approx(
                np.exp(metrics["eval"]["loss"]), rel=1e-6
            )
    env = json.loads((run_dir / "env.json").read_text())
    assert env["torch"] == torch.__version__
    assert env["cpu"]["logical_cores"] == os.cpu_count()
    # The suite lives in tmp_path, no git repository: env.json says so, and names bench's own
    # checkout apart (bench_git).
    assert env["git"]["commit"] is None and "not a git checkout" in env["git"]["reason"]
    assert len(env["bench_git"]["commit"]) == 40
    assert env["driver"]["version"] is None and "NVML" in env["driver"]["reason"]
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["cases"] == [mlp.to_dict(), gpt.to_dict()]
    assert "4 ok" in done.stdout


def test_compiled_case_records_its_compile(tmp_path, bench):
    text = f"""
    [base]
    workload = "mlp"
    model_size = "tiny"
    compile = "default"
    compile_cache = "cold"
    repeats = 1
    {SHORT}
    """
    path = write_suite(tmp_path, "compiled", text)
    done = bench("run", str(path), "--out", "res", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    (record,) = records_of(only_run(tmp_path / "res", "compiled"))
    assert record["status"] == "ok", record["reason"]
    metrics, compiled = record["metrics"], record["runtime"]["compile"]
    assert metrics["compile_time_s"] == pytest.approx(
        metrics["first_step_s"] - metrics["step_time_s"]["median"]
    )
    # Even a warm cache costs far more than one steady step of a 52k-parameter MLP.
    assert metrics["compile_time_s"] > 10 * metrics["step_time_s"]["median"]
    assert compiled["mode"] == "default"
    assert compiled["num_graphs"] >= 1 and compiled["num_graph_breaks"] == 0
    assert compiled["num_recompiles"] == 0
    # A fresh inductor cache: every graph compiled, none served from disk.
    assert compiled["cache"] == "cold"
    assert compiled["fxgraph_cache_misses"] >= 1 and compiled["fxgraph_cache_hits"] == 0
    assert "recompile_in_window" not in record["flags"]


def test_a_cold_cache_is_removed_however_its_case_ends(tmp_path, bench_env):
    # One cold case that ends well, one killed by its timeout in the middle of its (cold) compile:
    # neither leaves its inductor cache in the temporary directory.
    text = f"""
    [base]
    workload = "mlp"
    model_size = "tiny"
    compile = "default"
    compile_cache = "cold"
    repeats = 1
    {SHORT}
    [[include]]
    batch_size = 16
    timeout_s = 600.0
    [[include]]
    batch_size = 32
    timeout_s = 1.0
    """
    path = write_suite(tmp_path, "cold", text)
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", str(path), "--out", "res", "--device", "cpu"],
        cwd=tmp_path,
        env=bench_env | {"TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    records = records_of(only_run(tmp_path / "res", "cold"))
    assert sorted(r["status"] for r in records) == ["ok", "timeout"], done.stderr
    assert list(temp.glob("bench-inductor-cold-*")) == []


FAILURES = f"""
[suite]
name = "failures"
[base]
model_size = "tiny"
repeats = 1
{SHORT}
[[include]]
workload = "gpt"
data = "text"
data_path = "TOO_SHORT"
[[include]]
workload = "mlp"
batch_size = 1000000000000
[[include]]
workload = "mlp"
min_steps = 1000000
max_steps = 1000000
min_time_s = 300.0
max_time_s = 600.0
timeout_s = 3.0
[[include]]
workload = "mlp"
batch_size = 32
"""


def test_error_oom_and_timeout_are_records_and_the_sweep_goes_on(tmp_path, bench):
    short = tmp_path / "short.txt"
    short.write_text("far too short for a window of 64 tokens")
    path = write_suite(tmp_path, "failures", FAILURES.replace("TOO_SHORT", str(short)))
    started = time.monotonic()
    done = bench("run", str(path), "--out", "res", "--device", "cpu")
    # A sweep with an error or a timeout in it exits 1 (for CI), after running every case.
    assert done.returncode == 1, done.stderr
    assert "2 of 4 records failed (error, timeout)" in done.stderr
    records = records_of(only_run(tmp_path / "res", "failures"))
    assert [r["status"] for r in records] == ["error", "oom", "timeout", "ok"]
    error, oom, timeout, ok = records
    assert str(short) in error["reason"] and "too short for seq_len = 64" in error["reason"]
    assert error["reason"].splitlines()[-1].startswith("RuntimeError: ")
    assert "can't allocate memory" in oom["reason"]
    assert timeout["reason"].startswith("killed after timeout_s = 3 s")
    assert 3 <= timeout["timing"]["wall_s"] < 10
    assert ok["metrics"]["step_time_s"]["n"] >= 10
    for failed in (error, oom, timeout):
        assert failed["metrics"] == {} and failed["samples"] == {}
    assert time.monotonic() - started < 120
    assert "1 error, 1 ok, 1 oom, 1 timeout" in done.stdout


RESUMABLE = f"""
[suite]
name = "resumable"
[base]
workload = "mlp"
model_size = "tiny"
repeats = 2
{SHORT}
[matrix]
batch_size = [16, 32, 64]
"""


def start_run(tmp_path: Path, bench_env: dict, path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(path), "--out", "res", "--device", "cpu"],
        cwd=tmp_path,
        env=bench_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job has
    )


def wait_for_run_dir(suite_dir: Path, process: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = list(suite_dir.glob("*/run.json"))
        if runs:
            return runs[0].parent
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no run directory under {suite_dir} within 60 s")


def wait_for_records(records: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if records.exists() and records.read_text().count("\n") >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no {count} records within 120 s")


def test_killed_run_resumes_with_every_record_exactly_once(tmp_path, bench, bench_env):
    path = write_suite(tmp_path, "resumable", RESUMABLE)
    process = start_run(tmp_path, bench_env, path)
    run_dir = wait_for_run_dir(tmp_path / "res" / "resumable", process)
    wait_for_records(run_dir / "records.jsonl", 2, process)
    os.killpg(process.pid, signal.SIGKILL)  # the whole job at once, mid-case, no clean-up
    process.wait()
    before = (run_dir / "records.jsonl").read_bytes()
    assert 2 <= before.count(b"\n") < 6
    # A write cut off mid-line by a kill leaves a line without its newline; resume drops it.
    (run_dir / "records.jsonl").write_bytes(before + b'{"schema": 1, "case_id": "ab')

    done = bench("run", "--resume", str(run_dir.relative_to(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert "incomplete last record" in done.stderr
    after = (run_dir / "records.jsonl").read_bytes()
    assert after.startswith(before)  # nothing already on disk changed
    pairs = [(r["case_id"], r["repeat"]) for r in records_of(run_dir)]
    cases = suites.expand(suites.load(str(path)), "cpu")
    assert sorted(pairs) == sorted((c.id, r) for c in cases for r in range(2))
    assert all(r["status"] == "ok" for r in records_of(run_dir))


def test_ctrl_c_stops_cleanly_and_keeps_finished_records(tmp_path, bench_env):
    path = write_suite(tmp_path, "resumable", RESUMABLE)
    process = start_run(tmp_path, bench_env, path)
    run_dir = wait_for_run_dir(tmp_path / "res" / "resumable", process)
    wait_for_records(run_dir / "records.jsonl", 1, process)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal sends the foreground job on Ctrl-C
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"bench run --resume {run_dir.relative_to(tmp_path)}" in stdout
    assert "Traceback" not in stderr
    text = (run_dir / "records.jsonl").read_text()
    assert text.endswith("\n")
    assert 1 <= len(records_of(run_dir)) < 6


def test_sigterm_kills_the_running_case_and_keeps_finished_records(tmp_path, bench_env):
    path = write_suite(tmp_path, "resumable", RESUMABLE)
    process = start_run(tmp_path, bench_env, path)
    run_dir = wait_for_run_dir(tmp_path / "res" / "resumable", process)
    wait_for_records(run_dir / "records.jsonl", 1, process)
    # Every process of the run: the fork server, the case running now and its helpers.
    family = psutil.Process(process.pid).children(recursive=True)
    process.terminate()  # SIGTERM to bench alone, as `kill` or a cancelled CI job sends it
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert f"bench run --resume {run_dir.relative_to(tmp_path)}" in stdout
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], [p.cmdline() for p in alive]
    assert 1 <= len(records_of(run_dir)) < 6


def test_max_batch_search_records_every_probe(tmp_path, bench):
    text = f"""
    [base]
    workload = "mlp"
    model_size = "tiny"
    batch_size = "max"
    max_batch_limit = 256
    repeats = 1
    {SHORT}
    """
    path = write_suite(tmp_path, "maxbatch", text)
    done = bench("run", str(path), "--out", "res", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    records = records_of(only_run(tmp_path / "res", "maxbatch"))
    probes, (final,) = records[:-1], records[-1:]
    # Doubling from the default batch of 64 reaches the limit with nothing out of memory.
    assert [p["config"]["batch_size"] for p in probes] == [64, 128, 256]
    assert all(p["status"] == "ok" and "max_batch_probe" in p["flags"] for p in probes)
    assert final["config"]["batch_size"] == "max" and final["status"] == "ok"
    assert final["metrics"]["max_batch_size"] == 256
    assert final["metrics"]["max_batch_capped"] is True
    assert final["metrics"]["peak_rss_bytes"] == probes[-1]["metrics"]["peak_rss_bytes"]
    assert "largest batch that fits: 256" in done.stdout
