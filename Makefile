# vmbench: `make bench` runs the matrix, `make test` the tests.  Everything runs in .venv.
# `make real-setup` prepares the real-kernel backends (qemu VM, memory cgroup), `make bench-real`
# runs workloads as real processes on real kernels (results/real/latest/).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test bench-quick bench perf clean real-setup bench-real bench-real-thrash browser-setup

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

# Debian packages the qemu backend needs; installed only when missing, only as root with apt
# (binutils: readelf, for a daemon's shared libraries; zstd: Debian 6.12's compressed image).
# Then `python -m harness real-setup`: every kernel and daemon the real policies name
# (policies/real/*.toml: apt-get download + dpkg -x into .real/, never installed, cached by
# package version), the static runner, each kernel's measured overhead and the TCG slowdown.
REAL_PKGS := qemu-system-x86 busybox-static cpio e2fsprogs binutils zstd

real-setup: setup
	@missing=""; for p in $(REAL_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			echo "real-setup: apt-get install$$missing"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y --no-install-recommends $$missing || \
			{ apt-get update && apt-get install -y --no-install-recommends $$missing; } || \
			echo "real-setup: apt-get install$$missing failed; the qemu backend stays unavailable"; \
		else \
			echo "real-setup: missing Debian packages$$missing (install them as root with apt-get);" \
			     "the qemu backend stays unavailable"; \
		fi; \
	fi
	$(PY) -m harness real-setup

# The default real matrix: every shipped real policy x 5 seeds x the realisable workloads below
# (the RAM sweep's 32, 64 and 128 MB points); a policy or backend real-setup could not prepare
# is skipped with its reason.  docs/real-kernel.md says why the other workloads are left out.
REAL_WORKLOADS := morton-make-usemem,several-hogs,dstate-victim,streaming-reader,fork-bomb,ram.ram_mb32,ram.ram_mb64,ram.ram_mb128

bench-real: setup
	$(MAKE) --no-print-directory real-setup || echo "bench-real: real-setup failed; continuing"
	$(PY) -m harness real --workloads $(REAL_WORKLOADS) --seeds 5

# The thrashing workloads on the real policies that meet them (docs/thrashing.md "Real runs"):
# the classic LRU, MGLRU's min_ttl_ms guard, earlyoom and 6.12, on the throttled disk, at time
# scale 1 (at 0.1 the guest kernel's reclaim, not compressed under TCG, takes ten times its
# share) and a 100-s bound (the rule needs 60 s below 20 % after a 10-s window); ~50 min.
THRASH_REAL_WORKLOADS := desktop-thrash,swap-thrash,build-under-limit.ram_mb128,build-under-limit.ram_mb48,build-under-limit.ram_mb36
THRASH_REAL_POLICIES := real-6.1,real-6.1-mglru-ttl,real-6.1-earlyoom,real-6.12

bench-real-thrash: setup
	$(MAKE) --no-print-directory real-setup || echo "bench-real-thrash: real-setup failed; continuing"
	$(PY) -m harness real --policies $(THRASH_REAL_POLICIES) --workloads $(THRASH_REAL_WORKLOADS) --seeds 5 \
		--time-scale 1 --max-wall 100

# Debian's headless-capable Chromium for the report's browser test (tests/test_browser.py);
# installed only when missing, only as root with apt.  Without it that test skips, saying so.
BROWSER_PKGS := chromium

browser-setup:
	@missing=""; for p in $(BROWSER_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then \
		echo "browser-setup: chromium is installed"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "browser-setup: apt-get install$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends $$missing || \
		{ apt-get update && apt-get install -y --no-install-recommends $$missing; } || \
		{ echo "browser-setup: apt-get install$$missing failed; the browser test will skip"; exit 1; }; \
	else \
		echo "browser-setup: missing Debian package$$missing (install it as root with apt-get);" \
		     "the browser test will skip"; exit 1; \
	fi

clean:
	rm -rf build dist *.egg-info .pytest_cache .benchmarks
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
