# The README's two commands are `make demo` and `make test`; both install what they need first.
PYTHON ?= python3

.PHONY: setup demo test bench
setup:
	sh scripts/setup

demo: setup
	$(PYTHON) -m alg demo

test: setup
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) bench/engine_bench.py
