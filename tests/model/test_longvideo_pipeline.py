"""The long-video renderer driving the real UniAnimate pipeline (tiny random weights, on the CPU).

The fake-renderer tests (test_longvideo_chain.py, test_longvideo_video.py) pin down the chaining
logic; these prove that the real pipeline honours the contract that logic relies on: segment k
is a pure function of its inputs and the previous last frame (so resuming is bit-exact), and a
window covering the whole clip is plain DDIM (so window mode reduces to the replayed fixture).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model.conformance import check_file
from model.errors import RenderCancelled
from model.longvideo.chain import SamplingOptions, render_chain
from model.longvideo.mp4 import probe_video
from model.longvideo.planner import plan_segments
from model.longvideo.seeds import segment_seed
from model.longvideo.video import RenderOptions, render_video
from model.pipeline import UNTRAINED_LABEL, UniAnimatePipeline
from tests.model.longvideo_fakes import decoded_frames

SIZE = 32  # the tiny model's smallest frame (its size multiple is 16)
FRAMES, SEGMENT_FRAMES = 7, 3  # three chained segments of three frames
SAMPLING = SamplingOptions(seed=7, steps=2)


class RecordingPipeline:
    """The real pipeline, with the arguments of every `render_segment` call written down."""

    def __init__(self, pipeline: UniAnimatePipeline) -> None:
        self.pipeline = pipeline
        self.label, self.untrained = pipeline.label, pipeline.untrained
        self.calls: list[dict] = []

    def prepare_reference(self, image, ref_pose, height, width):
        return self.pipeline.prepare_reference(image, ref_pose, height, width)

    def render_segment(self, ref, poses, first_frame, **kwargs):
        self.calls.append({"poses": poses.copy(), "first_frame": first_frame, "seed": kwargs["seed"]})
        return self.pipeline.render_segment(ref, poses, first_frame, **kwargs)

    def render_window(self, ref, poses, **kwargs):
        return self.pipeline.render_window(ref, poses, **kwargs)


@pytest.fixture(scope="module")
def job():
    """A reference photo, its pose and FRAMES pose images that all differ."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    ref_pose = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    poses = rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    return image, ref_pose, poses


@pytest.fixture(scope="module")
def ref(pipeline, job):
    return pipeline.prepare_reference(job[0], job[1], SIZE, SIZE)


@pytest.fixture(scope="module")
def uninterrupted(pipeline, ref, job):
    """The whole chained run, with the calls the pipeline received."""
    recorder = RecordingPipeline(pipeline)
    finished = list(render_chain(recorder, ref, job[2], SAMPLING, segment_frames=SEGMENT_FRAMES))
    return finished, recorder.calls


def test_segment_k_is_conditioned_on_the_last_frame_of_segment_k_minus_1(uninterrupted, job):
    finished, calls = uninterrupted
    plan = plan_segments(FRAMES, SEGMENT_FRAMES)
    assert len(finished) == len(calls) == len(plan) == 3
    assert calls[0]["first_frame"] is None
    for k in range(1, len(plan)):
        previous = finished[k - 1]
        np.testing.assert_array_equal(calls[k]["first_frame"], previous.last_frame)
        np.testing.assert_array_equal(previous.last_frame, previous.frames[-1])
        segment = plan.segments[k]  # starts on the pose of the shared frame
        np.testing.assert_array_equal(calls[k]["poses"], job[2][segment.start : segment.stop])
    assert [c["seed"] for c in calls] == [segment_seed(SAMPLING.seed, k) for k in range(len(plan))]
    assert sum(len(f.frames) for f in finished) == FRAMES


def test_the_condition_changes_what_the_model_renders(pipeline, ref, uninterrupted):
    finished, calls = uninterrupted
    unconditioned = pipeline.render_segment(
        ref, calls[1]["poses"], None, seed=calls[1]["seed"], steps=SAMPLING.steps,
        guidance_scale=SAMPLING.guidance_scale, noise_prior_t=SAMPLING.noise_prior_t,
    )  # fmt: skip
    assert not np.array_equal(unconditioned[1:], finished[1].frames)


@pytest.mark.parametrize("k", [1, 2])
def test_resume_from_segment_k_equals_the_uninterrupted_run_bit_for_bit(
    pipeline, ref, job, uninterrupted, k, tmp_path
):
    finished, _ = uninterrupted
    stored = tmp_path / f"segment{k - 1}_last.png"  # what a worker keeps between attempts
    Image.fromarray(finished[k - 1].last_frame).save(stored)
    last_frame = np.asarray(Image.open(stored).convert("RGB"))
    resumed = list(
        render_chain(pipeline, ref, job[2], SAMPLING, segment_frames=SEGMENT_FRAMES, start_segment=k,
                     previous_last_frame=last_frame)
    )  # fmt: skip
    assert [f.segment for f in resumed] == [f.segment for f in finished[k:]]
    for again, first_time in zip(resumed, finished[k:], strict=True):
        np.testing.assert_array_equal(again.frames, first_time.frames)
        np.testing.assert_array_equal(again.last_frame, first_time.last_frame)


def test_cancellation_stops_within_one_step_across_segments(pipeline, ref, job, tmp_path):
    events = []

    def cancel_once_segment_2_has_taken_a_step() -> bool:
        return any(p.segment == 2 and p.step >= 1 for p in events)

    options = RenderOptions(height=SIZE, width=SIZE, sampling=SAMPLING, segment_frames=SEGMENT_FRAMES)
    with pytest.raises(RenderCancelled):
        render_video(pipeline, job[0], job[1], job[2], tmp_path / "out.mp4", fps=15, options=options,
                     on_progress=events.append, should_cancel=cancel_once_segment_2_has_taken_a_step)  # fmt: skip
    steps = events[0].steps  # the timesteps DDIM visits, as the pipeline reports them
    assert {(p.segment, p.step) for p in events} == {(1, s) for s in range(1, steps + 1)} | {(2, 1)}
    assert (events[-1].segment, events[-1].step) == (2, 1)  # not one step more
    assert not list(tmp_path.iterdir())  # and no partial file


@pytest.mark.parametrize("context_batch_size", [1, 2])
def test_one_window_over_the_whole_clip_is_plain_ddim(pipeline, ref, job, context_batch_size):
    poses = job[2][:4]
    sampling = {"seed": 11, "steps": 2, "guidance_scale": 2.5, "noise_prior_t": 939}
    windowed = pipeline.render_window(ref, poses, context_size=8, context_overlap=2,
                                      context_batch_size=context_batch_size, **sampling)  # fmt: skip
    plain = pipeline.render_segment(ref, poses, None, **sampling)
    np.testing.assert_array_equal(np.stack(list(windowed)), plain)


def test_the_window_sampler_replays_the_original_fixture(reference):
    """With the previous test, this is what makes window mode equal the original's long sampler."""
    result = check_file(reference / "fixtures" / "ddim_long_toy.pt")
    assert result.passed, result.detail


def test_window_mode_renders_the_whole_clip_to_an_mp4(pipeline, ref, job, tmp_path):
    options = RenderOptions(height=SIZE, width=SIZE, sampling=SAMPLING, mode="window", context_size=4,
                            context_overlap=1, crf=0)  # fmt: skip
    result = render_video(pipeline, job[0], job[1], job[2], tmp_path / "out.mp4", fps=12.5, options=options)
    info = probe_video(result.path)
    assert (result.frames, info.frames, info.fps) == (FRAMES, FRAMES, 12.5)
    assert info.duration_s == pytest.approx(FRAMES / 12.5, abs=1e-9)
    assert info.metadata["checkpoint"] == UNTRAINED_LABEL and info.metadata["untrained"] == "true"
    assert '"mode": "window"' in info.metadata["params"]
    direct = np.stack(list(pipeline.render_window(ref, job[2], seed=SAMPLING.seed, steps=SAMPLING.steps,
                                                  guidance_scale=SAMPLING.guidance_scale,
                                                  noise_prior_t=SAMPLING.noise_prior_t, context_size=4,
                                                  context_overlap=1, context_batch_size=1)))  # fmt: skip
    decoded = np.stack(decoded_frames(result.path)).astype(float)
    # H.264 at crf 0 in yuv420p keeps brightness; chroma is subsampled, so compare frame means.
    np.testing.assert_allclose(decoded.mean(axis=(1, 2, 3)), direct.mean(axis=(1, 2, 3)), atol=2)
