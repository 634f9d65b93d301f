"""What the pose estimator is fed: the original's top-down crop, normalisation and BGR order.

`dwpose/onnxpose.py` of the original, restated here independently: the person box grows by 1.25,
widens to the network's 288:384 aspect ratio, and is mapped onto the input by a uniform scale that
puts the box centre on the input centre (no rotation), with bilinear sampling; the BGR image is then
normalised with the ImageNet mean/std in the order written below, channel by channel as stored.
"""
from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from model.pose import dwpose_onnx
from model.pose.extract import DETECTOR_FILE, ESTIMATOR_FILE, DWPoseExtractor
from tests.model.pose import standin_dwpose
from tests.model.pose.conftest import IMAGE_BOX, PHOTO_H, PHOTO_W

NET_H, NET_W = 384, 288
MEAN_BGR_AS_STORED = np.array([123.675, 116.28, 103.53])  # applied to channels 0, 1, 2 of the BGR image
STD_BGR_AS_STORED = np.array([58.395, 57.12, 57.375])


class RecordingSession:
    """An onnxruntime session that keeps every output of every run (the stand-ins return their input)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session, self.runs = session, []

    def get_inputs(self):
        return self.session.get_inputs()

    def get_outputs(self):
        return self.session.get_outputs()

    def run(self, names, feed):
        outputs = self.session.run(names, feed)
        self.runs.append(dict(zip(names, outputs)))
        return outputs


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def expected_network_input(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = (x2 - x1) * 1.25, (y2 - y1) * 1.25
    if w / h > NET_W / NET_H:
        h = w * NET_H / NET_W
    else:
        w = h * NET_W / NET_H
    s = NET_W / w  # network pixels per image pixel, the same along both axes
    warp = np.array([[s, 0.0, NET_W / 2 - s * cx], [0.0, s, NET_H / 2 - s * cy]])
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    crop = cv2.warpAffine(bgr, warp, (NET_W, NET_H), flags=cv2.INTER_LINEAR)
    return ((crop - MEAN_BGR_AS_STORED) / STD_BGR_AS_STORED).transpose(2, 0, 1)[None]


def ramp_photo(peak: float) -> np.ndarray:
    """Each channel a ramp in its own direction, so a value tells where, and in which channel, it was."""
    y, x = np.mgrid[0:PHOTO_H, 0:PHOTO_W].astype(float)
    red, green, blue = x / (PHOTO_W - 1), y / (PHOTO_H - 1), 1 - (x + y) / (PHOTO_W + PHOTO_H - 2)
    return np.round(np.stack([red, green, blue], axis=-1) * peak).astype(np.uint8)


@pytest.mark.parametrize(
    ("peak", "box"),
    [(255.0, IMAGE_BOX), (110.0, (0.0, 0.0, float(PHOTO_W), float(PHOTO_H)))],  # too dim to detect: whole image
    ids=["detected_box", "whole_image"],
)
def test_estimator_gets_the_originals_crop(dwpose_dir, peak, box):
    estimator = RecordingSession(_session(dwpose_dir / ESTIMATOR_FILE))
    extractor = DWPoseExtractor(sessions=(_session(dwpose_dir / DETECTOR_FILE), estimator))
    rgb = ramp_photo(peak)
    extractor.extract_image(rgb)
    assert len(estimator.runs) == 1
    received = estimator.runs[0]["crop"]
    expected = expected_network_input(rgb, box)
    assert received.shape == (1, 3, NET_H, NET_W) and received.dtype == np.float32
    # Up to one grey level where the two warp matrices' last bits round a sample differently.
    np.testing.assert_allclose(received, expected, atol=1.1 / STD_BGR_AS_STORED.min(), rtol=0)
    assert np.abs(received - expected).mean() < 1e-3


@pytest.fixture(scope="module")
def marker_estimator(tmp_path_factory):
    path = tmp_path_factory.mktemp("markers") / ESTIMATOR_FILE
    return _session(standin_dwpose.save_marker_estimator(path))


MARKERS_RGB = {  # centre (x, y) in the photo of a 5x5 marker of one pure colour
    (0, 0, 255): (120, 100),
    (0, 255, 0): (200, 250),
    (255, 0, 0): (150, 380),
}


def test_keypoints_follow_what_the_crop_shows(dwpose_dir, marker_estimator):
    rgb = np.zeros((PHOTO_H, PHOTO_W, 3), np.uint8)
    for colour, (x, y) in MARKERS_RGB.items():
        rgb[y - 2:y + 3, x - 2:x + 3] = colour
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    boxes = dwpose_onnx.detect_people(_session(dwpose_dir / DETECTOR_FILE), bgr)
    np.testing.assert_allclose(boxes, [IMAGE_BOX], atol=1e-3)
    points, scores = dwpose_onnx.estimate_keypoints(marker_estimator, boxes, bgr)

    # BGR network channel -> the marker colour that lights it, and the normalised value of 255 there.
    marker_of_channel = [MARKERS_RGB[(0, 0, 255)], MARKERS_RGB[(0, 255, 0)], MARKERS_RGB[(255, 0, 0)]]
    peak_of_channel = (255 - MEAN_BGR_AS_STORED) / STD_BGR_AS_STORED
    channels = standin_dwpose.MARKER_CHANNELS
    expected_points = np.array([marker_of_channel[c] for c in channels], float)
    # SimCC arg-max takes the first brightest bin: within a crop pixel (~1.2 photo pixels) of the marker.
    np.testing.assert_allclose(points[0], expected_points, atol=2.5)
    np.testing.assert_allclose(scores[0], peak_of_channel[channels], rtol=1e-6)
