"""The package's layers (docs/ARCHITECTURE.md): torch-free packages stay torch-free, package
``__init__`` files hold a docstring only, and import-linter's contracts in pyproject.toml hold."""

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
FIXTURES = Path(__file__).parent / "fixtures"
TORCH_FREE = ("spec", "machine", "run", "results", "report", "gate", "cli")
LEAVES = ("errors", "statistics", "atomic", "significance", "comparison_rule")


def _modules(package: str) -> list[str]:
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (BENCH / package).glob("*.py")
        if path.name != "__main__.py"
    )


def test_every_torch_free_module_imports_without_torch():
    modules = [f"bench.{leaf}" for leaf in LEAVES]
    modules += [m for package in TORCH_FREE for m in _modules(package)]
    assert len(modules) > 50  # the glob found the packages
    # One interpreter, the modules one after another: the first after which torch is loaded is
    # the one whose imports pulled it in.
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'torch' not in sys.modules, f'{name} imports torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def _torch_after(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``bench ARGV`` in this interpreter's process, then say whether torch was imported."""
    code = (
        "import sys\n"
        "from bench.cli.main import main\n"
        f"code = main({argv!r})\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["report", "--results", str(FIXTURES / "report" / "results")],
        ["compare", str(FIXTURES / "compare" / "run1"), str(FIXTURES / "compare" / "run2")],
        ["history", str(FIXTURES / "history" / "runs")],
        ["export", str(FIXTURES / "history" / "runs" / "20261204-013942"), "--format"],
    ],
    ids=["list", "report", "compare", "history", "export"],
)
def test_commands_of_the_bench_process_never_import_torch(argv, tmp_path):
    if argv[0] == "report":
        argv = [*argv, "--out", str(tmp_path / "report")]
    if argv[0] == "history":
        argv = [*argv, "--results", str(tmp_path), "--html", str(tmp_path / "history")]
    if argv[0] == "export":  # TensorBoard where it is installed, else Bencher's JSON
        tensorboard = importlib.util.find_spec("tensorboard") is not None
        argv += ["tensorboard" if tensorboard else "bencher", "-o", str(tmp_path / "out")]
    done = _torch_after(argv, ROOT)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("NO-TORCH"), done.stdout[-2000:] + done.stderr[-2000:]
    assert last.split()[1] in ("0", "1"), done.stderr  # compare exits 1 on a regression


def test_bench_env_never_imports_torch():
    done = _torch_after(["env", "--json"], ROOT)
    assert done.stdout.strip().splitlines()[-1] == "NO-TORCH 0", done.stderr


def test_package_init_files_hold_a_docstring_only():
    for init in BENCH.rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        docstring_only = len(body) <= 1 and all(
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
        )
        assert docstring_only, f"{init.relative_to(ROOT)} holds code"


def test_the_import_contracts_hold():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a dev dependency (pyproject.toml)"
    done = subprocess.run([lint_imports], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "2 kept, 0 broken" in done.stdout
