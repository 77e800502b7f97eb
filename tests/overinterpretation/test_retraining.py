"""retraining_gap: Table 1 "train on" (fresh models trained and tested on pixel-subsets)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.models import DigitsCNN
from sis_attr.overinterpretation import (
    RetrainingResult,
    backselect_subsets,
    backward_selection,
    random_subsets,
    retraining_gap,
)
from tests.overinterpretation.conftest import Digits

N_TRAIN, N_TEST = 600, 200


def test_backselect_subsets_are_learnable_random_ones_much_less(digits: Digits, digits_model: nn.Module) -> None:
    """Paper 4.2: models trained on 5% BS subsets come close to full-image models; random 5% subsets do not."""
    train_x, train_y = digits.train_images[:N_TRAIN], digits.train_labels[:N_TRAIN]
    test_x, test_y = digits.test_images[:N_TEST], digits.test_labels[:N_TEST]
    # backward selection on the predicted class of the original model; new models learn the true labels
    sel_train = backward_selection(digits_model, train_x, method="gradient", k=2, show_progress=False)
    sel_test = backward_selection(digits_model, test_x, method="gradient", k=2, show_progress=False)
    fraction = 0.1  # 7 of 64 pixels
    train = {
        "backselect": backselect_subsets(train_x, sel_train, fraction=fraction, labels=train_y),
        "random": random_subsets(train_x, labels=train_y, fraction=fraction, generator=0),
    }
    test = {
        "backselect": backselect_subsets(test_x, sel_test, fraction=fraction, labels=test_y),
        "random": random_subsets(test_x, labels=test_y, fraction=fraction, generator=1),
    }
    res = retraining_gap(
        DigitsCNN,
        train,
        test,
        full=((train_x, train_y), (test_x, test_y)),
        seeds=(0, 1),
        epochs=10,
        show_progress=False,
    )
    print("digits retraining:", json.dumps(res.to_dict()))
    assert res.conditions == ("full", "backselect", "random") and res.seeds == (0, 1)
    assert all(len(a) == 2 for a in res.accuracies.values())
    assert res.mean("full") > 0.9
    assert res.mean("backselect") > res.mean("random") + 0.15
    assert res.gap("backselect") < res.gap("random")
    assert res.gap("full") == 0.0
    json.dumps(res.to_dict(), allow_nan=False)


def test_custom_trainer_gets_fresh_seeded_models() -> None:
    images = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = (images.mean(dim=(1, 2, 3)) > 0.5).long()
    calls: list[tuple[nn.Module, int, float]] = []

    def factory() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))

    def trainer(model: nn.Module, dataset: object, seed: int) -> nn.Module:
        assert isinstance(dataset, tuple)
        calls.append((model, seed, float(next(iter(model.parameters())).detach().flatten()[0])))
        return model

    res = retraining_gap(
        factory, {"a": (images, labels)}, {"a": (images, labels)}, seeds=[5, 5, 6], trainer=trainer, show_progress=False
    )
    assert [c[1] for c in calls] == [5, 5, 6]
    assert len({id(c[0]) for c in calls}) == 3  # a new model per run
    assert calls[0][2] == calls[1][2] != calls[2][2]  # initialised under the seed
    assert res.accuracies["a"][0] == res.accuracies["a"][1]
    assert res.std("a") >= 0.0 and isinstance(res, RetrainingResult)
    import matplotlib.pyplot as plt

    assert res.plot().get_ylabel() == "test accuracy (%)"
    plt.close("all")


def test_validation() -> None:
    data = (torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]))

    def factory() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))

    with pytest.raises(SISValueError, match="must have the same keys"):
        retraining_gap(factory, {"a": data}, {"b": data}, show_progress=False)
    with pytest.raises(SISValueError, match="applies to the default trainer only"):
        retraining_gap(factory, {"a": data}, {"a": data}, trainer=lambda m, d, s: m, epochs=3, show_progress=False)
    with pytest.raises(SISValueError, match="The `epochs` parameter of retraining_gap"):
        retraining_gap(factory, {"a": data}, {"a": data}, epochs=0, show_progress=False)
    with pytest.raises(SISValueError, match="The `seeds` parameter"):
        retraining_gap(factory, {"a": data}, {"a": data}, seeds=[], show_progress=False)
    with pytest.raises(SISTypeError, match="non-empty dict"):
        retraining_gap(factory, {}, {}, show_progress=False)
    with pytest.raises(SISTypeError, match="must be a callable"):
        retraining_gap("DigitsCNN", {"a": data}, {"a": data}, show_progress=False)  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="reserved key"):
        retraining_gap(factory, {"full": data}, {"full": data}, show_progress=False)
    with pytest.raises(SISValueError, match=r"test_subsets\['a'\]"):
        retraining_gap(
            factory, {"a": data}, {"a": (data[0], torch.tensor([0, 1, 0, 5]))}, epochs=1, show_progress=False
        )
