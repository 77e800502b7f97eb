"""Ties must not draw false locations: a planted-shortcut model's uninformative pixels tie exactly, and with
lowest-id tie-breaking the pixels kept to the end are the bottom-right ones (a border "shortcut" the model does
not have). Seeded random tie-breaking (``generator=``) spreads them over the image."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from sis_attr.overinterpretation import backward_selection
from sis_attr.overinterpretation.report._figures import report_figures
from sis_attr.testing import PatchClassifier

PATCH = PatchClassifier.PATCH  # the 3x3 patch the decision rests on


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _kept_outside_patch(generator: int | None, method: str, **kw: object) -> torch.Tensor:
    """(row, col) of every kept 5% pixel outside the patch, over all images."""
    images = PatchClassifier.images(6, seed=1)
    sel = backward_selection(
        PatchClassifier().eval(),
        images,
        method=method,
        generator=generator,
        show_progress=False,
        **kw,  # type: ignore[arg-type]
    )
    keep = sel.keep_masks(0.05)[:, 0].clone()  # (N, 32, 32), 52 pixels per image
    assert bool(keep[:, PATCH[0], PATCH[1]].all())  # the patch itself is always kept
    keep[:, PATCH[0], PATCH[1]] = False
    return torch.nonzero(keep)[:, 1:].double()


@pytest.mark.parametrize(
    ("method", "kw"),
    [("gradient", {"k": 0.05, "shortlist": 16}), ("gradient", {"k": "auto", "threshold": 0.99})],
)
def test_seeded_ties_spread_the_kept_uninformative_pixels(method: str, kw: dict[str, object]) -> None:
    lowest = _kept_outside_patch(None, method, **kw)
    spread = _kept_outside_patch(0, method, **kw)
    assert lowest.shape == spread.shape and lowest.shape[0] == 6 * (52 - 9)  # 5% of 1,024 pixels: 52
    # lowest-id ties: every kept uninformative pixel sits in the last rows (the artifact)
    assert float(lowest[:, 0].min()) >= 30
    # random ties: spread like uniform draws (mean row and column near 15.5, every quarter of the rows used,
    # no row holding more than 3x its share)
    assert abs(float(spread[:, 0].mean()) - 15.5) < 3 and abs(float(spread[:, 1].mean()) - 15.5) < 3
    quarters = torch.bincount((spread[:, 0] // 8).long(), minlength=4)
    assert bool((quarters > 0.1 * spread.shape[0]).all())
    per_row = torch.bincount(spread[:, 0].long(), minlength=32)
    assert int(per_row.max()) <= 3 * spread.shape[0] / 32


def test_seeded_ties_are_reproducible_and_independent_of_chunking() -> None:
    images = PatchClassifier.images(5, seed=2)
    model = PatchClassifier().eval()
    opts = {"method": "gradient", "k": 0.05, "shortlist": 16, "show_progress": False, "generator": 3}
    a = backward_selection(model, images, chunk_size=2, **opts)  # type: ignore[arg-type]
    b = backward_selection(model, images, chunk_size=5, batch_size=7, **opts)  # type: ignore[arg-type]
    assert torch.equal(a.keep_masks(0.05), b.keep_masks(0.05))


def test_audit_breaks_ties_at_random_by_default() -> None:
    """The audit's subset heatmap on the planted-shortcut model: no border artifact by default; the paper's
    lowest-id rule (``ties="lowest"``) piles the kept uninformative pixels into the last rows."""
    from sis_attr.overinterpretation import audit

    images = PatchClassifier.images(6, seed=4)
    labels = torch.zeros(6, dtype=torch.long)
    kw = {"method": "gradient", "k": 0.05, "shortlist": 16, "show_progress": False, "controls": False}
    model = PatchClassifier().eval()
    rep_random = audit(model, (images, labels), **kw)  # type: ignore[arg-type]
    rep_lowest = audit(model, (images, labels), ties="lowest", **kw)  # type: ignore[arg-type]
    spread = rep_random.subset_heatmap.frequency.squeeze()
    lowest = rep_lowest.subset_heatmap.frequency.squeeze()
    # the report says which rule drew its heatmaps
    assert rep_random.settings["ties"] == "random (seed 0)" and rep_lowest.settings["ties"] == "lowest feature id"
    captions = {f.filename: f.caption for f in report_figures(rep_random)}
    assert "random order (seed 0)" in captions["subset_heatmap.png"]
    captions = {f.filename: f.caption for f in report_figures(rep_lowest)}
    assert "lowest pixel id" in captions["subset_heatmap.png"]
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[PATCH[0], PATCH[1]] = False
    assert float(lowest[30:][outside[30:]].sum()) == pytest.approx(float(lowest[outside].sum()))
    assert float(spread[30:][outside[30:]].sum()) < 0.25 * float(spread[outside].sum())
    with pytest.raises(ValueError, match="`ties` parameter of audit must be one of"):
        audit(model, (images, labels), ties="first", **kw)  # type: ignore[arg-type]
