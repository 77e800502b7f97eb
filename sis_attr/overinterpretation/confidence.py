"""Confidence drop from full images to pixel-subsets (Carter et al., 4.1).

The paper reports the mean drop in confidence of the predicted class between the original CIFAR-10 test
images and their 5% backward-selection subsets: -0.035 (std 0.107) for ResNet20. A negative drop means the
model is *more* confident on the 5% subsets than on the full images: a sign of overinterpretation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from sis_attr._core.validation import (
    format_images,
    format_model,
    format_positive_int,
    warn_if_training,
)
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation._common import (
    float_list,
    predict_probabilities,
)
from sis_attr.overinterpretation.subsets import PixelSubsetDataset

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["ConfidenceDrop", "confidence_drop"]


@dataclass(frozen=True, eq=False)
class ConfidenceDrop:
    """Confidence of the predicted class on full images minus on their pixel-subsets.

    Attributes
    ----------
    drops : Tensor
        ``(N,)`` float64 per-image drop (negative: more confident on the subset).
    full_confidences : Tensor
        ``(N,)`` confidence of the predicted class on the full images.
    subset_confidences : Tensor
        ``(N,)`` confidence of the same class on the subsets.
    predictions : Tensor
        ``(N,)`` predicted class on the full images.
    subset_predictions : Tensor
        ``(N,)`` predicted class on the subsets.
    """

    drops: Tensor
    full_confidences: Tensor
    subset_confidences: Tensor
    predictions: Tensor
    subset_predictions: Tensor

    @property
    def mean(self) -> float:
        """Mean drop (the paper: -0.035 for ResNet20 on CIFAR-10 5% subsets)."""
        return float(self.drops.mean())

    @property
    def std(self) -> float:
        """Standard deviation of the drops (population, ``ddof=0``)."""
        return float(self.drops.std(unbiased=False))

    @property
    def agreement(self) -> float:
        """Fraction of images whose subset gets the same prediction as the full image."""
        return float((self.predictions == self.subset_predictions).double().mean())

    def to_dict(self) -> dict[str, Any]:
        """Mean and std of the drop, agreement, mean confidences and per-image drops, JSON-ready."""
        return {
            "mean": self.mean,
            "std": self.std,
            "n_images": int(self.drops.numel()),
            "agreement": self.agreement,
            "mean_full_confidence": float(self.full_confidences.mean()),
            "mean_subset_confidence": float(self.subset_confidences.mean()),
            "drops": float_list(self.drops),
        }

    def plot(self, ax: Axes | None = None, *, bins: int = 40) -> Axes:
        """Histogram of the per-image drops, with the mean marked."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        ax.hist(self.drops.numpy(), bins=bins, color="tab:blue", alpha=0.8)
        ax.axvline(self.mean, color="tab:red", linestyle="--", label=f"mean {self.mean:.3f} (std {self.std:.3f})")
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("confidence on full image - confidence on subset")
        ax.set_ylabel("images")
        ax.legend()
        return ax


def confidence_drop(
    model: nn.Module,
    images: Tensor,
    subsets: PixelSubsetDataset | Tensor,
    *,
    batch_size: int = 256,
) -> ConfidenceDrop:
    """Confidence of the predicted class on full images minus on their pixel-subsets (Carter et al., 4.1).

    The predicted class is the model's prediction on the full image; its probability is compared with the
    probability of the same class on the subset of the same image.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (only called; put it in eval mode yourself).
    images : Tensor
        ``(N, C, H, W)`` full images.
    subsets : PixelSubsetDataset or Tensor
        The subsets of the same images, in the same order (a dataset or its ``(N, C, H, W)`` images).
    batch_size : int, default 256
        Images per forward pass.

    Returns
    -------
    ConfidenceDrop

    Examples
    --------
    >>> import torch
    >>> from sis_attr.testing import TinyConvNet
    >>> images = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> same = confidence_drop(TinyConvNet(classes=3), images, images.clone())
    >>> same.mean, same.agreement
    (0.0, 1.0)
    """
    caller = "confidence_drop"
    model = format_model(model, caller)
    images = format_images(images, caller)
    if isinstance(subsets, PixelSubsetDataset):
        sub = subsets.images
    elif isinstance(subsets, Tensor):
        sub = format_images(subsets, caller, "subsets")
    else:
        raise SISTypeError(
            f"The `subsets` parameter of {caller} must be a PixelSubsetDataset or a tensor of subset images. "
            f"Got {type(subsets).__name__} instead."
        )
    if sub.shape != images.shape:
        raise SISValueError(
            f"The `subsets` parameter of {caller} must hold one subset per image, of the images' shape "
            f"{tuple(images.shape)}. Got shape {tuple(sub.shape)} instead."
        )
    batch_size = format_positive_int(batch_size, "batch_size", caller)
    warn_if_training(model, caller)
    full = predict_probabilities(model, images, caller, batch_size=batch_size)
    return _confidence_drop(full, predict_probabilities(model, sub, caller, batch_size=batch_size))


def _confidence_drop(full: Tensor, part: Tensor) -> ConfidenceDrop:
    """The drop from the ``(N, classes)`` probabilities on the full images and on their subsets."""
    pred = full.argmax(dim=1)
    full_conf = full.gather(1, pred.unsqueeze(1)).squeeze(1)
    sub_conf = part.gather(1, pred.unsqueeze(1)).squeeze(1)
    return ConfidenceDrop(
        drops=full_conf - sub_conf,
        full_confidences=full_conf,
        subset_confidences=sub_conf,
        predictions=pred,
        subset_predictions=part.argmax(dim=1),
    )
