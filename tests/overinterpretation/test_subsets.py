"""PixelSubsetDataset, backselect_subsets and random_subsets."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation import (
    PixelSubsetDataset,
    SelectionResult,
    backselect_subsets,
    random_subsets,
    subset_size,
)
from tests.overinterpretation.conftest import DIGITS_SELECTED, Cifar, Digits


def test_backselect_subsets_keep_the_selected_pixels(digits: Digits, digits_selection: SelectionResult) -> None:
    images = digits.test_images[:DIGITS_SELECTED]
    ds = backselect_subsets(images, digits_selection, fraction=0.05)
    keep = digits_selection.keep_masks(0.05)
    assert torch.equal(ds.keep_masks, keep)
    assert torch.equal(ds.images, torch.where(keep, images, torch.zeros(())))
    assert torch.equal(ds.labels, digits_selection.targets)  # default: the model's predictions
    assert ds.kept_fraction.tolist() == [4 / 64] * DIGITS_SELECTED
    true = backselect_subsets(images, digits_selection, labels=digits.test_labels[:DIGITS_SELECTED])
    assert torch.equal(true.labels, digits.test_labels[:DIGITS_SELECTED])
    image, label = true[5]
    assert torch.equal(image, true.images[5]) and int(label) == int(digits.test_labels[5])


def test_backselect_subsets_baseline(digits: Digits, digits_selection: SelectionResult) -> None:
    images = digits.test_images[:DIGITS_SELECTED]
    ds = backselect_subsets(images, digits_selection, baselines=0.5)
    assert bool((ds.images[~ds.keep_masks.expand_as(images)] == 0.5).all())
    per_pixel = torch.linspace(0, 1, 64).reshape(1, 8, 8)
    ds2 = backselect_subsets(images, digits_selection, baselines=per_pixel)
    masked = ~ds2.keep_masks.expand_as(images)
    assert torch.equal(ds2.images[masked], per_pixel.expand_as(images)[masked])


def test_fraction_validation_message(digits: Digits, digits_selection: SelectionResult) -> None:
    images = digits.test_images[:DIGITS_SELECTED]
    expected = "The `fraction` parameter of backselect_subsets must be in (0, 1]. Got 1.5 instead."
    with pytest.raises(SISValueError) as info:
        backselect_subsets(images, digits_selection, fraction=1.5)
    assert str(info.value) == expected
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]. Got 0 instead"):
        backselect_subsets(images, digits_selection, fraction=0)
    with pytest.raises(SISValueError, match=r"the images the selection was computed on, of shape \(48, 1, 8, 8\)"):
        backselect_subsets(images[:10], digits_selection)
    with pytest.raises(SISTypeError, match="must be a SelectionResult"):
        backselect_subsets(images, digits_selection.keep_masks())  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match=r"one label per image"):
        backselect_subsets(images, digits_selection, labels=torch.zeros(3, dtype=torch.long))


def test_fraction_rounds_up() -> None:
    assert subset_size(0.05, 1024) == 52 and subset_size(0.05, 64) == 4
    assert subset_size(0.3, 10) == 3 and subset_size(1.0, 7) == 7 and subset_size(1e-6, 7) == 1
    ds = random_subsets(torch.rand(2, 3, 32, 32), labels=torch.tensor([0, 1]), generator=0)
    assert ds.keep_masks.shape == (2, 1, 32, 32) and ds.keep_masks.sum(dim=(1, 2, 3)).tolist() == [52, 52]
    with pytest.raises(SISValueError, match="The `n_features` parameter of subset_size"):
        subset_size(0.1, 0)


@settings(max_examples=40, deadline=None)
@given(fraction=st.floats(min_value=1e-4, max_value=1.0), side=st.integers(min_value=1, max_value=9))
def test_random_subsets_count_property(fraction: float, side: int) -> None:
    d = side * side
    ds = random_subsets(torch.rand(3, 2, side, side), labels=torch.zeros(3, dtype=torch.long), fraction=fraction)
    expected = max(1, math.ceil(round(fraction * d, 9)))
    assert ds.keep_masks.sum(dim=(1, 2, 3)).tolist() == [expected] * 3
    assert expected - 1 < fraction * d <= expected + 1e-9 or expected == 1  # the smallest count >= fraction * d


def test_random_subsets_are_seeded_and_uniform() -> None:
    images = torch.rand(400, 1, 8, 8)
    labels = torch.zeros(400, dtype=torch.long)
    a = random_subsets(images, labels=labels, generator=3)
    b = random_subsets(images, labels=labels, generator=torch.Generator().manual_seed(3))
    c = random_subsets(images, labels=labels, generator=4)
    assert torch.equal(a.keep_masks, b.keep_masks) and not torch.equal(a.keep_masks, c.keep_masks)
    assert len({tuple(torch.nonzero(m.flatten()).flatten().tolist()) for m in a.keep_masks}) > 350  # per image
    freq = a.keep_masks.double().mean(dim=0).flatten()  # expected 4/64 everywhere
    assert abs(float(freq.mean()) - 4 / 64) < 1e-12
    # chi-square test of uniform positions (64 cells, 1600 draws): p > 1e-4 for a uniform sampler
    from scipy import stats

    counts = a.keep_masks.sum(dim=0).flatten().double().numpy()
    assert stats.chisquare(counts).pvalue > 1e-4


def test_random_subsets_options() -> None:
    images = torch.rand(2, 3, 4, 4)
    labels = torch.tensor([1, 2])
    per_element = random_subsets(images, labels=labels, feature_mask=None, fraction=0.25, generator=0)
    assert per_element.keep_masks.shape == (2, 3, 4, 4) and per_element.keep_masks.sum().item() == 24
    assert torch.equal(per_element.labels, labels)
    kept = per_element.keep_masks
    assert torch.equal(per_element.images[kept], images[kept]) and bool((per_element.images[~kept] == 0).all())
    with pytest.raises(SISValueError, match="The `generator` parameter of random_subsets"):
        random_subsets(images, labels=labels, generator="seed")  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="one label per image"):
        random_subsets(images, labels=torch.tensor([1]))
    with pytest.raises(SISTypeError, match="integer tensor"):
        random_subsets(images, labels=torch.tensor([1.0, 2.0]))
    with pytest.raises(SISValueError, match="non-empty batch"):
        random_subsets(images[:0], labels=labels[:0])


def test_pixel_subset_dataset() -> None:
    images = torch.rand(5, 3, 4, 4)
    keep = torch.zeros(5, 1, 4, 4, dtype=torch.bool)
    keep[:, :, 1, 2] = True
    ds = PixelSubsetDataset(images, torch.arange(5), keep)
    x, y = next(iter(DataLoader(ds, batch_size=5)))
    assert x.shape == (5, 3, 4, 4) and y.tolist() == [0, 1, 2, 3, 4]
    masked = torch.ones(4, 4, dtype=torch.bool)
    masked[1, 2] = False
    assert torch.equal(x[:, :, 1, 2], images[:, :, 1, 2]) and bool((x[:, :, masked] == 0).all())
    with pytest.raises(SISValueError, match=r"must have shape \(5, 1, 4, 4\) or \(5, 3, 4, 4\)"):
        PixelSubsetDataset(images, torch.arange(5), keep[:, :, :2])
    with pytest.raises(SISTypeError, match="must be a bool tensor"):
        PixelSubsetDataset(images, torch.arange(5), keep.long())
    with pytest.raises(SISValueError, match=r"The `baselines` parameter of PixelSubsetDataset must be broadcastable"):
        PixelSubsetDataset(images, torch.arange(5), keep, baselines=torch.zeros(2, 2, 2))


def test_baseline_keyword_is_deprecated(digits: Digits, digits_selection: SelectionResult) -> None:
    """``baseline=`` (the old name) still works for one release, with a DeprecationWarning naming ``baselines``."""
    images = digits.test_images[:DIGITS_SELECTED]
    labels = digits.test_labels[:DIGITS_SELECTED]
    new = backselect_subsets(images, digits_selection, baselines=0.5)
    with pytest.warns(
        DeprecationWarning, match=r"`baseline` parameter of backselect_subsets is deprecated.*`baselines="
    ):
        old = backselect_subsets(images, digits_selection, baseline=0.5)
    assert torch.equal(old.images, new.images)
    with pytest.warns(DeprecationWarning, match="`baseline` parameter of random_subsets"):
        old = random_subsets(images, labels=labels, generator=3, baseline=0.5)
    assert torch.equal(old.images, random_subsets(images, labels=labels, generator=3, baselines=0.5).images)
    keep = digits_selection.keep_masks()
    with pytest.warns(DeprecationWarning, match="`baseline` parameter of PixelSubsetDataset"):
        old = PixelSubsetDataset(images, labels, keep, baseline=0.5)
    assert torch.equal(old.images, new.images)
    with pytest.raises(SISValueError, match=r"pass only `baselines`\. Got both `baseline` \(0\.5\) and `baselines`"):
        backselect_subsets(images, digits_selection, baseline=0.5, baselines=0.0)
    with pytest.raises(SISValueError, match="deprecated name of `baselines`"):
        random_subsets(images, labels=labels, baseline=torch.zeros(1), baselines=torch.zeros(1))


def test_none_baselines_mean_zero(digits: Digits, digits_selection: SelectionResult) -> None:
    images = digits.test_images[:DIGITS_SELECTED]
    a = backselect_subsets(images, digits_selection, baselines=None)
    assert torch.equal(a.images, backselect_subsets(images, digits_selection, baselines=0.0).images)


@pytest.mark.slow
@pytest.mark.real_data
def test_cifar_subsets_keep_52_pixels(cifar_hybrid_selection: SelectionResult, cifar: Cifar) -> None:
    n = len(cifar_hybrid_selection)
    ds = backselect_subsets(cifar.images[:n], cifar_hybrid_selection, labels=cifar.labels[:n])
    assert ds.keep_masks.sum(dim=(1, 2, 3)).tolist() == [52] * n
    visible = ds.keep_masks.expand(-1, 3, -1, -1)
    assert torch.equal(ds.images[visible], cifar.images[:n][visible])
    assert bool((ds.images[~visible] == 0).all())
