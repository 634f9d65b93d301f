"""UniAnimate's video UNet (`UNetSD_UniAnimate` of ali-vilab/UniAnimate), for inference.

Data flow of one call, for a latent video x [B, 4, F, h, w]:

1. Conditions become features on the latent grid: the driving poses and the first-frame image give
   `concat_dim` channels per frame; the reference latent plus the reference pose give
   `concat_dim + 4` channels for one extra frame.
2. The UNet runs on F + 1 frames: frame 0 is the reference slot, frames 1..F are cat(x, conditions).
   Frames are folded into the batch; temporal layers unfold them to mix information across time.
3. Every block sees the timestep embedding and the context: the empty-prompt text features (`zero_y`)
   followed by `num_tokens` tokens from the CLIP image embedding (zeros without an image).
4. The output drops the reference slot: [B, 4, F, h, w].

Behaviour of the original that is kept on purpose:

- Without `image` the image tokens are zeros (not the projection of a zero embedding); the text
  part of the context is always `zero_y`, in both branches of classifier-free guidance.
- Frame 0 of `dwpose` (the reference-image pose) is always split off when `randomref_pose` is in
  `video_compositions`, but only reaches the model together with `randomref`.
- Temporal transformers are self-attention only: the context is not used there.
- The first temporal transformer uses `num_heads` heads of `head_dim` (8 x 64 = 512 wide on 320
  channels in the released model); every other attention uses channels // head_dim heads.
- Pixel conditions are pooled to 4x the latent size; the original pools to half its configured
  pixel resolution, which is the same thing when the latent is 1/8 of that resolution.

Parameter names and registration order reproduce the original's state dict exactly, so the released
checkpoint loads with `strict=True`. The original's training-time condition dropout does not exist
here: this model always behaves like the original in `eval()`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from model.config import FEED_FORWARD_CHUNK_TOKENS, UNetConfig
from model.unet.attention import chunk_feed_forward
from model.unet.conditions import (
    REFERENCE_LATENT_CHANNELS,
    FrameAdapter,
    PixelConditionEncoder,
    reference_latent_encoder,
)
from model.unet.embeddings import sinusoidal_embedding
from model.unet.resample import Downsample, Upsample
from model.unet.resblock import ResBlock
from model.unet.temporal import TemporalBlock, make_temporal_block, to_frames, to_video
from model.unet.transformer import SpatialTransformer


class UniAnimateUNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        compositions = set(config.video_compositions)
        context_dim, hidden = config.context_dim, 4 * config.concat_dim
        reference_dim = config.concat_dim + REFERENCE_LATENT_CHANNELS

        self.time_embed = nn.Sequential(
            nn.Linear(config.dim, config.embed_dim), nn.SiLU(), nn.Linear(config.embed_dim, config.embed_dim)
        )
        if "image" in compositions:
            self.pre_image_condition = nn.Sequential(
                nn.Linear(context_dim, context_dim), nn.SiLU(), nn.Linear(context_dim, context_dim * config.num_tokens)
            )
        # Attribute names are the original's: they are the checkpoint keys.
        if "local_image" in compositions:
            self.local_image_embedding = PixelConditionEncoder(config.concat_dim, hidden)
            self.local_image_embedding_after = FrameAdapter(config.concat_dim, config.adapter_transformer_layers)
        if "dwpose" in compositions:
            self.dwpose_embedding = PixelConditionEncoder(config.concat_dim, hidden)
            self.dwpose_embedding_after = FrameAdapter(config.concat_dim, config.adapter_transformer_layers)
        if "randomref_pose" in compositions:
            self.randomref_pose2_embedding = PixelConditionEncoder(reference_dim, hidden)
            self.randomref_pose2_embedding_after = FrameAdapter(reference_dim, config.adapter_transformer_layers)
        if "randomref" in compositions:
            self.randomref_embedding2 = reference_latent_encoder(reference_dim, hidden)
            self.randomref_embedding_after2 = FrameAdapter(reference_dim, config.adapter_transformer_layers)

        # Empty-prompt text features; not part of the checkpoint (see set_zero_y).
        self.register_buffer("zero_y", None, persistent=False)

        self.input_blocks, skip_channels = self._build_encoder()
        self.middle_block = self._build_middle()
        self.output_blocks = self._build_decoder(skip_channels)
        self.out = nn.Sequential(
            nn.GroupNorm(32, config.dim), nn.SiLU(), nn.Conv2d(config.dim, config.out_dim, 3, padding=1)
        )
        chunk_feed_forward(self, FEED_FORWARD_CHUNK_TOKENS)

    # ---- construction -------------------------------------------------------------------------

    def _level_block(self, in_channels: int, out_channels: int, scale: float) -> nn.ModuleList:
        """A ResBlock; at the attention scales also a spatial and a temporal transformer."""
        config = self.config
        block = nn.ModuleList([ResBlock(in_channels, config.embed_dim, config.dropout, out_channels)])
        if scale in config.attn_scales:
            heads = out_channels // config.head_dim
            block.append(SpatialTransformer(out_channels, heads, config.head_dim, config.context_dim))
            if config.temporal_attention:
                block.append(make_temporal_block(config, out_channels, heads, config.head_dim))
        return block

    def _build_encoder(self) -> tuple[nn.ModuleList, list[int]]:
        config = self.config
        stem = nn.ModuleList([nn.Conv2d(config.in_dim + config.concat_dim, config.dim, 3, padding=1)])
        if config.temporal_attention:
            # The only block whose head count is `num_heads` rather than channels // head_dim.
            stem.append(make_temporal_block(config, config.dim, config.num_heads, config.head_dim))
        blocks, skip_channels = nn.ModuleList([stem]), [config.dim]
        channels, scale = config.dim, 1.0
        for level, mult in enumerate(config.dim_mult):
            for _ in range(config.num_res_blocks):
                blocks.append(self._level_block(channels, config.dim * mult, scale))
                channels = config.dim * mult
                skip_channels.append(channels)
            if level < len(config.dim_mult) - 1:
                blocks.append(Downsample(channels))
                skip_channels.append(channels)
                scale /= 2
        return blocks, skip_channels

    def _build_middle(self) -> nn.ModuleList:
        config = self.config
        channels = config.dim * config.dim_mult[-1]
        heads = channels // config.head_dim
        middle = nn.ModuleList([
            ResBlock(channels, config.embed_dim, config.dropout),
            SpatialTransformer(channels, heads, config.head_dim, config.context_dim),
        ])
        if config.temporal_attention:
            middle.append(make_temporal_block(config, channels, heads, config.head_dim))
        middle.append(ResBlock(channels, config.embed_dim, config.dropout))
        return middle

    def _build_decoder(self, skip_channels: list[int]) -> nn.ModuleList:
        config = self.config
        blocks = nn.ModuleList()
        channels, scale = config.dim * config.dim_mult[-1], 0.5 ** (len(config.dim_mult) - 1)
        for level in reversed(range(len(config.dim_mult))):
            for index in range(config.num_res_blocks + 1):
                block = self._level_block(channels + skip_channels.pop(), config.dim * config.dim_mult[level], scale)
                channels = config.dim * config.dim_mult[level]
                if level > 0 and index == config.num_res_blocks:
                    block.append(Upsample(channels))
                    scale *= 2
                blocks.append(block)
        return blocks

    # ---- state that is not in the checkpoint --------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return self.time_embed[0].weight.dtype

    def set_zero_y(self, zero_y: Tensor) -> None:
        """Stores the empty-prompt text features [1, 77, context_dim] (OpenCLIP ViT-H/14 penultimate
        layer of ""), moved to this model's device and dtype. Required before `forward`."""
        if zero_y.dim() != 3 or zero_y.shape[0] != 1 or zero_y.shape[2] != self.config.context_dim:
            raise ValueError(f"zero_y must be [1, tokens, {self.config.context_dim}], got {list(zero_y.shape)}")
        self.zero_y = zero_y.detach().to(device=self.time_embed[0].weight.device, dtype=self.dtype)

    # ---- forward ------------------------------------------------------------------------------

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        image: Tensor | None = None,
        local_image: Tensor | None = None,
        dwpose: Tensor | None = None,
        randomref: Tensor | None = None,
        unconditional: Tensor | None = None,
    ) -> Tensor:
        """Predicts the model output (v in the released model) for the noisy latent video `x`.

        x: [B, 4, F, h, w]; t: [B] integer timesteps (0..999, not rescaled).
        image: [B, 1, context_dim] CLIP image embedding of the reference.
        local_image: [B, 3, F, H, W] first-frame condition, pixels in [0, 1].
        dwpose: [B, 3, F+1, H, W] pose renderings in [0, 1]; frame 0 is the reference-image pose,
            used only together with `randomref`. (F frames if `randomref_pose` is not composed.)
        randomref: [B, 4, F', h, w] reference latent (already scaled by 0.18215); only frame 0 is read.
        Any condition may be None (classifier-free guidance passes none at all). Inputs are cast
        to the model's dtype; the result is [B, 4, F, h, w] in that dtype.
        unconditional: optional bool [B]; rows marked True are computed as if every condition were
            None, so one call can hold both halves of classifier-free guidance.
        """
        self._check_inputs(x, t, image, local_image, dwpose, randomref)
        x, image, local_image, dwpose, randomref = (
            None if v is None else v.to(self.dtype) for v in (x, image, local_image, dwpose, randomref)
        )
        reference_pose = None
        if dwpose is not None and "randomref_pose" in self.config.video_compositions:
            reference_pose, dwpose = dwpose[:, :, :1], dwpose[:, :, 1:]
        given = {"image": image, "local_image": local_image, "dwpose": dwpose, "randomref": randomref,
                 "reference_pose": reference_pose}
        # The condition encoders only see the conditional rows: an unconditional row's inputs are
        # exact zeros (a missing condition), so its features are zeros without running anything.
        parts = [self._condition_features(x[part], {k: None if v is None or not conditional else v[part]
                                                    for k, v in given.items()})
                 for part, conditional in _row_runs(unconditional, x.shape[0])]
        h, context = (torch.cat(column) if len(parts) > 1 else column[0] for column in zip(*parts))
        return self.backbone(h, t, context, x.shape[2] + 1)

    def _condition_features(self, x: Tensor, given: dict[str, Tensor | None]) -> tuple[Tensor, Tensor]:
        """The backbone's input h [B*(F+1), in_dim + concat_dim, h, w] (frames folded into the batch,
        frame 0 the reference slot) and the context [B, tokens, context_dim] for rows x [B, 4, F, h, w]."""
        latent_size = tuple(x.shape[3:])
        conditions = self._frame_conditions(x, given["local_image"], given["dwpose"], latent_size)
        reference = self._reference_slot(x, given["randomref"], given["reference_pose"], latent_size)
        h = to_frames(torch.cat([reference, torch.cat([x, conditions], dim=1)], dim=2))
        return h, self._context(given["image"], x.shape[0])

    def backbone(self, h: Tensor, t: Tensor, context: Tensor, num_frames: int) -> Tensor:
        """Everything after the conditions: time embedding, encoder, middle, decoder; -> [B, 4, F, h, w].

        h: [B*(F+1), in_dim + concat_dim, h, w] frames folded into the batch (frame 0 the reference
        slot); context: [B, tokens, context_dim]. This is the heavy part with fixed shapes for a
        whole segment and no host-side logic, which `model.compile.compile_unet` compiles.
        """
        emb = self.time_embed(sinusoidal_embedding(t, self.config.dim).to(self.dtype))
        emb = emb.repeat_interleave(num_frames, dim=0)
        context = context.repeat_interleave(num_frames, dim=0)

        skips = []
        for block in self.input_blocks:
            h = _apply(block, h, emb, context, num_frames)
            skips.append(h)
        h = _apply(self.middle_block, h, emb, context, num_frames)
        for block in self.output_blocks:
            h = _apply(block, torch.cat([h, skips.pop()], dim=1), emb, context, num_frames)
        return to_video(self.out(h), num_frames)[:, :, 1:].contiguous()

    def _frame_conditions(
        self, x: Tensor, local_image: Tensor | None, dwpose: Tensor | None, latent_size: tuple[int, int]
    ) -> Tensor:
        """Sum of the first-frame and driving-pose features: [B, concat_dim, F, h, w]."""
        batch, _, frames, height, width = x.shape
        features = x.new_zeros(batch, self.config.concat_dim, frames, height, width)
        if local_image is not None:
            features = features + self.local_image_embedding_after(self.local_image_embedding(local_image, latent_size))
        if dwpose is not None:
            features = features + self.dwpose_embedding_after(self.dwpose_embedding(dwpose, latent_size))
        return features

    def _reference_slot(
        self, x: Tensor, randomref: Tensor | None, reference_pose: Tensor | None, latent_size: tuple[int, int]
    ) -> Tensor:
        """Input of frame 0: reference latent + reference pose features, [B, concat_dim + 4, 1, h, w].

        All zeros without `randomref`; the reference pose alone never reaches the model.
        """
        if randomref is None:
            return x.new_zeros(x.shape[0], self.config.concat_dim + REFERENCE_LATENT_CHANNELS, 1, *latent_size)
        reference = self.randomref_embedding_after2(self.randomref_embedding2(randomref[:, :, 0]).unsqueeze(2))
        if reference_pose is not None:
            pose = self.randomref_pose2_embedding(reference_pose, latent_size)
            reference = reference + self.randomref_pose2_embedding_after(pose)
        return reference

    def _context(self, image: Tensor | None, batch: int) -> Tensor:
        """Cross-attention context: [B, 77 + num_tokens, context_dim], zero image tokens without an image."""
        config = self.config
        text = self.zero_y.expand(batch, -1, -1)
        if image is None:
            tokens = text.new_zeros(batch, config.num_tokens, config.context_dim)
        else:
            tokens = self.pre_image_condition(image).view(batch, config.num_tokens, config.context_dim)
        return torch.cat([text, tokens], dim=1)

    def _check_inputs(
        self,
        x: Tensor,
        t: Tensor,
        image: Tensor | None,
        local_image: Tensor | None,
        dwpose: Tensor | None,
        randomref: Tensor | None,
    ) -> None:
        config = self.config
        if self.zero_y is None:
            raise RuntimeError("zero_y is not set: call set_zero_y(text features of the empty prompt) first")
        if x.dim() != 5 or x.shape[1] != config.in_dim:
            raise ValueError(f"x must be [B, {config.in_dim}, F, h, w], got {list(x.shape)}")
        batch, _, frames, height, width = x.shape
        factor = 2 ** (len(config.dim_mult) - 1)
        if height % factor or width % factor:
            raise ValueError(f"latent height and width must be multiples of {factor}, got {height}x{width}")
        if t.shape != (batch,):
            raise ValueError(f"t must be [B] = [{batch}] timesteps, got {list(t.shape)}")
        pose_frames = frames + ("randomref_pose" in config.video_compositions)
        expected = {
            "image": (batch, 1, config.context_dim),
            "local_image": (batch, 3, frames),
            "dwpose": (batch, 3, pose_frames),
            "randomref": (batch, REFERENCE_LATENT_CHANNELS),
        }
        given = {"image": image, "local_image": local_image, "dwpose": dwpose, "randomref": randomref}
        for name, value in given.items():
            if value is None:
                continue
            if name not in config.video_compositions:
                raise ValueError(f"{name} was given but this model has no {name} branch ({config.video_compositions})")
            rank = 3 if name == "image" else 5
            if value.dim() != rank or value.shape[: len(expected[name])] != expected[name]:
                raise ValueError(f"{name} must start with shape {list(expected[name])}, got {list(value.shape)}")
        if randomref is not None and randomref.shape[3:] != (height, width):
            raise ValueError(f"randomref must be on the latent grid {height}x{width}, got {list(randomref.shape)}")
        if randomref is not None and dwpose is None and "randomref_pose" in config.video_compositions:
            raise ValueError("randomref needs dwpose too: frame 0 of dwpose is the reference-image pose")


def _row_runs(unconditional: Tensor | None, batch: int) -> list[tuple[slice, bool]]:
    """Consecutive batch rows that are all conditional (True) or all unconditional (False).

    The mask is read on the host. Keep it a CPU tensor (the sampler does): a CUDA mask would make
    every call wait for the GPU to read it back.
    """
    if unconditional is None:
        return [(slice(0, batch), True)]
    if unconditional.shape != (batch,):
        raise ValueError(f"unconditional must be a [B] = [{batch}] mask, got {list(unconditional.shape)}")
    flags = [not flag for flag in unconditional.bool().tolist()]
    runs, start = [], 0
    for index in range(1, batch + 1):
        if index == batch or flags[index] != flags[start]:
            runs.append((slice(start, index), flags[start]))
            start = index
    return runs


def _apply(layer: nn.Module, h: Tensor, emb: Tensor, context: Tensor, num_frames: int) -> Tensor:
    """Runs one UNet layer (or a list of them) on h [B*(F+1), C, H, W], giving each what it needs."""
    if isinstance(layer, nn.ModuleList):
        for sublayer in layer:
            h = _apply(sublayer, h, emb, context, num_frames)
        return h
    if isinstance(layer, ResBlock):
        return layer(h, emb, num_frames)
    if isinstance(layer, SpatialTransformer):
        return layer(h, context)
    if isinstance(layer, TemporalBlock):
        return to_frames(layer(to_video(h, num_frames)))
    return layer(h)
