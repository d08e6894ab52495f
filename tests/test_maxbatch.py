"""The max-batch search, probe by probe, against a device whose memory holds a known batch."""

from bench.run.launcher import Job
from bench.run.maxbatch import probe_case, search
from bench.spec.case import Case


def device_holding(largest: int, probed: list[int]):
    """Stands in for the device: a batch fits when it is at most ``largest``."""

    def run(job: Job) -> dict:
        batch = job.case.batch_size
        probed.append(batch)
        if batch > largest:
            return {"status": "oom", "reason": "out of memory"}
        return {"status": "ok", "metrics": {"peak_rss_bytes": 1000 * batch, "num_params": 7}}

    return run


def test_doubles_then_bisects_to_the_largest_batch_that_fits():
    case = Case.from_dict({"workload": "mlp", "batch_size": "max", "max_batch_limit": 4096})
    probed: list[int] = []
    seen: list[tuple[int, str]] = []
    result = search(
        Job(case, 0),
        device_holding(300, probed),
        lambda j, r: seen.append((j.case.batch_size, r["status"])),
    )
    # From the mlp's default batch of 64: 64, 128, 256 fit; 512 does not; then bisect
    # (256, 512) -> 384 no, 320 no, 288 yes, 304 no, 296 yes, 300 yes, 302 no, 301 no.
    assert probed == [64, 128, 256, 512, 384, 320, 288, 304, 296, 300, 302, 301]
    assert [b for b, _ in seen] == probed  # every probe is recorded
    assert result["status"] == "ok"
    metrics = result["metrics"]
    assert metrics["max_batch_size"] == 300
    assert metrics["peak_rss_bytes"] == 300_000  # the peak memory of the largest batch that fit
    assert metrics["max_batch_capped"] is False and metrics["num_probes"] == 12


def test_halves_when_the_default_batch_does_not_fit():
    case = Case.from_dict({"workload": "mlp", "batch_size": "max"})
    probed: list[int] = []
    result = search(Job(case, 0), device_holding(20, probed), lambda j, r: None)
    # 64 no, 32 no, 16 yes; bisect (16, 32): 24 no, 20 yes, 22 no, 21 no.
    assert probed == [64, 32, 16, 24, 20, 22, 21]
    assert result["metrics"]["max_batch_size"] == 20


def test_nothing_fits_and_the_limit_caps_the_search():
    case = Case.from_dict({"workload": "mlp", "batch_size": "max", "max_batch_limit": 100})
    nothing = search(Job(case, 0), device_holding(0, []), lambda j, r: None)
    assert nothing["status"] == "oom" and "not even batch_size = 1" in nothing["reason"]
    probed: list[int] = []
    capped = search(Job(case, 0), device_holding(10**6, probed), lambda j, r: None)
    assert probed == [64, 100]
    assert capped["metrics"]["max_batch_size"] == 100 and capped["metrics"]["max_batch_capped"]


def test_a_probe_that_fails_otherwise_ends_the_search_with_its_status():
    case = Case.from_dict({"workload": "mlp", "batch_size": "max"})
    result = search(Job(case, 0), lambda job: {"status": "error", "reason": "boom"}, print)
    assert result["status"] == "error" and result["reason"] == "probe at batch_size = 64: boom"


def test_probe_runs_a_few_steps_of_the_same_case():
    case = Case.from_dict(
        {"workload": "gpt", "batch_size": "max", "compile": "reduce-overhead", "device": "cuda"}
    )
    probe = probe_case(case, 48)
    assert probe.batch_size == 48 and probe.warmup_steps == 2  # CUDA graphs record in 2 steps
    assert (probe.min_steps, probe.max_steps, probe.repeats) == (3, 3, 1)
    assert probe.model_size == case.model_size and probe.compile == case.compile
