"""The whole pipeline on CUDA: reference -> two chained segments -> MP4, in fp16 and bf16, with and
without CPU offload, eager and with the compiled UNet; the result must match the CPU's closely."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.architecture import Architecture
from model.longvideo.chain import SamplingOptions
from model.longvideo.mp4 import probe_video
from model.longvideo.video import RenderOptions, render_video
from model.pipeline import DTYPES, UniAnimatePipeline

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

SIZE, FRAMES, SEGMENT_FRAMES = 64, 5, 3  # two chained segments (3 frames, then 2 new after the shared one)
SAMPLING = SamplingOptions(seed=7, steps=3)


def job() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
            rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8))


def render(tmp_path, device: str, dtype: str, cpu_offload: bool = False, compile_mode: str = "off"):
    pipeline = UniAnimatePipeline.random(Architecture.tiny(), seed=0, device=device, dtype=DTYPES[dtype],
                                         cpu_offload=cpu_offload)
    pipeline.compile(compile_mode)
    image, ref_pose, poses = job()
    options = RenderOptions(height=SIZE, width=SIZE, sampling=SAMPLING, segment_frames=SEGMENT_FRAMES, crf=0)
    out = tmp_path / f"{device}-{dtype}-{cpu_offload}-{compile_mode}.mp4"
    result = render_video(pipeline, image, ref_pose, poses, out, fps=15, options=options)
    info = probe_video(result.path)
    assert (result.frames, info.frames) == (FRAMES, FRAMES)
    return pipeline, out


def frames_of(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.int16)


@pytest.fixture(scope="module")
def cpu_frames(tmp_path_factory):
    return frames_of(render(tmp_path_factory.mktemp("cpu"), "cpu", "fp32")[1])


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("cpu_offload", [False, True])
def test_chained_video_on_cuda_matches_the_cpu(tmp_path, cpu_frames, dtype, cpu_offload):
    pipeline, out = render(tmp_path, "cuda", dtype, cpu_offload)
    assert pipeline.batch_guidance  # the CUDA default
    frames = frames_of(out)
    assert np.abs(frames - cpu_frames).mean() < (4 if dtype == "fp16" else 8)
    if cpu_offload:
        assert next(pipeline.vae.parameters()).device.type == "cpu"


def test_compiled_unet_renders_what_eager_renders(tmp_path):
    _, eager = render(tmp_path, "cuda", "fp16")
    pipeline, compiled = render(tmp_path, "cuda", "fp16", compile_mode="reduce-overhead")
    assert pipeline.compile_mode == "reduce-overhead"
    assert np.abs(frames_of(compiled) - frames_of(eager)).mean() < 2


def test_empty_cache_and_peak_memory_follow_the_models_device(tmp_path):
    device = torch.device("cuda", torch.cuda.device_count() - 1)  # the last GPU: not the current one if several
    torch.cuda.reset_peak_memory_stats(device)
    render(tmp_path, str(device), "fp16", cpu_offload=True)
    assert torch.cuda.max_memory_allocated(device) > 0
