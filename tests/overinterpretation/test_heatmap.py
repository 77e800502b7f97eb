"""location_heatmap: per-position frequency of kept pixels (Figures 2 and 4)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from sis_attr.exceptions import SISTypeError, SISValueError, UninformativeBaselineWarning
from sis_attr.overinterpretation import SelectionResult, backselect_subsets, location_heatmap, random_subsets
from tests.overinterpretation.conftest import DIGITS_SELECTED, Digits


def test_hand_built_masks() -> None:
    masks = torch.zeros(4, 3, 3, dtype=torch.bool)
    masks[:, 2, 0] = True
    masks[:2, 1, 1] = True
    heat = location_heatmap(masks)
    assert heat.frequency.shape == (3, 3) and heat.n_images == 4
    assert heat.frequency[2, 0].item() == 1.0 and heat.frequency[1, 1].item() == 0.5
    assert heat.frequency.sum().item() == pytest.approx(1.5) and heat.peak() == (2, 0)
    channels = torch.zeros(2, 3, 3, 3, dtype=torch.bool)
    channels[0, 1, 0, 0] = True  # any kept channel counts once
    channels[1, :, 0, 0] = True
    assert location_heatmap(channels).frequency[0, 0].item() == 1.0
    border = torch.zeros(1, 4, 4, dtype=torch.bool)
    border[0, 0, :] = True
    assert location_heatmap(border).border_ratio() == float("inf")
    d = heat.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["peak"] == [2, 0]


def test_from_selection_and_dataset(digits: Digits, digits_selection: SelectionResult) -> None:
    heat = location_heatmap(digits_selection)  # the paper's 5% subsets
    assert heat.fraction == 0.05 and heat.threshold is None and heat.n_images == DIGITS_SELECTED
    assert heat.frequency.sum().item() == pytest.approx(4.0)  # 4 pixels per image
    images = digits.test_images[:DIGITS_SELECTED]
    same = location_heatmap(backselect_subsets(images, digits_selection))
    assert torch.equal(same.frequency, heat.frequency)
    # digits are drawn in the middle: the selected pixels avoid the outer columns more than random ones do
    rand = location_heatmap(random_subsets(images, labels=digits.test_labels[:DIGITS_SELECTED], generator=0))
    assert heat.frequency[:, [0, 7]].sum() < rand.frequency[:, [0, 7]].sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UninformativeBaselineWarning)
        sis = location_heatmap(digits_selection, threshold=0.99)
        sizes = digits_selection.sis_sizes(0.99)
    has = ~torch.isnan(sizes)
    assert sis.threshold == 0.99 and sis.n_images == int(has.sum())
    assert sis.frequency.sum().item() == pytest.approx(float(sizes[has].mean()))


def test_plot_and_validation(digits_selection: SelectionResult) -> None:
    import matplotlib.pyplot as plt

    heat = location_heatmap(digits_selection, fraction=0.1)
    assert heat.plot().get_title() == f"10% subsets, {DIGITS_SELECTED} images"
    assert heat.plot(title="ResNet20").get_title() == "ResNet20"
    plt.close("all")
    with pytest.raises(SISValueError, match="alternatives"):
        location_heatmap(digits_selection, fraction=0.1, threshold=0.9)
    with pytest.raises(SISValueError, match="apply to a SelectionResult only"):
        location_heatmap(torch.zeros(2, 3, 3, dtype=torch.bool), fraction=0.1)
    with pytest.raises(SISTypeError, match="bool tensor"):
        location_heatmap(torch.zeros(2, 3, 3))
    with pytest.raises(SISValueError, match="at least one mask"):
        location_heatmap(torch.zeros(0, 3, 3, dtype=torch.bool))
    with pytest.raises(SISValueError, match=r"shape \(N, H, W\) or \(N, C, H, W\)"):
        location_heatmap(torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(SISTypeError, match="must be a bool tensor of keep-masks"):
        location_heatmap([1, 2])  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="The `fraction` parameter of location_heatmap must be in"):
        location_heatmap(digits_selection, fraction=2.0)


@pytest.mark.slow
@pytest.mark.real_data
def test_cifar_heatmap(cifar_gradient_selections: dict[str, SelectionResult]) -> None:
    heat = location_heatmap(cifar_gradient_selections["resnet20"])
    assert heat.frequency.shape == (32, 32)
    assert heat.frequency.sum().item() == pytest.approx(52.0)
    print("CIFAR ResNet20 5% heatmap: peak", heat.peak(), "border ratio", round(heat.border_ratio(), 3))
