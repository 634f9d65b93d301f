"""`unianimate worker`: start a Celery worker for the render queue, the webhook queue, or both.

    unianimate worker                      # render jobs: one process, one GPU
    unianimate worker --concurrency 4      # four processes; with 4 GPUs each takes one
    unianimate worker --queues webhooks    # webhook deliveries (threads, no model)

Exit status: 2 when the settings cannot work (no model, a checkpoint folder missing files, a CUDA
device that is not there), 1 when a render process could not load the model after all.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

from pydantic import ValidationError

from worker.load_failure import EXIT_STATUS, note
from worker.settings import QUEUES, RENDER_QUEUE, WEBHOOK_QUEUE, ModelNotConfigured, WorkerSettings
from worker.startup_checks import StartupRefused, check_render_worker

WEBHOOK_THREADS = 8


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unianimate worker", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--queues", default=RENDER_QUEUE,
                        help=f"comma-separated, from {', '.join(QUEUES)} (default: {RENDER_QUEUE})")
    parser.add_argument("--concurrency", type=int,
                        help=f"processes (render: default 1, one per GPU) or threads (webhooks: {WEBHOOK_THREADS})")
    parser.add_argument("--pool", choices=["prefork", "solo", "threads"],
                        help="default: prefork for render workers, threads for webhook-only workers")
    parser.add_argument("--name", help="Celery node name (default: <queues>-<pid>@<host>)")
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if not queues or unknown:
        print(f"unianimate worker: unknown queue(s) {unknown or queues}; choose from {', '.join(QUEUES)}",
              file=sys.stderr)
        return 2
    renders = RENDER_QUEUE in queues
    pool = args.pool or ("prefork" if renders else "threads")
    if renders and pool == "threads":
        print("unianimate worker: the render queue needs --pool prefork (or solo): each process owns one model",
              file=sys.stderr)
        return 2
    try:
        settings = WorkerSettings()
        if renders:
            settings.require_model()
            check_render_worker(settings)
    except (ValidationError, ModelNotConfigured, StartupRefused) as exc:
        print(f"unianimate worker: {exc}", file=sys.stderr)
        return 2
    if WEBHOOK_QUEUE in queues and settings.webhook_secret is None:
        print("unianimate worker: the webhook queue needs UNIANIMATE_WEBHOOK_SECRET=whsec_...; generate one with "
              "python -c 'from service.webhooks.signing import generate_secret; print(generate_secret())'", file=sys.stderr)
        return 2

    from worker.celery_app import configure

    app = configure(settings, renders=renders, webhooks=WEBHOOK_QUEUE in queues)
    concurrency = args.concurrency or (1 if renders else WEBHOOK_THREADS)
    name = args.name or f"{'-'.join(queues)}-{os.getpid()}@{socket.gethostname()}"
    argv = ["worker", "--queues", ",".join(queues), "--concurrency", str(concurrency), "--pool", pool,
            "--hostname", name, "--loglevel", args.loglevel, "--without-gossip", "--without-mingle"]
    try:
        status = app.start(argv)
    except SystemExit as exc:  # the solo pool's model load failed in this process (worker.load_failure)
        status = exc.code
    failure = note.read()
    if failure is not None:  # a render process could not load the model and stopped the worker
        print(f"unianimate worker: {failure}", file=sys.stderr)
        return EXIT_STATUS
    return int(status or 0)
