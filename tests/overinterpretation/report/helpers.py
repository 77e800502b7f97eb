"""Helpers shared by the tests of sis_attr.overinterpretation.report."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

from sis_attr.overinterpretation.report import AuditReport
from sis_attr.overinterpretation.sis_size import mean_sis_size_curve

EVIL = '<script>alert("x")</script>'
"""A name that must never reach a page unescaped."""


def with_curve(report: AuditReport) -> AuditReport:
    """``report`` with the SIS-size curve the audit will compute (Figure 6), computed here for the tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the audit already warned about empty SIS
        curve = mean_sis_size_curve(
            {report.name: report.selection}, report.sis_sizes.thresholds, accuracies={report.name: report.accuracy}
        )
    return dataclasses.replace(report, sis_size_curve=curve)


def referenced_files(index: Path) -> list[str]:
    """Every ``src`` and ``href`` of a page."""
    return re.findall(r'(?:src|href)="([^"]+)"', index.read_text(encoding="utf-8"))


def no_staging_left(root: Path) -> bool:
    return not any(".sis-attr-" in p.name and p.name != ".sis-attr-report" for p in root.rglob("*")) and not any(
        "sis-attr-staging" in p.name for p in root.parent.iterdir()
    )
