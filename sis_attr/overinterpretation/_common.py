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

from sis_attr._core.validation import (
    format_images,
    format_labels,
    model_device,
    param_error,
)
from sis_attr._progress import progress_bar
from sis_attr.exceptions import SISTypeError, SISValueError

__all__: list[str] = []


def subset_size(fraction: float, n_features: int) -> int:
    """``ceil(fraction * n_features)`` robust to floating point (0.3 * 10 is 3, not 4); at least 1."""
    return max(1, min(n_features, math.ceil(round(fraction * n_features, 9))))


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    images: Tensor,
    caller: str,
    *,
    batch_size: int = 256,
    show_progress: bool = False,
    desc: str = "Evaluating",
) -> Tensor:
    """Softmax probabilities ``(N, classes)`` (float64, CPU) of ``model`` on ``images`` in chunks.

    Each chunk is moved to the model's device; the model must return ``(batch, classes)`` logits.
    """
    device = model_device(model)
    n = int(images.shape[0])
    out = []
    with progress_bar(n, desc, show_progress, unit="image") as bar:
        for i in range(0, n, batch_size):
            chunk = images[i : i + batch_size].to(device)
            logits = model(chunk)
            if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != chunk.shape[0]:
                got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                raise SISValueError(
                    f"The model passed to {caller} must return logits of shape (batch, classes) = "
                    f"({chunk.shape[0]}, C). Got {got} instead."
                )
            if logits.shape[1] < 2:
                raise SISValueError(
                    f"The model passed to {caller} returns a single logit per image; {caller} needs a "
                    "classifier with at least two classes (softmax confidences)."
                )
            out.append(torch.softmax(logits.detach().double(), dim=1).cpu())
            bar.update(int(chunk.shape[0]))
    return torch.cat(out)


def dataset_tensors(dataset: object, caller: str, param: str) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` of a dataset: its ``.images``/``.labels`` tensors, else by iterating it."""
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
    images = format_images(images, caller, param)
    labels = format_labels(labels, int(images.shape[0]), caller, param=param)
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

    v = values.double()
    n = int(v.numel())
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan
    sem = float(v.std(unbiased=True)) / math.sqrt(n)
    if sem == 0.0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return mean, mean - half, mean + half


def to_float(x: float | Tensor) -> float | None:
    """A JSON-friendly float: NaN becomes None."""
    v = float(x)
    return None if math.isnan(v) else v


def float_list(t: Tensor) -> list[float | None]:
    return [to_float(v) for v in t.double().tolist()]
