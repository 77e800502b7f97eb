"""The results of an audit: :class:`SISExamples`, :class:`AuditReport` and their plain-text comparison.

These are plain data with headline numbers, a text summary and ``to_dict()``. Drawing and writing live in
:mod:`.figures`, :mod:`.html` and :mod:`.writer`, which import this module; :meth:`SISExamples.plot` and
:meth:`AuditReport.save` reach them only inside the method, so this module never imports them.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from sis_attr.exceptions import SISTypeError
from sis_attr.overinterpretation.accuracy import SubsetAccuracy
from sis_attr.overinterpretation.confidence import ConfidenceDrop
from sis_attr.overinterpretation.heatmap import LocationHeatmap
from sis_attr.overinterpretation.leakage import MaskShapeLeakage
from sis_attr.overinterpretation.report import _references as ref
from sis_attr.overinterpretation.report._format import (
    class_name,
    fmt_gradient_settings,
    fmt_num,
    fmt_pct,
    fmt_signed,
    json_safe,
)
from sis_attr.overinterpretation.selection import SelectionResult
from sis_attr.overinterpretation.sis_size import MeanSISSizeCurve, SISSizeStatistics
from sis_attr.overinterpretation.smoothing import SmoothedSIS

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["AuditReport", "SISExamples", "compare_summary"]


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
        Bool ``(n, H, W)``: True on the SIS pixels (any channel), for display. The SIS of every audited image,
        in the analyses' ``(N, 1 or C, H, W)`` convention, come from :meth:`AuditReport.sis_masks`:
        ``sis_masks[j]`` equals ``report.sis_masks()[indices[j]].any(dim=0)``.
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
                    "label_name": class_name(self.class_names, lab),
                    "prediction": pred,
                    "prediction_name": class_name(self.class_names, pred),
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

    def plot(self, ax: Axes | Any | None = None, *, fig: Figure | None = None) -> np.ndarray:
        """Grid of the examples: the image, the SIS alone, and the SIS location (red) over the faded image.

        One column per example and three rows (image, SIS only, SIS location).

        Parameters
        ----------
        ax : matplotlib Axes or array-like of Axes, optional
            Where to draw: None makes a new pyplot figure; a 2-D array-like of ``(3, n)`` Axes is drawn into as
            is; a single Axes has its area divided into the ``3 x n`` grid (the Axes itself is removed).
        fig : matplotlib Figure, optional
            Deprecated: draw on a whole figure. Use ``ax=`` instead (for instance ``ax=fig.subplots(3, n)``,
            or ``ax=fig.add_subplot()`` to fill the figure). Removed in the next release.

        Returns
        -------
        numpy.ndarray
            The ``(3, n)`` array of Axes drawn on (``(3, 0)`` when there is no example: the figure then says so).

        Raises
        ------
        SISValueError
            If ``ax`` is an array of Axes of another shape than ``(3, n)``.
        SISTypeError
            If ``ax`` is neither None, an Axes nor an array of Axes.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> import torch
        >>> from sis_attr.overinterpretation import audit
        >>> from sis_attr.testing import TinyConvNet
        >>> model = TinyConvNet(in_channels=1, classes=3)
        >>> images = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> report = audit(model, (images, model(images).argmax(dim=1)), threshold=0.4, show_progress=False)
        >>> n = len(report.examples)
        >>> axes = report.examples.plot()
        >>> axes.shape == (3, n)
        True
        >>> fig, grid = plt.subplots(3, n, figsize=(6, 4), squeeze=False)
        >>> report.examples.plot(ax=grid)[0, 0] is grid[0, 0]
        True
        >>> fig = plt.figure()
        >>> report.examples.plot(ax=fig.add_subplot(1, 2, 2)).shape == (3, n)
        True
        >>> plt.close("all")
        """
        from matplotlib.figure import Figure as _Figure

        if isinstance(ax, _Figure):  # the old positional form plot(fig)
            fig, ax = ax, None
        if fig is not None:
            warnings.warn(
                "SISExamples.plot(fig=...) is deprecated and will be removed in the next release: use "
                "SISExamples.plot(ax=fig.add_subplot()) to fill a figure, or pass a (3, n) array of Axes as ax=.",
                DeprecationWarning,
                stacklevel=2,
            )
        from sis_attr.overinterpretation.report._figures import plot_examples

        return plot_examples(self, ax, fig=fig)


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
    sis_size_curve : MeanSISSizeCurve or None
        Mean SIS size against the threshold (Figure 6), computed by the audit; the report and comparison pages
        draw it when present and leave that figure out when None (rendering never computes it).
    mask_shape_leakage : MaskShapeLeakage or None
        The control beyond the paper for the subsets: accuracy when each subset's positions hold another
        image's pixels or one colour (:func:`~sis_attr.overinterpretation.mask_shape_leakage`); None when the
        audit ran without ``controls`` or could not measure it.
    smoothed_sis : SmoothedSIS or None
        The control beyond the paper for the SIS: confidence on each SIS dilated by one pixel and on same-size
        random sets (:func:`~sis_attr.overinterpretation.smoothed_sis`); None when the audit ran without
        ``controls``.

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
    >>> print(compare_summary({"a": report, "b": report}).splitlines()[4])  # doctest: +NORMALIZE_WHITESPACE
      accuracy (full images)  100.0%  100.0%
    >>> report.verdict()["signs"][0]["key"]
    'sparse_sis'
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
    sis_size_curve: MeanSISSizeCurve | None = None
    mask_shape_leakage: MaskShapeLeakage | None = None
    smoothed_sis: SmoothedSIS | None = None

    def sis_masks(self, threshold: float | None = None) -> Tensor:
        """SIS keep-masks of every audited image at ``threshold`` (default: the audit's), from the stored records.

        Bool ``(N, 1 or C, H, W)`` like :meth:`SelectionResult.sis_masks
        <sis_attr.overinterpretation.SelectionResult.sis_masks>` (all False where an image has no SIS);
        ``masks[i, 0]`` is the ``(H, W)`` SIS of image ``i`` for pixel features. No model call.
        """
        return self.selection.sis_masks(self.threshold if threshold is None else threshold)

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
        """The headline numbers as a dict (fractions in [0, 1], sizes in features; NaN where undefined, None for a
        control the audit did not run)."""
        peak = None if self.heatmap is None else list(self.heatmap.peak())
        leak, smooth = self.mask_shape_leakage, self.smoothed_sis
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
            "content_swapped_accuracy": None if leak is None else leak.swapped,
            "shape_only_accuracy": None if leak is None else leak.shape_only,
            "dilated_sis_sufficient": None if smooth is None else smooth.sufficient("dilated"),
            "metrics": dict(self.metrics),
        }

    def summary_rows(self) -> list[tuple[str, str]]:
        """(label, value) rows of the plain-text and HTML summaries (labels may start with spaces to indent)."""
        return [(label, value) for label, value, _ in summary_table(self)]

    def verdict(self) -> dict[str, Any]:
        """What this report's numbers say, with the paper's reference values and the caveats of this audit.

        Three signs of overinterpretation that Carter et al. observed on CIFAR-10 CNNs are checked on the
        report's own numbers: tiny SIS (a mean SIS of at most 5% of the input), subsets that suffice (the
        ``fraction`` backward-selection subsets keep at least 90% of the full-image accuracy while random subsets
        stay near chance), and a model as confident on those subsets as on the full images (mean confidence drop
        at most 0.05). The caveats say what limits the comparison with the paper: the method and its measured
        SIS-size ratio to exact selection, the baseline, the features, the threshold and the sample size.
        Computed from the stored results: no model call.

        Returns
        -------
        dict
            ``"level"`` (``"strong signs"``, ``"signs"``, ``"one sign"``, ``"no sign"`` or ``"cannot tell"``),
            ``"headline"`` (one sentence), ``"signs"`` (per sign: ``"key"``, ``"title"``, ``"present"`` (True,
            False or None when it cannot be told), ``"observed"``, ``"reference"``) and ``"caveats"`` (sentences).

        Examples
        --------
        >>> import torch
        >>> from sis_attr.overinterpretation import audit
        >>> from sis_attr.testing import TinyConvNet
        >>> model = TinyConvNet(in_channels=1, classes=3)
        >>> images = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> report = audit(model, (images, model(images).argmax(dim=1)), threshold=0.4, show_progress=False)
        >>> v = report.verdict()
        >>> [s["key"] for s in v["signs"]]
        ['sparse_sis', 'subsets_suffice', 'confidence_kept']
        >>> v["level"] in ("strong signs", "signs", "one sign", "no sign", "cannot tell")
        True
        """
        from sis_attr.overinterpretation.report._verdict import verdict

        return verdict(self).to_dict()

    def summary(self) -> str:
        """A plain-text table of the headline numbers (also ``str(report)``)."""
        from sis_attr.overinterpretation.report._verdict import verdict

        rows = self.summary_rows()
        width = max(len(k) for k, _ in rows)
        lines = [f"Overinterpretation audit: {self.name}"]
        lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"  {'warning' if is_warning_note(n) else 'note'}: {n}" for n in self.notes]
        lines += verdict(self).lines()
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Every number of the report as JSON-compatible values (NaN becomes None)."""
        return json_safe(
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
                "sis_size_curve": None if self.sis_size_curve is None else self.sis_size_curve.to_dict(),
                "controls": {
                    "mask_shape_leakage": None
                    if self.mask_shape_leakage is None
                    else self.mask_shape_leakage.to_dict(),
                    "smoothed_sis": None if self.smoothed_sis is None else self.smoothed_sis.to_dict(),
                },
                "verdict": self.verdict(),
            }
        )

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the report (``report.json``, ``selection.pt``, ``figures/*.png``, ``index.html``).

        The files are written to a hidden staging directory and moved into ``directory`` at the end, with
        ``index.html`` last: an ``index.html`` in ``directory`` always belongs to a complete report. An existing
        report in ``directory`` is replaced; other files there are left alone, and files of the same names that
        sis_attr did not write (your own ``index.html``) are an error unless ``overwrite``. Saving only draws and
        writes what the report holds: it runs no model and computes no analysis again.

        Parameters
        ----------
        directory : str or os.PathLike
            Created (with its parents) if needed.
        overwrite : bool, default False
            Replace ``index.html``, ``report.json`` or ``selection.pt`` in ``directory`` even when sis_attr did
            not write them.

        Returns
        -------
        pathlib.Path
            The path of ``index.html``.

        Raises
        ------
        ReportWriteError
            If ``directory`` cannot be created or written (also an :class:`OSError`), or holds files of the
            report's names that sis_attr did not write (without ``overwrite``).
        """
        from sis_attr.overinterpretation.report._writer import write_report

        return write_report(self, directory, caller="AuditReport.save", overwrite=overwrite)


_WARNING_NOTE = re.compile(r"^[A-Z][A-Za-z0-9_]*Warning: ")


def is_warning_note(note: str) -> bool:
    """Whether a note of a report is a warning issued during the audit (``"SISWarning: ..."``)."""
    return bool(_WARNING_NOTE.match(note))


def describe_method(report: AuditReport) -> str:
    """``"exact backward selection"``, ``"gradient backward selection (k=auto)"`` or ``"gradient backward selection
    (k=0.05, shortlist=16)"``."""
    method = str(report.settings.get("method", report.selection.method))
    if method != "gradient":
        return f"{method} backward selection"
    k, shortlist = report.settings.get("k", "?"), report.settings.get("shortlist")
    return f"gradient backward selection ({fmt_gradient_settings(k, shortlist)})"


def _drop_text(report: AuditReport) -> str:
    drop = report.confidence
    if math.isnan(drop.mean):
        return "n/a"
    if round(drop.mean, 3) == 0 and round(drop.std, 3) == 0:
        spread = "no change on any image"
    else:
        spread = f"std {drop.std:.3f}"
    return f"mean {fmt_signed(drop.mean)} ({spread}), same prediction {fmt_pct(drop.agreement)}"


def summary_table(report: AuditReport) -> list[tuple[str, str, str]]:
    """(label, value, one-line explanation) rows of a report's summary (labels may start with spaces to indent)."""
    t = report.threshold
    st = report.sis_sizes[t]
    c, h, w = report.selection.image_shape
    feature_kind = report.settings.get("features", "features")
    pct = f"{report.fraction:.0%}"
    p = ref.PAPER_RESNET20
    rows = [
        (
            "images",
            f"{report.n_images} of {c}x{h}x{w}, {report.n_features} {feature_kind}",
            "What was audited: the features are the units that backward selection removes one at a time.",
        ),
        (
            "method",
            f"{describe_method(report)}, baseline {report.settings.get('baseline', '?')}",
            "How images were reduced, and the value removed features took (the paper: the mean pixel).",
        ),
        ("accuracy (full images)", fmt_pct(report.accuracy), "Accuracy on the unmasked images."),
        (
            f"confident (>= {t:g})",
            f"{report.n_confident} images ({fmt_pct(report.n_confident / report.n_images)})",
            f"Images classified with confidence of at least {t:g}: only these have an SIS.",
        ),
        (
            f"mean SIS size @ {t:g}",
            f"{fmt_num(st.mean_size, 1)} features ({fmt_pct(st.mean_fraction)} of the input)",
            "The smallest sets of features that alone keep the prediction at the threshold; the paper's CIFAR-10 "
            f"CNNs need under {ref.PAPER_SIS_FRACTION:.0%} of the pixels at {ref.PAPER_THRESHOLD:g}.",
        ),
        (
            "  correct / misclassified",
            f"{fmt_num(st.mean_size_correct, 1)} / {fmt_num(st.mean_size_misclassified, 1)} features "
            f"({st.n_correct} / {st.n_misclassified} images)",
            "Smaller SIS on misclassified images than on correct ones is a warning sign (paper, Figure 5).",
        ),
        (
            f"{pct} subsets ({report.subset_features} feat.)",
            f"accuracy {fmt_pct(report.subset_accuracy.backselect)} backward selection, "
            f"{fmt_pct(report.subset_accuracy.random)} random (chance {fmt_pct(report.subset_accuracy.chance)})",
            f"Accuracy when only the {pct} of features kept last by backward selection (BS subsets) are shown, "
            f"against {pct} chosen at random (paper, ResNet20: {fmt_pct(p['backselect'])} against "
            f"{fmt_pct(p['random'])}).",
        ),
        (
            "confidence drop (BS subsets)",
            _drop_text(report),
            "Confidence on the full image minus on its BS subset: near zero or negative means the model is as sure "
            f"with {pct} of the input (paper, ResNet20: {p['confidence_drop']:+.3f}).",
        ),
    ]
    if report.heatmap is not None:
        r, col = report.heatmap.peak()
        freq = float(report.heatmap.frequency[r, col])
        rows.append(
            (
                "SIS location peak",
                f"row {r}, column {col} (in {fmt_pct(freq)} of the SIS)",
                "The position that belongs to the most SIS: evidence on the borders or on one spot instead of the "
                "object is a warning sign (see the heatmap).",
            )
        )
    sr, sc = report.subset_heatmap.peak()
    rows.append(
        (
            "subset location peak",
            f"row {sr}, column {sc} (in {fmt_pct(float(report.subset_heatmap.frequency[sr, sc]))} of the subsets)",
            "The same for the BS subsets.",
        )
    )
    rows += control_rows(report)
    for key, value in report.metrics.items():
        rows.append((key, fmt_pct(value), "A measurement supplied with the report."))
    return rows


def leakage_cell(leak: MaskShapeLeakage) -> str:
    """``"accuracy 10.0% content swapped, 100.0% shape only (subsets 100.0%, chance 10.0%)"``."""
    return (
        f"accuracy {fmt_pct(leak.swapped)} content swapped, {fmt_pct(leak.shape_only)} shape only (subsets "
        f"{fmt_pct(leak.subsets)}, chance {fmt_pct(leak.chance)})"
    )


def smoothing_cell(smooth: SmoothedSIS) -> str:
    """``"95.0% of 20 SIS stay sufficient when dilated (100.0% alone; random sets as large: 20.0%)"``."""
    if smooth.n_images == 0:
        return "no SIS to smooth"
    return (
        f"{fmt_pct(smooth.sufficient('dilated'))} of {smooth.n_images} SIS stay sufficient when dilated "
        f"({fmt_pct(smooth.sufficient('sis'))} alone; random sets as large: {fmt_pct(smooth.sufficient('random'))})"
    )


def control_rows(report: AuditReport) -> list[tuple[str, str, str]]:
    """Summary rows of the controls beyond the paper that the report holds."""
    rows = []
    if report.mask_shape_leakage is not None:
        rows.append(
            (
                "mask-shape leakage",
                leakage_cell(report.mask_shape_leakage),
                f"The {report.fraction:.0%} subsets' positions filled with another image's pixels (content swapped) "
                "or one colour (shape only): far above chance means the subsets' shape, not their pixels, carries "
                "the class (Rong et al., 2022).",
            )
        )
    if report.smoothed_sis is not None:
        rows.append(
            (
                "smoothed SIS",
                smoothing_cell(report.smoothed_sis),
                "Each SIS with the pixels bordering it added (dilated by one pixel): a collapse below the threshold "
                "means the SIS is a fragile, adversarial-like pattern (Springer, 2022).",
            )
        )
    return rows


def check_reports(reports: object, caller: str) -> dict[str, AuditReport]:
    """``reports`` as a dict, or :class:`SISTypeError` unless it is a non-empty mapping of names to reports."""
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


def comparison_table(reports: Mapping[str, AuditReport]) -> list[tuple[str, list[str], str]]:
    """(label, one cell per report, one-line explanation) rows of the plain-text and HTML comparisons."""
    from sis_attr.overinterpretation.report._verdict import verdict

    first = next(iter(reports.values()))
    t = first.threshold
    pct = f"{first.fraction:.0%}"
    values = list(reports.values())

    def peak(r: AuditReport) -> str:
        if r.heatmap is None:
            return "n/a"
        row, col = r.heatmap.peak()
        return f"row {row}, col {col}: {fmt_pct(float(r.heatmap.frequency[row, col]))}"

    rows: list[tuple[str, list[str], str]] = [
        ("images audited", [str(r.n_images) for r in values], "Images each model was audited on."),
        (
            "method",
            [describe_method(r) for r in values],
            "How the images were reduced; compare models only with the same method and settings.",
        ),
        ("accuracy (full images)", [fmt_pct(r.accuracy) for r in values], "Accuracy on the unmasked images."),
        (
            f"confident (>= {t:g})",
            [fmt_pct(r.n_confident / r.n_images) for r in values],
            f"Share of images classified with confidence of at least {t:g}: only these have an SIS.",
        ),
        (
            f"mean SIS size @ {t:g}",
            [f"{fmt_num(r.mean_sis_size, 1)} ({fmt_pct(r.mean_sis_fraction)})" for r in values],
            "Features (and share of the input) that alone keep the prediction: smaller means the model needs "
            "less of the image.",
        ),
        (
            f"accuracy on {pct} BS subsets",
            [fmt_pct(r.subset_accuracy.backselect) for r in values],
            f"Accuracy when only the {pct} of pixels kept last by backward selection (BS) are shown.",
        ),
        (
            f"accuracy on {pct} random subsets",
            [fmt_pct(r.subset_accuracy.random) for r in values],
            f"The control: {pct} of pixels chosen at random.",
        ),
        (
            "mean confidence drop (BS subsets)",
            [fmt_signed(r.confidence.mean) for r in values],
            "Confidence on full images minus on BS subsets: near zero or negative means as sure on the subsets.",
        ),
        (
            "SIS location peak",
            [peak(r) for r in values],
            "The position in the most SIS, and the share of SIS that contain it.",
        ),
    ]
    if any(r.mask_shape_leakage is not None for r in values):
        rows.append(
            (
                "mask-shape leakage (swapped / shape)",
                [
                    "n/a"
                    if (leak := r.mask_shape_leakage) is None
                    else f"{fmt_pct(leak.swapped)} / {fmt_pct(leak.shape_only)} (chance {fmt_pct(leak.chance)})"
                    for r in values
                ],
                "Accuracy with each subset's positions holding another image's pixels / one colour: far above "
                "chance means the subsets' shape carries the class.",
            )
        )
    if any(r.smoothed_sis is not None for r in values):
        rows.append(
            (
                "smoothed SIS",
                [
                    "n/a"
                    if (smooth := r.smoothed_sis) is None or smooth.n_images == 0
                    else f"{fmt_pct(smooth.sufficient('dilated'))} of {smooth.n_images} sufficient dilated"
                    for r in values
                ],
                "Share of the SIS still sufficient with their bordering pixels added: a collapse means fragile, "
                "adversarial-like SIS.",
            )
        )
    keys: list[str] = []
    for r in values:
        keys += [k for k in r.metrics if k not in keys]
    for key in keys:
        rows.append((key, [fmt_pct(r.metrics.get(key)) for r in values], "A measurement supplied with the report."))
    rows.append(
        (
            "verdict",
            [verdict(r).short for r in values],
            "How many of the paper's three signs of overinterpretation each model shows (see its report).",
        )
    )
    return rows


def comparison_rows(reports: Mapping[str, AuditReport]) -> list[tuple[str, list[str]]]:
    """(label, one cell per report) rows of the plain-text and HTML comparisons."""
    return [(label, cells) for label, cells, _ in comparison_table(reports)]


def compare_summary(reports: Mapping[str, AuditReport]) -> str:
    """A plain-text table with one column per model.

    Parameters
    ----------
    reports : dict of str to AuditReport
        Column title -> report.

    Returns
    -------
    str

    Raises
    ------
    SISTypeError
        If ``reports`` is not a non-empty dict of names to :class:`AuditReport`.
    """
    reports = check_reports(reports, "compare_summary")
    rows = comparison_rows(reports)
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
