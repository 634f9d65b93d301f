"""Videos of any length from a single-segment model.

- `render_video`: one job end to end (reference once, chained segments or the sliding window,
  streamed to an MP4); what the CLI and the benchmark call.
- `render_chain`: the chained segments one by one, for a caller that checkpoints each finished
  segment (the worker) and resumes at segment k from the stored last frame of segment k - 1.
  `denoise_chain` is its first half (denoise, decode the last frame), for callers that finish a
  segment in the background while the next one denoises (`model.longvideo.overlap`).
- `SegmentRenderer`: what a model implements to be rendered this way.
"""

from model.longvideo.chain import (
    DenoisedSegment,
    FinishedSegment,
    SamplingOptions,
    denoise_chain,
    render_chain,
)
from model.longvideo.mp4 import Mp4Writer, VideoInfo, probe_video
from model.longvideo.planner import Segment, SegmentPlan, plan_segments
from model.longvideo.progress import Progress
from model.longvideo.protocol import (
    DrawnPoseFrames,
    PoseFrames,
    SegmentRenderer,
    SplitSegmentRenderer,
    first_frame_condition,
)
from model.longvideo.seeds import segment_seed
from model.longvideo.video import RenderOptions, Resume, VideoResult, output_timing, render_video

__all__ = [
    "DenoisedSegment",
    "DrawnPoseFrames",
    "FinishedSegment",
    "Mp4Writer",
    "PoseFrames",
    "Progress",
    "RenderOptions",
    "Resume",
    "SamplingOptions",
    "Segment",
    "SegmentPlan",
    "SegmentRenderer",
    "SplitSegmentRenderer",
    "VideoInfo",
    "VideoResult",
    "denoise_chain",
    "first_frame_condition",
    "output_timing",
    "plan_segments",
    "probe_video",
    "render_chain",
    "render_video",
    "segment_seed",
]
