"""`unianimate pose render|align|preview|extract`."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from cli.pose import main
from model.pose.formats import parse_pose_json, to_pose_json
from model.pose.render import pose_frames_for_model
from model.pose.video import probe_video
from tests.model.pose.conftest import PHOTO_H, PHOTO_W, encode_video


def _write_align_inputs(tmp_path, align_case):
    ref, driving, _ = align_case
    ref_path, drv_path = tmp_path / "ref.json", tmp_path / "driving.json"
    ref_path.write_text(json.dumps(to_pose_json(ref)))
    drv_path.write_text(json.dumps(to_pose_json(driving)))
    return ref_path, drv_path


def test_render_writes_the_model_frames_as_png(tmp_path, draw_case):
    seq, _ = draw_case
    source = tmp_path / "pose.json"
    source.write_text(json.dumps(to_pose_json(seq)))
    assert main(["render", str(source), "--out", str(tmp_path / "frames"), "--height", "384", "--width", "256"]) == 0
    written = np.asarray(Image.open(tmp_path / "frames" / "0000.png"))
    assert np.array_equal(written, pose_frames_for_model(seq, 384, 256)[0])


def test_render_aligned_to_a_reference_as_mp4(tmp_path, align_case):
    ref_path, drv_path = _write_align_inputs(tmp_path, align_case)
    out = tmp_path / "aligned.mp4"
    assert main(["render", str(drv_path), "--reference", str(ref_path), "--frame-interval", "2", "--out", str(out)]) == 0
    info = probe_video(out)
    assert (info.width, info.height, info.fps) == (512, 768, 15.0)


def test_align_writes_the_original_keypoints(tmp_path, align_case):
    _, _, data = align_case
    ref_path, drv_path = _write_align_inputs(tmp_path, align_case)
    out = tmp_path / "aligned.json"
    assert main(["align", str(drv_path), "--reference", str(ref_path), "--frame-interval", "1", "--out", str(out)]) == 0
    aligned = parse_pose_json(out.read_text())
    expected = np.array([f["bodies"]["candidate"] for f in data["aligned"]])
    np.testing.assert_allclose(aligned.body, expected, atol=1e-9)
    assert aligned.canvas_width == 600 and aligned.fps == 30.0


def test_preview_writes_report_strip_and_video(tmp_path, align_case):
    ref_path, drv_path = _write_align_inputs(tmp_path, align_case)
    report, strip, video = tmp_path / "report.json", tmp_path / "strip.png", tmp_path / "preview.mp4"
    code = main(["preview", str(drv_path), "--reference", str(ref_path), "--frame-interval", "1",
                 "--report", str(report), "--strip", str(strip), "--video", str(video)])
    assert code == 0
    assert json.loads(report.read_text())["num_frames"] == 8
    assert Image.open(strip).size[1] == 384
    assert probe_video(video).fps == 30.0


def test_extract_photo_and_video_with_standin_weights(tmp_path, dwpose_dir, photo):
    image_path, video_path = tmp_path / "person.png", tmp_path / "driving.mp4"
    Image.fromarray(photo).save(image_path)
    encode_video(video_path, [photo] * 4, 30)
    out = tmp_path / "ref.json"
    assert main(["extract", str(image_path), "--image", "--dwpose-dir", str(dwpose_dir), "--out", str(out)]) == 0
    ref = parse_pose_json(out.read_text())
    assert (ref.canvas_width, ref.canvas_height) == (PHOTO_W, PHOTO_H) and ref.body_present[0, 0]
    out = tmp_path / "driving.json"
    assert main(["extract", str(video_path), "--dwpose-dir", str(dwpose_dir), "--out", str(out)]) == 0
    assert parse_pose_json(out.read_text()).num_frames == 2  # 30 fps -> default interval 2


def test_bad_input_exits_2_with_the_reason(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"people": [{"pose_keypoints_2d": [1, 2]}]}]')
    assert main(["render", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "not a multiple of 3" in capsys.readouterr().err
    assert main(["extract", str(bad), "--out", str(tmp_path / "y.json"), "--dwpose-dir", str(tmp_path)]) == 2
    assert "yolox_l.onnx" in capsys.readouterr().err


def test_align_to_a_pixel_openpose_reference_with_its_canvas(tmp_path, align_case, capsys):
    from model.pose.align import align_to_reference
    from tests.model.pose.conftest import openpose_people

    _, driving, _ = align_case
    ref_path, drv_path = tmp_path / "ref_pixels.json", tmp_path / "driving.json"
    ref_path.write_text(json.dumps(openpose_people(1)))  # pixels of a 512x768 photo; the file does not say
    drv_path.write_text(json.dumps(to_pose_json(driving)))
    out = tmp_path / "aligned.json"
    args = ["align", str(drv_path), "--reference", str(ref_path), "--frame-interval", "1", "--out", str(out)]

    assert main(args) == 2
    error = capsys.readouterr().err
    assert f"reference {ref_path}" in error and "no canvas size is known" in error
    assert "--reference-canvas-width" in error

    assert main([*args, "--reference-canvas-width", "512", "--reference-canvas-height", "768"]) == 0
    reference = parse_pose_json(openpose_people(1), canvas_width=512, canvas_height=768)
    expected = align_to_reference(driving, reference).sequence
    aligned = parse_pose_json(out.read_text())
    assert (aligned.canvas_width, aligned.canvas_height) == (512, 768)
    np.testing.assert_allclose(aligned.body, expected.body, atol=1e-12)

    # the photo the keypoints describe gives the same canvas
    photo = tmp_path / "photo.png"
    Image.new("RGB", (512, 768)).save(photo)
    out.unlink()
    assert main([*args, "--reference-image", str(photo)]) == 0
    np.testing.assert_allclose(parse_pose_json(out.read_text()).body, expected.body, atol=1e-12)

    # The coordinate mode reaches the parser: these pixels read as normalised are far off the canvas.
    assert main([*args, "--reference-canvas-width", "512", "--reference-canvas-height", "768",
                 "--reference-coordinates", "normalized"]) == 2
    assert "far outside the canvas" in capsys.readouterr().err


def test_reference_canvas_flags_are_refused_for_a_photo(tmp_path, align_case, photo, capsys):
    _, drv_path = _write_align_inputs(tmp_path, align_case)
    image_path = tmp_path / "person.png"
    Image.fromarray(photo).save(image_path)
    code = main(["align", str(drv_path), "--reference", str(image_path), "--reference-canvas-width", "512",
                 "--reference-canvas-height", "768", "--out", str(tmp_path / "aligned.json")])
    assert code == 2
    assert "a reference photo is measured in its own pixels" in capsys.readouterr().err
