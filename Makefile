# mdm-sync developer commands. `make test` works on a fresh machine: it installs the pinned Python test tools
# into .venv (moto_server, the local AWS emulator) and runs every test; tests start their own servers on
# 127.0.0.1 and stop them when they end.

VENV    := .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed-$(shell cksum tools/requirements.txt | cut -d' ' -f1)
export MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server

.PHONY: test lint tools demo clean-tools

## Install the pinned Python tools into .venv (re-run when tools/requirements.txt changes).
tools: $(STAMP)
$(STAMP): tools/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r tools/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

## Every test: unit, adapter (wiremock, moto_server) and handler end-to-end tests.
test: tools
	cargo test --workspace --all-targets

## Dry run of the CDC path on embedded defaults: the sample DMS event through cdc-ingest's real decoder, mapping
## and scheduler, printing where every record goes and the Reltio requests it would send. No AWS, no Reltio.
demo:
	cargo run -q -p cdc-ingest --example plan -- events/cdc-ingest.json functions/cdc-ingest/mapping.example.toml

## Formatting and lints as CI runs them.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean-tools:
	rm -rf $(VENV)
