"""bench estimate against numbers worked out by hand.

1B parameters on 20B tokens: 6 x 1e9 x 2e10 = 1.2e20 FLOPs. On 8 H200s (989.5 TFLOP/s dense
bf16, bench/machine/peaks.py) at MFU 0.4: 8 x 989.5e12 x 0.4 = 3.1664e15 FLOP/s, so
1.2e20 / 3.1664e15 = 37,897.93 s = 10.527 h, and 8 x 10.527 = 84.218 GPU-hours.
"""

import json
from pathlib import Path

import pytest

from bench.cli.estimate import parse_count
from bench.errors import UserError
from bench.report.estimate import Inputs, Measured, estimate, measured_from_records

HOURS = 1.2e20 / 3.1664e15 / 3600  # 10.5272 h


def test_counts_with_suffixes():
    assert parse_count("7B", "--params") == 7e9
    assert parse_count("1.4T", "--tokens") == 1.4e12
    assert parse_count("350m", "--params") == 3.5e8
    assert parse_count("1e9", "--params") == 1e9
    assert parse_count("52650", "--params") == 52650


@pytest.mark.parametrize("text", ["-5", "0", "abc", "7X", "", "inf", "1e400"])
def test_bad_counts_name_the_option(text):
    with pytest.raises(UserError, match=r"^--params .*not a positive number"):
        parse_count(text, "--params")


def test_flops_time_gpu_hours_by_hand():
    result = estimate(Inputs(params=1e9, tokens=2e10, mfu=0.4, gpu="H200 SXM", gpus=8), Measured())
    assert result["flops"]["total"] == pytest.approx(1.2e20)
    assert result["flops"]["attention"] is None
    compute = result["compute"]
    assert compute["peak_per_s"] == 989.5e12 and compute["peak_device"] == "H200 SXM"
    assert compute["time_s"] / 3600 == pytest.approx(HOURS)
    assert compute["gpu_hours"] == pytest.approx(8 * HOURS)  # 84.218
    assert result["cost"] is None
    assert result["energy"]["joules"] is None and "--watts" in result["energy"]["reason"]


def test_tokens_default_to_twenty_per_parameter():
    result = estimate(Inputs(params=1e9, mfu=0.4, gpu="H200 SXM"), Measured())
    assert result["tokens"] == 2e10 and result["flops"]["total"] == pytest.approx(1.2e20)


def test_attention_term_energy_cost_and_memory_by_hand():
    inputs = Inputs(
        params=1e9,
        tokens=2e10,
        seq_len=2048,
        layers=24,
        d_model=2048,
        mfu=0.4,
        gpu="H200 SXM",
        gpus=8,
        watts=700,
        pue=1.2,
        price_per_gpu_hour=2.5,
    )
    result = estimate(inputs, Measured())
    # 12 x 24 x 2048 x 2048 x 2e10 = 1,207,959,552 x 2e10.
    assert result["flops"]["attention"] == pytest.approx(2.415919104e19)
    total = 1.2e20 + 2.415919104e19
    time_s = total / 3.1664e15
    assert result["compute"]["time_s"] == pytest.approx(time_s)
    assert result["energy"]["joules"] == pytest.approx(700 * 8 * time_s * 1.2)
    assert result["cost"]["total"] == pytest.approx(time_s * 8 / 3600 * 2.5)
    (reference,) = result["memory"]["per_replica"]
    assert (reference["bytes_per_param"], reference["bytes"]) == (16, 1.6e10)
    # 34 bytes x 2048 tokens x 1 sequence x 2048 wide x 24 layers.
    assert result["memory"]["activations_bytes"] == 34 * 2048 * 2048 * 24


def _record(case_id, mfu, **metrics):
    return {
        "schema": 1,
        "suite": "model_size",
        "run_id": "r1",
        "case_id": case_id,
        "status": "ok",
        "flags": [],
        "config": {"workload": "gpt", "optimizer": "adamw", "precision": "fp32"},
        "metrics": {
            "num_params": 1000,
            "step_time_s": {"median": 0.1},
            "flops": {
                "mfu": mfu,
                "peak_per_s": 2e14,
                "peak_device": "A100",
                "peak_dtype": "bf16",
                "per_step": 1e12,
            },
            **metrics,
        },
    }


def test_measured_mfu_energy_and_bytes_per_param():
    records = [
        _record("a", 0.3, gpu={"energy_per_step_j": 100.0}, optimizer={"state_bytes": 8000}),
        _record("b", 0.5, gpu={"energy_per_step_j": 300.0}),
        _record("b", 0.4),  # a second repeat of b: its median MFU is 0.45, still the best
        _record("c", 2.9),  # above the peak (a CPU's bf16 peak): left out, and counted
        _record("d", 0.9),  # a higher MFU of a far lower peak: 0.9 x 1e10, slower than b
    ]
    records[-1]["metrics"]["flops"]["peak_per_s"] = 1e10
    measured = measured_from_records(records)
    assert measured.mfu == pytest.approx(0.45) and "case b" in measured.mfu_case
    assert measured.num_mfu_above_one == 1
    assert measured.peak_per_s == 2e14 and measured.peak_device == "A100"
    assert measured.joules_per_flop == pytest.approx(2e-10)  # median of 1e-10 and 3e-10
    assert measured.state_bytes_per_param == {("adamw", "fp32"): 8.0}
    result = estimate(Inputs(params=1e9, tokens=2e10), measured)
    # 1.2e20 FLOPs / (2e14 x 0.45) = 1.333e6 s; energy 1.2e20 x 2e-10 = 2.4e10 J.
    assert result["compute"]["time_s"] == pytest.approx(1.2e20 / 9e13)
    assert result["energy"]["joules"] == pytest.approx(2.4e10)
    measured_row = result["memory"]["per_replica"][1]
    assert measured_row["bytes_per_param"] == 16.0  # 4 weights + 4 gradients + 8 state
    assert "adamw, fp32" in measured_row["what"]


def test_cli_json_prints_the_same_figures(bench):
    args = ["--params", "1B", "--tokens", "2e10", "--mfu", "0.4", "--gpu", "H200 SXM"]
    args += ["--gpus", "8"]
    done = bench("estimate", *args, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["flops"]["total"] == pytest.approx(1.2e20)
    assert result["compute"]["gpu_hours"] == pytest.approx(8 * HOURS)
    table = bench("estimate", *args)
    assert "84.2" in table.stdout and "1.2e+20" in table.stdout  # GPU-hours, FLOPs


def test_a_gpu_as_nvml_prints_it_is_that_gpu_and_a_shared_prefix_is_ambiguous():
    from bench.machine.peaks import peak_by_name

    sxm, _ = peak_by_name("NVIDIA H200", "bf16")  # NVML's name of the SXM
    nvl, _ = peak_by_name("h200 nvl", "bf16")
    assert (sxm.device, nvl.device) == ("H200 SXM", "H200 NVL")
    peak, reason = peak_by_name("H200", "bf16")
    assert peak is None and reason.endswith("ambiguous, it names H200 NVL, H200 SXM; say which")


def test_cli_uses_the_mfu_measured_in_results(bench, tmp_path):
    run = Path(tmp_path) / "results" / "model_size" / "20261128-100000"
    run.mkdir(parents=True)
    (run / "records.jsonl").write_text(json.dumps(_record("a", 0.5)) + "\n")
    done = bench("estimate", "--params", "1B", "--json")
    assert done.returncode == 0, done.stderr
    compute = json.loads(done.stdout)["compute"]
    assert compute["mfu"] == 0.5 and compute["mfu_source"].startswith("measured: model_size/r1")
    assert compute["time_s"] == pytest.approx(1.2e20 / 1e14)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "-1"], "--params '-1': not a positive number"),
        (["--params", "1B", "--mfu", "1.5"], "--mfu 1.5: a fraction of the peak"),
        (["--params", "1B", "--mfu", "0"], "--mfu '0': must be a number > 0"),
        (["--params", "1B", "--mfu", "x"], "--mfu 'x': must be a number > 0"),
        (["--params", "1B", "--mfu", "0.4", "--gpu", "Voodoo5"], "allowed: H200 NVL, H200 SXM"),
        (["--params", "1B", "--mfu", "0.4", "--gpu", "H200 SXM", "--gpus", "2.5"], "an integer"),
        (["--params", "1B", "--mfu", "0.4", "--gpu", "H200 SXM", "--pue", "0.9"], "--pue '0.9'"),
        (["--params", "1B", "--mfu", "0.4", "--gpu", "H200 SXM", "--seq-len", "64"], "go together"),
        (["--params", "1B", "--mfu", "0.4", "--gpu", "h100"], "it names H100 NVL, H100 PCIe"),
        (["--params", "1B", "--mfu", "0.4", "--gpu", "H200"], "it names H200 NVL, H200 SXM"),
        (["--params", "1B", "--gpu", "Voodoo5"], "--gpu 'Voodoo5': unknown GPU"),
        (["--params", "1B", "--mfu", "0.4", "--gpu", ""], "--gpu '': unknown GPU; allowed: H200"),
        (["--params", "1B"], "pass --mfu"),
        (["--params", "1B", "--mfu", "0.4"], "needs a peak: pass --gpu NAME"),
    ],
)
def test_cli_bad_values_are_one_line_exit_2(bench, args, message):
    done = bench("estimate", *args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_gpu_names_as_typed_as_nvml_prints_them_or_by_an_unambiguous_prefix():
    def device(name: str) -> str:
        return estimate(Inputs(params=1e9, mfu=0.4, gpu=name), Measured())["compute"]["peak_device"]

    assert device("h100  sxm") == "H100 SXM"  # the table's name, case and spaces aside
    assert device("NVIDIA H100 80GB HBM3") == "H100 SXM"  # NVML's name of the SXM part
    assert device("NVIDIA H200") == "H200 SXM"  # NVML's name of the SXM part ("H200": ambiguous)
    assert device("rtx 40") == "RTX 4090"  # the only name starting so
