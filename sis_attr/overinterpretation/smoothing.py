"""Smoothed SIS: does the SIS survive when the pixels bordering it are added back?

An SIS is a set of pixels on which, with everything else at the baseline, the model is confident. Springer (2022)
reported that adding the pixels that border each SIS (a one-pixel dilation) can make the confidence collapse, as
for an adversarial pattern: the SIS would then be a fragile arrangement rather than evidence the model would also
find in the SIS's own neighbourhood.

:func:`smoothed_sis` measures, per image with an SIS, the confidence of the explained class on

* the SIS alone;
* the SIS dilated by one pixel: every pixel location within the 3x3 neighbourhood of a kept location (all
  channels), clipped at the image border;
* a random set of pixel locations as large as the dilated SIS (is the size alone enough?);
* the SIS plus as many random other locations as the dilation added (is it the *bordering* pixels that matter,
  or any added pixels?).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sis_attr._core.validation import (
    check_label_range,
    format_generator_or_seed,
    format_image_baselines,
    format_images,
    format_model,
    format_positive_int,
    format_target,
    format_threshold,
    warn_if_training,
)
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation._common import float_list, predict_probabilities, to_float
from sis_attr.overinterpretation.leakage import _random_positions
from sis_attr.overinterpretation.selection import SelectionResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["SmoothedSIS", "smoothed_sis"]

SIGNIFICANCE = 0.01
"""Level of the exact McNemar tests used by :meth:`SmoothedSIS.interpretation`."""


@dataclass(frozen=True, eq=False)
class SmoothedSIS:
    """Confidence of the explained class on each SIS, its one-pixel dilation and same-size random controls.

    Only images with an SIS are kept (``indices`` says which of the inputs they are).

    Attributes
    ----------
    threshold : float
        The SIS threshold (a confidence of at least this makes a set sufficient).
    indices : Tensor
        ``(n,)`` int64 positions, among the inputs, of the images with an SIS.
    targets : Tensor
        ``(n,)`` int64 class explained per image.
    full_confidences, sis_confidences, dilated_confidences, random_confidences, sis_plus_random_confidences : Tensor
        ``(n,)`` float64 probability of the target on the full image, on the SIS, on the dilated SIS, on a random
        set of locations as large as the dilated SIS, and on the SIS plus as many random locations as the
        dilation added.
    sis_masks : Tensor
        ``(n, 1 or C, H, W)`` bool keep-masks of the SIS.
    dilated_masks, random_masks, sis_plus_random_masks : Tensor
        ``(n, 1, H, W)`` bool keep-masks of pixel locations (all channels kept).
    n_inputs : int
        Number of images passed (with or without an SIS).
    """

    threshold: float
    indices: Tensor
    targets: Tensor
    full_confidences: Tensor
    sis_confidences: Tensor
    dilated_confidences: Tensor
    random_confidences: Tensor
    sis_plus_random_confidences: Tensor
    sis_masks: Tensor
    dilated_masks: Tensor
    random_masks: Tensor
    sis_plus_random_masks: Tensor
    n_inputs: int

    @property
    def n_images(self) -> int:
        """Images with an SIS (the ones compared)."""
        return int(self.indices.numel())

    @property
    def sis_sizes(self) -> Tensor:
        """``(n,)`` pixel locations in each SIS (a location counts when any of its channels is kept)."""
        return self.sis_masks.any(dim=1).flatten(1).sum(dim=1)

    @property
    def dilated_sizes(self) -> Tensor:
        """``(n,)`` pixel locations in each dilated SIS (and in each random control)."""
        return self.dilated_masks.flatten(1).sum(dim=1)

    def sufficient(self, which: str) -> float:
        """Fraction of images whose ``which`` set reaches the threshold.

        ``which`` is ``"sis"``, ``"dilated"``, ``"random"`` or ``"sis_plus_random"``.
        """
        return float((self._confidences(which) >= self.threshold).double().mean()) if self.n_images else math.nan

    def _confidences(self, which: str) -> Tensor:
        names = ("full", "sis", "dilated", "random", "sis_plus_random")
        if which not in names:
            raise SISValueError(
                f"The `which` parameter of SmoothedSIS.sufficient must be one of {list(names)}. Got {which!r} instead."
            )
        out: Tensor = getattr(self, f"{which}_confidences")
        return out

    def mean_confidence(self, which: str) -> float:
        """Mean confidence of the target on the ``which`` set (names as in :meth:`sufficient`, or ``"full"``)."""
        return float(self._confidences(which).mean()) if self.n_images else math.nan

    def mcnemar(self, which: str) -> float:
        """Exact McNemar p-value: does the ``which`` set change how many images stay sufficient, against the SIS?"""
        from scipy.stats import binomtest

        base = self.sis_confidences >= self.threshold
        other = self._confidences(which) >= self.threshold
        lost, gained = int((base & ~other).sum()), int((~base & other).sum())
        return 1.0 if lost + gained == 0 else float(binomtest(lost, lost + gained, 0.5).pvalue)

    def _breaks(self) -> bool | None:
        """Whether the dilation significantly lowers the share of sufficient sets; None without any SIS.

        The finding of :meth:`interpretation`.
        """
        if self.n_images == 0:
            return None
        return self.sufficient("dilated") < self.sufficient("sis") and self.mcnemar("dilated") < SIGNIFICANCE

    def interpretation(self) -> str:
        """What a reader should conclude, in a few sentences computed from the numbers."""
        if self.n_images == 0:
            return (
                f"None of the {self.n_inputs} images has an SIS at threshold {self.threshold:g}: there is nothing to "
                "smooth."
            )
        pct = _percent
        s, d = self.sufficient("sis"), self.sufficient("dilated")
        r, p = self.sufficient("random"), self.sufficient("sis_plus_random")
        sizes = f"{float(self.sis_sizes.double().mean()):.1f} -> {float(self.dilated_sizes.double().mean()):.1f}"
        numbers = (
            f"Of {self.n_images} SIS ({pct(s)} sufficient alone, mean confidence {self.mean_confidence('sis'):.3f}), "
            f"{pct(d)} stay at or above the threshold {self.threshold:g} when dilated by one pixel (mean size "
            f"{sizes} pixels, mean confidence {self.mean_confidence('dilated'):.3f})."
        )
        if self._breaks():
            text = (
                f"Adding the bordering pixels breaks the SIS. {numbers} The dilated sets contain the SIS, yet the "
                f"model loses its confidence: these SIS behave like a fragile, adversarial-like pattern rather than "
                f"evidence the model also finds around them (Springer, 2022)."
            )
            if p > d and self.mcnemar("sis_plus_random") >= SIGNIFICANCE:
                text += (
                    f" Adding as many random other pixels instead keeps {pct(p)} sufficient: it is the SIS's own "
                    "neighbourhood that overturns the decision."
                )
            else:
                text += (
                    f" Adding as many random other pixels also leaves only {pct(p)} sufficient: any added context does."
                )
        else:
            text = (
                f"The SIS survive smoothing. {numbers} No significant loss (exact McNemar test, p >= {SIGNIFICANCE}): "
                f"their evidence is not a fragile pattern that the bordering pixels erase."
            )
        share = float(self.dilated_sizes.double().mean()) / float(self.dilated_masks[0].numel())
        size_note = (
            "so a set of this size suffices even at random: the SIS's size says little about what the model needs."
            if r >= 0.5
            else "so it is which pixels the SIS holds, not how many, that carries the evidence."
        )
        text += (
            f" A random set as large as the dilated SIS ({pct(share)} of the pixels) is sufficient for {pct(r)} of the "
            f"images (mean confidence {self.mean_confidence('random'):.3f}), {size_note}"
        )
        return text

    def to_dict(self) -> dict[str, Any]:
        """Sufficient fractions, mean confidences, sizes, tests, per-image confidences and the interpretation."""
        sets = ("sis", "dilated", "random", "sis_plus_random")
        return {
            "threshold": self.threshold,
            "n_images": self.n_images,
            "n_inputs": self.n_inputs,
            "indices": [int(i) for i in self.indices.tolist()],
            "sufficient": {w: to_float(self.sufficient(w)) for w in sets},
            "mean_confidence": {w: to_float(self.mean_confidence(w)) for w in ("full", *sets)},
            "mcnemar_p": {w: self.mcnemar(w) for w in sets[1:]},
            "mean_sis_size": float(self.sis_sizes.double().mean()) if self.n_images else None,
            "mean_dilated_size": float(self.dilated_sizes.double().mean()) if self.n_images else None,
            "confidences": {w: float_list(self._confidences(w)) for w in ("full", *sets)},
            "interpretation": self.interpretation(),
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """Box plot of the per-image confidences on each set, with the threshold marked."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        sets = ("sis", "dilated", "sis_plus_random", "random")
        labels = ["SIS", "dilated SIS", "SIS + random", "random\n(dilated size)"]
        if self.n_images:
            ax.boxplot([self._confidences(w).numpy() for w in sets])
        ax.set_xticks(range(1, len(sets) + 1), labels)
        ax.axhline(self.threshold, color="tab:red", linestyle="--", label=f"threshold {self.threshold:g}")
        ax.set_ylabel("confidence of the explained class")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"Smoothed SIS ({self.n_images} images)")
        ax.legend()
        return ax


def _percent(v: float) -> str:
    return "n/a" if v != v else f"{100 * v:.1f}%"


def _dilate(positions: Tensor) -> Tensor:
    """One-pixel dilation of ``(n, 1, H, W)`` bool location masks: the 3x3 neighbourhood, clipped at the border."""
    return F.max_pool2d(positions.float(), kernel_size=3, stride=1, padding=1) > 0


def _smoothing_masks(sis_masks: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """The dilated, random and SIS-plus-random ``(n, 1, H, W)`` location masks of ``(n, 1 or C, H, W)`` SIS masks.

    The random draws come from ``generator`` in the order :func:`smoothed_sis` makes them (the audit draws the
    same sets before reading the images block by block).
    """
    positions = sis_masks.any(dim=1, keepdim=True)
    dilated = _dilate(positions)
    n, shape = int(positions.shape[0]), tuple(positions.shape[1:])
    sis_count, dilated_count = positions.flatten(1).sum(dim=1), dilated.flatten(1).sum(dim=1)
    random_masks = _random_positions(dilated_count, shape, generator)
    # SIS + random: rank the non-SIS locations at random (SIS locations last) and add as many as the dilation did
    device_gen = generator.device if generator is not None else torch.device("cpu")
    scores = torch.rand(n, math.prod(shape), generator=generator, device=device_gen).cpu()
    scores[positions.flatten(1)] = 2.0
    ranks = scores.argsort(dim=1).argsort(dim=1)
    added = (ranks < (dilated_count - sis_count).reshape(n, 1)).reshape(n, *shape)
    return dilated, random_masks, positions | added


def _sis_masks_from(
    sis: object, images: Tensor, threshold: float, target: object, caller: str
) -> tuple[Tensor, Tensor | None, Tensor]:
    """``(masks, targets or None, has_sis)`` from a SelectionResult or bool keep-masks."""
    n, c, h, w = (int(s) for s in images.shape)
    if isinstance(sis, SelectionResult):
        if (sis.n_images, *sis.image_shape) != (n, c, h, w):
            raise SISValueError(
                f"The `sis` parameter of {caller} must be the selection of the images, of shape {(n, c, h, w)}. "
                f"Got a SelectionResult of {sis.n_images} images of shape {sis.image_shape} instead."
            )
        if target is not None:
            raise SISValueError(
                f"The `target` parameter of {caller} must be None with a SelectionResult (its targets are used). "
                f"Got {type(target).__name__} instead."
            )
        masks = sis._sis_masks(threshold, warn=False)  # all False without an SIS (or with an empty one)
        return masks, sis.targets, masks.flatten(1).any(dim=1)
    if not isinstance(sis, Tensor) or sis.dtype != torch.bool:
        got = f"a tensor of dtype {sis.dtype}" if isinstance(sis, Tensor) else type(sis).__name__
        raise SISTypeError(
            f"The `sis` parameter of {caller} must be a SelectionResult or a bool tensor of SIS keep-masks. "
            f"Got {got} instead."
        )
    if sis.dim() != 4 or tuple(sis.shape) not in ((n, 1, h, w), (n, c, h, w)):
        raise SISValueError(
            f"The `sis` parameter of {caller} must hold one keep-mask per image, of shape ({n}, 1, {h}, {w}) or "
            f"({n}, {c}, {h}, {w}). Got shape {tuple(sis.shape)} instead."
        )
    masks = sis.detach().cpu()
    tgt = None if target is None else format_target(target, n, None, torch.device("cpu"), caller)
    return masks, tgt, masks.flatten(1).any(dim=1)


def smoothed_sis(
    model: nn.Module,
    images: Tensor,
    sis: SelectionResult | Tensor,
    *,
    threshold: float,
    target: int | Tensor | None = None,
    baselines: float | Tensor | None = None,
    generator: torch.Generator | int | None = 0,
    batch_size: int = 256,
) -> SmoothedSIS:
    """Confidence on each SIS, on the SIS dilated by one pixel, and on same-size random sets (Springer, 2022).

    For every image with a non-empty SIS, the confidence of the explained class (softmax probability) is measured
    with everything outside each of these sets at the baseline:

    * the SIS;
    * the SIS dilated by one pixel: the locations within one pixel (3x3 neighbourhood, diagonals included) of
      a location where the SIS keeps any channel, with all their channels, clipped at the image border;
    * a random set of as many locations as the dilated SIS, uniformly drawn;
    * the SIS plus as many random locations outside it as the dilation added.

    Run it once per model (each with its own SIS). :meth:`SmoothedSIS.interpretation` says whether the bordering
    pixels break the SIS.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (only called; put it in eval mode yourself).
    images : Tensor
        ``(N, C, H, W)`` images in the model's input space.
    sis : SelectionResult or Tensor
        A :class:`SelectionResult` of the images (its SIS at ``threshold``, on its targets; images without one
        are left out), or bool SIS keep-masks ``(N, 1 or C, H, W)`` (all-False masks mark images without an SIS).
    threshold : float
        The SIS threshold in (0, 1]: the confidence that makes a set sufficient.
    target : int or Tensor, optional
        With keep-masks: the class explained per image; the model's prediction on the full image when None.
        Must be None with a :class:`SelectionResult`.
    baselines : float or Tensor, optional
        Value of the positions outside each set (the baselines of the SIS); 0 when None.
    generator : torch.Generator or int, default 0
        Randomness of the random sets (a seed, a generator, or None for the global one).
    batch_size : int, default 256
        Images per forward pass.

    Returns
    -------
    SmoothedSIS

    Examples
    --------
    A model whose evidence is the number of bright pixels survives smoothing (more kept pixels, more evidence):

    >>> import torch
    >>> from sis_attr.testing import SumGridClassifier
    >>> images = torch.ones(3, 1, 2, 2)
    >>> sis = torch.zeros(3, 1, 2, 2, dtype=torch.bool)
    >>> sis[:, :, 0, 0] = True
    >>> result = smoothed_sis(SumGridClassifier(), images, sis, threshold=0.7)
    >>> result.dilated_masks[0, 0].tolist()  # one corner pixel dilates to the whole 2x2 image
    [[True, True], [True, True]]
    >>> result.sufficient("sis"), result.sufficient("dilated"), round(result.mean_confidence("dilated"), 3)
    (1.0, 1.0, 0.982)
    """
    caller = "smoothed_sis"
    model = format_model(model, caller)
    images = format_images(images, caller)
    t = format_threshold(threshold, caller)
    masks, targets, has = _sis_masks_from(sis, images, t, target, caller)
    base = format_image_baselines(baselines, images, caller)
    gen = format_generator_or_seed(generator, caller)
    batch_size = format_positive_int(batch_size, "batch_size", caller)
    warn_if_training(model, caller)
    return _smoothed_sis(model, images, masks, targets, has, t, base, gen, batch_size, caller)


def _smoothed_sis(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    targets: Tensor | None,
    has_sis: Tensor,
    threshold: float,
    baselines: float | Tensor,
    generator: torch.Generator | None,
    batch_size: int,
    caller: str,
) -> SmoothedSIS:
    """The analysis on validated arguments (``baselines`` from ``format_image_baselines``)."""
    n_inputs = int(images.shape[0])
    device = images.device
    full = predict_probabilities(model, images, caller, batch_size=batch_size)
    if targets is None:
        targets = full.argmax(dim=1)
    else:
        check_label_range(targets, int(full.shape[1]), caller, param="target")
    idx = torch.nonzero(has_sis).flatten()
    x = images[idx.to(device)]
    base = baselines if isinstance(baselines, float) else baselines[idx.to(baselines.device)].to(device)
    tgt = targets[idx]
    sis_masks = masks[idx]
    n = int(idx.numel())
    dilated, random_masks, plus_random = _smoothing_masks(sis_masks, generator)

    def confidence(keep: Tensor) -> Tensor:
        if n == 0:
            return torch.zeros(0, dtype=torch.float64)
        masked = torch.where(keep.to(device), x, base)
        probs = predict_probabilities(model, masked, caller, batch_size=batch_size)
        return probs.gather(1, tgt.unsqueeze(1)).squeeze(1)

    return SmoothedSIS(
        threshold=threshold,
        indices=idx,
        targets=tgt,
        full_confidences=full[idx].gather(1, tgt.unsqueeze(1)).squeeze(1),
        sis_confidences=confidence(sis_masks),
        dilated_confidences=confidence(dilated),
        random_confidences=confidence(random_masks),
        sis_plus_random_confidences=confidence(plus_random),
        sis_masks=sis_masks,
        dilated_masks=dilated,
        random_masks=random_masks,
        sis_plus_random_masks=plus_random,
        n_inputs=n_inputs,
    )
