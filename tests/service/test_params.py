import pytest
from pydantic import ValidationError

from service.jobs.params import RenderParams


def test_defaults_are_the_original_long_video_recipe():
    p = RenderParams()
    assert (p.steps, p.guidance_scale, p.segment_frames) == (30, 2.5, 32)
    assert (p.height, p.width) == (None, None)  # the worker takes the reference's aspect within 768x512
    assert (p.long_video_mode, p.align_pose, p.noise_prior_t, p.seed) == ("chain", True, 939, None)


def test_the_default_size_follows_the_reference_aspect():
    from model.frame_size import default_frame_size

    assert default_frame_size(512, 768) == (768, 512)  # the released model's own portrait size
    assert default_frame_size(1000, 1000) == (576, 576)
    assert default_frame_size(1920, 1080) == (448, 832)
    assert default_frame_size(512, 768, area=192 * 128) == (192, 128)


def test_a_pose_canvas_is_both_sides_or_none():
    import pydantic

    assert RenderParams(pose_canvas_width=320, pose_canvas_height=240).pose_canvas == (320, 240)
    with pytest.raises(pydantic.ValidationError, match="pose_canvas_height"):
        RenderParams(pose_canvas_width=320)


@pytest.mark.parametrize("bad, field, words", [
    ({"steps": 0}, "steps", "greater than or equal to 1"),
    ({"steps": True}, "steps", "valid integer"),
    ({"steps": "30"}, "steps", "valid integer"),
    ({"height": 700}, "height", "multiple of 64 (got 700; nearest: 704)"),
    ({"width": 4096}, "width", "less than or equal to 2048"),
    ({"guidance_scale": float("nan")}, "guidance_scale", "finite"),
    ({"long_video_mode": "loop"}, "long_video_mode", "'chain' or 'window'"),
    ({"noise_prior_t": 1000}, "noise_prior_t", "less than or equal to 999"),
    ({"crf": -1}, "crf", "greater than or equal to 0"),
    ({"seed": 2**32}, "seed", "less than or equal to"),
    ({"sampler": "ddim"}, "sampler", "Extra inputs are not permitted"),
])
def test_bad_values_are_rejected_with_a_message_naming_the_field(bad, field, words):
    with pytest.raises(ValidationError) as info:
        RenderParams.model_validate(bad)
    (error,) = info.value.errors()
    assert error["loc"] == (field,)
    assert words in error["msg"]


def test_with_seed_fixes_a_seed_once():
    p = RenderParams(steps=10).with_seed()
    assert p.seed is not None and 0 <= p.seed < 2**32
    assert p.with_seed() is p
    assert RenderParams(seed=7).with_seed().seed == 7


def test_json_round_trip_is_exact():
    p = RenderParams(seed=1, fps=12.5, frame_interval=2, max_duration_s=60, long_video_mode="window")
    assert RenderParams.model_validate_json(p.model_dump_json()) == p
