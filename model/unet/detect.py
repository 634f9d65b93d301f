"""Which temporal block kind a UNet state dict was saved from, read off its key names alone.

Temporal blocks sit in the UNet's block containers (`input_blocks.{n}`, `middle_block`,
`output_blocks.{n}`) at a fixed place: right after the spatial transformer of the container, or,
in the stem `input_blocks.0`, right after the input conv (`input_blocks.0.1`). Two layouts are
known (docs/mamba.md):

- temporal transformer: `{block}.transformer_blocks.{i}.*`, key for key like the spatial
  transformer before it (only the proj_in/proj_out shapes differ), hence the position rule;
- temporal Mamba: `{block}.layers.{i}.mixer_forward.*` and `{block}.layers.{i}.mixer_reverse.*`.

Keys are expected without a wrapper prefix (`module.`, `model.`), as the UNet's `state_dict()`
gives them.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

_CONTAINER = r"input_blocks\.\d+|middle_block|output_blocks\.\d+"
_TRANSFORMER = re.compile(rf"^({_CONTAINER})\.(\d+)\.transformer_blocks\.\d+\.")
_MAMBA = re.compile(rf"^({_CONTAINER})\.(\d+)\.layers\.\d+\.mixer_(?:forward|reverse)\.")
_STEM = "input_blocks.0"


def _positions(pattern: re.Pattern[str], keys: list[str]) -> set[tuple[str, int]]:
    """(container, index) of every block with a key matching `pattern`."""
    return {(m.group(1), int(m.group(2))) for m in map(pattern.match, keys) if m}


def _temporal_transformers(transformers: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """The transformer-layout blocks that are temporal: the stem's, and any that follows another
    transformer-layout block in its container (the spatial transformer always comes first)."""
    return {(c, i) for c, i in transformers if c == _STEM or (c, i - 1) in transformers}


def _names(positions: set[tuple[str, int]], limit: int = 4) -> str:
    names = [f"{c}.{i}" for c, i in sorted(positions)]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def temporal_kind_of(keys: Iterable[str]) -> str:
    """The temporal block kind of the UNet whose state-dict `keys` these are: "mamba" or
    "transformer", the values of `UNetConfig.temporal`.

    Raises ValueError when the keys hold both temporal layouts (some blocks Mamba, some
    transformer) or neither (not UNet keys, a wrapper prefix, or a UNet without temporal blocks).
    """
    keys = list(keys)
    mamba = _positions(_MAMBA, keys)
    transformers = _temporal_transformers(_positions(_TRANSFORMER, keys))
    if mamba and transformers:
        raise ValueError(
            f"the UNet state dict mixes temporal layouts: Mamba blocks at {_names(mamba)} "
            f"(`layers.{{i}}.mixer_forward.*`) but temporal-transformer blocks at {_names(transformers)} "
            "(`transformer_blocks.*`); a checkpoint must use one kind throughout"
        )
    if mamba:
        return "mamba"
    if transformers:
        return "transformer"
    example = f" (first keys: {', '.join(keys[:3])})" if keys else " (no keys at all)"
    raise ValueError(
        "no temporal blocks of a known layout in the UNet state dict: expected "
        "`{block}.transformer_blocks.*` after a spatial transformer (temporal transformer) or "
        "`{block}.layers.{i}.mixer_forward.*` (temporal Mamba, docs/mamba.md), with `{block}` like "
        f"`input_blocks.1.2` and no wrapper prefix{example}"
    )
