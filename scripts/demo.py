"""Render the demo through the REST API: a drawn reference figure waves its arms for a few seconds.

    python scripts/demo.py --api http://127.0.0.1:8000 --out .run/demo.mp4

Makes the inputs (a reference picture and an OpenPose keypoint JSON of the motion), submits them
as multipart, follows the job's Server-Sent Events, downloads the MP4 and prints its path and
frame count. Exit status 0 only if the job succeeded and the file has the frames it should.
The inputs are synthetic; with the tiny model the video is noise-like (it is untrained).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

CANVAS_W, CANVAS_H = 512, 768
# OpenPose body-18 points of a person standing, in pixels of a 512x768 picture.
STANDING = {
    0: (256, 150), 1: (256, 220), 2: (206, 222), 3: (186, 310), 4: (178, 390), 5: (306, 222), 6: (326, 310),
    7: (334, 390), 8: (226, 400), 9: (222, 520), 10: (220, 640), 11: (286, 400), 12: (290, 520), 13: (292, 640),
    14: (244, 138), 15: (268, 138), 16: (230, 146), 17: (282, 146),
}
LIMBS = [(1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 0)]


def pose_at(t: float) -> dict[int, tuple[float, float]]:
    """The figure at time `t` seconds: both arms swing from hanging down to raised, once a second."""
    points = dict(STANDING)
    lift = (1 - math.cos(2 * math.pi * t)) / 2  # 0 (arms down) .. 1 (arms raised)
    upper, lower = math.radians(10 + 150 * lift), math.radians(20 + 160 * lift)  # angles from straight down
    for shoulder, elbow, wrist, side in ((2, 3, 4, -1), (5, 6, 7, 1)):
        sx, sy = points[shoulder]
        ex, ey = sx + side * 90 * math.sin(upper), sy + 90 * math.cos(upper)
        points[elbow] = (ex, ey)
        points[wrist] = (ex + side * 80 * math.sin(lower), ey + 80 * math.cos(lower))
    return points


def demo_keypoints(seconds: float = 4.0, fps: int = 15) -> dict:
    """An OpenPose keypoint document (pixel coordinates, canvas and fps given) of the motion."""
    frames = []
    for i in range(max(1, round(seconds * fps))):
        points = pose_at(i / fps)
        flat = [value for k in range(18) for value in (*points[k], 0.95)]
        frames.append({"people": [{"pose_keypoints_2d": flat}]})
    return {"fps": fps, "canvas_width": CANVAS_W, "canvas_height": CANVAS_H, "frames": frames}


def demo_reference_keypoints() -> dict:
    """The reference picture's own pose: the figure at rest."""
    return {"canvas_width": CANVAS_W, "canvas_height": CANVAS_H, "frames": demo_keypoints(0.0, 1)["frames"][:1]}


def demo_reference_image(width: int = CANVAS_W, height: int = CANVAS_H) -> bytes:
    """A PNG of a simple figure in the standing pose, on a plain background."""
    image = Image.new("RGB", (CANVAS_W, CANVAS_H), (226, 222, 214))
    draw = ImageDraw.Draw(image)
    points = pose_at(0.0)
    for a, b in LIMBS:
        draw.line([points[a], points[b]], fill=(52, 84, 140), width=26)
    x, y = points[0]
    draw.ellipse([x - 38, y - 46, x + 38, y + 40], fill=(232, 190, 160))
    if (width, height) != image.size:
        image = image.resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- the client


def submit(client: httpx.Client, params: dict, seconds: float, fps: int) -> str:
    files = {
        "reference_image": ("reference.png", demo_reference_image(), "image/png"),
        "reference_keypoints": ("reference.json", json.dumps(demo_reference_keypoints()), "application/json"),
        "pose_keypoints": ("motion.json", json.dumps(demo_keypoints(seconds, fps)), "application/json"),
    }
    response = client.post("/animate", files=files, data={"params": json.dumps(params)})
    if response.status_code != 202:
        raise SystemExit(f"POST /animate answered {response.status_code}: {response.text}")
    return response.json()["job_id"]


def follow(client: httpx.Client, job_id: str, timeout_s: float) -> dict:
    """Print progress from the job's event stream until it ends; return the final job record.

    A dropped stream is reopened with Last-Event-ID, as any SSE client does, so nothing is missed."""
    deadline = time.monotonic() + timeout_s
    last_id = None
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with client.stream("GET", f"/jobs/{job_id}/events", headers=headers,
                               timeout=httpx.Timeout(30.0, read=None)) as stream:
                event = None
                for line in stream.iter_lines():
                    if line.startswith("id: "):
                        last_id = line[4:]
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and show(event, json.loads(line[6:])):
                        return client.get(f"/jobs/{job_id}").raise_for_status().json()
        except (httpx.RemoteProtocolError, httpx.ReadError):
            time.sleep(0.5)
    raise SystemExit(f"job {job_id} did not finish within {timeout_s:.0f} s")


def show(event: str | None, data: dict) -> bool:
    """Print one event; True when the job reached its final state."""
    tty = sys.stdout.isatty()  # a terminal gets one updating line, a log one line per report
    if event == "progress":
        line = (f"  segment {data['segment'] + 1}/{data['segments_total']} step {data['step']}/{data['steps_total']} "
                f"frames {data['frames_done']}/{data['frames_total']} {100 * data['fraction']:5.1f}%")
        print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
    elif event == "status":
        print(("\n" if tty else "") + f"  status: {data['status']}", flush=True)
        return data["status"] in ("succeeded", "failed", "canceled")
    return False


def download(client: httpx.Client, job_id: str, out: Path) -> None:
    response = client.get(f"/jobs/{job_id}/video", follow_redirects=True, timeout=120)
    response.raise_for_status()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(response.content)


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size > 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default=os.environ.get("UNIANIMATE_API", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("UNIANIMATE_DEMO_API_KEY"))
    parser.add_argument("--out", type=Path, default=Path(".run/demo.mp4"))
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--height", type=int, default=192, help="tiny model: keep it small on a CPU; 192x128 "
                        "is the 512x768 reference's aspect")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--segment-frames", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)

    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    params = {"height": args.height, "width": args.width, "steps": args.steps, "seed": 0,
              "segment_frames": args.segment_frames}
    with httpx.Client(base_url=args.api, headers=headers, timeout=60) as client:
        job_id = submit(client, params, args.seconds, args.fps)
        print(f"job {job_id}: {args.seconds:g} s at {args.fps} fps, {args.width}x{args.height}, {args.steps} steps")
        job = follow(client, job_id, args.timeout)
        if job["status"] != "succeeded":
            print(f"job {job_id} {job['status']}: {job.get('error')}", file=sys.stderr)
            return 1
        download(client, job_id, args.out)
    frames, expected = count_frames(args.out), job["result"]["frames"]
    model = job.get("model") or {}
    print(f"{args.out}: {frames} frames at {job['result']['fps']:g} fps, {job['result']['duration_s']:.2f} s, "
          f"sha256 {job['result']['sha256'][:16]}..., model: {model.get('name')}"
          f"{' (untrained)' if model.get('untrained') else ''}")
    return 0 if frames == expected == round(args.seconds * args.fps) else 1


if __name__ == "__main__":
    sys.exit(main())
