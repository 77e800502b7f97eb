"""Feature masks: integer group ids (Captum's ``feature_mask`` convention) for common groupings of image pixels.

A feature is the set of positions that share an id; backward selection removes (sets to the baseline) whole
features. Torch-only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["default_feature_mask"]


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
