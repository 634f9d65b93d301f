import json
import struct
import zlib

import pytest

from service.inputs.checks import InputError, Limits, check_image, check_keypoints, check_video, parse_json
from tests.support.media import keypoints_bytes, mp4_bytes, png_bytes

LIMITS = Limits(max_image_pixels=1000 * 1000, max_video_side=256, max_video_frames=100,
                max_video_duration_s=20.0, max_json_bytes=10_000, max_json_depth=8)


def write(tmp_path, data, name="input"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fmt, ext", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_accepted_image_formats_get_fixed_names(tmp_path, fmt, ext):
    checked = check_image("reference_image", write(tmp_path, png_bytes(fmt=fmt)), LIMITS)
    assert checked.storage_name == f"reference_image.{ext}"
    assert checked.info == {"width": 64, "height": 96}


def test_other_image_formats_are_refused(tmp_path):
    with pytest.raises(InputError, match="GIF images are not accepted"):
        check_image("reference_image", write(tmp_path, png_bytes(fmt="GIF")), LIMITS)


def png_header_only(width, height):
    """A PNG whose header claims a huge image: a decompression bomb must fail before decoding."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [2000, 50_000])
def test_pixel_bomb_is_refused_before_decoding(tmp_path, side):
    with pytest.raises(InputError, match="limit (is|of) 1000000.*downscale the image"):
        check_image("reference_image", write(tmp_path, png_header_only(side, side)), LIMITS)


@pytest.mark.parametrize("data, words", [
    (b"hello", "not a readable"),
    (png_bytes()[:200], "corrupt or truncated"),
])
def test_broken_images(tmp_path, data, words):
    with pytest.raises(InputError, match=words):
        check_image("reference_image", write(tmp_path, data), LIMITS)


def test_video_probe(tmp_path):
    checked = check_video("pose_video", write(tmp_path, mp4_bytes(tmp_path, frames=6, fps=8)), LIMITS)
    assert checked.storage_name == "pose_video.mp4"
    assert checked.info["frames"] == 6 and checked.info["fps"] == 8 and checked.info["width"] == 64


@pytest.mark.parametrize("limits, words", [
    (Limits(**{**LIMITS.__dict__, "max_video_frames": 5}), "6 frames; at most 5"),
    (Limits(**{**LIMITS.__dict__, "max_video_side": 80}), "outside 1..80"),
    (Limits(**{**LIMITS.__dict__, "max_video_duration_s": 0.5}), "at most 0 s"),
])
def test_video_limits(tmp_path, limits, words):
    with pytest.raises(InputError, match=words):
        check_video("pose_video", write(tmp_path, mp4_bytes(tmp_path, frames=6, fps=8)), limits)


@pytest.mark.parametrize("data", [
    b"not a video at all",
    png_bytes(),
    b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",  # a playlist must not be followed
])
def test_non_videos_are_refused(tmp_path, data):
    with pytest.raises(InputError, match="not a readable video"):
        check_video("pose_video", write(tmp_path, data), LIMITS)


def dwpose_frame():
    body = [[0.5, 0.1 + 0.02 * k] for k in range(18)]
    return {"bodies": {"candidate": body, "subset": [list(range(18))]}}


def test_keypoints_accepted_layouts(tmp_path):
    checked = check_keypoints("pose_keypoints", write(tmp_path, keypoints_bytes(4)), LIMITS)
    assert checked.info == {"frames": 4, "fps": 8.0}
    wrapped = json.dumps({"frames": [dwpose_frame()]}).encode()
    assert check_keypoints("pose_keypoints", write(tmp_path, wrapped), LIMITS).info == {"frames": 1, "fps": None}
    single = json.dumps({"people": []}).encode()
    assert check_keypoints("reference_keypoints", write(tmp_path, single), LIMITS).storage_name == \
        "reference_keypoints.json"


@pytest.mark.parametrize("data, words", [
    (b"[" * 9 + b"]" * 9, "deeper than 8"),
    (b"[" * 100_000 + b"]" * 100_000, "too large|bytes"),
    (b'[{"x": NaN}]', "NaN is not valid JSON"),
    (b'[{"x": -Infinity}]', "Infinity is not valid JSON"),
    (b'[{"x": 1e999}]', "finite"),
    (b"[]", "empty"),
    (b"[1, 2]", "frame 0: expected an object"),
    (b"{bad json", "invalid JSON"),
])
def test_bad_keypoints(tmp_path, data, words):
    with pytest.raises(InputError, match=words):
        check_keypoints("pose_keypoints", write(tmp_path, data), LIMITS)


@pytest.mark.parametrize("frames, words", [
    ([{"people": [{"pose_keypoints_2d": [0.5, 0.5, 0.9] * 17}]}], r"frame 0: people\[0\].pose_keypoints_2d has 17"),
    ([{"people": []}, {"people": [{"pose_keypoints_2d": [0.5, 0.5, -1] * 18}]}], "frame 1: .*confidence"),
    ([{"people": []}, {"bodies": {"candidate": [], "subset": []}}], "mix the OpenPose"),
    ([{"people": [{"pose_keypoints_2d": ["0.5", 0.5, 0.9] * 18}]}], "frame 0: .*only numbers"),
])
def test_keypoints_the_worker_would_refuse_name_frame_and_field(tmp_path, frames, words):
    """The worker's own parser (model.pose) runs at submission."""
    with pytest.raises(InputError, match=words) as caught:
        check_keypoints("pose_keypoints", write(tmp_path, json.dumps(frames).encode()), LIMITS)
    assert caught.value.field == "pose_keypoints"


def test_reference_keypoints_are_one_frame(tmp_path):
    with pytest.raises(InputError, match="exactly one frame, got 3"):
        check_keypoints("reference_keypoints", write(tmp_path, keypoints_bytes(3)), LIMITS)


def test_deep_json_beyond_the_recursion_limit_is_a_clean_error():
    with pytest.raises(InputError, match="deeper than 8"):
        parse_json("params", b"[" * 200_000 + b"]" * 200_000, 8)
