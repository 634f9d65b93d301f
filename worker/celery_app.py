"""The Celery application of the workers: two queues, two tasks, one model per process.

- "render" queue, task `unianimate.render(job_id)`: prefork, one process per GPU. The model is
  loaded right after the fork (`worker_process_init`), once, and renders every job the process
  gets. Messages are acknowledged after the task (`acks_late`) and handed back when the process
  dies (`reject_on_worker_lost`); the job lease makes a second copy harmless.
- "webhooks" queue, task `unianimate.deliver_webhook(event_id)`: light, threads; retries with
  jittered exponential backoff, resending the recorded event byte for byte. Each webhook worker
  runs the relay that re-sends events whose message was lost (worker/webhook_relay.py).

A render message is acknowledged only once its job is `running` (or finished): a failure before
that (Redis unreachable, the model not loaded, a lease still held) retries the message later,
because nothing else would ever send a queued job again.

Redis' visibility timeout (when an unacknowledged message is handed out again) is longer than
the longest job, so a healthy job is never rendered twice; a dead worker's job is picked up
sooner by the orphan sweeper that runs in each render worker's main process.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from celery import Celery, signals
from kombu import Queue

from model.longvideo.protocol import SegmentRenderer
from service.jobs.fair_queue import FairQueue
from service.jobs.models import ModelsSeen
from service.jobs.queue import RENDER_TASK, WEBHOOK_TASK, queue_depth
from service.jobs.store import JobStore
from service.storage.objects import Storage, make_storage
from service.webhooks.delivery import RetryPolicy, deliver_recorded
from service.webhooks.outbox import WebhookOutbox
from service.webhooks.sender import webhook_client
from worker import load_failure, stopping
from worker.broker_queue import BrokerQueue
from worker.dispatcher import Dispatcher
from worker.patient_storage import PatientStorage
from worker.periodic import Periodic
from worker.render_job import NotStarted, Outcome, RetryRender, WorkerContext, give_up_starting, render_job
from worker.render_retry import hold_off_sweepers, requeue_claim_ttl, retry_countdown, retry_later
from worker.renderer_loader import load_extractor, load_renderer, memory_fit
from worker.settings import RENDER_QUEUE, WEBHOOK_QUEUE, WorkerSettings
from worker.sweeper import Sweeper
from worker.webhook_relay import WebhookRelay

log = logging.getLogger(__name__)

WEBHOOK_SOFT_TIME_LIMIT_S = 60
START_RETRIES = 5  # a job failing to start the same non-transient way this often is failed, not retried on
MODEL_ANNOUNCE_EVERY_S = 60  # GET /models forgets a model not announced for 3 minutes (service/jobs/models.py)
WEBHOOK_REDIS_BACKOFF_MAX_S = 60  # a delivery that hit a Redis error is retried after 1, 2, 4 s... up to this

app = Celery("unianimate", set_as_current=False)


def configure(settings: WorkerSettings, *, renders: bool, webhooks: bool = False) -> Celery:
    """Apply the settings to `app`; `renders` says this process consumes the render queue (it then
    loads a model in each child process and runs the orphan sweeper), `webhooks` the webhook queue
    (it then runs the webhook relay)."""
    global _settings, _renders, _webhooks
    _settings, _renders, _webhooks = settings, renders, webhooks
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options=settings.broker_transport_options,
        task_queues=(Queue(RENDER_QUEUE), Queue(WEBHOOK_QUEUE)),
        task_default_queue=RENDER_QUEUE,
        task_routes={RENDER_TASK: {"queue": RENDER_QUEUE}, WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.soft_time_limit_s,
        task_time_limit=settings.time_limit_s,
        worker_proc_alive_timeout=settings.model_load_timeout_s,  # a child loads the model before it is ready
        worker_cancel_long_running_tasks_on_connection_loss=False,  # the lease settles duplicates
    )
    return app


_settings: WorkerSettings | None = None
_renders = False
_webhooks = False
# (settings, worker process index) -> the model; a launcher may swap in any SegmentRenderer before main()
renderer_factory: Callable[[WorkerSettings, int], SegmentRenderer] = load_renderer


@dataclass
class Runtime:
    """What one worker process holds: connections, and (render workers) the model."""
    settings: WorkerSettings
    jobs: JobStore
    storage: Storage
    renderer_factory: Callable[[WorkerSettings, int], SegmentRenderer]
    _context: WorkerContext | None = field(default=None, init=False)
    _http: object = field(default=None, init=False)

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> Runtime:
        return cls(settings, JobStore.from_url(settings.redis_url, settings.redis_timeout_s),
                   PatientStorage(make_storage(settings), settings.storage_patience_s), renderer_factory)

    def load_model(self, process_index: int = 0) -> WorkerContext:
        if self._context is None:
            renderer = self.renderer_factory(self.settings, process_index)
            outbox = WebhookOutbox(self.jobs.redis, enqueue_webhook, prefix=self.jobs.prefix,
                                   progress_interval_s=self.settings.webhook_progress_interval_s,
                                   record_ttl_s=self.settings.webhook_record_ttl_s, job_view=self.job_view)
            self._context = WorkerContext(self.settings, self.jobs, self.storage, renderer, outbox,
                                          name=f"{socket.gethostname()}/{os.getpid()}",
                                          extractor=load_extractor(self.settings),
                                          memory=memory_fit(self.settings, renderer))
            self._announce_model(renderer)
        return self._context

    def _announce_model(self, renderer: SegmentRenderer) -> None:
        """Tell the API which model this process holds (GET /models), now and every minute after."""
        seen = ModelsSeen(self.jobs.redis, self.jobs.prefix)
        label, untrained = str(getattr(renderer, "label", "unknown")), bool(getattr(renderer, "untrained", False))

        def announce() -> None:
            seen.announce(label, untrained)

        try:
            announce()
        except Exception:  # noqa: BLE001  (a label for the web page is not worth failing a worker)
            log.warning("could not announce the model to Redis; retrying every %d s", MODEL_ANNOUNCE_EVERY_S)
        Periodic("model-announce", MODEL_ANNOUNCE_EVERY_S, announce).start()

    def job_view(self, job) -> dict:
        """The job as GET /jobs/{id} shows it; a finished video gets a presigned URL when storage makes one."""
        url = None if job.result is None else self.storage.presigned_url(job.result.key,
                                                                         self.settings.presign_ttl_s)
        return job.public(url)

    @property
    def http(self):
        if self._http is None:
            self._http = webhook_client(self.settings.webhook_allow_hosts)
        return self._http


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime.from_settings(_settings or WorkerSettings())
        return _runtime


def enqueue_render(job_id: str) -> None:
    app.send_task(RENDER_TASK, args=[job_id], queue=RENDER_QUEUE)


def enqueue_webhook(event_id: str) -> None:
    app.send_task(WEBHOOK_TASK, args=[event_id], queue=WEBHOOK_QUEUE)


# ---------------------------------------------------------------- tasks


# max_retries=None on the task: Celery's own limit (3 by default; `retry(max_retries=None)` does not
# lift it) would cut retries short; the job's runs and the webhook RetryPolicy bound them instead.
@app.task(name=RENDER_TASK, bind=True, max_retries=None)
def render(self, job_id: str) -> str:
    ctx = None
    try:
        ctx = _render_context()
        outcome = render_job(job_id, ctx)
        if outcome is Outcome.HANDED_BACK:  # the lease is released: any worker may take it now
            enqueue_render(job_id)
        return outcome.value
    except (NotStarted, RetryRender) as exc:
        if isinstance(exc, NotStarted) and not exc.transient and self.request.retries >= START_RETRIES:
            return give_up_starting(job_id, ctx, exc).value
        lease_ttl_s = (_settings or runtime().settings).lease_ttl_s
        countdown = retry_countdown(exc, self.request.retries, lease_ttl_s)
        if ctx is not None:  # without a context (no model, no Redis) the sweepers are not held off
            hold_off_sweepers(ctx.jobs, job_id, requeue_claim_ttl(countdown, lease_ttl_s))
        retry_later(self, exc, countdown)


def _render_context() -> WorkerContext:
    try:
        return runtime().load_model()
    except Exception as exc:  # not loaded after the fork (see load_failure): the job waits for a worker that can
        raise NotStarted(f"this worker has no model: {type(exc).__name__}: {exc}") from exc


# Redis errors (reading or updating the record) retry the message with backoff instead of failing
# it, which would acknowledge it and lose the event; the attempt count lives in the record.
@app.task(name=WEBHOOK_TASK, bind=True, max_retries=None, soft_time_limit=WEBHOOK_SOFT_TIME_LIMIT_S,
          time_limit=WEBHOOK_SOFT_TIME_LIMIT_S + 30, autoretry_for=(redis.RedisError,), retry_backoff=True,
          retry_backoff_max=WEBHOOK_REDIS_BACKOFF_MAX_S, retry_jitter=True)
def deliver_webhook(self, event_id: str) -> None:
    rt = runtime()
    secret = rt.settings.webhook_secret
    if secret is None:
        raise RuntimeError("UNIANIMATE_WEBHOOK_SECRET is not set: the webhook worker cannot sign events")
    policy = RetryPolicy(rt.settings.webhook_max_attempts, rt.settings.webhook_backoff_base_s,
                         rt.settings.webhook_backoff_cap_s)
    delay = deliver_recorded(rt.jobs.redis, event_id, secret=secret.get_secret_value(), http=rt.http,
                             policy=policy, prefix=rt.jobs.prefix)
    if delay is not None:
        raise self.retry(countdown=delay)  # if this cannot be published, the relay sends it once overdue


# ---------------------------------------------------------------- process lifecycle


@signals.worker_process_init.connect
def _load_model_after_fork(**_) -> None:
    """Each prefork child gets its own connections and loads the model once, before its first task."""
    global _runtime
    if not _renders:
        return
    from billiard.process import current_process

    _runtime = None  # never share the parent's sockets with a child
    index = getattr(current_process(), "index", None) or 0  # the solo pool loads in the main process
    try:
        runtime().load_model(process_index=index)
    except Exception as exc:  # noqa: BLE001  (Celery would only log it and keep the process serving)
        load_failure.model_failed(exc, index)


_sweeper: Sweeper | None = None
_dispatcher: Dispatcher | None = None
_relay: WebhookRelay | None = None
_pool = None  # the render worker's pool, whose processes a warm shutdown asks to hand their jobs back


@signals.worker_ready.connect
def _on_ready(sender=None, **_) -> None:
    """Render workers: remember the pool (see _hand_jobs_back) and start the orphan sweeper.
    Webhook workers: start the relay."""
    global _sweeper, _relay, _pool, _dispatcher
    if _settings is None:
        return
    jobs = JobStore.from_url(_settings.redis_url, _settings.redis_timeout_s)
    if _renders:
        _pool = getattr(sender, "pool", None)
        _sweeper = Sweeper(jobs, enqueue_render, interval_s=_settings.sweep_every_s,
                           claim_ttl_s=_settings.visibility_timeout_s, stale_s=_settings.queued_stale_s,
                           queue=BrokerQueue.from_url(_settings.celery_broker_url, RENDER_QUEUE))
        _sweeper.start()
        _dispatcher = _fair_dispatcher(jobs, _settings)
        _dispatcher.start()
    if _webhooks:
        _relay = WebhookRelay(jobs.redis, enqueue_webhook, overdue_s=_settings.webhook_relay_after_s,
                              queue=BrokerQueue.from_url(_settings.celery_broker_url, WEBHOOK_QUEUE),
                              prefix=jobs.prefix)
        _relay.start()


def _fair_dispatcher(jobs: JobStore, settings: WorkerSettings) -> Dispatcher:
    """Releases waiting jobs to the render queue in fair order across keys (worker/dispatcher.py).
    Without a Redis broker the queue's depth cannot be read: it then releases whatever may start."""
    broker = BrokerQueue.from_url(settings.celery_broker_url, RENDER_QUEUE)
    depth = (lambda: queue_depth(broker.client, RENDER_QUEUE)) if broker is not None else (lambda: 0)
    return Dispatcher(FairQueue(jobs.redis, jobs.prefix), enqueue_render, depth,
                      interval_s=settings.dispatch_interval_s, ahead=settings.dispatch_ahead,
                      default_max_running=settings.key_max_running, grace_s=settings.dispatch_grace_s)


@signals.worker_shutting_down.connect
def _hand_jobs_back(**_) -> None:
    """SIGTERM (warm shutdown) in the main process: running renders stop and go back to the queue."""
    if not _renders or _pool is None:
        return
    children = [pid for pid in _pool.info.get("processes", []) if pid != os.getpid()]
    if children:
        stopping.forward(children)
    else:  # solo pool: the render runs in this process
        stopping.request()


@signals.worker_shutdown.connect
def _stop_background(**_) -> None:
    for thread in (_dispatcher, _sweeper, _relay):
        if thread is not None:
            thread.stop()
