"""Model-evaluation and number-formatting helpers shared by the overinterpretation analyses (private).

Input validation lives in :mod:`sis_attr._core.validation`. Models are only ever *called* (never put in eval
or train mode); inputs follow the model's device and results come back on the CPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from sis_attr._core import validation
from sis_attr._core.validation import (
    format_images,
    format_labels,
    model_device,
    param_error,
)
from sis_attr.exceptions import SISTypeError, SISValueError

__all__: list[str] = []


def subset_size(fraction: float, n_features: int) -> int:
    """``ceil(fraction * n_features)`` robust to floating point (0.3 * 10 is 3, not 4); at least 1.

    The one implementation behind :func:`sis_attr.overinterpretation.subset_size` and
    :meth:`SelectionResult.subset_size <sis_attr.overinterpretation.SelectionResult.subset_size>` (which
    validate their arguments first).
    """
    return max(1, min(n_features, math.ceil(round(fraction * n_features, 9))))


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: Tensor, caller: str, *, batch_size: int = 256) -> Tensor:
    """Softmax probabilities ``(N, classes)`` (float64, CPU) of ``model`` on ``images`` in chunks.

    Each chunk is moved to the model's device; the model must return ``(batch, classes)`` logits with at least
    two classes. No input is validated here: callers pass what their public door checked.
    """
    device = model_device(model)
    n = int(images.shape[0])
    out = []
    for i in range(0, n, batch_size):
        chunk = images[i : i + batch_size].to(device)
        logits = model(chunk)
        check_logits(logits, chunk, caller)
        out.append(torch.softmax(logits.detach().double(), dim=1).cpu())
    return torch.cat(out)


def check_logits(logits: object, chunk: Tensor, caller: str) -> None:
    """The model's output on ``chunk`` must be ``(batch, classes)`` logits with at least two classes."""
    if not isinstance(logits, Tensor):
        raise SISValueError(
            f"The model passed to {caller} must return logits of shape (batch, classes) = ({chunk.shape[0]}, C). "
            f"On images of shape {tuple(chunk.shape)} it returned {type(logits).__name__} instead."
        )
    validation.check_logits(
        logits,
        int(chunk.shape[0]),
        caller,
        shape_hint=f" (on images of shape {tuple(chunk.shape)})",
        binary_hint=f" {caller} needs a classifier with at least two classes (softmax confidences).",
    )


def dataset_tensors(dataset: object, caller: str, param: str) -> tuple[Tensor, Tensor]:
    """Validated ``(images, labels)`` of a dataset: its ``.images``/``.labels`` tensors, else by iterating it."""
    images, labels = raw_dataset_tensors(dataset, caller, param)
    images = format_images(images, caller, param)
    labels = format_labels(labels, int(images.shape[0]), caller, param=param)
    return images, labels


def raw_dataset_tensors(dataset: object, caller: str, param: str) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` of a dataset, not validated: an ``(images, labels)`` tuple, the ``.images``/``.labels``
    tensors of a dataset without a transform, else the stacked items of a map-style dataset."""
    if isinstance(dataset, tuple) and len(dataset) == 2 and all(isinstance(t, Tensor) for t in dataset):
        images, labels = dataset
    elif isinstance(getattr(dataset, "images", None), Tensor) and isinstance(getattr(dataset, "labels", None), Tensor):
        images, labels = getattr(dataset, "images"), getattr(dataset, "labels")  # noqa: B009
        if getattr(dataset, "transform", None) is not None:
            images, labels = _iterate(dataset, caller, param)  # type: ignore[arg-type]
    elif isinstance(dataset, Dataset):
        images, labels = _iterate(dataset, caller, param)
    else:
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a torch Dataset of (image, label) pairs (such as a "
            f"PixelSubsetDataset) or an (images, labels) tuple of tensors. Got {type(dataset).__name__} instead."
        )
    return images, labels


def _iterate(dataset: Dataset[Any], caller: str, param: str) -> tuple[Tensor, Tensor]:
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise SISTypeError(f"The `{param}` parameter of {caller} must be a map-style dataset with a length.") from None
    if n == 0:
        raise param_error(param, caller, "a non-empty dataset", "an empty one")
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not (isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[0], Tensor)):
            raise SISTypeError(
                f"The `{param}` parameter of {caller} must yield (image, label) pairs. "
                f"Got {type(item).__name__} at index {i} instead."
            )
        xs.append(item[0])
        ys.append(int(item[1]))
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


def mean_ci(values: Tensor, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and the bounds of its Student-t confidence interval (NaN bounds for < 2 values)."""
    from scipy import stats

    v = values.double().numpy()
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    sem = float(stats.sem(v)) if v.size > 1 else math.nan
    if math.isnan(sem):
        return mean, math.nan, math.nan
    if sem == 0.0:  # scipy returns NaN bounds for a zero-width interval
        return mean, mean, mean
    low, high = stats.t.interval(confidence, v.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def to_float(x: float | Tensor) -> float | None:
    """A JSON-friendly float: NaN becomes None."""
    v = float(x)
    return None if math.isnan(v) else v


def float_list(t: Tensor) -> list[float | None]:
    """JSON-friendly floats of a tensor: NaN becomes None."""
    return [to_float(v) for v in t.double().tolist()]
