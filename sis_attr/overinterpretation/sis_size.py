"""SIS size statistics: is the SIS of a misclassified image smaller? (Carter et al., 4.4, Figures 5, 6 and S3).

From a stored :class:`~sis_attr.overinterpretation.SelectionResult`, the SIS at any threshold comes without
running the model again. For each threshold, only the images whose confidence reaches it have an SIS.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from sis_attr._core.validation import (
    format_labels,
    format_named,
    format_probability_thresholds,
)
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation._common import (
    float_list,
    mean_ci,
    to_float,
)
from sis_attr.overinterpretation.selection import SelectionResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MeanSISSizeCurve",
    "SISSizeStatistics",
    "ThresholdSISStatistics",
    "mean_sis_size_curve",
    "sis_size_statistics",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.9, 0.95, 0.99)
"""SIS confidence thresholds used when none are given (0.99 is the paper's SIS threshold on CIFAR-10)."""


def _welch(a: Tensor, b: Tensor, confidence: float = 0.95) -> tuple[float, float, float]:
    """Welch's t-test of ``mean(a) - mean(b)``: ``(ci_low, ci_high, p_value)``; NaN where undefined."""
    from scipy import stats

    if a.numel() < 2 or b.numel() < 2:
        return math.nan, math.nan, math.nan
    va, vb = float(a.double().var()), float(b.double().var())
    if va == 0.0 and vb == 0.0:
        diff = float(a.double().mean() - b.double().mean())
        return diff, diff, (1.0 if diff == 0.0 else 0.0)
    res = stats.ttest_ind(a.double().numpy(), b.double().numpy(), equal_var=False)
    ci = res.confidence_interval(confidence)
    return float(ci.low), float(ci.high), float(res.pvalue)


@dataclass(frozen=True, eq=False)
class ThresholdSISStatistics:
    """SIS sizes at one threshold, over the images whose confidence reaches it.

    Sizes are in features (pixels for pixel features); ``*_fraction`` values divide by the number of features.
    The percentage increase compares the mean SIS size of correctly classified images with that of
    misclassified ones (positive: correct images have larger SIS, Figure 5); its confidence interval is the
    95% Welch interval for the difference in means, divided by the misclassified mean.

    Attributes
    ----------
    threshold : float
    sizes : Tensor
        ``(N,)`` float64 SIS size of every image, NaN where the confidence is below the threshold.
    correct : Tensor
        ``(N,)`` bool: prediction equals label.
    confidences : Tensor
        ``(N,)`` float64 confidence on the full image.
    n_features : int
    """

    threshold: float
    sizes: Tensor
    correct: Tensor
    confidences: Tensor
    n_features: int

    @property
    def fractions(self) -> Tensor:
        """``(N,)`` SIS sizes as fractions of the input's features (NaN where excluded)."""
        return self.sizes / self.n_features

    @property
    def included(self) -> Tensor:
        """``(N,)`` bool: images with an SIS at this threshold."""
        return ~torch.isnan(self.sizes)

    @property
    def n_images(self) -> int:
        """Images included in the statistics (those with an SIS at this threshold)."""
        return int(self.included.sum())

    @property
    def n_correct(self) -> int:
        """Included images the model classifies correctly."""
        return int((self.included & self.correct).sum())

    @property
    def n_misclassified(self) -> int:
        """Included images the model misclassifies."""
        return int((self.included & ~self.correct).sum())

    def _group(self, correct: bool | None) -> Tensor:
        sel = self.included if correct is None else self.included & (self.correct == correct)
        return self.sizes[sel]

    @property
    def mean_size(self) -> float:
        """Mean SIS size in features over the included images (NaN when none)."""
        g = self._group(None)
        return float(g.mean()) if g.numel() else math.nan

    @property
    def mean_fraction(self) -> float:
        """Mean SIS size as a fraction of the features per image."""
        return self.mean_size / self.n_features

    @property
    def mean_size_correct(self) -> float:
        """Mean SIS size of the correctly classified images (NaN when none)."""
        g = self._group(True)
        return float(g.mean()) if g.numel() else math.nan

    @property
    def mean_size_misclassified(self) -> float:
        """Mean SIS size of the misclassified images (NaN when none)."""
        g = self._group(False)
        return float(g.mean()) if g.numel() else math.nan

    @property
    def difference_ci(self) -> tuple[float, float]:
        """95% Welch confidence interval of ``mean_size_correct - mean_size_misclassified`` (features)."""
        low, high, _ = _welch(self._group(True), self._group(False))
        return low, high

    @property
    def p_value(self) -> float:
        """Two-sided Welch t-test p-value for equal mean SIS sizes of the two groups."""
        return _welch(self._group(True), self._group(False))[2]

    @property
    def percent_increase(self) -> float:
        """``100 * (mean correct - mean misclassified) / mean misclassified`` (NaN without both groups)."""
        mc, mm = self.mean_size_correct, self.mean_size_misclassified
        if math.isnan(mc) or math.isnan(mm) or mm == 0.0:
            return math.nan
        return 100.0 * (mc - mm) / mm

    @property
    def percent_increase_ci(self) -> tuple[float, float]:
        """95% interval of the correct-minus-misclassified mean SIS size, in percent of the misclassified mean."""
        mm = self.mean_size_misclassified
        low, high = self.difference_ci
        if math.isnan(mm) or mm == 0.0:
            return math.nan, math.nan
        return 100.0 * low / mm, 100.0 * high / mm

    def mean_confidence(self, correct: bool) -> tuple[float, float, float]:
        """Mean full-image confidence of the correct (or misclassified) included images and its 95% CI."""
        return mean_ci(self.confidences[self.included & (self.correct == correct)])

    def to_dict(self) -> dict[str, Any]:
        """Counts, mean sizes, intervals and mean confidences at this threshold as JSON-compatible values."""
        ci_d = self.difference_ci
        ci_p = self.percent_increase_ci
        conf_c = self.mean_confidence(True)
        conf_m = self.mean_confidence(False)
        return {
            "threshold": self.threshold,
            "n_images": self.n_images,
            "n_correct": self.n_correct,
            "n_misclassified": self.n_misclassified,
            "mean_size": to_float(self.mean_size),
            "mean_fraction": to_float(self.mean_fraction),
            "mean_size_correct": to_float(self.mean_size_correct),
            "mean_size_misclassified": to_float(self.mean_size_misclassified),
            "difference_ci": [to_float(ci_d[0]), to_float(ci_d[1])],
            "p_value": to_float(self.p_value),
            "percent_increase": to_float(self.percent_increase),
            "percent_increase_ci": [to_float(ci_p[0]), to_float(ci_p[1])],
            "mean_confidence_correct": to_float(conf_c[0]),
            "mean_confidence_correct_ci": [to_float(conf_c[1]), to_float(conf_c[2])],
            "mean_confidence_misclassified": to_float(conf_m[0]),
            "mean_confidence_misclassified_ci": [to_float(conf_m[1]), to_float(conf_m[2])],
            "sizes": float_list(self.sizes),
        }


@dataclass(frozen=True, eq=False)
class SISSizeStatistics:
    """SIS sizes of correctly classified vs misclassified images at several thresholds (Figures 5 and S3).

    Attributes
    ----------
    per_threshold : tuple of ThresholdSISStatistics
        One entry per threshold, in increasing order of threshold.
    accuracy : float
        Fraction of all images whose prediction (``selection.targets``) equals the label.
    n_features : int
    """

    per_threshold: tuple[ThresholdSISStatistics, ...]
    accuracy: float
    n_features: int

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The thresholds, in the order computed."""
        return tuple(s.threshold for s in self.per_threshold)

    def __getitem__(self, threshold: float) -> ThresholdSISStatistics:
        """Statistics at one of the thresholds."""
        for s in self.per_threshold:
            if math.isclose(s.threshold, float(threshold)):
                return s
        raise KeyError(f"No statistics at threshold {threshold}; available: {list(self.thresholds)}.")

    def to_dict(self) -> dict[str, Any]:
        """Accuracy, feature count and the statistics at each threshold as JSON-compatible values."""
        return {
            "accuracy": self.accuracy,
            "n_features": self.n_features,
            "thresholds": list(self.thresholds),
            "per_threshold": [s.to_dict() for s in self.per_threshold],
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """Percentage increase of the mean SIS size of correct over misclassified images (Figure 5)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        x = list(self.thresholds)
        y = [s.percent_increase for s in self.per_threshold]
        cis = [s.percent_increase_ci for s in self.per_threshold]
        err = [
            [yi - lo for yi, (lo, _) in zip(y, cis, strict=True)],
            [hi - yi for yi, (_, hi) in zip(y, cis, strict=True)],
        ]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("SIS threshold")
        ax.set_ylabel("% increase in mean SIS size (correct vs misclassified)")
        return ax

    def plot_confidence(self, ax: Axes | None = None) -> Axes:
        """Mean confidence of correct and misclassified images at each threshold, with 95% CI (Figure S3)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        x = list(self.thresholds)
        for correct, label in ((True, "correctly classified"), (False, "misclassified")):
            stats = [s.mean_confidence(correct) for s in self.per_threshold]
            ax.plot(x, [m for m, _, _ in stats], marker="o", label=label)
            ax.fill_between(x, [lo for _, lo, _ in stats], [hi for _, _, hi in stats], alpha=0.25)
        ax.set_xlabel("SIS threshold")
        ax.set_ylabel("mean confidence")
        ax.legend()
        return ax


def _check_selection(selection: object, caller: str, param: str = "selection") -> SelectionResult:
    if not isinstance(selection, SelectionResult):
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a SelectionResult (from backward_selection). "
            f"Got {type(selection).__name__} instead."
        )
    if selection.n_images == 0:
        raise SISValueError(f"The `{param}` parameter of {caller} must hold at least one image. Got none instead.")
    return selection


def sis_size_statistics(
    selection: SelectionResult,
    labels: Tensor,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> SISSizeStatistics:
    """SIS sizes of correctly classified vs misclassified images, per threshold (Carter et al., 4.4).

    For each threshold, over the images whose confidence reaches it: SIS sizes (features and fraction of the
    input), the mean size of correctly classified and of misclassified images, the percentage increase of the
    former over the latter with a 95% Welch confidence interval for the difference in means, and the mean
    confidence of each group (Figures 5 and S3).

    Parameters
    ----------
    selection : SelectionResult
        Backward selection on the images, explaining the predicted class.
    labels : Tensor
        ``(N,)`` true labels; an image is correct when ``selection.targets`` equals its label.
    thresholds : sequence of float, default (0.9, 0.95, 0.99)
        SIS thresholds in (0, 1].

    Returns
    -------
    SISSizeStatistics

    Examples
    --------
    >>> import torch
    >>> from sis_attr.overinterpretation import backward_selection
    >>> from sis_attr.testing import SumGridClassifier
    >>> images = torch.tensor([[[[1.0, 2.0], [0.5, -1.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    >>> sel = backward_selection(SumGridClassifier(), images, show_progress=False)
    >>> stats = sis_size_statistics(sel, torch.tensor([0, 1]), thresholds=[0.9])  # the first is misclassified
    >>> stats.accuracy, stats[0.9].mean_size_correct, stats[0.9].mean_size_misclassified
    (0.5, 3.0, 2.0)
    >>> stats[0.9].percent_increase
    50.0
    """
    caller = "sis_size_statistics"
    selection = _check_selection(selection, caller)
    lab = format_labels(labels, selection.n_images, caller)
    ts = format_probability_thresholds(thresholds, caller)
    return _sis_size_statistics(selection, lab, ts, warn_at=ts)


def _sis_size_statistics(
    selection: SelectionResult, labels: Tensor, thresholds: tuple[float, ...], *, warn_at: Collection[float]
) -> SISSizeStatistics:
    """Statistics at validated ``thresholds``; empty SIS are warned about at the thresholds in ``warn_at`` only."""
    correct = selection.targets == labels
    per = []
    for t in thresholds:  # a loop, not a generator: the warnings' stacklevel counts frames
        sizes = selection._sis_sizes(t, warn=t in warn_at, stacklevel=5)
        per.append(
            ThresholdSISStatistics(
                threshold=t,
                sizes=sizes,
                correct=correct,
                confidences=selection.confidences,
                n_features=selection.n_features,
            )
        )
    return SISSizeStatistics(
        per_threshold=tuple(per), accuracy=float(correct.double().mean()), n_features=selection.n_features
    )


@dataclass(frozen=True, eq=False)
class MeanSISSizeCurve:
    """Mean SIS size (fraction of the input) against the threshold, per model, with 95% CI (Figure 6).

    Attributes
    ----------
    thresholds : tuple of float
    mean : dict of str to Tensor
        Per model, ``(T,)`` mean SIS size as a fraction of the features (NaN where no image reaches a threshold).
    ci_low, ci_high : dict of str to Tensor
        Per model, the bounds of the Student-t 95% confidence interval of the mean.
    n_images : dict of str to Tensor
        Per model, ``(T,)`` images with an SIS at each threshold.
    accuracies : dict of str to float
        Model accuracies for the legend, when given.
    """

    thresholds: tuple[float, ...]
    mean: dict[str, Tensor]
    ci_low: dict[str, Tensor]
    ci_high: dict[str, Tensor]
    n_images: dict[str, Tensor]
    accuracies: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Thresholds and, per model, mean SIS sizes with their intervals as JSON-compatible values."""
        return {
            "thresholds": list(self.thresholds),
            "models": {
                name: {
                    "mean_fraction": float_list(self.mean[name]),
                    "ci_low": float_list(self.ci_low[name]),
                    "ci_high": float_list(self.ci_high[name]),
                    "n_images": [int(v) for v in self.n_images[name].tolist()],
                    **({"accuracy": self.accuracies[name]} if name in self.accuracies else {}),
                }
                for name in self.mean
            },
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """Mean SIS size against threshold, one line per model with its 95% CI shaded (Figure 6)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        x = list(self.thresholds)
        for name, mean in self.mean.items():
            label = f"{name} ({self.accuracies[name]:.3f})" if name in self.accuracies else name
            ax.plot(x, mean.tolist(), marker="o", label=label)
            ax.fill_between(x, self.ci_low[name].tolist(), self.ci_high[name].tolist(), alpha=0.2)
        ax.set_xlabel("SIS threshold")
        ax.set_ylabel("mean SIS size (fraction of image)")
        ax.legend()
        return ax


def mean_sis_size_curve(
    selections: Mapping[str, SelectionResult],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    accuracies: Mapping[str, float] | None = None,
) -> MeanSISSizeCurve:
    """Mean SIS size (fraction of the input) at each threshold for several models (Figure 6).

    Parameters
    ----------
    selections : dict of str to SelectionResult
        One backward selection per model (for instance on the same test images).
    thresholds : sequence of float, default (0.9, 0.95, 0.99)
    accuracies : dict of str to float, optional
        Model accuracies shown in the legend, as in the paper.

    Returns
    -------
    MeanSISSizeCurve

    Examples
    --------
    >>> import torch
    >>> from sis_attr.overinterpretation import backward_selection
    >>> from sis_attr.testing import SumGridClassifier
    >>> images = torch.tensor([[[[1.0, 2.0], [0.5, -1.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    >>> sel = backward_selection(SumGridClassifier(), images, show_progress=False)
    >>> sel.sis_sizes(0.85).tolist(), sel.sis_sizes(0.9).tolist()
    ([1.0, 2.0], [2.0, 3.0])
    >>> curve = mean_sis_size_curve({"sum": sel}, thresholds=[0.85, 0.9])
    >>> curve.mean["sum"].tolist(), curve.n_images["sum"].tolist()  # fractions of the 4 pixels
    ([0.375, 0.625], [2, 2])
    """
    caller = "mean_sis_size_curve"
    sels = format_named(selections, caller, "selections", "SelectionResult objects")
    for name, sel in sels.items():
        _check_selection(sel, caller, param=f"selections['{name}']")
    ts = format_probability_thresholds(thresholds, caller)
    accs: dict[str, float] = {}
    if accuracies is not None:
        if not isinstance(accuracies, Mapping):
            raise SISTypeError(
                f"The `accuracies` parameter of {caller} must be None or a dict of model names to accuracies. "
                f"Got {type(accuracies).__name__} instead."
            )
        accs = {str(k): float(v) for k, v in accuracies.items()}
    return _mean_sis_size_curve(sels, ts, accs, warn=True)


def _mean_sis_size_curve(
    selections: Mapping[str, SelectionResult],
    thresholds: tuple[float, ...],
    accuracies: dict[str, float],
    *,
    warn: bool,
) -> MeanSISSizeCurve:
    """The curve of validated arguments; ``warn=False`` when the caller has already warned about empty SIS."""
    mean, low, high, count = {}, {}, {}, {}
    for name, sel in selections.items():
        rows = []
        for t in thresholds:
            sizes = sel._sis_sizes(t, warn=warn, stacklevel=5)
            frac = sizes[~torch.isnan(sizes)] / sel.n_features
            rows.append((*mean_ci(frac), int(frac.numel())))
        mean[name] = torch.tensor([r[0] for r in rows], dtype=torch.float64)
        low[name] = torch.tensor([r[1] for r in rows], dtype=torch.float64)
        high[name] = torch.tensor([r[2] for r in rows], dtype=torch.float64)
        count[name] = torch.tensor([r[3] for r in rows], dtype=torch.long)
    return MeanSISSizeCurve(
        thresholds=thresholds, mean=mean, ci_low=low, ci_high=high, n_images=count, accuracies=accuracies
    )
