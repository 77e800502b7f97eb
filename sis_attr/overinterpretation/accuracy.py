"""Accuracy of a model on full images, backward-selection subsets and random subsets (Table 1, "evaluate on").

Overinterpretation shows as an accuracy on 5% backward-selection subsets close to the full-image accuracy,
while equally large random subsets fall near chance (the paper: 92.23% / 92.48% / 9.99% for ResNet20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from sis_attr._core.validation import (
    check_label_range,
    format_images,
    format_labels,
    format_model,
    format_positive_int,
    warn_if_training,
)
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation._common import (
    predict_probabilities,
    to_float,
)
from sis_attr.overinterpretation.subsets import PixelSubsetDataset

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["SubsetAccuracy", "subset_accuracy"]


@dataclass(frozen=True, eq=False)
class SubsetAccuracy:
    """Accuracy (and mean confidence) on full images and on pixel-subsets of the same images.

    Attributes
    ----------
    full, backselect, random : float
        Accuracy in [0, 1] on the full images, the backward-selection subsets and the random subsets (NaN
        where that dataset was not given).
    full_confidence, backselect_confidence, random_confidence : float
        Mean confidence of the predicted class (max probability) on each.
    n_images : int
    n_classes : int
        Number of model outputs (chance accuracy is about ``1 / n_classes``).
    """

    full: float
    backselect: float
    random: float
    full_confidence: float
    backselect_confidence: float
    random_confidence: float
    n_images: int
    n_classes: int

    @property
    def chance(self) -> float:
        """Chance accuracy, ``1 / n_classes``."""
        return 1.0 / self.n_classes

    def to_dict(self) -> dict[str, Any]:
        """Accuracies and mean confidences (full, backward-selection, random), counts and chance, JSON-ready."""
        return {
            "full": to_float(self.full),
            "backselect": to_float(self.backselect),
            "random": to_float(self.random),
            "full_confidence": to_float(self.full_confidence),
            "backselect_confidence": to_float(self.backselect_confidence),
            "random_confidence": to_float(self.random_confidence),
            "n_images": self.n_images,
            "n_classes": self.n_classes,
            "chance": self.chance,
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """Bar plot of the three accuracies, with chance level marked."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        names = ["full images", "BS subsets", "random subsets"]
        values = [self.full, self.backselect, self.random]
        bars = ax.bar(names, [0.0 if v != v else 100 * v for v in values], color=["grey", "tab:red", "tab:blue"])
        for bar, v in zip(bars, values, strict=True):
            text = "n/a" if v != v else f"{100 * v:.1f}%"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
        ax.axhline(100 * self.chance, color="black", linestyle=":", label="chance")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.legend()
        return ax


def _subset_images(subsets: object, images: Tensor, caller: str, param: str) -> Tensor:
    if isinstance(subsets, PixelSubsetDataset):
        sub = subsets.images
    elif isinstance(subsets, Tensor):
        sub = format_images(subsets, caller, param)
    else:
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be None, a PixelSubsetDataset or a tensor of subset images. "
            f"Got {type(subsets).__name__} instead."
        )
    if sub.shape != images.shape:
        raise SISValueError(
            f"The `{param}` parameter of {caller} must hold one subset per image, of the images' shape "
            f"{tuple(images.shape)}. Got shape {tuple(sub.shape)} instead."
        )
    return sub


def subset_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    backselect: PixelSubsetDataset | Tensor | None = None,
    random: PixelSubsetDataset | Tensor | None = None,
    batch_size: int = 256,
) -> SubsetAccuracy:
    """Accuracy of ``model`` on full images and on their pixel-subsets (Carter et al., Table 1 "evaluate on").

    All three accuracies are measured against ``labels`` (the true labels), whatever labels the subset
    datasets carry.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (only called; put it in eval mode yourself).
    images : Tensor
        ``(N, C, H, W)`` full images.
    labels : Tensor
        ``(N,)`` true labels.
    backselect, random : PixelSubsetDataset or Tensor, optional
        Backward-selection and random subsets of the same images, in the same order.
    batch_size : int, default 256

    Returns
    -------
    SubsetAccuracy

    Examples
    --------
    >>> import torch
    >>> from sis_attr.testing import TinyConvNet
    >>> model = TinyConvNet(classes=3)
    >>> images = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> labels = model(images).argmax(dim=1)
    >>> acc = subset_accuracy(model, images, labels, backselect=images.clone())
    >>> acc.full, acc.backselect, acc.random != acc.random  # random not given: NaN
    (1.0, 1.0, True)
    """
    caller = "subset_accuracy"
    model = format_model(model, caller)
    images = format_images(images, caller)
    lab = format_labels(labels, int(images.shape[0]), caller)
    batch_size = format_positive_int(batch_size, "batch_size", caller)
    subs = {
        name: None if ds is None else _subset_images(ds, images, caller, name)
        for name, ds in (("backselect", backselect), ("random", random))
    }
    warn_if_training(model, caller)
    probs = predict_probabilities(model, images, caller, batch_size=batch_size)
    check_label_range(lab, int(probs.shape[1]), caller)
    sub_probs = {
        name: None if sub is None else predict_probabilities(model, sub, caller, batch_size=batch_size)
        for name, sub in subs.items()
    }
    return _subset_accuracy(probs, lab, backselect=sub_probs["backselect"], random=sub_probs["random"])


def _subset_accuracy(
    full: Tensor, labels: Tensor, *, backselect: Tensor | None, random: Tensor | None
) -> SubsetAccuracy:
    """Accuracies from the ``(N, classes)`` probabilities on the full images and on each kind of subset."""

    def score(p: Tensor | None) -> tuple[float, float]:
        if p is None:
            return float("nan"), float("nan")
        conf, pred = p.max(dim=1)
        return float((pred == labels).double().mean()), float(conf.mean())

    res = {"full": score(full), "backselect": score(backselect), "random": score(random)}
    return SubsetAccuracy(
        full=res["full"][0],
        backselect=res["backselect"][0],
        random=res["random"][0],
        full_confidence=res["full"][1],
        backselect_confidence=res["backselect"][1],
        random_confidence=res["random"][1],
        n_images=int(full.shape[0]),
        n_classes=int(full.shape[1]),
    )
