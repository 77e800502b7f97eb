"""transfer_matrix: one model's pixel-subsets evaluated by another (Carter et al., 4.1)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation import (
    SelectionResult,
    TransferResult,
    backselect_subsets,
    backward_selection,
    transfer_matrix,
)
from tests.overinterpretation.conftest import DIGITS_SELECTED, Digits


def test_matrix_entries_match_direct_evaluation(
    digits: Digits, digits_members: list[nn.Module], digits_selection: SelectionResult
) -> None:
    digits_model, other = digits_members[:2]
    images, labels = digits.test_images[:DIGITS_SELECTED], digits.test_labels[:DIGITS_SELECTED]
    sel_other = backward_selection(other, images, method="gradient", k=1, shortlist=16, show_progress=False)
    subsets = {
        "cnn0": backselect_subsets(images, digits_selection, fraction=0.1),
        "cnn1": backselect_subsets(images, sel_other, fraction=0.1),
    }
    models = {"cnn0": digits_model, "cnn1": other}
    res = transfer_matrix(models, subsets, labels)
    assert res.sources == ("cnn0", "cnn1") and res.models == ("cnn0", "cnn1") and res.accuracy.shape == (2, 2)
    for i, s in enumerate(res.sources):
        for j, m in enumerate(res.models):
            with torch.no_grad():
                p = torch.softmax(models[m](subsets[s].images).double(), dim=1)
            assert res.accuracy[i, j].item() == pytest.approx(float((p.argmax(1) == labels).double().mean()))
            assert res.confidence[i, j].item() == pytest.approx(float(p.max(1).values.mean()), abs=1e-6)
    assert res["cnn0", "cnn1"] == res.accuracy[0, 1].item()
    print("digits transfer (10% subsets):", json.dumps(res.to_dict()))
    # each model is most convinced by its own subsets
    for name, own in res.self_accuracy().items():
        assert all(own > acc for (src, m), acc in res.cross_accuracy().items() if m == name)
    # without labels, each dataset's own labels (here: the source model's predictions) are used
    own_labels = transfer_matrix(models, subsets)
    with torch.no_grad():
        pred = digits_model(subsets["cnn0"].images).argmax(1)
    assert own_labels["cnn0", "cnn0"] == pytest.approx(float((pred == digits_selection.targets).double().mean()))
    json.dumps(res.to_dict(), allow_nan=False)


def test_plot_and_validation(digits: Digits, digits_model: nn.Module) -> None:
    import matplotlib.pyplot as plt

    images, labels = digits.test_images[:8], digits.test_labels[:8]
    res = transfer_matrix({"m": digits_model}, {"s": (images, labels)})
    assert isinstance(res, TransferResult) and res.self_accuracy() == {}
    ax = res.plot()
    assert ax.get_xlabel() == "evaluated by" and res.plot(value="confidence") is not None
    plt.close("all")
    with pytest.raises(SISValueError, match='"accuracy" or "confidence"'):
        res.plot(value="loss")
    with pytest.raises(SISValueError, match="subsets of the same images"):
        transfer_matrix({"m": digits_model}, {"a": (images, labels), "b": (images[:4], labels[:4])}, labels)
    with pytest.raises(SISValueError, match=r"class indices in \[0, 9\]"):
        transfer_matrix({"m": digits_model}, {"s": (images, labels)}, torch.full((8,), 12))
    with pytest.raises(SISTypeError, match=r"models\['m'\]"):
        transfer_matrix({"m": "model"}, {"s": (images, labels)})  # type: ignore[dict-item]
    with pytest.raises(SISTypeError, match="non-empty dict"):
        transfer_matrix({}, {"s": (images, labels)})
    with pytest.raises(SISTypeError, match=r"subsets\['s'\]"):
        transfer_matrix({"m": digits_model}, {"s": images})


@pytest.mark.slow
@pytest.mark.real_data
def test_resnet20_and_resnet32_subsets_do_not_transfer(
    cifar,
    cifar_gradient_selections: dict[str, SelectionResult],
) -> None:
    n = len(cifar_gradient_selections["resnet20"])
    images, labels = cifar.images[:n], cifar.labels[:n]
    subsets = {name: backselect_subsets(images, sel, labels=labels) for name, sel in cifar_gradient_selections.items()}
    res = transfer_matrix({"resnet20": cifar.resnet20, "resnet32": cifar.resnet32}, subsets, labels)
    print("CIFAR transfer (5% gradient subsets):", json.dumps(res.to_dict()))
    own = res.self_accuracy()
    for (source, model), acc in res.cross_accuracy().items():
        assert acc < 0.6 * own[source], (source, model, acc, own[source])
        assert acc < 0.35
