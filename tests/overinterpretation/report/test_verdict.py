"""Tests for the verdict of a report (report._verdict, AuditReport.verdict): from the report's own numbers."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import Tensor, nn

from sis_attr.overinterpretation.pipeline import audit
from sis_attr.overinterpretation.report import AuditReport
from sis_attr.overinterpretation.report import _references as ref
from sis_attr.overinterpretation.report._format import fmt_signed
from sis_attr.overinterpretation.report._verdict import verdict


class MeanReader(nn.Module):
    """Two classes; the logit of class 1 is ``20 * (mean(x) - 0.5)``: it needs most of an all-ones image.

    On an all-ones 8x8 image, the probability of class 1 reaches 0.99 only with at least 47 of the 64 pixels
    kept (``20 * (47/64 - 0.5) = 4.69 >= log(99) = 4.60``), so every SIS is 47 pixels; a 5% subset (4 pixels) is
    classified as class 0, and the confidence in class 1 collapses on it.
    """

    def forward(self, x: Tensor) -> Tensor:
        z = 20.0 * (x.flatten(1).mean(dim=1) - 0.5)
        return torch.stack([torch.zeros_like(z), z], dim=1)


@pytest.fixture(scope="module")
def needs_everything() -> AuditReport:
    images = torch.ones(6, 1, 8, 8)
    return audit(MeanReader().eval(), (images, torch.ones(6, dtype=torch.long)), show_progress=False, n_examples=2)


def test_a_model_reading_one_pixel_shows_all_three_signs(report: AuditReport) -> None:
    """MarkReader: each SIS is the one mark pixel, the 5% subsets keep it, and the model stays as confident."""
    v = report.verdict()
    assert v["level"] == "strong signs"
    assert [s["present"] for s in v["signs"]] == [True, True, True]
    assert v["headline"] == (
        "Strong signs of overinterpretation: 3 of the paper's 3 signs (tiny SIS, 5% subsets suffice, "
        "as confident on the subsets)."
    )
    sparse = v["signs"][0]
    assert "average 1.6% of the input" in sparse["observed"]  # 1 of 64 pixels, computed from this report
    assert "under 5% of the image at 0.99" in sparse["reference"]
    json.dumps(v, allow_nan=False)


def test_a_model_that_needs_most_of_the_image_shows_no_sign(needs_everything: AuditReport) -> None:
    rep = needs_everything
    assert rep.mean_sis_size == 47.0 and rep.subset_accuracy.backselect == 0.0
    v = rep.verdict()
    assert v["level"] == "no sign"
    assert [s["present"] for s in v["signs"]] == [False, False, False]
    assert v["headline"] == "No sign of overinterpretation in these numbers: 0 of the paper's 3 signs."
    assert "73.4% of the input" in v["signs"][0]["observed"]


def test_no_confident_image_cannot_tell_sis_sizes(needs_everything: AuditReport) -> None:
    images = torch.full((4, 1, 8, 8), 0.6)  # logit 2: probability 0.88, below 0.99
    rep = audit(MeanReader().eval(), (images, torch.ones(4, dtype=torch.long)), show_progress=False)
    v = verdict(rep)
    sign = v.signs[0]
    assert sign.present is None and "no image reaches confidence 0.99" in sign.observed
    assert v.n_known == 2 and v.short.endswith("of 3 (1 unknown)")
    assert v.headline.endswith("1 cannot be told from these numbers.")
    assert any(c.startswith("No image reaches the threshold 0.99, so there is no SIS to judge") for c in v.caveats)


def test_caveats_name_the_method_baseline_features_threshold_and_sample(report: AuditReport) -> None:
    exact = verdict(report).caveats
    assert exact[0] == "Exact backward selection, as in the paper."
    assert any("Removed features were set to 0" in c and "mean pixel" in c for c in exact)
    assert any("only 64 features" in c for c in exact)  # 8x8 digits
    assert any(c.startswith("10 of 10 images have an SIS: a small sample") for c in exact)
    gradient = dataclasses.replace(report, settings={**report.settings, "method": "gradient", "k": 1, "shortlist": 16})
    text = verdict(gradient).caveats[0]
    ratio, where = ref.GRADIENT_SIZE_RATIOS[("1", "16")]
    assert "k=1, shortlist=16" in text and f"{ratio:.2f}x" in text and where in text
    assert "conservative" in text  # larger SIS than exact's: the signs are conservative
    auto = dataclasses.replace(report, settings={**report.settings, "method": "gradient", "k": "auto"})
    text = verdict(auto).caveats[0]
    ratio, where = ref.GRADIENT_SIZE_RATIOS[("auto", "None")]
    assert ratio < 1.0 and f"{ratio:.2f}x" in text and where in text
    assert "smaller" in text and "conservative" not in text  # smaller SIS than exact's: not conservative
    unknown = dataclasses.replace(report, settings={**report.settings, "method": "gradient", "k": 0.3})
    assert "has not been measured" in verdict(unknown).caveats[0]
    blocks = dataclasses.replace(report, settings={**report.settings, "features": "feature groups"}, threshold=0.9)
    caveats = verdict(blocks).caveats
    assert any("Features are feature groups" in c for c in caveats)
    assert any("this audit used 0.9 and 5%" in c for c in caveats)


def test_verdict_is_in_the_summary_and_the_json(report: AuditReport) -> None:
    text = report.summary()
    assert "verdict: Strong signs of overinterpretation" in text
    assert "  [yes] tiny SIS:" in text and "  caveat: Exact backward selection, as in the paper." in text
    assert report.to_dict()["verdict"] == report.verdict()


def test_signed_numbers_never_print_minus_zero() -> None:
    assert fmt_signed(-0.0004) == "0.000" and fmt_signed(0.0) == "0.000"
    assert fmt_signed(-0.0351) == "-0.035" and fmt_signed(0.2) == "+0.200"
    assert fmt_signed(float("nan")) == "n/a" and fmt_signed(None) == "n/a"


def test_confidence_drop_row_of_a_model_with_no_change(report: AuditReport) -> None:
    """MarkReader is exactly as confident on the subsets: no "mean -0.000 (std 0.000)"."""
    row = dict(report.summary_rows())["confidence drop (BS subsets)"]
    assert "-0.000" not in row and row.startswith("mean 0.000 (no change on any image)")
