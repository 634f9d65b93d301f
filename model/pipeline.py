"""One UniAnimate segment: reference image + poses -> video frames.

The pipeline ties the pieces together the way the original inference does:

1. The reference image is embedded by CLIP (one token of context for the UNet) and encoded by the
   VAE into the reference latent (`randomref`); the reference pose is drawn into the same frame size.
2. The starting noise is the noise prior: the reference latent diffused to `noise_prior_t`, plus a
   little offset noise, so the video starts close to the person's appearance.
3. DDIM with classifier-free guidance denoises it; the conditional branch sees the CLIP embedding, the
   reference latent and pose, the target poses and (optionally) the first-frame condition.
4. The VAE decodes the latents a few frames at a time.

Precision follows the original: only the UNet runs in half precision. CLIP, the VAE encode of the
reference and the DDIM arithmetic stay in float32 (near t = 0 the step coefficients are smaller than
half precision resolves), and on a GPU the VAE decodes under autocast, as the original's does.

It implements `model.longvideo.protocol.SegmentRenderer`, which the long-video renderer chains.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.architecture import Architecture
from model.checkpoints import CheckpointError, ModelFiles, load_strict, read_state_dict, short_hash
from model.clip import (
    build_image_encoder,
    build_text_encoder,
    empty_text_context,
    encode_image,
    load_image_encoder,
    load_zero_y,
    preprocess_reference,
)
from model.compile import compile_unet, compile_vae_decoder
from model.conditions import CHAINED, ConditionSet
from model.config import UNetConfig
from model.noise import OFFSET_NOISE, START_NOISE, NoiseSource, SeededNoise
from model.sampler import ddim_sample, noise_prior
from model.schedule import NoiseSchedule
from model.unet.detect import temporal_kind_of
from model.unet.unet import UniAnimateUNet
from model.vae import SD21_EMBED_DIM, build_vae, decode_latent_chunks, encode_to_latent, load_vae
from model.window import window_ddim_sample

logger = logging.getLogger(__name__)

UNTRAINED_LABEL = "untrained tiny (random weights)"
OFFSET_NOISE_STRENGTH = 0.1  # `noise_strength` of the original's Diffusion config

StepCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class Reference:
    """Everything about the reference that every segment of a job reuses."""

    image_embedding: torch.Tensor  # [1, 1, 1024] CLIP image embedding (the UNet's `image`)
    latent: torch.Tensor  # [1, 4, 1, h, w] float32 scaled reference latent (the UNet's `randomref`)
    pose: torch.Tensor  # [1, 3, 1, H, W] reference pose pixels in [0, 1]
    height: int
    width: int
    conditions: ConditionSet = CHAINED  # what the conditional branch sees (model.conditions)
    pixels: torch.Tensor | None = None  # [1, 3, 1, H, W] the resized reference in [0, 1] (`local_image`)


class UniAnimatePipeline:
    """Renders segments with one set of weights on one device; build it once per process."""

    def __init__(
        self,
        unet: UniAnimateUNet,
        vae: torch.nn.Module,
        image_encoder: torch.nn.Module,
        *,
        architecture: Architecture,
        label: str,
        untrained: bool,
        device: torch.device,
        dtype: torch.dtype,
        vae_chunk_size: int = 2,
        cpu_offload: bool = False,
        batch_guidance: bool | None = None,
    ) -> None:
        self.unet = unet
        self.vae = vae
        self.image_encoder = image_encoder
        self.architecture = architecture
        self.schedule = NoiseSchedule.linear_sd()
        self.label = label
        self.untrained = untrained
        self.device = device
        self.dtype = dtype
        self.vae_chunk_size = vae_chunk_size
        self._vae_lock = threading.Lock()
        self.cpu_offload = cpu_offload
        # Both halves of classifier-free guidance in one UNet call: same result, one launch of twice
        # the rows, which keeps a GPU busier. On a CPU two calls are as fast and need less memory.
        # None (the default) picks by device.
        self.batch_guidance = default_batch_guidance(device) if batch_guidance is None else batch_guidance
        self.compile_mode = "off"
        if untrained:
            logger.warning("model weights: %s -- output is not a real animation", label)

    # ---- construction --------------------------------------------------------------------------

    def compile(self, mode: str) -> None:
        """Compiles the UNet backbone and the VAE decoder (`model.compile`); "off" does nothing.

        Call once after construction; the first segment of each shape then pays the compilation.
        """
        compile_unet(self.unet, mode)
        compile_vae_decoder(self.vae, mode)
        self.compile_mode = mode

    @classmethod
    def tiny(cls, seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
             temporal: str = "transformer", cpu_offload: bool = False) -> UniAnimatePipeline:
        """The same architecture at a small width with seeded random weights: runs anywhere, untrained."""
        return cls.random(Architecture.tiny().with_temporal(temporal), seed=seed, device=device, dtype=dtype,
                          cpu_offload=cpu_offload)

    @classmethod
    def random(cls, arch: Architecture, seed: int = 0, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, cpu_offload: bool = False,
               label: str = UNTRAINED_LABEL) -> UniAnimatePipeline:
        """Any architecture with seeded random weights (untrained): the tiny model, or the released
        sizes for speed and memory benchmarks without the published files."""
        device = torch.device(device)
        aux_device = _auxiliary_device(device, cpu_offload)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet = UniAnimateUNet(arch.unet)
        unet = unet.to(device=device, dtype=dtype).eval().requires_grad_(False)
        unet.set_zero_y(empty_text_context(build_text_encoder(spec=arch.clip, seed=seed + 1)))
        vae = build_vae(ddconfig=arch.vae_ddconfig, device=aux_device, dtype=AUXILIARY_DTYPE, seed=seed + 2)
        image_encoder = build_image_encoder(spec=arch.clip, device=aux_device, dtype=AUXILIARY_DTYPE,
                                            seed=seed + 3)
        return cls(unet, vae, image_encoder, architecture=arch, label=label, untrained=True,
                   device=device, dtype=dtype, cpu_offload=cpu_offload)

    @classmethod
    def from_checkpoint_dir(
        cls,
        checkpoint_dir: str | Path,
        device: str | torch.device = "cuda",
        dtype: torch.dtype = torch.float16,
        cache_dir: str | Path | None = None,
        architecture: Architecture | None = None,
        cpu_offload: bool = False,
    ) -> UniAnimatePipeline:
        """The released model from a directory holding the published files (see `ModelFiles`).

        `cache_dir` keeps converted weights (safetensors) and zero_y so that later starts read a few
        memory-mapped files instead of the multi-gigabyte pickles. `architecture` defaults to the
        released one; tests pass the tiny one with files written in the released formats.
        The temporal module (transformer, or Mamba for a user's own checkpoint) is read off the
        UNet file's keys, so either kind loads with no setting. `cpu_offload` parks the VAE and CLIP on the CPU while the UNet samples and brings them to
        `device` only to encode and decode (the original's `CPU_CLIP_VAE`, about 12 GB of GPU memory
        at 768x512): a little slower, less GPU memory.
        """
        device = torch.device(device)
        aux_device = _auxiliary_device(device, cpu_offload)
        files = ModelFiles.discover(checkpoint_dir)
        unet_weights = read_state_dict(files.unet)
        arch = (architecture or Architecture.released()).with_temporal(_temporal_kind(files.unet, unet_weights))
        unet = build_unet(unet_weights, arch.unet, device, dtype)
        unet.set_zero_y(load_zero_y(files.open_clip, cache_dir, spec=arch.clip))
        vae = load_vae(files.sd21, cache_dir, device=aux_device, dtype=AUXILIARY_DTYPE,
                       ddconfig=arch.vae_ddconfig, embed_dim=SD21_EMBED_DIM)
        image_encoder = load_image_encoder(files.open_clip, cache_dir, spec=arch.clip, device=aux_device,
                                           dtype=AUXILIARY_DTYPE)
        label = f"{files.unet.stem} sha256:{short_hash(files.unet, cache_dir)}"
        return cls(unet, vae, image_encoder, architecture=arch, label=label, untrained=False,
                   device=device, dtype=dtype, cpu_offload=cpu_offload)

    # ---- the reference --------------------------------------------------------------------------

    @torch.no_grad()
    def prepare_reference(self, image: np.ndarray, ref_pose: np.ndarray, height: int, width: int,
                          seed: int = 0, *, conditions: ConditionSet = CHAINED,
                          noise: NoiseSource | None = None) -> Reference:
        """Embeds the reference image (CLIP), encodes it (VAE) and prepares the reference pose.

        `image` and `ref_pose` are uint8 RGB of any size; both are resized to `height` x `width` as
        the original resizes its inputs. The VAE posterior is sampled, as in the original, from
        `noise` (default: a generator seeded with `seed`) so that a job is reproducible.
        """
        self.check_frame_size(height, width)
        pil = Image.fromarray(_check_rgb(image, "reference image"))
        with self._in_use(self.image_encoder):
            embedding = encode_image(self.image_encoder, preprocess_reference(pil)).unsqueeze(1)
        unit = to_unit_tensor(resize_rgb(image, height, width))
        with self._in_use(self.vae):  # the original's (x - mean) / std with mean = std = 0.5: [-1, 1]
            latent = encode_to_latent(self.vae, unit.sub(0.5).div(0.5).unsqueeze(0), noise=noise or SeededNoise(seed))
        pose = to_unit_tensor(resize_rgb(_check_rgb(ref_pose, "reference pose"), height, width))
        return Reference(
            image_embedding=embedding.to(self.device, self.dtype),
            latent=latent.unsqueeze(2).to(self.device, torch.float32),
            pose=pose[None, :, None].to(self.device, self.dtype),
            height=height,
            width=width,
            conditions=conditions,
            pixels=unit[None, :, None].to(self.device, self.dtype),
        )

    # ---- one segment ----------------------------------------------------------------------------

    @torch.no_grad()
    def render_segment(
        self,
        ref: Reference,
        poses: np.ndarray,
        first_frame: np.ndarray | None,
        *,
        seed: int,
        steps: int,
        guidance_scale: float,
        noise_prior_t: int,
        progress: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
        noise: NoiseSource | None = None,
    ) -> np.ndarray:
        """Poses `[F, H, W, 3]` uint8 RGB -> frames `[F, H, W, 3]` uint8 RGB.

        `first_frame` (uint8 RGB) is the first-frame condition (`local_image`) of the `chained`
        conditions: the frame the segment should start from, e.g. the last frame of the previous
        segment (the original's condition sets ignore it). All noise comes from `noise` (default: a
        generator seeded with `seed`), so the same arguments give the same frames.
        """
        latents = self.denoise_segment(ref, poses, first_frame, seed=seed, steps=steps, guidance_scale=guidance_scale,
                                       noise_prior_t=noise_prior_t, progress=progress, should_cancel=should_cancel,
                                       noise=noise)
        return self.decode_segment(latents, slice(None))

    @torch.no_grad()
    def denoise_segment(
        self,
        ref: Reference,
        poses: np.ndarray,
        first_frame: np.ndarray | None,
        *,
        seed: int,
        steps: int,
        guidance_scale: float,
        noise_prior_t: int,
        progress: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
        noise: NoiseSource | None = None,
    ) -> torch.Tensor:
        """`render_segment` up to the denoised latents `[1, 4, F, h, w]` (float32, on the device)."""
        pose_video = self._pose_video(ref, poses)
        cond = self._conditions(ref, pose_video, first_frame)
        x_T = self._initial_noise(ref, pose_video.shape[2] - 1, noise or SeededNoise(seed), noise_prior_t)
        latents = ddim_sample(
            self._velocity_model, x_T, self.schedule, num_steps=steps, guidance_scale=guidance_scale,
            cond_kwargs=cond, uncond_kwargs={}, batch_cond_uncond=self.batch_guidance,
            progress=_one_based(progress), should_cancel=should_cancel,
        )
        return latents

    @torch.no_grad()  # no_grad is per thread, and the chained renderer decodes in a background thread
    def decode_segment(self, latents: torch.Tensor, frames: slice) -> np.ndarray:
        """Frames `frames` of `denoise_segment`'s latents as uint8 RGB `[N, H, W, 3]`. The VAE decodes
        each frame on its own, so frames decoded in separate calls equal one call's."""
        with self._vae_lock:  # with CPU offload, two decodes at once would move the VAE under each other
            return np.concatenate(list(self._decode(latents[:, :, frames])))

    @torch.no_grad()
    def render_window(
        self,
        ref: Reference,
        poses,
        *,
        seed: int,
        steps: int,
        guidance_scale: float,
        noise_prior_t: int,
        context_size: int,
        context_overlap: int,
        context_batch_size: int,
        progress: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> Iterator[np.ndarray]:
        """The original's sliding-window sampler over the whole pose sequence; yields frames in order.

        Unlike chaining, the latents of the whole clip are denoised together, so memory grows with
        the clip's length; this mode exists to reproduce the original's long-video results.
        """
        pose_video = self._pose_video(ref, poses[0:len(poses)])
        cond = self._conditions(ref, pose_video, None)
        x_T = self._initial_noise(ref, pose_video.shape[2] - 1, SeededNoise(seed), noise_prior_t)
        latents = window_ddim_sample(
            self._velocity_model, x_T, self.schedule, num_steps=steps, guidance_scale=guidance_scale,
            cond_kwargs=cond, uncond_kwargs={}, context_size=context_size, context_overlap=context_overlap,
            context_batch_size=context_batch_size, batch_cond_uncond=self.batch_guidance,
            progress=_one_based(progress), should_cancel=should_cancel,
        )
        for chunk in self._decode(latents):
            yield from chunk

    # ---- pieces ---------------------------------------------------------------------------------

    def check_frame_size(self, height: int, width: int) -> None:
        multiple = self.architecture.size_multiple
        if height <= 0 or width <= 0 or height % multiple or width % multiple:
            raise ValueError(f"height and width must be positive multiples of {multiple}, got {height}x{width}")

    def _velocity_model(self, x_t: torch.Tensor, t: torch.Tensor, **conditions) -> torch.Tensor:
        """The UNet in its own dtype, seen by the float32 sampler: v comes back in float32."""
        return self.unet(x_t, t, **conditions).float()

    @contextlib.contextmanager
    def _in_use(self, module: torch.nn.Module) -> Iterator[None]:
        """With CPU offload, `module` (the VAE or CLIP) visits the UNet's device while it works."""
        if not self.cpu_offload or self.device.type == "cpu":
            yield
            return
        module.to(self.device)
        try:
            yield
        finally:
            module.to("cpu")
            if self.device.type == "cuda":
                with torch.cuda.device(self.device):  # the model's GPU, not whichever is current
                    torch.cuda.empty_cache()

    def _pose_video(self, ref: Reference, poses: np.ndarray) -> torch.Tensor:
        """[1, 3, F+1, H, W] in [0, 1]: the reference pose followed by the target poses."""
        if poses.ndim != 4 or poses.shape[1:] != (ref.height, ref.width, 3) or poses.dtype != np.uint8:
            raise ValueError(
                f"poses must be uint8 [F, {ref.height}, {ref.width}, 3] (the reference size), "
                f"got {poses.dtype} {list(poses.shape)}"
            )
        if len(poses) == 0:
            raise ValueError("a segment needs at least one pose frame")
        targets = torch.from_numpy(poses).permute(3, 0, 1, 2).unsqueeze(0)  # [1, 3, F, H, W]
        targets = targets.to(self.device, self.dtype).div(255)
        return torch.cat([ref.pose, targets], dim=2)

    def _conditions(self, ref: Reference, pose_video: torch.Tensor, first_frame: np.ndarray | None) -> dict:
        """Keyword arguments of the conditional branch (the unconditional one passes none)."""
        num_frames = pose_video.shape[2] - 1
        available = {
            "image": ref.image_embedding,
            "dwpose": pose_video,
            "randomref": ref.latent.to(self.dtype).expand(-1, -1, num_frames, -1, -1),
        }
        # The original feeds `local_image` as [0, 1] pixels repeated over every frame.
        if ref.conditions.local_image == "reference":
            available["local_image"] = ref.pixels.expand(-1, -1, num_frames, -1, -1)
        cond = {key: available[key] for key in ref.conditions.keys}
        if ref.conditions.uses_first_frame and first_frame is not None:
            frame = to_unit_tensor(_check_frame(first_frame, ref.height, ref.width))
            cond["local_image"] = frame[None, :, None].to(self.device, self.dtype).expand(-1, -1, num_frames, -1, -1)
        return cond

    def _initial_noise(self, ref: Reference, num_frames: int, noise: NoiseSource, noise_prior_t: int) -> torch.Tensor:
        """The noise prior, in the order of the entrance the condition set comes from (`model.conditions`).

        Noise is drawn on the CPU in float32 so that a seed gives the same start on any device; the
        latent stays in float32 through the sampler whatever the UNet's dtype.
        """
        scale = self.architecture.latent_scale
        shape = (1, 4, num_frames, ref.height // scale, ref.width // scale)
        start = noise.randn(shape, START_NOISE)
        offset = noise.randn(shape[:3] + (1, 1), OFFSET_NOISE)
        x_T = noise_prior(start, offset, ref.latent.cpu(), self.schedule, noise_prior_t,
                          order=ref.conditions.noise_order, strength=OFFSET_NOISE_STRENGTH)
        return x_T.to(self.device)

    def _decode(self, latents: torch.Tensor) -> Iterator[np.ndarray]:
        """Latents [1, 4, F, h, w] -> uint8 RGB frames, `vae_chunk_size` frames at a time."""
        frames = latents[0].transpose(0, 1)  # [F, 4, h, w]
        with self._in_use(self.vae):
            chunks = decode_latent_chunks(self.vae, frames, self.vae_chunk_size)
            while True:
                # autocast is thread-wide state: entered around each chunk's decode, never held across a `yield`
                with self._decode_precision():
                    images = next(chunks, None)
                if images is None:
                    return
                yield to_uint8_frames(images)

    def _decode_precision(self) -> contextlib.AbstractContextManager:
        """The original decodes inside its sampling autocast: half-precision convolutions on a GPU."""
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return contextlib.nullcontext()


# CLIP and the VAE are float32, as in the original (it converts only the UNet to half precision).
AUXILIARY_DTYPE = torch.float32
# The UNet dtypes by the names the CLI, the worker settings and the benchmarks use.
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def default_batch_guidance(device: torch.device) -> bool:
    """Batched guidance on CUDA, two UNet calls elsewhere (the faster choice on each)."""
    return torch.device(device).type == "cuda"


def _auxiliary_device(device: torch.device, cpu_offload: bool) -> torch.device:
    """Where the VAE and CLIP live between uses: with the UNet, or parked on the CPU when offloaded."""
    return torch.device("cpu") if cpu_offload else device


def _temporal_kind(path: Path, state_dict: dict) -> str:
    """"transformer" (the released file) or "mamba" (a user's checkpoint), told by the weights' keys."""
    try:
        return temporal_kind_of(state_dict)
    except ValueError as exc:
        raise CheckpointError(f"{path} is not a UniAnimate UNet checkpoint: {exc}") from exc


def build_unet(state_dict: dict, config: UNetConfig, device: torch.device, dtype: torch.dtype) -> UniAnimateUNet:
    """The UNet with checkpoint weights, built on the meta device so it is allocated once, in `dtype`.

    Each tensor is cast to the dtype the model holds it in after `.to(dtype)`, not blindly to `dtype`:
    a Mamba UNet keeps A_log, D and the step-size bias in float32 under half precision, and casting
    them to fp16 first would round them before they are upcast again (they must load exact).
    """
    with torch.device("meta"):
        unet = UniAnimateUNet(config).to(dtype)
    held = {k: v.dtype for k, v in unet.state_dict().items()}
    weights = {k: v.to(device=device, dtype=held.get(k, dtype) if v.is_floating_point() else v.dtype)
               for k, v in state_dict.items()}
    load_strict(unet, weights, "UniAnimate UNet weights")
    return unet.eval().requires_grad_(False)


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL bilinear resize of the whole frame, as the original's `Resize` transform."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def to_uint8_frames(images: torch.Tensor) -> np.ndarray:
    """Decoded frames [N, 3, H, W] (nominally [-1, 1]) -> uint8 RGB [N, H, W, 3], as the original saves them:
    x * 0.5 + 0.5, clamped to [0, 1], times 255, truncated (not rounded; see docs/sampler.md)."""
    pixels = images.float().mul(0.5).add(0.5).clamp(0, 1).mul(255)
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_unit_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> float32 [3, H, W] in [0, 1] (the original's `ToTensor`).

    `torch.tensor` copies, so read-only arrays (decoded images, `np.asarray` of PIL) are fine.
    """
    return torch.tensor(image).permute(2, 0, 1).float().div(255)


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be a uint8 RGB array [H, W, 3], got {image.dtype} {list(image.shape)}")
    return image


def _check_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    _check_rgb(frame, "first frame")
    if frame.shape[:2] != (height, width):
        raise ValueError(f"first frame must be {height}x{width} (the output size), got {frame.shape[0]}x{frame.shape[1]}")
    return frame


def _one_based(progress: StepCallback | None) -> StepCallback | None:
    """The sampler counts steps from 0; callers of a renderer count finished steps from 1."""
    if progress is None:
        return None
    return lambda index, total: progress(index + 1, total)
