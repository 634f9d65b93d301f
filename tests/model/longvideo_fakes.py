"""A deterministic stand-in for the UniAnimate pipeline, for the long-video tests.

Its frames are a pure function of (poses, first_frame, seed), and a renderer given a first
frame reproduces it as its own frame 0 (what the real model learns to do with `local_image`)
and tints every other frame with it, so a chained segment visibly differs from an unchained one.
Every call is recorded, so tests can see which condition each segment received.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model.errors import RenderCancelled


@dataclass
class Call:
    seed: int
    frames: int
    first_frame: np.ndarray | None
    kwargs: dict = field(default_factory=dict)


class FakeRenderer:
    label = "fake test renderer"
    untrained = True

    def __init__(self, noise: int = 64) -> None:
        self.noise = noise  # amplitude of the per-pixel noise; 0 gives flat frames that encode fast
        self.calls: list[Call] = []
        self.references_prepared = 0
        self.steps_run = 0
        self.frames_decoded = 0

    def prepare_reference(self, image: np.ndarray, ref_pose: np.ndarray, height: int, width: int) -> int:
        self.references_prepared += 1
        return int(image.mean() + ref_pose.mean()) % 256

    def render_segment(self, ref, poses, first_frame, **kwargs):
        return self.decode_segment(self.denoise_segment(ref, poses, first_frame, **kwargs), slice(None))

    def denoise_segment(
        self,
        ref,
        poses,
        first_frame,
        *,
        seed,
        steps,
        guidance_scale,
        noise_prior_t,
        progress=None,
        should_cancel=None,
    ):
        """The "latents" are the frames; `decode_segment` slices them and counts what it decoded."""
        self.calls.append(Call(seed, len(poses), None if first_frame is None else first_frame.copy()))
        self._denoise(steps, progress, should_cancel)
        out = self._frames(ref, poses, seed, self.noise).astype(np.uint16)
        if first_frame is not None:
            out = (out + first_frame[None] // 4) % 256
            out[0] = first_frame
        return out.astype(np.uint8)

    def decode_segment(self, latents, frames):
        self.frames_decoded += len(latents[frames])
        return latents[frames].copy()

    def render_window(
        self,
        ref,
        poses,
        *,
        seed,
        steps,
        guidance_scale,
        noise_prior_t,
        context_size,
        context_overlap,
        context_batch_size,
        progress=None,
        should_cancel=None,
    ):
        context = {
            "context_size": context_size,
            "context_overlap": context_overlap,
            "context_batch_size": context_batch_size,
        }
        self.calls.append(Call(seed, len(poses), None, context))
        self._denoise(steps, progress, should_cancel)
        for i in range(len(poses)):
            yield self._frames(ref, poses[i : i + 1], seed + i, self.noise)[0]

    def _denoise(self, steps, progress, should_cancel) -> None:
        for step in range(1, steps + 1):
            if should_cancel is not None and should_cancel():
                raise RenderCancelled(f"canceled at step {step}")
            self.steps_run += 1
            if progress is not None:
                progress(step, steps)

    @staticmethod
    def _frames(ref: int, poses: np.ndarray, seed: int, amplitude: int) -> np.ndarray:
        noise = np.random.default_rng(seed).integers(0, amplitude + 1, size=poses.shape, dtype=np.uint16)
        return ((poses.astype(np.uint16) // 2 + noise + ref) % 256).astype(np.uint8)


def pose_frames(count: int, height: int, width: int) -> np.ndarray:
    """A pose sequence whose frames all differ: frame i is a flat image of value 3*i mod 256."""
    values = (3 * np.arange(count) % 256).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (count, height, width, 3)).copy()


def decoded_frames(path) -> list[np.ndarray]:
    """Every frame of a video file as uint8 RGB, through the project's one video decoder."""
    from model.pose.video import iter_video_frames

    return [rgb for _, _, rgb in iter_video_frames(path, frame_interval=1)]


def render_fake_video(frames: int, out: str, hoard: bool = False, size: int = 256) -> None:
    """A whole job with the fake renderer and lazily drawn poses, for memory measurements in a
    fresh process. `hoard` keeps every finished segment alive: the leak the test must catch."""
    from model.longvideo.chain import SamplingOptions
    from model.longvideo.protocol import DrawnPoseFrames
    from model.longvideo.video import RenderOptions, render_video

    kept = []
    poses = DrawnPoseFrames(frames, lambda i: np.full((size, size, 3), 3 * i % 256, np.uint8))
    reference = np.full((size, size, 3), 100, np.uint8)
    options = RenderOptions(height=size, width=size, sampling=SamplingOptions(seed=1, steps=1))
    render_video(
        FakeRenderer(noise=0),
        reference,
        reference,
        poses,
        out,
        fps=15,
        options=options,
        on_segment_done=kept.append if hoard else None,
    )


if __name__ == "__main__":
    import sys

    render_fake_video(int(sys.argv[1]), sys.argv[2], hoard="--hoard" in sys.argv[3:])
