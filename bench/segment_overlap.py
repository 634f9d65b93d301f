"""How long the GPU waits between segments: the serial segment loop against the overlapped one.

    python -m bench.segment_overlap --stand-in-seconds 2 --segments 6 --height 768 --width 512

Renders one job twice through the worker's real path (`worker.render_job`: Redis job record,
SeaweedFS storage, segment checkpoints, MP4 writer, result upload), once with
`overlap_segments` off and once on. The model is a stand-in that holds "the GPU" for the given
seconds per segment (sleeping, so the CPU stays free for the rest, as it is while a GPU works)
and returns frames. `gpu_idle_fraction` is the time between the end of one segment's denoising
and the start of the next, over the job's wall time. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from service.jobs.store import JobStore
from service.storage.objects import Storage, result_key
from service.storage.s3 import S3Storage
from service.webhooks.outbox import WebhookOutbox
from tests.support.redis_server import redis_server
from tests.support.seaweedfs import seaweedfs_s3
from tests.worker.fakes import store_job
from worker.patient_storage import PatientStorage
from worker.render_job import Outcome, WorkerContext, render_job
from worker.settings import WorkerSettings

FPS = 15  # the demo keypoints' rate; at most 15 fps, so every pose frame is rendered
SEGMENT_FRAMES = 16
STEPS = 4


class StandInRenderer:
    """Holds "the GPU" `seconds` per segment, then returns frames (a pure function of the seed and
    the first frame, so two runs of a job give the same video). Records when each denoise ran."""

    label = "stand-in renderer (benchmark; no model)"
    untrained = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.denoise_spans: list[tuple[float, float]] = []

    def prepare_reference(self, image, ref_pose, height, width):
        return int(image.mean()) % 50

    def denoise_segment(self, ref, poses, first_frame, *, seed, steps, guidance_scale, noise_prior_t,
                        progress=None, should_cancel=None):
        started = time.monotonic()
        for step in range(1, steps + 1):
            if should_cancel is not None and should_cancel():
                raise RuntimeError("the benchmark job was canceled")
            time.sleep(self.seconds / steps)
            if progress is not None:
                progress(step, steps)
        noise = np.random.default_rng(seed).integers(0, 64, size=poses.shape, dtype=np.uint8)
        frames = poses // 2 + noise + np.uint8(ref)
        if first_frame is not None:
            frames[0] = first_frame
        self.denoise_spans.append((started, time.monotonic()))
        return frames

    def decode_segment(self, latents, frames):
        return latents[frames].copy()

    def render_segment(self, ref, poses, first_frame, **kwargs):
        return self.decode_segment(self.denoise_segment(ref, poses, first_frame, **kwargs), slice(None))

    def render_window(self, *args, **kwargs):
        raise NotImplementedError("the benchmark renders in chain mode")


class SentBytes:
    """The storage the job uses, recording when each piece of the result MP4 went up (whole or part)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.sent: list[tuple[float, str, int]] = []  # (monotonic time, key, bytes)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes):
        part = self.inner.upload_part(key, upload_id, number, data)
        self.sent.append((time.monotonic(), key, len(data)))
        return part

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream"):
        stored = self.inner.put_file(key, path, content_type)
        self.sent.append((time.monotonic(), key, stored.size_bytes))
        return stored

    def bytes_after(self, key: str, moment: float) -> int:
        return sum(size for at, sent_key, size in self.sent if sent_key == key and at > moment)


def run_once(overlap: bool, args: argparse.Namespace, redis_url: str, backend: Storage, tmp: Path) -> dict:
    jobs = JobStore.from_url(redis_url)
    storage = SentBytes(backend)
    outbox = WebhookOutbox(jobs.redis, lambda event_id: None, prefix=jobs.prefix, progress_interval_s=0)
    settings = WorkerSettings(_env_file=None, redis_url=redis_url, model="tiny", storage="local",
                              local_storage_dir=tmp / "unused", overlap_segments=overlap, progress_interval_s=0.5)
    renderer = StandInRenderer(args.stand_in_seconds)
    seconds = (1 + args.segments * (SEGMENT_FRAMES - 1) - 0.5) / FPS  # poses for exactly `segments` segments
    job = store_job(jobs, storage, seconds=seconds, fps=FPS,
                    params={"height": args.height, "width": args.width, "steps": STEPS,
                            "segment_frames": SEGMENT_FRAMES, "seed": 11})
    context = WorkerContext(settings, jobs, storage, renderer, outbox, name="bench-worker")
    started = time.monotonic()
    outcome = render_job(job.id, context)
    wall = time.monotonic() - started
    if outcome is not Outcome.SUCCEEDED or len(renderer.denoise_spans) != args.segments:
        raise SystemExit(f"the benchmark job ended {outcome} after {len(renderer.denoise_spans)} segments")
    spans = renderer.denoise_spans
    idle = sum(nxt[0] - prev[1] for prev, nxt in itertools.pairwise(spans))
    after_last = time.monotonic() - spans[-1][1] - (time.monotonic() - started - wall)
    video = storage.get_bytes(result_key(job.id))
    return {"wall_s": round(wall, 3), "gpu_idle_s": round(idle, 3), "gpu_idle_fraction": round(idle / wall, 4),
            "after_last_denoise_s": round(after_last, 3), "result_bytes": len(video),
            "result_bytes_sent_after_last_denoise": storage.bytes_after(result_key(job.id), spans[-1][1]),
            "result_sha256": hashlib.sha256(video).hexdigest()}


def _cpu_name() -> str:
    """This machine's CPU: the benchmark's "GPU" is a stand-in, so the CPU does all the real work."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    return f"{model} CPU, {os.cpu_count()} cores (stand-in GPU)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stand-in-seconds", type=float, default=2.0, help="GPU time per segment")
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--out", type=Path, help="also append the JSON line to this file")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        s3 = stack.enter_context(seaweedfs_s3())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-overlap-")))
        backend = S3Storage("bench-overlap", s3.client())
        backend.ensure_bucket()
        storage = PatientStorage(backend, 30.0)
        serial = run_once(False, args, redis.url, storage, tmp)
        overlapped = run_once(True, args, redis.url, storage, tmp)
    line = json.dumps({
        "bench": "segment_overlap", "device": _cpu_name(),
        "storage": "SeaweedFS (S3)", "stand_in_seconds": args.stand_in_seconds, "segments": args.segments,
        "segment_frames": SEGMENT_FRAMES, "height": args.height, "width": args.width,
        "identical_results": serial["result_sha256"] == overlapped["result_sha256"],
        "serial": serial, "overlapped": overlapped,
    })
    print(line)
    if args.out is not None:
        with open(args.out, "a") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
