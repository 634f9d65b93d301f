"""Which conditions the UNet's conditional branch sees, by name.

The original's short entrance renders each clip twice, once per `partial_keys` set of
`configs/UniAnimate_infer.yaml`; this project chains segments with a third set. A set also fixes
the noise prior's order, because each comes from one entrance of the original:

- `image,local_image,dwpose` (short entrance, pass 1): CLIP embedding, the reference image as the
  first-frame condition (`local_image`, [0, 1] pixels), the poses. No reference latent: the UNet's
  reference slot is zeros (the latent still enters through the noise prior).
- `image,randomref,dwpose` (short entrance, pass 2): CLIP embedding, reference latent, poses.
- `chained` (this project's default, the long entrance's order): `image,randomref,dwpose`, plus
  `local_image` = the last frame of the previous segment (or a user-given first frame).

The short entrance adds the offset noise before `q_sample` (so it is scaled by sqrt(1 - a_t)),
the long one after; see `model.sampler.noise_prior`. Segments of a video rendered with an original
set do not see each other: each starts from the reference, as every clip of the original does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ConditionSet:
    name: str
    keys: tuple[str, ...]  # UNet keyword arguments of the conditional call, in the original's order
    # where `local_image` comes from: the reference image, the previous segment's last frame, or nowhere
    local_image: Literal["reference", "previous_frame", "none"]
    noise_order: Literal["short", "long"]
    noise_prior_t: int  # the entrance's `noise_prior_value`, the default when a caller gives none

    @property
    def uses_first_frame(self) -> bool:
        return self.local_image == "previous_frame"


LOCAL_IMAGE = ConditionSet("image,local_image,dwpose", ("image", "local_image", "dwpose"), "reference", "short", 949)
RANDOMREF = ConditionSet("image,randomref,dwpose", ("image", "randomref", "dwpose"), "none", "short", 949)
CHAINED = ConditionSet("chained", ("image", "randomref", "dwpose"), "previous_frame", "long", 939)

CONDITION_SETS: dict[str, ConditionSet] = {s.name: s for s in (CHAINED, LOCAL_IMAGE, RANDOMREF)}


def condition_set(name: str) -> ConditionSet:
    """The set called `name`; a ValueError lists the names there are."""
    try:
        return CONDITION_SETS[name]
    except KeyError:
        raise ValueError(f"unknown condition set {name!r}; use one of: {', '.join(CONDITION_SETS)}") from None
