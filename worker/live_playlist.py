"""Progressive playback: each finished segment is also published as an HLS fragment.

    jobs/{id}/live.m3u8                 grows as segments finish; #EXT-X-ENDLIST after the last one
    jobs/{id}/live/init.mp4             the fMP4 initialization section (ftyp + moov), one for all
    jobs/{id}/live/{k:04d}.m4s          segment k's media (moof + mdat), H.264 yuv420p

Each segment is encoded on its own (it starts with a keyframe). Same size and settings give the
same init section every time, so one EXT-X-MAP serves all; each fragment's decode time (`tfdt`)
is moved to where its first frame sits in the video, so the timeline runs on without
discontinuities (FFmpeg's HLS reader does not follow a new init section per segment). The frames are the segment's own frames, the same ones the
final MP4 encodes; the MP4 (one encode of the whole video) stays the deliverable. The playlist is
rebuilt from the stored one on each add, so a resumed job keeps the entries of earlier runs.
Publishing is best effort: a failure here is logged and never fails the job.
"""
from __future__ import annotations

import io
import logging
import math
import re
from fractions import Fraction

import av
import numpy as np

from service.storage.objects import ObjectNotFound, Storage, live_key

log = logging.getLogger(__name__)

FRAGMENT_CRF = 18
_FRAGMENT_FLAGS = "frag_keyframe+empty_moov+default_base_moof"


class LivePlaylist:
    def __init__(self, storage: Storage, job_id: str, fps: Fraction) -> None:
        self.storage = storage
        self.job_id = job_id
        self.fps = Fraction(fps)

    def publish(self, index: int, frames: np.ndarray, last: bool) -> None:
        """Segment `index`'s new frames `[N, H, W, 3]` uint8 RGB; `last` closes the playlist."""
        try:
            durations = self._durations()[:index]
            frames_before = round(sum(durations) * self.fps)
            init, media = fragment(frames, self.fps)
            media = shift_decode_time(media, frames_before * _timescale(init) / self.fps)
            self.storage.put_bytes(live_key(self.job_id, "init.mp4"), init, "video/mp4")
            self.storage.put_bytes(live_key(self.job_id, f"{index:04d}.m4s"), media, "video/iso.segment")
            durations.append(len(frames) / self.fps)
            self.storage.put_bytes(live_key(self.job_id), playlist(durations, ended=last).encode(),
                                   "application/vnd.apple.mpegurl")
        except Exception as exc:  # noqa: BLE001  (progressive playback is a convenience, not the job)
            log.warning("job %s: could not publish segment %d to the live playlist: %s", self.job_id, index, exc)

    def _durations(self) -> list[float]:
        try:
            text = self.storage.get_bytes(live_key(self.job_id)).decode()
        except ObjectNotFound:
            return []
        return [float(value) for value in re.findall(r"#EXTINF:([0-9.]+),", text)]


def playlist(durations: list[float | Fraction], ended: bool) -> str:
    """An HLS media playlist (EVENT: entries are only ever added) of fragments 0..n-1."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-PLAYLIST-TYPE:EVENT",
             f"#EXT-X-TARGETDURATION:{max([1, *(math.ceil(float(d)) for d in durations)])}",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-INDEPENDENT-SEGMENTS", '#EXT-X-MAP:URI="live/init.mp4"']
    for index, duration in enumerate(durations):
        lines += [f"#EXTINF:{float(duration):.6f},", f"live/{index:04d}.m4s"]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def fragment(frames: np.ndarray, fps: Fraction, crf: int = FRAGMENT_CRF) -> tuple[bytes, bytes]:
    """Frames -> (init section, media section) of one fragmented MP4 (CMAF-style)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4", options={"movflags": _FRAGMENT_FLAGS}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "bf": "0"}  # no B-frames: decode order = display order
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    data = buffer.getvalue()
    split = _init_end(data)
    return data[:split], data[split:]


def _init_end(data: bytes) -> int:
    """Where the first `moof` box starts: everything before it (ftyp, moov) is the init section."""
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        if data[offset + 4:offset + 8] == b"moof":
            return offset
        if size < 8:
            break
        offset += size
    raise ValueError("the fragmented MP4 has no moof box")


def _timescale(init: bytes) -> int:
    """The video track's time units per second (its `mdhd`)."""
    at = init.index(b"mdhd") + 4
    version = init[at]
    field = at + 4 + (16 if version == 1 else 8)
    return int.from_bytes(init[field:field + 4], "big")


def shift_decode_time(media: bytes, by: Fraction | float) -> bytes:
    """Adds `by` (in timescale units) to every `tfdt` base media decode time of a media section."""
    shift = int(by)
    if shift != by:
        raise ValueError(f"a fragment cannot start between time units ({by})")
    out = bytearray(media)
    at = out.find(b"tfdt")
    while at != -1:
        width = 8 if out[at + 4] == 1 else 4
        start = at + 8
        value = int.from_bytes(out[start:start + width], "big") + shift
        out[start:start + width] = value.to_bytes(width, "big")
        at = out.find(b"tfdt", start + width)
    return bytes(out)
