"""make gpu-check's CPU side (benchmarks/gpu_check.py): the plan, the one-line refusal without
CUDA, and the summary's figures from recorded outcomes, checked by hand."""

import copy
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402

FIXTURE = ROOT / "tests/fixtures/report/results/compile_vs_eager/20261128-101502"


def _script(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_the_plan_fits_eight_minutes_and_the_dry_run_shows_it():
    steps = gpu_check.plan()
    assert sum(step.limit_s for step in steps) <= 8 * 60 == gpu_check.DEFAULT_BUDGET_S
    done = _script("--dry-run")
    assert done.returncode == 0, done.stderr
    for step in steps:
        assert f"{step.name:<10} {step.limit_s:>4.0f} s  {step.what}" in done.stdout
    assert "--device cuda" in done.stdout and "-m gpu" in done.stdout
    # Every suite the plan runs exists and validates (CUDA-only keys sit under [device.cuda]).
    for step in steps:
        if step.kind == "bench":
            suite = step.args[0]
            check = subprocess.run(
                [sys.executable, "-m", "bench.cli", "run", suite, "--dry-run", "--device", "cpu"],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            assert check.returncode == 0, check.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_is_one_line_exit_2_and_writes_nothing(tmp_path):
    done = _script("--out", str(tmp_path / "check"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "gpu check: error: no CUDA device here (torch.cuda.is_available() is False)"
    ]
    assert not (tmp_path / "check").exists()


def test_a_missing_package_is_named_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "REQUIRED", ("torch", "no_such_package_for_bench"))
    assert gpu_check.main([]) == 2
    assert (
        capsys.readouterr().err == "gpu check: error: missing packages: no_such_package_for_bench\n"
    )


def _records() -> list[dict]:
    lines = (FIXTURE / "records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_summary_s_figures_come_from_the_records():
    records = _records()
    ok = [r for r in records if r["status"] == "ok"]
    compile_figures = gpu_check.figures("compile", records, Path("unused"))
    assert compile_figures["statuses"] == {"error": 3, "ok": 6, "skipped": 1}

    def pooled(mode):
        return [
            t for r in ok if r["config"]["compile"] == mode for t in r["samples"]["step_time_s"]
        ]

    # Speedup = median eager step / median default step, over every repeat's samples.
    by_hand = statistics.median(pooled("eager")) / statistics.median(pooled("default"))
    speedup = compile_figures["speedup_vs_eager"]["mlp default"]
    assert speedup["speedup"] == pytest.approx(by_hand)
    assert speedup["ci95"][0] <= speedup["speedup"] <= speedup["ci95"][1]

    # MFU, energy and the max-batch result, as a GPU run records them (fake NVML's fields).
    gpu_runs = []
    for mfu, energy in ((0.41, 2.0), (0.45, 3.0), (0.43, 4.0)):
        record = copy.deepcopy(ok[0])
        record["metrics"]["flops"] = {"mfu": mfu, "peak_device": "H200 SXM", "peak_dtype": "bf16"}
        record["metrics"]["gpu"] = {
            "available": True,
            "energy_per_sample_j": energy,
            "devices": [{"unsupported": ["temperature"]}],
        }
        gpu_runs.append(record)
    mfu_figures = gpu_check.figures("mfu", gpu_runs, Path("unused"))
    assert mfu_figures["mfu"] == 0.43 and mfu_figures["peak"] == "H200 SXM bf16"
    assert mfu_figures["energy_per_sample_j"] == 3.0  # the median of 2, 3, 4
    assert mfu_figures["nvml_available"] == 3
    assert mfu_figures["nvml_fields_missing"] == ["temperature"]
    search = copy.deepcopy(ok[0])
    search["metrics"] |= {
        "max_batch_size": 768,
        "max_batch_capped": False,
        "probes": [[512, "ok"], [1024, "oom"], [768, "ok"], [896, "oom"]],
    }
    batch = gpu_check.figures("max-batch", [search], Path("unused"))
    assert batch["max_batch_size"] == 768 and batch["probes"][1] == [1024, "oom"]

    # The zoos step: each case's status by workload, and whose LoRA the fine-tuning used.
    lora, timm = copy.deepcopy(ok[0]), copy.deepcopy(ok[0])
    lora["config"] |= {"workload": "hf:gpt2", "finetune": "lora"}
    lora["runtime"]["finetune"] = {"lora_impl": "peft"}
    timm |= {"status": "skipped", "reason": "timm:test_resnet needs timm"}
    timm["config"] |= {"workload": "timm:test_resnet", "finetune": None}
    zoos = gpu_check.figures("zoos", [lora, timm], Path("unused"))
    assert zoos["by_workload"] == {
        "hf:gpt2 lora": "ok",
        "timm:test_resnet train": "skipped: timm:test_resnet needs timm",
    }
    assert zoos["lora_impl"] == ["peft"]


def test_a_step_that_would_not_fit_is_skipped_saying_so(tmp_path):
    step = gpu_check.plan()[0]
    outcome = gpu_check.run_step(step, sys.executable, tmp_path, left_s=step.limit_s - 1)
    assert outcome.status == "skipped"
    assert (
        outcome.reason == f"needs {step.limit_s:.0f} s, {step.limit_s - 1:.0f} s of the budget left"
    )
    page = gpu_check.render_markdown([outcome], 480, "1 x NVIDIA H200")
    assert f"| {step.name} | skipped | 0 | {outcome.reason} |  |" in page
