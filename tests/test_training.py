"""Tests for :mod:`sis_attr.training`: the SGD recipe against a hand-written loop, the schedule, augmentation,
evaluation helpers and input validation."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sis_attr.datasets import TensorImageDataset, load_digits_images
from sis_attr.exceptions import SISTypeError, SISValueError, SISWarning
from sis_attr.models import DigitsCNN
from sis_attr.overinterpretation.mitigation import InputDropout
from sis_attr.training import (
    PAPER_MILESTONES,
    TrainingHistory,
    evaluate_accuracy,
    predict_proba,
    random_crop_flip,
    train_classifier,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These models are tiny: one thread is as fast as several, and immune to oversubscription on busy CI hosts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    images, labels, _ = load_digits_images()
    perm = torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    return images[train], labels[train], images[test], labels[test]


def _tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def _tiny_data(n: int = 20) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 2, 2, generator=gen), torch.randint(0, 3, (n,), generator=gen)


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------


def test_digits_cnn_trains_above_95_percent(digits_split: tuple[Tensor, ...]) -> None:
    x_train, y_train, x_test, y_test = digits_split
    torch.manual_seed(0)
    model, history = train_classifier(
        DigitsCNN(), (x_train, y_train), epochs=5, seed=0, validation_data=(x_test, y_test)
    )
    accuracy = evaluate_accuracy(model, x_test, y_test)
    assert accuracy > 0.95
    assert not model.training
    assert isinstance(history, TrainingHistory) and history.epochs == 5
    assert len(history.loss) == len(history.accuracy) == len(history.val_accuracy) == 5
    assert history.loss[-1] < history.loss[0] and history.accuracy[-1] > 0.95
    assert history.val_accuracy[-1] == pytest.approx(accuracy)


def test_one_step_equals_a_hand_written_sgd_loop() -> None:
    """With a single batch, shuffling does not matter: the result must equal torch.optim.SGD run by hand."""
    images, labels = _tiny_data()
    ours = _tiny_model()
    reference = copy.deepcopy(ours)
    train_classifier(ours, (images, labels), epochs=3, batch_size=64, milestones=(0.5,), seed=0)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for lr in (0.1, 0.1, 0.02):  # milestone 0.5 of 3 epochs -> after epoch round(1.5) = 2
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        F.cross_entropy(reference(images), labels).backward()
        opt.step()
    for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_paper_schedule_over_200_epochs() -> None:
    images, labels = _tiny_data(4)
    _, history = train_classifier(_tiny_model(), (images, labels), epochs=200, seed=0)
    assert PAPER_MILESTONES == (0.3, 0.6, 0.8)
    lrs = history.lr
    assert lrs[0] == lrs[59] == 0.1
    assert lrs[60] == pytest.approx(0.02) and lrs[119] == pytest.approx(0.02)
    assert lrs[120] == pytest.approx(0.004) and lrs[159] == pytest.approx(0.004)
    assert lrs[160] == pytest.approx(0.0008) and lrs[199] == pytest.approx(0.0008)
    assert len(set(lrs)) == 4


def test_same_seed_same_model_different_seed_different_model() -> None:
    images, labels = _tiny_data(40)

    def run(seed: int, **kwargs: object) -> list[Tensor]:
        model, _ = train_classifier(_tiny_model(), (images, labels), epochs=2, batch_size=8, seed=seed, **kwargs)  # type: ignore[arg-type]
        return [p.detach().clone() for p in model.parameters()]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    model, _ = train_classifier(
        _tiny_model(), (images, labels), epochs=2, batch_size=8, generator=torch.Generator().manual_seed(0)
    )
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), a, strict=True))


def test_dataset_path_equals_tensor_path_for_one_batch() -> None:
    images, labels = _tiny_data()
    a, b = _tiny_model(), _tiny_model()
    train_classifier(a, (images, labels), epochs=2, batch_size=64, seed=0)
    train_classifier(b, TensorImageDataset(images, labels), epochs=2, batch_size=64, seed=0)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_labelled_images_tuple_augmentation_and_input_dropout() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(InputDropout(0.2, generator=torch.Generator().manual_seed(0)), DigitsCNN())
    trained, history = train_classifier(
        model, load_digits_images(), epochs=1, augment=True, seed=0, batch_size=256, device="cpu"
    )
    assert trained is model and not model.training and not model[0].training
    assert history.epochs == 1 and 0.0 <= history.accuracy[0] <= 1.0


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = _tiny_data()
    train_classifier(_tiny_model(), (images, labels), epochs=2, seed=0, show_progress=True)
    assert "train_classifier" in capsys.readouterr().err
    train_classifier(_tiny_model(), (images, labels), epochs=2, seed=0)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"epochs": 0}, SISValueError, "The `epochs` parameter of train_classifier must be a positive integer. Got 0 "
         "instead."),
        ({"epochs": 2.5}, SISValueError, "The `epochs` parameter of train_classifier must be a positive integer"),
        ({"batch_size": -1}, SISValueError, "The `batch_size` parameter of train_classifier must be a positive"),
        ({"lr": 0.0}, SISValueError, r"The `lr` parameter of train_classifier must be in \(0, inf\). Got 0.0"),
        ({"momentum": 1.5}, SISValueError, r"The `momentum` parameter of train_classifier must be in \[0, 1\]"),
        ({"weight_decay": -1e-4}, SISValueError, "The `weight_decay` parameter"),
        ({"gamma": float("nan")}, SISValueError, "The `gamma` parameter of train_classifier must be a finite number"),
        ({"milestones": (0.5, 1.5)}, SISValueError, r"must hold fractions of `epochs` in \(0, 1\]"),
        ({"milestones": 0.5}, SISTypeError, "The `milestones` parameter"),
        ({"seed": 0, "generator": torch.Generator()}, SISValueError, "either `seed` or `generator`"),
        ({"generator": 3}, SISTypeError, "The `generator` parameter"),
        ({"validation_data": "test"}, SISTypeError, "The `validation_data` parameter"),
    ],
)  # fmt: skip
def test_train_classifier_validates_arguments(kwargs: dict[str, object], error: type, message: str) -> None:
    images, labels = _tiny_data()
    arguments: dict[str, object] = {"epochs": 1, **kwargs}
    with pytest.raises(error, match=message):
        train_classifier(_tiny_model(), (images, labels), **arguments)  # type: ignore[arg-type]


def test_train_classifier_validates_data() -> None:
    images, labels = _tiny_data()
    with pytest.raises(SISTypeError, match="The `data` parameter of train_classifier must be a tuple"):
        train_classifier(_tiny_model(), images, epochs=1)  # type: ignore[arg-type]
    with pytest.raises(SISTypeError, match=r"images.float\(\) / 255"):
        train_classifier(_tiny_model(), ((images * 255).byte(), labels), epochs=1)
    with pytest.raises(SISValueError, match=r"must be of shape \(20,\)"):
        train_classifier(_tiny_model(), (images, labels[:5]), epochs=1)
    with pytest.raises(TypeError, match="integer tensor"):  # SISTypeError is a TypeError
        train_classifier(_tiny_model(), (images, labels.float()), epochs=1)
    with pytest.raises(SISTypeError, match=r"torch\.nn\.Module"):
        train_classifier(lambda x: x, (images, labels), epochs=1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------------------


def test_random_crop_flip_is_a_crop_of_the_padded_image() -> None:
    """Brute-force oracle: every output equals some (possibly flipped) window of the zero-padded input."""
    x = torch.rand(12, 2, 5, 6) + 0.1
    y = random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y is not x
    padded = F.pad(x, (2, 2, 2, 2))
    seen_flip: set[bool] = set()
    for i in range(x.shape[0]):
        matches = [
            (dy, dx, flip)
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            if torch.equal(y[i], (lambda w: w.flip(-1) if flip else w)(padded[i, :, dy : dy + 5, dx : dx + 6]))
        ]
        assert matches, f"image {i} is not a crop of its padded input"
        seen_flip.update(flip for _, _, flip in matches)
    assert seen_flip == {False, True}


def test_random_crop_flip_argument_errors() -> None:
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(SISValueError, match=r"The `padding` parameter of random_crop_flip must be a non-negative"):
        random_crop_flip(x, padding=-1)
    with pytest.raises(SISTypeError, match=r"The `flip` parameter of random_crop_flip must be a bool"):
        random_crop_flip(x, flip="yes")  # type: ignore[arg-type]
    with pytest.raises(SISTypeError, match=r"The `generator` parameter of random_crop_flip"):
        random_crop_flip(x, generator=0)  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match=r"\(N, C, H, W\)"):
        random_crop_flip(torch.rand(4, 4))


def test_random_crop_flip_randomness() -> None:
    x = torch.rand(32, 3, 8, 8)
    original = x.clone()
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(5))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(5))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, original)  # input untouched
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)
    with pytest.raises(SISValueError, match="non-negative integer"):
        random_crop_flip(x, padding=-1)
    with pytest.raises(SISValueError, match=r"\(N, C, H, W\)"):
        random_crop_flip(x[0])


# --------------------------------------------------------------------------------------------------------------
# Evaluation helpers
# --------------------------------------------------------------------------------------------------------------


def _fixed_linear() -> nn.Module:
    linear = nn.Linear(12, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.arange(36.0).view(3, 12).sin())
        linear.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return nn.Sequential(nn.Flatten(), linear).eval()


def test_evaluate_accuracy_and_predict_proba_against_direct_computation() -> None:
    images, labels = _tiny_data(50)
    model = _fixed_linear()
    with torch.no_grad():
        logits = model(images)
    expected_accuracy = float((logits.argmax(1) == labels).float().mean())
    for batch_size in (1, 7, 256):
        assert evaluate_accuracy(model, images, labels, batch_size=batch_size) == pytest.approx(expected_accuracy)
        proba = predict_proba(model, images, batch_size=batch_size)
        assert torch.allclose(proba, logits.softmax(dim=1), atol=1e-6)
        assert not proba.requires_grad
    assert evaluate_accuracy(model, images, logits.argmax(1)) == 1.0


def test_evaluation_warns_on_training_mode_and_leaves_the_mode_alone() -> None:
    images, labels = _tiny_data()
    model = nn.Sequential(nn.Dropout(p=0.0), _fixed_linear()).train()  # dropout: outputs depend on the mode
    with pytest.warns(SISWarning, match="training mode"):
        evaluate_accuracy(model, images, labels)
    with pytest.warns(SISWarning, match="training mode"):
        predict_proba(model, images)
    assert model.training


def test_evaluation_validates_arguments() -> None:
    images, labels = _tiny_data()
    model = _fixed_linear()
    with pytest.raises(SISValueError, match="The `batch_size` parameter of evaluate_accuracy must be a positive"):
        evaluate_accuracy(model, images, labels, batch_size=0)
    with pytest.raises(SISValueError, match=r"shape \(20,\)"):
        evaluate_accuracy(model, images, labels[:3])
    with pytest.raises(SISTypeError, match="floating-point"):
        predict_proba(model, images.to(torch.int64))
    with pytest.raises(SISTypeError, match=r"torch\.nn\.Module"):
        predict_proba("model", images)  # type: ignore[arg-type]
