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
