"""Progressive playback: each finished segment is also published as an HLS fragment.

    jobs/{id}/live.m3u8                 grows as segments finish; #EXT-X-ENDLIST once the job succeeded
    jobs/{id}/live/init.mp4             the fMP4 initialization section (ftyp + moov), one for all
    jobs/{id}/live/{k:04d}.m4s          segment k's media (moof + mdat), H.264 yuv420p

Nothing is encoded here: the MP4 writer encodes each segment once, in a run of its own that starts
with a keyframe (`model.longvideo.mp4.Mp4Writer.cut`), and the same packets go into the result MP4
and, remuxed, into the fragment, so the fragments decode to exactly the MP4's frames. Same size and
settings give the same init section every time, so one EXT-X-MAP serves all; each fragment's decode
time (`tfdt`) is moved to where its first frame sits in the video, so the timeline runs on without
discontinuities (FFmpeg's HLS reader does not follow a new init section per segment). The MP4 stays
the deliverable. The playlist is rebuilt from the stored one on each add, so a resumed job keeps the
entries of earlier runs (a segment rendered again is published again, with the same bytes). It is
closed (`close`) only after the result is stored: a failed job's playlist stays open.
Publishing is best effort: a failure here is logged and never fails the job.
"""
from __future__ import annotations

import io
import logging
import math
import re
from fractions import Fraction

import av

from model.longvideo.mp4 import EncodedSegment, h264_stream
from service.storage.objects import ObjectNotFound, Storage, live_key

log = logging.getLogger(__name__)

# delay_moov: the init section is written with the first packet, whose parameter sets it describes
_FRAGMENT_FLAGS = "frag_keyframe+empty_moov+default_base_moof+delay_moov"


class LivePlaylist:
    def __init__(self, storage: Storage, job_id: str, fps: Fraction) -> None:
        self.storage = storage
        self.job_id = job_id
        self.fps = Fraction(fps)

    def publish(self, index: int, segment: EncodedSegment) -> None:
        """Segment `index`'s packets, as the result MP4 holds them, become fragment `index`."""
        try:
            durations = self._durations()[:index]
            if len(durations) < index:  # an earlier publish failed: a player could not step over the gap
                log.warning("job %s: the live playlist lacks segment %d; segment %d is not listed", self.job_id,
                            len(durations), index)
                return
            init, media = fragment(segment)
            media = shift_decode_time(media, segment.first_frame * _timescale(init) / self.fps)
            self.storage.put_bytes(live_key(self.job_id, "init.mp4"), init, "video/mp4")
            self.storage.put_bytes(live_key(self.job_id, f"{index:04d}.m4s"), media, "video/iso.segment")
            durations.append(segment.frames / self.fps)
            self._put_playlist(durations, ended=False)
        except Exception as exc:  # noqa: BLE001  (progressive playback is a convenience, not the job)
            log.warning("job %s: could not publish segment %d to the live playlist: %s", self.job_id, index, exc)

    def publish_restored(self, index: int, segment: EncodedSegment) -> None:
        """A segment restored from its checkpoint: published only if the playlist does not list it yet
        (a re-render's copied segments; an earlier run's entries stay as they are)."""
        try:
            listed = len(self._durations())
        except Exception as exc:  # noqa: BLE001
            log.warning("job %s: could not read the live playlist: %s", self.job_id, exc)
            return
        if listed <= index:
            self.publish(index, segment)

    def close(self, segments_total: int) -> None:
        """#EXT-X-ENDLIST: called once the job's result is stored, never for a failed job; and only if
        every segment is listed (a playlist with a segment that could not be published stays open,
        rather than telling players that a shorter video is the whole of it; the MP4 is complete)."""
        try:
            durations = self._durations()
            if len(durations) < segments_total:
                log.warning("job %s: the live playlist lists %d of %d segments; it is not closed", self.job_id,
                            len(durations), segments_total)
                return
            self._put_playlist(durations, ended=True)
        except Exception as exc:  # noqa: BLE001
            log.warning("job %s: could not close the live playlist: %s", self.job_id, exc)

    def _put_playlist(self, durations: list[float | Fraction], ended: bool) -> None:
        self.storage.put_bytes(live_key(self.job_id), playlist(durations, ended=ended).encode(),
                               "application/vnd.apple.mpegurl")

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


def fragment(segment: EncodedSegment) -> tuple[bytes, bytes]:
    """A run of encoded packets -> (init section, media section) of one fragmented MP4 (CMAF-style),
    without encoding anything: the bytes of each frame are the result MP4's."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4", options={"movflags": _FRAGMENT_FLAGS}) as container:
        stream = h264_stream(container, segment.fps, segment.width, segment.height)
        for packet in segment.av_packets(stream, 0):
            container.mux(packet)
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
