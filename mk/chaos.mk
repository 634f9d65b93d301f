# Chaos tests (tests/chaos, docs/reliability.md): workers killed, Redis and S3 restarted, webhook receivers down.
.PHONY: chaos chaos-fast

## chaos        every chaos test, slow ones included; figures in .run/chaos-figures.json
chaos: $(STAMP)
	mkdir -p .run
	CHAOS_SLOW=1 CHAOS_FIGURES=.run/chaos-figures.json $(PY) -m pytest -q tests/chaos

## chaos-fast   the fast subset of the chaos tests (also part of `make test`)
chaos-fast: $(STAMP)
	$(PY) -m pytest -q tests/chaos
