"""The preflight's memory figures are the worker's own plan: what it says fits, a worker takes."""
from __future__ import annotations

from model.longvideo.planner import plan_segments
from model.memory_plan import GIB
from service.jobs.params import RenderParams
from service.preflight.estimate import WORKER_CLASSES, estimate
from worker.memory_fit import MemoryFit


class Knobs:
    vae_chunk_size, cpu_offload, batch_guidance = 2, False, True


def test_each_class_gets_the_settings_its_worker_would_choose():
    params = RenderParams(segment_frames=32, steps=30)
    entries = estimate(plan_segments(900, 32), params, tuple(WORKER_CLASSES), height=768, width=512)
    for entry in entries:
        knobs = Knobs()
        plan = MemoryFit(int(WORKER_CLASSES[entry["worker_class"]].memory_gib * GIB), "fp16").apply(
            knobs, 768, 512, 32)
        assert entry["fits"] and entry["peak_gpu_memory_gib"] == round(plan.peak_bytes / GIB, 2)
        assert entry["memory_settings"] == {"decode_chunk": knobs.vae_chunk_size, "cpu_offload": knobs.cpu_offload,
                                            "batch_guidance": knobs.batch_guidance}


def test_a_segment_no_class_can_hold_says_so_and_by_how_much():
    params = RenderParams(segment_frames=128, steps=30, height=2048, width=2048)
    entries = estimate(plan_segments(128, 128), params, ("nvidia-l4-24gb",), height=2048, width=2048)
    assert entries[0]["fits"] is False and entries[0]["memory_settings"] is None
    assert entries[0]["peak_gpu_memory_gib"] > 24


def test_an_unknown_worker_class_stops_the_api_at_start_naming_the_known_ones(settings):
    import pytest

    from service.api.app import create_app
    from service.settings import ApiSettings

    with pytest.raises(ValueError, match="nvidia-h300.*known: nvidia-h200-141gb"):
        create_app(ApiSettings(**{**dict(settings), "worker_classes": "nvidia-h100-80gb,nvidia-h300"}))
