"""Peak compute: the datasheet table by real device names, the compute dtype, the CPU's cache."""

import json

import pytest
import torch

from bench.machine.peaks import compute_dtype, gpu_peak
from bench.measure import cpu_peak

T = 1e12


@pytest.mark.parametrize(
    "name, dtype, device, tflops",
    [
        # Names as nvidia-smi and NVML print them.
        ("NVIDIA H200", "bf16", "H200 SXM", 989.5),
        ("NVIDIA H200 NVL", "bf16", "H200 NVL", 835.5),
        ("NVIDIA H100 80GB HBM3", "bf16", "H100 SXM", 989.5),
        ("NVIDIA H100 80GB HBM3", "tf32", "H100 SXM", 494.5),
        ("NVIDIA H100 PCIe", "bf16", "H100 PCIe", 756.5),
        ("NVIDIA H100 NVL", "fp16", "H100 NVL", 835.5),
        ("NVIDIA A100-SXM4-80GB", "bf16", "A100", 312),
        ("NVIDIA A100-SXM4-40GB", "tf32", "A100", 156),
        ("NVIDIA A100 80GB PCIe", "fp32", "A100", 19.5),
        ("NVIDIA A100-PCIE-40GB", "bf16", "A100", 312),
        ("NVIDIA A10G", "bf16", "A10G", 70),
        ("NVIDIA A10", "bf16", "A10", 125),
        ("NVIDIA L4", "bf16", "L4", 121),
        ("NVIDIA L40S", "bf16", "L40S", 362.05),
        ("NVIDIA GeForce RTX 4090", "bf16", "RTX 4090", 165.2),
        ("NVIDIA GeForce RTX 3090", "fp16", "RTX 3090", 71),
        ("Tesla V100-SXM2-16GB", "fp16", "V100 SXM2", 125),
        ("Tesla V100-PCIE-32GB", "fp32", "V100 PCIe", 14),
        ("Tesla V100S-PCIE-32GB", "fp16", "V100S PCIe", 130),
        # No TF32 on Volta: FP32 matmuls run on the CUDA cores.
        ("Tesla V100-SXM2-32GB", "tf32", "V100 SXM2", 15.7),
        ("Tesla T4", "fp16", "T4", 65),
    ],
)
def test_real_device_names_find_their_dense_peak(name, dtype, device, tflops):
    peak, reason = gpu_peak(name, dtype)
    assert reason is None and peak is not None
    assert (peak.device, peak.flops_per_s) == (device, pytest.approx(tflops * T))
    assert "http" in peak.source


@pytest.mark.parametrize(
    "name, dtype",
    [
        ("NVIDIA GeForce RTX 3090 Ti", "bf16"),  # not a 3090: no guess
        ("NVIDIA GH200 480GB", "bf16"),  # not an H200
        ("NVIDIA L40", "bf16"),  # not an L4 or L40S
        ("Tesla V100-SXM2-16GB", "bf16"),  # no bf16 tensor cores
    ],
)
def test_devices_and_dtypes_outside_the_table_have_no_peak_but_a_reason(name, dtype):
    peak, reason = gpu_peak(name, dtype)
    assert peak is None and reason


@pytest.mark.parametrize(
    "param, autocast, precision, device, expected",
    [
        ("float32", None, "highest", "cuda", "fp32"),
        ("float32", None, "high", "cuda", "tf32"),
        ("float32", None, "high", "cpu", "fp32"),
        ("bfloat16", None, "highest", "cuda", "bf16"),
        ("float32", "bfloat16", "highest", "cuda", "bf16"),
        ("float32", "float16", "highest", "cuda", "fp16"),
    ],
)
def test_the_compute_dtype_follows_the_precision_policy(
    param, autocast, precision, device, expected
):
    assert compute_dtype(param, autocast, precision, device) == expected


def test_the_cpu_peak_is_measured_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    # The machine's load is the OS's figure: pinned, so that a busy machine turning quiet
    # between the two calls cannot ask for a second measurement.
    monkeypatch.setattr(cpu_peak, "load_per_core", lambda: 2.0)
    first = cpu_peak.cpu_peak("fp32", 1)
    assert first.flops_per_s > 1e8 and first.dtype == "fp32"
    assert first.source.startswith("measured: torch.mm")

    def measured_again(*args):
        raise AssertionError("the cached peak was measured again")

    monkeypatch.setattr(cpu_peak, "measure_matmul", measured_again)
    assert cpu_peak.cpu_peak("fp32", 1) == first
    (key,) = json.loads((tmp_path / cpu_peak.CACHE_FILE).read_text())
    assert "threads=1" in key and "fp32" in key and cpu_peak.cpu_model() in key


def _cache_entry(tmp_path, flops_per_s: float, load: float) -> str:
    key = f"{cpu_peak.cpu_model()} | threads=1 | fp32 | torch {torch.__version__}"
    entry = {"flops_per_s": flops_per_s, "matrix_size": 256, "measured_at": "x"}
    (tmp_path / cpu_peak.CACHE_FILE).write_text(json.dumps({key: entry | {"load_per_core": load}}))
    return key


def test_a_peak_measured_on_a_busy_machine_is_measured_again_and_the_better_kept(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_peak, "load_per_core", lambda: 0.25)  # quiet now (the OS's figure)
    # Cached at a load of 99 per core: measured again now, and the real rate beats the cached
    # 1 FLOP/s.
    key = _cache_entry(tmp_path, 1.0, 99.0)
    peak = cpu_peak.cpu_peak("fp32", 1)
    assert peak.flops_per_s > 1e8
    entry = json.loads((tmp_path / cpu_peak.CACHE_FILE).read_text())[key]
    assert entry["load_per_core"] == 0.25 and "load 0.25 per core" in peak.source
    # Still busy now (3 per core): the busy figure stays until the machine is quiet.
    _cache_entry(tmp_path, 1.0, 99.0)
    monkeypatch.setattr(cpu_peak, "load_per_core", lambda: 3.0)
    assert cpu_peak.cpu_peak("fp32", 1).flops_per_s == 1.0


def test_a_peak_measured_on_a_quiet_machine_is_kept_and_a_better_one_is_not_lost(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_peak, "load_per_core", lambda: 0.25)
    key = _cache_entry(tmp_path, 1e30, 0.0)
    assert cpu_peak.cpu_peak("fp32", 1).flops_per_s == 1e30  # quiet then: not measured again
    # Asked to measure again (a case came too close): the real rate is lower, 1e30 stays.
    assert cpu_peak.cpu_peak("fp32", 1, remeasure=True).flops_per_s == 1e30
    entry = json.loads((tmp_path / cpu_peak.CACHE_FILE).read_text())[key]
    assert entry["flops_per_s"] == 1e30


def test_an_mfu_above_one_is_flagged_with_the_reason(tmp_path, monkeypatch):
    from bench.measure.mfu import flops_metrics
    from bench.spec.case import Case

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_peak, "load_per_core", lambda: 0.25)
    # The hardware boundary: this CPU's matmul rate, as if it were 1000 FLOP/s.
    monkeypatch.setattr(cpu_peak, "measure_matmul", lambda dtype, threads: (1000.0, 256))
    case = Case.from_dict({"workload": "mlp", "model_size": "tiny"})
    # 1e6 FLOPs a step in 0.01 s: 1e8 FLOP/s achieved, 1e5 times the "peak".
    flops = flops_metrics(case, torch.device("cpu"), 1_000_000, 0.01, None)
    assert flops["mfu"] == pytest.approx(1e5)
    assert flops["above_peak"].startswith("MFU 100000.00 > 1: the step ran its counted FLOPs")
    below = flops_metrics(case, torch.device("cpu"), 1, 1.0, None)  # 1 FLOP/s: MFU 0.001
    assert below["mfu"] == pytest.approx(0.001) and below["above_peak"] is None
