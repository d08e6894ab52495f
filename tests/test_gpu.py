"""On a CUDA machine: a real sweep through the CUDA paths (events, allocator peaks, CUDA graphs).

Skipped without a GPU; on CPU machines the same code is covered by test_timing's fake events.
"""

import json

import pytest
from conftest import write_suite

pytestmark = pytest.mark.gpu

SUITE = """
[suite]
name = "gpu"
[base]
workload = "mlp"
model_size = "base"
batch_size = 1024
precision = "amp-bf16"
repeats = 1
warmup_steps = 5
min_steps = 20
min_time_s = 0.2
max_time_s = 2.0
[matrix]
compile = ["eager", "reduce-overhead"]
"""


def test_cuda_sweep_records_allocator_peaks_and_event_timings(tmp_path, bench):
    path = write_suite(tmp_path, "gpu", SUITE)
    done = bench("run", str(path), "--device", "cuda", "--out", "res")
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "res" / "gpu").iterdir()
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"], [r["reason"] for r in records]
    for record in records:
        metrics, runtime = record["metrics"], record["runtime"]
        assert record["config"]["device"] == "cuda"
        assert runtime["autocast_dtype"] == "bfloat16"
        assert metrics["peak_alloc_bytes"] > 0
        assert metrics["peak_reserved_bytes"] >= metrics["peak_alloc_bytes"]
        assert metrics["step_time_s"]["n"] >= 20
        assert all(t > 0 for t in record["samples"]["step_time_s"])
    env = json.loads((run_dir / "env.json").read_text())
    assert env["devices"] and env["driver"]["version"]


def test_an_oom_dumps_the_allocators_state(tmp_path):
    import pickle

    import torch

    from bench.measure.memory import oom_snapshot

    free, _ = torch.cuda.mem_get_info()
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(2 * free, dtype=torch.uint8, device="cuda")
    found = oom_snapshot(tmp_path / "job")
    assert found["file"] == "job.oom.memory.pickle"
    snapshot = pickle.loads((tmp_path / found["file"]).read_bytes())
    assert "segments" in snapshot and "device_traces" in snapshot
