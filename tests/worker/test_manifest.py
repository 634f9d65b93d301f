"""The reproducibility manifest a succeeded job stores next to its MP4 (worker/manifest.py)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from model.longvideo.seeds import segment_seed
from tests.worker.fakes import store_job
from worker.render_job import Outcome, render_job

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "service/jobs/manifest.schema.json").read_text())


def test_a_succeeded_job_stores_a_manifest_that_validates_and_names_every_segment_seed(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=1.0, fps=15)
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED

    done = jobs.get(job.id)
    manifest = json.loads(storage.get_bytes(done.result.manifest_key))
    jsonschema.validate(manifest, SCHEMA)
    assert manifest["job_id"] == job.id and manifest["seed"] == done.params.seed
    assert manifest["output"]["sha256"] == done.result.sha256
    assert [s["seed"] for s in manifest["segments"]] == [
        segment_seed(done.params.seed, s["index"]) for s in manifest["segments"]]
    assert manifest["segments"][-1]["stop"] == done.result.frames == manifest["timing"]["frames"]
    assert set(manifest["inputs"]) == set(done.inputs)
    assert done.public(None, "http://api/jobs/x/manifest")["result"]["manifest_url"] == "http://api/jobs/x/manifest"


def test_unianimate_reproduce_gives_the_jobs_frames_on_cpu(jobs, storage, make_context, tmp_path):
    import av
    import numpy as np

    from cli.reproduce import main as reproduce
    from model.pipeline import UniAnimatePipeline

    job = store_job(jobs, storage, seconds=0.6, fps=15,
                    params={"height": 64, "width": 64, "steps": 2, "segment_frames": 4, "seed": 7})
    renderer = UniAnimatePipeline.tiny(seed=0)
    assert render_job(job.id, make_context(renderer=renderer)) is Outcome.SUCCEEDED
    done = jobs.get(job.id)
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(storage.get_bytes(done.result.manifest_key))
    jsonschema.validate(json.loads(manifest.read_text()), SCHEMA)
    flags = {"reference_image": "--reference", "reference_keypoints": "--reference-keypoints",
             "pose_keypoints": "--pose-keypoints"}
    args = [str(manifest), "--out", str(tmp_path / "again.mp4")]
    for name, key in done.inputs.items():
        storage.get_file(key, tmp_path / name)
        args += [flags[name], str(tmp_path / name)]
    assert reproduce(args) == 0

    def frames(path) -> np.ndarray:
        with av.open(str(path)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

    first, again = frames(storage.local_path(done.result.key)), frames(tmp_path / "again.mp4")
    assert first.shape == again.shape and np.array_equal(first, again)
