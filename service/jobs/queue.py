"""Enqueue tasks by name, with a Celery app that knows nothing of the worker code.

The API only needs to publish a message; importing the worker package would pull in torch.
"""
from __future__ import annotations

from celery import Celery

RENDER_TASK = "unianimate.render"
RENDER_QUEUE = "render"
WEBHOOK_TASK = "unianimate.deliver_webhook"
WEBHOOK_QUEUE = "webhooks"


class EnqueueFailed(Exception):
    """The broker did not take the message."""


def make_celery(broker_url: str, connect_timeout_s: float = 5.0) -> Celery:
    app = Celery("unianimate-api", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_connection_timeout=connect_timeout_s,
        broker_connection_retry_on_startup=False,
        broker_transport_options={"socket_timeout": connect_timeout_s,
                                  "socket_connect_timeout": connect_timeout_s},
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def enqueue_render(celery: Celery, job_id: str) -> None:
    """Publish `unianimate.render(job_id)` on the render queue; EnqueueFailed if the broker refuses."""
    try:
        celery.send_task(RENDER_TASK, args=[job_id], queue=RENDER_QUEUE, task_id=job_id,
                         retry=True, retry_policy={"max_retries": 2, "interval_start": 0,
                                                   "interval_step": 0.5, "interval_max": 1})
    except Exception as exc:  # kombu raises OperationalError and friends; all mean "not queued"
        raise EnqueueFailed(f"could not enqueue job {job_id}: {exc}") from exc


def enqueue_webhook(celery: Celery, event_id: str) -> None:
    """Publish `unianimate.deliver_webhook(event_id)` on the light webhooks queue."""
    celery.send_task(WEBHOOK_TASK, args=[event_id], queue=WEBHOOK_QUEUE)


def broker_lists(queue: str) -> list[str]:
    """The Redis lists holding a queue's waiting messages: kombu's Redis transport keeps one list
    per queue, plus one per extra priority level named `{queue}\\x06\\x16{priority}`."""
    return [queue] + [f"{queue}\x06\x16{p}" for p in (3, 6, 9)]


def queue_depth(redis_client, queue: str = RENDER_QUEUE) -> int:
    """Messages waiting in the render queue."""
    with redis_client.pipeline(transaction=False) as pipe:
        for name in broker_lists(queue):
            pipe.llen(name)
        return sum(pipe.execute())
