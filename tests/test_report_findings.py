"""The report's comparisons by the comparison rule, its Findings section, numerics against the
fp32 eager twin and the FAQ's answers, on hand-made records and the recorded fixtures."""

import io
import math
from pathlib import Path

import pytest
from rich.console import Console

from bench.comparison_rule import INTERLEAVED, SampleComparison, recorded_floor
from bench.report.comparisons import repeats_to_resolve
from bench.report.faq import faq_sections
from bench.report.findings import suite_findings
from bench.report.frame import aggregate, records_frame
from bench.report.numerics import loss_agreement, span_means
from bench.report.report import build_report
from bench.report.tables import suite_tables
from bench.results.store import read_records

FIXTURES = Path(__file__).parent / "fixtures" / "report"
COMPILE_RUN = FIXTURES / "results" / "compile_vs_eager" / "20261128-101502"
GPT_RUN = FIXTURES / "results" / "gpt_batch" / "20261128-120000"
OPTIMIZERS_RUN = FIXTURES / "optimizers" / "20261203-171719"


def record(case_id, config, step_s, repeat=0, run_id="r1", loss=None, **metrics):
    full = {"workload": "mlp", "batch_size": 64, "device": "cpu", "compile": "eager"}
    return {
        "schema": 1,
        "run_id": run_id,
        "suite": "s",
        "case_id": case_id,
        "repeat": repeat,
        "status": "ok",
        "reason": None,
        "config": {**full, "precision": "fp32", **config},
        "metrics": {"step_time_s": {"median": step_s}, "samples_per_s": 64 / step_s, **metrics},
        "samples": {"loss": loss or []},
        "flags": [],
    }


def compile_records(eager_s, default_s, runs=("r1", "r1")):
    """eager and default, one record per repeat; default compiled in 1.0 s beyond its step."""
    records = []
    for repeat, (e, d) in enumerate(zip(eager_s, default_s)):
        records.append(record("eager", {}, e, repeat, runs[0], first_step_s=e))
        extra = {"compile_time_s": 1.0, "first_step_s": 1.0 + d}
        records.append(record("default", {"compile": "default"}, d, repeat, runs[1], **extra))
    return records


def table_row(agg, records, first_cell):
    (view,) = [v for v in suite_tables(agg, records) if "not ok" not in v.title]
    row = next(row for row in view.rows if row[0] == first_cell)
    return dict(zip(view.headers, row))


def test_a_difference_inside_the_noise_is_marked_and_derives_nothing():
    # Rounds (eager, default): (10, 8), (11, 13), (12, 10) ms: speedups 1.25, 0.846 and 1.2,
    # their geometric mean (1.25 x 11/13 x 1.2)^(1/3) = 1.083. Three rounds drawn from three:
    # all the same round with probability 1/27 > 2.5%, so the interval's ends are the extreme
    # rounds, [0.846, 1.25]: it straddles 1 +- 5%, not resolved.
    records = compile_records((0.010, 0.011, 0.012), (0.008, 0.013, 0.010))
    agg = aggregate(records_frame(records))
    row = table_row(agg, records, "default")
    assert row["speedup vs eager"] == "1.08× [0.85, 1.25] not resolved"
    assert row["break-even steps"] == "not resolved"
    (found,) = suite_findings(agg, records)
    assert found.resolved == []
    # Repeats to resolve it: the step-time ratio 1/1.083 = 0.9236, its interval's end towards 1
    # 13/11 = 1.1818, spread log(1.1818 / 0.9236) = 0.2465; margin |log 0.9236| - log 1.05 =
    # 0.0795 - 0.0488 = 0.0307; 3 x (0.2465 / 0.0307)^2 = 193.8, so about 194.
    (sentence,) = found.unresolved
    assert sentence.startswith("compile=default: 1.08× [0.85, 1.25] the speed of eager: ")
    assert "about 194 repeats a side" in sentence
    challenges = faq_sections(agg, records)[3]
    assert not any("Break-even (resolved" in line for line in challenges.lines)
    assert "not resolved on this machine" in " ".join(challenges.answer)


def test_repeats_to_resolve_by_hand():
    def rule(ratio, low, high, repeats, floor=INTERLEAVED):
        return SampleComparison(
            "inconclusive", "", ratio, low, high, 0.1, True, floor, 0.0, 1.0, ratio, 3, 3,
            repeats, repeats,
        )  # fmt: skip

    # +20% [+0%, +44%] from 3 rounds: spread log 1.2 = 0.1823, margin log 1.2 - log 1.05 =
    # 0.1335; 3 x (0.1823 / 0.1335)^2 = 5.59: 6 repeats.
    assert repeats_to_resolve(rule(1.2, 1.0, 1.44, 3)) == 6
    assert repeats_to_resolve(rule(1.03, 0.9, 1.2, 3)) is None  # within the 5% threshold
    assert repeats_to_resolve(rule(1.2, 1.0, 1.44, 1)) is None  # no spread between processes
    # Separate runs: a 142% drift floor leaves no margin for a 20% change at any count.
    assert repeats_to_resolve(rule(1.2, 1.0, 1.44, 3, recorded_floor("step_time"))) is None


def test_cases_of_separate_runs_are_widened_by_the_recorded_drift():
    # default twice as fast in every repeat, but measured in another run: the interval of the
    # step-time ratio, exactly 0.5, widens to [0.5 / 2.42, 0.5 x 2.42], a speedup of
    # [1 / 1.21, 2.42 / 0.5] = [0.83, 4.84]: not resolved.
    records = compile_records((0.010,) * 3, (0.005,) * 3, runs=("r1", "r2"))
    agg = aggregate(records_frame(records))
    assert table_row(agg, records, "default")["speedup vs eager"] == (
        "2.00× [0.83, 4.84] not resolved"
    )
    (found,) = suite_findings(agg, records)
    assert "separate runs drift by up to ±142%" in found.unresolved[0]


def test_a_resolved_speedup_leads_the_findings_with_its_interval_and_break_even(tmp_path):
    # The fixture's default against eager: 1.32x [1.25, 1.38], break-even 547 [484, 660]
    # (worked out in tests/test_report.py, test_markdown_rows_by_hand).
    report = build_report([COMPILE_RUN, GPT_RUN], tmp_path, Console(file=io.StringIO()))
    markdown = report.markdown.read_text()
    sentence = (
        "- compile=default: 1.32× [1.25, 1.38] the speed of eager (faster); compiling pays off "
        "after 547 [484, 660] steps."
    )
    assert sentence in markdown.splitlines()
    assert markdown.index("## Findings") < markdown.index("## compile_vs_eager")
    # gpt_batch: batch 16 against 8 from one repeat: not resolved, and said why.
    assert "batch_size=16: 1.25× (one repeat) the samples/s of batch 8: one repeat" in markdown
    page = report.html.read_text()
    assert page.index('<section id="findings">') < page.index("<h2>compile_vs_eager</h2>")
    assert "compiling pays off after 547 [484, 660] steps" in page


def test_span_means_weigh_each_block_by_its_steps():
    # Blocks of 5 steps with means 3.2, 2.8, 2.1, 1.9: over (0, 10] (3.2 + 2.8) / 2 = 3.0,
    # over (10, 20] (2.1 + 1.9) / 2 = 2.0; over (0, 20] the mean of all four, 2.5.
    readings = [(5, 3.2), (10, 2.8), (15, 2.1), (20, 1.9)]
    assert span_means(readings, [10, 20]) == pytest.approx([3.0, 2.0])
    assert span_means(readings, [20]) == pytest.approx([2.5])


def test_a_case_whose_loss_leaves_its_fp32_eager_twin_is_flagged_and_named():
    # The twin reads in blocks of 5 (spans (0, 10] and (10, 20] average 3.0 and 2.0); bf16 in
    # blocks of 10: 3.03 (+1%) then 2.4 (+20%, beyond bf16's 10%); amp-bf16 3.0 then 2.06 (+3%,
    # within its 5%).
    twin = [(5, 3.2), (10, 2.8), (15, 2.1), (20, 1.9)]
    records = [
        record("fp32", {}, 0.010, loss=twin),
        record("bf16", {"precision": "bf16"}, 0.005, loss=[(10, 3.03), (20, 2.4)]),
        record("amp", {"precision": "amp-bf16"}, 0.008, loss=[(10, 3.0), (20, 2.06)]),
    ]
    agg = aggregate(records_frame(records))
    agreement = loss_agreement(agg, records)
    assert agreement["bf16"].max_rel_diff == pytest.approx(0.2)
    assert (agreement["bf16"].at_step, agreement["bf16"].beyond) == (20, True)
    assert agreement["amp"].max_rel_diff == pytest.approx(0.03)
    assert not agreement["amp"].beyond
    row = table_row(agg, records, "bf16")
    assert row["loss vs fp32 eager"] == "20.00% at step 20: beyond 10%"
    assert "loss_beyond_tolerance" in row["flags"]
    assert table_row(agg, records, "amp-bf16")["loss vs fp32 eager"] == "3.00% (tol 5%)"
    (found,) = suite_findings(agg, records)
    assert found.numerics[0].startswith("precision=bf16: training loss 20.00% at step 20")
    assert "precision=amp-bf16: 3.00% (tol 5%)" in found.numerics[1]
    evaluation = faq_sections(agg, records)[2]
    assert "Beyond its precision's tolerance" in evaluation.answer[0]


def test_every_faq_section_ends_in_an_answer():
    records = read_records(COMPILE_RUN) + read_records(GPT_RUN)
    for section in faq_sections(aggregate(records_frame(records)), records):
        assert section.answer, section.question
        assert all(sentence.endswith(".") for sentence in section.answer)


def test_the_optimizer_answer_names_the_first_and_the_cases_that_missed_the_target():
    # The recorded run: one repeat per optimizer, so nothing is resolved; adam reached the
    # common loss 0.01264 first (16.7 s), sgd-momentum next (22.2 s): 16.7 / 22.2 = 0.75.
    records = read_records(OPTIMIZERS_RUN)
    section = faq_sections(aggregate(records_frame(records)), records)[1]
    (answer,) = section.answer
    assert answer.startswith("adam reached loss 0.01264 soonest in the median, but against ")
    assert "sgd-momentum (0.75× its time, one repeat) the difference is not resolved" in answer
    assert "Did not reach it: sgd (final loss 0.231 after 301 steps), muon" in answer
    assert not math.isnan(float(answer.split("(final loss ")[2].split(" ")[0]))


def test_dataloader_workers_compare_with_the_fewest():
    # Rounds of 20 ms with no workers and 16 ms with two: 1.25x in each round, an interval of
    # [1.25, 1.25], resolved.
    records = [
        record(f"w{n}", {"num_workers": n}, step_s, repeat)
        for repeat in range(3)
        for n, step_s in ((0, 0.020), (2, 0.016))
    ]
    agg = aggregate(records_frame(records))
    assert table_row(agg, records, "2")["speedup vs num_workers 0"] == "1.25× [1.25, 1.25]"


def test_the_optimizer_answer_resolves_who_reached_the_target_first():
    # Both reach the common loss 0.5 at their third step in each of 3 repeats: sgd's steps take
    # 10 ms (30 ms to target), adam's 20 ms (60 ms): 0.5x the time in every round, resolved.
    records = []
    for repeat in range(3):
        for name, step_s in (("sgd", 0.010), ("adam", 0.020)):
            r = record(name, {"optimizer": name}, step_s, repeat)
            r["samples"] = {"step_time_s": [step_s] * 3, "loss": [[1, 2.0], [2, 1.0], [3, 0.5]]}
            records.append(r)
    section = faq_sections(aggregate(records_frame(records)), records)[1]
    assert section.answer == [
        "sgd reached loss 0.5 first, in 0.50× [0.50, 0.50] its time of adam, the next "
        "(resolved by the comparison rule)."
    ]
