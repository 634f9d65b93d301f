"""job.segment_completed webhooks carry the live playlist's path and the finished segment's files."""
from __future__ import annotations

import json

from service.jobs.record import Webhook
from service.storage.objects import live_key
from service.webhooks.outbox import record_key
from tests.worker.fakes import store_job
from worker.render_job import Outcome, render_job

HOOK = Webhook(url="https://example.com/hook", events=["job.segment_completed"])


def segment_events(jobs, sent_webhooks) -> list[dict]:
    records = [json.loads(jobs.redis.get(record_key(jobs.prefix, event_id))) for event_id in sent_webhooks]
    return [json.loads(r["event"]["body"])["data"] for r in records]


def test_each_segment_event_names_its_fragment_and_the_playlist(jobs, storage, make_context, sent_webhooks):
    job = store_job(jobs, storage, seconds=1.0, webhook=HOOK)  # 15 frames: two segments
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    events = segment_events(jobs, sent_webhooks)
    assert [data["live"]["segment"] for data in events] == [0, 1]
    for data in events:
        live, index = data["live"], data["live"]["segment"]
        assert live["playlist"] == f"/jobs/{job.id}/live.m3u8"
        # local storage presigns nothing: the API serves the files (GET /jobs/{id}/live/{name})
        assert live["init_url"] == f"/jobs/{job.id}/live/init.mp4"
        assert live["fragment_url"] == f"/jobs/{job.id}/live/{index:04d}.m4s"
        assert storage.exists(live_key(job.id, f"{index:04d}.m4s"))


def test_presigned_urls_when_storage_makes_them(jobs, storage, make_context, sent_webhooks, monkeypatch):
    monkeypatch.setattr(storage, "presigned_url", lambda key, expires_s: f"https://s3.example/{key}?ttl={expires_s}")
    job = store_job(jobs, storage, seconds=1.0, webhook=HOOK)
    assert render_job(job.id, make_context(presign_ttl_s=600)) is Outcome.SUCCEEDED
    live = segment_events(jobs, sent_webhooks)[-1]["live"]
    assert live["init_url"] == f"https://s3.example/{live_key(job.id, 'init.mp4')}?ttl=600"
    assert live["fragment_url"] == f"https://s3.example/{live_key(job.id, '0001.m4s')}?ttl=600"
    assert live["playlist"] == f"/jobs/{job.id}/live.m3u8"  # the API rewrites it; the worker has no address
