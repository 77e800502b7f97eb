"""subset_accuracy: Table 1 "evaluate on" (full images, 5% backward-selection subsets, 5% random subsets)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation import SelectionResult, backselect_subsets, random_subsets, subset_accuracy
from sis_attr.training import evaluate_accuracy
from tests.overinterpretation.conftest import CIFAR_RANDOM_IMAGES, DIGITS_SELECTED, Cifar, Digits


def test_digits_backselect_subsets_keep_most_accuracy(
    digits: Digits, digits_model: nn.Module, digits_selection: SelectionResult
) -> None:
    images, labels = digits.test_images[:DIGITS_SELECTED], digits.test_labels[:DIGITS_SELECTED]
    bs = backselect_subsets(images, digits_selection, labels=labels)  # 4 of 64 pixels
    rs = random_subsets(images, labels=labels, generator=0)
    acc = subset_accuracy(digits_model, images, labels, backselect=bs, random=rs)
    # an independent implementation of accuracy agrees
    assert acc.full == pytest.approx(evaluate_accuracy(digits_model, images, labels))
    assert acc.backselect == pytest.approx(evaluate_accuracy(digits_model, bs.images, labels))
    assert acc.random == pytest.approx(evaluate_accuracy(digits_model, rs.images, labels))
    print("digits accuracy full / BS 5% / random 5%:", acc.full, acc.backselect, acc.random)
    assert acc.full > 0.9
    assert acc.backselect >= 0.75 * acc.full
    assert acc.random <= 0.35 and acc.random < acc.backselect - 0.4
    assert acc.n_classes == 10 and acc.chance == pytest.approx(0.1) and acc.n_images == DIGITS_SELECTED
    json.dumps(acc.to_dict(), allow_nan=False)


def test_optional_subsets_and_plot(digits: Digits, digits_model: nn.Module) -> None:
    import matplotlib.pyplot as plt

    images, labels = digits.test_images[:10], digits.test_labels[:10]
    acc = subset_accuracy(digits_model, images, labels, random=images.clone())
    assert acc.random == acc.full and acc.backselect != acc.backselect
    d = acc.to_dict()
    assert d["backselect"] is None
    json.dumps(d, allow_nan=False)
    ax = acc.plot()
    assert ax.get_ylabel() == "accuracy (%)" and len(ax.patches) == 3
    plt.close("all")


def test_validation(digits: Digits, digits_model: nn.Module) -> None:
    images, labels = digits.test_images[:4], digits.test_labels[:4]
    with pytest.raises(SISValueError, match=r"class indices in \[0, 9\] \(the model has 10 outputs\)"):
        subset_accuracy(digits_model, images, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(SISValueError, match="non-negative"):
        subset_accuracy(digits_model, images, torch.tensor([0, 1, 2, -1]))
    with pytest.raises(SISValueError, match=r"shape \(4,\), one label per image"):
        subset_accuracy(digits_model, images, labels[:3])
    with pytest.raises(SISValueError, match="The `backselect` parameter of subset_accuracy must hold one subset"):
        subset_accuracy(digits_model, images, labels, backselect=images[:2])
    with pytest.raises(SISTypeError, match="The `random` parameter of subset_accuracy"):
        subset_accuracy(digits_model, images, labels, random="random")  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="non-empty batch"):
        subset_accuracy(digits_model, images[:0], labels[:0])


@pytest.mark.slow
@pytest.mark.real_data
def test_resnet20_cifar_table1_evaluate_on(cifar: Cifar, cifar_hybrid_selection: SelectionResult) -> None:
    """5% BS subsets of ResNet20 keep most of the full-image accuracy; random 5% subsets fall near chance."""
    n = len(cifar_hybrid_selection)
    bs = backselect_subsets(cifar.images[:n], cifar_hybrid_selection, labels=cifar.labels[:n])
    small = subset_accuracy(cifar.resnet20, cifar.images[:n], cifar.labels[:n], backselect=bs)
    # random subsets and full images need no backward selection: measure them on more images
    rs = random_subsets(cifar.images, labels=cifar.labels, generator=0)
    large = subset_accuracy(cifar.resnet20, cifar.images, cifar.labels, random=rs)
    print(
        f"ResNet20 CIFAR-10: full {large.full:.3f} ({CIFAR_RANDOM_IMAGES} images), BS 5% {small.backselect:.3f} "
        f"(full on the same {n}: {small.full:.3f}), random 5% {large.random:.3f}"
    )
    assert large.full > 0.85
    assert small.backselect >= small.full - 1.5 / n  # at most one image lost
    assert large.random < 0.25  # near chance (0.1)
