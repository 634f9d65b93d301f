# The local stack without Docker (scripts/stack.sh): its own Redis, SeaweedFS, the API, a render worker, the webhook worker.
.PHONY: up down worker demo

## up           start the stack's own Redis (:6390), SeaweedFS, the API on :8000 and the workers (.run/)
up: $(STAMP)
	PY=$(PY) scripts/stack.sh up

## worker       start one more render worker
worker: $(STAMP)
	PY=$(PY) scripts/stack.sh worker

## down         stop what `make up` and `make worker` started
down:
	PY=$(PY) scripts/stack.sh down

demo: $(STAMP)
	PY=$(PY) scripts/stack.sh demo
