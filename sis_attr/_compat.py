"""The one place that touches Captum: base classes, kept behind a small surface.

Captum's :class:`~captum.attr.NoiseTunnel` calls ``attribute.__wrapped__``, which its own methods get from
``captum.log.log_usage``; :func:`wrap_attribute` gives ours the same attribute.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from captum.attr import GradientAttribution, PerturbationAttribution

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["GradientAttribution", "PerturbationAttribution", "wrap_attribute"]


def wrap_attribute(func: F) -> F:
    """Wrap ``attribute`` so ``attribute.__wrapped__`` exists (NoiseTunnel relies on it)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
