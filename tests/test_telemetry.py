"""Telemetry of the measured window: the GPU sampler driven by a fake NVML (the hardware
boundary), the host sampler on this machine's real process, the sampler thread, the timeline,
``bench env``'s NVML section, and a real CPU run's record."""

import json
import sys
import time

import fake_pynvml
import pytest
import torch
from conftest import write_suite
from fake_pynvml import FUNCTION_NOT_FOUND, NOT_SUPPORTED, UNKNOWN, Err, FakeGpu

from bench.cli import main as cli
from bench.errors import ConfigError
from bench.machine import nvml
from bench.spec.case import Case
from bench.telemetry import gpu
from bench.telemetry.host import HostProbe
from bench.telemetry.sampler import Sampler
from bench.telemetry.timeline import downsample

TIMES = [0.0, 0.1, 0.2, 0.3]


def sampled(monkeypatch, fake_gpu: FakeGpu, times=TIMES, steps=10, per_step=32, **options):
    """Sample ``fake_gpu`` at ``times`` through bench.machine.nvml, and summarise the window."""
    fake_pynvml.install(monkeypatch, [fake_gpu], **options)
    session = nvml.Session()
    probe = gpu.GpuProbe([session.device(uuid=fake_gpu.uuid)])
    for t in times:
        probe.sample(t)
    return probe.summary(times[-1] - times[0], steps, per_step)


def test_energy_per_step_and_per_sample_come_from_the_counter_delta(monkeypatch):
    # 5000 J when the window starts, 5200 J when it ends: 200 J over 10 steps of 32 samples.
    counter = FakeGpu(script={"energy_mj": [5_000_000, 5_060_000, 5_130_000, 5_200_000]})
    summary = sampled(monkeypatch, counter)
    assert summary["energy_j"] == pytest.approx(200.0)
    assert summary["energy_source"] == "counter"
    assert summary["energy_per_step_j"] == pytest.approx(20.0)
    assert summary["energy_per_sample_j"] == pytest.approx(200.0 / 320)
    (device,) = summary["devices"]
    assert device["power_source"] == "instant"
    assert device["power_mean_w"] == pytest.approx(650.0)  # the fake's instant field, 650000 mW
    assert device["num_samples"] == 4
    assert gpu.flags(summary) == []


def test_an_energy_counter_that_wraps_still_gives_the_energy_used(monkeypatch):
    # 30 J below 2**64 mJ at the start, 15 J past the wrap at the end: 45 J.
    top = 2**64
    wrapping = FakeGpu(script={"energy_mj": [top - 30_000, top - 10_000, 5_000, 15_000]})
    summary = sampled(monkeypatch, wrapping)
    assert summary["energy_j"] == pytest.approx(45.0)
    assert summary["energy_source"] == "counter"


def test_clock_event_bits_decode_to_nvml_names():
    assert nvml.decode_clock_events(0x1 | 0x4 | 0x40) == [
        "gpu_idle",
        "sw_power_cap",
        "hw_thermal_slowdown",
    ]
    assert nvml.decode_clock_events(0x800) == ["bit_0x800"]  # a reason newer than this table
    assert nvml.is_throttled(0x1 | 0x2) is False  # idle and application clocks are benign
    assert nvml.is_throttled(0x20) is True
    assert nvml.is_throttled(None) is None


def test_throttled_samples_are_counted_and_flag_the_record(monkeypatch):
    # Idle, idle + application clocks (benign), power cap, power cap + thermal: 2 of 4 throttled.
    events = FakeGpu(script={"clock_events": [0x1, 0x1 | 0x2, 0x4, 0x4 | 0x40]})
    summary = sampled(monkeypatch, events)
    (device,) = summary["devices"]
    assert device["throttled_fraction"] == 0.5
    assert summary["throttled_fraction"] == 0.5
    assert device["clock_event_fractions"] == {
        "applications_clocks_setting": 0.25,
        "gpu_idle": 0.5,
        "hw_thermal_slowdown": 0.25,
        "sw_power_cap": 0.5,
    }
    assert device["clock_events_source"] == "clocks_event_reasons"
    assert gpu.flags(summary) == ["throttled_in_window"]


def test_only_benign_clock_events_do_not_flag_the_record(monkeypatch):
    summary = sampled(monkeypatch, FakeGpu(script={"clock_events": [0x1, 0x2, 0x3, 0x0]}))
    assert summary["throttled_fraction"] == 0.0
    assert "throttled_in_window" not in gpu.flags(summary)


@pytest.mark.parametrize("has_clock_events", [True, False])
def test_an_older_driver_or_library_falls_back_to_throttle_reasons(monkeypatch, has_clock_events):
    # Driver without nvmlDeviceGetCurrentClocksEventReasons (FUNCTION_NOT_FOUND), or an
    # nvidia-ml-py that predates the call: the deprecated ThrottleReasons call answers instead.
    old = FakeGpu(
        script={"clock_events": [Err(FUNCTION_NOT_FOUND)], "throttle_reasons": [0x20, 0x0]}
    )
    summary = sampled(monkeypatch, old, has_clock_events=has_clock_events)
    (device,) = summary["devices"]
    assert device["clock_events_source"] == "throttle_reasons"
    assert device["throttled_fraction"] == 0.25  # 0x20 (sw thermal), then 0x0 three times
    assert old.calls["clock_events"] == (1 if has_clock_events else 0)  # tried once, then not


def test_fields_an_older_gpu_lacks_are_null_and_energy_integrates_power(monkeypatch):
    # A pre-Volta board: no energy counter, no instant power field; power from the average call.
    # Trapezoids over 100, 200, 300 W at 0.1 s apart: 15 J + 25 J = 40 J (mean 200 W x 0.2 s).
    older = FakeGpu(
        name="Tesla P100-PCIE-16GB",
        script={
            "energy_mj": [Err(NOT_SUPPORTED)],
            "power_instant_mw": [Err(NOT_SUPPORTED)],
            "power_average_mw": [100_000, 200_000, 300_000],
            "temperature": [Err(NOT_SUPPORTED)],
        },
    )
    summary = sampled(monkeypatch, older, times=[0.0, 0.1, 0.2], steps=4, per_step=8)
    (device,) = summary["devices"]
    assert device["power_source"] == "average"
    assert device["unsupported"] == ["energy", "temperature"]
    assert device["temperature_max_c"] is None  # null, never invented
    assert summary["energy_source"] == "integrated_power"
    assert summary["energy_j"] == pytest.approx(40.0)
    assert summary["energy_per_step_j"] == pytest.approx(10.0)
    assert gpu.flags(summary) == ["energy_from_integrated_power"]
    # Unsupported quantities are asked once, not at every sample.
    assert (older.calls["energy_mj"], older.calls["power_instant_mw"]) == (1, 1)
    assert device["num_read_errors"] == 0


def test_nvml_errors_mid_run_leave_that_sample_null_and_are_counted(monkeypatch):
    flaky = FakeGpu(
        script={
            "energy_mj": [1_000_000, Err(UNKNOWN), 1_060_000, 1_090_000],
            "gpu_util": [90, Err(UNKNOWN), 70, 80],
        }
    )
    summary = sampled(monkeypatch, flaky)
    (device,) = summary["devices"]
    # The counter accumulates: a lost reading in between does not change the window's energy.
    assert summary["energy_j"] == pytest.approx(90.0)
    assert summary["energy_source"] == "counter"
    assert device["gpu_util_mean_percent"] == pytest.approx(80.0)  # (90 + 70 + 80) / 3
    assert device["num_read_errors"] == 2
    assert device["first_error"] == "utilization: Unknown Error"
    assert flaky.calls["energy_mj"] == 4  # an error is not "unsupported": asked again
    assert gpu.flags(summary) == ["nvml_read_errors"]


def test_a_lost_reading_at_the_window_edge_falls_back_to_integrated_power(monkeypatch):
    edge = FakeGpu(script={"energy_mj": [1_000_000, 1_050_000, 1_100_000, Err(UNKNOWN)]})
    summary = sampled(monkeypatch, edge)
    # 650 W instant power throughout, over the 0.3 s window.
    assert summary["energy_source"] == "integrated_power"
    assert summary["energy_j"] == pytest.approx(650 * 0.3)
    assert "energy_from_integrated_power" in gpu.flags(summary)


def test_without_nvml_every_gpu_figure_is_null_with_the_reason(monkeypatch):
    # None in sys.modules: `import pynvml` raises ImportError, as without nvidia-ml-py.
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(nvml.NvmlUnavailable, match="NVML unavailable"):
        nvml.Session()
    state = nvml.inventory()
    assert state["state"] == "unavailable" and state["devices"] == []
    assert "pynvml" in state["reason"]
    summary = gpu.unavailable(state["reason"])
    assert summary["available"] is False and summary["reason"] == state["reason"]
    assert all(summary[key] is None for key in gpu.SUMMARY_KEYS)
    assert gpu.flags(summary) == []


def test_bench_env_shows_nvml_and_every_device_it_sees(monkeypatch, capsys):
    old = FakeGpu(
        name="Tesla V100-SXM2-16GB",
        uuid="GPU-v100",
        script={"power_instant_mw": [Err(NOT_SUPPORTED)]},
    )
    fake_pynvml.install(monkeypatch, [FakeGpu(), old])
    assert cli.main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    state = env["nvml"]
    assert (state["state"], state["driver_version"]) == ("ok", "565.57.01")
    assert [d["name"] for d in state["devices"]] == ["NVIDIA H200", "Tesla V100-SXM2-16GB"]
    h200, v100 = state["devices"]
    assert h200["power_limit_w"] == 700.0 and h200["telemetry"]["power"] == "instant"
    assert v100["telemetry"]["power"] == "average"
    assert env["driver"]["version"] == "565.57.01"
    assert cli.main(["env"]) == 0  # the table form names each device too
    table = capsys.readouterr().out
    assert "Tesla V100-SXM2-16GB" in table and "GPU-v100" in table


class Counting:
    def __init__(self, fail_at: int | None = None) -> None:
        self.times: list[float] = []
        self.fail_at = fail_at

    def sample(self, t_s: float) -> None:
        if len(self.times) == self.fail_at:
            raise RuntimeError("probe failed")
        self.times.append(t_s)


def test_the_sampler_brackets_the_window_and_samples_in_between():
    probe = Counting()
    sampler = Sampler([probe], interval_s=0.02)
    sampler.start()
    time.sleep(0.2)
    sampler.stop()
    assert probe.times[0] == sampler.start_s and probe.times[-1] == sampler.stop_s
    assert probe.times == sorted(probe.times)
    # About 0.2 / 0.02 = 10 ticks plus the two ends; fewer only if the machine starves the thread.
    assert 5 <= len(probe.times) <= 13
    assert sampler.span_s == pytest.approx(0.2, abs=0.1)


def test_a_failing_probe_raises_in_the_caller_at_stop():
    sampler = Sampler([Counting(fail_at=2)], interval_s=0.01)
    sampler.start()
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="probe failed"):
        sampler.stop()


def test_the_host_probe_sees_this_process_work_and_grow():
    probe = HostProbe(interval_s=0.05)
    sampler = Sampler([probe], interval_s=0.05)
    sampler.start()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:  # one thread busy on the CPU
        pass
    held = torch.ones(50 * 2**20)  # 200 MiB, written, so resident
    time.sleep(0.25)
    sampler.stop()
    del held
    summary = probe.summary()
    # A busy thread is 100% of a core on an idle machine; other processes may take some of it.
    assert 20 < summary["process_cpu_percent_mean"] <= 100 * torch.get_num_threads() + 20
    assert summary["rss_sampled_peak_bytes"] - summary["rss_start_bytes"] >= 180 * 2**20
    assert summary["num_samples"] >= 8
    timeline = probe.timeline()
    assert timeline["t_s"][0] == 0.0 and len(timeline["t_s"]) == summary["num_samples"]


def test_the_timeline_keeps_at_most_max_points_bucket_means():
    times = [float(i) for i in range(10)]
    values: list[float | None] = [None, None, *[float(i) for i in range(2, 10)]]
    out = downsample(times, {"v": values}, max_points=4)
    # Buckets of 2, 3, 2, 3 samples: [0, 1], [2, 3, 4], [5, 6], [7, 8, 9].
    assert out["t_s"] == [0.5, 3.0, 5.5, 8.0]
    assert out["v"] == [None, 3.0, 5.5, 8.0]
    assert downsample(times[:3], {"v": values[:3]}, max_points=4)["t_s"] == [0.0, 1.0, 2.0]


def test_telemetry_interval_is_validated_and_not_part_of_the_case_id():
    with pytest.raises(ConfigError, match="telemetry_interval_s"):
        Case.from_dict({"telemetry_interval_s": 0.001})
    with pytest.raises(ConfigError, match="telemetry_interval_s"):
        Case.from_dict({"telemetry_interval_s": "fast"})
    assert Case.from_dict({}).id == Case.from_dict({"telemetry_interval_s": 0.5}).id


MLP_CASE = """
[suite]
name = "telemetry"
[base]
workload = "mlp"
model_size = "base"
batch_size = 64
data = "digits"
threads = 1
repeats = 1
warmup_steps = 2
min_steps = 10
min_time_s = 0.3
max_time_s = 0.6
telemetry_interval_s = 0.05
"""


def test_a_cpu_run_records_host_telemetry_flops_and_mfu(tmp_path, bench):
    path = write_suite(tmp_path, "telemetry", MLP_CASE)
    done = bench("run", str(path), "--out", "res")
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "res" / "telemetry").iterdir()
    (record,) = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert record["status"] == "ok", record["reason"]
    metrics = record["metrics"]
    host = metrics["host"]
    assert host["num_samples"] >= 3 and host["interval_s"] == 0.05
    assert 0 < host["process_cpu_percent_mean"] <= 120  # one torch thread
    assert host["rss_sampled_peak_bytes"] > 0
    assert record["samples"]["telemetry"]["host"]["t_s"][0] == 0.0
    # No GPU: null figures, with the reason.
    assert metrics["gpu"]["available"] is False and "cpu" in metrics["gpu"]["reason"]
    assert metrics["gpu"]["energy_per_sample_j"] is None
    assert (metrics["num_alloc_retries"], metrics["num_ooms"]) == (None, None)
    flops = metrics["flops"]
    assert flops["per_step"] == 154_075_136  # the hand count of test_flops
    assert flops["achieved_per_s"] == pytest.approx(
        flops["per_step"] / metrics["step_time_s"]["median"]
    )
    assert 0 < flops["mfu"] < 1.5  # a measured CPU peak: a noisy machine may beat it a little
    assert flops["peak_source"].startswith("measured: torch.mm")
    assert flops["peak_dtype"] == "fp32"
    assert "throttled_in_window" not in record["flags"]


def test_window_telemetry_on_cuda_samples_the_case_device_and_reads_the_allocator(monkeypatch):
    # The CUDA side is faked at its boundary too: the device's UUID and the allocator's counters.
    from bench.telemetry import window

    h200 = FakeGpu(
        uuid="GPU-h200",
        script={"energy_mj": [7_000_000, 7_000_500], "clock_events": [0x0, 0x4]},
    )
    fake_pynvml.install(monkeypatch, [FakeGpu(uuid="GPU-other"), h200])
    monkeypatch.setattr(window, "cuda_uuid", lambda device: "GPU-h200")
    counts = iter(
        [{"num_alloc_retries": 3, "num_ooms": 1}, {"num_alloc_retries": 5, "num_ooms": 1}]
    )
    monkeypatch.setattr(window, "_allocator_counts", lambda device: next(counts))
    telemetry = window.WindowTelemetry(torch.device("cuda"), interval_s=0.05)
    telemetry.start()
    time.sleep(0.12)
    telemetry.stop()
    result = telemetry.result(num_steps=10, samples_per_step=4)
    summary = result.metrics["gpu"]
    (device,) = summary["devices"]
    assert (device["index"], device["name"]) == (1, "NVIDIA H200")  # found by UUID, not index 0
    # The counter read 7000 J at start, 7000.5 J from then on: 0.5 J over 10 steps.
    assert summary["energy_j"] == pytest.approx(0.5)
    assert summary["energy_per_sample_j"] == pytest.approx(0.5 / 40)
    assert summary["interval_s"] == 0.05
    assert result.metrics["num_alloc_retries"] == 2  # inside the window
    assert result.metrics["num_ooms"] == 1  # since the process started
    assert result.flags == ["throttled_in_window"]  # sw_power_cap from the second sample on
    (timeline,) = result.samples["gpu"]
    assert timeline["index"] == 1 and timeline["throttled"][0] == 0.0
    assert result.samples["host"]["t_s"][0] == 0.0
