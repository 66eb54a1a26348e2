# Everything installs into .venv/, created on first use: nothing global.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= out/demo

.PHONY: install demo test lint bench clean settings-doc

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: $(STAMP)
	@$(BIN)/python -m fleetaudit.demo --out $(OUT)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) out .mypy_cache .pytest_cache .ruff_cache

settings-doc: $(STAMP)
	$(BIN)/python -c "from fleetaudit.config import settings_reference as r; print(r(), end='')" > docs/SETTINGS.md
