"""Reports shared by the tests of sis_attr.overinterpretation.report, built through audit() as users do."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sis_attr.overinterpretation.pipeline import audit
from sis_attr.overinterpretation.report import AuditReport
from tests.overinterpretation.report.helpers import EVIL, with_curve
from tests.overinterpretation.test_pipeline import MarkReader, marked_digits


@pytest.fixture(scope="session")
def report() -> AuditReport:
    """MarkReader on 10 marked digits, exact selection; class and model names full of HTML and mathtext."""
    d = marked_digits(10)
    names = (EVIL, "b&c", "$x$ <i>", *(str(i) for i in range(3, 10)))
    full = audit(
        MarkReader().eval(),
        (d.images, d.labels, names),
        method="exact",
        name=f"model {EVIL} $\\frac$ $",
        show_progress=False,
    )
    return dataclasses.replace(full, sis_size_curve=None)  # audit computes the curve; these tests add it by hand


@pytest.fixture(scope="session")
def other() -> AuditReport:
    """A random linear model on 6 marked digits (threshold 0.5, 3 examples), the default method (k="auto")."""
    d = marked_digits(6)
    linear = torch.nn.Linear(64, 10)
    torch.nn.init.normal_(linear.weight, std=0.5, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Flatten(), linear).eval()
    full = audit(model, d, threshold=0.5, name="linear", show_progress=False, n_examples=3)
    return dataclasses.replace(full, sis_size_curve=None)


@pytest.fixture(scope="session")
def report_with_curve(report: AuditReport) -> AuditReport:
    return with_curve(report)
