"""Record real A/A runs for the noise floor's fixtures (tests/fixtures/aa, see its README.md):
``--runs`` sequential ``bench run``s of one suite with unchanged code, each kept, compacted to what
``bench compare`` and ``bench calibrate`` read, as OUT/run01, OUT/run02, ... Not part of the test
suite (a run takes 20 s to a minute).

    python benchmarks/aa_runs.py SUITE OUT [--runs 12] [--repeats 2] [--device cpu]

Pin it to a core the rest of the machine stays off (``taskset -c 0``) to measure a quiet runner;
the load at the start of every repeat is in each record (``runtime.load_avg_1m_at_start``).
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from ab_power import compact  # noqa: E402  (one compaction for every recorded fixture)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--repeats", type=int, help="the suite's own when not given")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists: move it away first")
    with tempfile.TemporaryDirectory(prefix="aa-runs-") as tmp:
        for index in range(1, args.runs + 1):
            results = Path(tmp) / f"results{index}"
            command = [sys.executable, "-m", "bench.cli", "run", str(args.suite)]
            command += ["--device", args.device, "--out", str(results)]
            if args.repeats:
                command += ["--repeats", str(args.repeats)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                sys.exit(done.stderr)
            (run,) = (p for p in results.glob("*/*") if (p / "records.jsonl").is_file())
            target = args.out / f"run{index:02d}"
            target.mkdir(parents=True)
            for name in ("env.json", "run.json"):
                shutil.copyfile(run / name, target / name)
            lines = (run / "records.jsonl").read_text().splitlines()
            kept = [json.dumps(compact(json.loads(line)), separators=(",", ":")) for line in lines]
            (target / "records.jsonl").write_text("\n".join(kept) + "\n")
            medians = {
                r["config"]["workload"]: r["metrics"]["step_time_s"]["median"]
                for r in map(json.loads, lines)
            }
            shown = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in medians.items())
            print(f"{target.name}: {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
