# Quick start: `make demo` trains on the shipped demo data and scores its test file;
# `make test` runs the test suite. Both set up .venv first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned to a CPU build where one is at hand (it keeps the set-up small);
# `make TORCH_SPEC=torch install` takes your platform's default build instead (CUDA on Linux).
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-all clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,spark,report]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/aaedetect fit datasets/demo/telemetry_train.csv -o demo-model --force
	$(BIN)/aaedetect score datasets/demo/telemetry_test.csv -m demo-model -o demo-scored.csv --label label

test: install
	$(BIN)/python -m pytest -m "not slow"

test-all: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-model demo-scored.csv .pytest_cache
