"""DWPose extraction end to end on stand-in ONNX graphs with the real signatures."""
from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

from model.pose.extract import DWPoseExtractor, DWPoseNotConfigured, dwpose_model_paths, onnx_providers
from model.pose.inputs import load_pose_input, load_reference_pose
from model.pose.keypoints import PoseInputError
from tests.model.pose.conftest import PHOTO_H, PHOTO_W, UNSEEN_COCO, encode_video, standin_bins_and_scores

# OpenPose body point <- COCO-WholeBody index, written out independently of the code (1 = neck).
OPENPOSE_FROM_COCO = {0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 11: 11, 12: 13,
                      13: 15, 14: 2, 15: 1, 16: 4, 17: 3}


def expected_pixels(box) -> np.ndarray:
    """Where the stand-in's SimCC peaks land in the photo for a person box (x1, y1, x2, y2)."""
    bins, _ = standin_bins_and_scores()
    x1, y1, x2, y2 = box
    center = np.array([x1 + x2, y1 + y2]) / 2
    width, height = (x2 - x1) * 1.25, (y2 - y1) * 1.25
    # The crop is widened to the network's 288:384 aspect ratio.
    size = np.array([width, width / 0.75]) if width > height * 0.75 else np.array([height * 0.75, height])
    return (bins / 2) / [288, 384] * size + center - size / 2


def encoded_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def extractor(dwpose_dir):
    return DWPoseExtractor(dwpose_dir, device="cpu")


def test_reference_photo_through_detector_and_estimator(extractor, photo):
    seq = load_reference_pose(encoded_png(photo), extractor=extractor)
    pixels = expected_pixels((80, 60, 240, 420)) / [PHOTO_W, PHOTO_H]
    assert (seq.num_frames, seq.canvas_width, seq.canvas_height) == (1, PHOTO_W, PHOTO_H)
    for openpose, coco in OPENPOSE_FROM_COCO.items():
        seen = coco not in UNSEEN_COCO
        assert seq.body_present[0, openpose] == seen
        if seen:
            np.testing.assert_allclose(seq.body[0, openpose], pixels[coco], atol=1e-5)
        else:
            assert seq.body[0, openpose].tolist() == [-1.0, -1.0]
    np.testing.assert_allclose(seq.body[0, 1], (pixels[5] + pixels[6]) / 2, atol=1e-5)  # neck
    assert not seq.body_present[0, 18]  # left big toe unseen -> no left toe point
    np.testing.assert_allclose(seq.body[0, 19], (pixels[20] + pixels[21]) / 2, atol=1e-5)
    np.testing.assert_allclose(seq.hands[0, 0, 0], pixels[91], atol=1e-5)  # left hand wrist
    np.testing.assert_allclose(seq.hands[0, 1, 0], pixels[112], atol=1e-5)  # right hand wrist
    assert not seq.hands_present[0, 0, 3] and seq.hands_present[0, 0].sum() == 20
    np.testing.assert_allclose(seq.face[0, 0], pixels[23], atol=1e-5)


def test_nobody_detected_uses_the_whole_image(extractor):
    black = np.zeros((PHOTO_H, PHOTO_W, 3), np.uint8)
    seq = extractor.extract_image(black)
    pixels = expected_pixels((0, 0, PHOTO_W, PHOTO_H)) / [PHOTO_W, PHOTO_H]
    np.testing.assert_allclose(seq.body[0, 0], pixels[0], atol=1e-9)


def test_driving_video_is_sampled_then_extracted(extractor, photo, tmp_path):
    path = tmp_path / "driving.mp4"
    encode_video(path, [photo] * 6, 30)
    seen = []
    seq = extractor.extract_video(path, 2, on_frame=lambda done, total: seen.append((done, total)))
    assert seq.num_frames == 3 and seq.fps == 15.0
    assert seen[-1][0] == 3
    assert seq.body_present[:, 0].all() and np.ptp(seq.body[:, 0], axis=0).max() < 1e-3
    via_loader = load_pose_input(path, "driving_video", frame_interval=2, extractor=extractor)
    np.testing.assert_array_equal(via_loader.body, seq.body)


def test_cancel_stops_extraction(extractor, photo, tmp_path):
    from model.errors import RenderCancelled

    path = tmp_path / "driving.mp4"
    encode_video(path, [photo] * 4, 30)
    with pytest.raises(RenderCancelled):
        extractor.extract_video(path, 1, cancel=lambda: True)


def test_weights_not_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("UNIANIMATE_DWPOSE_DIR", raising=False)
    with pytest.raises(DWPoseNotConfigured, match="UNIANIMATE_DWPOSE_DIR"):
        dwpose_model_paths()
    with pytest.raises(DWPoseNotConfigured, match="UNIANIMATE_DWPOSE_DIR"):
        load_reference_pose(encoded_png(np.zeros((8, 8, 3), np.uint8)))
    monkeypatch.setenv("UNIANIMATE_DWPOSE_DIR", str(tmp_path))
    with pytest.raises(DWPoseNotConfigured, match="yolox_l.onnx"):
        DWPoseExtractor()


def test_weights_from_the_environment(monkeypatch, dwpose_dir, photo):
    monkeypatch.setenv("UNIANIMATE_DWPOSE_DIR", str(dwpose_dir))
    seq = load_reference_pose(encoded_png(photo), "image")
    assert seq.body_present[0, 0]


def test_providers(caplog):
    import onnxruntime as ort

    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert onnx_providers("auto")[0] == "CUDAExecutionProvider"
    else:
        assert onnx_providers("auto") == ["CPUExecutionProvider"]
        # a GPU worker without onnxruntime-gpu falls back to the CPU provider instead of exiting
        with caplog.at_level(logging.WARNING, logger="model.pose.extract"):
            assert onnx_providers("cuda") == ["CPUExecutionProvider"]
        assert "onnxruntime-gpu" in caplog.text
    with pytest.raises(ValueError, match="device"):
        onnx_providers("tpu")


def test_bad_images_are_rejected(extractor):
    with pytest.raises(PoseInputError, match="could not read the image"):
        extractor.extract_image(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(PoseInputError, match="at most 8192"):
        extractor.extract_image(encoded_png(np.zeros((1, 8200, 3), np.uint8)))


def test_rotated_driving_video_is_extracted_upright(extractor, photo, tmp_path):
    path = tmp_path / "portrait.mp4"
    stored = np.ascontiguousarray(np.rot90(photo, 1))  # landscape, as a phone stores a portrait clip
    encode_video(path, [stored] * 2, 30, rotation=-90)  # shown turned a quarter clockwise: the photo
    seq = extractor.extract_video(path, 1)
    upright = extractor.extract_image(photo)
    assert (seq.canvas_width, seq.canvas_height) == (PHOTO_W, PHOTO_H)
    np.testing.assert_allclose(seq.body[0], upright.body[0], atol=1e-6)
