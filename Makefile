# mdm-sync developer commands. `make test` works on a fresh machine: it installs the pinned Python test tools
# into .venv (moto_server, the local AWS emulator) and runs every test; tests start their own servers on
# 127.0.0.1 and stop them when they end.

VENV    := .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed-$(shell cksum tools/requirements.txt | cut -d' ' -f1)
# checkov, the IaC scanner, has a venv of its own: it pins a boto3 that the tools above cannot share.
SCAN_VENV  := .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed-$(shell cksum tools/requirements-scan.txt | cut -d' ' -f1)
export MOTO_SERVER := $(CURDIR)/tools/moto-server
# sam and cargo-lambda (with its zig) come from the venv; no telemetry from test runs.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: test infra-test lint tools scan-tools demo plan e2e release cli clean-tools bench bench-cdc fuzz

## Install the pinned Python tools into .venv (re-run when tools/requirements.txt changes).
tools: $(STAMP)
$(STAMP): tools/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r tools/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

## Install the pinned IaC scanner (checkov) into .venv-scan (re-run when tools/requirements-scan.txt changes).
scan-tools: $(SCAN_STAMP)
$(SCAN_STAMP): tools/requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --disable-pip-version-check -q -r tools/requirements-scan.txt
	rm -f $(SCAN_VENV)/.installed-*
	touch $@

## Every test: unit, adapter (wiremock, moto_server) and handler end-to-end tests, then the template checks.
test: tools
	cargo test --workspace --all-targets
	$(MAKE) e2e
	$(MAKE) infra-test

## Template checks: cfn-lint and `sam validate --lint` on every template, the operational rules test, the IaC
## scan (checkov on every template and on the main one rendered with every optional resource and with the customer
## key: zero unexplained failures; accepted findings are suppressions in the resources' metadata, each with its
## reason, none on the command line), and a `sam build` of the whole stack for x86_64 (CI machines cannot fetch
## the aarch64 target; arm64 stays the deployment default).
infra-test: tools scan-tools
	$(VENV)/bin/cfn-lint infra/*.yaml
	for t in infra/*.yaml; do $(VENV)/bin/sam validate --lint --region us-east-1 -t $$t || exit 1; done
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/infra
	$(VENV)/bin/python tests/infra/iac_scan.py $(SCAN_VENV)/bin/checkov
	$(VENV)/bin/sam build --parameter-overrides Architecture=x86_64 --build-dir target/sam-build

## The whole pipeline on this machine: builds the release binaries, starts moto_server, the Reltio and Salesforce
## simulators and every function under a local Lambda Runtime API on 127.0.0.1, runs a small clean workload,
## prints the report and stops everything (also on Ctrl-C). Exit status 1 when an invariant fails.
## `make demo DEMO_ARGS="--path kafka"`: Reltio's events on a Kafka topic (Tansu) through stream-consumer instead.
demo: tools release
	$(VENV)/bin/python -m tests.localstack --persons 20 $(DEMO_ARGS)

## The local stack's end-to-end tests (clean workload, faults, bad inputs) against the release binaries, and the
## operator CLI against the local stack (its debug build: it shares the tests' dependencies).
e2e: tools release
	cargo build -p mdm-sync
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/localstack

## Release builds of every function (the workspace's fat-LTO profile; reused when up to date).
release:
	cargo build --release $(addprefix -p ,$(patsubst functions/%/Cargo.toml,%,$(wildcard functions/*/Cargo.toml)))

## The operator CLI, optimised: target/release/mdm-sync (or `cargo install --path tools/mdm-sync`).
cli:
	cargo build --release -p mdm-sync

## Issue 7's figures, each printed beside its target (markdown tables): the criterion benches (CDC transform vs
## a bare JSON parse, webhook request, crm-updater batch plan), then cold start and peak RSS of the release
## binaries under a local Runtime API, API calls per 1,000 records counted by the local stack's simulators, and
## the zipped deployment packages (`cargo lambda build`, x86_64; arm64 when its target is installed).
bench: tools release
	cargo bench --workspace --benches
	$(VENV)/bin/python tools/bench/coldstart_rss.py
	$(VENV)/bin/python tools/bench/api_calls.py
	$(VENV)/bin/python tools/bench/package_size.py

## Dry run of the CDC path on embedded defaults: the sample DMS event through cdc-ingest's real decoder, mapping
## and scheduler, printing where every record goes and the Reltio requests it would send. No AWS, no Reltio.
plan:
	cargo run -q -p cdc-ingest --example plan -- events/cdc-ingest.json functions/cdc-ingest/mapping.example.toml

## Formatting and lints as CI runs them.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean-tools:
	rm -rf $(VENV) $(SCAN_VENV)

## The CDC path on a given Kinesis event and mapping: `make bench-cdc EVENT=event.json MAPPING=mapping.toml`
## prints `event bytes -> bodies: <ms> ms` and `bare parse: <ms> ms` (medians after a warm-up).
bench-cdc:
	@test -n "$(EVENT)" -a -n "$(MAPPING)" || { echo "usage: make bench-cdc EVENT=<Kinesis event JSON> MAPPING=<mapping TOML>" >&2; exit 2; }
	@BENCH_CDC_EVENT="$(abspath $(EVENT))" BENCH_CDC_MAPPING="$(abspath $(MAPPING))" \
	  cargo bench -q -p cdc-ingest --bench cdc_transform

## Every fuzz target (fuzz/) for FUZZ_RUNS executions on a copy of its corpus, printing the counts (nightly and
## cargo-fuzz needed; not part of `make test`). No sanitizer: the code under test is safe Rust (no unsafe), where
## AddressSanitizer finds nothing and costs ten times the executions; panics and property failures are what count.
FUZZ_RUNS ?= 10000000
FUZZ_TARGETS := dms_decoder webhook_parsers_agree signature_roundtrip accepted_is_sendable crm_event mappings
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  work=$$(mktemp -d); cp fuzz/corpus/$$t/* $$work/; \
	  (cd fuzz && cargo +nightly fuzz run --sanitizer none $$t $$work -- -runs=$(FUZZ_RUNS) -max_len=4096 2>&1) \
	    | grep -E "^Done|ERROR|panicked|crash-" | sed "s/^/$$t: /"; \
	  rm -rf $$work; \
	done
