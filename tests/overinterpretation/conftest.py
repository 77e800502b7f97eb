"""Shared, session-scoped fixtures for the overinterpretation analyses.

* Digits (scikit-learn's bundled 8x8 images): a DigitsCNN trained once per session (a few seconds) and an exact
  backward selection on some test images (64 pixel features: cheap).
* Real CIFAR-10 (../shared/data, skipped with a reason when absent): the pretrained ResNet20 and ResNet32 and
  gradient backward selections on a few lossless test images. Exact backward selection on a 32x32 image costs
  524,800 forward passes, so these use ``method="gradient"``: the pure gradient method (cheap) on a few dozen
  images, and the gradient-screened exact hybrid (``shortlist``) on a handful.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from sis_attr.overinterpretation import SelectionResult, backward_selection

os.environ.setdefault("MPLBACKEND", "Agg")

DIGITS_TRAIN = 1200
DIGITS_SELECTED = 48
CIFAR_GRADIENT_IMAGES = 48
CIFAR_HYBRID_IMAGES = 8
CIFAR_RANDOM_IMAGES = 256


@dataclass(frozen=True)
class Digits:
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


@pytest.fixture(scope="session")
def digits() -> Digits:
    from sis_attr.datasets import load_digits_images

    images, labels, _ = load_digits_images()
    perm = torch.randperm(int(labels.shape[0]), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:DIGITS_TRAIN], perm[DIGITS_TRAIN:]
    return Digits(images[tr], labels[tr], images[te], labels[te])


def train_digits_cnn(digits: Digits, seed: int, epochs: int = 8) -> nn.Module:
    """A DigitsCNN trained with the paper's SGD recipe (about 97-99% test accuracy), in eval mode."""
    from sis_attr.models import DigitsCNN
    from sis_attr.training import train_classifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _ = train_classifier(DigitsCNN(), (digits.train_images, digits.train_labels), epochs=epochs, seed=seed)
    return model.eval()


@pytest.fixture(scope="session")
def digits_model(digits: Digits) -> nn.Module:
    return train_digits_cnn(digits, seed=0)


@pytest.fixture(scope="session")
def digits_members(digits: Digits, digits_model: nn.Module) -> list[nn.Module]:
    """Three independently initialised DigitsCNNs (seeds 0, 1, 2): ensemble members and transfer partners."""
    return [digits_model, train_digits_cnn(digits, seed=1, epochs=6), train_digits_cnn(digits, seed=2, epochs=6)]


@pytest.fixture(scope="session")
def digits_selection(digits: Digits, digits_model: nn.Module) -> SelectionResult:
    """Exact backward selection (pixel features) on the first test images."""
    return backward_selection(digits_model, digits.test_images[:DIGITS_SELECTED], method="exact", show_progress=False)


# ------------------------------------------------------------------------------------------------ CIFAR-10
@dataclass(frozen=True)
class Cifar:
    images: Tensor
    labels: Tensor
    resnet20: nn.Module
    resnet32: nn.Module


@pytest.fixture(scope="session")
def cifar(shared_data: Path) -> Cifar:
    from sis_attr.datasets import load_cifar10_batches
    from sis_attr.models import load_pretrained_cifar_resnet

    subset = shared_data / "cifar10" / "cifar-10-batches-py-subset"
    if not subset.is_dir():
        pytest.skip(f"the lossless CIFAR-10 subset {subset} is not available")
    images, labels, _ = load_cifar10_batches(subset, "test", limit=CIFAR_RANDOM_IMAGES)
    weights = shared_data / "weights"
    return Cifar(
        images=images,
        labels=labels,
        resnet20=load_pretrained_cifar_resnet(20, weights_dir=weights),
        resnet32=load_pretrained_cifar_resnet(32, weights_dir=weights),
    )


@pytest.fixture(scope="session")
def cifar_gradient_selections(cifar: Cifar) -> dict[str, SelectionResult]:
    """Pure gradient backward selection (k: 10% of the remaining pixels per step) for ResNet20 and ResNet32."""
    images = cifar.images[:CIFAR_GRADIENT_IMAGES]
    return {
        name: backward_selection(model, images, method="gradient", k=0.1, show_progress=False)
        for name, model in (("resnet20", cifar.resnet20), ("resnet32", cifar.resnet32))
    }


@pytest.fixture(scope="session")
def cifar_hybrid_selection(cifar: Cifar) -> SelectionResult:
    """Gradient-screened exact backward selection (shortlist of 32) for ResNet20 on a handful of images."""
    images = cifar.images[:CIFAR_HYBRID_IMAGES]
    return backward_selection(cifar.resnet20, images, method="gradient", k=0.2, shortlist=32, show_progress=False)
