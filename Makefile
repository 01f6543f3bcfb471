# The two commands of the README: `make demo` and `make test`. Both bootstrap first.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: bootstrap demo test lint unit integration bench clean

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	@$(VENV)/python -m isthmus.demo

lint: bootstrap
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench
	$(VENV)/mypy

# pytest exits 5 when it collected nothing: that must fail, and it does (any non-zero fails).
test: lint
	$(VENV)/pytest -q -ra --durations=10

bench: bootstrap
	$(VENV)/python bench/api.py --quick
	$(VENV)/python bench/dataplane.py --quick
	$(VENV)/python bench/bgp.py --quick
	$(VENV)/python bench/kernel_tier.py --quick
	$(VENV)/python bench/ipsec.py --quick
	$(VENV)/python bench/failover.py --quick
	$(VENV)/python bench/gre.py --quick
	$(VENV)/python bench/tiers.py --quick
	$(VENV)/python bench/bgp_sites.py --quick
	$(VENV)/python bench/ui.py --quick

clean:
	rm -rf var build .pytest_cache .mypy_cache .ruff_cache .hypothesis
