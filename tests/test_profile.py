"""Profiles of the steps after the window, compile diagnostics, memory by phase (issue 18)."""

import json

import pytest
import torch
from conftest import write_suite
from torch import nn

from bench.measure.profile import CATEGORIES, category, profile_steps
from bench.spec.case import Case
from bench.train import compiling


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("aten::addmm", "matmul"),
        ("aten::mm", "matmul"),
        ("ampere_sgemm_128x64_tn", "matmul"),
        ("aten::convolution_backward", "convolution"),
        ("aten::_scaled_dot_product_flash_attention", "attention"),
        ("aten::native_layer_norm", "normalisation"),
        ("aten::native_batch_norm_backward", "normalisation"),
        ("aten::copy_", "data copy"),
        ("Memcpy HtoD (Pageable -> Device)", "data copy"),
        ("aten::relu", "elementwise"),
        ("aten::threshold_backward", "elementwise"),
        ("triton_poi_fused_add_mul_0", "elementwise"),
        ("aten::empty_strided", "other"),
    ],
)
def test_an_op_s_category_follows_the_documented_rules(name, expected):
    assert category(name) == expected


def _training_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))

    def step():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step


def test_profiled_steps_give_shares_that_add_up_and_a_trace_that_loads(tmp_path):
    trace = tmp_path / "job.pt.trace.json"
    summary = profile_steps(_training_step(), 4, torch.device("cpu"), trace)
    assert set(summary["shares"]) == set(CATEGORIES)
    assert sum(summary["shares"].values()) == pytest.approx(1.0)
    # Two linear layers forward and backward: matmuls; Adam's update under Optimizer.step.
    assert summary["shares"]["matmul"] > 0 and summary["shares"]["optimizer"] > 0
    assert summary["num_steps"] == 4 and summary["time_basis"] == "host"
    assert summary["device_idle_s_per_step"] is None and "CPU" in summary["device_idle_reason"]
    assert summary["kernels_per_step"] is None
    assert "not the measured window" in summary["source"]
    # Each step dispatches the same top-level aten ops: a whole number per step.
    assert summary["ops_per_step"] == int(summary["ops_per_step"]) > 10
    names = [op["name"] for op in summary["top_host_ops"]]
    assert len(names) == len(set(names)) <= 10
    optimizer_ops = [op for op in summary["top_host_ops"] if op["name"].startswith("Optimizer.")]
    assert all(op["category"] == "optimizer" for op in optimizer_ops)
    events = json.loads(trace.read_text())["traceEvents"]  # Chrome's trace format
    assert any(e.get("name") == "aten::addmm" for e in events)
    assert sum(e.get("name", "").startswith("Optimizer.step#Adam.step") for e in events) == 4


def test_compile_stats_count_graph_breaks_and_recompile_reasons():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiling._recompile_reasons.clear()
    compiling.watch_recompiles()

    def forward(x):
        y = x * 2
        print("a print in forward")  # a graph break dynamo names
        return (y + 1).sum()

    compiled = torch.compile(forward, backend="eager")
    compiled(torch.ones(3))
    frames_after_first_step = compiling.frames_compiled()
    compiled(torch.ones(3))  # same guards: no recompile
    compiled(torch.ones(4, 2))  # rank 2 instead of 1: a guard fails, both graphs recompile
    stats = compiling.stats(Case.from_dict({"compile": "default"}), frames_after_first_step)
    assert stats["num_graph_breaks"] == 2  # the print, in each of the two compilations
    assert stats["graph_break_counts"] == {"Failed to trace builtin operator": 2}
    assert stats["num_graphs"] == 4
    assert stats["num_recompiles"] == 2
    reasons = stats["recompile_reasons"]
    assert reasons == {
        "tensor 'x' rank mismatch. expected 1, actual 2": 1,
        "tensor 'y' rank mismatch. expected 1, actual 2": 1,
    }


def test_profile_steps_and_memory_snapshot_are_run_length_settings():
    plain = Case.from_dict({})
    assert Case.from_dict({"profile_steps": 5}).id == plain.id
    with pytest.raises(Exception, match="memory_snapshot = True: .*only with device cuda"):
        Case.from_dict({"memory_snapshot": True})
    with pytest.raises(Exception, match="profile_steps = -1: must be an integer >= 0"):
        Case.from_dict({"profile_steps": -1})


PROFILED = """
[suite]
name = "profiled"
[base]
workload = "mlp"
model_size = "tiny"
data = "digits"
threads = 1
repeats = 1
warmup_steps = 2
min_steps = 10
max_steps = 10
min_time_s = 0.0
profile_steps = 3
"""


def test_a_profiled_case_records_its_summary_trace_and_memory(tmp_path, bench):
    write_suite(tmp_path, "profiled", PROFILED)
    done = bench("run", "profiled.toml", "--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "results" / "profiled").iterdir()
    (record,) = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    profile = record["metrics"]["profile"]
    trace = run / "logs" / profile["trace"]
    assert profile["num_steps"] == 3 and trace.name.endswith(".pt.trace.json")  # TensorBoard's
    assert json.loads(trace.read_text())["traceEvents"]
    assert sum(profile["shares"].values()) == pytest.approx(1.0)
    # The window is the suite's 10 steps, not 13: the profiled steps come after it.
    assert record["metrics"]["step_time_s"]["n"] == 10
    memory = record["metrics"]["memory"]
    # mlp tiny: 784*64+64 + 64*32+32 + 32*10+10 = 52,650 fp32 parameters, all trained.
    assert memory["parameters_bytes"] == memory["gradients_bytes"] == 52650 * 4
    assert memory["optimizer_state_bytes"] == record["metrics"]["optimizer"]["state_bytes"]
    assert memory["rss_before_build_bytes"] > 0
    peak = record["metrics"]["peak_rss_bytes"]
    assert memory["window_rss_rise_bytes"] == peak - memory["rss_before_build_bytes"]
    assert memory["after_build_bytes"] is None  # CUDA allocator figures: null on a CPU
    # Saved for backward, by hand: the flattened input (B x 784), both ReLU outputs (B x 64,
    # B x 32), the model's log-softmax output (B x 10) and the suite's cross-entropy's own
    # log-softmax of it (B x 10), fp32; nll_loss's int64 targets (B) and its 0-d fp32 total
    # weight. Weights (and their transposed views) are not activations.
    batch = record["config"]["batch_size"]
    assert memory["activations_bytes"] == batch * ((784 + 64 + 32 + 10 + 10) * 4 + 8) + 4
    reported = bench("report", "--out", "rep")
    assert reported.returncode == 0, reported.stderr
    page = (tmp_path / "rep" / "report.md").read_text()
    assert "where the time goes (profiled steps)" in page
    assert "top operators by host self time" in page
    # What takes the memory: parameters, gradients, Adam's two moments, activations (MiB).
    after = page[page.index("what takes the memory") :].splitlines()
    header, row = [line for line in after if line.startswith("|") and set(line) - set("|-: ")][:2]
    assert header.split("|")[2:6] == [
        " parameters ",
        " gradients ",
        " optimizer state ",
        " activations ",
    ]
    assert [cell.strip() for cell in row.split("|")[2:6]] == ["0.20", "0.20", "0.40", "0.22"]
    assert (tmp_path / "rep" / "figures" / "profiled-profile.png").is_file()
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<details><summary>top operators by host self time" in html


def test_no_oom_snapshot_without_cuda(tmp_path, monkeypatch):
    from bench.measure.memory import oom_snapshot

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert oom_snapshot(tmp_path / "job") is None
    assert list(tmp_path.iterdir()) == []
