# spotswap: every command a developer or CI needs. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
MOTO_VERSION := 5.2.5
CFN_LINT_VERSION := 1.58.0
CHECKOV_VERSION := 3.3.30
CARGO_LAMBDA_VERSION := 1.9.2
VENV := .venv
# The Lambda function is behind a feature, so the CLI never carries the Lambda runtime. Every
# debug build here (test, lint's clippy aside, demo) uses the same features, so the AWS SDK is
# compiled once for all of them: a different feature set would rebuild the whole SDK.
FEATURES := --features lambda

.PHONY: all build test lint fmt cfn-lint checkov data demo figures bench bench-large fuzz chaos lambda bench-lambda package deploy clean

all: build

build:
	$(CARGO) build --locked $(FEATURES)

## Every test: unit tests, golden scenarios, setting behaviour tests, component tests over the
## in-memory cloud, the end-to-end tests against the local emulator (moto, in .venv), the
## Lambda binary through a local runtime API, and cfn-lint over the templates.
test: $(VENV)/.moto-$(MOTO_VERSION) cfn-lint checkov
	$(CARGO) test --locked $(FEATURES)

## Formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets $(FEATURES) -- -D warnings

fmt:
	$(CARGO) fmt --all

## Lint the CloudFormation templates (cfn-lint from PyPI, in .venv): no error and no warning.
cfn-lint: $(VENV)/.cfn-lint-$(CFN_LINT_VERSION)
	$(VENV)/bin/cfn-lint cloudformation/*.yaml

## Security and best-practice checks of the templates: every finding is fixed, or skipped in
## the template's Metadata with a one-line reason.
checkov: $(VENV)/.checkov-$(CHECKOV_VERSION)
	$(VENV)/checkov/bin/checkov -d cloudformation --framework cloudformation --compact --quiet --skip-download

## spotswap's main job on a local AWS emulator: seeds an account in two regions and runs
## passes of the real binary until every opted-in group has converged.
demo: $(VENV)/.moto-$(MOTO_VERSION)
	$(CARGO) build --locked $(FEATURES) --bin spotswap --example demo
	$(CARGO) run --locked $(FEATURES) --quiet --example demo

## The Lambda zip for provided.al2023 (target/lambda/spotswap-lambda/bootstrap.zip), built by
## cargo-lambda (from PyPI, in .venv). x86_64 always; arm64 too where the aarch64 standard
## library is installed (`rustup target add aarch64-unknown-linux-gnu`).
lambda: $(VENV)/.cargo-lambda-$(CARGO_LAMBDA_VERSION)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CARGO) lambda build --release $(FEATURES) \
	  --bin spotswap-lambda --x86-64 --output-format zip --lambda-dir target/lambda/x86_64
	@if rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$$'; then \
	  PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CARGO) lambda build --release $(FEATURES) \
	    --bin spotswap-lambda --arm64 --output-format zip --lambda-dir target/lambda/arm64; \
	else \
	  echo "arm64 zip skipped: the aarch64-unknown-linux-gnu standard library is not installed"; \
	fi
	@ls -l target/lambda/*/spotswap-lambda/bootstrap.zip

## Launch figures over the in-memory cloud: passes to convert a group of 20, 60 and 200, pools
## per group at the end, launch calls per pass for 10 and 100 groups. Prints figures; not a test.
figures:
	$(CARGO) run --locked $(FEATURES) --quiet --example launch_figures

## Pass figures (docs/benchmarks.md): the real pass over the in-memory cloud with 50 ms per call
## and AWS's request buckets, for accounts S (100 instances) and M (4,000): wall and CPU time of
## a dry run and a first real pass, reads against the minimum read set, throttled calls, peak
## heap, the Lambda's answer size; then the savings of a converged M against the oracle. A
## release build, as the Lambda runs. Prints figures; not a test.
bench:
	$(CARGO) run --release --locked $(FEATURES) --example bench

## The same with L (20 regions x 500 groups x 20 = 200,000 instances), and the chart of wall
## time and memory against account size (docs/benchmarks.svg). About 10 minutes.
bench-large:
	$(CARGO) run --release --locked $(FEATURES) --example bench -- --large --svg docs/benchmarks.svg

## Fuzzing (tests/fuzz.rs): the parsers of outside input (settings, protocol tags, events, price
## list entries, schedules, globs) on mutations of tests/fuzz/corpus and arbitrary text, for
## FUZZ_SECONDS (10 minutes here; `make test` runs 12 s of it). Prints the inputs per target;
## a panic fails it with the seed that replays it (FUZZ_SEED).
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --locked $(FEATURES) --test fuzz -- --nocapture

## Randomized fault injection (tests/chaos.rs): seeded runs of the real pass over the in-memory
## cloud with the groups' own scaling, spot interruptions, capacity errors, not-found races,
## failed listings, 30% throttling, crashes mid-pass and two passes at once, the swap protocol's
## invariants checked after every pass, over CHAOS_SEEDS seeds (1,000 here; `make test` runs
## 100). Prints faults and violations by kind; a failing run names its seed, which CHAOS_SEED
## replays (CHAOS_OVERLAP=0 leaves overlapping passes out).
CHAOS_SEEDS ?= 1000
chaos:
	CHAOS_SEEDS=$(CHAOS_SEEDS) $(CARGO) test --locked $(FEATURES) --test chaos -- --nocapture

## Lambda figures: zip size and initialisation time of the release binary `make lambda` built,
## through a local runtime API (the harness itself runs as a debug build).
BUILD_DIR = $(or $(CARGO_TARGET_DIR),target)
bench-lambda: lambda
	$(CARGO) run --locked $(FEATURES) --example lambda_bench -- \
	  --binary $(BUILD_DIR)/x86_64-unknown-linux-gnu/release/spotswap-lambda \
	  --zip target/lambda/x86_64/spotswap-lambda/bootstrap.zip --runs 10

## Upload the zip and deploy the main stack to a real account (not run in CI):
##   make deploy BUCKET=my-artifacts STACK=spotswap REGION=eu-west-1 [ARCH=x86_64]
ARCH ?= x86_64
STACK ?= spotswap
KEY ?= spotswap/$(ARCH)/bootstrap-$(shell git rev-parse --short HEAD 2>/dev/null || echo dev).zip
package: lambda
	@test -n "$(BUCKET)" || { echo "set BUCKET=<an S3 bucket in REGION>"; exit 2; }
	aws s3 cp target/lambda/$(ARCH)/spotswap-lambda/bootstrap.zip s3://$(BUCKET)/$(KEY) \
	  $(if $(REGION),--region $(REGION))

deploy: package
	aws cloudformation deploy --template-file cloudformation/spotswap.yaml \
	  --s3-bucket $(BUCKET) --s3-prefix spotswap/templates \
	  --stack-name $(STACK) --capabilities CAPABILITY_IAM $(if $(REGION),--region $(REGION)) \
	  --parameter-overrides CodeS3Bucket=$(BUCKET) CodeS3Key=$(KEY) Architecture=$(ARCH) $(PARAMS)

## The project's Python tools, in a local virtualenv: moto (the AWS emulator, and its
## instance-type dump for `make data`), cfn-lint, cargo-lambda.
$(VENV)/.moto-$(MOTO_VERSION):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q 'moto[server]==$(MOTO_VERSION)'
	touch $@

$(VENV)/.cfn-lint-$(CFN_LINT_VERSION): $(VENV)/.moto-$(MOTO_VERSION)
	$(VENV)/bin/pip install -q cfn-lint==$(CFN_LINT_VERSION)
	touch $@

# checkov pins its own boto3: a virtualenv of its own, so moto's stays as moto wants it.
$(VENV)/.checkov-$(CHECKOV_VERSION): $(VENV)/.moto-$(MOTO_VERSION)
	python3 -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install -q checkov==$(CHECKOV_VERSION)
	touch $@

$(VENV)/.cargo-lambda-$(CARGO_LAMBDA_VERSION): $(VENV)/.moto-$(MOTO_VERSION)
	$(VENV)/bin/pip install -q cargo-lambda==$(CARGO_LAMBDA_VERSION)
	touch $@

## Regenerate data/ from its sources (see data/README.md).
data: $(VENV)/.moto-$(MOTO_VERSION)
	python3 tools/gen_data.py \
	  --moto-resources "$$($(VENV)/bin/python -c 'import moto,os;print(os.path.dirname(moto.__file__))')/ec2/resources" \
	  --prices-tsv data/source/ec2-prices-us-east-1-2023-08.tsv --out data

clean:
	$(CARGO) clean
