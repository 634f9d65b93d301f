# Hostile inputs, fuzzing and load (tests/hostile, tests/fuzz, bench/load.py; docs/reliability.md).
# `make test` already runs tests/hostile and tests/fuzz with small example counts.
.PHONY: fuzz load
FUZZ_SCALE ?= 20

## fuzz         property + schemathesis fuzzing, long profile: 20x the examples of `make test` (FUZZ_SCALE=20)
fuzz: $(STAMP)
	UNIANIMATE_FUZZ_SCALE=$(FUZZ_SCALE) $(PY) -m pytest -q -s tests/fuzz tests/hostile

## load         200 concurrent submissions + 60 s of status polling + status/healthz cost ratio; writes bench/results/load_cpu.md
load: $(STAMP)
	$(PY) -m bench.load --jobs 200 --poll-seconds 60
