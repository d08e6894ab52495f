"""bench ab for real: a git repository of this project, a base commit, and a working tree whose
MLP is slower; both sides run interleaved in one job and the slowdown is found."""

import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT, TINY_SUITE, write_suite

SLOWER_MLP = """

# Added by tests/test_ab.py: every forward pass of the candidate's MLP sleeps 20 ms.
import time as _time  # noqa: E402

_forward = MLP.forward


def _slow_forward(self, x):
    _time.sleep(0.020)
    return _forward(self, x)


MLP.forward = _slow_forward
"""


def git(repo, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def project_copy(repo) -> None:
    """This project's files (tracked, and new ones not ignored) as one commit of a new repo."""
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in listed.split("\0"):
        source = ROOT / name
        if name and source.is_file() and not name.startswith("tests/fixtures/"):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")


def test_ab_finds_a_slowdown_of_the_working_tree_against_the_base_commit(tmp_path, bench_env):
    repo = tmp_path / "repo"
    repo.mkdir()
    project_copy(repo)
    base_commit = git(repo, "rev-parse", "HEAD")
    with (repo / "bench" / "workloads" / "mlp.py").open("a") as module:
        module.write(SLOWER_MLP)
    write_suite(repo, "tiny", TINY_SUITE)

    env = {**bench_env, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "ab", "tiny", "--base-ref", "HEAD", "--device", "cpu"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    rounds = [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("round")]
    assert rounds == ["round 1/2 base", "round 1/2 cand", "round 2/2 cand", "round 2/2 base"]
    assert "regressed" in done.stdout

    (job,) = (repo / "results" / "ab" / "tiny").iterdir()
    for side, dirty in (("base", False), ("cand", True)):
        env_json = json.loads((job / side / "env.json").read_text())
        assert env_json["git"] == {"commit": base_commit, "dirty": dirty}  # its own code ran
        records = [json.loads(line) for line in (job / side / "records.jsonl").open()]
        assert sorted(r["repeat"] for r in records) == [0, 1]
        assert {r["status"] for r in records} == {"ok"}
        assert json.loads((job / side / "run.json").read_text())["ab"]["side"] == side
    base_step = json.loads((job / "base" / "records.jsonl").open().readline())["metrics"]
    cand_step = json.loads((job / "cand" / "records.jsonl").open().readline())["metrics"]
    assert cand_step["step_time_s"]["median"] > base_step["step_time_s"]["median"] + 0.015

    assert git(repo, "worktree", "list").count("\n") == 0  # the base worktree is gone
    assert not [p for p in os.listdir(tmp_path) if p.startswith("bench-ab-")]
