"""Tests for sis_attr.overinterpretation.audit (in module pipeline): an audit of a model with hand-known SIS."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import sis_attr._core.validation as validation
from sis_attr.datasets import LabelledImages, TensorImageDataset, load_digits_images
from sis_attr.demo import DIGITS_SHORTCUT_POSITIONS, plant_shortcut, shortcut_share
from sis_attr.exceptions import SISError, SISTypeError, SISValueError, SISWarning, UninformativeBaselineWarning
from sis_attr.overinterpretation import block_feature_mask, mean_sis_size_curve
from sis_attr.overinterpretation.pipeline import audit
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
    assert d["settings"]["method"] == "gradient" and d["settings"]["k"] == "auto"  # the default: the automatic schedule
    assert d["settings"]["features"] == "pixels"
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
    # a model that prefers class 0 even on the blank image: empty SIS at thresholds it reaches (its output does
    # not depend on the input, so it has no gradient: exact BackSelect)
    class Biased(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            logits = torch.zeros(x.shape[0], 3)
            logits[:, 0] = 10.0
            return logits

    images = torch.rand(3, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = audit(
            Biased(), (images, torch.zeros(3, dtype=torch.long)), show_progress=False, n_examples=1, method="exact"
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, UninformativeBaselineWarning)]
    assert messages and len(messages) == len(set(messages))
    assert any("UninformativeBaselineWarning" in n for n in rep.notes)
    assert rep.mean_sis_size == 0.0


# ------------------------------------------------------------------------------------------------ work done once
class CountingModel(nn.Module):
    """Wraps a model; counts its forward calls and the rows that are one of the full, unmasked ``images``."""

    def __init__(self, inner: nn.Module, images: Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.images = images.reshape(images.shape[0], -1)
        self.calls = 0
        self.calls_with_full_images = 0
        self.full_rows = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        rows = x.detach().reshape(x.shape[0], -1)
        full = (rows[:, None, :] == self.images[None, :, :]).all(dim=2).any(dim=1)
        self.full_rows += int(full.sum())
        self.calls_with_full_images += int(full.any())
        return self.inner(x)


def counted_audit(method: str, **kwargs: object) -> tuple[CountingModel, AuditReport]:
    """An audit of a linear model on 6 images without a pixel equal to the baseline (no removal is a no-op)."""
    images = 0.1 + torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    inner = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    with torch.no_grad():
        labels = inner(images).argmax(dim=1)
    model = CountingModel(inner, images)
    kwargs = {"batch_size": 256, **kwargs}  # batch_size=None would time passes on the full images first
    rep = audit(model, (images, labels), method=method, threshold=0.4, fraction=0.25, show_progress=False, **kwargs)  # type: ignore[arg-type]
    return model, rep


def test_audit_runs_the_model_on_the_full_images_once() -> None:
    """One pass over the full images feeds the selection targets, the confidence drop and the accuracy.

    Before the pipeline was restructured, ``audit`` ran the model 6 times on these full images (a 2-image probe,
    backward_selection's targets, the core's targets and starting scores, confidence_drop, subset_accuracy): 32
    full-image rows for 6 images.
    """
    model, rep = counted_audit("exact")
    assert model.calls_with_full_images == 1 and model.full_rows == 6
    assert rep.subset_accuracy.full == 1.0
    torch.testing.assert_close(rep.confidence.full_confidences, rep.selection.confidences)


def test_audit_with_gradient_selection_adds_only_the_first_gradient_step() -> None:
    """The gradient method needs the gradient at the full images: one forward there, besides the audit's pass."""
    model, _ = counted_audit("gradient", k=4)
    assert model.calls_with_full_images == 2 and model.full_rows == 12


def test_audit_validates_the_images_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import sis_attr.overinterpretation._common as common
    import sis_attr.overinterpretation.pipeline as pipeline
    import sis_attr.overinterpretation.selection as selection
    import sis_attr.overinterpretation.subsets as subsets

    calls: list[str] = []
    original = validation.format_images

    def counting(images: object, caller: str, *args: object, **kwargs: object) -> Tensor:
        calls.append(caller)
        return original(images, caller, *args, **kwargs)  # type: ignore[arg-type]

    for module in (validation, pipeline, selection, subsets, common):
        if hasattr(module, "format_images"):
            monkeypatch.setattr(module, "format_images", counting)
    import sis_attr.overinterpretation.accuracy as accuracy
    import sis_attr.overinterpretation.confidence as confidence

    monkeypatch.setattr(accuracy, "format_images", counting)
    monkeypatch.setattr(confidence, "format_images", counting)
    audit(MarkReader().eval(), marked_digits(4), show_progress=False, n_examples=1)
    assert calls == ["audit"]


def test_audit_computes_the_sis_size_curve() -> None:
    d = marked_digits(5)
    rep = audit(MarkReader().eval(), d, name="marks", show_progress=False, n_examples=0)
    assert rep.sis_size_curve is not None
    expected = mean_sis_size_curve({"marks": rep.selection}, rep.sis_sizes.thresholds, accuracies={"marks": 1.0})
    assert rep.sis_size_curve.thresholds == expected.thresholds == (0.9, 0.95, 0.99)
    torch.testing.assert_close(rep.sis_size_curve.mean["marks"], expected.mean["marks"])
    assert rep.sis_size_curve.accuracies == {"marks": 1.0}


def test_training_mode_warned_once() -> None:
    d = marked_digits(3)
    model = nn.Sequential(nn.Dropout(0.0), MarkReader()).train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = audit(model, d, show_progress=False, n_examples=1)
    training = [w for w in caught if issubclass(w.category, SISWarning) and "training mode" in str(w.message)]
    assert len(training) == 1 and training[0].filename == __file__
    assert model.training  # never changed
    assert any("training mode" in note for note in rep.notes)


class BlankPrefersZero(nn.Module):
    """Class 0 with confidence ``softmax([s, 0])`` where ``s = 2.5 - sum(x)``: 0.924 on the blank image."""

    def forward(self, x: Tensor) -> Tensor:
        s = 2.5 - x.flatten(1).sum(dim=1)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_empty_sis_warned_only_at_the_thresholds_asked_for() -> None:
    # blank image: confidence 0.924, so the SIS are empty at 0.9 (a default extra threshold), not at 0.95 or 0.99
    images = torch.zeros(3, 1, 2, 2)
    images[:, 0, 0, 0] = -3.0  # confidence ~1 on the full images
    labels = torch.zeros(3, dtype=torch.long)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = audit(BlankPrefersZero(), (images, labels), fraction=0.25, show_progress=False, n_examples=1)
    assert not [w for w in caught if issubclass(w.category, UninformativeBaselineWarning)]
    assert rep.sis_sizes[0.9].mean_size == 0.0 and rep.mean_sis_size == 1.0
    with pytest.warns(UninformativeBaselineWarning, match=r"at threshold 0\.9 are empty.*a threshold above 0\.924"):
        audit(BlankPrefersZero(), (images, labels), thresholds=[0.9], fraction=0.25, show_progress=False)
    with pytest.warns(UninformativeBaselineWarning, match=r"3 of 3 images .*at threshold 0\.9 are empty"):
        audit(BlankPrefersZero(), (images, labels), threshold=0.9, fraction=0.25, show_progress=False)


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
        (
            {"threshold": 99},
            SISValueError,
            r"The `threshold` parameter of audit must be in \(0, 1\], a proportion \(0\.99 ",
        ),
        ({"fraction": 5}, SISValueError, r"proportion \(0\.05 for 5%\)"),
        ({"baselines": torch.zeros(2, 2)}, SISValueError, r"broadcastable to the images' shape \(2, 1, 8, 8\)"),
        ({"feature_mask": torch.zeros(4, 4, dtype=torch.long)}, SISValueError, "feature_mask"),
        ({"chunk_size": 0}, SISValueError, "chunk_size"),
        ({"batch_size": 0}, SISValueError, "batch_size"),
        ({"fraction": 0.0}, SISValueError, "fraction"),
        ({"thresholds": [2.0]}, SISValueError, "thresholds"),
        ({"n_examples": -1}, SISValueError, "n_examples"),
        ({"seed": True}, SISValueError, "seed"),
        ({"name": 3}, SISTypeError, "name"),
        ({"method": "fast"}, SISValueError, "method"),
        ({"method": "exact", "k": 4}, SISValueError, "gradient"),
        ({"class_names": "abc"}, SISTypeError, "class_names"),
    ],
)
def test_invalid_options(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    d = marked_digits(2)
    with pytest.raises(error, match=match):
        audit(MarkReader(), d, show_progress=False, **kwargs)  # type: ignore[arg-type]


def test_wrong_data_shapes() -> None:
    d = marked_digits(4)
    with pytest.raises(SISValueError, match=r"`data` parameter of audit must be a tensor of shape \(N, C, H, W\)"):
        audit(MarkReader(), (d.images[:, 0], d.labels), show_progress=False)
    with pytest.raises(SISValueError, match=r"`data` parameter of audit must be of shape \(4,\).*Got shape \(3,\)"):
        audit(MarkReader(), (d.images, d.labels[:3]), show_progress=False)
    with pytest.raises(SISValueError, match="non-negative"):
        audit(MarkReader(), (d.images, torch.tensor([0, -1, 2, 3])), show_progress=False)
    with pytest.raises(SISTypeError, match=r"\(images, labels\).*Got a tensor of shape \(4, 1, 8, 8\) alone"):
        audit(MarkReader(), d.images, show_progress=False)


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
def test_block_feature_mask_still_importable_from_the_pipeline() -> None:
    from sis_attr.overinterpretation.pipeline import block_feature_mask as old_place

    assert old_place is block_feature_mask


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


# ------------------------------------------------------------------------------------------------ robustness (issue 9)
class AlwaysDropout(nn.Module):
    """Dropout applied even in eval mode (``F.dropout(training=True)``): a nondeterministic model."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(nn.functional.dropout(x, p=0.5, training=True))


def test_nondeterministic_model_is_refused_before_any_work() -> None:
    model = AlwaysDropout().eval()
    with pytest.raises(SISValueError, match=r"not deterministic.*model\.eval\(\).*F\.dropout\(x, training=True\)"):
        audit(model, marked_digits(3), show_progress=False)
    from sis_attr.overinterpretation import backward_selection

    with pytest.raises(SISValueError, match="not deterministic"):
        backward_selection(model, marked_digits(3).images, show_progress=False)


def test_probabilities_instead_of_logits_are_warned_about() -> None:
    """A Softmax-terminated model caps every confidence (here at e / (e + 9) = 0.23): the audit says why."""
    model = nn.Sequential(MarkReader(), nn.Softmax(dim=1)).eval()
    with pytest.warns(SISWarning, match=r"seems to return probabilities.*below 0\.23.*Remove the final softmax"):
        rep = audit(model, marked_digits(3), show_progress=False, n_examples=0)
    assert any("probabilities" in note for note in rep.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SISWarning)  # log-probabilities are fine
        audit(nn.Sequential(MarkReader(), nn.LogSoftmax(dim=1)).eval(), marked_digits(3), show_progress=False)


def test_integer_logits_are_a_clear_error() -> None:
    class Rounded(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return MarkReader()(x).long()

    with pytest.raises(SISTypeError, match=r"floating-point logits\. Got dtype torch\.int64"):
        audit(Rounded(), marked_digits(3), show_progress=False)
    from sis_attr import SufficientInputSubsets

    with pytest.raises(SISTypeError, match="floating-point logits"):
        SufficientInputSubsets(Rounded()).attribute(marked_digits(1).images, threshold=0.5)


@pytest.mark.parametrize("value", [torch.tensor(0.99), np.float32(0.99), np.float64(0.99), torch.tensor([0.99])])
def test_thresholds_and_fractions_accept_tensors_and_numpy_numbers(value: object) -> None:
    d = marked_digits(3)
    ref = audit(MarkReader().eval(), d, threshold=0.99, fraction=0.05, show_progress=False, n_examples=0)
    rep = audit(
        MarkReader().eval(),
        d,
        threshold=value,  # type: ignore[arg-type]
        fraction=np.float32(0.05),  # type: ignore[arg-type]
        thresholds=[value, np.float64(0.9)],  # type: ignore[list-item]
        show_progress=False,
        n_examples=0,
    )
    assert rep.mean_sis_size == ref.mean_sis_size and rep.subset_features == ref.subset_features
    assert rep.threshold == pytest.approx(0.99) and rep.fraction == pytest.approx(0.05)
    with pytest.raises(SISTypeError, match="must be a number"):
        audit(MarkReader().eval(), d, threshold=np.bool_(True), show_progress=False)  # type: ignore[arg-type]


def test_adaptive_k_steers_by_the_audit_threshold() -> None:
    """Issue 9, defect 2: ``k="adaptive"`` used to fail ("Pass AdaptiveK(threshold=...)")."""
    from sis_attr import AdaptiveK

    d = marked_digits(4)
    rep = audit(MarkReader().eval(), d, method="gradient", k="adaptive", threshold=0.99, show_progress=False)
    explicit = audit(
        MarkReader().eval(), d, method="gradient", k=AdaptiveK(threshold=0.99), threshold=0.99, show_progress=False
    )
    assert [r.order.tolist() for r in rep.selection.records] == [r.order.tolist() for r in explicit.selection.records]
    assert rep.settings["k"] == "adaptive" and rep.n_images == 4


def test_baseline_with_requires_grad_leaks_no_warning() -> None:
    d = marked_digits(2)
    base = torch.zeros(1, 1, 8, 8, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audit(MarkReader().eval(), d, baselines=base, show_progress=False, n_examples=1)
        audit(MarkReader().eval(), d, baselines=base, method="gradient", show_progress=False, n_examples=1)
        from sis_attr import BatchedGradientSIS, SufficientInputSubsets

        SufficientInputSubsets(MarkReader()).attribute(d.images, baselines=base, threshold=0.5)
        BatchedGradientSIS(MarkReader()).attribute(d.images, baselines=base, threshold=0.5)


def test_progress_bar_counts_images_with_rate_and_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    audit(MarkReader().eval(), marked_digits(3), show_progress=True, n_examples=0, shard_size=1, chunk_size=1)
    err = capsys.readouterr().err
    assert "Backward selection (gradient)" in err and "3/3" in err and "image/s" in err
