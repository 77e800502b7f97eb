"""Pixel-subset images: everything outside a few kept features set to the baseline (Carter et al., 3.3).

:func:`backselect_subsets` keeps the features removed last by backward selection (the paper's "5% BS
subsets"); :func:`random_subsets` keeps the same number of features drawn uniformly at random per image (the
"5% Random" control). Both return a :class:`PixelSubsetDataset`, a map-style dataset of ``(image, label)``
pairs usable for evaluation and for training new models.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from sis_attr._core.validation import (
    format_fraction,
    format_generator_or_seed,
    format_image_baselines,
    format_image_feature_mask,
    format_images,
    format_labels,
    format_positive_int,
    format_renamed,
)
from sis_attr.datasets import TensorImageDataset
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation._common import subset_size as _subset_size
from sis_attr.overinterpretation.selection import SelectionResult

__all__ = ["PixelSubsetDataset", "backselect_subsets", "random_subsets", "subset_size"]


def subset_size(fraction: float, n_features: int) -> int:
    """Number of features a pixel-subset keeps: ``ceil(fraction * n_features)``, at least 1.

    Rounds up (robust to floating point: ``0.3 * 10`` keeps 3, not 4).

    Parameters
    ----------
    fraction : float
        Fraction of the features kept, in (0, 1].
    n_features : int
        Features per image (``H * W`` for pixel features).

    Returns
    -------
    int
        The same count as :meth:`SelectionResult.subset_size
        <sis_attr.overinterpretation.SelectionResult.subset_size>` and the subsets of :func:`backselect_subsets`
        and :func:`random_subsets`.

    Examples
    --------
    >>> subset_size(0.05, 1024), subset_size(0.05, 64), subset_size(0.3, 10)
    (52, 4, 3)
    """
    caller = "subset_size"
    return _subset_size(format_fraction(fraction, caller), format_positive_int(n_features, "n_features", caller))


class PixelSubsetDataset(TensorImageDataset):
    """Images with everything outside kept features set to a baseline, with labels.

    A map-style :class:`torch.utils.data.Dataset` of ``(image, label)`` pairs.

    Parameters
    ----------
    images : Tensor
        ``(N, C, H, W)`` original images.
    labels : Tensor
        ``(N,)`` integer labels.
    keep_masks : Tensor
        Bool ``(N, 1 or C, H, W)`` keep-masks (True: the value is kept), the shape of
        :meth:`SelectionResult.keep_masks <sis_attr.overinterpretation.SelectionResult.keep_masks>`.
    baselines : float or Tensor, optional
        Value of the masked positions, broadcastable to ``images``; 0 when None (as in Captum).
    baseline : float or Tensor, optional
        Deprecated name of ``baselines`` (removed in the next release).

    Attributes
    ----------
    images : Tensor
        The masked images (``where(keep_masks, original, baseline)``).
    labels : Tensor
        int64 labels.
    keep_masks : Tensor
        The bool keep-masks.

    Examples
    --------
    >>> import torch
    >>> keep = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    >>> keep[:, :, 0, 0] = True
    >>> ds = PixelSubsetDataset(torch.ones(2, 3, 2, 2), torch.tensor([1, 0]), keep)
    >>> len(ds), ds[0][0][:, 0].tolist(), int(ds[1][1]), ds.kept_fraction.tolist()
    (2, [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], 0, [0.25, 0.25])
    """

    keep_masks: Tensor

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        keep_masks: Tensor,
        *,
        baselines: float | Tensor | None = None,
        baseline: float | Tensor | None = None,
    ) -> None:
        caller = "PixelSubsetDataset"
        baselines = format_renamed(baselines, baseline, new="baselines", old="baseline", caller=caller)
        images = format_images(images, caller)
        labels = format_labels(labels, int(images.shape[0]), caller)
        if not isinstance(keep_masks, Tensor) or keep_masks.dtype != torch.bool:
            got = f"dtype {keep_masks.dtype}" if isinstance(keep_masks, Tensor) else type(keep_masks).__name__
            raise SISTypeError(f"The `keep_masks` parameter of {caller} must be a bool tensor. Got {got} instead.")
        n, c, h, w = images.shape
        if keep_masks.dim() != 4 or tuple(keep_masks.shape) not in ((n, 1, h, w), (n, c, h, w)):
            raise SISValueError(
                f"The `keep_masks` parameter of {caller} must have shape ({n}, 1, {h}, {w}) or ({n}, {c}, {h}, {w}) "
                f"to match the images. Got shape {tuple(keep_masks.shape)} instead."
            )
        self._init(images, labels, keep_masks, format_image_baselines(baselines, images, caller))

    def _init(self, images: Tensor, labels: Tensor, keep_masks: Tensor, baselines: float | Tensor) -> None:
        """Build from validated arguments (``baselines`` from ``format_image_baselines``)."""
        keep = keep_masks.to(images.device)
        base = baselines if isinstance(baselines, float) else baselines.to(images.device)
        super().__init__(torch.where(keep, images, base), labels)
        self.keep_masks = keep_masks

    @classmethod
    def _from_validated(
        cls, images: Tensor, labels: Tensor, keep_masks: Tensor, baselines: float | Tensor
    ) -> PixelSubsetDataset:
        """The dataset of already validated arguments (the analyses' inner path: nothing is checked again)."""
        ds = cls.__new__(cls)
        ds._init(images, labels, keep_masks, baselines)
        return ds

    @property
    def kept_fraction(self) -> Tensor:
        """``(N,)`` fraction of positions (pixels for 1-channel masks) kept per image."""
        return self.keep_masks.flatten(1).double().mean(dim=1)


def backselect_subsets(
    images: Tensor,
    selection: SelectionResult,
    *,
    fraction: float = 0.05,
    labels: Tensor | None = None,
    baselines: float | Tensor | None = None,
    baseline: float | Tensor | None = None,
) -> PixelSubsetDataset:
    """Backward-selection pixel-subsets: keep the ``fraction`` of features removed last, mask the rest.

    The kept count is ``ceil(fraction * n_features)`` per image (52 of the 1024 pixels of a CIFAR-10 image at
    5%), with their original values; every other position takes ``baselines``.

    Parameters
    ----------
    images : Tensor
        ``(N, C, H, W)``: the images ``selection`` was computed on, in the same order.
    selection : SelectionResult
        From :func:`~sis_attr.overinterpretation.backward_selection`.
    fraction : float, default 0.05
        Fraction of features kept, in (0, 1]; rounds up.
    labels : Tensor, optional
        Labels of the dataset; the model's predictions (``selection.targets``) when None. Pass the true labels
        to train new models on the subsets (as the paper does).
    baselines : float or Tensor, optional
        Value of masked positions (use the baselines of the backward selection); 0 when None.
    baseline : float or Tensor, optional
        Deprecated name of ``baselines`` (removed in the next release).

    Returns
    -------
    PixelSubsetDataset

    Raises
    ------
    SISValueError
        If ``images`` are not the shape the selection was computed on, or both ``baselines`` and ``baseline``
        are given.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.overinterpretation import backward_selection
    >>> from sis_attr.testing import TinyConvNet
    >>> images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> sel = backward_selection(TinyConvNet(classes=3), images, show_progress=False)
    >>> ds = backselect_subsets(images, sel, fraction=0.25)
    >>> ds.kept_fraction.tolist(), torch.equal(ds.labels, sel.targets)
    ([0.25, 0.25], True)
    """
    caller = "backselect_subsets"
    baselines = format_renamed(baselines, baseline, new="baselines", old="baseline", caller=caller)
    if not isinstance(selection, SelectionResult):
        raise SISTypeError(
            f"The `selection` parameter of {caller} must be a SelectionResult (from backward_selection). "
            f"Got {type(selection).__name__} instead."
        )
    images = format_images(images, caller)
    f = format_fraction(fraction, caller)
    expected = (selection.n_images, *selection.image_shape)
    if tuple(images.shape) != expected:
        raise SISValueError(
            f"The `images` parameter of {caller} must be the images the selection was computed on, of shape "
            f"{expected}. Got shape {tuple(images.shape)} instead."
        )
    lab = selection.targets if labels is None else format_labels(labels, selection.n_images, caller)
    return _backselect_subsets(images, selection, f, lab, format_image_baselines(baselines, images, caller))


def _backselect_subsets(
    images: Tensor, selection: SelectionResult, fraction: float, labels: Tensor, baselines: float | Tensor
) -> PixelSubsetDataset:
    keep = selection._keep_masks(_subset_size(fraction, selection.n_features))
    return PixelSubsetDataset._from_validated(images, labels, keep, baselines)


def random_subsets(
    images: Tensor,
    *,
    labels: Tensor,
    fraction: float = 0.05,
    feature_mask: Literal["pixel"] | Tensor | None = "pixel",
    generator: torch.Generator | int | None = None,
    baselines: float | Tensor | None = None,
    baseline: float | Tensor | None = None,
) -> PixelSubsetDataset:
    """Random pixel-subsets: keep ``ceil(fraction * n_features)`` features drawn uniformly per image.

    The control of the paper's Table 1: as many features as :func:`backselect_subsets` keeps, chosen
    uniformly at random without replacement, independently for each image.

    Parameters
    ----------
    images : Tensor
        ``(N, C, H, W)`` images.
    labels : Tensor
        ``(N,)`` labels.
    fraction : float, default 0.05
        Fraction of features kept, in (0, 1]; rounds up.
    feature_mask : "pixel", None or Tensor, default "pixel"
        Feature groups, as in :func:`~sis_attr.overinterpretation.backward_selection`.
    generator : torch.Generator or int, optional
        Source of randomness, or a seed; the global generator when None.
    baselines : float or Tensor, optional
        Value of masked positions; 0 when None.
    baseline : float or Tensor, optional
        Deprecated name of ``baselines`` (removed in the next release).

    Returns
    -------
    PixelSubsetDataset

    Examples
    --------
    >>> import torch
    >>> ds = random_subsets(torch.ones(3, 3, 32, 32), labels=torch.zeros(3, dtype=torch.long), generator=0)
    >>> ds.keep_masks.shape, ds.keep_masks.sum(dim=(1, 2, 3)).tolist()
    (torch.Size([3, 1, 32, 32]), [52, 52, 52])
    >>> again = random_subsets(torch.ones(3, 3, 32, 32), labels=torch.zeros(3, dtype=torch.long), generator=0)
    >>> torch.equal(ds.keep_masks, again.keep_masks)
    True
    """
    caller = "random_subsets"
    baselines = format_renamed(baselines, baseline, new="baselines", old="baseline", caller=caller)
    images = format_images(images, caller)
    f = format_fraction(fraction, caller)
    lab = format_labels(labels, int(images.shape[0]), caller)
    image_shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
    fmask = format_image_feature_mask(feature_mask, image_shape, caller)
    gen = format_generator_or_seed(generator, caller)
    return _random_subsets(images, lab, f, fmask, gen, format_image_baselines(baselines, images, caller))


def _random_subsets(
    images: Tensor,
    labels: Tensor,
    fraction: float,
    feature_mask: Tensor,
    generator: torch.Generator | None,
    baselines: float | Tensor,
) -> PixelSubsetDataset:
    n = int(images.shape[0])
    d = int(feature_mask.max()) + 1
    count = _subset_size(fraction, d)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    scores = torch.rand(n, d, generator=generator, device=gen_device).cpu()
    chosen = scores.argsort(dim=1)[:, :count]
    keep = torch.zeros(n, d, dtype=torch.bool)
    keep.scatter_(1, chosen, True)
    keep_masks = keep[:, feature_mask.reshape(-1)].reshape(n, *feature_mask.shape[1:])
    return PixelSubsetDataset._from_validated(images, labels, keep_masks, baselines)
