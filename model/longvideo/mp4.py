"""Streaming MP4 output (H.264, yuv420p) with exact timestamps, metadata and optional audio.

Frames are encoded as they arrive, so a minute of video never sits in memory. Frame i gets the
presentation time i / fps exactly: the stream's time base is 1 / fps, a rational number, so
900 frames at 15 fps last 60.0 s and 29.97 / 2 fps stays exact too. The file is written
under a temporary name and renamed when complete, so a crash or a cancel never leaves a
truncated MP4 behind under the real name.
"""

from __future__ import annotations

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
# faststart: index at the front so players can start before the download ends;
# use_metadata_tags: keep our own keys (seed, checkpoint, ...) instead of dropping them.
_MOVFLAGS = "+faststart+use_metadata_tags"


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
        self.frames_written = 0
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._container = av.open(str(self._partial), "w", format="mp4", options={"movflags": _MOVFLAGS})
        self._container.metadata.update(dict(metadata or {}))
        self._video = self._container.add_stream("libx264", rate=self.fps, options={"crf": str(crf)})
        self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
        self._audio = _AudioTrack.open(self._container, audio_source) if audio_source else None

    @property
    def duration(self) -> Fraction:
        return self.frames_written / self.fps

    def write(self, frames: np.ndarray) -> None:
        """Appends `[N, H, W, 3]` (or one `[H, W, 3]`) uint8 RGB frames."""
        batch = frames[None] if frames.ndim == 3 else frames
        expected = (self._video.height, self._video.width, 3)
        if batch.dtype != np.uint8 or batch.shape[1:] != expected:
            raise ValueError(
                f"frames must be uint8 [N, {expected[0]}, {expected[1]}, 3], got {frames.dtype} {frames.shape}"
            )
        for image in batch:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = self.frames_written, 1 / self.fps
            self._container.mux(self._video.encode(frame))
            self.frames_written += 1
        if self._audio is not None:  # keep audio interleaved with the video written so far
            self._audio.write_until(self.duration)

    def close(self) -> None:
        """Flushes the encoders, finishes the file and gives it its real name."""
        self._container.mux(self._video.encode(None))
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
            self.close()
        else:
            self.abort()


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
