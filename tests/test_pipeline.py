"""The image data pipeline: its settings, cleaning and statistics, batches, workers, the data wait
measured by the window, and what a record says about it."""

import json
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from conftest import write_suite

from bench.errors import ConfigError
from bench.measure.timing import CudaEventTimer, HostTimer
from bench.measure.window import WindowPolicy, run_window
from bench.spec.case import Case
from bench.spec.vision_shapes import AUGMENTS
from bench.workloads import data, pipeline, preprocess
from bench.workloads.registry import build

CPU = torch.device("cpu")


def _case(**values: object) -> Case:
    base = {"workload": "cnn", "model_size": "tiny", "data": "digits", "batch_size": 8}
    return Case.from_dict({**base, **values})


# --- settings -----------------------------------------------------------------------------------


def test_loader_settings_apply_to_vision_workloads_with_real_data_only() -> None:
    cpu = _case()
    assert (cpu.image_size, cpu.augment, cpu.num_workers, cpu.pin_memory) == (32, "none", 0, None)
    cuda = _case(device="cuda", pin_memory=True, num_workers=2, augment="affine")
    assert (cuda.augment, cuda.num_workers, cuda.pin_memory) == ("affine", 2, True)
    synthetic = _case(data="synthetic", augment="affine", num_workers=2)
    assert (synthetic.augment, synthetic.num_workers, synthetic.image_size) == (None, None, 32)
    for workload in ("mlp", "gpt"):
        other = Case.from_dict(
            {"workload": workload, "augment": "affine", "num_workers": 2, "image_size": 64}
        )
        assert (other.augment, other.num_workers, other.pin_memory, other.image_size) == (
            (None,) * 4
        )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("augment", "blur", "allowed: none, crop-flip, affine, affine-crop-flip"),
        ("num_workers", -1, "must be an integer >= 0"),
        ("num_workers", 1.5, "must be an integer"),
        ("pin_memory", "yes", "must be true or false"),
        ("image_size", 0, "must be a positive integer"),
    ],
)
def test_bad_loader_values_are_config_errors(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _case(**{key: value})


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("augment=blur", "augment = 'blur': allowed: none, crop-flip, affine, affine-crop-flip"),
        ("num_workers=-1", "num_workers = -1: must be an integer >= 0"),
    ],
)
def test_bad_loader_value_on_the_command_line_is_one_line_exit_2(
    bench, tmp_path: Path, setting: str, expected: str
) -> None:
    write_suite(tmp_path, "s", '[base]\nworkload = "cnn"\n')
    done = bench("run", "s", "--dry-run", "--set", setting)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and expected in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "results").exists()


def test_recipe_names_match_the_validated_ones() -> None:
    assert pipeline.RECIPES == AUGMENTS
    assert pipeline.recipe("none", 32) is None


# --- preparation --------------------------------------------------------------------------------


def _images(*levels: int) -> torch.Tensor:
    """One 1x2x2 image per entry: the level in the top-left pixel, 0 elsewhere (255 for 'blank'
    images marked by -1: one level everywhere)."""
    out = torch.zeros(len(levels), 1, 2, 2, dtype=torch.uint8)
    for i, level in enumerate(levels):
        if level < 0:
            out[i] = 255
        else:
            out[i, 0, 0, 0] = level
    return out


def test_cleaning_drops_bad_labels_blanks_repeats_and_leaks_by_hand() -> None:
    # Train: A, B, A again, a blank, C with label 12. Validation: B (in train), D, D again.
    stored = data.StoredImages(
        _images(10, 20, 10, -1, 30),
        torch.tensor([1, 2, 1, 3, 12]),
        _images(20, 40, 40),
        torch.tensor([2, 4, 4]),
        "hand",
    )
    cleaned, dropped = preprocess.clean(stored)
    assert dropped == {"bad_label": 1, "blank": 1, "duplicate_train": 1, "duplicate_val": 2}
    assert cleaned.x_train[:, 0, 0, 0].tolist() == [10, 20] and cleaned.y_train.tolist() == [1, 2]
    assert cleaned.x_val[:, 0, 0, 0].tolist() == [40] and cleaned.y_val.tolist() == [4]


def test_channel_statistics_by_hand() -> None:
    # Channel 0: pixels 0, 255, 255, 255 -> 0, 1, 1, 1: mean 0.75, variance 0.75 - 0.75^2.
    # Channel 1: all 51 -> 0.2, no spread.
    images = torch.tensor([[[[0, 255]], [[51, 51]]], [[[255, 255]], [[51, 51]]]], dtype=torch.uint8)
    mean, std = preprocess.channel_stats(images)  # images: (2, 2, 1, 2)
    assert mean == pytest.approx((0.75, 0.2))
    assert std == pytest.approx(((0.75 - 0.5625) ** 0.5, 0.0), abs=1e-7)


def test_digits_are_prepared_and_named() -> None:
    work = build(_case(), CPU, torch.float32)
    info = work.data
    assert (info.name, info.num_train, info.num_val) == ("digits", 1437, 360)
    assert info.pipeline["dropped"] == {
        "bad_label": 0,
        "blank": 0,
        "duplicate_train": 0,
        "duplicate_val": 0,
    }
    stored = data.stored_digits()
    assert info.pipeline["mean"] == pytest.approx([stored.x_train.double().mean().item() / 255])
    assert info.sha256 == data.sha256_of(stored.x_train, stored.y_train, stored.x_val, stored.y_val)
    assert info.pipeline["batch_steps"][0] == "resize 28x28 -> 32x32"
    assert info.preprocess_s > 0


# --- batches ------------------------------------------------------------------------------------


def test_unaugmented_batch_is_the_stored_images_normalised_by_hand() -> None:
    # image_size 28 = the stored side: no resize, so the batch is exactly (x / 255 - mean) / std.
    work = build(_case(image_size=28, batch_size=5, seed=3), CPU, torch.float32)
    x, y = work.next_batch()
    stored = data.stored_digits()
    order = torch.randperm(1437, generator=torch.Generator().manual_seed(3))[:5]
    mean, std = work.data.pipeline["mean"][0], work.data.pipeline["std"][0]
    expected = (stored.x_train[order].double() / 255 - mean) / std  # (5, 1, 28, 28)
    assert x.shape == (5, 3, 28, 28)
    for channel in range(3):  # grey repeated to three channels
        # float32 arithmetic against float64: equal to float32's resolution
        torch.testing.assert_close(
            x[:, channel : channel + 1].double(), expected, atol=1e-6, rtol=0
        )
    assert torch.equal(y, stored.y_train[order])


@pytest.mark.parametrize("augment", [a for a in AUGMENTS if a != "none"])
def test_augment_changes_the_images_not_the_labels(augment: str) -> None:
    plain_x, plain_y = build(_case(), CPU, torch.float32).next_batch()
    x, y = build(_case(augment=augment), CPU, torch.float32).next_batch()
    assert torch.equal(y, plain_y)  # the same images were drawn
    changed = [not torch.equal(a, b) for a, b in zip(x, plain_x)]
    assert sum(changed) >= 6  # of 8 (a flip alone leaves half of a crop-flip batch's images)
    again_x, _ = build(_case(augment=augment), CPU, torch.float32).next_batch()
    assert torch.equal(again_x, x)  # seeded: the same augmentation again


def test_sampler_visits_every_image_once_per_epoch_and_drops_the_partial_batch() -> None:
    batches = iter(pipeline.SeededBatches(10, 3, seed=0))
    epoch = [next(batches) for _ in range(3)]  # 3 x 3 of 10 images; the 10th dropped
    indices = [i for batch in epoch for i, _ in batch]
    assert len(set(indices)) == 9
    second = [i for _ in range(3) for i, _ in next(batches)]
    assert len(set(second)) == 9 and second != indices
    seeds = [seed for batch in epoch for _, seed in batch]
    assert len(set(seeds)) == 9  # one augmentation seed per sample


def test_batch_larger_than_the_data_spans_epochs() -> None:
    batches = iter(pipeline.SeededBatches(4, 6, seed=0))
    first, second = next(batches), next(batches)
    assert len(first) == len(second) == 6
    # Epochs 1, 2, 3 are three permutations of 4: 12 samples, each image three times.
    counts = torch.bincount(torch.tensor([i for i, _ in first + second]), minlength=4)
    assert counts.tolist() == [3, 3, 3, 3]


def test_two_workers_give_the_same_batches_as_none_and_shut_down() -> None:
    case = _case(augment="affine-crop-flip", batch_size=16)
    inline = build(case, CPU, torch.float32)
    expected = [inline.next_batch() for _ in range(4)]
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    workers = build(Case.from_dict({**case.to_dict(), "num_workers": 2}), CPU, torch.float32)
    got = [workers.next_batch() for _ in range(4)]
    forked = [p for p in me.children() if p.pid not in before]
    assert len(forked) == 2  # the DataLoader's workers, forked from this process
    for (x, y), (x2, y2) in zip(expected, got):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    workers.close()
    psutil.wait_procs(forked, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in forked)


# --- data sources -------------------------------------------------------------------------------


def test_cifar_arrays_become_channels_first_tensors() -> None:
    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    images[1, 4, 5, 2] = 200  # image 1, row 4, column 5, blue
    x, y = data.cifar_tensors(images, [3, 7])
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.uint8
    assert x[1, 2, 4, 5] == 200 and int(x.sum()) == 200
    assert y.tolist() == [3, 7] and y.dtype == torch.int64


@pytest.fixture
def distinct_mnist(tmp_path: Path) -> Path:
    """A 6 + 3 image MNIST in torchvision's raw layout, every image different."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, num, offset in (("train", 6, 0), ("t10k", 3, 6)):
        # Image n: pixel offset + n white, the rest black.
        pixels = b"".join(
            bytes(255 if i == offset + n else 0 for i in range(28 * 28)) for n in range(num)
        )
        header = struct.pack(">4i", 2051, num, 28, 28)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + pixels)
        labels = struct.pack(">2i", 2049, num) + bytes(range(num))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)
    return tmp_path


def test_auto_takes_mnist_when_present_without_cifar(distinct_mnist: Path) -> None:
    assert not data.cifar10_present(distinct_mnist)
    work = build(
        _case(data="auto", data_path=str(distinct_mnist), batch_size=2), CPU, torch.float32
    )
    assert (work.data.name, work.data.num_train, work.data.num_val) == ("mnist", 6, 3)
    assert work.data.pipeline["stored_shape"] == [1, 28, 28]
    assert work.next_batch()[0].shape == (2, 3, 32, 32)


def test_auto_falls_back_to_digits(tmp_path: Path) -> None:
    work = build(_case(data="auto", data_path=str(tmp_path)), CPU, torch.float32)
    assert work.data.name == "digits"


# --- the data wait ------------------------------------------------------------------------------


def test_host_timer_data_wait_runs_from_the_step_start_to_its_data_mark() -> None:
    timer = HostTimer()
    # perf_counter readings: block start 1.0; step 1's batch ready at 1.2, it ends at 1.5;
    # step 2's batch ready at 2.5, it ends at 3.0.
    timer._blocks = [[1.0, 1.5, 3.0]]
    timer._data = [[(0, 1.2), (1, 2.5)]]
    assert timer.collect() == [0.5, 1.5]
    assert timer.data_wait_s == pytest.approx([0.2, 1.0])


class _Clock:
    now_ms = 0.0


class _Event:
    """Stands in for torch.cuda.Event (the hardware boundary): records the fake device clock."""

    waits: list[float] = []

    def __init__(self, clock: _Clock):
        self.clock, self.at_ms = clock, None

    def record(self) -> None:
        self.at_ms = self.clock.now_ms

    def synchronize(self) -> None:
        _Event.waits.append(self.at_ms)

    def elapsed_time(self, end: "_Event") -> float:
        return end.at_ms - self.at_ms


def test_cuda_timer_reads_data_waits_with_their_block_and_waits_no_more() -> None:
    clock, _Event.waits = _Clock(), []
    timer = CudaEventTimer(make_event=lambda: _Event(clock))
    timer.start_block()
    for wait_ms, compute_ms in ((1.0, 4.0), (3.0, 2.0)):
        clock.now_ms += wait_ms
        timer.mark_data()
        clock.now_ms += compute_ms
        timer.mark()
    assert timer.collect() == [] and timer.data_wait_s == []  # the block may still run
    timer.start_block()
    assert timer.collect() == pytest.approx([0.005, 0.005])
    assert timer.data_wait_s == pytest.approx([0.001, 0.003])
    assert _Event.waits == [10.0]  # one wait, on the block's last event


class _SlowDigits(torch.utils.data.Dataset):
    """A deliberately slow dataset: 5 ms per image, on the wall clock."""

    def __len__(self) -> int:
        return 1000

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        time.sleep(0.005)
        return torch.full((4,), float(index % 10)), index % 10


def test_window_data_wait_is_the_time_spent_fetching() -> None:
    model = torch.nn.Linear(4, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = iter(torch.utils.data.DataLoader(_SlowDigits(), batch_size=4))

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    fetch_s = []

    def fetch() -> tuple[torch.Tensor, torch.Tensor]:
        start = time.perf_counter()  # timed independently of the window's timer
        batch = next(batches)
        fetch_s.append(time.perf_counter() - start)
        return batch

    policy = WindowPolicy(min_steps=10, max_steps=10, min_time_s=0, max_time_s=60, ci_target=0.01)
    result = run_window(step, HostTimer(), policy, 5, CPU, fetch=fetch)
    assert len(result.data_wait_s) == len(result.step_times_s) == 10
    # Four images of 5 ms each per batch: at least 20 ms of every step is the wait.
    assert min(result.data_wait_s) >= 0.020
    # The wait is the fetch and nothing else of the step: its total matches the fetch's own
    # clock to within the timer's bookkeeping (a clock read per step), the rest is training.
    assert sum(result.data_wait_s) == pytest.approx(sum(fetch_s), rel=0.05)
    assert all(w < t for w, t in zip(result.data_wait_s, result.step_times_s))


# --- records ------------------------------------------------------------------------------------

RUN_SUITE = """
[suite]
name = "pipeline"
[base]
workload = "cnn"
model_size = "tiny"
data = "digits"
batch_size = 32
threads = 1
repeats = 1
warmup_steps = 2
min_steps = 15
max_steps = 15
min_time_s = 0.0
[matrix]
augment = ["none", "affine-crop-flip"]
"""


def test_record_holds_the_data_wait_and_heavy_augment_waits_longer(bench, tmp_path: Path) -> None:
    write_suite(tmp_path, "pipeline", RUN_SUITE)
    done = bench("run", "pipeline", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    (records,) = list((tmp_path / "results" / "pipeline").glob("*/records.jsonl"))
    by_augment = {}
    for line in records.read_text().splitlines():
        record = json.loads(line)
        metrics = record["metrics"]
        assert 0 <= metrics["data_wait_fraction"] <= 1
        assert len(record["samples"]["data_wait_s"]) == metrics["step_time_s"]["n"] == 15
        assert record["runtime"]["data"]["name"] == "digits"
        assert record["runtime"]["data"]["pipeline"]["dropped"]["blank"] == 0
        assert record["timing"]["preprocess_s"] > 0
        by_augment[record["config"]["augment"]] = metrics["data_wait_fraction"]
    # Measured: about 0.03 without augmentation, 0.4 with it (a random affine per image costs
    # about 0.5 ms here, 16 ms a batch, against 40-70 ms of training step).
    assert by_augment["affine-crop-flip"] > by_augment["none"] + 0.1


def _marked(marker: bytes) -> dict[int, int]:
    """Live processes whose environment holds ``marker``: pid -> parent pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                found[int(entry.name)] = psutil.Process(int(entry.name)).ppid()
        except (OSError, psutil.Error):
            continue  # gone meanwhile, or a zombie
    return found


def _depth(pid: int, parents: dict[int, int]) -> int:
    """0 for the bench command, 1 for its fork server, 2 for a case, 3 for a case's children."""
    depth = 0
    while parents.get(pid) in parents:
        pid, depth = parents[pid], depth + 1
    return depth


LEAK_SUITE = """
[suite]
name = "workers"
[base]
workload = "cnn"
model_size = "tiny"
data = "digits"
batch_size = 16
num_workers = 2
threads = 1
repeats = 1
warmup_steps = 2
min_steps = 10
max_steps = 10
min_time_s = 0.0
[matrix]
seed = [0, 1]
[[include]]
seed = 1
max_steps = 1000000
min_time_s = 600
max_time_s = 600
timeout_s = 12
"""


def test_dataloader_workers_run_in_cases_and_none_outlive_a_run(
    bench_env: dict[str, str], tmp_path: Path
) -> None:
    marker = f"BENCH_TEST_MARKER={uuid.uuid4().hex}"
    env = {**bench_env, marker.split("=")[0]: marker.split("=")[1]}
    write_suite(tmp_path, "workers", LEAK_SUITE)
    command = [sys.executable, "-m", "bench.cli", "run", "workers", "--device", "cpu"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    most_case_children = 0
    while process.poll() is None:
        parents = _marked(marker.encode())
        children = [pid for pid in parents if _depth(pid, parents) == 3]
        most_case_children = max(most_case_children, len(children))
        time.sleep(0.2)
    assert process.returncode == 1  # a case timed out
    assert most_case_children == 2  # the two DataLoader workers of a case
    (records,) = list((tmp_path / "results" / "workers").glob("*/records.jsonl"))
    statuses = {
        json.loads(line)["config"]["seed"]: json.loads(line)["status"]
        for line in records.read_text().splitlines()
    }
    assert statuses == {0: "ok", 1: "timeout"}
    deadline = time.monotonic() + 10
    while _marked(marker.encode()) and time.monotonic() < deadline:
        time.sleep(0.2)  # the fork server exits once it sees the command gone
    assert _marked(marker.encode()) == {}
