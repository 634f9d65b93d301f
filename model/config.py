"""Architecture of the UniAnimate UNet as one frozen value.

`UNetConfig` holds every constructor argument of the original `UNetSD_UniAnimate` that changes the
module tree or its numbers. Two things the original also takes are deliberately absent:

- `resolution`: the original pools the pixel conditions to half its configured resolution. Here that
  size is derived from the latent given to `forward`, so one model serves every resolution.
- training-only switches (`misc_dropout`, `p_all_zero`, `p_all_keep`, `use_checkpoint`): this is an
  inference implementation and behaves like the original in `eval()`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

CONDITIONS = ("image", "local_image", "dwpose", "randomref", "randomref_pose")
TEMPORAL_KINDS = ("transformer", "mamba")
# Feed-forward layers run over at most this many tokens at a time (model/unet/attention.py): a
# 768x512 segment of 32 frames with batched guidance has 405,504 tokens at the first level, whose
# 4x-wide hidden layer would otherwise be the UNet's largest activation (6.2 GiB in fp16). Chunks
# this large keep the matrix products as efficient; the memory planner models the same number.
FEED_FORWARD_CHUNK_TOKENS = 32768

# Original constructor arguments that do not shape the inference model (see the module docstring).
_IGNORED_ORIGINAL_KWARGS = frozenset(
    {"config", "zero_y", "use_checkpoint", "misc_dropout", "p_all_zero", "p_all_keep", "training",
     "use_fps_condition", "use_image_dataset", "use_scale_shift_norm", "inpainting", "hist_dim",
     "black_image_feature", "type"}
)


@dataclass(frozen=True)
class UNetConfig:
    in_dim: int = 4
    dim: int = 320
    # Width of the CLIP embedding; the original stores it and never builds anything from it.
    y_dim: int = 1024
    context_dim: int = 1024
    out_dim: int = 4
    # Channels of the summed pose / first-frame condition features concatenated to the latent.
    concat_dim: int = 8
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    # Heads of the first temporal transformer only; every other attention uses channels // head_dim.
    num_heads: int = 8
    head_dim: int = 64
    num_res_blocks: int = 2
    # Feature-map scales (1.0 = latent size) whose blocks get a spatial and a temporal transformer.
    attn_scales: tuple[float, ...] = (1.0, 0.5, 0.25)
    dropout: float = 0.1
    temporal_attention: bool = True
    # Image-embedding context tokens produced by `pre_image_condition`.
    num_tokens: int = 4
    # Only read by the original's non-transformer temporal attention, which the released model does
    # not use; kept so that a config round-trips the original constructor arguments.
    temporal_attn_times: int = 1
    use_sim_mask: bool = False
    # Depth of the small frame-attention adapters after each condition encoder.
    adapter_transformer_layers: int = 1
    video_compositions: tuple[str, ...] = CONDITIONS
    # Which temporal mixing block follows each spatial transformer (model/unet/temporal.py).
    temporal: str = "transformer"

    def __post_init__(self) -> None:
        for name in ("dim_mult", "attn_scales", "video_compositions"):  # lists from yaml/json become tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.in_dim != 4:
            raise ValueError(f"in_dim must be 4: frame 0 holds the 4-channel reference latent (got {self.in_dim})")
        unknown = set(self.video_compositions) - set(CONDITIONS)
        if unknown:
            raise ValueError(f"video_compositions has unknown entries {sorted(unknown)}; allowed: {CONDITIONS}")
        if self.temporal not in TEMPORAL_KINDS:
            raise ValueError(f"temporal={self.temporal!r} is not one of {TEMPORAL_KINDS}")
        for width in (self.dim * m for m in self.dim_mult):
            if width % self.head_dim or width % 32:
                raise ValueError(
                    f"every level width (dim * dim_mult = {width}) must be a multiple of head_dim "
                    f"({self.head_dim}) and of 32 (GroupNorm groups)"
                )

    @property
    def embed_dim(self) -> int:
        """Width of the time embedding."""
        return 4 * self.dim

    @classmethod
    def released(cls) -> UNetConfig:
        """The released `unianimate_16f_32f_non_ema_223000.pth`: the yaml UNet section merged into the
        original's default config, which is where `attn_scales = (1.0, 0.5, 0.25)` comes from."""
        return cls()

    @classmethod
    def tiny(cls) -> UNetConfig:
        """The configuration of the shared golden fixture `fixtures/unet_tiny.pt`."""
        return cls(dim=32, dim_mult=(1, 2), num_heads=4, head_dim=16, num_res_blocks=1, attn_scales=(1.0, 0.5))

    @classmethod
    def from_original_kwargs(cls, kwargs: dict[str, Any]) -> UNetConfig:
        """Maps constructor arguments of the original `UNetSD_UniAnimate` onto a config.

        `kwargs["config"]` may be a dict with `video_compositions`, as the fixtures store it.
        Missing arguments take the released values (not the original class defaults, which describe
        no released model). Arguments that would build something this implementation does not have
        are refused.
        """
        names = {f.name for f in fields(cls)} - {"temporal", "video_compositions"}
        unknown = set(kwargs) - names - _IGNORED_ORIGINAL_KWARGS
        if unknown:
            raise ValueError(f"unsupported UNetSD_UniAnimate arguments: {sorted(unknown)}")
        if kwargs.get("use_fps_condition") or kwargs.get("use_image_dataset"):
            raise ValueError("use_fps_condition / use_image_dataset are not supported (the released model has neither)")
        values = {k: v for k, v in kwargs.items() if k in names}
        if values.get("num_heads") is None:
            values["num_heads"] = values.get("dim", cls.dim) // 32  # the original's default
        run_config = kwargs.get("config")
        if isinstance(run_config, dict) and "video_compositions" in run_config:
            values["video_compositions"] = run_config["video_compositions"]
        return cls(**values)
