"""Exceptions shared across the model package."""


class RenderCancelled(Exception):
    """Raised between denoising steps when the caller's cancellation check returns True."""
