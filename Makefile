# The README's two commands are `make demo` and `make test`; both install what they need first.
PYTHON ?= python3

.PHONY: setup demo test bench ipk apk
setup:
	sh scripts/setup

demo: setup
	$(PYTHON) -m tests.support.lab.demo

test: setup
	$(PYTHON) -m pytest -q

# Benchmarks (README, "Benchmarks"): each prints a table and asserts nothing; all but engine_bench
# need root (network namespaces).  A full run of them all takes about 20 minutes here.
#   make bench [BENCH="latency callrate"] [QUICK=1] [BENCH_ARGS="--daemon-arg=--flag ..." with one BENCH]
BENCH ?= engine_bench footprint queue_bench nft_bench nat_compare latency callrate memory flood
bench:
	@for b in $(BENCH); do echo "== bench/$$b.py $(if $(QUICK),--quick) $(BENCH_ARGS)"; \
		$(PYTHON) bench/$$b.py $(if $(QUICK),--quick) $(BENCH_ARGS) || exit 1; echo; done

# OpenWrt 24.10 packages (.ipk) in dist/, built from openwrt/*/Makefile without the SDK
ipk:
	$(PYTHON) scripts/mkipk

# The same packages for OpenWrt 25.12's apk-tools 3 (.apk, ADB format), also without the SDK
apk:
	$(PYTHON) scripts/mkapk

# QEMU test VM (qemu/): a Debian-packages-only image with the .ipk installed as opkg does,
# booted under TCG to run the lab scenarios against the installed package with nft queue.
#   make qemu-test ARCH=x86_64|aarch64 [MACHINE=pc|virt|raspi3b] [TESTS=name,name] [QEMU_SHELL=1]
ARCH ?= x86_64
QEMU_CACHE ?= build/qemu
.PHONY: qemu-image qemu-test
qemu-image: ipk
	$(PYTHON) qemu/image.py --arch $(ARCH) --cache $(QEMU_CACHE)

qemu-test: qemu-image
	$(PYTHON) qemu/run.py --arch $(ARCH) --cache $(QEMU_CACHE) $(if $(MACHINE),--machine $(MACHINE)) \
		$(if $(TESTS),--tests $(TESTS)) $(if $(QEMU_SHELL),--shell) $(QEMU_RUN_ARGS)
