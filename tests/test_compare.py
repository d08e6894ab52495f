"""bench compare's rule on real step times (tests/fixtures/compare, see its README.md)."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from bench.comparison_rule import NO_DRIFT, judge
from bench.errors import UserError
from bench.gate.compare import compare, load_side, parse_thresholds
from bench.gate.metrics import METRIC
from bench.gate.verdict import compare_groups

FIXTURES = ROOT / "tests" / "fixtures" / "compare"
STEP_TIME = METRIC["step_time"]
THROUGHPUT = METRIC["throughput"]
MLP = "e9d0ad6b43d4"  # the tutorial MLP, batch 64, eager, fp32
GPT = "8192be98f411"  # the tiny GPT, batch 8 x 64 tokens
# The quietest 40 consecutive steps of the fixture (GPT, repeat 0): a stretch measured while the
# machine was still, as a dedicated runner or a GPU measures all the time.
QUIET = (GPT, 0, slice(85, 125))


def real_repeats(case_id: str, run: str = "run1") -> list[np.ndarray]:
    """The measured step times of each repeat (process) of a fixture case."""
    records = [json.loads(line) for line in (FIXTURES / run / "records.jsonl").open()]
    return [
        np.array(r["samples"]["step_time_s"])
        for r in sorted(records, key=lambda r: r["repeat"])
        if r["case_id"] == case_id
    ]


def relative_iqr(values) -> float:
    q1, q2, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return (q3 - q1) / q2


def twenty_a_side(rng, steps, factor: float) -> tuple[list, list]:
    """20 real steps a side, two groups of 10 each; CAND's scaled by ``factor``."""
    groups = np.split(rng.choice(steps, size=40, replace=False), 4)
    return groups[:2], [group * factor for group in groups[2:]]


def verdicts_of(draws, seed_base: int = 0) -> Counter:
    return Counter(
        compare_groups(
            STEP_TIME, base, cand, 0.05, 1000, seed_base + i, noise_floor=NO_DRIFT
        ).verdict
        for i, (base, cand) in enumerate(draws)
    )


def show(line: str, capsys) -> None:
    with capsys.disabled():
        print(f"\n    {line}")


def test_a_a_stays_unchanged_across_50_resamplings(capsys):
    # Each resampling deals the 900 real steps of a run (3 processes x 300) at random into six
    # groups of 150, three a side: BASE and CAND are the same measurements, so any verdict but
    # unchanged is a false alarm.
    rng = np.random.default_rng(0)
    found = {}
    for name, case_id in (("GPT", GPT), ("MLP", MLP)):
        steps = np.concatenate(real_repeats(case_id))
        draws = []
        for _ in range(50):
            groups = np.array_split(rng.permutation(steps), 6)
            draws.append((groups[:3], groups[3:]))
        found[name] = verdicts_of(draws)
        false_alarms = found[name]["regressed"] + found[name]["improved"]
        show(
            f"A/A {name}, 50 resamplings of 3 x 150 real steps a side: false-positive rate "
            f"{false_alarms / 50:.0%}, verdicts {dict(found[name])}",
            capsys,
        )
    assert found["GPT"] == {"unchanged": 50}
    # The MLP's three processes ran at 5.5, 6.1 and 6.7 ms: its pooled steps are too spread for
    # a 5% answer, and the rule says so instead of guessing.
    assert found["MLP"]["regressed"] + found["MLP"]["improved"] == 0


def test_a_real_a_a_between_two_runs_is_not_a_regression():
    # Two runs of the same code, a minute apart: the machine's drift is all there is to see.
    base = load_side(str(FIXTURES / "run1"), ROOT)
    comparison = compare(base, load_side(str(FIXTURES / "run2"), ROOT))
    assert not comparison.failed
    assert {case.verdict for case in comparison.cases} <= {"unchanged", "inconclusive"}


def test_a_10_percent_slowdown_with_20_samples_a_side_is_regressed(capsys):
    case_id, repeat, stretch = QUIET
    quiet = real_repeats(case_id)[repeat][stretch]
    assert relative_iqr(quiet) < 0.03  # the fixture's property this test relies on
    rng = np.random.default_rng(1)
    found = verdicts_of([twenty_a_side(rng, quiet, 1.10) for _ in range(50)])
    show(f"10% slowdown, 20 quiet real steps a side, 50 draws: {dict(found)}", capsys)
    assert found == {"regressed": 50}

    # The same test on steps drawn from the whole run, whose spread is 5 to 10 times larger:
    # 20 steps cannot show that the slowdown passes 5%, and the rule does not pretend they do.
    noisy = np.concatenate(real_repeats(MLP))
    found = verdicts_of([twenty_a_side(rng, noisy, 1.10) for _ in range(50)])
    show(f"   on noisy steps (IQR {relative_iqr(noisy):.0%}): {dict(found)}", capsys)
    assert set(found) <= {"regressed", "inconclusive"}


def test_a_2_percent_slowdown_at_a_5_percent_threshold_is_not_regressed(capsys):
    case_id, repeat, stretch = QUIET
    quiet = real_repeats(case_id)[repeat][stretch]
    rng = np.random.default_rng(2)
    quiet_found = verdicts_of([twenty_a_side(rng, quiet, 1.02) for _ in range(50)])
    noisy = np.concatenate(real_repeats(MLP))
    noisy_found = verdicts_of([twenty_a_side(rng, noisy, 1.02) for _ in range(50)])
    show(
        f"2% slowdown, 20 real steps a side, 50 draws: quiet {dict(quiet_found)}, "
        f"noisy {dict(noisy_found)}",
        capsys,
    )
    assert quiet_found["unchanged"] >= 45
    assert "regressed" not in quiet_found and "regressed" not in noisy_found


def test_throughput_is_judged_in_its_own_direction():
    repeats = real_repeats(GPT)
    slower = [steps * 1.10 for steps in repeats]
    rates = [[64 / t for t in steps] for steps in repeats]
    fewer = [[64 / t for t in steps] for steps in slower]
    assert (
        compare_groups(THROUGHPUT, rates, fewer, 0.05, noise_floor=NO_DRIFT).verdict == "regressed"
    )
    assert (
        compare_groups(THROUGHPUT, fewer, rates, 0.05, noise_floor=NO_DRIFT).verdict == "improved"
    )


def test_one_repeat_a_side_cannot_regress():
    # Even every step of one process made 10% slower is not enough: from one process a side,
    # nothing tells how far apart two processes of the same code land.
    (first, *_) = real_repeats(GPT)
    result = compare_groups(STEP_TIME, [first], [first * 1.10], 0.05, noise_floor=NO_DRIFT)
    assert result.ci_low > 1.05 and result.p_value < 1e-6
    assert result.verdict == "inconclusive"
    assert "one repeat on a side" in result.note


@pytest.mark.parametrize(
    ("low", "high", "p_worse", "expected"),
    [
        (1.06, 1.09, 0.001, "regressed"),
        (1.06, 1.09, 0.2, "inconclusive"),  # beyond, but the test is not significant
        (1.03, 1.09, 0.001, "inconclusive"),  # straddles +5%
        (0.97, 1.04, 0.001, "unchanged"),  # a real change, smaller than the threshold
        (0.90, 0.94, 1.0, "improved"),
        (0.90, 1.10, 0.5, "inconclusive"),  # wider than the whole band
    ],
)
def test_the_rule_on_intervals(low, high, p_worse, expected):
    verdict, note = judge(low, high, p_worse, 1 - p_worse, 0.05, True, repeats=3)
    assert verdict == expected
    assert ("rerun with more repeats" in note) == (expected == "inconclusive")


def test_thresholds_parse_per_metric_and_reject_what_they_cannot_mean():
    thresholds = parse_thresholds(["3%", "peak_memory=10%", "final_loss=off"])
    assert thresholds["step_time"] == pytest.approx(0.03)
    assert thresholds["peak_memory"] == pytest.approx(0.10)
    assert thresholds["final_loss"] is None
    for bad in ("5", "step_time=5", "speed=5%", "0%", "100%", "x%", "off"):
        with pytest.raises(UserError, match="--threshold"):
            parse_thresholds([bad])


def edited(run: str, tmp_path: Path, edit) -> Path:
    """A copy of a fixture run's records, each record passed through ``edit`` (None drops it)."""
    records = [json.loads(line) for line in (FIXTURES / run / "records.jsonl").open()]
    kept = [r for r in map(edit, records) if r is not None]
    path = tmp_path / f"{run}-edited.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return path


def test_peak_memory_30_percent_higher_in_every_repeat_is_regressed(tmp_path):
    def fatter(record):
        metrics = {**record["metrics"], "peak_rss_bytes": record["metrics"]["peak_rss_bytes"] * 1.3}
        return {**record, "metrics": metrics}

    base = load_side(str(FIXTURES / "run1"), tmp_path)
    cand = load_side(str(edited("run1", tmp_path, fatter)), tmp_path)
    case = next(c for c in compare(base, cand).cases if c.case_id == MLP)
    memory = next(m for m in case.metrics if m.metric == "peak_memory")
    assert memory.verdict == "regressed"
    assert memory.ratio == pytest.approx(1.3)
    assert memory.p_value <= 0.05  # every CAND repeat above every BASE repeat: 3 vs 3 at best
    assert case.verdict == "regressed"
    relaxed = compare(base, cand, parse_thresholds(["peak_memory=40%"]))
    assert not relaxed.failed


def test_energy_absent_on_a_cpu_is_not_applicable():
    side = load_side(str(FIXTURES / "run1"), ROOT)
    case = compare(side, side).cases[0]
    energy = next(m for m in case.metrics if m.metric == "energy_per_sample")
    assert energy.verdict == "n/a" and energy.note == "not measured on either side"
    assert next(m for m in case.metrics if m.metric == "compile_time").verdict == "n/a"  # eager
