"""bench history's change points and newest-runs verdict on real runs of this machine
(tests/fixtures/history: 24 runs of unchanged code, then 8 of a real slower commit)."""

import copy
import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from bench.gate.change_points import divergence
from bench.gate.history import history
from bench.gate.history_runs import Run, find_runs

FIXTURES = ROOT / "tests" / "fixtures"
MLP, TUTORIAL = "64dc5708e88e", "f228b6716027"  # the fixture's two cases
NO_RESULTS = Path("/nonexistent-results")


@pytest.fixture(scope="module")
def runs() -> list[Run]:
    return find_runs([str(FIXTURES / "history" / "runs")], NO_RESULTS)


def run_medians(runs: list[Run], case_id: str) -> list[float]:
    """Each run's median step time of a case, computed here with numpy from the records."""
    return [
        float(
            np.median(
                [
                    t
                    for r in run.records
                    if r["case_id"] == case_id and r["status"] == "ok"
                    for t in r["samples"]["step_time_s"]
                ]
            )
        )
        for run in runs
    ]


def scaled(runs: list[Run], case_id: str, start: int, factor: float) -> list[Run]:
    """The real step times of ``case_id`` times ``factor`` from run ``start`` on."""
    out = list(runs[:start])
    for run in runs[start:]:
        records = copy.deepcopy(run.records)
        for record in records:
            if record["case_id"] == case_id:
                record["samples"]["step_time_s"] = [
                    t * factor for t in record["samples"]["step_time_s"]
                ]
        out.append(Run(run.run_id, run.path, run.started_at, records, run.env))
    return out


def test_divergence_is_matteson_and_james_energy_statistic(runs):
    """Q(tau) against the paper's sums (eq. 3-5, alpha = 1) written out as plain loops."""
    x = np.log(run_medians(runs[:12], MLP))
    q = divergence(x, min_size=3)
    n = len(x)
    for tau in range(3, n - 2):
        left, right = x[:tau], x[tau:]
        m = n - tau
        between = sum(abs(a - b) for a in left for b in right) * 2 / (tau * m)
        within_left = sum(abs(a - b) for a, b in itertools.combinations(left, 2)) / (
            tau * (tau - 1) / 2
        )
        within_right = sum(abs(a - b) for a, b in itertools.combinations(right, 2)) / (
            m * (m - 1) / 2
        )
        assert q[tau] == pytest.approx(tau * m / n * (between - within_left - within_right))
    assert np.isnan(q[2]) and np.isnan(q[n - 2])


def test_unchanged_runs_give_no_change_point(runs):
    unchanged = history(runs[:24], ["step_time"])
    assert len(unchanged.series) == 2
    assert [s.change_points for s in unchanged.series] == [[], []]


def test_the_aa_runs_of_another_machine_give_no_change_point():
    aa = find_runs([str(FIXTURES / "aa" / "r2"), str(FIXTURES / "aa" / "r3")], NO_RESULTS)
    assert len(aa) == 24
    assert [s.change_points for s in history(aa, ["step_time"]).series] == [[], []]


def test_a_shift_injected_at_a_run_is_found_at_that_run(runs):
    """The MLP's real samples from run 13 (index 12) on, doubled: E-Divisive splits there, as
    ruptures' binary segmentation does on the same medians, and the medians either side are
    numpy's of the runs' medians."""
    import ruptures

    shifted = scaled(runs[:24], MLP, 12, 2.0)
    series = next(s for s in history(shifted, ["step_time"]).series if s.case_id == MLP)
    assert [c.index for c in series.change_points] == [12]
    medians = run_medians(shifted, MLP)
    binseg = ruptures.Binseg(model="l2", min_size=3, jump=1).fit(np.log(medians))
    assert binseg.predict(n_bkps=1) == [12, 24]
    change = series.change_points[0].change
    assert change.base_median == pytest.approx(np.median(medians[:12]))
    assert change.cand_median == pytest.approx(np.median(medians[12:]))
    assert change.verdict == "regressed" and change.ci_low > 1.05
    assert series.change_points[0].p_value <= 0.01


def test_the_real_slower_commit_alarms_the_first_night_it_ran(runs):
    """Night 25: the newest 3 runs hold the slower commit's first run; the user's workload is
    judged regressed (exit 1 of bench history), the untouched MLP is not."""
    night = history(runs[:25], ["step_time"])
    by_case = {s.case_id: s for s in night.series}
    assert by_case[TUTORIAL].alert and not by_case[MLP].alert
    assert night.failed
    slower = by_case[TUTORIAL].points[-1]
    assert slower.commit != by_case[TUTORIAL].points[-4].commit  # the commit changed at run 25


def test_a_change_point_names_the_commit_that_changed_near_it(runs):
    """Runs 1-12 of the base commit, then the 8 of the slower one. The user's workload changes
    at the first slower run (index 12); that run was not slowed by the load (4.1 ms) while
    base runs were (7.2 ms), so E-Divisive places the split one run later, and the change
    point names the commit that came in one run before it."""
    nights = runs[:12] + runs[24:]
    series = next(s for s in history(nights, ["step_time"]).series if s.case_id == TUTORIAL)
    [found] = series.change_points
    assert abs(found.index - 12) <= 1
    commit_change = [
        n
        for n in [{"index": found.index, "changed": found.changed}, *found.nearby]
        if "commit" in n["changed"]
    ]
    assert [n["index"] for n in commit_change] == [12]
    assert commit_change[0]["changed"]["commit"] == [runs[11].commit, runs[24].commit]
    assert found.change.verdict == "regressed"


def test_runs_of_another_machine_make_their_own_series(runs):
    moved = [
        Run(r.run_id, r.path, r.started_at, r.records, {**r.env, "cpu": {"model": "Other CPU"}})
        if i % 2
        else r
        for i, r in enumerate(runs[:12])
    ]
    split = history(moved, ["step_time"])
    assert len(split.machines) == 2 and len(split.series) == 4
    for s in split.series:
        assert len(s.points) == 6
        assert {p.run_id for p in s.points} <= {r.run_id for r in moved if r.machine == s.machine}


@pytest.mark.parametrize("start", [20, 21])
def test_a_change_in_the_last_nights_fails_the_newest_runs(runs, start):
    """The MLP doubled from run ``start`` of 24: E-Divisive places the change there, and the
    newest 3 runs (all doubled) are judged regressed against the runs before the change, also
    when the change is older than the newest 3 (then fewer than 3 doubled runs precede them)."""
    series = next(
        s
        for s in history(scaled(runs[:24], MLP, start, 2.0), ["step_time"]).series
        if s.case_id == MLP
    )
    assert [c.index for c in series.change_points] == [start]
    assert series.alert and series.newest.num_runs_base == start


def test_on_a_quiet_core_the_real_slower_commit_is_found_at_its_run():
    """tests/fixtures/history_quiet: the same 24 + 8 runs made on a core kept quiet. The user's
    workload's change point is the slower commit's first run exactly (collection.json says which
    run that is), the untouched MLP has none, and the nightly job alarms from the first night
    whose newest 3 runs are all of the slower commit (--last 3) until the change point is behind
    them."""
    import json

    quiet = find_runs([str(FIXTURES / "history_quiet" / "runs")], NO_RESULTS)
    made = json.loads((FIXTURES / "history_quiet" / "collection.json").read_text())
    first_slower = [r.run_id for r in quiet].index(made["first_slower_run"])
    assert first_slower == made["unchanged"] == 24
    by_case = {s.case_id: s for s in history(quiet, ["step_time"]).series}
    assert [c.index for c in by_case[TUTORIAL].change_points] == [first_slower]
    assert by_case[MLP].change_points == []
    found = by_case[TUTORIAL].change_points[0]
    medians = run_medians(quiet, TUTORIAL)
    # The segment before it starts at E-Divisive's previous split (a drift of 3.2 to 3.3 ms
    # there, under the threshold: not kept as a change point), the one after runs to the end.
    before = found.change.num_runs_base
    assert 3 <= before <= first_slower and found.change.num_runs_cand == len(quiet) - first_slower
    assert found.change.base_median == pytest.approx(
        np.median(medians[first_slower - before : first_slower])
    )
    assert found.change.cand_median == pytest.approx(np.median(medians[first_slower:]))
    assert found.change.verdict == "regressed"
    alarms = {case: [] for case in (TUTORIAL, MLP)}
    for night in range(first_slower + 1, len(quiet) + 1):
        for s in history(quiet[:night], ["step_time"]).series:
            if s.alert:
                alarms[s.case_id].append(night)
    assert alarms[MLP] == []
    assert alarms[TUTORIAL][0] == first_slower + 3  # the night the newest 3 are all slower
