"""Worker configuration from the environment (prefix UNIANIMATE_), on top of what the API shares.

The model is chosen explicitly: the released weights (UNIANIMATE_CHECKPOINT_DIR) or, for tests
and demos, the untrained tiny model (UNIANIMATE_MODEL=tiny). A render worker never falls back
to random weights on its own, so a missing checkpoint folder cannot silently produce noise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from service.jobs.queue import RENDER_QUEUE, WEBHOOK_QUEUE
from service.settings import CommonSettings

QUEUES = (RENDER_QUEUE, WEBHOOK_QUEUE)
DTYPE_ALIASES = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float32": "fp32", "float": "fp32"}


class ModelNotConfigured(ValueError):
    """A render worker was started without weights and without asking for the tiny model."""


class WorkerSettings(CommonSettings):
    # the model ----------------------------------------------------------------------------
    model: Literal["tiny", "full"] = Field(
        "full", description="full: the released weights in checkpoint_dir; tiny: untrained random weights")
    checkpoint_dir: Path | None = Field(None, description="folder with the UniAnimate, SD 2.1 and CLIP weights")
    device: str | None = Field(None, pattern=r"^(cpu|cuda(:\d+)?)$",
                               description="cpu, cuda or cuda:N; default: cuda when available")
    dtype: Literal["fp16", "bf16", "fp32"] | None = Field(
        None, description="fp16, bf16 or fp32 (float16, bfloat16, float32 also accepted); default: fp16 on cuda, "
                          "fp32 on cpu")
    cache_dir: Path | None = Field(None, description="keeps converted weights, so later starts load faster")
    cpu_offload: bool = Field(False, description="park the VAE and CLIP on the CPU while the UNet samples; they "
                                                 "visit the GPU to encode and decode (less GPU memory)")
    tiny_seed: int = Field(0, ge=0, description="seed of the tiny model's random weights")
    dwpose_dir: Path | None = Field(
        None, description="folder with yolox_l.onnx and dw-ll_ucoco_384.onnx: extract poses from photos and "
                          "raw driving videos; without it clients must send keypoints or skeleton videos")
    model_load_timeout_s: float = Field(900.0, gt=0, description="how long a worker process may take to load")

    # the render job --------------------------------------------------------------------------
    lease_ttl_s: float = Field(60.0, ge=1.0, description="a job whose worker stopped renewing its lease for "
                                                         "this long is taken up by another worker")
    sweep_interval_s: float | None = Field(None, gt=0, description="how often each worker looks for orphaned "
                                                                   "jobs; default: lease_ttl_s / 2")
    max_attempts: int = Field(3, ge=1, le=50, description="runs of one job before it is failed for good")
    soft_time_limit_s: int = Field(4 * 3600, ge=10, description="a job still running after this fails")
    time_limit_s: int = Field(4 * 3600 + 300, ge=15, description="the worker process is killed after this")
    progress_interval_s: float = Field(0.5, ge=0, description="least time between progress records of a job")
    keep_segments: bool = Field(False, description="keep the segment checkpoints of failed and canceled jobs "
                                                 "too (a succeeded job keeps them: re-renders copy them)")
    storage_patience_s: float = Field(300.0, ge=0, description="how long a storage call that finds object "
                                                               "storage unreachable is retried before the run fails")
    queued_stale_s: float = Field(
        900.0, ge=10, description="a job still queued after this with no message waiting for it in the render "
                                  "queue (a lost message) is sent to the queue again by the sweeper")
    broker_visibility_timeout_s: int | None = Field(
        None, ge=1, description="Redis hands an unacknowledged message out again after this; default "
                                "time_limit_s + 1 h. Set it lower only to test that the lease stops the copy")

    # fair dispatching across API keys (issue 16; service/jobs/fair_queue.py) ---------------------------
    dispatch_interval_s: float = Field(0.5, gt=0, description="how often each render worker's dispatcher "
                                                              "releases waiting jobs to the render queue")
    dispatch_ahead: int = Field(1, ge=1, le=100, description="messages kept waiting in the render queue; "
                                "few keeps the fair order (a released job starts in release order)")
    dispatch_grace_s: float = Field(30.0, ge=1, description="a released job the broker never got (its "
                                    "dispatcher died) is sent again after this")

    # overlapped segment loop (issue 11: model/longvideo/overlap.py) -------------------------------
    overlap_segments: bool = Field(True, description="finish segment k (decode, encode, checkpoint, upload) in "
                                   "a background thread while segment k + 1 denoises; off: strictly serial")

    # GPU speed and memory (issue 11: model/compile.py, model/memory_plan.py, worker/memory_fit.py) ----
    compile: Literal["off", "default", "reduce-overhead"] = Field(
        "off", description="torch.compile the UNet and VAE decoder; reduce-overhead adds CUDA graphs (CUDA only); "
                           "the first segment of each size pays the compilation")
    batch_guidance: Literal["auto", "on", "off"] = Field(
        "auto", description="both halves of classifier-free guidance in one UNet call; auto: on for CUDA, off "
                            "for CPU; the memory planner may still choose two calls when one does not fit")
    gpu_memory_budget_gb: float | None = Field(
        None, gt=0, description="GPU memory a render may plan for; default: the device's total memory")

    # webhooks ----------------------------------------------------------------------------------
    webhook_secret: SecretStr | None = Field(
        None, description="whsec_... key that signs every webhook; only the webhook worker needs it")
    webhook_max_attempts: int = Field(10, ge=1, le=50)
    webhook_backoff_base_s: float = Field(5.0, ge=0)
    webhook_backoff_cap_s: float = Field(1800.0, ge=0)
    webhook_progress_interval_s: float = Field(10.0, ge=0, description="least time between job.progress events")
    webhook_record_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="how long delivery records are kept")
    webhook_relay_after_s: float = Field(
        60.0, ge=1, description="an event whose delivery attempt is this overdue (its message lost: a broker "
                                "error, a webhook worker that died) is enqueued again by the webhook worker")

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype_alias(cls, value: object) -> object:
        return DTYPE_ALIASES.get(value, value) if isinstance(value, str) else value

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from service.webhooks.signing import validate_secret

            validate_secret(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _limits(self) -> WorkerSettings:
        if self.time_limit_s <= self.soft_time_limit_s:
            raise ValueError(f"time_limit_s ({self.time_limit_s}) must exceed soft_time_limit_s "
                             f"({self.soft_time_limit_s}) so a job can fail cleanly before it is killed")
        return self

    @property
    def sweep_every_s(self) -> float:
        return self.sweep_interval_s or self.lease_ttl_s / 2

    @property
    def visibility_timeout_s(self) -> int:
        """Redis redelivers an unacknowledged message after this; it must outlast the longest job,
        or a healthy job would be handed to a second worker while it still renders."""
        return self.broker_visibility_timeout_s or self.time_limit_s + 3600

    @property
    def broker_transport_options(self) -> dict[str, int]:
        """Kombu looks for messages past their visibility timeout every 10 s x 10 calls by default;
        a short timeout is only meaningful if it looks as often."""
        options = {"visibility_timeout": self.visibility_timeout_s}
        if self.broker_visibility_timeout_s is not None:
            options |= {"unacked_restore_interval": max(1, self.visibility_timeout_s // 2),
                        "unacked_restore_throttle": 1}
        return options

    def require_model(self) -> None:
        """Raise ModelNotConfigured unless this worker knows which weights to render with."""
        if self.model == "tiny":
            return
        if self.checkpoint_dir is None:
            raise ModelNotConfigured(
                "no model configured: set UNIANIMATE_CHECKPOINT_DIR to the folder with the released "
                "UniAnimate weights, or UNIANIMATE_MODEL=tiny for the untrained test model")
        if not self.checkpoint_dir.is_dir():
            raise ModelNotConfigured(f"UNIANIMATE_CHECKPOINT_DIR={self.checkpoint_dir} is not a folder")
