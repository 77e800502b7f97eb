"""Progress bars (tqdm), silent unless asked for."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int | None, desc: str, enabled: bool, unit: str = "it") -> Any:
    """A tqdm bar; with ``enabled=False`` tqdm's own ``disable`` makes every method a no-op."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True, disable=not enabled)
