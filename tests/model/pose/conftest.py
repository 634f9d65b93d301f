"""Fixtures for the pose tests: reference cases, small sequences, stand-in DWPose weights."""
from __future__ import annotations

import json

import numpy as np
import pytest

from model.pose.extract import DETECTOR_FILE, ESTIMATOR_FILE
from model.pose.formats import parse_pose_json
from tests.model.pose import standin_dwpose

# The stand-in detector finds the person at IMAGE_BOX in a PHOTO_W x PHOTO_H photo.
PHOTO_W, PHOTO_H = 320, 480
IMAGE_BOX = (80.0, 60.0, 240.0, 420.0)
LETTERBOX_SCALE = min(640 / PHOTO_H, 640 / PHOTO_W)
# COCO-WholeBody keypoint k peaks at SimCC bin (40 + 4k, 100 + 4k); these are reported as not seen.
UNSEEN_COCO = (9, 17, 94)  # left wrist, left big toe, left hand point 3


def standin_bins_and_scores() -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(133)
    bins = np.stack([40 + 4 * k, 100 + 4 * k], axis=1)
    scores = np.full(133, 0.9, np.float32)
    scores[list(UNSEEN_COCO)] = 0.1
    return bins, scores


@pytest.fixture(scope="session")
def dwpose_dir(tmp_path_factory):
    """A folder holding stand-in yolox_l.onnx and dw-ll_ucoco_384.onnx."""
    folder = tmp_path_factory.mktemp("dwpose")
    letterbox_box = tuple(v * LETTERBOX_SCALE for v in IMAGE_BOX)
    standin_dwpose.save_detector(folder / DETECTOR_FILE, letterbox_box)
    standin_dwpose.save_estimator(folder / ESTIMATOR_FILE, *standin_bins_and_scores())
    return folder


@pytest.fixture
def photo() -> np.ndarray:
    """A bright RGB photo, so the stand-in detector fires."""
    image = np.full((PHOTO_H, PHOTO_W, 3), 200, np.uint8)
    image[::7] = 30  # some structure for the codecs
    return image


@pytest.fixture(scope="session")
def draw_case(reference):
    """Draw case 1 as a one-frame PoseSequence and its raw fixture."""
    data = json.loads((reference / "pose" / "draw_case_1.json").read_text())
    return parse_pose_json({k: data[k] for k in ("bodies", "hands", "faces")}), data


@pytest.fixture(scope="session")
def align_case(reference):
    """(reference pose, driving sequence at 30 fps, raw fixture) of align case 1."""
    data = json.loads((reference / "pose" / "align_case_1.json").read_text())
    ref_size, drv_size = data["reference_image_size"], data["driving_video_size"]
    ref = parse_pose_json(data["reference"]["pose"], canvas_width=ref_size["width"], canvas_height=ref_size["height"])
    driving = parse_pose_json(
        [f["pose"] for f in data["driving"]], canvas_width=drv_size["width"], canvas_height=drv_size["height"],
        fps=30,
    )
    return ref, driving, data


def openpose_people(frames: int = 2) -> list[dict]:
    """OpenPose frames in pixels: an upright person, every point seen, moving right 5 px per frame."""
    body = np.array([
        [256, 150], [256, 230], [206, 230], [190, 320], [180, 400], [306, 230], [322, 320], [332, 400],
        [226, 420], [224, 540], [222, 660], [286, 420], [288, 540], [290, 660], [246, 140], [266, 140],
        [236, 150], [276, 150],
    ], float)
    hand = np.stack([180 + np.arange(21) * 1.5, 400 + np.arange(21) * 2.0], axis=1)
    face = np.stack([236 + np.arange(68) * 0.5, 130 + np.arange(68) * 0.4], axis=1)

    def flat(points, frame):
        moved = points + [5.0 * frame, 0.0]
        return np.concatenate([moved, np.ones((len(points), 1))], axis=1).ravel().tolist()

    return [{"people": [{
        "pose_keypoints_2d": flat(body, f),
        "hand_left_keypoints_2d": flat(hand + [150, 0], f),
        "hand_right_keypoints_2d": flat(hand, f),
        "face_keypoints_2d": flat(face, f),
    }]} for f in range(frames)]


def encode_video(path, frames, fps, codec: str = "libx264", pix_fmt: str = "yuv420p", rotation: int = 0) -> None:
    """Writes RGB frames with PyAV, or PIL for GIF (independently of the code under test).

    `rotation` (degrees anticlockwise) goes into the display matrix, as phones store portrait video.
    """
    from fractions import Fraction

    import av
    from PIL import Image

    if codec == "gif":
        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def numbered_frames(count: int, height: int = 96, width: int = 64) -> list[np.ndarray]:
    """Frames whose brightness encodes their index (10 * i), so decoded order can be checked."""
    return [np.full((height, width, 3), 10 * i, np.uint8) for i in range(count)]
