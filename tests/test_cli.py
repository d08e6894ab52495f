"""The CLI as a user meets it: one-line errors with exit code 2, dry runs, listings."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_suite

from bench.machine.nvml import cuda_device_count
from bench.spec.catalog import num_params

OK_SUITE = """
[suite]
name = "ok"
[base]
model_size = "tiny"
[matrix]
compile = ["eager", "reduce-overhead"]
"""

BAD_RECORDS = b'{"schema": 1, "case_id": "a", "status": "skipped", "config": {}}\n{not json\n'


@pytest.fixture
def workdir(tmp_path):
    write_suite(tmp_path, "ok", OK_SUITE)
    write_suite(tmp_path, "bad", "[base]\nbatchsize = 3\n")
    run_dir = tmp_path / "old" / "ok" / "20260101-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "records.jsonl").write_bytes(BAD_RECORDS)
    (run_dir / "run.json").write_text('{"cases": [], "order": "interleaved", "seed": 0}')
    write_suite(tmp_path, "escape", '[suite]\nname = "../../../tmp/escape"\n')
    write_suite(tmp_path, "slash", '[suite]\nname = "a/b"\n')
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "r.jsonl").write_bytes(BAD_RECORDS)
    return tmp_path


BAD_INPUTS = [
    (["run", "missing", "--out", "res"], "missing: no such suite file"),
    (
        ["run", "bad", "--out", "res"],
        "bad.toml: [base] batchsize = 3: unknown key; did you mean 'batch_size'? allowed: ",
    ),
    (
        ["run", "ok", "--set", "precision=fp64", "--out", "res"],
        "ok.toml: --set precision = 'fp64': allowed: fp32, tf32, bf16, amp-bf16, amp-fp16",
    ),
    (
        ["run", "ok", "--set", "batch_size", "--out", "res"],
        "--set 'batch_size': expected key=value",
    ),
    (["run", "ok", "--device", "tpu", "--out", "res"], "argument --device: invalid choice: 'tpu'"),
    (["run", "ok", "--repeats", "0", "--out", "res"], "--repeats 0: must be a positive integer"),
    (
        [
            "run",
            "ok",
            "--set",
            "target_metric=accuracy",
            "--set",
            "target_value=0.8",
            "--set",
            "max_steps=30",
            "--set",
            "eval_every=100",
            "--out",
            "res",
        ],
        "ok.toml: --set eval_every = 100: must be <= max_steps (30) in a target case",
    ),
    (
        [
            "run",
            "ok",
            "--set",
            "workload=gpt",
            "--set",
            "finetune=full",
            "--set",
            "data=stdlib",
            "--out",
            "res",
        ],
        "ok.toml: --set data = 'stdlib': the corpus task pretrains on stdlib",
    ),
    (
        ["run", "ok", "--set", "finetune=lora", "--set", "lora_rank=300", "--out", "res"],
        "ok.toml: --set lora_rank = 300: must be below 32, the narrowest layer LoRA adapts in "
        "mlp tiny (3.weight, 64 -> 32)",
    ),
    (["run", "--out", "res"], "give a suite (e.g. suites/compile_vs_eager) or --resume RUN"),
    (["run", "--resume", "nowhere"], "--resume nowhere: not a run directory"),
    (["run", "ok", "--resume", "old/ok/20260101-000000"], "takes the suite and its options from"),
    (["run", "--resume", "old/ok/20260101-000000"], "records.jsonl:2: not valid JSON"),
    (["report", "--results", "nothing"], "nothing: no such results directory"),
    (["report", "old/ok/20260101-000000"], "records.jsonl:2: not valid JSON"),
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
    # A suite's name is the folder of its runs: never a way out of --out.
    (
        ["run", "escape", "--out", "a/b/c"],
        "escape.toml: [suite] name = '../../../tmp/escape': use letters, digits, '.', '_' and '-'",
    ),
    (["run", "slash", "--out", "res", "--dry-run"], "[suite] name = 'a/b': use letters, digits"),
    (["run", "ok", "--out", "afile"], "--out afile: afile is a file, not a directory"),
    (["run", "ok", "--out", "afile/res"], "--out afile/res: afile is a file, not a directory"),
    (["run", "ok", "--out", "/proc/nope", "--device", "cpu"], "/proc/nope: cannot create"),
    (["report", "/nonexistent"], "/nonexistent: no such file or directory; give a run directory"),
    (["report", "r.jsonl"], "r.jsonl: a file, but not a run's records.jsonl or a suite file"),
    (["report", "old/ok/20260101-000000/records.jsonl"], "records.jsonl:2: not valid JSON"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir, bench, argv, expected):
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    done = bench(*argv)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("bench: error: ")
    assert done.stderr.count("\n") == 1  # one line
    assert expected in done.stderr
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before
    assert (workdir / "old/ok/20260101-000000/records.jsonl").read_bytes() == BAD_RECORDS


@pytest.mark.skipif(cuda_device_count()[0] > 0, reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_an_error(workdir, bench):
    done = bench("run", "ok", "--device", "cuda", "--out", "res")
    assert done.returncode == 2
    assert "--device cuda: no CUDA device here" in done.stderr
    assert not (workdir / "res").exists()


def test_dry_run_prints_the_cases_and_runs_nothing(workdir, bench):
    done = bench("run", "ok.toml", "--dry-run", "--device", "cpu", "--out", "res")
    assert done.returncode == 0, done.stderr
    assert "ok on cpu: 2 cases, 6 runs (dry run: nothing runs)" in done.stdout
    assert "compile=eager" in done.stdout and "run" in done.stdout
    assert "skip: compile mode 'reduce-overhead' uses CUDA graphs" in done.stdout
    assert not (workdir / "res").exists()
    pinned = bench("run", "ok", "--dry-run", "--device", "cpu", "--set", "batch_size=128")
    assert "every case: batch_size=128" in pinned.stdout
    # A pinned key that applies to none of the cases (an MLP has no seq_len) is not shown as set
    # (it is normalised away, and a warning says it has no effect).
    moot = bench("run", "ok", "--dry-run", "--device", "cpu", "--set", "batch_size=128",
                 "--set", "seq_len=32")  # fmt: skip
    assert "every case: batch_size=128" in moot.stdout
    assert "seq_len" not in moot.stdout and "seq_len has no effect" in moot.stderr


BIG_SUITE = """
[suite]
name = "big"
[base]
model_size = "tiny"
[matrix]
batch_size = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
seed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
lr = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.01]
compile = ["eager", "reduce-overhead"]
"""


def test_a_big_dry_run_prints_every_case_in_plain_columns(tmp_path, bench):
    # 2,000 cases: above the rows rich lays out (bench/cli/run.py, PLAIN_TABLE_ROWS), so plain
    # aligned columns, one line a case, in the order and with the ids expand gives.
    from bench.spec import suite as suites

    path = write_suite(tmp_path, "big", BIG_SUITE)
    cases = suites.expand(suites.load(path), "cpu")
    assert len(cases) == 10 * 10 * 10 * 2
    done = bench("run", "big", "--dry-run", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    title, header, *rows = done.stdout.splitlines()
    assert title == "big on cpu: 2000 cases, 6000 runs (dry run: nothing runs)"
    assert header.split() == ["#", "case", "id", "settings", "repeats", "will"]
    assert [row.split()[:2] for row in rows] == [
        [str(i), case.id] for i, case in enumerate(cases, start=1)
    ]
    assert sum(row.endswith("  run") for row in rows) == 1000
    assert sum("skip: compile mode 'reduce-overhead' uses CUDA graphs" in r for r in rows) == 1000
    assert len({row.index(" run") if row.endswith(" run") else 0 for row in rows} - {0}) == 1


def test_a_reader_that_goes_away_ends_bench_quietly(tmp_path, bench_env):
    # `bench estimate --json | head -1` once head has gone: no reader is left on the pipe when
    # bench first writes (the read end is closed before bench has imported itself), so that
    # write fails with EPIPE; bench ends with 141 (128 + SIGPIPE) and no traceback.
    argv = ["estimate", "--params", "1e9", "--tokens", "1e10", "--mfu", "0.4", "--gpu", "H100 SXM"]
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *argv, "--json"],
        cwd=tmp_path,
        env=bench_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.close()
    assert child.wait(timeout=60) == 141
    assert child.stderr.read() == b""


SKIPPED_SUITE = """
[suite]
name = "skipped"
[base]
model_size = "tiny"
[[include]]
workload = "cnn"
model_size = "resnet20"
finetune = "lora"
[[include]]
workload = "hf-gpt2"
"""


def test_dry_run_knows_the_skips_known_before_running(tmp_path, bench):
    import importlib.util

    write_suite(tmp_path, "skipped", SKIPPED_SUITE)
    done = bench("run", "skipped", "--dry-run", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.replace("│", " ").split())  # the table's cells, unwrapped
    assert "skip: cnn resnet20 has no linear layer or attention projection outside its head" in text
    hf = "skip: hf:gpt2 needs Hugging Face transformers, which is not installed: pip install"
    if importlib.util.find_spec("transformers") is None:
        assert f"{hf} 'bench[hf]'" in text
    else:
        assert hf not in text


def test_list_json_has_every_workload_size_with_its_parameter_count(bench):
    done = bench("list", "--json", "--suites", str(ROOT / "suites"))
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    mlp = next(w for w in listing["workloads"] if w["name"] == "mlp")
    base = next(s for s in mlp["sizes"] if s["name"] == "base")
    # 784*512 + 512 + 512*256 + 256 + 256*10 + 10
    assert base["num_params"] == 535_818
    for workload in listing["workloads"]:
        for size in workload["sizes"]:
            assert size["num_params"] == num_params(workload["name"], size["name"])
    assert listing["compile_modes"][0] == "eager"
    assert "compile_vs_eager" in [s["name"] for s in listing["suites"]]
    assert listing["finetune_strategies"] == ["full", "frozen", "lora"]
    assert (mlp["finetune_tasks"], mlp["eval_metrics"]) == (
        ["new-classes", "rotated"],
        ["accuracy", "loss"],
    )


def test_report_command_writes_markdown(tmp_path, bench):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "tests" / "fixtures" / "report" / "results", results)
    done = bench("report", "--results", "results")
    assert done.returncode == 0, done.stderr
    lines = (results / "report" / "report.md").read_text().splitlines()
    # The fixture's default-compiled case against eager, paired by round: 1.32x [1.25, 1.38],
    # break-even 547 [484, 660] steps (tests/test_report.py, test_markdown_rows_by_hand). Its
    # loss against eager's (repeat 0: 0.49 and 0.44 against 0.50 and 0.45 over steps 1-2 and
    # 3-4): 2.0% and 0.01 / 0.45 = 2.22%, beyond fp32's 2%.
    assert (
        "| default | ok | 8.00 ms ±6.2% | 8,000 | 1.32× [1.25, 1.38] | 1.45 | cold, warm "
        "| 547 [484, 660] | 160 | 0.900 | 0.390 | 2.22% at step 4: beyond 2% "
        "| loss_beyond_tolerance |" in lines
    )
    assert "report written:" in done.stdout


def test_every_argument_has_a_help_line_and_its_default():
    import argparse

    from bench.cli.main import build_parser

    def actions(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from actions(sub, [*path, name])
            elif not isinstance(action, argparse._HelpAction):
                yield path, sub_help(parser), action

    def sub_help(parser):
        return " ".join(parser.format_help().split())

    seen = 0
    for path, text, action in actions(build_parser(), ["bench"]):
        name = " ".join(path + (action.option_strings[:1] or [action.dest]))
        assert action.help, name
        default = action.default
        if default is not None and default is not False and default != []:
            # The formatter's "(default: X)", or the help text's own words for it.
            assert f"(default: {default})" in text or "default" in action.help, name
        seen += 1
    assert seen > 60  # every command's arguments were walked


def test_gate_and_ab_repeats_say_what_each_repeats():
    from bench.cli.main import build_parser

    def repeats_help(command):
        (sub,) = [a for a in build_parser()._actions if hasattr(a, "choices") and a.choices]
        (action,) = [a for a in sub.choices[command]._actions if "--repeats" in a.option_strings]
        return action.help

    assert repeats_help("gate").startswith("processes per case")
    assert repeats_help("ab").startswith("rounds, each one bench run --repeats 1 per side")


def test_bench_env_collects_in_a_child_and_never_imports_torch():
    code = (
        "import sys, json, io, contextlib\n"
        "from bench.cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    assert main(['env', '--json']) == 0\n"
        "info = json.loads(out.getvalue())\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(info['torch'], info['cpu']['torch_threads'], info['cuda_available'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    import torch

    # The child's torch: the same version, CUDA as this machine has it, its threads counted.
    version, threads, cuda = done.stdout.split()
    assert (version, cuda) == (torch.__version__, str(torch.cuda.is_available()))
    assert int(threads) >= 1


def test_readme_and_ci_use_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make bench" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert Path(ROOT / "suites" / "compile_vs_eager.toml").is_file()
