# The two commands of the README: `make demo` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: demo test lint bench system-deps system-deps-test venv clean flower

demo: system-deps venv
	$(BIN)/bgqueue demo

test: system-deps-test venv lint
	$(BIN)/python -m pytest

# The habits that keep the layers: ruff, import-linter's contracts, mypy on model/ and engine/.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

flower: venv
	$(BIN)/celery -A tasks flower --conf=config/flower.py --port=5555

bench: system-deps venv
	$(BIN)/python bench/switchover.py
	$(BIN)/python bench/checksum.py
	$(BIN)/python bench/sampler.py
	$(BIN)/python bench/cdc.py
	$(BIN)/python bench/rollback.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/replay.py

system-deps:
	@scripts/ensure-system-deps.sh

# make test also renders the batch report in headless Chromium.
system-deps-test:
	@scripts/ensure-system-deps.sh --test

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
