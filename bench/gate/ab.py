"""``bench ab``: the base ref and the working tree measured in one job, interleaved.

The base ref is checked out in a temporary ``git worktree`` of the repository the suite lives in
(the user's own, or this project's checkout). Both sides run the same suite file (the one given,
from the working tree; the base side's copy in its worktree) with their own code: the user's
workload modules, and in this project's checkout bench itself. each round is one ``bench run
--repeats 1`` per side, in the order base, cand, then cand, base (ABBA), so that drift of the
machine during the job (thermal state, a noisy neighbour on a shared CI runner) lands on both
sides alike instead of on whichever side ran second. The rounds of each side are then merged into
one run directory per side, ``OUT/ab/<suite>/<stamp>/{base,cand}``, that ``bench compare`` reads.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.errors import Terminated, UserError
from bench.results.store import (
    ENV,
    MANIFEST,
    RECORDS,
    RecordWriter,
    read_json,
    read_records,
    status_summary,
    write_json,
)

SIDES = ("base", "cand")
# Exit codes of a stopped bench run (bench/cli/arguments.py) and the stop they are.
STOPPED = {130: KeyboardInterrupt, 143: Terminated}


def run_ab(
    project_root: Path,
    suite_path: Path,
    suite_name: str,
    base_ref: str,
    rounds: int,
    device: str,
    overrides: list[str],
    out: Path,
    console: Console,
    side_overrides: dict[str, list[str]] | None = None,
) -> dict[str, Path]:
    """Run both sides interleaved; return the merged run directory of each side.

    ``side_overrides`` are ``--set`` values of one side only (``--base-set``, ``--cand-set``):
    run-length settings such as ``profile_steps``, which leave the case id alone, so that the
    same code with and without them is compared case by case.

    The repository is the one the suite lives in: the user's (their workload modules come from
    each side's tree, bench from its installation) or this project's checkout (each side runs
    its own bench too)."""
    repo = _toplevel(suite_path.parent) or _toplevel(project_root)
    if repo is None:
        raise UserError(
            f"bench ab compares a git commit with the working tree, and neither {suite_path} nor "
            f"{project_root} is in a git work tree"
        )
    own_checkout = repo == _toplevel(project_root)
    commit = _git(
        Path(repo),
        "rev-parse",
        "--verify",
        "--quiet",
        f"{base_ref}^{{commit}}",
        what=f"--base-ref {base_ref}: not a commit in {repo}",
    )
    console.print(
        f"ab: {suite_name}: base {base_ref} ({commit[:12]}) against the working tree, "
        f"{rounds} rounds per side on {device}"
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = out / "ab" / suite_name / stamp
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        worktree = Path(tmp) / "base"
        _git(
            Path(repo),
            "worktree",
            "add",
            "--detach",
            str(worktree),
            commit,
            what="git worktree add failed",
        )
        try:
            # `python -m bench.cli` runs bench/cli.py in commits before the package layout.
            cli = worktree / "bench" / "cli"
            has_cli = (cli / "__main__.py").is_file() or cli.with_suffix(".py").is_file()
            if own_checkout and not has_cli:
                raise UserError(f"--base-ref {base_ref}: {commit[:12]} has no bench/cli to run")
            roots = {"base": worktree, "cand": Path(repo) if not own_checkout else project_root}
            suites = {"base": _suite_in(worktree, Path(repo), suite_path), "cand": suite_path}
            runs: dict[str, list[Path]] = {side: [] for side in SIDES}
            for round_ in range(rounds):
                for side in SIDES if round_ % 2 == 0 else SIDES[::-1]:
                    label = f"round {round_ + 1}/{rounds} {side}"
                    runs[side].append(
                        _run_side(
                            label,
                            roots[side],
                            suites[side],
                            device,
                            overrides + (side_overrides or {}).get(side, []),
                            Path(tmp) / side / str(round_),
                            console,
                        )
                    )
            # `job` pairs the two sides: bench compare pairs their rounds only within one job.
            info = {
                "job": f"{suite_name}/{stamp}",
                "base_ref": base_ref,
                "base_commit": commit,
                "rounds": rounds,
                "order": "ABBA",
                "side_settings": {side: (side_overrides or {}).get(side, []) for side in SIDES},
            }
            return {
                side: merge_runs(
                    runs[side], target / side, f"{stamp}-{side}", {**info, "side": side}
                )
                for side in SIDES
            }
        finally:
            subprocess.run(
                ["git", "-C", repo, "worktree", "remove", "--force", str(worktree)],
                capture_output=True,
            )
            subprocess.run(["git", "-C", repo, "worktree", "prune"], capture_output=True)


def _toplevel(path: Path) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True
    )
    return str(Path(done.stdout.strip()).resolve()) if done.returncode == 0 else None


def _suite_in(worktree: Path, repo: Path, suite_path: Path) -> Path:
    """The suite file as the base side runs it: the working tree's, copied to its place in the
    base worktree, so that both sides run the same suite and a workload file it names
    (``FILE.py:FUNCTION``, relative to the suite) is the base commit's. A suite outside the
    repository is run from where it is."""
    try:
        relative = suite_path.resolve().relative_to(repo)
    except ValueError:
        return suite_path
    copy = worktree / relative
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(suite_path, copy)
    return copy


def _git(cwd: Path, *args: str, what: str) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:]
        raise UserError(what + (f" (git: {detail[0]})" if detail else ""))
    return done.stdout.strip()


def _run_side(
    label: str,
    root: Path,
    suite_path: Path,
    device: str,
    overrides: list[str],
    out: Path,
    console: Console,
) -> Path:
    """One ``bench run --repeats 1`` of the code under ``root``; returns its run directory."""
    command = [sys.executable, "-m", "bench.cli", "run", str(suite_path), "--repeats", "1"]
    command += ["--device", device, "--out", str(out)]
    for override in overrides:
        command += ["--set", override]
    env = dict(os.environ)
    # The side's own package first: `python -m bench.cli` in `root` imports bench from there,
    # and so do the fork server and workers it starts.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode in STOPPED:  # the side's bench was stopped (SIGINT, SIGTERM): so is ab
        raise STOPPED[done.returncode]()
    runs = [path.parent for path in out.glob(f"*/*/{RECORDS}")]
    # Exit 1 with a run written: some case crashed, which the comparison judges (broken).
    if done.returncode not in (0, 1) or len(runs) != 1:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"bench ab: {label}: bench run exited {done.returncode}: {last}")
    (run_dir,) = runs
    summary = status_summary(read_records(run_dir))
    console.print(f"{label}: {summary} in {time.perf_counter() - started:.1f} s")
    return run_dir


def merge_runs(runs: list[Path], target: Path, run_id: str, info: dict[str, Any]) -> Path:
    """One run directory from single-repeat runs: round k becomes repeat k."""
    target.mkdir(parents=True)
    (target / "logs").mkdir()
    manifest = read_json(runs[0] / MANIFEST)
    manifest["overrides"] = {**manifest.get("overrides", {}), "repeats": len(runs)}
    manifest["cases"] = [{**case, "repeats": len(runs)} for case in manifest.get("cases", [])]
    manifest["ab"] = info
    write_json(target / MANIFEST, manifest)
    write_json(target / ENV, read_json(runs[0] / ENV))
    with RecordWriter(target) as writer:
        for repeat, run in enumerate(runs):
            for record in read_records(run):
                writer.append({**record, "run_id": run_id, "repeat": repeat})
            for log in (run / "logs").glob("*-r0.log"):
                case_id = log.name.removesuffix("-r0.log")
                shutil.copyfile(log, target / "logs" / f"{case_id}-r{repeat}.log")
    return target
