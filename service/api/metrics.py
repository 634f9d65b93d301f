"""Prometheus metrics of the whole deployment, read from Redis at scrape time.

Workers write their counters into Redis (service.jobs.store), so any API replica reports the same
cluster-wide numbers and no worker needs an HTTP port of its own.
"""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from service.jobs.queue import RENDER_QUEUE, queue_depth
from service.jobs.store import SEGMENT_SECONDS_BUCKETS, JobStore


class ServiceCollector(Collector):
    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

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


def render_metrics(jobs: JobStore) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(jobs))
    return generate_latest(registry)
