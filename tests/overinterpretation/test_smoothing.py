"""smoothed_sis: confidence on each SIS, on its one-pixel dilation and on same-size random sets.

Oracles: the dilation of a single pixel is its 3x3 block clipped at the border, and of any mask the union of
those blocks (written out with loops here); a model that counts bright pixels survives smoothing; a model that
needs *isolated* pixels (an adversarial-like pattern) is broken by the bordering pixels but not by as many
random ones.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sis_attr.exceptions import SISTypeError, SISValueError, UninformativeBaselineWarning
from sis_attr.overinterpretation import SelectionResult
from sis_attr.overinterpretation.smoothing import SmoothedSIS, smoothed_sis
from sis_attr.testing import SumGridClassifier, TinyConvNet
from tests.overinterpretation.conftest import DIGITS_SELECTED, Digits


class IsolatedPixels(nn.Module):
    """Two classes: class 1 for non-zero pixels with no non-zero 8-neighbour, class 0 for clustered ones.

    ``logit_1 = 3 * isolated - 3 * clustered - 1``: a few scattered pixels are an SIS of class 1, and any pixel
    added next to them turns both into clustered pixels.
    """

    def forward(self, x: Tensor) -> Tensor:
        on = (x != 0).any(dim=1, keepdim=True).float()
        neighbours = F.conv2d(on, torch.ones(1, 1, 3, 3), padding=1) - on
        isolated = (on * (neighbours == 0).float()).flatten(1).sum(dim=1)
        clustered = on.flatten(1).sum(dim=1) - isolated
        logit = 3 * isolated - 3 * clustered - 1
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


class BrightCount(nn.Module):
    """Two classes: ``logit_1 = (number of non-zero pixels) - 2``: more kept pixels, more confidence."""

    def forward(self, x: Tensor) -> Tensor:
        logit = (x != 0).any(dim=1).flatten(1).sum(dim=1).float() - 2
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


def _dilate_by_hand(mask: Tensor) -> Tensor:
    """Union of the 3x3 blocks (clipped at the border) of the kept locations of one ``(H, W)`` mask."""
    h, w = mask.shape
    out = torch.zeros(h, w, dtype=torch.bool)
    for r, c in mask.nonzero().tolist():
        out[max(r - 1, 0) : min(r + 2, h), max(c - 1, 0) : min(c + 2, w)] = True
    return out


def _single_pixel_masks(h: int, w: int, where: list[tuple[int, int]]) -> Tensor:
    masks = torch.zeros(len(where), 1, h, w, dtype=torch.bool)
    for i, (r, c) in enumerate(where):
        masks[i, 0, r, c] = True
    return masks


def test_dilation_of_a_single_pixel_is_its_3x3_block_clipped_at_the_border() -> None:
    h, w = 5, 6
    where = [(2, 3), (0, 0), (0, 5), (4, 0), (4, 5), (0, 2), (2, 5)]
    result = smoothed_sis(
        BrightCount(), torch.ones(len(where), 3, h, w), _single_pixel_masks(h, w, where), threshold=0.5
    )
    for i, (r, c) in enumerate(where):
        block = torch.zeros(h, w, dtype=torch.bool)
        block[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = True
        assert torch.equal(result.dilated_masks[i, 0], block)
    # interior 9, corners 4, edges 6
    assert result.dilated_sizes.tolist() == [9, 4, 4, 4, 4, 6, 6]
    assert result.sis_sizes.tolist() == [1] * len(where)


def test_dilation_of_any_mask_is_the_union_of_the_blocks() -> None:
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 1, 9, 7, generator=gen) < 0.08
    masks[:, :, 4, 3] = True
    result = smoothed_sis(BrightCount(), torch.ones(6, 2, 9, 7), masks, threshold=0.5)
    for i in range(6):
        assert torch.equal(result.dilated_masks[i, 0], _dilate_by_hand(masks[i, 0]))
        assert torch.equal(result.dilated_masks[i, 0] & masks[i, 0], masks[i, 0])  # contains the SIS


def test_dilation_is_per_pixel_location_across_channels() -> None:
    """An SIS that keeps one channel of a pixel dilates to every channel of the 3x3 block around it."""
    masks = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    masks[0, 2, 1, 1] = True  # the blue channel of pixel (1, 1) only
    images = torch.rand(1, 3, 4, 4) + 0.5
    result = smoothed_sis(SumGridClassifier(), images, masks, threshold=0.5, target=1)
    assert result.sis_masks.shape == (1, 3, 4, 4) and result.dilated_masks.shape == (1, 1, 4, 4)
    assert result.sis_sizes.tolist() == [1] and result.dilated_sizes.tolist() == [9]
    # confidences are the model's on the masked images (the SIS keeps one value; the dilation 9 x 3 values)
    assert result.sis_confidences[0].item() == pytest.approx(torch.sigmoid(images[0, 2, 1, 1]).item())
    dilated_sum = images[0, :, :3, :3].sum()
    assert result.dilated_confidences[0].item() == pytest.approx(torch.sigmoid(dilated_sum).item())


def test_random_controls_have_the_dilated_size_and_the_plus_random_set_contains_the_sis() -> None:
    gen = torch.Generator().manual_seed(1)
    masks = torch.rand(8, 1, 12, 12, generator=gen) < 0.05
    masks[:, :, 6, 6] = True
    result = smoothed_sis(BrightCount(), torch.ones(8, 3, 12, 12), masks, threshold=0.5, generator=3)
    sizes = result.dilated_sizes
    assert result.random_masks.flatten(1).sum(1).tolist() == sizes.tolist()
    assert result.sis_plus_random_masks.flatten(1).sum(1).tolist() == sizes.tolist()
    assert bool((result.sis_plus_random_masks & masks).eq(masks).all())
    again = smoothed_sis(BrightCount(), torch.ones(8, 3, 12, 12), masks, threshold=0.5, generator=3)
    assert torch.equal(again.random_masks, result.random_masks)
    assert not torch.equal(result.random_masks, result.dilated_masks)


def test_counting_model_survives_smoothing() -> None:
    masks = _single_pixel_masks(6, 6, [(1 + i // 4, 1 + i % 4) for i in range(16)])
    masks[:, :, 0, 0] = True  # two pixels: logit 0, confidence 0.5, sufficient at 0.5
    result = smoothed_sis(BrightCount(), torch.ones(16, 1, 6, 6), masks, threshold=0.5, target=1)
    assert result.sufficient("sis") == 1.0 and result.sufficient("dilated") == 1.0
    assert bool((result.dilated_confidences > result.sis_confidences).all())
    assert result.sufficient("random") == 1.0  # as many random pixels count as much
    assert result.interpretation().startswith("The SIS survive smoothing.")
    assert "suffices even at random" in result.interpretation()


def test_isolated_pixel_model_is_broken_by_the_border_not_by_random_pixels() -> None:
    gen = torch.Generator().manual_seed(2)
    n, size = 12, 32
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    for i in range(n):  # three scattered pixels, far apart
        for k in range(3):
            masks[i, 0, 4 + 10 * k + i % 3, 5 + 9 * k + i % 4] = True
    images = torch.rand(n, 3, size, size, generator=gen) + 0.1
    result = smoothed_sis(IsolatedPixels(), images, masks, threshold=0.9, target=1, generator=0)
    assert result.sufficient("sis") == 1.0  # logit 8
    assert result.sufficient("dilated") == 0.0 and result.mean_confidence("dilated") < 1e-6
    assert result.sufficient("sis_plus_random") > 0.8  # 24 random pixels out of 1021 rarely touch each other
    assert result.mcnemar("dilated") < 0.01 and result.mcnemar("sis_plus_random") >= 0.01
    text = result.interpretation()
    assert text.startswith("Adding the bordering pixels breaks the SIS.")
    assert "it is the SIS's own neighbourhood that overturns the decision" in text
    print(text)
    assert result.full_confidences.max() < 0.5  # the full image is all clustered: class 0
    json.dumps(result.to_dict(), allow_nan=False)


def test_selection_result_equals_its_masks(
    digits: Digits, digits_model: nn.Module, digits_selection: SelectionResult
) -> None:
    images = digits.test_images[:DIGITS_SELECTED]
    from_selection = smoothed_sis(digits_model, images, digits_selection, threshold=0.9)
    with warnings.catch_warnings():  # some digits keep 0.9 on the baseline alone: their SIS are empty
        warnings.simplefilter("ignore", UninformativeBaselineWarning)
        masks = digits_selection.sis_masks(0.9)
    from_masks = smoothed_sis(digits_model, images, masks, threshold=0.9, target=digits_selection.targets)
    has = masks.flatten(1).any(dim=1)
    assert from_selection.n_images == int(has.sum()) == from_masks.n_images > 0
    assert torch.equal(from_selection.indices, has.nonzero().flatten())
    for name in ("sis", "dilated", "random", "sis_plus_random", "full"):
        assert torch.allclose(
            getattr(from_selection, f"{name}_confidences"), getattr(from_masks, f"{name}_confidences")
        )
    assert from_selection.sufficient("sis") == 1.0  # every SIS is sufficient by construction
    print(
        "digits smoothed SIS:",
        json.dumps(
            {
                k: v
                for k, v in from_selection.to_dict().items()
                if k in ("sufficient", "mean_confidence", "mean_sis_size", "mean_dilated_size")
            }
        ),
    )
    print(from_selection.interpretation())
    json.dumps(from_selection.to_dict(), allow_nan=False)


def test_images_without_an_sis_are_left_out() -> None:
    masks = _single_pixel_masks(4, 4, [(1, 1), (2, 2), (0, 3)])
    masks[1] = False
    result = smoothed_sis(BrightCount(), torch.ones(3, 1, 4, 4), masks, threshold=0.5, target=1)
    assert result.indices.tolist() == [0, 2] and result.n_images == 2 and result.n_inputs == 3
    none = smoothed_sis(BrightCount(), torch.ones(3, 1, 4, 4), torch.zeros(3, 1, 4, 4, dtype=torch.bool), threshold=0.5)
    assert none.n_images == 0 and none.interpretation().startswith("None of the 3 images has an SIS")
    d = none.to_dict()
    assert d["sufficient"]["sis"] is None and d["mean_sis_size"] is None
    json.dumps(d, allow_nan=False)


def test_plot() -> None:
    import matplotlib.pyplot as plt

    masks = _single_pixel_masks(4, 4, [(1, 1), (2, 2)])
    ax = smoothed_sis(BrightCount(), torch.ones(2, 1, 4, 4), masks, threshold=0.5, target=1).plot()
    assert ax.get_ylabel() == "confidence of the explained class" and len(ax.get_xticklabels()) == 4
    plt.close("all")


def test_validation(digits_selection: SelectionResult) -> None:
    model = TinyConvNet(classes=3)
    images = torch.rand(2, 3, 4, 4)
    masks = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    masks[:, :, 1, 1] = True
    with pytest.raises(SISValueError, match=r"The `threshold` parameter of smoothed_sis must be in \(0, 1\]"):
        smoothed_sis(model, images, masks, threshold=1.5)
    with pytest.raises(SISTypeError, match=r"bool tensor of SIS keep-masks\. Got a tensor of dtype torch\.int64"):
        smoothed_sis(model, images, masks.long(), threshold=0.5)
    with pytest.raises(SISValueError, match=r"shape \(2, 1, 4, 4\) or \(2, 3, 4, 4\)"):
        smoothed_sis(model, images, masks[:1], threshold=0.5)
    with pytest.raises(SISValueError, match="must be the selection of the images"):
        smoothed_sis(model, images, digits_selection, threshold=0.5)
    with pytest.raises(SISValueError, match=r"class indices in \[0, 2\]"):
        smoothed_sis(model, images, masks, threshold=0.5, target=torch.tensor([0, 3]))
    with pytest.raises(SISValueError, match=r"The `which` parameter of SmoothedSIS\.sufficient"):
        smoothed_sis(model, images, masks, threshold=0.5).sufficient("border")
    assert isinstance(smoothed_sis(model, images, masks, threshold=0.5, generator=None), SmoothedSIS)


def test_selection_refuses_a_target(digits: Digits, digits_model: nn.Module, digits_selection: SelectionResult) -> None:
    with pytest.raises(
        SISValueError, match="The `target` parameter of smoothed_sis must be None with a SelectionResult"
    ):
        smoothed_sis(digits_model, digits.test_images[:DIGITS_SELECTED], digits_selection, threshold=0.9, target=0)
