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
	@echo "make demo         start the stack, render examples/ through the REST API into .run/demo.mp4, stop"
	@echo "make conformance  replay the shared reference fixtures"
	@grep -h '^## ' mk/*.mk 2>/dev/null | sed 's/^## /make /' || true

setup: $(STAMP)

# Some machines' pip configuration names index locations that do not exist, and pip warns about each
# one for every package it looks up (~100 lines of noise). Those lines alone are dropped; anything else
# pip prints, and its exit status (pipefail), is kept.
PIP_QUIET = 2>&1 | { grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory" || true; }

# torch first and pinned exactly, so nothing later pulls a CUDA build from the registry.
$(STAMP): pyproject.toml
	@echo "setup: $(VENV) (python3 -m venv)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "setup: pip"
	@set -o pipefail; $(PIP) install -q --upgrade pip $(PIP_QUIET)
	@echo "setup: torch==2.13.0 (the CPU build here; a minute or more on first use)"
	@set -o pipefail; $(PIP) install -q torch==2.13.0 $(PIP_QUIET)
	@echo "setup: the project and its test tools (pip install -e '.[test]')"
	@# setuptools warns on every editable install that same-named folders in the working directory could
	@# shadow the packages; here the working directory is the project, so the packages are those folders.
	@set -o pipefail; PYTHONWARNINGS="ignore:Editable installation" $(PIP) install -q -e '.[test]' $(PIP_QUIET)
	@touch $(STAMP)
	@echo "setup: done ($(VENV))"

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check cli model service worker tests bench

conformance: $(STAMP)
	$(PY) -m model.conformance $(REFERENCE_DIR)/fixtures/*.pt $(REFERENCE_DIR)/*_state_dict.json $(REFERENCE_DIR)/*_summary.json $(REFERENCE_DIR)/pose/*.json

-include mk/*.mk
