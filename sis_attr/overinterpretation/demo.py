"""Deprecated: the shortcut demo moved to :mod:`sis_attr.demo` (this alias is removed in the next release).

Importing this module issues a :class:`DeprecationWarning`; the names are those of :mod:`sis_attr.demo`.
"""

from __future__ import annotations

import warnings

from sis_attr.demo import (
    CONTENT_NOISE,
    DIGITS_SHORTCUT_POSITIONS,
    DemoResult,
    plant_shortcut,
    run_demo,
    shortcut_share,
    swap_content,
)

__all__ = [
    "CONTENT_NOISE",
    "DIGITS_SHORTCUT_POSITIONS",
    "DemoResult",
    "plant_shortcut",
    "run_demo",
    "shortcut_share",
    "swap_content",
]

warnings.warn(
    "sis_attr.overinterpretation.demo is deprecated and will be removed in the next release: import from "
    "sis_attr.demo instead (the names are unchanged).",
    DeprecationWarning,
    stacklevel=2,
)
