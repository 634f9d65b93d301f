"""Prometheus metrics of the whole deployment, read from Redis at scrape time.

Workers write their counters into Redis (service.jobs.store), so any API replica reports the same
cluster-wide numbers and no worker needs an HTTP port of its own.
"""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from service.jobs.key_limits import KeyLimitStore
from service.jobs.queue import RENDER_QUEUE, queue_depth
from service.jobs.store import SEGMENT_SECONDS_BUCKETS, JobStore

KEY_LABEL_CHARS = 16  # keys are labelled by the start of their sha256 (`owner`), never the key itself


class ServiceCollector(Collector):
    def __init__(self, jobs: JobStore, limits: KeyLimitStore | None = None) -> None:
        self.jobs = jobs
        self.limits = limits

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("unianimate_jobs", "jobs by state", labels=["state"])
        for status, count in self.jobs.counts_by_status().items():
            by_state.add_metric([status.value], count)
        yield by_state

        depth = GaugeMetricFamily("unianimate_queue_depth", "render tasks waiting on the broker",
                                  labels=["queue"])
        depth.add_metric([RENDER_QUEUE], queue_depth(self.jobs.redis))
        yield depth

        counters = self.jobs.metric_counters()
        buckets = [(str(bound), counters.get(f"segment_seconds_bucket:{bound}", 0.0))
                   for bound in SEGMENT_SECONDS_BUCKETS]
        count = counters.get("segment_seconds_count", 0.0)
        yield HistogramMetricFamily("unianimate_segment_seconds", "render time of one finished segment",
                                    buckets=[*buckets, ("+Inf", count)],
                                    sum_value=counters.get("segment_seconds_sum", 0.0))
        yield CounterMetricFamily("unianimate_gpu_seconds", "wall seconds workers spent running jobs",
                                  value=counters.get("gpu_seconds_total", 0.0))
        if self.limits is not None:
            yield from self.per_key(self.limits)

    def per_key(self, limits: KeyLimitStore) -> Iterator[Metric]:
        """Each key's live jobs, GPU time today and effective limits (0 = none), by key hash."""
        waiting = GaugeMetricFamily("unianimate_jobs_waiting", "queued jobs waiting for their turn in the "
                                    "per-key lists (not yet on the render queue)")
        jobs = GaugeMetricFamily("unianimate_key_jobs", "live jobs of one API key", labels=["key", "state"])
        gpu = GaugeMetricFamily("unianimate_key_gpu_seconds_today", "render seconds of one key's jobs this UTC day",
                                labels=["key"])
        limit = GaugeMetricFamily("unianimate_key_limit", "one key's limits (0 = none)", labels=["key", "limit"])
        total_waiting = 0
        for owner in self.jobs.owners.owners(self.jobs.redis):
            label = owner[:KEY_LABEL_CHARS]
            usage = limits.usage(owner)
            total_waiting += usage.waiting
            jobs.add_metric([label, "queued"], usage.queued)
            jobs.add_metric([label, "running"], usage.running)
            gpu.add_metric([label], usage.gpu_seconds_today)
            for name, value in limits.limits(owner).__dict__.items():
                limit.add_metric([label, name], value)
        waiting.add_metric([], total_waiting)
        yield from (waiting, jobs, gpu, limit)


def render_metrics(jobs: JobStore, limits: KeyLimitStore | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(jobs, limits))
    return generate_latest(registry)
