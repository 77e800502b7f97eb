"""The audit report: every number of an overinterpretation audit, a plain-text summary, JSON, figures and HTML.

:class:`AuditReport` (returned by :func:`~sis_attr.overinterpretation.audit`) holds the result of each
single-model analysis. :meth:`AuditReport.save` writes a self-contained directory::

    report.json        every number (settings, accuracies, SIS sizes, confidence drops, heatmaps, examples)
    selection.pt       the backward-selection records (SelectionResult.load reads it back)
    figures/*.png      one figure per analysis (matplotlib, Agg backend, no display needed)
    index.html         the figures and tables in one page, including example images beside their SIS

:func:`save_comparison` writes several reports side by side (one sub-directory each, plus a page comparing
them). Nothing half-written looks complete: files are written to a hidden staging directory and moved into
place at the end, ``index.html`` last. Every string that comes from data, labels or models is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from sis_attr.exceptions import ReportWriteError, SISTypeError, UninformativeBaselineWarning
from sis_attr.overinterpretation.accuracy import SubsetAccuracy
from sis_attr.overinterpretation.confidence import ConfidenceDrop
from sis_attr.overinterpretation.heatmap import LocationHeatmap
from sis_attr.overinterpretation.selection import SelectionResult
from sis_attr.overinterpretation.sis_size import SISSizeStatistics, mean_sis_size_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "AuditReport",
    "ReportWriteError",
    "SISExamples",
    "check_output_directory",
    "compare_summary",
    "save_comparison",
]

_MARKER = ".sis-attr-report"
"""Empty file marking a directory written by this module (only such directories are ever replaced)."""


# ------------------------------------------------------------------------------------------------ helpers
def _fmt_pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}%"


def _fmt_num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _json_safe(obj: Any) -> Any:
    """Recursively convert to JSON-compatible values: NaN/inf become None, tensors become lists."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Tensor):
        return _json_safe(obj.detach().cpu().tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):  # numpy scalars
        return _json_safe(obj.item())
    return str(obj)


def _mpl_text(text: str, limit: int = 18) -> str:
    """A label safe for matplotlib: ``$`` would start mathtext; long names are shortened."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _class_name(class_names: Sequence[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def _new_figure(width: float, height: float) -> Figure:
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
@dataclass(frozen=True, eq=False)
class SISExamples:
    """Example images beside their sufficient input subsets (the paper's Figure 1).

    Attributes
    ----------
    indices : tuple of int
        Positions of the examples in the audited data.
    images : Tensor
        ``(n, C, H, W)`` original images.
    sis_images : Tensor
        ``(n, C, H, W)``: the images with every feature outside the SIS set to the baseline (what the model
        classifies with at least ``threshold`` confidence).
    sis_masks : Tensor
        Bool ``(n, H, W)``: True on the SIS pixels (any channel).
    labels, predictions : tuple of int
        True label and predicted class (the class the SIS explains).
    confidences : tuple of float
        Confidence of the predicted class on the full image.
    sis_confidences : tuple of float
        Confidence of the same class on the SIS alone.
    sis_sizes : tuple of int
        SIS size in features.
    threshold : float
    class_names : tuple of str
    """

    indices: tuple[int, ...]
    images: Tensor
    sis_images: Tensor
    sis_masks: Tensor
    labels: tuple[int, ...]
    predictions: tuple[int, ...]
    confidences: tuple[float, ...]
    sis_confidences: tuple[float, ...]
    sis_sizes: tuple[int, ...]
    threshold: float
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.indices)

    def to_dict(self) -> dict[str, Any]:
        """Threshold and, per example, index, label, target, confidence and SIS as JSON-compatible values."""
        return {
            "threshold": self.threshold,
            "examples": [
                {
                    "index": i,
                    "label": lab,
                    "label_name": _class_name(self.class_names, lab),
                    "prediction": pred,
                    "prediction_name": _class_name(self.class_names, pred),
                    "confidence": conf,
                    "sis_confidence": sconf,
                    "sis_size": size,
                    "sis_mask": self.sis_masks[j].int().tolist(),
                }
                for j, (i, lab, pred, conf, sconf, size) in enumerate(
                    zip(
                        self.indices,
                        self.labels,
                        self.predictions,
                        self.confidences,
                        self.sis_confidences,
                        self.sis_sizes,
                        strict=True,
                    )
                )
            ],
        }

    def plot(self, fig: Figure | None = None) -> Figure:
        """Grid of the examples: the image, the SIS alone, and the SIS location (red) over the faded image.

        Without ``fig`` a new pyplot figure is made.
        """
        n = len(self)
        if fig is None:
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(max(3.0, 1.3 * n + 1.0), 5.0))
        if n == 0:
            ax = fig.add_subplot(1, 1, 1)
            ax.text(0.5, 0.5, f"No example (no image reaches confidence {self.threshold:g}?)", ha="center")
            ax.set_axis_off()
            return fig
        lo, hi = _display_range(torch.cat([self.images, self.sis_images]))
        axes = fig.subplots(3, n, squeeze=False)
        one_channel = self.images.shape[1] == 1
        kw: dict[str, Any] = {"cmap": "gray_r", "vmin": 0.0, "vmax": 1.0} if one_channel else {}
        for j in range(n):
            pred = self.predictions[j]
            axes[0, j].imshow(_to_display(self.images[j], lo, hi), interpolation="nearest", **kw)
            axes[0, j].set_title(
                f"{_mpl_text(_class_name(self.class_names, pred))}\np={self.confidences[j]:.3f}", fontsize=8
            )
            axes[1, j].imshow(_to_display(self.sis_images[j], lo, hi), interpolation="nearest", **kw)
            axes[1, j].set_title(f"{self.sis_sizes[j]} feat.\np={self.sis_confidences[j]:.3f}", fontsize=8)
            axes[2, j].imshow(_location_overlay(self.images[j], self.sis_masks[j], lo, hi), interpolation="nearest")
            for row in range(3):
                axes[row, j].set_xticks([])
                axes[row, j].set_yticks([])
        for row, text in enumerate(("image", "SIS only", "SIS location")):
            axes[row, 0].set_ylabel(text, fontsize=9)
        fig.suptitle(f"Sufficient input subsets (threshold {self.threshold})", fontsize=10)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.84, bottom=0.03, hspace=0.55, wspace=0.15)
        return fig


# ------------------------------------------------------------------------------------------------ the report
@dataclass(frozen=True, eq=False)
class AuditReport:
    """Every result of a single-model overinterpretation audit (from :func:`~sis_attr.overinterpretation.audit`).

    Attributes
    ----------
    name : str
        Name of the audited model (shown in summaries and pages).
    selection : SelectionResult
        Backward selection on every audited image (the records from which all SIS come).
    sis_sizes : SISSizeStatistics
        SIS sizes per threshold, correct vs misclassified images (Figures 5 and S3).
    confidence : ConfidenceDrop
        Confidence on full images minus on their backward-selection subsets (Section 4.1).
    subset_accuracy : SubsetAccuracy
        Accuracy on full images, backward-selection subsets and random subsets (Table 1).
    heatmap : LocationHeatmap or None
        Where the SIS pixels at ``threshold`` are (Figure 4); None when no image reaches ``threshold``.
    subset_heatmap : LocationHeatmap
        Where the pixels of the backward-selection subsets are (Figure 2).
    examples : SISExamples
        Example images beside their SIS (Figure 1).
    labels : Tensor
        ``(N,)`` true labels of the audited images.
    threshold : float
        The SIS confidence threshold.
    fraction : float
        Fraction of features kept in the pixel-subsets.
    class_names : tuple of str
    settings : dict
        How the audit ran (method, baseline, feature grouping, seed...), for the record.
    timings : dict of str to float
        Seconds spent in each step.
    metrics : dict of str to float
        Extra fractions to show with the report, as percentages (for instance the accuracy on other data).
    notes : tuple of str
        Free-text lines shown with the report.

    Examples
    --------
    >>> import tempfile
    >>> import torch
    >>> from sis_attr.overinterpretation.pipeline import audit
    >>> from sis_attr.testing import TinyConvNet
    >>> model = TinyConvNet(in_channels=1, classes=3)
    >>> images = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> report = audit(model, (images, model(images).argmax(dim=1)), threshold=0.4, show_progress=False)
    >>> report.accuracy, report.n_features
    (1.0, 16)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     index = report.save(Path(tmp) / "report")
    ...     sorted(p.name for p in index.parent.iterdir() if not p.name.startswith("."))
    ['figures', 'index.html', 'report.json', 'selection.pt']
    >>> print(compare_summary({"a": report, "b": report}).splitlines()[3])  # doctest: +NORMALIZE_WHITESPACE
      accuracy (full images)  100.0%  100.0%
    """

    name: str
    selection: SelectionResult
    sis_sizes: SISSizeStatistics
    confidence: ConfidenceDrop
    subset_accuracy: SubsetAccuracy
    heatmap: LocationHeatmap | None
    subset_heatmap: LocationHeatmap
    examples: SISExamples
    labels: Tensor
    threshold: float
    fraction: float
    class_names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ headline numbers
    @property
    def n_images(self) -> int:
        """Number of audited images."""
        return self.selection.n_images

    @property
    def n_features(self) -> int:
        """Number of features (pixels or pixel blocks) per image."""
        return self.selection.n_features

    @property
    def accuracy(self) -> float:
        """Accuracy on the full images."""
        return self.subset_accuracy.full

    @property
    def n_confident(self) -> int:
        """Images whose confidence reaches ``threshold`` (those with an SIS)."""
        return self.sis_sizes[self.threshold].n_images

    @property
    def mean_sis_size(self) -> float:
        """Mean SIS size at ``threshold`` in features (NaN when no image reaches it)."""
        return self.sis_sizes[self.threshold].mean_size

    @property
    def mean_sis_fraction(self) -> float:
        """Mean SIS size at ``threshold`` as a fraction of the features."""
        return self.sis_sizes[self.threshold].mean_fraction

    @property
    def subset_features(self) -> int:
        """Features kept in each pixel-subset: ``ceil(fraction * n_features)``."""
        return self.selection.subset_size(self.fraction)

    def headline(self) -> dict[str, Any]:
        """The headline numbers as a dict (fractions in [0, 1], sizes in features; NaN where undefined)."""
        peak = None if self.heatmap is None else list(self.heatmap.peak())
        return {
            "name": self.name,
            "n_images": self.n_images,
            "n_features": self.n_features,
            "threshold": self.threshold,
            "accuracy": self.accuracy,
            "confident_fraction": self.n_confident / self.n_images,
            "mean_sis_size": self.mean_sis_size,
            "mean_sis_fraction": self.mean_sis_fraction,
            "fraction": self.fraction,
            "backselect_subset_accuracy": self.subset_accuracy.backselect,
            "random_subset_accuracy": self.subset_accuracy.random,
            "mean_confidence_drop": self.confidence.mean,
            "sis_location_peak": peak,
            "metrics": dict(self.metrics),
        }

    def _rows(self) -> list[tuple[str, str]]:
        """(label, value) rows of the plain-text and HTML summaries."""
        t = self.threshold
        st = self.sis_sizes[t]
        c, h, w = self.selection.image_shape
        feature_kind = self.settings.get("features", "features")
        rows = [
            ("images", f"{self.n_images} of {c}x{h}x{w}, {self.n_features} {feature_kind}"),
            ("method", f"{self.selection.method} backward selection, baseline {self.settings.get('baseline', '?')}"),
            ("accuracy (full images)", _fmt_pct(self.accuracy)),
            (f"confident (>= {t:g})", f"{self.n_confident} images ({_fmt_pct(self.n_confident / self.n_images)})"),
            (
                f"mean SIS size @ {t:g}",
                f"{_fmt_num(st.mean_size, 1)} features ({_fmt_pct(st.mean_fraction)} of the input)",
            ),
            (
                "  correct / misclassified",
                f"{_fmt_num(st.mean_size_correct, 1)} / {_fmt_num(st.mean_size_misclassified, 1)} features "
                f"({st.n_correct} / {st.n_misclassified} images)",
            ),
            (
                f"{self.fraction:.0%} subsets ({self.subset_features} feat.)",
                f"accuracy {_fmt_pct(self.subset_accuracy.backselect)} backward selection, "
                f"{_fmt_pct(self.subset_accuracy.random)} random (chance {_fmt_pct(self.subset_accuracy.chance)})",
            ),
            (
                "confidence drop (BS subsets)",
                f"mean {self.confidence.mean:+.3f} (std {self.confidence.std:.3f}), "
                f"same prediction {_fmt_pct(self.confidence.agreement)}",
            ),
        ]
        if self.heatmap is not None:
            r, col = self.heatmap.peak()
            freq = float(self.heatmap.frequency[r, col])
            rows.append(("SIS location peak", f"row {r}, column {col} (in {_fmt_pct(freq)} of the SIS)"))
        sr, sc = self.subset_heatmap.peak()
        rows.append(
            (
                "subset location peak",
                f"row {sr}, column {sc} (in {_fmt_pct(float(self.subset_heatmap.frequency[sr, sc]))} of the subsets)",
            )
        )
        for key, value in self.metrics.items():
            rows.append((key, _fmt_pct(value)))
        return rows

    def summary(self) -> str:
        """A plain-text table of the headline numbers (also ``str(report)``)."""
        rows = self._rows()
        width = max(len(k) for k, _ in rows)
        lines = [f"Overinterpretation audit: {self.name}"]
        lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Every number of the report as JSON-compatible values (NaN becomes None)."""
        return _json_safe(
            {
                "name": self.name,
                "threshold": self.threshold,
                "fraction": self.fraction,
                "n_images": self.n_images,
                "n_features": self.n_features,
                "image_shape": list(self.selection.image_shape),
                "class_names": list(self.class_names),
                "accuracy": self.accuracy,
                "n_confident": self.n_confident,
                "mean_sis_size": self.mean_sis_size,
                "mean_sis_fraction": self.mean_sis_fraction,
                "subset_features": self.subset_features,
                "settings": dict(self.settings),
                "metrics": dict(self.metrics),
                "notes": list(self.notes),
                "timings_seconds": dict(self.timings),
                "labels": self.labels,
                "selection": self.selection.to_dict(),
                "sis_sizes": self.sis_sizes.to_dict(),
                "confidence_drop": self.confidence.to_dict(),
                "subset_accuracy": self.subset_accuracy.to_dict(),
                "sis_heatmap": None if self.heatmap is None else self.heatmap.to_dict(),
                "subset_heatmap": self.subset_heatmap.to_dict(),
                "examples": self.examples.to_dict(),
            }
        )

    # ------------------------------------------------------------------ figures and pages
    def _figures(self) -> list[tuple[str, str, Callable[[], Figure]]]:
        """(file name, caption, draw) for every figure of the report."""

        def single(draw: Callable[[Axes], object], size: tuple[float, float] = (5.0, 3.8)) -> Callable[[], Figure]:
            def make() -> Figure:
                fig = _new_figure(*size)
                draw(fig.add_subplot(1, 1, 1))
                fig.tight_layout()
                return fig

            return make

        def examples() -> Figure:
            n = max(1, len(self.examples))
            fig = _new_figure(max(3.0, 1.3 * n + 1.0), 5.0)
            return self.examples.plot(fig)

        def curve(ax: Axes) -> None:
            label = self.name.replace("$", r"\$")  # "$" would start matplotlib mathtext
            c = mean_sis_size_curve(
                {label: self.selection}, self.sis_sizes.thresholds, accuracies={label: self.accuracy}
            )
            c.plot(ax)
            ax.set_title("Mean SIS size vs threshold")

        def heat(h: LocationHeatmap, title: str) -> Callable[[Axes], None]:
            def draw(ax: Axes) -> None:
                h.plot(ax, title=title)

            return draw

        figs: list[tuple[str, str, Callable[[], Figure]]] = [
            (
                "examples.png",
                f"Example images (top), their SIS alone (middle: everything else set to the baseline, still "
                f"classified with confidence >= {self.threshold:g}) and the SIS location in red (bottom). "
                "Paper Figure 1.",
                examples,
            ),
        ]
        if self.heatmap is not None:
            figs.append(
                (
                    "sis_heatmap.png",
                    f"How often each pixel belongs to the SIS (threshold {self.threshold:g}), over the "
                    f"{self.heatmap.n_images} images that have one. Paper Figure 4.",
                    single(heat(self.heatmap, f"SIS locations ({self.heatmap.n_images} images)"), (4.6, 3.8)),
                )
            )
        figs += [
            (
                "subset_heatmap.png",
                f"How often each pixel is among the {self.fraction:.0%} kept by backward selection. Paper Figure 2.",
                single(
                    heat(self.subset_heatmap, f"{self.fraction:.0%} backward-selection subsets"),
                    (4.6, 3.8),
                ),
            ),
            (
                "subset_accuracy.png",
                f"Accuracy on full images, on {self.fraction:.0%} backward-selection subsets and on "
                f"{self.fraction:.0%} random subsets. Paper Table 1.",
                single(self.subset_accuracy.plot),
            ),
            (
                "confidence_drop.png",
                "Confidence of the predicted class on the full image minus on its backward-selection subset "
                "(negative: more confident on the subset). Paper Section 4.1.",
                single(self.confidence.plot),
            ),
            (
                "sis_size_curve.png",
                "Mean SIS size (fraction of the input) against the threshold, with 95% confidence interval. "
                "Paper Figure 6.",
                single(curve),
            ),
        ]
        if any(not math.isnan(s.percent_increase) for s in self.sis_sizes.per_threshold):

            def figure5(ax: Axes) -> None:
                self.sis_sizes.plot(ax)
                ax.set_ylabel("% increase in mean SIS size")
                ax.set_title("Correct vs misclassified images")

            figs.append(
                (
                    "sis_size_correct_vs_misclassified.png",
                    "Percentage increase in the mean SIS size of correctly classified images over misclassified "
                    "ones, with 95% confidence interval (positive: misclassified images have smaller SIS). "
                    "Paper Figure 5.",
                    single(figure5),
                )
            )
        return figs

    def _write(self, staging: Path) -> None:
        """Write every file of the report into ``staging`` (index.html last)."""
        figures_dir = staging / "figures"
        figures_dir.mkdir()
        (figures_dir / _MARKER).touch()
        written: list[tuple[str, str]] = []
        with warnings.catch_warnings():
            # the audit already warned about empty SIS; the figures recompute them
            warnings.simplefilter("ignore", UninformativeBaselineWarning)
            for filename, caption, make in self._figures():
                fig = make()
                fig.savefig(figures_dir / filename, format="png")
                written.append((f"figures/{filename}", caption))
        self.selection.save(staging / "selection.pt")
        payload = {"generator": "sis_attr", "format_version": 1, "report": self.to_dict()}
        (staging / "report.json").write_text(json.dumps(payload, indent=1, allow_nan=False), encoding="utf-8")
        (staging / _MARKER).touch()
        (staging / "index.html").write_text(_report_page(self, written), encoding="utf-8")

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the report (``report.json``, ``selection.pt``, ``figures/*.png``, ``index.html``).

        The files are written to a hidden staging directory and moved into ``directory`` at the end, with
        ``index.html`` last: an ``index.html`` in ``directory`` always belongs to a complete report. An existing
        report in ``directory`` is replaced; other files there are left alone.

        Parameters
        ----------
        directory : str or os.PathLike
            Created (with its parents) if needed.

        Returns
        -------
        pathlib.Path
            The path of ``index.html``.

        Raises
        ------
        ReportWriteError
            If ``directory`` cannot be created or written (also an :class:`OSError`).
        """
        with _staged_directory(directory, "AuditReport.save") as staging:
            self._write(staging)
        return Path(directory) / "index.html"


# ------------------------------------------------------------------------------------------------ comparisons
def _check_reports(reports: object, caller: str) -> dict[str, AuditReport]:
    if not isinstance(reports, Mapping) or not reports:
        raise SISTypeError(
            f"The `reports` parameter of {caller} must be a non-empty dict mapping names to AuditReport objects. "
            f"Got {type(reports).__name__ if not isinstance(reports, Mapping) else 'an empty mapping'} instead."
        )
    for key, value in reports.items():
        if not isinstance(key, str) or not isinstance(value, AuditReport):
            raise SISTypeError(
                f"The `reports` parameter of {caller} must map names (str) to AuditReport objects. "
                f"Got {type(key).__name__} -> {type(value).__name__} instead."
            )
    return dict(reports)


def _comparison_rows(reports: Mapping[str, AuditReport]) -> list[tuple[str, list[str]]]:
    first = next(iter(reports.values()))
    t = first.threshold
    rows: list[tuple[str, list[str]]] = [
        ("images audited", [str(r.n_images) for r in reports.values()]),
        ("accuracy (full images)", [_fmt_pct(r.accuracy) for r in reports.values()]),
        (f"confident (>= {t:g})", [_fmt_pct(r.n_confident / r.n_images) for r in reports.values()]),
        (
            f"mean SIS size @ {t:g}",
            [f"{_fmt_num(r.mean_sis_size, 1)} ({_fmt_pct(r.mean_sis_fraction)})" for r in reports.values()],
        ),
        (
            f"accuracy on {first.fraction:.0%} BS subsets",
            [_fmt_pct(r.subset_accuracy.backselect) for r in reports.values()],
        ),
        (
            f"accuracy on {first.fraction:.0%} random subsets",
            [_fmt_pct(r.subset_accuracy.random) for r in reports.values()],
        ),
        ("mean confidence drop (BS subsets)", [f"{r.confidence.mean:+.3f}" for r in reports.values()]),
        (
            "SIS location peak (row, col)",
            [
                "n/a"
                if r.heatmap is None
                else "({}, {}) {}".format(*r.heatmap.peak(), _fmt_pct(float(r.heatmap.frequency[r.heatmap.peak()])))
                for r in reports.values()
            ],
        ),
    ]
    keys: list[str] = []
    for r in reports.values():
        keys += [k for k in r.metrics if k not in keys]
    for key in keys:
        cells = []
        for r in reports.values():
            v = r.metrics.get(key)
            cells.append(_fmt_pct(v))
        rows.append((key, cells))
    return rows


def compare_summary(reports: Mapping[str, AuditReport]) -> str:
    """A plain-text table with one column per model.

    Parameters
    ----------
    reports : dict of str to AuditReport
        Column title -> report.

    Returns
    -------
    str
    """
    reports = _check_reports(reports, "compare_summary")
    rows = _comparison_rows(reports)
    names = list(reports)
    first_width = max(len(k) for k, _ in rows)
    widths = [max(len(n), *(len(cells[i]) for _, cells in rows)) for i, n in enumerate(names)]
    header = " " * (first_width + 2) + "".join("  " + n.rjust(w) for n, w in zip(names, widths, strict=True))
    lines = ["Overinterpretation audit: comparison", header]
    for key, cells in rows:
        lines.append(
            f"  {key.ljust(first_width)}" + "".join("  " + c.rjust(w) for c, w in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower()[:40] or "model"
    slug, i = base, 2
    while slug in taken or slug in ("figures",):
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def save_comparison(
    reports: Mapping[str, AuditReport],
    directory: str | os.PathLike[str],
    *,
    title: str = "Overinterpretation audit",
    description: str | None = None,
) -> Path:
    """Write several audit reports side by side: one page comparing them, and each full report.

    Layout of ``directory``::

        index.html            the comparison: table of headline numbers, Figure 6 with every model,
                              heatmaps and example SIS side by side, links to each report
        comparison.json       the headline numbers and every report's numbers
        figures/*.png
        <model>/index.html    each report, as written by AuditReport.save

    Parameters
    ----------
    reports : dict of str to AuditReport
        Name -> report (the names title the columns; the reports' own names are kept inside their pages).
    directory : str or os.PathLike
        Created if needed. Written through a staging directory, ``index.html`` last.
    title : str, default "Overinterpretation audit"
        Page title.
    description : str, optional
        A paragraph shown under the title (escaped).

    Returns
    -------
    pathlib.Path
        The path of the comparison ``index.html``.

    Raises
    ------
    ReportWriteError
        If ``directory`` cannot be created or written.
    """
    caller = "save_comparison"
    reports = _check_reports(reports, caller)
    if not isinstance(title, str) or (description is not None and not isinstance(description, str)):
        raise SISTypeError(f"The `title` and `description` parameters of {caller} must be strings.")
    taken: set[str] = set()
    slugs = {name: _slug(name, taken) for name in reports}
    with _staged_directory(directory, caller) as staging:
        for name, report in reports.items():
            sub = staging / slugs[name]
            sub.mkdir()
            report._write(sub)
        figures_dir = staging / "figures"
        figures_dir.mkdir()
        (figures_dir / _MARKER).touch()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UninformativeBaselineWarning)
            written = _comparison_figures(reports, figures_dir)
        payload = {
            "generator": "sis_attr",
            "format_version": 1,
            "title": title,
            "models": {name: {"directory": slugs[name], **r.headline()} for name, r in reports.items()},
            "reports": {name: r.to_dict() for name, r in reports.items()},
        }
        (staging / "comparison.json").write_text(
            json.dumps(_json_safe(payload), indent=1, allow_nan=False), encoding="utf-8"
        )
        (staging / _MARKER).touch()
        (staging / "index.html").write_text(
            _comparison_page(reports, slugs, written, title, description), encoding="utf-8"
        )
    return Path(directory) / "index.html"


def _comparison_figures(reports: Mapping[str, AuditReport], figures_dir: Path) -> list[tuple[str, str]]:
    written: list[tuple[str, str]] = []
    n = len(reports)
    first = next(iter(reports.values()))
    thresholds = sorted({t for r in reports.values() for t in r.sis_sizes.thresholds})

    fig = _new_figure(5.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    label = {name: name.replace("$", r"\$") for name in reports}  # "$" would start matplotlib mathtext
    mean_sis_size_curve(
        {label[name]: r.selection for name, r in reports.items()},
        thresholds,
        accuracies={label[name]: r.accuracy for name, r in reports.items()},
    ).plot(ax)
    ax.set_title("Mean SIS size vs threshold (legend: accuracy)")
    fig.tight_layout()
    fig.savefig(figures_dir / "sis_size_curve.png", format="png")
    written.append(
        (
            "figures/sis_size_curve.png",
            "Mean SIS size (fraction of the input) against the SIS threshold, one line per model (legend: accuracy "
            "on full images). Smaller SIS mean the model decides from fewer pixels. Paper Figure 6.",
        )
    )

    fig = _new_figure(4.0 * n, 3.8)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, r) in zip(axes, reports.items(), strict=True):
        h = r.heatmap if r.heatmap is not None else r.subset_heatmap
        kind = "SIS" if r.heatmap is not None else f"{r.fraction:.0%} subsets"
        h.plot(ax, title=_mpl_text(f"{name}: {kind}", 40))
    fig.tight_layout()
    fig.savefig(figures_dir / "heatmaps.png", format="png")
    written.append(
        (
            "figures/heatmaps.png",
            f"How often each pixel belongs to the SIS (threshold {first.threshold:g}) of each model. "
            "Paper Figures 2 and 4.",
        )
    )

    fig = _new_figure(5.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    kinds = [("full", "full images"), ("backselect", "BS subsets"), ("random", "random subsets")]
    width = 0.8 / max(1, n)
    for i, (name, r) in enumerate(reports.items()):
        values = [100 * getattr(r.subset_accuracy, k) for k, _ in kinds]
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(kinds))]
        ax.bar(xs, [0.0 if v != v else v for v in values], width=width, label=_mpl_text(name, 40))
    ax.set_xticks(range(len(kinds)))
    ax.set_xticklabels([label for _, label in kinds])
    ax.axhline(100 * first.subset_accuracy.chance, color="black", linestyle=":", label="chance")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figures_dir / "subset_accuracy.png", format="png")
    written.append(
        (
            "figures/subset_accuracy.png",
            f"Accuracy on full images and on {first.fraction:.0%} pixel-subsets chosen by backward selection or at "
            "random. Paper Table 1.",
        )
    )
    return written


# ------------------------------------------------------------------------------------------------ HTML
_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.25em 0.8em; border: 1px solid #ddd;
       text-align: left; vertical-align: top; } th { background: #f4f4f4; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; max-width: 100%; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; } figcaption { font-size: 0.85em; color: #555;
       max-width: 560px; } .note { background: #fff8e0; padding: 0.5em 1em; border-left: 4px solid #e0b000; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{_e(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            f'<p style="color:#888;font-size:0.8em">Written by sis_attr on {_e(time.strftime("%Y-%m-%d %H:%M"))}.'
            " Carter et al., &ldquo;Overinterpretation reveals image classification model pathologies&rdquo;.</p>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _figure_html(path: str, caption: str) -> str:
    return f'<figure><img src="{_e(path)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _table_html(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{_e(k.strip())}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _examples_table(ex: SISExamples) -> str:
    if len(ex) == 0:
        return (
            f"<p>No example to show: no image was confidently (>= {ex.threshold:g}) classified, or no examples were "
            "asked for.</p>"
        )
    head = (
        "<tr><th>image #</th><th>label</th><th>prediction</th><th>confidence</th>"
        "<th>SIS size</th><th>confidence on SIS alone</th></tr>"
    )
    body = "".join(
        f"<tr><td>{i}</td><td>{_e(_class_name(ex.class_names, lab))}</td>"
        f"<td>{_e(_class_name(ex.class_names, pred))}</td><td>{conf:.4f}</td><td>{size}</td><td>{sconf:.4f}</td></tr>"
        for i, lab, pred, conf, size, sconf in zip(
            ex.indices, ex.labels, ex.predictions, ex.confidences, ex.sis_sizes, ex.sis_confidences, strict=True
        )
    )
    return f"<table>{head}{body}</table>"


def _report_page(report: AuditReport, figures: list[tuple[str, str]]) -> str:
    settings_rows = [(str(k), str(v)) for k, v in report.settings.items()]
    settings_rows += [("threshold", f"{report.threshold:g}"), ("fraction", f"{report.fraction:g}")]
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
    figure_map = dict(figures)
    body = [
        f"<h1>Overinterpretation audit: {_e(report.name)}</h1>",
        *(f'<p class="note">{_e(n)}</p>' for n in report.notes),
        "<h2>Summary</h2>",
        _table_html(report._rows()),
        "<h2>Sufficient input subsets</h2>",
        f"<p>Each SIS is a smallest set of pixels that alone (every other pixel set to the baseline) keeps the "
        f"model's confidence in its prediction at or above {report.threshold:g}. Small SIS without recognisable "
        "content are the signature of overinterpretation.</p>",
        _figure_html("figures/examples.png", figure_map["figures/examples.png"]),
        _examples_table(report.examples),
        "<h2>Figures</h2>",
        *(_figure_html(path, caption) for path, caption in figures if path != "figures/examples.png"),
        "<h2>Settings</h2>",
        _table_html(settings_rows),
        f"<p>Class names: {_e(', '.join(report.class_names))}</p>",
        f"<p>Time: {_e(timing)}</p>",
        '<p>All numbers: <a href="report.json">report.json</a>. Backward-selection records: '
        "<code>selection.pt</code> (<code>SelectionResult.load</code>).</p>",
    ]
    return _page(f"Overinterpretation audit: {report.name}", body)


def _comparison_page(
    reports: Mapping[str, AuditReport],
    slugs: Mapping[str, str],
    figures: list[tuple[str, str]],
    title: str,
    description: str | None,
) -> str:
    names = list(reports)
    rows = _comparison_rows(reports)
    head = "<tr><th></th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"
    body_rows = "".join(
        f"<tr><th>{_e(k)}</th>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>" for k, cells in rows
    )
    parts = [f"<h1>{_e(title)}</h1>"]
    if description:
        parts.append(f"<p>{_e(description)}</p>")
    for name, r in reports.items():
        parts += [f'<p class="note"><b>{_e(name)}</b>: {_e(n)}</p>' for n in r.notes]
    parts += [
        "<h2>Side by side</h2>",
        f"<table>{head}{body_rows}</table>",
        "<p>Full reports: "
        + ", ".join(f'<a href="{_e(slugs[n])}/index.html">{_e(n)}</a>' for n in names)
        + ' &middot; all numbers: <a href="comparison.json">comparison.json</a></p>',
        "<h2>Example SIS</h2>",
    ]
    for name in names:
        slug = slugs[name]
        parts.append(f"<h3>{_e(name)}</h3>")
        parts.append(
            _figure_html(
                f"{slug}/figures/examples.png",
                f"{name}: images, their SIS alone and the SIS location (threshold {reports[name].threshold:g}).",
            )
        )
    parts.append("<h2>Figures</h2>")
    parts += [_figure_html(path, caption) for path, caption in figures]
    return _page(title, parts)


# ------------------------------------------------------------------------------------------------ writing
def check_output_directory(directory: str | os.PathLike[str], caller: str = "check_output_directory") -> Path:
    """Check early that a report can be written to ``directory`` (nothing is created).

    The directory must be writable if it exists; otherwise its nearest existing ancestor must be a writable
    directory.

    Returns
    -------
    pathlib.Path
        ``directory`` as a path.

    Raises
    ------
    ReportWriteError
        With the reason, if it cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     check_output_directory(Path(tmp) / "new" / "report").name
    'report'
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise SISTypeError(
            f"The `directory` parameter of {caller} must be a path. Got {type(directory).__name__} instead."
        )
    path = Path(directory)
    if str(directory) == "":
        raise ReportWriteError(f"{caller}: the output directory must be a non-empty path.")
    if "\0" in str(directory):
        raise ReportWriteError(f"{caller} cannot write the report to {str(path)!r}: the path holds a NUL character.")
    probe = path
    try:
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
    except (ValueError, OSError) as err:  # e.g. an embedded NUL byte, a name too long
        raise ReportWriteError(f"{caller} cannot write the report to {str(path)!r}: {err}.") from err
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == path else f"has a parent that is not a directory: {str(probe)!r}"
        raise ReportWriteError(f"{caller} cannot write the report to {str(path)!r}: the path {where}.")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise ReportWriteError(
            f"{caller} cannot write the report to {str(path)!r}: {str(probe)!r} is not writable ({err.strerror})."
        ) from err
    return path


def _fresh_directory(parent: Path, prefix: str) -> Path:
    """Create a new uniquely named directory in ``parent`` with the default (umask) permissions.

    (``tempfile.mkdtemp`` would make it private, and the report directory it becomes would stay so.)
    """
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"could not create a staging directory in {str(parent)!r}")


def _owned(path: Path) -> bool:
    return path.is_dir() and (path / _MARKER).is_file()


@contextmanager
def _staged_directory(directory: str | os.PathLike[str], caller: str) -> Iterator[Path]:
    """Yield an empty staging directory; on success move its contents into ``directory`` (index.html last).

    If ``directory`` does not exist, the staging directory is its hidden sibling and is renamed to it in one
    step. Otherwise its contents are moved in one by one: the old ``index.html`` is removed first and the new
    one moved last, so a partly replaced report never has an ``index.html``. Sub-directories are only replaced
    when they were written by this module. On any error the staging directory is removed.
    """
    target = check_output_directory(directory, caller)
    try:
        if target.exists():
            staging = _fresh_directory(target, ".sis-attr-staging-")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = _fresh_directory(target.parent, f".{target.name}.sis-attr-staging-")
    except (OSError, ValueError) as err:
        raise ReportWriteError(f"{caller} cannot create the report directory {str(target)!r}: {err}") from err
    try:
        yield staging
        _commit(staging, target, caller)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _commit(staging: Path, target: Path, caller: str) -> None:
    try:
        if not target.exists():
            staging.rename(target)
            return
        for entry in staging.iterdir():
            dest = target / entry.name
            if entry.is_dir() and dest.exists() and not _owned(dest):
                raise ReportWriteError(
                    f"{caller} will not replace {str(dest)!r}: it exists and was not written by sis_attr. "
                    "Choose another output directory."
                )
        old_index = target / "index.html"
        if old_index.is_file() or old_index.is_symlink():
            old_index.unlink()
        entries = sorted(staging.iterdir(), key=lambda p: (p.name == "index.html", p.name))
        for entry in entries:
            dest = target / entry.name
            if entry.is_dir():
                if dest.exists():
                    trash = _fresh_directory(target, ".sis-attr-old-")
                    dest.rename(trash / entry.name)
                    entry.rename(dest)
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    entry.rename(dest)
            else:
                os.replace(entry, dest)
        staging.rmdir()
    except ReportWriteError:
        raise
    except OSError as err:
        raise ReportWriteError(f"{caller} could not write the report to {str(target)!r}: {err}") from err
