"""backward_selection and SelectionResult: records, masks, SIS, persistence, validation and model respect."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from sis_attr.exceptions import SISTypeError, SISValueError, SISWarning, UninformativeBaselineWarning
from sis_attr.functional import backselect
from sis_attr.overinterpretation import SelectionResult, backward_selection, pixel_feature_mask
from sis_attr.testing import TinyConvNet
from tests.overinterpretation.conftest import DIGITS_SELECTED, Digits


def test_records_match_the_core_with_pixel_features(digits: Digits, digits_model: nn.Module) -> None:
    images = digits.test_images[:4]
    sel = backward_selection(digits_model, images, method="exact", show_progress=False)
    core = backselect(digits_model, images, feature_mask=pixel_feature_mask((1, 8, 8)))
    assert [r.order.tolist() for r in sel.records] == [r.order.tolist() for r in core]
    for a, b in zip(sel.records, core, strict=True):
        torch.testing.assert_close(a.values, b.values)
    with torch.no_grad():
        probs = torch.softmax(digits_model(images).double(), dim=1)
    assert torch.equal(sel.targets, probs.argmax(dim=1))
    torch.testing.assert_close(sel.confidences, probs.max(dim=1).values, rtol=0, atol=1e-6)
    assert sel.n_features == 64 and sel.image_shape == (1, 8, 8) and sel.method == "exact"
    assert [r.example for r in sel.records] == [0, 1, 2, 3]


def test_chunking_does_not_change_results(digits: Digits, digits_model: nn.Module) -> None:
    images = digits.test_images[:5]
    a = backward_selection(digits_model, images, chunk_size=2, batch_size=37, show_progress=False)
    b = backward_selection(digits_model, images, chunk_size=64, show_progress=False)
    assert [r.order.tolist() for r in a.records] == [r.order.tolist() for r in b.records]
    assert [r.example for r in a.records] == list(range(5))


def test_hybrid_with_full_shortlist_equals_exact(digits: Digits, digits_model: nn.Module) -> None:
    """With a shortlist covering every feature, the gradient-screened hybrid is exact BackSelect."""
    images = digits.test_images[:3]
    exact = backward_selection(digits_model, images, method="exact", show_progress=False)
    hybrid = backward_selection(digits_model, images, method="gradient", k=1, shortlist=64, show_progress=False)
    assert hybrid.method == "gradient"
    assert [r.order.tolist() for r in hybrid.records] == [r.order.tolist() for r in exact.records]


def test_keep_masks_are_the_last_removed_features(digits_selection: SelectionResult) -> None:
    masks = digits_selection.keep_masks(0.05)
    assert masks.shape == (DIGITS_SELECTED, 1, 8, 8) and masks.dtype == torch.bool
    assert masks.sum(dim=(1, 2, 3)).tolist() == [4] * DIGITS_SELECTED  # ceil(0.05 * 64)
    for i, rec in enumerate(digits_selection.records):
        expected = set(rec.order[-4:].tolist())
        assert set(torch.nonzero(masks[i].flatten()).flatten().tolist()) == expected
    bigger = digits_selection.keep_masks(0.2)
    assert bool((masks <= bigger).all())  # nested: a larger fraction keeps a superset
    assert digits_selection.subset_size(0.05) == 4 and digits_selection.subset_size(1.0) == 64


def test_sis_are_sufficient_and_nan_below_threshold(
    digits: Digits, digits_model: nn.Module, digits_selection: SelectionResult
) -> None:
    threshold = 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UninformativeBaselineWarning)  # blank digits can be confident
        sizes = digits_selection.sis_sizes(threshold)
        masks = digits_selection.sis_masks(threshold)
        higher = digits_selection.sis_sizes(0.99)
    below = digits_selection.confidences < threshold
    assert bool(torch.isnan(sizes[below]).all()) and not bool(torch.isnan(sizes[~below]).any())
    assert masks.sum(dim=(1, 2, 3)).double()[~below].tolist() == sizes[~below].tolist()
    # every SIS alone (rest at the baseline 0) keeps the predicted class at >= threshold
    images = digits.test_images[:DIGITS_SELECTED]
    with torch.no_grad():
        probs = torch.softmax(digits_model(images * masks).double(), dim=1)
    kept = probs.gather(1, digits_selection.targets.unsqueeze(1)).squeeze(1)
    assert bool((kept[~below] >= threshold - 1e-6).all())
    # a higher threshold never gives a smaller SIS (exact records)
    both = ~torch.isnan(higher)
    assert bool((higher[both] >= sizes[both]).all())


def test_empty_sis_warns_once(digits_selection: SelectionResult) -> None:
    """Blank digits are classified confidently by the CNN: an SIS of size 0, reported with one warning."""
    sizes = None
    with pytest.warns(
        UninformativeBaselineWarning,
        match=r"of 48 images keep a confidence of at least 0\.5 with every feature removed .* threshold 0\.5 are empty",
    ):
        sizes = digits_selection.sis_sizes(0.5)
    assert sizes is not None and bool((sizes == 0).any())


def test_feature_mask_options(digits: Digits, digits_model: nn.Module) -> None:
    images = digits.test_images[:2]
    per_element = backward_selection(digits_model, images, feature_mask=None, show_progress=False)
    assert per_element.n_features == 64 and per_element.feature_mask.shape == (1, 1, 8, 8)
    quadrants = torch.arange(4).reshape(2, 2).repeat_interleave(4, 0).repeat_interleave(4, 1)
    sel = backward_selection(digits_model, images, feature_mask=quadrants, show_progress=False)
    assert sel.n_features == 4 and sel.keep_masks(0.25).sum(dim=(1, 2, 3)).tolist() == [16, 16]
    rgb = backward_selection(TinyConvNet(classes=3), torch.rand(1, 3, 2, 2), feature_mask=None, show_progress=False)
    assert rgb.n_features == 12 and rgb.keep_masks(0.25).shape == (1, 3, 2, 2)
    assert rgb.keep_masks(0.25).sum().item() == 3


def test_save_load_round_trip(tmp_path: Path, digits_selection: SelectionResult) -> None:
    path = tmp_path / "selection.pt"
    digits_selection.save(path)
    raw = torch.load(path, weights_only=True)  # tensors only: loads without unpickling code
    assert all(isinstance(v, torch.Tensor) for v in raw.values())
    loaded = SelectionResult.load(path)
    assert loaded.method == digits_selection.method and loaded.image_shape == digits_selection.image_shape
    assert torch.equal(loaded.keep_masks(0.1), digits_selection.keep_masks(0.1))
    assert torch.equal(loaded.targets, digits_selection.targets)
    for a, b in zip(loaded.records, digits_selection.records, strict=True):
        assert torch.equal(a.order, b.order) and torch.allclose(a.values, b.values, equal_nan=True)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(SISValueError, match="could not read"):
        SelectionResult.load(tmp_path / "junk.pt")


def test_select_and_to_dict(digits_selection: SelectionResult) -> None:
    sub = digits_selection.select([3, 0])
    assert len(sub) == 2 and torch.equal(sub.targets, digits_selection.targets[[3, 0]])
    assert torch.equal(sub.records[0].order, digits_selection.records[3].order) and sub.records[0].example == 0
    d = digits_selection.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["n_images"] == DIGITS_SELECTED and d["n_features"] == 64 and d["method"] == "exact"


def test_plot(digits_selection: SelectionResult) -> None:
    import matplotlib.pyplot as plt

    ax = digits_selection.plot(index=1)
    assert ax.get_xlabel() == "fraction of features kept"
    plt.close("all")


def test_never_changes_the_model_and_warns_in_training_mode(digits: Digits) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Dropout(0.0))  # a new module is in training mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(SISWarning, match="training mode"):
        backward_selection(model, digits.test_images[:1], show_progress=False)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "greedy"}, SISValueError, "The `method` parameter of backward_selection"),
        ({"method": "exact", "k": 4}, SISValueError, 'apply to method="gradient" only'),
        ({"method": "exact", "shortlist": 8}, SISValueError, 'apply to method="gradient" only'),
        ({"method": "gradient", "k": 0}, SISValueError, "The `k` parameter of backward_selection"),
        ({"target": 10}, SISValueError, r"must be made of class indices in \[0, 9\]"),
        ({"target": [1, 2, 3]}, SISValueError, r"one entry per example \(2\)\. Got 3 entries"),
        ({"feature_mask": "channel"}, SISValueError, "The `feature_mask` parameter"),
        ({"feature_mask": torch.zeros(4, 4, dtype=torch.long)}, SISValueError, "shared by all images"),
        ({"feature_mask": torch.zeros(8, 8)}, SISTypeError, "integer tensor of group ids"),
        ({"baselines": torch.zeros(3, 8, 8)}, SISValueError, "broadcastable to the images' shape"),
        ({"batch_size": 0}, SISValueError, "The `batch_size` parameter of backward_selection"),
        ({"chunk_size": -1}, SISValueError, "The `chunk_size` parameter of backward_selection"),
    ],
)
def test_validation(digits: Digits, digits_model: nn.Module, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        backward_selection(digits_model, digits.test_images[:2], show_progress=False, **kwargs)


def test_validation_of_images(digits_model: nn.Module) -> None:
    with pytest.raises(SISValueError, match="non-empty batch"):
        backward_selection(digits_model, torch.zeros(0, 1, 8, 8), show_progress=False)
    with pytest.raises(SISValueError, match=r"shape \(N, C, H, W\)"):
        backward_selection(digits_model, torch.zeros(1, 8, 8), show_progress=False)
    with pytest.raises(SISTypeError, match="floating-point"):
        backward_selection(digits_model, torch.zeros(1, 1, 8, 8, dtype=torch.uint8), show_progress=False)
    with pytest.raises(SISTypeError, match=r"torch\.nn\.Module"):
        backward_selection(lambda x: x, torch.zeros(1, 1, 8, 8), show_progress=False)  # type: ignore[arg-type]


def test_progress_bar_runs(digits: Digits, digits_model: nn.Module, capsys: pytest.CaptureFixture[str]) -> None:
    backward_selection(digits_model, digits.test_images[:1], show_progress=True)
    assert "Backward selection" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_follows_the_model_device(digits: Digits, digits_model: nn.Module) -> None:
    import copy

    model = copy.deepcopy(digits_model).cuda()
    sel = backward_selection(model, digits.test_images[:2], show_progress=False)
    ref = backward_selection(digits_model, digits.test_images[:2], show_progress=False)
    assert sel.targets.device.type == "cpu"
    assert [r.order.tolist() for r in sel.records] == [r.order.tolist() for r in ref.records]


@pytest.mark.slow
@pytest.mark.real_data
def test_gradient_selection_on_cifar_resnet20(cifar_hybrid_selection: SelectionResult) -> None:
    """The hybrid records are complete and usable at any threshold (real CIFAR-10, ResNet20)."""
    sel = cifar_hybrid_selection
    assert sel.n_features == 1024 and sel.image_shape == (3, 32, 32) and sel.method == "gradient"
    assert all(sorted(r.order.tolist()) == list(range(1024)) for r in sel.records)
    assert sel.keep_masks(0.05).sum(dim=(1, 2, 3)).tolist() == [52] * len(sel)
    sizes = sel.sis_sizes(0.99)
    ok = ~torch.isnan(sizes)
    assert bool(ok.any()) and bool((sizes[ok] >= 1).all()) and bool((sizes[ok] < 1024).all())
    assert not math.isnan(sel.to_dict()["mean_confidence"])


def test_pixel_feature_mask_old_path_is_deprecated() -> None:
    import sis_attr.overinterpretation.selection as selection_module

    with pytest.warns(DeprecationWarning, match="import pixel_feature_mask from sis_attr.overinterpretation"):
        old = selection_module.pixel_feature_mask
    assert old is pixel_feature_mask


def test_targets_as_tuple_and_none_baselines(digits: Digits, digits_model: nn.Module) -> None:
    images = digits.test_images[:2]
    a = backward_selection(digits_model, images, target=(3, 4), baselines=None, show_progress=False)
    b = backward_selection(digits_model, images, target=torch.tensor([3, 4]), baselines=0.0, show_progress=False)
    assert a.targets.tolist() == [3, 4]
    assert [r.order.tolist() for r in a.records] == [r.order.tolist() for r in b.records]


def test_mask_shapes_follow_the_feature_mask(digits_selection: SelectionResult) -> None:
    """Keep-masks and SIS masks are (N, 1 or C, H, W); ``masks[i, 0]`` is the (H, W) image for pixel features."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UninformativeBaselineWarning)
        sis = digits_selection.sis_masks(0.9)
    assert sis.shape == digits_selection.keep_masks().shape == (DIGITS_SELECTED, 1, 8, 8)
    assert sis[0, 0].shape == (8, 8)


def test_empty_sis_warning_points_at_the_callers_line(digits_selection: SelectionResult) -> None:
    from sis_attr.overinterpretation import location_heatmap, mean_sis_size_curve, sis_size_statistics

    labels = digits_selection.targets
    calls = (
        lambda: digits_selection.sis_sizes(0.5),
        lambda: digits_selection.sis_masks(0.5),
        lambda: sis_size_statistics(digits_selection, labels, thresholds=[0.5]),
        lambda: mean_sis_size_curve({"m": digits_selection}, [0.5]),
        lambda: location_heatmap(digits_selection, threshold=0.5),
    )
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        empty = [w for w in caught if issubclass(w.category, UninformativeBaselineWarning)]
        assert len(empty) == 1 and empty[0].filename == __file__


def test_adaptive_k_needs_and_uses_a_threshold(digits: Digits, digits_model: nn.Module) -> None:
    from sis_attr import AdaptiveK

    images = digits.test_images[:2]
    with pytest.raises(SISValueError, match="steers by a threshold"):
        backward_selection(digits_model, images, method="gradient", k="adaptive", show_progress=False)
    a = backward_selection(digits_model, images, method="gradient", k="adaptive", threshold=0.9, show_progress=False)
    b = backward_selection(digits_model, images, method="gradient", k=AdaptiveK(threshold=0.9), show_progress=False)
    assert [r.order.tolist() for r in a.records] == [r.order.tolist() for r in b.records]
    with pytest.raises(SISValueError, match=r"The `threshold` parameter of backward_selection must be in \(0, 1\]"):
        backward_selection(digits_model, images, method="gradient", k="adaptive", threshold=2.0, show_progress=False)


def test_packed_records_behave_like_a_list(tmp_path: Path, digits: Digits, digits_model: nn.Module) -> None:
    sel = backward_selection(digits_model, digits.test_images[:3], checkpoint_dir=tmp_path, show_progress=False)
    assert len(sel.records) == 3 and sel.records[-1].example == 2 and [r.example for r in sel.records[1:]] == [1, 2]
    with pytest.raises(IndexError):
        sel.records[3]
    assert sel.records[0].order.dtype == torch.int64 and sel.records[0].values.dtype == torch.float64
