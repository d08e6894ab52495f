"""bench ab's paired rule on recorded trials of real slower commits (tests/fixtures/ab_power, made
by benchmarks/ab_power.py; see its README.md): the paired interval checked against an
independent computation, and the detection rates docs/GATING.md states."""

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from bench.gate.compare import compare, load_side

TRIALS = ROOT / "tests" / "fixtures" / "ab_power"
SLOWDOWNS = ("slower-20pct", "slower-2pct", "slower-4pct-a", "slower-4pct-b")
ROUNDS = 5
TRIALS_EACH = 10
# Recorded in docs/GATING.md ("What bench ab detects"): trials regressed of 10, at 5 rounds.
DOCUMENTED = {"slower-20pct": 10, "slower-2pct": 0, "slower-4pct-a": 0, "slower-4pct-b": 0}


def trials(slowdown: str) -> list[Path]:
    found = sorted(p for p in (TRIALS / slowdown).iterdir() if p.is_dir())
    assert len(found) == TRIALS_EACH
    return found


def sides(trial: Path, rounds: int = ROUNDS):
    """BASE and CAND of a recorded job, its first ``rounds`` rounds (an ABBA job's first n
    rounds are an n-round job)."""
    loaded = (load_side(str(trial / side), trial) for side in ("base", "cand"))
    return [replace(s, records=[r for r in s.records if r["repeat"] < rounds]) for s in loaded]


def step_time(comparison):
    (case,) = comparison.cases
    return case, next(m for m in case.metrics if m.metric == "step_time")


def round_medians(side) -> dict[int, float]:
    return {r["repeat"]: float(np.median(r["samples"]["step_time_s"])) for r in side.records}


@pytest.mark.parametrize("slowdown", SLOWDOWNS)
def test_the_sides_of_a_job_are_paired_round_by_round(slowdown):
    for trial in trials(slowdown):
        base, cand = sides(trial)
        comparison = compare(base, cand)
        assert comparison.interleaved and comparison.calibration is None
        _, step = step_time(comparison)
        assert step.interleaved and step.noise_floor == 0.0
        # Independently: numpy's medians of each round's steps, their ratios' geometric mean.
        b, c = round_medians(base), round_medians(cand)
        logs = np.log([c[k] / b[k] for k in sorted(b)])
        assert step.ratio == pytest.approx(math.exp(logs.mean()))
        assert step.ci_low < step.ratio < step.ci_high
        assert step.repeats_base == step.repeats_cand == ROUNDS


def test_a_side_of_another_job_is_not_paired():
    first, second = trials("slower-20pct")[:2]
    base = load_side(str(first / "base"), first)
    cand = load_side(str(second / "cand"), second)
    comparison = compare(base, cand)
    assert not comparison.interleaved
    _, step = step_time(comparison)
    assert not step.interleaved and step.noise_floor > 0


@pytest.mark.parametrize("rounds", range(2, ROUNDS + 1))
def test_regressed_exactly_when_the_change_passes_the_smallest_detectable_one(rounds):
    # The smallest detectable change is the ratio whose interval, with the run's spread, starts
    # at +5%: a trial is regressed exactly when its measured change is beyond it.
    for slowdown in SLOWDOWNS:
        for trial in trials(slowdown):
            _, step = step_time(compare(*sides(trial, rounds)))
            beyond = step.ratio - 1 > step.smallest_detectable
            assert (step.verdict == "regressed") == (beyond and step.p_value <= 0.05)


def test_detection_rates_at_5_rounds_are_the_documented_ones(capsys):
    found = {}
    for slowdown in SLOWDOWNS:
        verdicts = [step_time(compare(*sides(trial)))[0].verdict for trial in trials(slowdown)]
        found[slowdown] = verdicts.count("regressed")
    summary = json.loads((TRIALS / "summary.json").read_text())
    with capsys.disabled():
        print(f"\n    bench ab at {ROUNDS} rounds, trials regressed of 10: {found}")
    assert found == {name: summary[name][str(ROUNDS)]["regressed"] for name in SLOWDOWNS}
    assert found == DOCUMENTED
