# The README's two commands are `make demo` and `make test`; both install what they need first.
PYTHON ?= python3

.PHONY: setup demo test bench ipk
setup:
	sh scripts/setup

demo: setup
	$(PYTHON) -m alg demo

test: setup
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) bench/engine_bench.py

# OpenWrt packages (.ipk) in dist/, built from openwrt/*/Makefile without the SDK
ipk:
	$(PYTHON) scripts/mkipk
