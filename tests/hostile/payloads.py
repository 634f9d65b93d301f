"""Hostile inputs, built in memory: decompression bombs, lying headers, files posing as media.

Each builder returns bytes a client could upload. They are small on the wire (kilobytes) and
claim or unpack to something huge, which is the point: the API must refuse them from headers,
or within its pixel and duration budgets, without ever holding the claimed size in memory.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import av
import numpy as np

from tests.support.media import png_bytes, video_bytes  # noqa: F401  (payloads.video_bytes)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_zeros(width: int, height: int) -> bytes:
    """A real, fully decodable grayscale PNG of zeros: ~1000x smaller compressed than decoded."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming width x height with (almost) no pixel data behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b""))
            + _png_chunk(b"IEND", b""))


def png_with_text_bomb(kind: bytes = b"zTXt", unpacked: int = 64 << 20) -> bytes:
    """A valid small PNG carrying a compressed text (zTXt) or ICC profile (iCCP) chunk that
    inflates to `unpacked` bytes."""
    base = png_bytes()
    bomb = _png_chunk(kind, b"k\x00\x00" + zlib.compress(b"A" * unpacked, 9))
    return base[:33] + bomb + base[33:]  # right after IHDR (8-byte signature + 25-byte IHDR chunk)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is rewritten to claim width x height."""
    data = bytearray(png_bytes(fmt="JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def audio_only_mkv(tmp: Path) -> bytes:
    path = tmp / "audio.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path.read_bytes()


def mp4_with_time_to_sample(mp4: bytes, *, sample_count: int | None = None, sample_delta: int | None = None
                            ) -> bytes:
    """Rewrite the first entry of the MP4's time-to-sample table (stts): how many frames there are,
    and how long each one lasts. Both are header numbers nothing checks against the real stream."""
    data = bytearray(mp4)
    entry = data.index(b"stts") + 4 + 8  # box type, then version/flags and the entry count
    if sample_count is not None:
        data[entry:entry + 4] = struct.pack(">I", sample_count)
    if sample_delta is not None:
        data[entry + 4:entry + 8] = struct.pack(">I", sample_delta)
    return bytes(data)


def nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def many_empty_objects(n_bytes: int) -> bytes:
    """`[{},{},...]`: the JSON with the most Python objects per byte the parser will make."""
    count = max(1, (n_bytes - 2) // 3)
    return b"[" + b",".join([b"{}"] * count) + b"]"


def openpose_frames(frames: int, fps: float | None = 8, points: list | None = None) -> bytes:
    frame = {"people": [{"pose_keypoints_2d": points if points is not None else [0.5, 0.5, 0.9] * 18}]}
    document: dict = {"frames": [frame] * frames}
    if fps is not None:
        document["fps"] = fps
    return json.dumps(document).encode()
