"""UniAnimateUNet behaviour beyond the fixture: other resolutions, half precision, state handling, errors."""
from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from model.config import UNetConfig
from model.unet import UniAnimateUNet
from model.unet.embeddings import sinusoidal_embedding

FRAMES = 3
LATENT = (6, 4)  # 48x32 pixels: not the fixture's size and not square
PIXELS = (48, 32)


@pytest.fixture(scope="module")
def fixture_data(reference):
    return torch.load(reference / "fixtures/unet_tiny.pt", weights_only=True)


def _model(fixture_data, dtype=torch.float32) -> UniAnimateUNet:
    """The tiny UNet with the fixture's weights (none of them zero, so every path is exercised)."""
    model = UniAnimateUNet(UNetConfig.tiny()).eval()
    model.load_state_dict(fixture_data["state_dict"], strict=True)
    model.set_zero_y(fixture_data["inputs"]["zero_y"])
    return model.to(dtype)


@pytest.fixture(scope="module")
def inputs(fixture_data):
    g = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(1, 4, FRAMES, *LATENT, generator=g),
        "t": torch.tensor([500]),
        "image": fixture_data["inputs"]["image"],
        "local_image": torch.rand(1, 3, FRAMES, *PIXELS, generator=g),
        "dwpose": torch.rand(1, 3, FRAMES + 1, *PIXELS, generator=g),
        "randomref": torch.randn(1, 4, FRAMES, *LATENT, generator=g),
    }


@pytest.fixture(scope="module")
def fp32_output(fixture_data, inputs):
    with torch.no_grad():
        return _model(fixture_data)(**inputs)


def test_runs_at_another_non_square_resolution(fixture_data, inputs, fp32_output):
    assert fp32_output.shape == (1, 4, FRAMES, *LATENT)
    assert torch.isfinite(fp32_output).all()


@pytest.mark.parametrize("dtype, bound", [(torch.bfloat16, 0.05), (torch.float16, 0.015)])
def test_half_precision_close_to_fp32(fixture_data, inputs, fp32_output, dtype, bound):
    with torch.no_grad():
        try:
            output = _model(fixture_data, dtype)(**inputs)
        except (RuntimeError, NotImplementedError) as exc:  # some CPU builds lack fp16 kernels
            pytest.skip(f"{dtype} not supported on this CPU: {exc}")
    assert output.dtype == dtype
    error = (output.float() - fp32_output).abs().max().item()
    assert error < bound * fp32_output.abs().max().item()


def test_every_condition_changes_the_output(fixture_data, inputs, fp32_output):
    model = _model(fixture_data)
    with torch.no_grad():
        for dropped in ("image", "local_image", "randomref"):
            partial = {k: v for k, v in inputs.items() if k != dropped}
            assert not torch.allclose(model(**partial), fp32_output), dropped
        # randomref needs dwpose (its frame 0 is the reference pose), so drop both to see the pose.
        without_ref = {k: v for k, v in inputs.items() if k != "randomref"}
        without_pose = {k: v for k, v in without_ref.items() if k != "dwpose"}
        assert not torch.allclose(model(**without_ref), model(**without_pose))


def test_unconditional_rows_match_a_call_without_conditions(fixture_data, inputs, fp32_output):
    """One call on [x; x] with the second row marked unconditional = the two calls of guidance."""
    model = _model(fixture_data)
    doubled = {k: torch.cat([v, v]) for k, v in inputs.items()}
    with torch.no_grad():
        uncond = model(inputs["x"], inputs["t"])
        both = model(**doubled, unconditional=torch.tensor([False, True]))
        with pytest.raises(ValueError, match="unconditional must be"):
            model(**doubled, unconditional=torch.tensor([True]))
    torch.testing.assert_close(both[:1], fp32_output, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1:], uncond, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(uncond, fp32_output)


def test_reference_pose_only_matters_with_randomref(fixture_data, inputs, fp32_output):
    model = _model(fixture_data)
    other_reference_pose = inputs["dwpose"].clone()
    other_reference_pose[:, :, 0] = 1 - other_reference_pose[:, :, 0]
    unusable_reference_pose = inputs["dwpose"].clone()
    unusable_reference_pose[:, :, 0] = float("nan")
    no_ref = {k: v for k, v in inputs.items() if k != "randomref"}
    with torch.no_grad():
        assert not torch.allclose(model(**dict(inputs, dwpose=other_reference_pose)), fp32_output)
        # without randomref, frame 0 of dwpose is split off and never reaches the model
        assert torch.isfinite(model(**dict(no_ref, dwpose=unusable_reference_pose))).all()


def test_output_frames_follow_input_frames(fixture_data, inputs, fp32_output):
    """The model attends across time, so changing the last frame's latent changes earlier frames too,
    but the output keeps one frame per input frame (the reference slot is dropped)."""
    x = inputs["x"].clone()
    x[:, :, -1] += 1.0
    with torch.no_grad():
        changed = _model(fixture_data)(**dict(inputs, x=x))
    assert changed.shape[2] == FRAMES
    assert not torch.allclose(changed[:, :, 0], fp32_output[:, :, 0])


def test_zero_y_is_a_buffer_outside_the_state_dict(fixture_data):
    model = UniAnimateUNet(UNetConfig.tiny())
    with pytest.raises(RuntimeError, match="set_zero_y"):
        model(torch.zeros(1, 4, 2, 4, 4), torch.tensor([1]))
    model.set_zero_y(fixture_data["inputs"]["zero_y"])
    assert "zero_y" not in model.state_dict()
    assert model.to(torch.bfloat16).zero_y.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="zero_y must be"):
        model.set_zero_y(torch.zeros(77, 1024))


def test_saved_state_dict_round_trips_strictly():
    torch.manual_seed(1)
    original = UniAnimateUNet(UNetConfig.tiny())
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = UniAnimateUNet(UNetConfig.tiny())
    assert restored.load_state_dict(torch.load(buffer, weights_only=True), strict=True) is not None
    saved, loaded = original.state_dict(), restored.state_dict()
    assert list(saved) == list(loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    with pytest.raises(RuntimeError, match="Missing key"):
        restored.load_state_dict({k: v for k, v in saved.items() if k != "out.2.bias"}, strict=True)


def test_time_embedding_is_computed_in_fp32():
    """Timesteps up to 999 at the highest frequency need fp32; the embedding must not depend on dtype."""
    emb = sinusoidal_embedding(torch.tensor([999, 1], dtype=torch.int64), 32)
    assert emb.dtype == torch.float32 and emb.shape == (2, 32)
    assert torch.allclose(emb[1, :16], torch.cos(torch.pow(10000, -torch.arange(16) / 16.0)))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dwpose": torch.rand(1, 3, FRAMES, *PIXELS)}, "dwpose"),
        ({"image": torch.rand(1, 1024)}, "image"),
        ({"x": torch.randn(1, 4, FRAMES, 5, 4)}, "multiples of 2"),
        ({"t": torch.tensor([1, 2])}, "t must be"),
        ({"randomref": torch.randn(1, 4, 1, 3, 2)}, "latent grid"),
    ],
)
def test_bad_inputs_say_what_to_fix(fixture_data, inputs, change, message):
    with pytest.raises(ValueError, match=message):
        _model(fixture_data)(**dict(inputs, **change))


def test_randomref_without_dwpose_is_refused(fixture_data, inputs):
    with pytest.raises(ValueError, match="randomref needs dwpose"):
        _model(fixture_data)(**{k: v for k, v in inputs.items() if k != "dwpose"})


def test_condition_outside_the_compositions_is_refused(inputs):
    config = dataclasses.replace(UNetConfig.tiny(), video_compositions=("dwpose",))
    model = UniAnimateUNet(config)
    model.set_zero_y(torch.zeros(1, 77, 1024))
    assert not hasattr(model, "local_image_embedding")
    with pytest.raises(ValueError, match="no image branch"):
        model(inputs["x"], inputs["t"], image=inputs["image"])
    # without randomref_pose, dwpose has one frame per latent frame
    assert model(inputs["x"], inputs["t"], dwpose=inputs["dwpose"][:, :, 1:]).shape == inputs["x"].shape
