"""Issue 15 through the render job (real Redis, local storage, stub renderer): re-renders, batch groups."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import av
import jsonschema
import numpy as np

from model.longvideo.planner import plan_segments
from model.longvideo.seeds import segment_seed
from service.api.routes.rerender import RerenderRequest, copy_parent, plan_rerender
from service.jobs.groups import GROUP_COMPLETED, Group, GroupStore, announce_group_if_complete
from service.jobs.record import JobStatus, Webhook
from service.storage.objects import live_key
from service.webhooks.outbox import job_events_key, record_key
from tests.worker.fakes import StubRenderer, store_job
from worker.render_job import Outcome, render_job
from worker.segment_store import SegmentCheckpoints

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "service/jobs/manifest.schema.json").read_text())


def rerender_of(jobs, storage, parent_id: str, from_segment: int, seed: int):
    """What the API does: the seed plan, copies of the parent's inputs and segments, the record."""
    parent = jobs.get(parent_id)
    params, origin = plan_rerender(parent, RerenderRequest(from_segment=from_segment, seed=seed))
    child_id = uuid.uuid4().hex
    inputs = copy_parent(SimpleNamespace(storage=storage), parent, child_id, from_segment)
    return jobs.create(child_id, parent.owner, params, inputs, extra={"rerender_of": origin})


def decoded(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_a_rerender_keeps_the_frames_before_k_and_redraws_the_rest(jobs, storage, make_context):
    parent = store_job(jobs, storage, seconds=2.0, fps=15, params={"crf": 0})  # 30 frames, 5 segments
    assert render_job(parent.id, make_context()) is Outcome.SUCCEEDED

    child = rerender_of(jobs, storage, parent.id, from_segment=2, seed=99)
    renderer = StubRenderer()
    assert render_job(child.id, make_context(renderer)) is Outcome.SUCCEEDED
    assert renderer.segment_seeds == [segment_seed(99, k) for k in range(2, 5)], "segments 0 and 1 are copied"

    done = jobs.get(child.id)
    assert done.status is JobStatus.SUCCEEDED and done.result.frames == 30
    before = plan_segments(30, 8).segments[2].first_new  # the frames of segments 0 and 1
    ours = np.concatenate(list(SegmentCheckpoints(storage, child.id).frames(5)))
    theirs = np.concatenate(list(SegmentCheckpoints(storage, parent.id).frames(5)))
    assert np.array_equal(ours[:before], theirs[:before])
    assert not np.array_equal(ours[before:], theirs[before:])
    # crf 0 is lossless: the decoded MP4s agree exactly where the frames do
    ours_mp4 = decoded(storage.local_path(done.result.key))
    theirs_mp4 = decoded(storage.local_path(jobs.get(parent.id).result.key))
    assert ours_mp4.shape == theirs_mp4.shape == (30, 64, 64, 3)
    assert np.array_equal(ours_mp4[:before], theirs_mp4[:before])
    assert all(not np.array_equal(a, b) for a, b in zip(ours_mp4[before:], theirs_mp4[before:], strict=True))
    # its live playlist has every segment, the copied ones included, and plays the MP4's frames
    assert storage.get_bytes(live_key(child.id)).decode().count("#EXTINF:") == 5
    assert np.array_equal(decoded(storage.local_path(live_key(child.id))), ours_mp4)


def test_a_rerender_of_a_rerender_replays_both_seed_changes(jobs, storage, make_context):
    parent = store_job(jobs, storage, seconds=2.0, fps=15)
    assert render_job(parent.id, make_context()) is Outcome.SUCCEEDED
    first = rerender_of(jobs, storage, parent.id, from_segment=1, seed=50)
    assert render_job(first.id, make_context()) is Outcome.SUCCEEDED
    second = rerender_of(jobs, storage, first.id, from_segment=3, seed=60)
    renderer = StubRenderer()
    assert render_job(second.id, make_context(renderer)) is Outcome.SUCCEEDED
    assert renderer.segment_seeds == [segment_seed(60, 3), segment_seed(60, 4)]
    ours = np.concatenate(list(SegmentCheckpoints(storage, second.id).frames(3)))
    assert np.array_equal(ours, np.concatenate(list(SegmentCheckpoints(storage, first.id).frames(3))))


def test_failed_and_canceled_jobs_drop_their_checkpoints(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0)
    renderer = StubRenderer(on_step=lambda done: done == 5 and jobs.request_cancel(job.id))
    assert render_job(job.id, make_context(renderer)) is Outcome.CANCELED
    assert SegmentCheckpoints(storage, job.id).stored_count() == 0


def test_the_last_member_of_a_group_records_group_completed_once(jobs, storage, make_context, sent_webhooks):
    hook = Webhook(url="http://127.0.0.1:9/hook", events=[GROUP_COMPLETED])
    group_id = uuid.uuid4().hex  # what POST /animate/batch records: the members, then the group
    members = [store_job(jobs, storage, seconds=0.5, webhook=hook, extra={"group_id": group_id}) for _ in range(2)]
    group = GroupStore(jobs).create(Group(id=group_id, owner="anonymous", job_ids=[job.id for job in members],
                                          webhook=hook))
    key = job_events_key(jobs.prefix, f"group-{group.id}")

    assert render_job(members[0].id, make_context()) is Outcome.SUCCEEDED
    assert jobs.redis.llen(key) == 0, "one member is still queued"
    assert render_job(members[1].id, make_context()) is Outcome.SUCCEEDED
    assert jobs.redis.llen(key) == 1
    (event_id,) = [raw.decode() for raw in jobs.redis.lrange(key, 0, -1)]
    assert sent_webhooks == [event_id], "the members' own events are filtered out; the group's is sent"
    assert announce_group_if_complete(jobs, make_context().outbox, jobs.get(members[0].id)) is None, "only once"
    data = json.loads(json.loads(jobs.redis.get(record_key(jobs.prefix, event_id)))["event"]["body"])["data"]
    assert data["status"] == "completed" and data["counts"] == {"succeeded": 2}


def test_unianimate_reproduce_renders_a_rerender_from_its_manifest(jobs, storage, make_context, tmp_path):
    from cli.reproduce import main as reproduce
    from model.pipeline import UniAnimatePipeline

    renderer = UniAnimatePipeline.tiny(seed=0)
    parent = store_job(jobs, storage, seconds=0.8, fps=15,
                       params={"height": 64, "width": 64, "steps": 2, "segment_frames": 4, "seed": 7, "crf": 0})
    assert render_job(parent.id, make_context(renderer=renderer)) is Outcome.SUCCEEDED
    child = rerender_of(jobs, storage, parent.id, from_segment=2, seed=31)
    assert render_job(child.id, make_context(renderer=renderer)) is Outcome.SUCCEEDED
    done = jobs.get(child.id)
    manifest = json.loads(storage.get_bytes(done.result.manifest_key))
    jsonschema.validate(manifest, SCHEMA)
    assert manifest["seed_plan"] == {"base_seed": 7, "changes": [[2, 31]]}
    assert manifest["rerender_of"]["parent_id"] == parent.id
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    flags = {"reference_image": "--reference", "reference_keypoints": "--reference-keypoints",
             "pose_keypoints": "--pose-keypoints"}
    args = [str(tmp_path / "manifest.json"), "--out", str(tmp_path / "again.mp4")]
    for name, key in done.inputs.items():
        storage.get_file(key, tmp_path / name)
        args += [flags[name], str(tmp_path / name)]
    assert reproduce(args) == 0
    assert np.array_equal(decoded(tmp_path / "again.mp4"), decoded(storage.local_path(done.result.key)))
