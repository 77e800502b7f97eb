"""confidence_drop: confidence of the predicted class on full images minus on their subsets."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sis_attr.exceptions import SISTypeError, SISValueError, SISWarning
from sis_attr.overinterpretation import SelectionResult, backselect_subsets, confidence_drop, random_subsets
from sis_attr.testing import SumGridClassifier
from tests.overinterpretation.conftest import DIGITS_SELECTED, Cifar, Digits


def test_sign_convention_on_a_hand_checkable_model() -> None:
    """Logits [0, sum(x)]: removing negative pixels makes class 1 more likely (a negative drop)."""
    model = SumGridClassifier()
    images = torch.tensor([[[1.0, -0.5], [2.0, 0.5]]])  # sum 3: class 1 with sigmoid(3)
    keep = images > 0  # drop the negative pixel: sum 3.5
    res = confidence_drop(model, images.unsqueeze(1), (images * keep).unsqueeze(1))
    expected = torch.sigmoid(torch.tensor(3.0, dtype=torch.float64)) - torch.sigmoid(
        torch.tensor(3.5, dtype=torch.float64)
    )
    assert res.mean == pytest.approx(float(expected)) and res.mean < 0
    assert res.predictions.tolist() == [1] and res.agreement == 1.0


def test_digits_drop_matches_a_direct_computation(
    digits: Digits, digits_model: nn.Module, digits_selection: SelectionResult
) -> None:
    images = digits.test_images[:DIGITS_SELECTED]
    subsets = backselect_subsets(images, digits_selection, fraction=0.1)
    res = confidence_drop(digits_model, images, subsets)
    with torch.no_grad():
        full = torch.softmax(digits_model(images).double(), dim=1)
        part = torch.softmax(digits_model(subsets.images).double(), dim=1)
    pred = full.argmax(dim=1)
    expected = full.gather(1, pred[:, None]) - part.gather(1, pred[:, None])
    torch.testing.assert_close(res.drops, expected.squeeze(1), rtol=0, atol=1e-6)
    assert res.std == pytest.approx(float(expected.std(unbiased=False)), abs=1e-6)
    assert torch.equal(res.predictions, digits_selection.targets)
    # backward selection keeps the evidence: subsets are far more convincing than random ones of the same size
    rand = confidence_drop(digits_model, images, random_subsets(images, labels=pred, fraction=0.1, generator=0))
    assert res.mean < rand.mean - 0.2
    assert res.agreement > rand.agreement
    # keeping everything changes nothing
    whole = backselect_subsets(images, digits_selection, fraction=1.0)
    assert confidence_drop(digits_model, images, whole).mean == 0.0
    json.dumps(res.to_dict(), allow_nan=False)


def test_plot_and_validation(digits: Digits, digits_model: nn.Module) -> None:
    import matplotlib.pyplot as plt

    images = digits.test_images[:6]
    res = confidence_drop(digits_model, images, images * 0.5)
    assert res.plot(bins=5).get_xlabel().startswith("confidence on full image")
    plt.close("all")
    with pytest.raises(SISValueError, match=r"one subset per image, of the images' shape \(6, 1, 8, 8\)"):
        confidence_drop(digits_model, images, images[:3])
    with pytest.raises(SISTypeError, match="PixelSubsetDataset or a tensor"):
        confidence_drop(digits_model, images, [images])  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="logits of shape"):
        confidence_drop(nn.Flatten(start_dim=0), images, images)
    train_mode = nn.Sequential(nn.Flatten(), nn.Dropout(0.0), nn.Linear(64, 3))
    with pytest.warns(SISWarning, match="training mode"):
        confidence_drop(train_mode, images, images)
    assert train_mode.training


@pytest.mark.slow
@pytest.mark.real_data
def test_resnet20_is_as_confident_on_its_5_percent_subsets(
    cifar: Cifar, cifar_hybrid_selection: SelectionResult
) -> None:
    """Paper: mean drop -0.035 (std 0.107) for ResNet20 on all CIFAR-10 test images (exact backward selection)."""
    n = len(cifar_hybrid_selection)
    images = cifar.images[:n]
    res = confidence_drop(cifar.resnet20, images, backselect_subsets(images, cifar_hybrid_selection))
    rand = confidence_drop(cifar.resnet20, images, random_subsets(images, labels=res.predictions, generator=0))
    print("ResNet20 confidence drop (hybrid, 5%):", res.to_dict()["mean"], res.to_dict()["std"], "random:", rand.mean)
    assert res.mean < 0.15  # nearly as confident on 5% of the pixels as on the full image
    assert rand.mean > res.mean + 0.3
