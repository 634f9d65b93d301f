"""Images and videos that lie, explode or are not what they claim: each a 4xx naming the field."""
import pytest

from tests.hostile import payloads
from tests.hostile.checks import assert_refused
from tests.support.media import keypoints_bytes, png_bytes

IMAGES = {
    "png claiming 50000x50000": (payloads.png_claiming(50_000, 50_000), "downscale"),
    "png of zeros, 20000x20000 (400 MB decoded)": (payloads.png_of_zeros(20_000, 20_000), "downscale"),
    "jpeg claiming 65000x65000": (payloads.jpeg_claiming(65_000, 65_000), "downscale"),
    "jpeg claiming 5000x5000": (payloads.jpeg_claiming(5_000, 5_000), "downscale"),
    "zTXt chunk inflating to 64 MB": (payloads.png_with_text_bomb(b"zTXt"), "corrupt"),
    "iCCP chunk inflating to 64 MB": (payloads.png_with_text_bomb(b"iCCP"), "corrupt"),
    "text posing as png": (b"just some text, honest\n" * 50, "not a readable"),
    "empty file": (b"", "not a readable"),
    "truncated png": (png_bytes()[:300], "corrupt or truncated"),
    "truncated jpeg": (png_bytes(fmt="JPEG")[:400], "corrupt or truncated"),
    "gif": (png_bytes(fmt="GIF"), "GIF images are not accepted"),
    "bmp": (png_bytes(fmt="BMP"), "not accepted"),
    "1x1 png": (png_bytes(1, 1), "too small"),
    "keypoint json as image": (keypoints_bytes(), "not a readable"),
}


@pytest.fixture
def small_limits_client(make_client):
    """Pixel budget 4096x4096 as in production; video limits small enough to reach with tiny files."""
    return make_client(max_image_pixels=4096 * 4096, max_video_frames=50, max_video_duration_s=60)


@pytest.mark.parametrize("name", IMAGES)
def test_hostile_reference_images(small_limits_client, settings, name):
    data, words = IMAGES[name]
    files = {"reference_image": ("photo.png", data, "image/png"),
             "pose_keypoints": ("p.json", keypoints_bytes(), "application/json")}
    response = small_limits_client.post("/animate", files=files)
    body = assert_refused(response, small_limits_client.app.state.services, settings.local_storage_dir,
                          field="reference_image")
    assert words in body["detail"]


def _videos(tmp):
    ok = payloads.video_bytes(tmp)
    return {
        "4112x16 (over 4096 per side)": (payloads.video_bytes(tmp, size=(4112, 16)), "outside 1..4096"),
        "1000 fps": (payloads.video_bytes(tmp, fps=1000), "frame rate"),
        "each frame lasting 2^31 ticks": (payloads.mp4_with_time_to_sample(ok, sample_delta=2**31 - 1), "frame rate"),
        "header claiming 2^31 frames": (payloads.mp4_with_time_to_sample(ok, sample_count=2**31 - 1), "s long"),
        "header claiming 60 frames": (payloads.mp4_with_time_to_sample(ok, sample_count=60), "at most"),
        "truncated mp4": (ok[: len(ok) // 2], "video"),
        "first 100 bytes of an mp4": (ok[:100], "not a readable video"),
        "text posing as mp4": (b"\x00\x00\x00\x18ftypmp42" + b"lies" * 100, "not a readable video"),
        "png posing as video": (png_bytes(), "not a readable video"),
        "audio only": (payloads.audio_only_mkv(tmp), "no video stream"),
        "ffconcat script": (b"ffconcat version 1.0\nfile /etc/passwd\n", "not a readable video"),
        "hls playlist": (b"#EXTM3U\n#EXTINF:1,\nhttp://169.254.169.254/x.ts\n#EXT-X-ENDLIST\n",
                         "not a readable video"),
        "empty file": (b"", "not a readable video"),
    }


def test_hostile_pose_videos(small_limits_client, settings, tmp_path):
    state = small_limits_client.app.state.services
    for name, (data, words) in _videos(tmp_path).items():
        files = {"reference_image": ("r.png", png_bytes(), "image/png"), "pose_video": ("v.mp4", data, "video/mp4")}
        body = assert_refused(small_limits_client.post("/animate", files=files), state, settings.local_storage_dir,
                              field="pose_video")
        assert words in body["detail"], (name, body["detail"])


def test_real_small_videos_in_every_accepted_container_pass(small_limits_client, tmp_path):
    """The limits above refuse lies, not formats: the same tiny clip is accepted as MP4, WebM, AVI."""
    for fmt, codec, pix in (("mp4", "libx264", "yuv420p"), ("webm", "libvpx-vp9", "yuv420p"),
                            ("avi", "mjpeg", "yuvj420p")):
        files = {"reference_image": ("r.png", png_bytes(), "image/png"),
                 "pose_video": (f"v.{fmt}", payloads.video_bytes(tmp_path, fmt, codec, pix_fmt=pix), "video/mp4")}
        response = small_limits_client.post("/animate", files=files)
        assert response.status_code == 202, (fmt, response.text)
