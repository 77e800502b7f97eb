"""Tests for sis_attr.overinterpretation.report._results: headline numbers, text summaries, to_dict."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

import sis_attr.overinterpretation as overinterpretation
import sis_attr.overinterpretation.report as report_package
from sis_attr.exceptions import ReportWriteError, SISTypeError
from sis_attr.overinterpretation.report import AuditReport, compare_summary
from sis_attr.overinterpretation.report import _results as results


def test_public_names_unchanged() -> None:
    names = {"AuditReport", "SISExamples", "check_output_directory", "compare_summary", "save_comparison"}
    for name in names:
        assert getattr(report_package, name) is getattr(overinterpretation, name)
    assert report_package.ReportWriteError is ReportWriteError is overinterpretation.ReportWriteError
    assert set(report_package.__all__) == {*names, "ReportWriteError"}


def test_results_never_imports_the_rendering_modules() -> None:
    """results is imported by figures, html and writer: a module-level import back would close a circle."""
    tree = ast.parse(Path(results.__file__).read_text(encoding="utf-8"))
    top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    modules += [alias.name for n in top if isinstance(n, ast.Import) for alias in n.names]
    assert not [m for m in modules if m.startswith("sis_attr.overinterpretation.report.") and "_format" not in m]
    assert not [m for m in modules if m.startswith("matplotlib") or m.startswith("jinja2")]


def test_summary_and_comparison_text(report: AuditReport, other: AuditReport) -> None:
    table = compare_summary({"marks": report, "linear": other})
    lines = table.splitlines()
    assert lines[0] == "Overinterpretation audit: comparison"
    assert "marks" in lines[1] and "linear" in lines[1]
    assert any(line.strip().startswith("mean SIS size @ 0.99") for line in lines)
    assert str(report).splitlines()[0] == f"Overinterpretation audit: {report.name}"
    with pytest.raises(SISTypeError):
        compare_summary({})
    with pytest.raises(SISTypeError):
        compare_summary({"a": 1})  # type: ignore[dict-item]


def test_sis_size_curve_is_optional_and_in_to_dict(report: AuditReport, report_with_curve: AuditReport) -> None:
    assert report.sis_size_curve is None and report.to_dict()["sis_size_curve"] is None
    curve = report_with_curve.to_dict()["sis_size_curve"]
    assert curve["thresholds"] == list(report.sis_sizes.thresholds)
    assert list(curve["models"]) == [report.name]
    json.dumps(report_with_curve.to_dict(), allow_nan=False)
    assert report_with_curve.summary_rows() == report.summary_rows()
    # the curve's 95% interval of the mean SIS size is quoted in the verdict's sample-size caveat
    assert "95% interval of the mean SIS size: 1.6% to 1.6%" in report_with_curve.summary()
    assert "95% interval" not in report.summary()


def test_sis_masks_of_every_image_agree_with_the_examples(report: AuditReport) -> None:
    masks = report.sis_masks()
    assert masks.dtype == torch.bool and masks.shape[0] == report.n_images and masks.dim() == 4
    ex = report.examples
    for j, i in enumerate(ex.indices):
        assert torch.equal(ex.sis_masks[j], masks[i].any(dim=0))
    assert torch.equal(report.sis_masks(report.threshold), masks)
