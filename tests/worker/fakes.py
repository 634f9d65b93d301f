"""Test doubles for the worker tests: a deterministic SegmentRenderer and job inputs."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from model.errors import RenderCancelled
from scripts.demo import demo_keypoints, demo_reference_image, demo_reference_keypoints
from service.jobs.params import RenderParams
from service.jobs.record import Job, Webhook
from service.jobs.store import JobStore
from service.storage.objects import Storage, input_key


class Crash(RuntimeError):
    """What the fake renderer raises to simulate a failure in the middle of a job."""


class StubRenderer:
    """Frames are a pure function of (poses, first frame, seed): same call, same frames, as the real
    pipeline promises. A first frame becomes frame 0 of the segment, as `local_image` teaches the model.

    `crash_on_call=n` raises Crash on the n-th render_segment call (0-based); `on_step` runs after
    each denoising step (tests use it to cancel or to slow down)."""

    label = "stub renderer (test)"
    untrained = True

    def __init__(self, crash_on_call: int | None = None, on_step: Callable[[int], None] | None = None,
                 step_delay_s: float = 0.0) -> None:
        self.crash_on_call = crash_on_call
        self.on_step = on_step
        self.step_delay_s = step_delay_s
        self.segment_seeds: list[int] = []
        self.steps_run = 0

    def prepare_reference(self, image, ref_pose, height, width):
        return int(image.mean()) % 50, height, width

    def render_segment(self, ref, poses, first_frame, *, seed, steps, guidance_scale, noise_prior_t,
                       progress=None, should_cancel=None):
        call = len(self.segment_seeds)
        self.segment_seeds.append(seed)
        for step in range(1, steps + 1):
            if should_cancel is not None and should_cancel():
                raise RenderCancelled(f"canceled before step {step}")
            if self.crash_on_call == call and step == steps:
                raise Crash(f"simulated crash in call {call}")
            self.steps_run += 1
            time.sleep(self.step_delay_s)
            if self.on_step is not None:
                self.on_step(self.steps_run)
            if progress is not None:
                progress(step, steps)
        noise = np.random.default_rng(seed).integers(0, 40, size=poses.shape, dtype=np.uint16)
        frames = ((poses.astype(np.uint16) // 2 + noise + ref[0]) % 256).astype(np.uint8)
        if first_frame is not None:
            frames[0] = first_frame
        return frames

    def render_window(self, ref, poses, *, seed, steps, guidance_scale, noise_prior_t, context_size,
                      context_overlap, context_batch_size, progress=None, should_cancel=None):
        for step in range(1, steps + 1):
            if progress is not None:
                progress(step, steps)
        for i in range(len(poses)):
            yield np.full((ref[1], ref[2], 3), (seed + i) % 256, dtype=np.uint8)


SMALL = {"height": 64, "width": 64, "steps": 2, "seed": 7, "segment_frames": 8}


def store_job(jobs: JobStore, storage: Storage, *, seconds: float = 1.0, fps: int = 15, params: dict | None = None,
              webhook: Webhook | None = None, keypoints: bytes | None = None, reference_keypoints: bool = True,
              owner: str = "anonymous", pose_video: bytes | None = None, extra: dict | None = None) -> Job:
    """A queued job with the demo inputs in storage, as POST /animate leaves it; `pose_video`
    replaces the keypoints."""
    job_id = uuid.uuid4().hex
    files = {"reference_image": ("reference_image.png", demo_reference_image(128, 192))}
    if pose_video is not None:
        files["pose_video"] = ("pose_video.mp4", pose_video)
    else:
        files["pose_keypoints"] = ("pose_keypoints.json", keypoints if keypoints is not None
                                   else json.dumps(demo_keypoints(seconds, fps)).encode())
    if reference_keypoints:
        files["reference_keypoints"] = ("reference_keypoints.json", json.dumps(demo_reference_keypoints()).encode())
    inputs = {name: storage.put_bytes(input_key(job_id, file_name), data).key
              for name, (file_name, data) in files.items()}
    return jobs.create(job_id, owner, RenderParams.model_validate({**SMALL, **(params or {})}), inputs, webhook,
                       extra=extra)


def skeleton_video_with_sound(path: Path, *, seconds: float, fps: int = 30, sound_seconds: float = 3.0,
                              size: tuple[int, int] = (64, 64), rate: int = 44100) -> bytes:
    """An MP4 of a drawn skeleton (a moving coloured bar on black) with an AAC sine tone."""
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="stereo")
        for i in range(round(seconds * fps)):
            image = np.zeros((height, width, 3), np.uint8)
            image[20:28, (i % 40):(i % 40) + 16] = (255, 0, 0)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
        for k in range(int(sound_seconds * rate) // 1024):
            tone = np.sin(0.05 * (np.arange(1024) + 1024 * k))[None].repeat(2, 0).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, 1024 * k, Fraction(1, rate)
            container.mux(audio.encode(chunk))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path.read_bytes()
