"""Peak GPU memory of one segment, predicted from the sizes of the tensors involved (no torch needed).

A render has three phases and the peak is the largest of them:

1. reference: CLIP embeds the reference and the VAE encodes it (small next to the others).
2. sampling: the UNet runs 31 times on [rows, F + 1 frames] where rows = 2 with batched guidance.
   Its memory is the weights plus, during one forward, the condition-encoder activations at full
   pixel size (only the conditional row runs them), then the skip connections of the encoder
   blocks plus the working set of the widest layer: the feed-forward of a transformer at latent
   size, which runs over FEED_FORWARD_CHUNK_TOKENS tokens at a time (model/config.py), or, once
   that chunking has shrunk it, the temporal attention's q, k, v and output.
3. decode: the VAE decodes `decode_chunk` frames at a time; its full-resolution layers dominate.

With `cpu_offload` CLIP and the VAE live on the CPU and visit the GPU only in their own phase; without
it they stay resident through sampling.

Every empirical number is in `Calibration` (one place): the counts of full-size tensors alive at a
layer's peak. They were fitted to allocator-independent live-tensor measurements of the tiny model
on the CPU (tests/model/test_memory_plan.py); refit them on a GPU with bench/gpu_check.sh, which
prints measured and predicted peaks side by side. This module imports no torch, so the API can ask
it whether a request fits a worker class.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from model.config import FEED_FORWARD_CHUNK_TOKENS, UNetConfig

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
GIB = 2**30


@dataclass(frozen=True)
class Calibration:
    """Empirical factors: full-size tensors alive at each phase's peak (see the module docstring)."""

    # The UNet's peak is the gated feed-forward of a transformer at latent size: the input
    # projection (both halves), GELU of the gate and the product, in tensors of [tokens, 4 * inner]
    # (tokens = rows * (F+1) * h * w; inner = the widest transformer at that size, the first
    # temporal one: num_heads * head_dim) ...
    feed_forward_tensors: float = 4.0
    # Feed-forward runs over at most FEED_FORWARD_CHUNK_TOKENS tokens at a time, so past that many
    # tokens the widest layer is the temporal attention's working set instead: q, k, v and its
    # output in tensors of [tokens, inner] (fitted: 4.19).
    attention_tensors: float = 4.2
    # ... plus the residual stream around it, in tensors of [tokens, dim].
    stream_tensors: float = 4.0
    # Condition encoders, in tensors of [F, 4 * concat_dim, H, W] (the first conv and its SiLU).
    encoder_working_tensors: float = 2.0
    # VAE decoder per frame, in tensors of [channels arriving at full size, H, W] at `decode_bytes`.
    decode_working_tensors: float = 3.0
    # Decoder activation bytes: float32 on a CPU; under CUDA autocast convolutions give half
    # precision but GroupNorm gives float32, so the mix is set to 3 there (calibrate).
    decode_bytes: float = 4.0
    # CUDA context, cuBLAS/cuDNN workspaces and allocator fragmentation, added once.
    overhead_bytes: int = 0


# The CUDA runtime's own share and fragmentation; calibrate with bench/gpu_check.sh.
CUDA_CALIBRATION = Calibration(decode_bytes=3.0, overhead_bytes=int(1.0 * GIB))
CPU_CALIBRATION = Calibration()


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts and the few widths the planner needs, as plain numbers."""

    unet: UNetConfig = field(default_factory=UNetConfig.released)
    unet_parameters: int = 1_416_564_300  # the released checkpoint (README)
    unet_buffer_bytes: int = 81 * 1024 * 2  # zero_y [1, 77 + 4 spare, 1024] in half precision, rounded up
    vae_parameters: int = 83_653_863  # SD 2.1 AutoencoderKL, encoder and decoder, float32
    clip_parameters: int = 632_076_800  # OpenCLIP ViT-H/14 vision tower, float32
    vae_full_size_channels: int = 256  # channels entering the decoder's full-resolution level
    latent_scale: int = 8


@dataclass(frozen=True)
class Plan:
    """A choice of settings and the peak it is predicted to need."""

    decode_chunk: int
    cpu_offload: bool
    batch_guidance: bool
    peak_bytes: int


def phase_bytes(
    height: int,
    width: int,
    frames: int,
    *,
    dtype: str = "fp16",
    batch_guidance: bool = True,
    cpu_offload: bool = False,
    decode_chunk: int = 2,
    sizes: ModelSizes = ModelSizes(),
    calibration: Calibration = CUDA_CALIBRATION,
) -> dict[str, int]:
    """Predicted peak bytes of each phase ("reference", "sampling", "decode"), overhead included."""
    _check(height, width, frames, dtype, decode_chunk, sizes)
    unet_weights = sizes.unet_parameters * DTYPE_BYTES[dtype] + sizes.unet_buffer_bytes
    vae_weights, clip_weights = 4 * sizes.vae_parameters, 4 * sizes.clip_parameters
    resident_aux = 0 if cpu_offload else vae_weights + clip_weights
    base = unet_weights + calibration.overhead_bytes
    inputs = segment_input_bytes(height, width, frames, dtype, sizes)
    reference = base + vae_weights + clip_weights + 8 * 4 * height * width * 3  # a few float32 images
    sampling = base + resident_aux + inputs + unet_activation_bytes(
        height, width, frames, dtype, batch_guidance, sizes, calibration)
    decode_frames = min(decode_chunk, frames)
    decode = base + (clip_weights if not cpu_offload else 0) + vae_weights + inputs + int(
        decode_frames * calibration.decode_working_tensors * calibration.decode_bytes
        * sizes.vae_full_size_channels * height * width)
    return {"reference": reference, "sampling": sampling, "decode": decode}


def estimate_peak_bytes(height: int, width: int, frames: int, **options) -> int:
    """Predicted peak GPU memory of one segment (bytes); options as for `phase_bytes`.

    Flat in the video's length: segments are rendered one after another with the same buffers.
    """
    return max(phase_bytes(height, width, frames, **options).values())


def segment_input_bytes(height: int, width: int, frames: int, dtype: str, sizes: ModelSizes = ModelSizes()) -> int:
    """What stays on the device for a whole segment: pose video and first-frame condition in the
    UNet dtype, the latents the float32 sampler keeps (x, v, x0 and the guidance halves)."""
    pixels = 3 * height * width * DTYPE_BYTES[dtype]
    latent = 4 * frames * (height // sizes.latent_scale) * (width // sizes.latent_scale) * 4
    return (2 * frames + 2) * pixels + 8 * latent


def unet_activation_bytes(
    height: int, width: int, frames: int, dtype: str, batch_guidance: bool,
    sizes: ModelSizes = ModelSizes(), calibration: Calibration = CUDA_CALIBRATION,
) -> int:
    """Largest activation footprint of one UNet forward: the encoder phase or the backbone phase."""
    config, itemsize = sizes.unet, DTYPE_BYTES[dtype]
    # the encoders run on the conditional row only, batched guidance or not
    encoders = calibration.encoder_working_tensors * frames * 4 * config.concat_dim * height * width * itemsize
    return int(max(encoders, backbone_activation_bytes(height, width, frames, dtype, batch_guidance, sizes,
                                                       calibration)))


def backbone_activation_bytes(
    height: int, width: int, frames: int, dtype: str, batch_guidance: bool,
    sizes: ModelSizes = ModelSizes(), calibration: Calibration = CUDA_CALIBRATION,
    ff_chunk_tokens: int = FEED_FORWARD_CHUNK_TOKENS,
) -> int:
    """Peak activations of `UniAnimateUNet.backbone`: skips, the widest layer (the feed-forward, or
    the temporal attention once the feed-forward runs in chunks), the context."""
    config = sizes.unet
    rows = 2 if batch_guidance else 1
    h, w = height // sizes.latent_scale, width // sizes.latent_scale
    folded = rows * (frames + 1)  # frames are folded into the batch, the reference slot included
    tokens = folded * h * w
    skips = sum(channels * (h // scale) * (w // scale) for channels, scale in skip_shapes(config)) * folded
    width0 = config.dim * config.dim_mult[0]
    inner = max(width0, config.num_heads * config.head_dim if config.temporal_attention else 0)
    chunk = min(tokens, ff_chunk_tokens or tokens)
    # a chunked feed-forward writes its chunks into one [tokens, inner] output
    feed_forward = calibration.feed_forward_tensors * 4 * inner * chunk + (inner * tokens if chunk < tokens else 0)
    attention = calibration.attention_tensors * inner * tokens
    working = max(feed_forward, attention) + calibration.stream_tensors * width0 * tokens
    context = folded * (77 + config.num_tokens) * config.context_dim  # the context repeated per frame
    return int((skips + working + context) * DTYPE_BYTES[dtype])


def skip_shapes(config: UNetConfig) -> list[tuple[int, int]]:
    """(channels, downsampling) of every encoder-block output the decoder keeps for its skips."""
    shapes, scale = [(config.dim, 1)], 1
    for level, mult in enumerate(config.dim_mult):
        shapes += [(config.dim * mult, scale)] * config.num_res_blocks
        if level < len(config.dim_mult) - 1:
            scale *= 2
            shapes.append((config.dim * mult, scale))
    return shapes


def choose_plan(
    budget_bytes: int,
    height: int,
    width: int,
    frames: int,
    *,
    dtype: str = "fp16",
    prefer_batch_guidance: bool = True,
    sizes: ModelSizes = ModelSizes(),
    calibration: Calibration = CUDA_CALIBRATION,
) -> Plan | None:
    """The fastest settings whose predicted peak fits `budget_bytes`, or None if nothing fits.

    Preference order, fastest first: VAE and CLIP resident before offloaded, batched guidance
    before two calls (when preferred), larger decode chunks before smaller ones.
    """
    guidance = (True, False) if prefer_batch_guidance else (False,)
    for cpu_offload in (False, True):
        for batch_guidance in guidance:
            for chunk in (8, 4, 2, 1):
                peak = estimate_peak_bytes(height, width, frames, dtype=dtype, batch_guidance=batch_guidance,
                                           cpu_offload=cpu_offload, decode_chunk=chunk, sizes=sizes,
                                           calibration=calibration)
                if peak <= budget_bytes:
                    return Plan(chunk, cpu_offload, batch_guidance, peak)
    return None


def with_unet(sizes: ModelSizes, config: UNetConfig, parameters: int) -> ModelSizes:
    """`sizes` for another UNet (e.g. a Mamba checkpoint, whose parameter count differs)."""
    return replace(sizes, unet=config, unet_parameters=parameters)


def _check(height: int, width: int, frames: int, dtype: str, decode_chunk: int, sizes: ModelSizes) -> None:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    if height <= 0 or width <= 0 or height % sizes.latent_scale or width % sizes.latent_scale:
        raise ValueError(f"height and width must be positive multiples of {sizes.latent_scale}, got {height}x{width}")
    if frames < 1 or decode_chunk < 1:
        raise ValueError(f"frames and decode_chunk must be at least 1, got {frames} and {decode_chunk}")
