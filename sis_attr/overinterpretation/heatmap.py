"""Where are the kept pixels? Per-position frequency of pixel-subsets or SIS (Carter et al., Figures 2 and 4).

A concentration along the borders (as the paper finds for Inception-v3 on ImageNet) means the model decides
from the background rather than the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from sis_attr._core.validation import format_fraction, format_threshold
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation._common import to_float
from sis_attr.overinterpretation.selection import SelectionResult
from sis_attr.overinterpretation.subsets import PixelSubsetDataset

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["LocationHeatmap", "location_heatmap"]


@dataclass(frozen=True, eq=False)
class LocationHeatmap:
    """Fraction of masks that keep each position.

    Attributes
    ----------
    frequency : Tensor
        ``(H, W)`` float64 in [0, 1]: fraction of the images whose mask keeps the position (any channel).
    n_images : int
        Masks counted (for SIS: the images that have one at the threshold).
    fraction : float or None
        The subset fraction, for top-fraction masks.
    threshold : float or None
        The SIS threshold, for SIS masks.
    """

    frequency: Tensor
    n_images: int
    fraction: float | None = None
    threshold: float | None = None

    def peak(self) -> tuple[int, int]:
        """``(row, column)`` of the most frequently kept position (the first one on ties)."""
        w = int(self.frequency.shape[1])
        flat = int(self.frequency.flatten().argmax())
        return flat // w, flat % w

    def border_ratio(self, width: int = 1) -> float:
        """Mean frequency on the ``width``-pixel border divided by the mean frequency inside it."""
        h, w = self.frequency.shape
        inner = torch.zeros(h, w, dtype=torch.bool)
        inner[width : h - width, width : w - width] = True
        inside = float(self.frequency[inner].mean()) if inner.any() else float("nan")
        border = float(self.frequency[~inner].mean())
        return border / inside if inside > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """Per-pixel frequencies (nested lists), counts, fraction, threshold, peak and border ratio, JSON-ready."""
        return {
            "frequency": self.frequency.tolist(),
            "n_images": self.n_images,
            "fraction": self.fraction,
            "threshold": self.threshold,
            "peak": list(self.peak()),
            "border_ratio": to_float(self.border_ratio()),
        }

    def plot(self, ax: Axes | None = None, *, title: str | None = None) -> Axes:
        """Show the frequencies as an image with a colour bar (Figure 2)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        im = ax.imshow(self.frequency.numpy(), cmap="viridis", vmin=0.0)
        ax.figure.colorbar(im, ax=ax, label="frequency")
        if title is None:
            kind = f"SIS (threshold {self.threshold})" if self.threshold is not None else f"{self.fraction:.0%} subsets"
            title = f"{kind}, {self.n_images} images"
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        return ax


def location_heatmap(
    masks: Tensor | SelectionResult | PixelSubsetDataset,
    *,
    fraction: float | None = None,
    threshold: float | None = None,
) -> LocationHeatmap:
    """Per-position frequency of kept pixels over a set of images (Carter et al., Figures 2 and 4).

    Parameters
    ----------
    masks : Tensor, SelectionResult or PixelSubsetDataset
        Bool keep-masks ``(N, H, W)`` or ``(N, C, H, W)`` (a position counts when any channel is kept); the
        keep-masks of a :class:`PixelSubsetDataset`; or a :class:`SelectionResult`, from which the top
        ``fraction`` masks (default 5%) or, with ``threshold``, the SIS are taken.
    fraction : float, optional
        With a :class:`SelectionResult`: the kept fraction (default 0.05, the paper's Figure 2).
    threshold : float, optional
        With a :class:`SelectionResult`: use the SIS at this threshold instead (Figure 4); images without an
        SIS are left out.

    Returns
    -------
    LocationHeatmap

    Examples
    --------
    >>> import torch
    >>> masks = torch.zeros(4, 1, 3, 3, dtype=torch.bool)
    >>> masks[:, :, 0, 2] = True
    >>> masks[0, :, 1, 1] = True
    >>> heat = location_heatmap(masks)
    >>> heat.peak(), heat.frequency[1, 1].item(), heat.n_images
    ((0, 2), 0.25, 4)
    """
    caller = "location_heatmap"
    frac: float | None = None
    if isinstance(masks, SelectionResult):
        if threshold is not None:
            if fraction is not None:
                raise SISValueError(
                    f"The `fraction` and `threshold` parameters of {caller} are alternatives (top-fraction subsets or "
                    f"SIS). Got fraction={fraction} and threshold={threshold}; pass one."
                )
            return _sis_heatmap(masks, format_threshold(threshold, caller), warn=True)
        frac = format_fraction(0.05 if fraction is None else fraction, caller)
        keep = masks.keep_masks(frac)
    else:
        if fraction is not None or threshold is not None:
            raise SISValueError(
                f"The `fraction` and `threshold` parameters of {caller} apply to a SelectionResult only; the masks "
                "given are used as they are. Drop them, or pass the SelectionResult."
            )
        if isinstance(masks, PixelSubsetDataset):
            keep = masks.keep_masks
        elif isinstance(masks, Tensor):
            keep = masks
        else:
            raise SISTypeError(
                f"The `masks` parameter of {caller} must be a bool tensor of keep-masks, a SelectionResult or a "
                f"PixelSubsetDataset. Got {type(masks).__name__} instead."
            )
        if keep.dtype != torch.bool:
            raise SISTypeError(f"The `masks` parameter of {caller} must be a bool tensor. Got dtype {keep.dtype}.")
        if keep.dim() == 3:
            keep = keep.unsqueeze(1)
        if keep.dim() != 4:
            raise SISValueError(
                f"The `masks` parameter of {caller} must have shape (N, H, W) or (N, C, H, W). "
                f"Got shape {tuple(keep.shape)} instead."
            )
    if keep.shape[0] == 0:
        raise SISValueError(f"The `masks` parameter of {caller} must hold at least one mask. Got none.")
    return _heatmap(keep, fraction=frac, threshold=None)


def _heatmap(keep: Tensor, *, fraction: float | None, threshold: float | None) -> LocationHeatmap:
    """The heatmap of a non-empty ``(N, 1 or C, H, W)`` bool keep-mask batch."""
    frequency = keep.any(dim=1).double().mean(dim=0).cpu()
    return LocationHeatmap(frequency=frequency, n_images=int(keep.shape[0]), fraction=fraction, threshold=threshold)


def _sis_heatmap(selection: SelectionResult, threshold: float, *, warn: bool) -> LocationHeatmap:
    """The heatmap of the SIS at a validated ``threshold``, over the images that have one."""
    has = ~torch.isnan(selection._sis_sizes(threshold, warn=False))
    if not bool(has.any()):
        raise SISValueError(
            f"The `masks` parameter of location_heatmap must hold at least one mask. Got none (no image reaches "
            f"the threshold {threshold})."
        )
    keep = selection._sis_masks(threshold, warn=warn, stacklevel=5)[has]
    return _heatmap(keep, fraction=None, threshold=threshold)
