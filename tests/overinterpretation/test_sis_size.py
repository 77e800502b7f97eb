"""sis_size_statistics and mean_sis_size_curve, against hand-built records and on real models."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from scipy import stats

from sis_attr._core.results import BackSelectRecord
from sis_attr.exceptions import SISTypeError, SISValueError, UninformativeBaselineWarning
from sis_attr.overinterpretation import (
    SelectionResult,
    mean_sis_size_curve,
    pixel_feature_mask,
    sis_size_statistics,
)
from tests.overinterpretation.conftest import DIGITS_SELECTED, Cifar, Digits

D = 16  # features of the synthetic images (4x4 pixels)


def synthetic_selection(sizes: list[int], confidences: list[float], targets: list[int]) -> SelectionResult:
    """Records whose SIS has exactly ``sizes[i]`` features at every threshold <= ``confidences[i]``."""
    records = []
    for i, (s, c) in enumerate(zip(sizes, confidences, strict=True)):
        values = torch.full((D + 1,), math.log(0.01), dtype=torch.float64)
        values[: D - s + 1] = math.log(c)
        records.append(BackSelectRecord(order=torch.arange(D), values=values, log_space=True, n_features=D, example=i))
    return SelectionResult(
        records=records,
        targets=torch.tensor(targets),
        confidences=torch.tensor(confidences, dtype=torch.float64),
        n_features=D,
        method="exact",
        feature_mask=pixel_feature_mask((1, 4, 4)),
        image_shape=(1, 4, 4),
    )


def test_statistics_against_hand_computation() -> None:
    sizes = [4, 6, 5, 7, 1, 2, 2, 9]
    confs = [0.999, 0.995, 0.999, 0.97, 0.999, 0.96, 0.991, 0.5]
    targets = [0, 1, 2, 3, 4, 5, 6, 7]
    labels = torch.tensor([0, 1, 2, 3, 0, 0, 0, 7])  # images 4, 5, 6 misclassified
    res = sis_size_statistics(synthetic_selection(sizes, confs, targets), labels, thresholds=[0.99, 0.95])
    assert res.thresholds == (0.95, 0.99) and res.accuracy == 5 / 8
    t95 = res[0.95]
    assert t95.n_images == 7 and t95.n_correct == 4 and t95.n_misclassified == 3
    assert torch.isnan(t95.sizes[7]) and t95.sizes[:7].tolist() == [4, 6, 5, 7, 1, 2, 2]
    assert t95.mean_size_correct == pytest.approx(5.5) and t95.mean_size_misclassified == pytest.approx(5 / 3)
    assert t95.mean_fraction == pytest.approx(27 / 7 / D)
    assert t95.percent_increase == pytest.approx(100 * (5.5 - 5 / 3) / (5 / 3))
    welch = stats.ttest_ind([4, 6, 5, 7], [1, 2, 2], equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert t95.difference_ci == pytest.approx((ci.low, ci.high)) and t95.p_value == pytest.approx(welch.pvalue)
    assert t95.percent_increase_ci == pytest.approx((100 * ci.low / (5 / 3), 100 * ci.high / (5 / 3)))
    mean_c, lo_c, hi_c = t95.mean_confidence(True)
    assert mean_c == pytest.approx((0.999 + 0.995 + 0.999 + 0.97) / 4) and lo_c < mean_c < hi_c
    assert t95.mean_confidence(False)[0] == pytest.approx((0.999 + 0.96 + 0.991) / 3)
    t99 = res[0.99]  # images 3 and 5 drop out
    assert t99.n_images == 5 and t99.n_correct == 3 and t99.n_misclassified == 2
    assert t99.mean_size_misclassified == pytest.approx(1.5)
    with pytest.raises(KeyError, match="available"):
        res[0.5]
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["per_threshold"][0]["n_images"] == 7 and d["per_threshold"][0]["sizes"][7] is None


def test_degenerate_groups_give_nan_not_errors() -> None:
    sel = synthetic_selection([3, 4], [0.999, 0.999], [0, 1])
    res = sis_size_statistics(sel, torch.tensor([0, 1]), thresholds=[0.9])  # nobody misclassified
    t = res[0.9]
    assert t.n_misclassified == 0 and math.isnan(t.percent_increase) and math.isnan(t.difference_ci[0])
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["per_threshold"][0]["percent_increase"] is None


def test_plots() -> None:
    import matplotlib.pyplot as plt

    sel = synthetic_selection([4, 6, 5, 1, 2, 2], [0.999] * 6, [0, 1, 2, 3, 4, 5])
    res = sis_size_statistics(sel, torch.tensor([0, 1, 2, 0, 0, 0]), thresholds=[0.9, 0.99])
    assert "SIS size" in res.plot().get_ylabel()
    assert res.plot_confidence().get_ylabel() == "mean confidence"
    curve = mean_sis_size_curve({"a": sel}, [0.9, 0.99], accuracies={"a": 0.5})
    ax = curve.plot()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (0.500)"]
    plt.close("all")


def test_validation() -> None:
    sel = synthetic_selection([3], [0.999], [0])
    with pytest.raises(SISValueError, match=r"The `thresholds` parameter of sis_size_statistics"):
        sis_size_statistics(sel, torch.tensor([0]), thresholds=[0.5, 1.5])
    with pytest.raises(SISValueError, match=r"one label per image"):
        sis_size_statistics(sel, torch.tensor([0, 1]))
    with pytest.raises(SISTypeError, match="must be a SelectionResult"):
        sis_size_statistics("selection", torch.tensor([0]))  # type: ignore[arg-type]
    with pytest.raises(SISTypeError, match="non-empty dict"):
        mean_sis_size_curve({}, [0.9])


def test_digits_statistics_are_consistent(digits: Digits, digits_selection: SelectionResult) -> None:
    labels = digits.test_labels[:DIGITS_SELECTED]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UninformativeBaselineWarning)
        res = sis_size_statistics(digits_selection, labels, thresholds=(0.8, 0.9, 0.99))
        curve = mean_sis_size_curve({"digits": digits_selection}, (0.8, 0.9, 0.99))
    assert res.accuracy == pytest.approx(float((digits_selection.targets == labels).double().mean()))
    for i, t in enumerate(res.per_threshold):
        assert t.n_images == int((digits_selection.confidences >= t.threshold).sum())
        assert t.n_correct + t.n_misclassified == t.n_images
        assert curve.mean["digits"][i].item() == pytest.approx(t.mean_fraction)
        assert curve.n_images["digits"][i].item() == t.n_images
        assert curve.ci_low["digits"][i] <= curve.mean["digits"][i] <= curve.ci_high["digits"][i]
    # exact records: the mean SIS over the same images grows with the threshold
    common = ~torch.isnan(res[0.99].sizes)
    means = [float(t.sizes[common].mean()) for t in res.per_threshold]
    assert means == sorted(means)
    json.dumps(curve.to_dict(), allow_nan=False)


@pytest.mark.slow
@pytest.mark.real_data
def test_cifar_sis_sizes(cifar: Cifar, cifar_gradient_selections: dict[str, SelectionResult]) -> None:
    sels = cifar_gradient_selections
    n = len(sels["resnet20"])
    res = sis_size_statistics(sels["resnet20"], cifar.labels[:n], thresholds=(0.9, 0.99))
    curve = mean_sis_size_curve(sels, (0.9, 0.99))
    for name in sels:
        assert 0.0 < float(curve.mean[name][0]) < 1.0
        assert int(curve.n_images[name][1]) > n // 2  # most CIFAR test images are predicted with >= 0.99
    assert res[0.99].n_images == int((sels["resnet20"].confidences >= 0.99).sum())
    print("CIFAR SIS sizes:", json.dumps(curve.to_dict()))
