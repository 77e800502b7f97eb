"""Formatting shared by the text summaries, the figures and the HTML pages: percentages, numbers, class names, JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

__all__ = ["class_name", "fmt_gradient_settings", "fmt_num", "fmt_pct", "fmt_signed", "json_safe"]


def fmt_pct(x: float | None, digits: int = 1) -> str:
    """``0.123`` -> ``"12.3%"``; None or NaN -> ``"n/a"``."""
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}%"


def fmt_num(x: float | None, digits: int = 2) -> str:
    """``1.234`` -> ``"1.23"``; None or NaN -> ``"n/a"``."""
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def fmt_signed(x: float | None, digits: int = 3) -> str:
    """``-0.0351`` -> ``"-0.035"``, ``0.2`` -> ``"+0.200"``; a value that rounds to zero is ``"0.000"`` (never
    ``"-0.000"``); None or NaN -> ``"n/a"``."""
    if x is None or math.isnan(x):
        return "n/a"
    value = round(x, digits)
    return f"{0.0:.{digits}f}" if value == 0 else f"{value:+.{digits}f}"


def class_name(class_names: Sequence[str], index: int) -> str:
    """The name of class ``index``, or the index itself when there is no such name."""
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def json_safe(obj: Any) -> Any:
    """Recursively convert to JSON-compatible values: NaN/inf become None, tensors become lists."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Tensor):
        return json_safe(obj.detach().cpu().tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):  # numpy scalars
        return json_safe(obj.item())
    return str(obj)


def fmt_gradient_settings(k: object, shortlist: object) -> str:
    """``"k=auto"`` or ``"k=0.05, shortlist=16"``: the shortlist only when there is one."""
    return f"k={k}" if shortlist is None else f"k={k}, shortlist={shortlist}"
