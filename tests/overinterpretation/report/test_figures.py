"""Tests for sis_attr.overinterpretation.report._figures and SISExamples.plot(ax=...)."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes

from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation.report import AuditReport
from sis_attr.overinterpretation.report import _figures as figures
from tests.overinterpretation.report.helpers import with_curve


@pytest.fixture(autouse=True)
def _close_figures() -> None:
    yield
    plt.close("all")


def _is_grid(axes: object, n: int) -> bool:
    return isinstance(axes, np.ndarray) and axes.shape == (3, n) and all(isinstance(a, Axes) for a in axes.flat)


def test_plot_without_ax_makes_a_new_figure(report: AuditReport) -> None:
    n = len(report.examples)
    before = plt.get_fignums()
    axes = report.examples.plot()
    assert _is_grid(axes, n) and len(plt.get_fignums()) == len(before) + 1
    assert axes[0, 0].get_ylabel() == "image" and axes[2, 0].get_ylabel() == "SIS location"
    assert len(axes[1, 0].get_images()) == 1


def test_plot_into_an_array_of_axes(other: AuditReport) -> None:
    n = len(other.examples)
    _, grid = plt.subplots(3, n, squeeze=False)
    axes = other.examples.plot(ax=grid)
    assert _is_grid(axes, n) and all(a is b for a, b in zip(axes.flat, grid.flat, strict=True))
    assert all(len(a.get_images()) == 1 for a in grid.flat)
    nested = [list(row) for row in plt.subplots(3, n, squeeze=False)[1]]  # any 2-D array-like
    assert all(a is b for a, b in zip(other.examples.plot(ax=nested).flat, np.asarray(nested).flat, strict=True))


def test_plot_subdivides_a_single_axes(other: AuditReport) -> None:
    n = len(other.examples)
    fig = plt.figure()
    keep = fig.add_subplot(1, 2, 1)
    target = fig.add_subplot(1, 2, 2)
    axes = other.examples.plot(ax=target)
    assert _is_grid(axes, n)
    assert target not in fig.axes and keep in fig.axes and len(fig.axes) == 1 + 3 * n
    box = target.get_position()
    assert all(box.x0 - 1e-6 <= a.get_position().x0 and a.get_position().x1 <= box.x1 + 1e-6 for a in axes.flat)
    placed = fig.add_axes((0.1, 0.1, 0.3, 0.3))  # an Axes without a subplot spec
    assert _is_grid(other.examples.plot(ax=placed), n)


def test_plot_rejects_other_axes(other: AuditReport) -> None:
    n = len(other.examples)
    _, grid = plt.subplots(2, n, squeeze=False)
    with pytest.raises(SISValueError, match=rf"expected shape \(3, {n}\), got \(2, {n}\)"):
        other.examples.plot(ax=grid)
    with pytest.raises(SISTypeError, match="array of matplotlib Axes"):
        other.examples.plot(ax=[["a"] * n] * 3)


def test_fig_keyword_is_deprecated_but_works(other: AuditReport) -> None:
    n = len(other.examples)
    fig = plt.figure()
    with pytest.warns(DeprecationWarning, match=r"plot\(ax="):
        axes = other.examples.plot(fig=fig)
    assert _is_grid(axes, n) and all(a.figure is fig for a in axes.flat)
    assert fig.get_suptitle().startswith("Sufficient input subsets")
    with pytest.warns(DeprecationWarning):
        other.examples.plot(plt.figure())  # the old positional form


def test_plot_without_examples(other: AuditReport) -> None:
    empty = dataclasses.replace(
        other.examples,
        indices=(),
        images=other.examples.images[:0],
        sis_images=other.examples.images[:0],
        sis_masks=other.examples.sis_masks[:0],
        labels=(),
        predictions=(),
        confidences=(),
        sis_confidences=(),
        sis_sizes=(),
    )
    axes = empty.plot()
    assert axes.shape == (3, 0)
    ax = plt.figure().add_subplot()
    assert empty.plot(ax=ax).shape == (3, 0) and "No example" in ax.texts[0].get_text()


def test_curve_figure_only_when_the_report_holds_a_curve(
    report: AuditReport, report_with_curve: AuditReport, other: AuditReport
) -> None:
    names = [spec.filename for spec in figures.report_figures(report)]
    assert "sis_size_curve.png" not in names and names[0] == "examples.png"
    specs = {spec.filename: spec for spec in figures.report_figures(report_with_curve)}
    fig = specs["sis_size_curve.png"].draw()
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [report.name.replace("$", r"\$") + " (1.000)"]  # "$" escaped: no mathtext error
    fig.canvas.draw()
    assert "sis_size_curve.png" not in [
        s.filename for s in figures.comparison_figures({"a": report_with_curve, "b": other})
    ]
    both = figures.comparison_figures({"a": report_with_curve, "b": with_curve(other)})
    curve = next(s for s in both if s.filename == "sis_size_curve.png").draw()
    assert [t.get_text() for t in curve.axes[0].get_legend().get_texts()] == ["a (1.000)", f"b ({other.accuracy:.3f})"]


def test_size_curve_starts_at_zero_and_says_when_its_band_is_flat(report_with_curve: AuditReport) -> None:
    """MarkReader's SIS are all one pixel: a flat line at 1/64, drawn from 0 with a note instead of a band."""
    spec = next(s for s in figures.report_figures(report_with_curve) if s.filename == "sis_size_curve.png")
    ax = spec.draw().axes[0]
    low, high = ax.get_ylim()
    assert low == 0.0 and high >= 1.3 / 64
    assert any("no band: every SIS the same size" in t.get_text() for t in ax.texts)


def test_confidence_histogram_has_few_ticks_and_no_minus_zero(report: AuditReport) -> None:
    spec = next(s for s in figures.report_figures(report) if s.filename == "confidence_drop.png")
    ax = spec.draw().axes[0]
    assert len(ax.get_xticks()) <= 7
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "mean 0.000 (std 0.000)"
