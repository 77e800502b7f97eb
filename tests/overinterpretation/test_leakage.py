"""mask_shape_leakage: accuracy with each subset's positions filled with another image's pixels or one colour.

Oracles: a model that reads only *where* the non-baseline pixels are keeps its accuracy under both replacements;
a model that reads only their colour follows the donor's class under the swap and falls to chance with one
colour. The images each condition builds are checked pixel by pixel through a recording model.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation import SelectionResult, backselect_subsets, subset_accuracy
from sis_attr.overinterpretation.leakage import MaskShapeLeakage, _donors, _random_positions, mask_shape_leakage
from sis_attr.testing import TinyConvNet
from tests.overinterpretation.conftest import DIGITS_SELECTED, Digits


class WhereQuadrant(nn.Module):
    """Four classes read from the *positions* of non-zero pixels: logit ``c`` counts them in quadrant ``c``."""

    def forward(self, x: Tensor) -> Tensor:
        seen = (x != 0).any(dim=1).float()
        h, w = seen.shape[-2] // 2, seen.shape[-1] // 2
        quads = [seen[:, :h, :w], seen[:, :h, w:], seen[:, h:, :w], seen[:, h:, w:]]
        return torch.stack([q.sum(dim=(1, 2)) for q in quads], dim=1)


class MeanColour(nn.Module):
    """Three classes read from the *colour*: logit ``c`` is the sum of channel ``c`` (positions do not matter)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sum(dim=(2, 3))


class Recorder(nn.Module):
    """Records every batch it sees and returns logits favouring class 0."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.classes = classes
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        logits = torch.zeros(x.shape[0], self.classes)
        logits[:, 0] = 1.0
        return logits


def _quadrant_data(per_class: int = 8, size: int = 8, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Images with no zero pixel; each keep-mask holds 3 random positions inside its class's quadrant."""
    gen = torch.Generator().manual_seed(seed)
    n = 4 * per_class
    images = torch.rand(n, 3, size, size, generator=gen) * 0.9 + 0.1
    labels = torch.arange(4).repeat_interleave(per_class)
    keep = torch.zeros(n, 1, size, size, dtype=torch.bool)
    half = size // 2
    for i, c in enumerate(labels.tolist()):
        rows, cols = divmod(c, 2)
        picks = torch.randperm(half * half, generator=gen)[:3]
        keep[i, 0, rows * half + picks // half, cols * half + picks % half] = True
    return images, labels, keep


def test_a_model_reading_the_mask_pattern_keeps_its_accuracy_under_content_swap() -> None:
    images, labels, keep = _quadrant_data()
    leak = mask_shape_leakage(WhereQuadrant(), images, labels, keep, generator=0)
    assert leak.subsets == 1.0
    assert leak.swapped == 1.0 and leak.shape_only == 1.0  # the shape alone decides
    assert leak.same_class_donors == 0.0 and leak.donor_agreement == 0.0
    assert leak.full == pytest.approx(0.25)  # every pixel non-zero: a four-way tie, class 0
    assert leak.random < 0.6  # 3 random positions out of 64 rarely fall in the right quadrant only
    assert leak.chance == pytest.approx(0.25) and leak.shape_share == pytest.approx(1.0)
    assert leak.p_value("swapped") < 1e-10 and leak.p_value("shape_only") < 1e-10
    text = leak.interpretation()
    assert text.startswith("The shape of the kept positions carries the class.")
    assert "content-swapped and constant-colour versions are above chance" in text and "100.0%" in text


def test_a_model_reading_only_colour_follows_the_donor() -> None:
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat(10)
    colours = torch.full((3, 3), 0.2) + 0.6 * torch.eye(3)  # class c: channel c bright
    images = colours[labels].view(30, 3, 1, 1).expand(30, 3, 6, 6).clone()
    keep = torch.rand(30, 1, 6, 6, generator=gen) < 0.2
    keep[:, :, 0, 0] = True  # every subset non-empty
    leak = mask_shape_leakage(MeanColour(), images, labels, keep, generator=3)
    assert leak.subsets == 1.0 and leak.full == 1.0
    assert leak.swapped == 0.0 and leak.donor_agreement == 1.0  # donors all of another class
    # one colour for every image (the mean of the kept pixels: grey) cannot beat chance
    assert leak.shape_only <= leak.chance and leak.p_value("shape_only") > 0.5
    text = leak.interpretation()
    assert text.startswith("No sign that the shape of the kept positions carries the class")
    assert "the content decides" in text


def test_built_images_pixel_by_pixel() -> None:
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(5, 3, 4, 4, generator=gen)
    labels = torch.tensor([0, 1, 0, 1, 1])
    keep = torch.rand(5, 1, 4, 4, generator=gen) < 0.3
    base = torch.rand(5, 3, 4, 4, generator=gen)  # one baseline per image
    recorder = Recorder()
    leak = mask_shape_leakage(recorder, images, labels, keep, baselines=base, fill=[0.1, 0.2, 0.3], generator=4)
    full, subsets, swapped, shape, random = recorder.seen
    assert torch.equal(full, images)
    assert torch.equal(subsets, torch.where(keep, images, base))
    donors = leak.donors
    assert sorted(donors.tolist()) == list(range(5)) and all(d != i for i, d in enumerate(donors.tolist()))
    for i, d in enumerate(donors.tolist()):  # the recipient's positions and baseline, the donor's pixels
        assert torch.equal(swapped[i], torch.where(keep[i], images[d], base[i]))
    colour = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    assert torch.equal(shape, torch.where(keep, colour.expand_as(images), base))
    random_keep = random != base  # rand() never repeats a value: kept pixels differ from the baseline
    assert torch.equal(random_keep[:, :1], random_keep[:, 1:2]) and torch.equal(random_keep[:, :1], random_keep[:, 2:])
    assert random_keep[:, 0].flatten(1).sum(1).tolist() == keep.flatten(1).sum(1).tolist()
    assert torch.equal(random[random_keep], images[random_keep])
    assert leak.fill == pytest.approx((0.1, 0.2, 0.3))
    assert leak.kept_fraction == pytest.approx(float(keep.double().mean()))


def test_mean_fill_is_the_mean_colour_of_the_kept_pixels() -> None:
    gen = torch.Generator().manual_seed(5)
    images = torch.rand(4, 3, 5, 5, generator=gen)
    keep = torch.rand(4, 1, 5, 5, generator=gen) < 0.4
    recorder = Recorder()
    leak = mask_shape_leakage(recorder, images, torch.tensor([0, 1, 0, 1]), keep)
    kept = images.permute(1, 0, 2, 3)[:, keep[:, 0]]  # (3, number of kept pixels)
    assert leak.fill == pytest.approx(tuple(kept.mean(dim=1).tolist()))
    assert torch.allclose(recorder.seen[3][0][:, keep[0, 0]], kept.mean(dim=1, keepdim=True).expand(3, -1))


def test_subset_kinds_agree_with_subset_accuracy(
    digits: Digits, digits_model: nn.Module, digits_selection: SelectionResult
) -> None:
    """A SelectionResult, its PixelSubsetDataset and its bool masks give one result; `subsets` is Table 1's."""
    images, labels = digits.test_images[:DIGITS_SELECTED], digits.test_labels[:DIGITS_SELECTED]
    ds = backselect_subsets(images, digits_selection, labels=labels)
    reference = subset_accuracy(digits_model, images, labels, backselect=ds)
    results = [
        mask_shape_leakage(digits_model, images, labels, subsets, generator=0)
        for subsets in (digits_selection, ds, digits_selection.keep_masks(0.05))
    ]
    for leak in results:
        assert leak.subsets == pytest.approx(reference.backselect) and leak.full == pytest.approx(reference.full)
        for name in ("subset", "swapped", "shape", "random"):
            assert torch.equal(getattr(leak, f"{name}_predictions"), getattr(results[0], f"{name}_predictions"))
    leak = results[0]
    print("digits leakage:", json.dumps({k: v for k, v in leak.to_dict().items() if k != "interpretation"}))
    print(leak.interpretation())
    assert leak.n_classes == 10 and leak.n_images == DIGITS_SELECTED and leak.same_class_donors == 0.0
    assert leak.kept_fraction == pytest.approx(4 / 64)
    json.dumps(leak.to_dict(), allow_nan=False)


def test_donors_are_a_seeded_derangement_of_other_classes() -> None:
    labels = torch.tensor([3, 3, 3, 1, 1, 0, 0, 0, 2, 2])  # largest class 3 of 10
    first = _donors(labels, torch.Generator().manual_seed(0))
    assert torch.equal(first, _donors(labels, torch.Generator().manual_seed(0)))
    draws = {tuple(_donors(labels, torch.Generator().manual_seed(s)).tolist()) for s in range(20)}
    assert len(draws) > 10
    for donors in map(torch.tensor, draws):
        assert sorted(donors.tolist()) == list(range(10))
        assert bool((donors != torch.arange(10)).all()) and bool((labels[donors] != labels).all())
    majority = torch.tensor([0, 0, 0, 0, 1, 2])  # 4 of 6 in one class: some same-class donors, never itself
    for s in range(10):
        donors = _donors(majority, torch.Generator().manual_seed(s))
        assert sorted(donors.tolist()) == list(range(6)) and bool((donors != torch.arange(6)).all())
        assert int((majority[donors] == majority).sum()) == 2  # the fewest possible: 4 - (6 - 4)
    for n in (2, 3):
        donors = _donors(torch.zeros(n, dtype=torch.long), None)
        assert sorted(donors.tolist()) == list(range(n)) and bool((donors != torch.arange(n)).all())


def test_random_positions_have_the_asked_counts() -> None:
    counts = torch.tensor([0, 1, 5, 16])
    masks = _random_positions(counts, (1, 4, 4), torch.Generator().manual_seed(0))
    assert masks.shape == (4, 1, 4, 4) and masks.flatten(1).sum(1).tolist() == [0, 1, 5, 16]
    hits = sum(_random_positions(torch.tensor([1]), (1, 4, 4), torch.Generator().manual_seed(s)) for s in range(400))
    assert int(hits.min()) > 5  # every position drawn: uniform, not always the same ones


def test_not_informative_when_subsets_are_at_chance() -> None:
    images, labels, keep = _quadrant_data(per_class=3)
    leak = mask_shape_leakage(Recorder(classes=4), images, labels, keep)  # always class 0: 25% everywhere
    assert leak.subsets == leak.swapped == leak.shape_only == pytest.approx(0.25)
    assert "this control is not informative here" in leak.interpretation()
    assert leak.shape_share != leak.shape_share  # NaN
    d = leak.to_dict()
    assert d["shape_share"] is None
    json.dumps(d, allow_nan=False)


def test_plot() -> None:
    import matplotlib.pyplot as plt

    images, labels, keep = _quadrant_data(per_class=2)
    ax = mask_shape_leakage(WhereQuadrant(), images, labels, keep).plot()
    assert len(ax.patches) == 5 and ax.get_ylabel() == "accuracy (%)"
    plt.close("all")


def test_validation() -> None:
    model = TinyConvNet(classes=3)
    images = torch.rand(4, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 0])
    keep = torch.zeros(4, 1, 4, 4, dtype=torch.bool)
    keep[:, :, 0, 0] = True
    with pytest.raises(SISValueError, match="The `images` parameter of mask_shape_leakage must be at least two"):
        mask_shape_leakage(model, images[:1], labels[:1], keep[:1])
    with pytest.raises(SISValueError, match=r"shape \(4, 1, 4, 4\) or \(4, 3, 4, 4\). Got shape \(4, 2, 4, 4\)"):
        mask_shape_leakage(model, images, labels, keep.expand(4, 2, 4, 4))
    with pytest.raises(SISTypeError, match=r"bool tensor of keep-masks\. Got a tensor of dtype torch\.float32"):
        mask_shape_leakage(model, images, labels, keep.float())
    with pytest.raises(SISTypeError, match="Got list instead"):
        mask_shape_leakage(model, images, labels, [keep])  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="The `fill` parameter of mask_shape_leakage equals the baseline"):
        mask_shape_leakage(model, images, labels, keep, fill=0.0)
    with pytest.raises(
        SISValueError, match=r"The `fill` parameter of mask_shape_leakage must be one number per channel \(3\)"
    ):
        mask_shape_leakage(model, images, labels, keep, fill=[0.5, 0.5])
    with pytest.raises(SISValueError, match="'mean', a number or one number per channel"):
        mask_shape_leakage(model, images, labels, keep, fill="median")  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match=r"class indices in \[0, 2\]"):
        mask_shape_leakage(model, images, torch.tensor([0, 1, 2, 3]), keep)
    with pytest.raises(SISValueError, match=r"The `condition` parameter of MaskShapeLeakage\.p_value"):
        mask_shape_leakage(model, images, labels, keep).p_value("swap")  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="The `generator` parameter of mask_shape_leakage"):
        mask_shape_leakage(model, images, labels, keep, generator="seed")  # type: ignore[arg-type]
    assert isinstance(mask_shape_leakage(model, images, labels, keep, generator=None), MaskShapeLeakage)


def test_selection_of_other_images_is_refused(
    digits: Digits, digits_model: nn.Module, digits_selection: SelectionResult
) -> None:
    images = digits.test_images[: DIGITS_SELECTED - 1]
    with pytest.raises(SISValueError, match="must be the selection of the images"):
        mask_shape_leakage(digits_model, images, digits.test_labels[: DIGITS_SELECTED - 1], digits_selection)
