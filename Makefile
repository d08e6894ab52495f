# Two commands a new user needs: `make bench` (a real sweep, then the report) and `make test`.
# Each creates .venv on first use and reuses it after; `pip install` runs again only when
# pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: bench test lint format benchmark gpu-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The report is written even when a case failed; the exit status is still the sweep's.
bench: $(STAMP)
	$(BIN)/bench run suites/compile_vs_eager; status=$$?; $(BIN)/bench report && exit $$status

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The harness's own overhead against a plain training loop, and its fixed cost per case, under
# pytest-benchmark; each run is saved in .benchmarks/ (pytest-benchmark compare lists them).
benchmark: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-autosave \
		--benchmark-columns=min,median,iqr,mean,stddev,rounds

# Every CUDA-specific check in one command on a GPU machine (docs/GPU_CHECK.md): from the source
# tree with the interpreter given (PYTHON=python3), no virtual environment and nothing installed;
# 8 minutes at most. `make gpu-check ARGS=--dry-run` prints the plan on any machine.
gpu-check:
	PYTHONPATH=. $(PYTHON) benchmarks/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
