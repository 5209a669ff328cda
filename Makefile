# spotswap: every command a developer or CI needs. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
MOTO_VERSION := 5.2.5
VENV := .venv

.PHONY: all build test lint fmt data demo clean

all: build

build:
	$(CARGO) build --locked

## Every test: unit tests, golden scenarios, setting behaviour tests, component tests over the
## in-memory cloud, and the end-to-end tests against the local emulator (moto, in .venv).
test: $(VENV)/.moto-$(MOTO_VERSION)
	$(CARGO) test --locked

## Formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## spotswap's main job on a local AWS emulator: seeds an account in two regions and runs
## passes of the real binary until every opted-in group has converged.
demo: $(VENV)/.moto-$(MOTO_VERSION)
	$(CARGO) build --locked --bin spotswap --example demo
	$(CARGO) run --locked --quiet --example demo

## The project's Python tools (moto, for its instance-type dump), in a local virtualenv.
$(VENV)/.moto-$(MOTO_VERSION):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q 'moto[server]==$(MOTO_VERSION)'
	touch $@

## Regenerate data/ from its sources (see data/README.md).
data: $(VENV)/.moto-$(MOTO_VERSION)
	python3 tools/gen_data.py \
	  --moto-resources "$$($(VENV)/bin/python -c 'import moto,os;print(os.path.dirname(moto.__file__))')/ec2/resources" \
	  --prices-tsv data/source/ec2-prices-us-east-1-2023-08.tsv --out data

clean:
	$(CARGO) clean
