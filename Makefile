# Edgetrail: two commands do everything on a fresh Debian 12 machine of this kind.
#   make demo   set up, build, and (as root) play the six-step demo on a real edge node; Ctrl-C stops it
#   make test   set up, build, run every test (Swift and Python) against the real infrastructure
# Other targets: setup, build, bench, fuzz, proto (regenerate committed code), infra-up/-down, clean-run.

SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
# The librdkafka 2.16 runtime (unpacked by setup) must be found before Debian's 2.0.2.
export EDGETRAIL_DEPS := $(ROOT)/.deps
export LD_LIBRARY_PATH := $(ROOT)/.deps/lib$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))
export PATH := $(ROOT)/.deps/bin:/opt/swift/usr/bin:$(PATH)

EDGETRAIL := $(ROOT)/.build/debug/edgetrail
# The image deploy/kubernetes/ runs, tagged with the CLI's version.
IMAGE := edgetrail/edgetrail

.PHONY: help setup build demo test bench fuzz proto image infra-up infra-down clean-run

help:
	@echo "make demo    - set up, build, and (as root) play the six-step demo on a real edge node; Ctrl-C stops it"
	@echo "make test    - set up, build and run all tests against the real infrastructure"
	@echo "make setup   - install Debian packages, pinned wheels (sha256-checked) and the Python venv"
	@echo "make build   - swift build (debug)"
	@echo "make proto   - regenerate Swift and Python code from proto/ (builds the protoc plugins)"
	@echo "make bench   - release build, then the benchmarks with their figures"
	@echo "make image   - build the container image deploy/kubernetes/ runs (needs docker; after make build)"
	@echo "make fuzz    - libFuzzer on the filter rule parser and checker (FUZZ_SECONDS, default 60)"

setup:
	@scripts/setup.sh

build: setup
	@scripts/build-bpf.sh
	@echo "==> swift build (the first build compiles the dependencies: ~8 minutes on 2 cores)"
	@swift build
	@echo "==> built $(EDGETRAIL)"

demo: build
	@$(EDGETRAIL) demo

test: build
	@scripts/test.sh

bench: setup
	@echo "==> swift build -c release (the first release build takes ~12 minutes on 2 cores)"
	@scripts/build-bpf.sh
	@swift build -c release --product edgetrail
	@scripts/bench.sh

image: build
	docker build -f deploy/container/Dockerfile -t $(IMAGE):$$($(EDGETRAIL) --version) .

fuzz:
	@scripts/fuzz-filters.sh $${FUZZ_SECONDS:-60}

proto: setup
	@scripts/gen-proto.sh
	@scripts/gen-otlp.sh

infra-up: build
	@$(EDGETRAIL) infra up

infra-down:
	@$(EDGETRAIL) infra down

clean-run: infra-down
	rm -rf .run
