"""Tests for sis_attr.overinterpretation.audit (in module pipeline): an audit of a model with hand-known SIS."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import Tensor, nn

from sis_attr.datasets import LabelledImages, TensorImageDataset, load_digits_images
from sis_attr.exceptions import SISError, SISTypeError, SISValueError, UninformativeBaselineWarning
from sis_attr.overinterpretation.demo import DIGITS_SHORTCUT_POSITIONS, plant_shortcut, shortcut_share
from sis_attr.overinterpretation.pipeline import audit, block_feature_mask
from sis_attr.overinterpretation.report import AuditReport

N_IMAGES = 20


class MarkReader(nn.Module):
    """Reads only the shortcut marks: the logit of class c is ``20 * x[mark of c]``.

    On a digit with the mark of its class (and no ink on the other marks) the prediction is the label with
    confidence ``e^20 / (e^20 + 9)``; with the mark removed every logit is 0 (confidence 0.1). So the SIS at
    0.99 is exactly the mark pixel, the 5% subsets keep it, and random subsets almost never do.
    """

    rows: Tensor
    cols: Tensor

    def __init__(self, positions: tuple[tuple[int, int], ...] = DIGITS_SHORTCUT_POSITIONS) -> None:
        super().__init__()
        self.register_buffer("rows", torch.tensor([p[0] for p in positions]))
        self.register_buffer("cols", torch.tensor([p[1] for p in positions]))

    def forward(self, x: Tensor) -> Tensor:
        return 20.0 * x[:, 0, self.rows, self.cols]


def marked_digits(n: int = N_IMAGES) -> LabelledImages:
    images, labels, names = load_digits_images()
    images, labels = images[:n], labels[:n]
    return LabelledImages(plant_shortcut(images, labels), labels, names)


@pytest.fixture(scope="module")
def toy_report() -> AuditReport:
    return audit(MarkReader().eval(), marked_digits(), name="mark reader", show_progress=False, n_examples=5)


def test_known_sis_is_the_mark(toy_report: AuditReport) -> None:
    data = marked_digits()
    rep = toy_report
    assert rep.n_images == N_IMAGES and rep.n_features == 64
    assert rep.accuracy == 1.0
    assert rep.n_confident == N_IMAGES
    assert rep.mean_sis_size == 1.0
    assert rep.mean_sis_fraction == pytest.approx(1 / 64)
    # every SIS is the mark of the image's class
    masks = rep.selection.sis_masks(0.99)[:, 0]
    for i, label in enumerate(data.labels.tolist()):
        r, c = DIGITS_SHORTCUT_POSITIONS[label]
        assert masks[i].sum() == 1 and masks[i, r, c]
    assert rep.heatmap is not None
    assert rep.heatmap.peak() in DIGITS_SHORTCUT_POSITIONS
    assert shortcut_share(rep) == pytest.approx(1.0)
    # the 5% subsets (4 pixels) keep the mark: accurate and as confident; random 4-pixel subsets are not
    assert rep.subset_features == 4
    assert rep.subset_accuracy.backselect == 1.0
    assert rep.subset_accuracy.random < 0.5
    assert abs(rep.confidence.mean) < 1e-6


def test_examples_show_the_sis(toy_report: AuditReport) -> None:
    ex = toy_report.examples
    assert len(ex) == 5
    assert ex.sis_sizes == (1,) * 5
    assert all(c >= 0.99 for c in ex.sis_confidences)
    assert ex.labels == ex.predictions
    assert len(set(ex.predictions)) == 5  # one class at a time
    assert list(ex.predictions) == sorted(ex.predictions)
    for j, label in enumerate(ex.labels):
        r, c = DIGITS_SHORTCUT_POSITIONS[label]
        assert ex.sis_masks[j].sum() == 1 and ex.sis_masks[j, r, c]
        # the SIS image is the original on the SIS and the baseline (0) elsewhere
        assert ex.sis_images[j, 0, r, c] == 1.0
        assert ex.sis_images[j].sum() == 1.0
        assert torch.equal(ex.images[j], marked_digits().images[ex.indices[j]])


def test_summary_and_dict(toy_report: AuditReport) -> None:
    text = toy_report.summary()
    assert text.splitlines()[0] == "Overinterpretation audit: mark reader"
    assert "mean SIS size @ 0.99" in text and "1.0 features" in text
    assert str(toy_report) == text
    d = toy_report.to_dict()
    json.dumps(d, allow_nan=False)  # strict JSON: NaN became None
    assert d["mean_sis_size"] == 1.0 and d["n_images"] == N_IMAGES
    assert d["sis_heatmap"]["peak"] == list(toy_report.heatmap.peak())  # type: ignore[union-attr]
    assert d["settings"]["method"] == "exact" and d["settings"]["features"] == "pixels"
    assert sorted(d["sis_sizes"]["thresholds"]) == [0.9, 0.95, 0.99]


@pytest.mark.parametrize(
    "data",
    [
        lambda d: d,
        lambda d: (d.images, d.labels),
        lambda d: (d.images, d.labels.tolist()),
        lambda d: TensorImageDataset(d.images, d.labels),
    ],
    ids=["LabelledImages", "tuple", "list-labels", "dataset"],
)
def test_data_forms_agree(data) -> None:  # type: ignore[no-untyped-def]
    d = marked_digits(5)
    rep = audit(MarkReader().eval(), data(d), show_progress=False, n_examples=0)
    assert rep.mean_sis_size == 1.0
    assert torch.equal(rep.labels, d.labels)
    assert len(rep.examples) == 0


def test_class_names_default_and_override() -> None:
    d = marked_digits(3)
    rep = audit(MarkReader().eval(), (d.images, d.labels), show_progress=False, n_examples=1)
    assert rep.class_names == tuple(str(i) for i in range(10))
    rep = audit(
        MarkReader().eval(), (d.images, d.labels), class_names=["zero", "one"], show_progress=False, n_examples=1
    )
    assert rep.class_names[:3] == ("zero", "one", "2") and len(rep.class_names) == 10


def test_threshold_always_in_grid() -> None:
    d = marked_digits(4)
    rep = audit(MarkReader().eval(), d, threshold=0.97, thresholds=[0.5], show_progress=False, n_examples=0)
    assert rep.sis_sizes.thresholds == (0.5, 0.97)
    assert rep.mean_sis_size == 1.0


def test_model_is_left_alone() -> None:
    d = marked_digits(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    audit(model, d, show_progress=False, threshold=0.2, n_examples=2)
    assert not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gradient_method_and_block_features() -> None:
    d = marked_digits(6)
    rep = audit(
        MarkReader().eval(),
        d,
        method="gradient",
        k=2,
        shortlist=4,
        feature_mask=block_feature_mask(8, 8, 2),
        show_progress=False,
        n_examples=2,
    )
    assert rep.n_features == 16
    assert rep.settings["method"] == "gradient" and rep.settings["features"] == "feature groups"
    assert rep.settings["k"] == 2 and rep.settings["shortlist"] == 4
    assert rep.mean_sis_size >= 1.0
    assert rep.subset_accuracy.backselect == 1.0


def test_uninformative_baseline_warned_once_and_noted() -> None:
    # a model that prefers class 0 even on the blank image: empty SIS at thresholds it reaches
    class Biased(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            logits = torch.zeros(x.shape[0], 3)
            logits[:, 0] = 10.0
            return logits

    images = torch.rand(3, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = audit(Biased(), (images, torch.zeros(3, dtype=torch.long)), show_progress=False, n_examples=1)
    messages = [str(w.message) for w in caught if issubclass(w.category, UninformativeBaselineWarning)]
    assert messages and len(messages) == len(set(messages))
    assert any("UninformativeBaselineWarning" in n for n in rep.notes)
    assert rep.mean_sis_size == 0.0


# ------------------------------------------------------------------------------------------------ errors
def test_empty_data() -> None:
    with pytest.raises(SISValueError, match="at least one image"):
        audit(MarkReader(), (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), show_progress=False)


def test_labels_outside_the_model_classes() -> None:
    d = marked_digits(4)
    with pytest.raises(SISValueError, match=r"in \[0, 9\].*10 outputs.*up to 12"):
        audit(MarkReader(), (d.images, torch.tensor([0, 1, 12, 3])), show_progress=False)


def test_data_that_does_not_fit_the_model() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(SISValueError, match=r"cannot run on the data: images of shape \(3, 8, 8\).*RuntimeError"):
        audit(model, (torch.rand(2, 3, 8, 8), torch.tensor([0, 1])), show_progress=False)
    with pytest.raises(SISValueError, match="logits of shape"):
        audit(nn.Flatten(0), (torch.rand(2, 1, 8, 8), torch.tensor([0, 1])), show_progress=False)
    with pytest.raises(SISValueError, match="one logit"):
        audit(nn.Sequential(nn.Flatten(), nn.Linear(64, 1)), (torch.rand(2, 1, 8, 8), torch.tensor([0, 0])))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"threshold": 1.5}, SISValueError, "threshold"),
        ({"fraction": 0.0}, SISValueError, "fraction"),
        ({"thresholds": [2.0]}, SISValueError, "thresholds"),
        ({"n_examples": -1}, SISValueError, "n_examples"),
        ({"seed": True}, SISValueError, "seed"),
        ({"name": 3}, SISTypeError, "name"),
        ({"method": "fast"}, SISValueError, "method"),
        ({"k": 4}, SISValueError, "gradient"),
        ({"class_names": "abc"}, SISTypeError, "class_names"),
    ],
)
def test_invalid_options(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    d = marked_digits(2)
    with pytest.raises(error, match=match):
        audit(MarkReader(), d, show_progress=False, **kwargs)  # type: ignore[arg-type]


def test_invalid_model_and_data_types() -> None:
    d = marked_digits(2)
    with pytest.raises(SISTypeError, match=r"torch\.nn\.Module"):
        audit(lambda x: x, d)  # type: ignore[arg-type]
    with pytest.raises(SISTypeError, match="data"):
        audit(MarkReader(), [1, 2, 3])
    with pytest.raises(SISError):
        audit(MarkReader(), (d.images.long(), d.labels))
    assert issubclass(SISValueError, ValueError)


# ------------------------------------------------------------------------------------------------ helpers
def test_block_feature_mask() -> None:
    m = block_feature_mask(5, 7, 3)
    assert m.shape == (1, 1, 5, 7)
    assert torch.equal(torch.unique(m), torch.arange(6))  # 2 x 3 blocks, edge blocks smaller
    assert int((m == 0).sum()) == 9 and int((m == 5).sum()) == 2
    assert torch.equal(block_feature_mask(4, 4, 1)[0, 0], torch.arange(16).view(4, 4))
    with pytest.raises(SISValueError, match="block"):
        block_feature_mask(4, 4, 0)


def test_plant_shortcut_does_not_change_input() -> None:
    images = torch.zeros(2, 1, 8, 8)
    out = plant_shortcut(images, torch.tensor([8, 9]))
    assert images.sum() == 0
    assert out[0, 0, 3, 7] == 1.0 and out[1, 0, 4, 7] == 1.0
    with pytest.raises(SISValueError, match="labels"):
        plant_shortcut(images, torch.tensor([10, 0]))
    assert math.isnan(float("nan"))
