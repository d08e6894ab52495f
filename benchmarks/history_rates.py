"""False-positive and detection rates of ``bench history`` on the recorded real runs
(docs/HISTORY.md, "What it finds on this machine"). Reads tests/fixtures/history (made by
benchmarks/history_runs.py) and tests/fixtures/aa; about a minute on two cores.

    python benchmarks/history_rates.py [--json OUT]

- unchanged histories: the first 24 runs of tests/fixtures/history (before the slower commit)
  and the 24 A/A runs of tests/fixtures/aa (r2 then r3): 4 series of identical code. A false
  change point is any change point kept in them; a false alarm is a night (every prefix of 6 or
  more runs, as a nightly job sees it) whose newest 3 runs are judged regressed.
- injected shifts: in each unchanged series, the real step times of the runs from k on, scaled
  by s (k = 3 .. n - 3, s = 1.1, 1.25, 1.5, 2): found when a change point is kept at k exactly.
- the real slower commit: where the change point lands in the 32 runs, and which nights alarm.
"""

import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gate.history import history  # noqa: E402
from bench.gate.history_runs import Run, find_runs  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
SCALES = (1.1, 1.25, 1.5, 2.0)
NO_RESULTS = Path("/nonexistent-results")


# The recorded nightly histories: 24 runs of unchanged code, then 8 of a real slower commit.
# history: both cores shared with other sessions; history_quiet: pinned to a core kept quiet.
NIGHTLY = ("history", "history_quiet")


def unchanged_histories() -> dict[str, list[Run]]:
    found = {}
    for name in NIGHTLY:
        if (FIXTURES / name / "runs").is_dir():
            nightly = find_runs([str(FIXTURES / name / "runs")], NO_RESULTS)
            found[f"{name} fixture, runs 1-24"] = nightly[:24]
    for label, sets in (("aa fixture, 24 runs", ("r2", "r3")), ("aa quiet core, 24", ("q2", "q3"))):
        found[label] = find_runs([str(FIXTURES / "aa" / s) for s in sets], NO_RESULTS)
    return found


def scaled(runs: list[Run], case_id: str, start: int, factor: float) -> list[Run]:
    """The runs with the step times of ``case_id`` multiplied by ``factor`` from ``start`` on."""
    out = []
    for index, run in enumerate(runs):
        if index < start:
            out.append(run)
            continue
        records = copy.deepcopy(run.records)
        for record in records:
            if record["case_id"] == case_id and record["status"] == "ok":
                steps = record["samples"]["step_time_s"]
                record["samples"]["step_time_s"] = [t * factor for t in steps]
        out.append(Run(run.run_id, run.path, run.started_at, records, run.env))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    summary: dict = {"unchanged": {}, "injected": {}, "real_commit": {}}
    false_points = series_count = alarms = nights = 0
    for name, runs in unchanged_histories().items():
        whole = history(runs, ["step_time"])
        found = {s.label: [c.index for c in s.change_points] for s in whole.series}
        nightly = {s.label: [] for s in whole.series}
        for n in range(6, len(runs) + 1):
            for s in history(runs[:n], ["step_time"]).series:
                nights += 1
                if s.alert:
                    alarms += 1
                    nightly[s.label].append(n)
        false_points += sum(bool(v) for v in found.values())
        series_count += len(found)
        summary["unchanged"][name] = {"change_points": found, "alarm_nights": nightly}
        print(f"{name}: change points {found}; nights with an alarm {nightly}")
    summary["false_change_point_series"] = [false_points, series_count]
    summary["false_alarm_nights"] = [alarms, nights]
    print(f"false change points: {false_points} of {series_count} unchanged series")
    print(f"false alarms (newest 3 regressed): {alarms} of {nights} nights")
    for factor in SCALES:
        hits = early = trials = 0
        per_history = {}
        for name, runs in unchanged_histories().items():
            counts = {"exact": 0, "within_1": 0, "trials": 0}
            cases = list(dict.fromkeys(r["case_id"] for r in runs[0].records))
            for case_id in cases:
                for start in range(3, len(runs) - 2):
                    trial = history(scaled(runs, case_id, start, factor), ["step_time"])
                    series = next(s for s in trial.series if s.case_id == case_id)
                    indices = [c.index for c in series.change_points]
                    counts["trials"] += 1
                    counts["exact"] += indices == [start]
                    counts["within_1"] += any(abs(i - start) <= 1 for i in indices)
            per_history[name] = counts
            hits += counts["exact"]
            early += counts["within_1"]
            trials += counts["trials"]
        summary["injected"][str(factor)] = {
            "exact": hits,
            "within_1": early,
            "trials": trials,
            "per_history": per_history,
        }
        print(f"x{factor}: found at the run {hits}/{trials}, within one run {early}/{trials}")
        for name, counts in per_history.items():
            print(f"    {name}: {counts['exact']}/{counts['trials']}, {counts['within_1']}")
    for name in NIGHTLY:
        if not (FIXTURES / name / "runs").is_dir():
            continue
        runs = find_runs([str(FIXTURES / name / "runs")], NO_RESULTS)
        whole = history(runs, ["step_time"])
        points = {s.label: [c.index for c in s.change_points] for s in whole.series}
        alarm_nights = {s.label: [] for s in whole.series}
        for n in range(25, len(runs) + 1):
            for s in history(runs[:n], ["step_time"]).series:
                if s.alert:
                    alarm_nights[s.label].append(n)
        summary["real_commit"][name] = {
            "first_slower_index": 24,
            "change_points": points,
            "alarm_nights": alarm_nights,
        }
        print(
            f"{name}: real slower commit at index 24: change points {points}; alarms {alarm_nights}"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
