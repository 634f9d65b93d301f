"""Skeleton drawing and the frames the model receives."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from model.pose.render import (
    as_model_saw,
    draw_frame,
    draw_hands,
    pose_frames_for_model,
    reference_pose_for_model,
)


def test_every_reference_drawing_matches_pixel_for_pixel(reference, draw_case):
    # check_draw_case covers all four cases and all five renderings; this pins the main frame directly.
    seq, _ = draw_case
    stored = cv2.imread(str(reference / "pose" / "draw_case_1.png"))
    assert np.array_equal(draw_frame(seq, 0), stored)


def test_model_sees_the_saved_file_as_rgb(draw_case):
    seq, _ = draw_case
    drawn = draw_frame(seq, 0)
    model = pose_frames_for_model(seq, 768, 512, jpeg_quality=None)[0]
    assert np.array_equal(model, drawn[..., ::-1])
    # The neck-right shoulder limb is written [255, 0, 0] (dimmed to 153): blue to the model.
    neck, shoulder = (seq.body[0, [1, 2]] * [512, 768]).astype(int)
    mid = (neck + shoulder) // 2
    assert model[mid[1], mid[0]].tolist() == [0, 0, 153]


def test_model_frames_have_no_face(draw_case):
    seq, _ = draw_case
    with_face = draw_frame(seq, 0, include_face=True)
    assert not np.array_equal(with_face, draw_frame(seq, 0))
    assert np.array_equal(pose_frames_for_model(seq, 768, 512, jpeg_quality=None)[0], draw_frame(seq, 0)[..., ::-1])


def test_other_sizes_are_drawn_at_768x512_then_resized_bilinear(draw_case):
    seq, _ = draw_case
    frames = pose_frames_for_model(seq, 384, 256, jpeg_quality=None)
    expected = Image.fromarray(draw_frame(seq, 0)[..., ::-1].copy()).resize((256, 384), Image.BILINEAR)
    assert frames.shape == (1, 384, 256, 3)
    assert np.array_equal(frames[0], np.asarray(expected))
    assert np.array_equal(reference_pose_for_model(seq, 384, 256, jpeg_quality=None), frames[0])


def test_jpeg_round_trip_is_close_but_lossy(draw_case):
    seq, _ = draw_case
    lossless = as_model_saw(draw_frame(seq, 0), 768, 512, jpeg_quality=None)
    jpeg = as_model_saw(draw_frame(seq, 0), 768, 512, jpeg_quality=95)
    difference = np.abs(lossless.astype(int) - jpeg.astype(int))
    assert difference.max() > 0 and difference.mean() < 2.0


@pytest.mark.parametrize(("height", "width"), [(1216, 768), (96, 64)])
def test_model_frames_go_through_the_originals_jpeg_at_any_size(draw_case, height, width):
    """The original drew at 768x512, wrote JPEG (cv2, quality 95), read it with PIL, then resized."""
    seq, _ = draw_case
    ok, encoded = cv2.imencode(".jpg", draw_frame(seq, 0), [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = Image.open(io.BytesIO(encoded.tobytes())).convert("RGB").resize((width, height), Image.BILINEAR)
    assert ok and np.array_equal(pose_frames_for_model(seq, height, width)[0], np.asarray(decoded))
    assert np.array_equal(reference_pose_for_model(seq, height, width), np.asarray(decoded))


def test_hand_points_in_pixel_column_zero_or_marked_missing_are_not_drawn():
    hands = np.full((2, 21, 2), 0.5)
    hands[:, :, 0] += np.arange(21) * 0.01
    hands[1, :, 1] = 0.8  # the right hand lower down, out of the way
    present = np.ones((2, 21), bool)
    full = draw_hands(np.zeros((768, 512, 3), np.uint8), hands, present)
    column_zero = hands.copy()
    column_zero[0, 20] = [0.001, 0.5]  # int(0.001 * 512) = 0
    drawn = draw_hands(np.zeros((768, 512, 3), np.uint8), column_zero, present)
    assert drawn[:, :3].sum() == 0
    not_present = present.copy()
    not_present[0, 20] = False  # on the canvas but missing: not drawn either
    hidden = draw_hands(np.zeros((768, 512, 3), np.uint8), hands, not_present)
    x, y = int(hands[0, 20, 0] * 512), int(hands[0, 20, 1] * 768)
    assert full[y, x].tolist() == [0, 0, 255] and hidden[y, x].tolist() != [0, 0, 255]
