# Shipmate developer commands. `make demo` and `make test` work on a fresh machine with
# Python 3.11+: they create .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-tracking bench-notify clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/shipmate demo

test: $(STAMP)
	$(BIN)/ruff check bot carriers tests bench
	$(BIN)/pytest

# Benchmarks print our figure beside its baseline, measured in the same run.
bench-tracking: $(STAMP)
	$(BIN)/python -m bench.tracking_fleet

bench-notify: $(STAMP)
	$(BIN)/python -m bench.notify_throughput

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
