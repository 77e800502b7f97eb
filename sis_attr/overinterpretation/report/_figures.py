"""Figures of the report and comparison pages, drawn from result objects (matplotlib, imported lazily).

Nothing here computes an analysis: each figure draws numbers a result already holds, and a figure whose
result is missing (the SIS-size curve of a report built without one) is left out. The figures of a page are
listed as :class:`FigureSpec` (file name, caption, a function that draws a new Agg figure) for the writer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation.report._format import class_name, fmt_signed
from sis_attr.overinterpretation.report._results import AuditReport, SISExamples
from sis_attr.overinterpretation.sis_size import MeanSISSizeCurve

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.gridspec import GridSpecBase

__all__: list[str] = []  # rendering internals: the public doors are SISExamples.plot and AuditReport.save

_EXAMPLE_ROWS = ("image", "SIS only", "SIS location")

LEAKAGE_FIGURE = "mask_shape_leakage.png"
"""File name of the mask-shape leakage figure (shown in its section of the report page)."""

SMOOTHING_FIGURE = "smoothed_sis.png"
"""File name of the smoothed-SIS figure (shown in its section of the report page)."""


@dataclass(frozen=True)
class FigureSpec:
    """One figure of a page: where it goes, what its caption says, and how to draw it."""

    filename: str
    caption: str
    draw: Callable[[], Figure]


# ------------------------------------------------------------------------------------------------ helpers
def mpl_text(text: str, limit: int = 18) -> str:
    """A label safe for matplotlib: ``$`` would start mathtext; long names are shortened."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure on the Agg canvas, without pyplot (no global backend change, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _display_range(images: Tensor) -> tuple[float, float]:
    lo, hi = float(images.min()), float(images.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _to_display(image: Tensor, lo: float, hi: float) -> Any:
    """``(C, H, W)`` -> numpy ``(H, W)`` (one channel) or ``(H, W, 3)`` in [0, 1]."""
    x = ((image.detach().double().cpu() - lo) / (hi - lo)).clamp(0, 1)
    if x.shape[0] == 1:
        return x[0].numpy()
    if x.shape[0] != 3:
        x = x[:3] if x.shape[0] > 3 else x[:1].expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy()


def _location_overlay(image: Tensor, mask: Tensor, lo: float, hi: float) -> Any:
    """The image faded to light grey with the SIS positions in red (paper Figure 3, middle row)."""
    x = ((image.detach().double().cpu() - lo) / (hi - lo)).clamp(0, 1)
    grey = x.mean(dim=0) if x.shape[0] != 1 else x[0]
    if x.shape[0] == 1:
        grey = 1.0 - grey  # single-channel images are shown dark-on-light
    faded = 0.55 + 0.45 * grey
    rgb = torch.stack([faded, faded, faded], dim=-1)
    m = mask.cpu().bool()
    rgb[m] = torch.tensor([0.85, 0.05, 0.05], dtype=rgb.dtype)
    return rgb.numpy()


# ------------------------------------------------------------------------------------------------ examples
def _examples_figsize(n: int) -> tuple[float, float]:
    return max(3.0, 1.3 * max(1, n) + 1.0), 5.0


def _title_examples_figure(fig: Figure, examples: SISExamples) -> None:
    fig.suptitle(f"Sufficient input subsets (threshold {examples.threshold})", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.84, bottom=0.03, hspace=0.55, wspace=0.15)


def _no_examples(ax: Axes, examples: SISExamples) -> None:
    ax.text(0.5, 0.5, f"No example (no image reaches confidence {examples.threshold:g}?)", ha="center")
    ax.set_axis_off()


def _split_axes(ax: Axes, n: int) -> np.ndarray:
    """Replace ``ax`` by a ``(3, n)`` grid of Axes covering the same area."""
    import numpy as np

    fig = ax.figure
    spec = ax.get_subplotspec()
    grid: GridSpecBase
    if spec is not None:
        grid = spec.subgridspec(3, n, hspace=0.55, wspace=0.15)
    else:  # an Axes placed by position (fig.add_axes): a grid over its bounding box
        box = ax.get_position()
        grid = fig.add_gridspec(3, n, left=box.x0, right=box.x1, bottom=box.y0, top=box.y1, hspace=0.55, wspace=0.15)
    ax.remove()
    axes = np.empty((3, n), dtype=object)
    for row in range(3):
        for col in range(n):
            axes[row, col] = fig.add_subplot(grid[row, col])
    return axes


def _as_axes_grid(ax: object, n: int) -> np.ndarray:
    import numpy as np
    from matplotlib.axes import Axes

    try:
        axes = np.asarray(ax, dtype=object)
    except Exception as err:  # ragged nesting and the like
        raise SISTypeError(
            "The `ax` parameter of SISExamples.plot must be None, a matplotlib Axes or a (3, n) array of Axes. "
            f"Got {type(ax).__name__} instead."
        ) from err
    if axes.ndim != 2 or axes.shape != (3, n):
        raise SISValueError(
            f"The `ax` parameter of SISExamples.plot must hold one Axes per row (image, SIS only, SIS location) "
            f"and example: expected shape (3, {n}), got {tuple(axes.shape)}."
        )
    if not all(isinstance(a, Axes) for a in axes.flat):
        bad = next(type(a).__name__ for a in axes.flat if not isinstance(a, Axes))
        raise SISTypeError(
            f"The `ax` parameter of SISExamples.plot must be an array of matplotlib Axes. Got an array holding {bad}."
        )
    return axes


def draw_examples(examples: SISExamples, axes: np.ndarray) -> None:
    """Draw ``examples`` into a ``(3, n)`` array of Axes (titles and row labels; nothing figure-wide)."""
    n = len(examples)
    lo, hi = _display_range(torch.cat([examples.images, examples.sis_images]))
    one_channel = examples.images.shape[1] == 1
    kw: dict[str, Any] = {"cmap": "gray_r", "vmin": 0.0, "vmax": 1.0} if one_channel else {}
    for j in range(n):
        pred = examples.predictions[j]
        axes[0, j].imshow(_to_display(examples.images[j], lo, hi), interpolation="nearest", **kw)
        axes[0, j].set_title(
            f"{mpl_text(class_name(examples.class_names, pred))}\np={examples.confidences[j]:.3f}", fontsize=8
        )
        axes[1, j].imshow(_to_display(examples.sis_images[j], lo, hi), interpolation="nearest", **kw)
        axes[1, j].set_title(f"{examples.sis_sizes[j]} feat.\np={examples.sis_confidences[j]:.3f}", fontsize=8)
        axes[2, j].imshow(_location_overlay(examples.images[j], examples.sis_masks[j], lo, hi), interpolation="nearest")
        for row in range(3):
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
    for row, text in enumerate(_EXAMPLE_ROWS):
        axes[row, 0].set_ylabel(text, fontsize=9)


def plot_examples(examples: SISExamples, ax: object = None, *, fig: Figure | None = None) -> np.ndarray:
    """:meth:`SISExamples.plot` (which see); ``fig`` is the deprecated whole-figure form."""
    import numpy as np
    from matplotlib.axes import Axes

    n = len(examples)
    owns_figure = ax is None
    if ax is None:
        if fig is None:
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=_examples_figsize(n))
        if n == 0:
            _no_examples(fig.add_subplot(1, 1, 1), examples)
            return np.empty((3, 0), dtype=object)
        axes = np.asarray(fig.subplots(3, n, squeeze=False), dtype=object)
    elif isinstance(ax, Axes):
        if n == 0:
            _no_examples(ax, examples)
            return np.empty((3, 0), dtype=object)
        axes = _split_axes(ax, n)
    else:
        axes = _as_axes_grid(ax, n)
        if n == 0:
            return axes
    draw_examples(examples, axes)
    if owns_figure and fig is not None:
        _title_examples_figure(fig, examples)
    return axes


def examples_figure(examples: SISExamples) -> Figure:
    """The examples grid on a new Agg figure, titled with the threshold."""
    fig = new_figure(*_examples_figsize(len(examples)))
    if len(examples) == 0:
        _no_examples(fig.add_subplot(1, 1, 1), examples)
        return fig
    axes = fig.subplots(3, len(examples), squeeze=False)
    draw_examples(examples, axes)
    _title_examples_figure(fig, examples)
    return fig


# ------------------------------------------------------------------------------------------------ one report
def draw_confidence_drop(report: AuditReport, ax: Axes) -> None:
    """The histogram of confidence drops (``ConfidenceDrop.plot``), with readable ticks and legend."""
    from matplotlib.ticker import MaxNLocator

    drop = report.confidence
    drop.plot(ax)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3), useOffset=False)
    handles, labels = ax.get_legend_handles_labels()
    labels = [f"mean {fmt_signed(drop.mean)} (std {drop.std:.3f})" if lab.startswith("mean") else lab for lab in labels]
    ax.legend(handles, labels, fontsize=8)
    ax.set_xlabel("confidence on full image minus on its subset", fontsize=9)


def frame_size_curve(ax: Axes, curves: list[MeanSISSizeCurve]) -> None:
    """Start the y-axis of a SIS-size curve at 0 (no zoom onto a flat line); note bands of zero width."""
    tops = [float(v) for c in curves for part in (c.mean, c.ci_high) for t in part.values() for v in t.tolist()]
    finite = [v for v in tops if math.isfinite(v)]
    top = max(finite) if finite else 1.0
    ax.set_ylim(0.0, max(1.3 * top, 0.01))
    flat = [
        name
        for c in curves
        for name in c.mean
        if all(
            math.isfinite(lo) and math.isfinite(hi) and hi - lo < 1e-9
            for lo, hi in zip(c.ci_low[name].tolist(), c.ci_high[name].tolist(), strict=True)
        )
    ]
    if flat:
        ax.text(
            0.02,
            0.03,
            "no band: every SIS the same size (" + ", ".join(flat) + ")",
            transform=ax.transAxes,
            fontsize=7,
            color="#555555",
        )


def _single(draw: Callable[[Axes], object], size: tuple[float, float] = (5.0, 3.8)) -> Callable[[], Figure]:
    def make() -> Figure:
        fig = new_figure(*size)
        draw(fig.add_subplot(1, 1, 1))
        fig.tight_layout()
        return fig

    return make


def _labelled_curve(curve: MeanSISSizeCurve, label: str, accuracy: float) -> MeanSISSizeCurve:
    """``curve`` with its models renamed for a legend (``$`` escaped for matplotlib; no number changes).

    A one-model curve takes ``label`` (and ``accuracy`` when it has none); several models become
    ``"label: model"``.
    """

    def rename(key: str) -> str:
        return (label if len(curve.mean) == 1 else f"{label}: {key}").replace("$", r"\$")

    accuracies = {rename(k): v for k, v in curve.accuracies.items()}
    if len(curve.mean) == 1 and not accuracies:
        accuracies = {rename(next(iter(curve.mean))): accuracy}
    return dataclasses.replace(
        curve,
        mean={rename(k): v for k, v in curve.mean.items()},
        ci_low={rename(k): v for k, v in curve.ci_low.items()},
        ci_high={rename(k): v for k, v in curve.ci_high.items()},
        n_images={rename(k): v for k, v in curve.n_images.items()},
        accuracies=accuracies,
    )


def report_figures(report: AuditReport) -> list[FigureSpec]:
    """Every figure of the report page, in page order (the SIS-size curve only when the report holds one)."""
    t, pct = report.threshold, f"{report.fraction:.0%}"
    specs = [
        FigureSpec(
            "examples.png",
            f"Example images (top), their SIS alone (middle: everything else set to the baseline, still "
            f"classified with confidence >= {t:g}) and the SIS location in red (bottom). Paper Figure 1.",
            lambda: examples_figure(report.examples),
        )
    ]
    ties = str(report.settings.get("ties", ""))
    if ties.startswith("random"):
        tie_note = (
            f" Ties between equal scores were broken in a random order (seed {report.settings.get('seed', 0)}), so"
            " pixels the model ignores do not pile up at the bottom-right."
        )
    elif ties:
        tie_note = (
            " Ties went to the lowest pixel id (the paper's rule): where the model ignores pixels, the kept ones"
            " pile up at the bottom-right, a location the model does not use."
        )
    else:
        tie_note = ""
    heatmap = report.heatmap
    if heatmap is not None:
        specs.append(
            FigureSpec(
                "sis_heatmap.png",
                f"How often each pixel belongs to the SIS (threshold {t:g}), over the {heatmap.n_images} images "
                "that have one. Paper Figure 4." + tie_note,
                _single(lambda ax: heatmap.plot(ax, title=f"SIS locations ({heatmap.n_images} images)"), (4.6, 3.8)),
            )
        )
    specs += [
        FigureSpec(
            "subset_heatmap.png",
            f"How often each pixel is among the {pct} kept by backward selection. Paper Figure 2." + tie_note,
            _single(lambda ax: report.subset_heatmap.plot(ax, title=f"{pct} backward-selection subsets"), (4.6, 3.8)),
        ),
        FigureSpec(
            "subset_accuracy.png",
            f"Accuracy on full images, on {pct} backward-selection subsets and on {pct} random subsets. Paper Table 1.",
            _single(report.subset_accuracy.plot),
        ),
        FigureSpec(
            "confidence_drop.png",
            "Confidence of the predicted class on the full image minus on its backward-selection subset "
            "(negative: more confident on the subset). Paper Section 4.1.",
            _single(lambda ax: draw_confidence_drop(report, ax)),
        ),
    ]
    curve = report.sis_size_curve
    if curve is not None:
        labelled = _labelled_curve(curve, report.name, report.accuracy)

        def draw_curve(ax: Axes) -> None:
            labelled.plot(ax)
            ax.set_title("Mean SIS size vs threshold")
            frame_size_curve(ax, [labelled])

        specs.append(
            FigureSpec(
                "sis_size_curve.png",
                "Mean SIS size (fraction of the input) against the threshold, with its 95% confidence interval "
                "shaded (a line without a band: every SIS has the same size). Paper Figure 6.",
                _single(draw_curve),
            )
        )
    if any(not math.isnan(s.percent_increase) for s in report.sis_sizes.per_threshold):

        def figure5(ax: Axes) -> None:
            report.sis_sizes.plot(ax)
            ax.set_ylabel("% increase in mean SIS size")
            ax.set_title("Correct vs misclassified images")

        specs.append(
            FigureSpec(
                "sis_size_correct_vs_misclassified.png",
                "Percentage increase in the mean SIS size of correctly classified images over misclassified "
                "ones, with 95% confidence interval (positive: misclassified images have smaller SIS). "
                "Paper Figure 5.",
                _single(figure5),
            )
        )
    leak = report.mask_shape_leakage
    if leak is not None:

        def draw_leakage(ax: Axes) -> None:
            leak.plot(ax)
            ax.set_ylim(0, 117)  # room for the percentages above bars at 100%
            ax.set_yticks(range(0, 101, 20))
            legend = ax.get_legend()
            if legend is not None:  # the caption says what the dotted line is; a legend would cover the bars
                legend.remove()

        specs.append(
            FigureSpec(
                LEAKAGE_FIGURE,
                f"Accuracy on the full images, on the {pct} subsets, on the same positions holding another image's "
                "pixels (content swapped) or one colour (shape only), and on random subsets of the same size; "
                "dotted: chance.",
                _single(draw_leakage, (5.0, 3.6)),
            )
        )
    smooth = report.smoothed_sis
    if smooth is not None:
        specs.append(
            FigureSpec(
                SMOOTHING_FIGURE,
                f"Confidence of the explained class on each SIS, on the SIS dilated by one pixel, on the SIS plus as "
                f"many random pixels, and on a random set as large as the dilated SIS; dashed: the threshold {t:g}.",
                _single(smooth.plot, (5.0, 3.6)),
            )
        )
    return specs


# ------------------------------------------------------------------------------------------------ comparison
def comparison_figures(reports: Mapping[str, AuditReport]) -> list[FigureSpec]:
    """Figures of the comparison page (the SIS-size curve only when every report holds one)."""
    n = len(reports)
    first = next(iter(reports.values()))
    specs: list[FigureSpec] = []
    curves = {name: r.sis_size_curve for name, r in reports.items() if r.sis_size_curve is not None}
    if len(curves) == n:

        def draw_curves(fig: Figure) -> None:
            ax = fig.add_subplot(1, 1, 1)
            labelled = [_labelled_curve(curve, name, reports[name].accuracy) for name, curve in curves.items()]
            for curve in labelled:
                curve.plot(ax)
            ax.set_title("Mean SIS size vs threshold (legend: accuracy)")
            frame_size_curve(ax, labelled)

        specs.append(
            FigureSpec(
                "sis_size_curve.png",
                "Mean SIS size (fraction of the input) against the SIS threshold, one line per model (legend: "
                "accuracy on full images). Smaller SIS mean the model decides from fewer pixels. Paper Figure 6.",
                _whole((5.5, 4.0), draw_curves),
            )
        )

    def draw_heatmaps(fig: Figure) -> None:
        axes = fig.subplots(1, n, squeeze=False)[0]
        for ax, (name, r) in zip(axes, reports.items(), strict=True):
            h = r.heatmap if r.heatmap is not None else r.subset_heatmap
            kind = "SIS" if r.heatmap is not None else f"{r.fraction:.0%} subsets"
            h.plot(ax, title=mpl_text(f"{name}: {kind}", 40))

    def draw_accuracy(fig: Figure) -> None:
        ax = fig.add_subplot(1, 1, 1)
        kinds = [("full", "full images"), ("backselect", "BS subsets"), ("random", "random subsets")]
        width = 0.8 / max(1, n)
        for i, (name, r) in enumerate(reports.items()):
            values = [100 * getattr(r.subset_accuracy, k) for k, _ in kinds]
            xs = [j + (i - (n - 1) / 2) * width for j in range(len(kinds))]
            ax.bar(xs, [0.0 if math.isnan(v) else v for v in values], width=width, label=mpl_text(name, 40))
        ax.set_xticks(range(len(kinds)))
        ax.set_xticklabels([label for _, label in kinds])
        ax.axhline(100 * first.subset_accuracy.chance, color="black", linestyle=":", label="chance")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8)

    specs += [
        FigureSpec(
            "heatmaps.png",
            f"How often each pixel belongs to the SIS (threshold {first.threshold:g}) of each model. "
            "Paper Figures 2 and 4.",
            _whole((4.0 * n, 3.8), draw_heatmaps),
        ),
        FigureSpec(
            "subset_accuracy.png",
            f"Accuracy on full images and on {first.fraction:.0%} pixel-subsets chosen by backward selection or at "
            "random. Paper Table 1.",
            _whole((5.5, 3.8), draw_accuracy),
        ),
    ]
    return specs


def _whole(size: tuple[float, float], draw: Callable[[Figure], None]) -> Callable[[], Figure]:
    def make() -> Figure:
        fig = new_figure(*size)
        draw(fig)
        fig.tight_layout()
        return fig

    return make
