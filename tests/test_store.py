"""The records store and a run's guards: one writer at a time, one environment per run."""

import pytest

from bench.errors import UserError
from bench.results.store import RecordWriter, read_records
from bench.run.sweep import check_same_environment


def test_a_second_writer_of_the_same_run_is_refused(tmp_path):
    with RecordWriter(tmp_path) as first:
        first.append({"schema": 1, "case_id": "a", "repeat": 0, "status": "skipped", "config": {}})
        with pytest.raises(UserError, match="another bench process is writing this run"):
            RecordWriter(tmp_path)
    with RecordWriter(tmp_path) as again:  # the lock went with the first writer
        again.append({"schema": 1, "case_id": "a", "repeat": 1, "status": "skipped", "config": {}})
    assert [r["repeat"] for r in read_records(tmp_path)] == [0, 1]


ENV = {
    "hostname": "box",
    "torch": "2.14.1",
    "cuda": "13.0",
    "git": {"commit": "abc", "dirty": False},
}


def test_resume_refuses_another_machine_or_commit(tmp_path):
    check_same_environment(ENV, {**ENV, "started_at": "later"}, tmp_path)  # same setup: fine
    with pytest.raises(UserError, match="git.commit was 'abc' when the run started and is 'def'"):
        check_same_environment(ENV, {**ENV, "git": {"commit": "def", "dirty": False}}, tmp_path)
    with pytest.raises(UserError, match="hostname was 'box'"):
        check_same_environment(ENV, {**ENV, "hostname": "other"}, tmp_path)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"schema": 7, "case_id": "a", "status": "ok", "config": {}}', "unknown schema version 7"),
        ('{"schema": 1, "case_id": "a", "status": "fine", "config": {}}', "status 'fine' is not"),
        (
            '{"schema": 1, "case_id": "a", "status": "ok", "config": {}, "metrics": {}}',
            "an ok record without metrics.step_time_s",
        ),
    ],
)
def test_well_formed_but_wrong_records_are_errors(tmp_path, line, problem):
    (tmp_path / "records.jsonl").write_text(line + "\n")
    with pytest.raises(UserError, match=f"records.jsonl:1: {problem}"):
        read_records(tmp_path)


def test_probe_records_are_no_repeats_in_the_spread_warning():
    from bench.run.sweep import unresolved_comparisons
    from bench.spec.case import Case

    def record(batch, median, flags=()):
        config = Case.from_dict({"workload": "mlp", "batch_size": batch}).to_dict()
        return {
            "case_id": f"c{batch}",
            "status": "ok",
            "config": config,
            "metrics": {"step_time_s": {"median": median}},
            "flags": list(flags),
        }

    # Batch 64 vs 128 differ by 2x; their repeats agree within 1%: resolved, no warning.
    records = [record(64, 0.010), record(64, 0.0101), record(128, 0.020), record(128, 0.0201)]
    assert unresolved_comparisons(records) == []
    # A 3-step probe at batch 64 (10x slower) must not count as a repeat of the batch-64 case.
    assert unresolved_comparisons([*records, record(64, 0.1, ["max_batch_probe"])]) == []


def test_a_difference_the_paired_repeats_cannot_resolve_is_warned_about():
    from bench.run.sweep import unresolved_comparisons
    from bench.spec.case import Case

    def record(batch, repeat, median):
        config = Case.from_dict({"workload": "mlp", "batch_size": batch}).to_dict()
        metrics = {"step_time_s": {"median": median}}
        return {
            "case_id": f"c{batch}",
            "repeat": repeat,
            "status": "ok",
            "config": config,
            "metrics": metrics,
            "flags": [],
        }

    # Rounds of repeats: batch 96 over batch 64 is 1.10 in round 0, 0.96 in round 1. Resampling
    # the two rounds as pairs draws both (half the time) or one twice, so the interval's ends are
    # the two ratios, [-4.0%, +10.0%]: it straddles +5%. The change is sqrt(1.10 * 0.96) = 1.02762,
    # and a change could only be resolved beyond 1.05 * 1.02762 / 0.96 - 1 = 12.4%.
    records = [
        record(64, 0, 0.010),
        record(64, 1, 0.0125),
        record(96, 0, 0.011),
        record(96, 1, 0.012),
    ]
    (warning,) = unresolved_comparisons(records)
    assert warning.startswith("batch_size=64 vs batch_size=96 (mlp base batch 64): step time ")
    assert "+2.8% [-4.0%, +10.0%]" in warning
    assert "only a difference beyond 12.4% can be resolved" in warning
