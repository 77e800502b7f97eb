"""Mask-shape leakage: does the *pattern* of the kept pixels carry the class, whatever they show?

Pixel-subset evaluations set every pixel outside a subset to a baseline, so a model sees two things: the kept
pixels' values and *where* they are. Rong et al. (ROAD, ICML 2022) and Balasubramanian & Feizi (ICCV 2023)
argue that the shape of the kept region can itself encode the class, for instance when backward selection keeps
pixels in class-specific places. A 5% subset classified correctly would then owe part of its accuracy to its
shape, not to its content.

:func:`mask_shape_leakage` separates the two. For every image it keeps the positions of the image's subset and
fills them four ways: with the image's own pixels (the paper's subsets), with the pixels of **another image**
at the same positions (content swapped; the donors are a seeded derangement, of another class wherever the
class counts allow), with **one constant colour** (shape only), and, as the paper's control, as many positions
drawn **at random** with the image's own pixels. If the swapped or constant-colour versions stay well above
chance, the subsets' "evidence" is at least partly their shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from sis_attr._core.validation import (
    check_label_range,
    format_fraction,
    format_generator_or_seed,
    format_image_baselines,
    format_images,
    format_labels,
    format_model,
    format_positive_int,
    param_error,
    warn_if_training,
)
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation._common import predict_probabilities, subset_size, to_float
from sis_attr.overinterpretation.selection import SelectionResult
from sis_attr.overinterpretation.subsets import PixelSubsetDataset

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["MaskShapeLeakage", "mask_shape_leakage"]

SIGNIFICANCE = 0.01
"""Level of the one-sided binomial tests against chance used by :meth:`MaskShapeLeakage.interpretation`."""

Condition = Literal["full", "subsets", "swapped", "shape_only", "random"]
_PREDICTIONS: dict[str, str] = {
    "full": "full_predictions",
    "subsets": "subset_predictions",
    "swapped": "swapped_predictions",
    "shape_only": "shape_predictions",
    "random": "random_predictions",
}
_TESTED: tuple[Condition, ...] = ("subsets", "swapped", "shape_only", "random")


@dataclass(frozen=True, eq=False)
class MaskShapeLeakage:
    """Predictions on each image's subset positions filled with its own pixels, another image's, one colour.

    Accuracies are properties computed from the stored predictions and ``labels``.

    Attributes
    ----------
    labels : Tensor
        ``(N,)`` int64 labels the accuracies are measured against.
    donors : Tensor
        ``(N,)`` int64: image ``i``'s subset positions were filled with the pixels of image ``donors[i]``
        (never ``i`` itself).
    full_predictions, subset_predictions, swapped_predictions, shape_predictions, random_predictions : Tensor
        ``(N,)`` int64 predicted classes on the full images, on the subsets, on the subsets with the donors'
        pixels, on the subset positions in one colour, and on random subsets of the same sizes.
    fill : tuple of float
        The constant colour (one value per channel, in the model's input space) of the shape-only images.
    kept_fraction : float
        Mean fraction of positions kept per image.
    n_classes : int
        Number of model outputs.
    """

    labels: Tensor
    donors: Tensor
    full_predictions: Tensor
    subset_predictions: Tensor
    swapped_predictions: Tensor
    shape_predictions: Tensor
    random_predictions: Tensor
    fill: tuple[float, ...]
    kept_fraction: float
    n_classes: int

    @property
    def n_images(self) -> int:
        """Number of images."""
        return int(self.labels.numel())

    def _accuracy(self, predictions: Tensor) -> float:
        return float((predictions == self.labels).double().mean())

    @property
    def full(self) -> float:
        """Accuracy on the full images."""
        return self._accuracy(self.full_predictions)

    @property
    def subsets(self) -> float:
        """Accuracy on the subsets (the kept positions with the image's own pixels)."""
        return self._accuracy(self.subset_predictions)

    @property
    def swapped(self) -> float:
        """Accuracy when each subset's positions hold another image's pixels (content swapped)."""
        return self._accuracy(self.swapped_predictions)

    @property
    def shape_only(self) -> float:
        """Accuracy when each subset's positions hold one constant colour (the shape alone)."""
        return self._accuracy(self.shape_predictions)

    @property
    def random(self) -> float:
        """Accuracy on random subsets with as many kept positions as each image's subset."""
        return self._accuracy(self.random_predictions)

    @property
    def chance(self) -> float:
        """Accuracy of always predicting the most frequent label (``1 / n_classes`` for balanced labels).

        The null of the tests: a model that ignores the swapped pixels and the shape scores at most this.
        """
        counts = torch.bincount(self.labels, minlength=self.n_classes)
        return max(1.0 / self.n_classes, float(counts.max()) / self.n_images)

    @property
    def donor_agreement(self) -> float:
        """Fraction of content-swapped images predicted as their *donor's* label (the content decides)."""
        return float((self.swapped_predictions == self.labels[self.donors]).double().mean())

    @property
    def same_class_donors(self) -> float:
        """Fraction of images whose donor has the same label (0 when the class counts allow it)."""
        return float((self.labels[self.donors] == self.labels).double().mean())

    def p_value(self, condition: Condition) -> float:
        """One-sided binomial test that the accuracy under ``condition`` exceeds :attr:`chance`.

        ``condition`` is one of ``"full"``, ``"subsets"``, ``"swapped"``, ``"shape_only"``, ``"random"``.
        """
        if condition not in _PREDICTIONS:
            raise param_error("condition", "MaskShapeLeakage.p_value", f"one of {list(_PREDICTIONS)}", repr(condition))
        from scipy.stats import binomtest

        predictions: Tensor = getattr(self, _PREDICTIONS[condition])
        correct = int((predictions == self.labels).sum())
        return float(binomtest(correct, self.n_images, min(self.chance, 1.0), alternative="greater").pvalue)

    @property
    def shape_share(self) -> float:
        """Share of the subsets' accuracy above chance that survives without their content.

        ``(max(swapped, shape_only) - chance) / (subsets - chance)``, clipped at 0; NaN when the subsets are not
        above chance. 1 means the subsets' accuracy is all shape.
        """
        gain = self.subsets - self.chance
        if gain <= 0:
            return math.nan
        return max(0.0, (max(self.swapped, self.shape_only) - self.chance) / gain)

    def _leaky_versions(self) -> list[str] | None:
        """The versions above chance (``"content-swapped"``, ``"constant-colour"``); None when the subsets are not.

        The finding of :meth:`interpretation`: a non-empty list means the shape carries the class.
        """
        if self.p_value("subsets") >= SIGNIFICANCE:
            return None
        versions: tuple[tuple[str, Condition], ...] = (
            ("content-swapped", "swapped"),
            ("constant-colour", "shape_only"),
        )
        return [name for name, cond in versions if self.p_value(cond) < SIGNIFICANCE]

    def interpretation(self) -> str:
        """What a reader should conclude, in a few sentences computed from the numbers."""
        pct = _percent
        chance = pct(self.chance)
        numbers = (
            f"With another image's pixels in each subset's positions the model is right on {pct(self.swapped)} of "
            f"the {self.n_images} images, and on {pct(self.shape_only)} with one constant colour, against "
            f"{chance} chance, {pct(self.subsets)} on the true subsets and {pct(self.random)} on random subsets "
            f"of the same size."
        )
        leaky = self._leaky_versions()
        if leaky is None:
            return (
                f"The subsets themselves are not classified above chance ({pct(self.subsets)} against {chance}), so "
                f"there is no subset accuracy for their shape to explain: this control is not informative here. "
                + numbers
            )
        if leaky:
            share = self.shape_share
            return (
                f"The shape of the kept positions carries the class. {numbers} The {' and '.join(leaky)} "
                f"version{'s are' if len(leaky) > 1 else ' is'} above chance (one-sided binomial test, "
                f"p < {SIGNIFICANCE}): about {pct(min(share, 1.0))} of the subsets' accuracy above chance survives "
                f"without their content, so that much of their 'evidence' is where the pixels are (mask-shape "
                f"leakage), not what they show."
            )
        follow = (
            f" The swapped images are predicted as their donor's class on {pct(self.donor_agreement)} of images: "
            f"the content decides."
            if self.donor_agreement >= 0.5
            else ""
        )
        return (
            f"No sign that the shape of the kept positions carries the class at this sample size. {numbers} Neither "
            f"version is above chance (one-sided binomial test, p >= {SIGNIFICANCE}): the subsets' accuracy comes "
            f"from their pixel values.{follow}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Accuracies, chance, tests, donor statistics, fill colour and the interpretation, JSON-ready."""
        return {
            "full": to_float(self.full),
            "subsets": to_float(self.subsets),
            "swapped": to_float(self.swapped),
            "shape_only": to_float(self.shape_only),
            "random": to_float(self.random),
            "chance": self.chance,
            "p_values": {c: self.p_value(c) for c in _TESTED},
            "shape_share": to_float(self.shape_share),
            "donor_agreement": self.donor_agreement,
            "same_class_donors": self.same_class_donors,
            "fill": list(self.fill),
            "kept_fraction": self.kept_fraction,
            "n_images": self.n_images,
            "n_classes": self.n_classes,
            "interpretation": self.interpretation(),
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """Bar plot of the five accuracies, with chance marked."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        names = ["full images", "subsets", "content\nswapped", "shape only", "random\nsubsets"]
        values = [self.full, self.subsets, self.swapped, self.shape_only, self.random]
        colours = ["grey", "tab:red", "tab:purple", "tab:orange", "tab:blue"]
        bars = ax.bar(names, [100 * v for v in values], color=colours)
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(
                f"{100 * v:.1f}%", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom"
            )
        ax.axhline(100 * self.chance, color="black", linestyle=":", label="chance")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.set_title("Mask-shape leakage")
        ax.legend()
        return ax


def _percent(v: float) -> str:
    return "n/a" if v != v else f"{100 * v:.1f}%"


# ------------------------------------------------------------------------------------------------ helpers
def _keep_masks(subsets: object, images: Tensor, fraction: float, caller: str) -> Tensor:
    """Bool ``(N, 1 or C, H, W)`` keep-masks of a SelectionResult, a PixelSubsetDataset or a bool tensor."""
    n, c, h, w = (int(s) for s in images.shape)
    if isinstance(subsets, SelectionResult):
        if (subsets.n_images, *subsets.image_shape) != (n, c, h, w):
            raise SISValueError(
                f"The `subsets` parameter of {caller} must be the selection of the images, of shape {(n, c, h, w)}. "
                f"Got a SelectionResult of {subsets.n_images} images of shape {subsets.image_shape} instead."
            )
        return subsets._keep_masks(subset_size(format_fraction(fraction, caller), subsets.n_features))
    if isinstance(subsets, PixelSubsetDataset):
        keep = subsets.keep_masks
    elif isinstance(subsets, Tensor):
        if subsets.dtype != torch.bool:
            raise SISTypeError(
                f"The `subsets` parameter of {caller} must be a SelectionResult, a PixelSubsetDataset or a bool "
                f"tensor of keep-masks. Got a tensor of dtype {subsets.dtype} instead."
            )
        keep = subsets
    else:
        raise SISTypeError(
            f"The `subsets` parameter of {caller} must be a SelectionResult, a PixelSubsetDataset or a bool tensor of "
            f"keep-masks. Got {type(subsets).__name__} instead."
        )
    if keep.dim() != 4 or tuple(keep.shape) not in ((n, 1, h, w), (n, c, h, w)):
        raise SISValueError(
            f"The `subsets` parameter of {caller} must hold one keep-mask per image, of shape ({n}, 1, {h}, {w}) or "
            f"({n}, {c}, {h}, {w}). Got shape {tuple(keep.shape)} instead."
        )
    return keep.detach().cpu()


def _format_fill(fill: object, images: Tensor, keep: Tensor, caller: str) -> Tensor:
    """The shape-only colour as a ``(1, C, 1, 1)`` tensor in the images' dtype."""
    c = int(images.shape[1])
    if isinstance(fill, str):
        if fill != "mean":
            raise param_error("fill", caller, "'mean', a number or one number per channel", repr(fill))
        kept = keep.expand(-1, c, -1, -1).to(images.device)
        counts = kept.sum(dim=(0, 2, 3)).clamp(min=1).to(images.dtype)
        values = torch.where(kept, images, torch.zeros((), dtype=images.dtype, device=images.device))
        return (values.sum(dim=(0, 2, 3)) / counts).reshape(1, c, 1, 1)
    if isinstance(fill, bool):
        raise param_error("fill", caller, "'mean', a number or one number per channel", repr(fill))
    if isinstance(fill, (int, float)):
        values = torch.full((c,), float(fill), dtype=images.dtype)
    elif isinstance(fill, (Tensor, Sequence)):
        try:
            values = torch.as_tensor(fill, dtype=images.dtype).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise param_error("fill", caller, "'mean', a number or one number per channel", repr(fill)) from None
        if values.numel() != c:
            raise param_error("fill", caller, f"one number per channel ({c})", f"{values.numel()} numbers")
    else:
        raise SISTypeError(
            f"The `fill` parameter of {caller} must be 'mean', a number or one number per channel. "
            f"Got {type(fill).__name__} instead."
        )
    if not torch.isfinite(values).all():
        raise param_error("fill", caller, "finite", values.tolist())
    return values.to(images.device).reshape(1, c, 1, 1)


def _donors(labels: Tensor, generator: torch.Generator | None) -> Tensor:
    """A random derangement ``d`` (``d[i] != i``) with ``labels[d[i]] != labels[i]`` wherever possible.

    The images are put in a random order grouped by class (classes in random order too) and each one receives
    the image ``m`` places further round the circle, ``m`` being the largest class count: no image then gets
    one of its own class when ``m <= N / 2``, and never itself (``0 < m < N``; a shift of 1 if all share a class).
    """
    n = int(labels.numel())
    device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(n, generator=generator, device=device).cpu()
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    class_order = torch.randperm(int(classes.numel()), generator=generator, device=device).cpu()
    order = perm[torch.argsort(class_order[inverse[perm]], stable=True)]
    largest = int(counts.max())
    shift = largest if largest < n else 1
    donors = torch.empty(n, dtype=torch.long)
    donors[order] = order.roll(-shift)
    return donors


def _random_positions(counts: Tensor, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """Bool ``(N, *shape)`` masks with ``counts[i]`` entries of row ``i`` drawn uniformly without replacement."""
    n = int(counts.numel())
    device = generator.device if generator is not None else torch.device("cpu")
    scores = torch.rand(n, math.prod(shape), generator=generator, device=device).cpu()
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return (ranks < counts.reshape(n, 1)).reshape(n, *shape)


# ------------------------------------------------------------------------------------------------ public door
def mask_shape_leakage(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    subsets: SelectionResult | PixelSubsetDataset | Tensor,
    *,
    fraction: float = 0.05,
    baselines: float | Tensor | None = None,
    fill: Literal["mean"] | float | Sequence[float] | Tensor = "mean",
    generator: torch.Generator | int | None = 0,
    batch_size: int = 256,
) -> MaskShapeLeakage:
    """Does the shape of the kept positions carry the class? Accuracy with the subsets' content swapped or erased.

    For each image ``i`` with keep-mask ``K_i`` (its backward-selection subset) and baseline ``b``, the model
    classifies

    * the full image;
    * the subset ``where(K_i, x_i, b)``;
    * the content-swapped subset ``where(K_i, x_d(i), b)``: the same positions holding image ``d(i)``'s pixels,
      where ``d`` is a seeded random derangement that gives each image a donor of another class wherever the
      class counts allow (:attr:`MaskShapeLeakage.same_class_donors` says how often it could not);
    * the shape-only subset ``where(K_i, fill, b)``: the same positions in one colour for all images;
    * a random subset with as many kept positions as ``K_i``, with the image's own pixels.

    All accuracies are measured against ``labels``. A model that reads only the pattern of kept positions keeps
    its subset accuracy under both replacements; one that reads only the pixel values falls to chance with one
    colour and predicts the donor's class under the swap. :meth:`MaskShapeLeakage.interpretation` says which.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (only called; put it in eval mode yourself).
    images : Tensor
        ``(N, C, H, W)`` images in the model's input space, at least two.
    labels : Tensor
        ``(N,)`` labels (the true labels; pass ``selection.targets`` to measure agreement with the predictions).
    subsets : SelectionResult, PixelSubsetDataset or Tensor
        The subsets' positions: a :class:`SelectionResult` of the images (its top ``fraction`` of features), the
        :class:`PixelSubsetDataset` of :func:`~sis_attr.overinterpretation.backselect_subsets`, or bool
        keep-masks of shape ``(N, 1 or C, H, W)``.
    fraction : float, default 0.05
        With a :class:`SelectionResult`: the kept fraction (ignored otherwise).
    baselines : float or Tensor, optional
        Value of the positions outside the subsets (use the baselines of the backward selection); 0 when None.
    fill : "mean", float, sequence of float or Tensor, default "mean"
        Colour of the shape-only subsets: one number, one per channel, or ``"mean"``, the mean colour of all kept
        pixels of all images (per channel). It must differ from the baseline, or the shape would be invisible.
    generator : torch.Generator or int, default 0
        Randomness of the donors and of the random subsets (a seed, a generator, or None for the global one).
    batch_size : int, default 256
        Images per forward pass.

    Returns
    -------
    MaskShapeLeakage

    Raises
    ------
    SISValueError, SISTypeError
        For invalid arguments, fewer than two images, or a ``fill`` equal to the baseline on every kept position.

    References
    ----------
    .. [1] Y. Rong, T. Leemann, V. Borisov, G. Kasneci and E. Kasneci, "A Consistent and Efficient Evaluation
       Strategy for Attribution Methods", ICML 2022.
    .. [2] S. Balasubramanian and S. Feizi, "Towards Improved Input Masking for Convolutional Neural Networks",
       ICCV 2023.

    Examples
    --------
    A model that reads only *where* the non-zero pixels are (left half: class 0, right half: class 1) keeps its
    accuracy with the content swapped or erased:

    >>> import torch
    >>> class WhereNonZero(torch.nn.Module):
    ...     def forward(self, x):
    ...         seen = (x != 0).any(dim=1).float()
    ...         return torch.stack([seen[..., :2].sum((1, 2)), seen[..., 2:].sum((1, 2))], dim=1)
    >>> images = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(0)) + 0.1
    >>> labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    >>> keep = torch.zeros(8, 1, 4, 4, dtype=torch.bool)
    >>> keep[labels == 0, :, 1, 0] = True
    >>> keep[labels == 1, :, 2, 3] = True
    >>> leak = mask_shape_leakage(WhereNonZero(), images, labels, keep)
    >>> leak.subsets, leak.swapped, leak.shape_only, leak.same_class_donors
    (1.0, 1.0, 1.0, 0.0)
    >>> leak.interpretation().split(".")[0]
    'The shape of the kept positions carries the class'
    """
    caller = "mask_shape_leakage"
    model = format_model(model, caller)
    images = format_images(images, caller)
    n = int(images.shape[0])
    lab = format_labels(labels, n, caller)
    if n < 2:
        raise param_error("images", caller, "at least two images (each subset borrows another image's pixels)", n)
    keep = _keep_masks(subsets, images, fraction, caller)
    base = format_image_baselines(baselines, images, caller)
    fill_t = _format_fill(fill, images, keep, caller)
    gen = format_generator_or_seed(generator, caller)
    batch_size = format_positive_int(batch_size, "batch_size", caller)
    warn_if_training(model, caller)
    return _mask_shape_leakage(model, images, lab, keep, base, fill_t, gen, batch_size, caller)


def _mask_shape_leakage(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    keep: Tensor,
    baselines: float | Tensor,
    fill: Tensor,
    generator: torch.Generator | None,
    batch_size: int,
    caller: str,
) -> MaskShapeLeakage:
    """The analysis on validated arguments (``baselines`` from ``format_image_baselines``)."""
    device = images.device
    base = baselines if isinstance(baselines, float) else baselines.to(device)
    keep_d = keep.to(device)
    base_full = torch.broadcast_to(torch.as_tensor(base, dtype=images.dtype, device=device), images.shape)
    shape_images = torch.where(keep_d, fill.to(images.dtype), base_full)
    if torch.equal(shape_images, base_full):
        raise SISValueError(
            f"The `fill` parameter of {caller} equals the baseline on every kept position "
            f"({[round(v, 6) for v in fill.flatten().tolist()]}), so the shape-only images show no shape. Pass "
            "another colour."
        )

    def predict(x: Tensor) -> Tensor:
        return predict_probabilities(model, x, caller, batch_size=batch_size).argmax(dim=1)

    full_probs = predict_probabilities(model, images, caller, batch_size=batch_size)
    n_classes = int(full_probs.shape[1])
    check_label_range(labels, n_classes, caller)
    donors = _donors(labels, generator)
    counts = keep.flatten(1).sum(dim=1)
    random_keep = _random_positions(counts, tuple(keep.shape[1:]), generator).to(device)
    return MaskShapeLeakage(
        labels=labels,
        donors=donors,
        full_predictions=full_probs.argmax(dim=1),
        subset_predictions=predict(torch.where(keep_d, images, base_full)),
        swapped_predictions=predict(torch.where(keep_d, images[donors.to(device)], base_full)),
        shape_predictions=predict(shape_images),
        random_predictions=predict(torch.where(random_keep, images, base_full)),
        fill=tuple(float(v) for v in fill.flatten().tolist()),
        kept_fraction=float(keep.flatten(1).double().mean(dim=1).mean()),
        n_classes=n_classes,
    )
