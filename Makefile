# vmbench: `make bench` runs the matrix, `make test` the tests.  Everything runs in .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test bench-quick bench perf clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes (or the venv is new).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest

bench-quick: setup
	$(PY) -m harness quick

# every policy x every workload x 20 seeds, cached, then results/latest/{runs.csv,summary.md,index.html,plots/}
bench: setup
	$(PY) -m harness bench

perf: setup
	mkdir -p results/perf
	$(PY) -m pytest tests/test_bench.py --benchmark-enable --benchmark-only \
		--benchmark-json=results/perf/benchmark.json
	$(PY) -m harness perf-summary results/perf/benchmark.json

clean:
	rm -rf build dist *.egg-info .pytest_cache .benchmarks
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
