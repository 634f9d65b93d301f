"""Streaming MP4 output (H.264, yuv420p) with exact timestamps, metadata and optional audio.

Frames are encoded as they arrive, so a minute of video never sits in memory. Frame i gets the
presentation time i / fps exactly: the stream's time base is 1 / fps, a rational number, so
900 frames at 15 fps last 60.0 s and 29.97 / 2 fps stays exact too. The file is written
under a temporary name (`partial_path`) and renamed when complete, so a crash or a cancel never
leaves a truncated MP4 behind under the real name.

**Encoded once, muxed twice.** `cut()` ends a run of the encoder: its packets (which start with a
keyframe) come back as an `EncodedSegment`, and the next frames go to a fresh encoder with the same
settings. The worker cuts after every segment and muxes the same packets into the live playlist's
fragment (`worker/live_playlist.py`), so the fragments decode to exactly the MP4's frames. Every run
carries its parameter sets in band (no global header), and identical settings give identical ones,
so one `avcC` describes every run. The encoder is deterministic (a pinned thread count, no B-frames),
so a resumed job that encodes its stored segments again gets the same packets as the first run did.

**moov at the end.** The index is written after the media, not moved to the front (no faststart):
the bytes of the file never change once written, except the `mdat` size near its start, patched at
close, so the worker can upload the file in parts while it grows (`service/storage/progressive.py`).
Browsers and players read such a file with HTTP range requests (one extra request for the index).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Self

import av
import numpy as np

DEFAULT_CRF = 18
MAX_CRF = 51  # libx264's worst quality for 8-bit video; 0 is lossless
# use_metadata_tags: keep our own keys (seed, checkpoint, ...) instead of dropping them.
_MOVFLAGS = "+use_metadata_tags"
# x264's output depends on its thread count (frame threads limit the motion search), so it is pinned:
# a job resumed on another machine encodes its stored segments to the same packets. No B-frames: each
# run's packets are in display order, and runs join without reordering across a cut.
ENCODER_THREADS = 4
_ENCODER_OPTIONS = {"bf": "0"}


def exact_fps(fps: Fraction | float) -> Fraction:
    """A frame rate as an exact fraction. Floats near an NTSC rate become n*1000/1001
    (29.97 -> 30000/1001, 23.976 -> 24000/1001); other floats their simplest nearby fraction."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        ntsc = round(fps * 1.001)
        near_ntsc = abs(fps * 1.001 - ntsc) < 1e-3 and abs(fps - round(fps)) > 1e-3
        rate = Fraction(ntsc * 1000, 1001) if near_ntsc else Fraction(fps).limit_denominator(1000)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return rate


def partial_path(path: Path) -> Path:
    """Where `Mp4Writer` writes `path` until it is complete."""
    return Path(path).with_name(Path(path).name + ".partial")


@dataclass(frozen=True)
class EncodedPacket:
    data: bytes  # H.264 Annex B
    pts: int  # in frames, from the first frame of its run
    dts: int
    keyframe: bool


@dataclass(frozen=True)
class EncodedSegment:
    """One run of the encoder: `frames` frames from video frame `first_frame` on, starting with a keyframe."""

    index: int  # the writer's runs are counted from 0: segment k in chain mode
    first_frame: int
    frames: int
    fps: Fraction
    width: int
    height: int
    packets: tuple[EncodedPacket, ...]

    def av_packets(self, stream: av.video.stream.VideoStream, first_frame: int) -> list[av.Packet]:
        """The packets for `stream` (time base 1 / fps), the run's first frame at `first_frame`."""
        return [_av_packet(encoded, stream, first_frame, self.fps) for encoded in self.packets]


def _av_packet(encoded: EncodedPacket, stream: av.video.stream.VideoStream, first_frame: int,
               fps: Fraction) -> av.Packet:
    packet = av.Packet(encoded.data)
    packet.pts, packet.dts = first_frame + encoded.pts, first_frame + encoded.dts
    packet.time_base, packet.is_keyframe, packet.stream = 1 / fps, encoded.keyframe, stream
    return packet


def h264_stream(container: av.container.OutputContainer, fps: Fraction, width: int,
                height: int) -> av.video.stream.VideoStream:
    """A stream for `EncodedSegment` packets: no encoder of its own; the muxer reads the parameter
    sets from the first packet."""
    stream = container.add_mux_stream("h264", rate=fps, width=width, height=height)
    stream.time_base = 1 / fps
    return stream


class Mp4Writer:
    """Encodes uint8 RGB frames to an H.264 MP4 as they are written."""

    def __init__(
        self,
        path: Path,
        *,
        fps: Fraction | float,
        width: int,
        height: int,
        crf: int = DEFAULT_CRF,
        metadata: Mapping[str, str] | None = None,
        audio_source: Path | None = None,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
        if not 0 <= crf <= MAX_CRF:
            raise ValueError(f"crf must be in [0, {MAX_CRF}], got {crf}")
        self.path = Path(path)
        self.fps = exact_fps(fps)
        self.width, self.height, self.crf = width, height, crf
        self.frames_written = 0
        self._partial = partial_path(self.path)
        self._container = av.open(str(self._partial), "w", format="mp4", options={"movflags": _MOVFLAGS})
        self._container.metadata.update(dict(metadata or {}))
        self._video = h264_stream(self._container, self.fps, width, height)
        self._audio = _AudioTrack.open(self._container, audio_source) if audio_source else None
        self._encoder: av.video.codeccontext.VideoCodecContext | None = None
        self._run_start = 0  # the first frame of the current run of the encoder
        self._run_packets: list[EncodedPacket] = []
        self._runs = 0

    @property
    def duration(self) -> Fraction:
        return self.frames_written / self.fps

    def write(self, frames: np.ndarray) -> None:
        """Appends `[N, H, W, 3]` (or one `[H, W, 3]`) uint8 RGB frames."""
        batch = frames[None] if frames.ndim == 3 else frames
        expected = (self.height, self.width, 3)
        if batch.dtype != np.uint8 or batch.shape[1:] != expected:
            raise ValueError(
                f"frames must be uint8 [N, {expected[0]}, {expected[1]}, 3], got {frames.dtype} {frames.shape}"
            )
        if not len(batch):
            return  # an empty batch must not open a run of no frames
        encoder = self._encoder or self._new_encoder()
        for image in batch:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = self.frames_written - self._run_start, 1 / self.fps
            self._take(encoder.encode(frame))
            self.frames_written += 1
        if self._audio is not None:  # keep audio interleaved with the video written so far
            self._audio.write_until(self.duration)

    def cut(self) -> EncodedSegment | None:
        """Ends the encoder's current run (None if it has no frames): its packets are in the file,
        and come back to be muxed elsewhere too. The next frame starts a new run with a keyframe."""
        if self._encoder is None:
            return None
        self._take(self._encoder.encode(None))
        run = EncodedSegment(index=self._runs, first_frame=self._run_start,
                             frames=self.frames_written - self._run_start, fps=self.fps, width=self.width,
                             height=self.height, packets=tuple(self._run_packets))
        if len(run.packets) != run.frames or not run.packets[0].keyframe:
            raise RuntimeError(f"libx264 gave {len(run.packets)} packets for {run.frames} frames")
        self._encoder, self._run_start, self._run_packets = None, self.frames_written, []
        self._runs += 1
        return run

    def close(self) -> None:
        """Flushes the encoders, finishes the file and gives it its real name."""
        self.cut()
        if self._audio is not None:
            self._audio.finish(self.duration)
        self._container.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        """Drops the unfinished file."""
        try:
            if self._audio is not None:
                self._audio.source.close()
            self._container.close()
        finally:
            self._partial.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:  # never leave a half-written .partial behind
                with contextlib.suppress(Exception):  # the error to raise is close()'s
                    self.abort()
                raise
        else:
            self.abort()

    def _new_encoder(self) -> av.video.codeccontext.VideoCodecContext:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = self.width, self.height, "yuv420p"
        encoder.time_base, encoder.framerate = 1 / self.fps, self.fps
        encoder.thread_type, encoder.thread_count = "FRAME", ENCODER_THREADS
        encoder.options = {"crf": str(self.crf), **_ENCODER_OPTIONS}  # no global header: parameter sets in band
        self._encoder = encoder
        return encoder

    def _take(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            encoded = EncodedPacket(bytes(packet), int(packet.pts), int(packet.dts), bool(packet.is_keyframe))
            self._run_packets.append(encoded)
            self._container.mux(_av_packet(encoded, self._video, self._run_start, self.fps))


class _AudioTrack:
    """The audio of a source video, re-encoded to AAC and cut at the video's length.

    Decoded chunks (1024 samples for AAC) rarely end where a write() does, so the samples past
    the frames written so far wait in a FIFO for the next call; dropping them would pull the
    sound ahead of the picture a little more with every call.
    """

    def __init__(self, container: av.container.OutputContainer, source: av.container.InputContainer) -> None:
        self.source = source
        self._container = container
        stream = source.streams.audio[0]
        self._rate = stream.codec_context.sample_rate
        self._layout = stream.codec_context.layout.name
        self._stream = container.add_stream("aac", rate=self._rate, layout=self._layout)
        self._resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self._rate)
        self._decoded = source.decode(stream)
        self._pending = av.AudioFifo()  # decoded, not yet encoded
        self._exhausted = False
        self._samples = 0  # samples encoded so far

    @classmethod
    def open(cls, container: av.container.OutputContainer, path: Path) -> _AudioTrack | None:
        source = av.open(str(path))
        if not source.streams.audio:
            source.close()
            return None
        return cls(container, source)

    def write_until(self, seconds: Fraction) -> None:
        """Encodes the source's samples up to `seconds` (fewer if the source is shorter)."""
        target = int(seconds * self._rate)
        while self._samples + self._pending.samples < target and not self._exhausted:
            self._decode_chunk()
        count = min(target - self._samples, self._pending.samples)
        if count > 0:
            self._encode(self._pending.read(count))

    def finish(self, seconds: Fraction) -> None:
        self.write_until(seconds)
        self._container.mux(self._stream.encode(None))
        self.source.close()

    def _decode_chunk(self) -> None:
        chunk = next(self._decoded, None)
        self._exhausted = chunk is None  # resample(None) then flushes the resampler
        for piece in self._resampler.resample(chunk):
            piece.pts = None  # the FIFO would check source timestamps; ours are counted in _encode
            self._pending.write(piece)

    def _encode(self, frame: av.AudioFrame) -> None:
        frame.sample_rate, frame.pts, frame.time_base = self._rate, self._samples, Fraction(1, self._rate)
        self._samples += frame.samples
        self._container.mux(self._stream.encode(frame))


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: Fraction
    duration_s: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    metadata: dict[str, str]
    audio_duration_s: float | None  # None when the file has no audio


def probe_video(path: Path) -> VideoInfo:
    """Frame count (by demuxing every packet), frame rate, duration and tags of a video file."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for packet in container.demux(video) if packet.size > 0)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            frames=frames,
            fps=Fraction(video.average_rate),
            duration_s=_stream_seconds(video, container),
            width=video.codec_context.width,
            height=video.codec_context.height,
            codec=video.codec_context.name,
            pix_fmt=video.codec_context.pix_fmt,
            metadata=dict(container.metadata),
            audio_duration_s=None if audio is None else _stream_seconds(audio, container),
        )


def _stream_seconds(stream: av.stream.Stream, container: av.container.InputContainer) -> float:
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base
