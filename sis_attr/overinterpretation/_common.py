"""Validation and model-evaluation helpers shared by the overinterpretation analyses (private).

Every public entry point validates its arguments once, here, with messages of one form: what the parameter of
which function must be, and what came instead. Models are only ever *called* (never put in eval or train
mode); inputs follow the model's device and results come back on the CPU.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from sis_attr._core.validation import _is_stochastic_in_training
from sis_attr._progress import progress_bar
from sis_attr.exceptions import SISTypeError, SISValueError, SISWarning

__all__: list[str] = []


# ------------------------------------------------------------------------------------------------ validation
def param_error(param: str, caller: str, expected: str, got: object) -> SISValueError:
    return SISValueError(f"The `{param}` parameter of {caller} must be {expected}. Got {got} instead.")


def format_images(images: object, caller: str, param: str = "images") -> Tensor:
    """Check ``images`` is a non-empty, finite, floating-point ``(N, C, H, W)`` tensor."""
    if not isinstance(images, Tensor):
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a float tensor of shape (N, C, H, W). "
            f"Got {type(images).__name__} instead."
        )
    if images.dim() != 4:
        raise param_error(param, caller, "a tensor of shape (N, C, H, W)", f"shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a floating-point tensor (convert uint8 images with "
            f"`images.float() / 255`). Got dtype {images.dtype} instead."
        )
    if images.shape[0] == 0:
        raise param_error(param, caller, "a non-empty batch of images", "0 images")
    if not torch.isfinite(images).all():
        raise param_error(param, caller, "finite (no NaN or inf)", "non-finite values")
    return images


def format_labels(labels: object, n: int, caller: str, param: str = "labels") -> Tensor:
    """Check ``labels`` is a 1-d integer tensor (or sequence of ints) with ``n`` entries; return int64 on CPU."""
    if isinstance(labels, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        labels = torch.tensor(list(labels), dtype=torch.long)
    if not isinstance(labels, Tensor):
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a 1-d integer tensor of class indices. "
            f"Got {type(labels).__name__} instead."
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be an integer tensor of class indices. "
            f"Got dtype {labels.dtype} instead."
        )
    if labels.dim() != 1 or labels.shape[0] != n:
        raise param_error(param, caller, f"of shape ({n},), one label per image", f"shape {tuple(labels.shape)}")
    labels = labels.detach().to("cpu", torch.long)
    if n and int(labels.min()) < 0:
        raise param_error(param, caller, "made of non-negative class indices", f"the value {int(labels.min())}")
    return labels


def check_label_range(labels: Tensor, n_classes: int, caller: str, param: str = "labels") -> None:
    """Labels must be valid class indices of a model with ``n_classes`` outputs."""
    if labels.numel() and int(labels.max()) >= n_classes:
        raise param_error(
            param,
            caller,
            f"made of class indices in [0, {n_classes - 1}] (the model has {n_classes} outputs)",
            f"the value {int(labels.max())}",
        )


def format_fraction(fraction: object, caller: str) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise SISTypeError(
            f"The `fraction` parameter of {caller} must be a number in (0, 1]. Got {type(fraction).__name__} instead."
        )
    f = float(fraction)
    if not (0.0 < f <= 1.0):
        raise param_error("fraction", caller, "in (0, 1]", fraction)
    return f


def format_probability_thresholds(thresholds: object, caller: str) -> tuple[float, ...]:
    """A non-empty sequence of numbers in (0, 1], returned sorted and de-duplicated."""
    if isinstance(thresholds, (int, float)) and not isinstance(thresholds, bool):
        thresholds = (thresholds,)
    if not isinstance(thresholds, Sequence) or isinstance(thresholds, str) or len(thresholds) == 0:
        raise SISTypeError(
            f"The `thresholds` parameter of {caller} must be a non-empty sequence of numbers in (0, 1]. "
            f"Got {thresholds!r} instead."
        )
    out = []
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0.0 < float(t) <= 1.0):
            raise param_error("thresholds", caller, "a sequence of numbers in (0, 1]", f"the entry {t!r}")
        out.append(float(t))
    return tuple(sorted(set(out)))


def format_threshold(threshold: object, caller: str, param: str = "threshold") -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (0.0 < float(threshold) <= 1.0):
        raise param_error(param, caller, "a number in (0, 1]", repr(threshold))
    return float(threshold)


def format_batch_size(batch_size: object, caller: str, param: str = "batch_size") -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise param_error(param, caller, "a positive integer", repr(batch_size))
    return int(batch_size)


def format_model(model: object, caller: str, param: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    return model


def format_named(mapping: object, caller: str, param: str, kind: str) -> dict[str, Any]:
    """A non-empty mapping with string keys."""
    if not isinstance(mapping, Mapping) or len(mapping) == 0:
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a non-empty dict mapping names to {kind}. "
            f"Got {type(mapping).__name__ if not isinstance(mapping, Mapping) else 'an empty mapping'} instead."
        )
    for key in mapping:
        if not isinstance(key, str):
            raise SISTypeError(
                f"The `{param}` parameter of {caller} must have string keys (names). Got the key {key!r} instead."
            )
    return dict(mapping)


def subset_size(fraction: float, n_features: int) -> int:
    """``ceil(fraction * n_features)`` robust to floating point (0.3 * 10 is 3, not 4); at least 1."""
    return max(1, min(n_features, math.ceil(round(fraction * n_features, 9))))


# ------------------------------------------------------------------------------------------------ models
def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); the CPU for a model without either."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def warn_if_training(model: nn.Module, caller: str, stacklevel: int = 3) -> None:
    """Warn (never change the model) when a dropout or batch-norm layer is in training mode."""
    if any(m.training and _is_stochastic_in_training(m) for m in model.modules()):
        warnings.warn(
            f"The model passed to {caller} is in training mode: dropout or batch-norm statistics make its "
            "outputs random and change its batch-norm statistics. Call model.eval() first (sis_attr never changes "
            "your model).",
            SISWarning,
            stacklevel=stacklevel,
        )


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
