"""Feature masks: integer group ids (Captum's ``feature_mask`` convention) for common groupings of image pixels.

A feature is the set of positions that share an id; backward selection removes (sets to the baseline) whole
features. Torch-only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from sis_attr._core.validation import format_positive_int

__all__ = ["block_feature_mask", "default_feature_mask", "pixel_feature_mask"]


def default_feature_mask(inputs: object) -> Tensor | tuple[Tensor, ...] | None:
    """Per-pixel feature groups for 4-D ``(B, C, H, W)`` inputs (all channels of a pixel together).

    Inputs of other ranks get one feature per element. Ids continue across the inputs of a tuple. Returns None
    when ``inputs`` is not a tensor or a tuple of tensors (the caller's validation then reports the problem).

    Examples
    --------
    >>> default_feature_mask(torch.zeros(2, 3, 2, 2))
    tensor([[[[0, 1],
              [2, 3]]]])
    >>> [m.shape for m in default_feature_mask((torch.zeros(1, 2, 2, 2), torch.zeros(1, 3)))]
    [torch.Size([1, 1, 2, 2]), torch.Size([1, 3])]
    """
    if isinstance(inputs, Tensor):
        parts: Sequence[object] = (inputs,)
    elif isinstance(inputs, (tuple, list)) and inputs and all(isinstance(t, Tensor) for t in inputs):
        parts = inputs
    else:
        return None
    masks = []
    offset = 0
    for t in parts:
        assert isinstance(t, Tensor)
        if t.dim() == 0:
            return None
        if t.dim() == 4:
            h, w = int(t.shape[2]), int(t.shape[3])
            m = torch.arange(offset, offset + h * w, device=t.device).reshape(1, 1, h, w)
        else:
            shape = tuple(int(s) for s in t.shape[1:])
            m = torch.arange(offset, offset + math.prod(shape), device=t.device).reshape(1, *shape)
        offset += int(m.numel())
        masks.append(m)
    return masks[0] if isinstance(inputs, Tensor) else tuple(masks)


def pixel_feature_mask(image_shape: Sequence[int]) -> Tensor:
    """Feature mask that makes all channels of a pixel one feature: ids ``0..H*W-1``, shape ``(1, 1, H, W)``.

    Parameters
    ----------
    image_shape : sequence of int
        ``(C, H, W)`` or ``(H, W)``: only the last two entries are used.

    Returns
    -------
    Tensor
        int64 ids of shape ``(1, 1, H, W)``, row-major.

    Examples
    --------
    >>> pixel_feature_mask((3, 2, 2))
    tensor([[[[0, 1],
              [2, 3]]]])
    """
    h, w = int(image_shape[-2]), int(image_shape[-1])
    return torch.arange(h * w, dtype=torch.long).reshape(1, 1, h, w)


def block_feature_mask(height: int, width: int, block: int) -> Tensor:
    """Feature mask grouping ``block x block`` squares of pixels (all channels) into one feature.

    Ids run row-major over the blocks; blocks on the right and bottom edges are smaller when ``block`` does not
    divide the image size. Use it as ``feature_mask`` to make exact backward selection affordable on larger
    images (a 32x32 image has 64 features with ``block=4`` instead of 1024 pixels).

    Parameters
    ----------
    height, width : int
        Image size.
    block : int
        Side of the squares, in pixels.

    Returns
    -------
    Tensor
        int64 ids of shape ``(1, 1, height, width)``.

    Raises
    ------
    SISValueError
        If ``height``, ``width`` or ``block`` is not a positive integer.

    Examples
    --------
    >>> block_feature_mask(4, 6, 2)[0, 0]
    tensor([[0, 0, 1, 1, 2, 2],
            [0, 0, 1, 1, 2, 2],
            [3, 3, 4, 4, 5, 5],
            [3, 3, 4, 4, 5, 5]])
    """
    caller = "block_feature_mask"
    height = format_positive_int(height, "height", caller)
    width = format_positive_int(width, "width", caller)
    block = format_positive_int(block, "block", caller)
    cols = -(-width // block)
    rows = torch.arange(height).div(block, rounding_mode="floor")
    colsi = torch.arange(width).div(block, rounding_mode="floor")
    return (rows[:, None] * cols + colsi[None, :]).reshape(1, 1, height, width).long()
