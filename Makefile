# One entry point for humans and CI. `make setup` builds .venv; `make test` runs the test suite;
# `make demo` renders the demo through the REST API. Area-specific targets live in mk/*.mk.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
REFERENCE_DIR ?= $(abspath ../shared/reference)
export UNIANIMATE_REFERENCE_DIR ?= $(REFERENCE_DIR)

.PHONY: setup test test-all lint conformance help
.DEFAULT_GOAL := help

help:
	@echo "make setup        create .venv with the project (CPU torch==2.13.0)"
	@echo "make test         run the test suite (what CI runs)"
	@echo "make demo         start the stack, render the demo through the REST API, stop"
	@echo "make conformance  replay the shared reference fixtures"
	@grep -h '^## ' mk/*.mk 2>/dev/null | sed 's/^## /make /' || true

setup: $(STAMP)

# torch first and pinned exactly, so nothing later pulls a CUDA build from the registry.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check cli model service worker tests bench

conformance: $(STAMP)
	$(PY) -m model.conformance $(REFERENCE_DIR)/fixtures/*.pt $(REFERENCE_DIR)/*_state_dict.json $(REFERENCE_DIR)/*_summary.json $(REFERENCE_DIR)/pose/*.json

-include mk/*.mk
