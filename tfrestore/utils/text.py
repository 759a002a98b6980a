"""Short user-facing texts built from exceptions."""

from __future__ import annotations

__all__ = ["short_reason"]


def short_reason(exc, limit=240):
    """First sentence of an exception message, capped at ``limit`` characters.

    >>> short_reason(ValueError("weights not found. Put them in $TFRESTORE_WEIGHTS_DIR."))
    'weights not found.'
    """
    text = " ".join(str(exc).split())
    cut = text.find(". ")
    text = text[: cut + 1] if cut > 0 else text
    return text if len(text) <= limit else text[: limit - 3] + "..."
