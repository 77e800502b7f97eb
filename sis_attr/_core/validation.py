"""Every input check of :mod:`sis_attr`, in one module (scikit-learn keeps ``utils/validation.py``).

Public entry points call these once, at the door; inner code trusts what they return. Messages follow one
form: what the parameter of which function must be, and what came instead ("The `threshold` parameter of
audit must be in (0, 1]. Got 1.5 instead."). Verbs: ``format_*`` checks a value and returns it normalised,
``check_*`` checks and returns nothing (or warns).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sis_attr.exceptions import SISDeviceError, SISTypeError, SISValueError, SISWarning

TensorOrTuple = Tensor | tuple[Tensor, ...]


def param_error(param: str, caller: str, expected: str, got: object) -> SISValueError:
    """The one message form: "The `param` parameter of caller must be expected. Got got instead."."""
    return SISValueError(f"The `{param}` parameter of {caller} must be {expected}. Got {got} instead.")


def format_inputs(inputs: object, caller: str) -> tuple[tuple[Tensor, ...], bool]:
    """Return ``inputs`` as a tuple of tensors and whether the user passed a tuple."""
    if isinstance(inputs, Tensor):
        tup: tuple[Tensor, ...] = (inputs,)
        is_tuple = False
    elif isinstance(inputs, (tuple, list)) and len(inputs) > 0 and all(isinstance(t, Tensor) for t in inputs):
        tup = tuple(inputs)
        is_tuple = True
    else:
        raise SISTypeError(
            f"The `inputs` parameter of {caller} must be a tensor or a non-empty tuple of tensors. "
            f"Got {type(inputs).__name__} instead."
        )
    batch = tup[0].shape[0] if tup[0].dim() > 0 else None
    for i, t in enumerate(tup):
        if t.dim() == 0:
            raise param_error("inputs", caller, "tensors with a leading batch dimension", f"a 0-d tensor at {i}")
        if t.shape[0] != batch:
            raise SISValueError(
                f"The `inputs` parameter of {caller} must hold tensors with one batch size. "
                f"Got batch sizes {[int(x.shape[0]) for x in tup]} instead."
            )
        if not t.is_floating_point():
            raise param_error("inputs", caller, "floating-point tensors", f"dtype {t.dtype} at position {i}")
        if t.device != tup[0].device:
            raise SISDeviceError(
                f"All tensors in `inputs` of {caller} must be on one device. "
                f"Got {[str(x.device) for x in tup]} instead."
            )
        if not torch.isfinite(t).all():
            raise param_error("inputs", caller, "finite (no NaN or inf)", f"non-finite values in input {i}")
    if batch == 0:
        raise param_error("inputs", caller, "a non-empty batch", "a batch of 0 examples")
    return tup, is_tuple


def format_baselines(baselines: object, inputs: tuple[Tensor, ...], caller: str) -> tuple[Tensor, ...]:
    """Broadcast ``baselines`` to one full-size tensor per input (batch included)."""
    if baselines is None:
        items: Sequence[object] = [0.0] * len(inputs)
    elif isinstance(baselines, (int, float, Tensor)):
        items = [baselines] * len(inputs)
    elif isinstance(baselines, (tuple, list)):
        if len(baselines) != len(inputs):
            raise param_error(
                "baselines", caller, f"a tuple with one entry per input ({len(inputs)})", f"{len(baselines)} entries"
            )
        items = list(baselines)
    else:
        raise SISTypeError(
            f"The `baselines` parameter of {caller} must be None, a number, a tensor or a tuple of those. "
            f"Got {type(baselines).__name__} instead."
        )
    out = []
    for i, (b, x) in enumerate(zip(items, inputs, strict=True)):
        if isinstance(b, bool) or not isinstance(b, (int, float, Tensor)):
            raise SISTypeError(
                f"The `baselines` parameter of {caller} must hold numbers or tensors. "
                f"Got {type(b).__name__} at position {i} instead."
            )
        # detached: baselines are values, not part of a graph (and float() of a grad tensor warns)
        bt = torch.as_tensor(b, dtype=x.dtype, device=x.device) if not isinstance(b, Tensor) else b.detach()
        if isinstance(b, Tensor) and b.device != x.device:
            raise SISDeviceError(
                f"The `baselines` of {caller} must be on the inputs' device ({x.device}). Got {b.device} instead."
            )
        try:
            full = torch.broadcast_to(bt.to(x.dtype), x.shape)
        except RuntimeError:
            # a per-example baseline without the batch dimension is the common mistake: try adding it
            try:
                full = torch.broadcast_to(bt.to(x.dtype).unsqueeze(0), x.shape)
            except RuntimeError:
                raise SISValueError(
                    f"The `baselines` parameter of {caller} must be broadcastable to the input shape "
                    f"{tuple(x.shape)} (input {i}). Got shape {tuple(bt.shape)} instead."
                ) from None
        if not torch.isfinite(full).all():
            raise param_error("baselines", caller, "finite (no NaN or inf)", f"non-finite values in baseline {i}")
        out.append(full)
    return tuple(out)


def format_feature_mask(feature_mask: object, inputs: tuple[Tensor, ...], caller: str) -> tuple[Tensor, Tensor]:
    """Return ``(feature_index, n_features)`` for flattened, concatenated inputs.

    ``feature_index`` has shape ``(1 or B, P)`` (``P`` = positions of one example over all inputs) and holds
    group ids; ``n_features`` has shape ``(B,)``. Without a mask every position is its own feature.
    """
    batch = inputs[0].shape[0]
    device = inputs[0].device
    sizes = [int(x[0].numel()) for x in inputs]
    total = sum(sizes)
    if feature_mask is None:
        idx = torch.arange(total, device=device).unsqueeze(0)
        return idx, torch.full((batch,), total, dtype=torch.long, device=device)
    masks: Sequence[object]
    if isinstance(feature_mask, Tensor):
        masks = [feature_mask]
    elif isinstance(feature_mask, (tuple, list)):
        masks = list(feature_mask)
    else:
        raise SISTypeError(
            f"The `feature_mask` parameter of {caller} must be None, an integer tensor or a tuple of them. "
            f"Got {type(feature_mask).__name__} instead."
        )
    if len(masks) != len(inputs):
        raise param_error("feature_mask", caller, f"one mask per input ({len(inputs)})", f"{len(masks)} masks")
    per_input = []
    per_example = False
    for i, (m, x) in enumerate(zip(masks, inputs, strict=True)):
        if not isinstance(m, Tensor):
            raise SISTypeError(
                f"The `feature_mask` parameter of {caller} must hold tensors. Got {type(m).__name__} at {i} instead."
            )
        if m.is_floating_point() or m.is_complex() or m.dtype == torch.bool:
            raise param_error("feature_mask", caller, "an integer tensor of group ids", f"dtype {m.dtype}")
        if m.device != device:
            raise SISDeviceError(
                f"The `feature_mask` of {caller} must be on the inputs' device ({device}). Got {m.device} instead."
            )
        mm = m
        if mm.dim() < x.dim():  # broadcasting semantics: missing leading dimensions have size 1
            mm = mm.reshape((1,) * (x.dim() - mm.dim()) + tuple(mm.shape))
        if mm.dim() != x.dim() or mm.shape[0] not in (1, batch):
            raise SISValueError(
                f"The `feature_mask` parameter of {caller} must be broadcastable to the input shape "
                f"{tuple(x.shape)} with a batch dimension of 1 or {batch} (input {i}). "
                f"Got shape {tuple(m.shape)} instead."
            )
        try:
            full = torch.broadcast_to(mm, (mm.shape[0], *x.shape[1:]))
        except RuntimeError:
            raise SISValueError(
                f"The `feature_mask` parameter of {caller} must be broadcastable to the input shape "
                f"{tuple(x.shape)} (input {i}). Got shape {tuple(m.shape)} instead."
            ) from None
        per_example = per_example or (mm.shape[0] == batch and batch > 1)
        per_input.append(full)
    rows = batch if per_example else 1
    flat = torch.cat([p.expand(rows, *p.shape[1:]).reshape(rows, -1) for p in per_input], dim=1).long()
    n_features = torch.empty(rows, dtype=torch.long, device=device)
    for r in range(rows):
        ids = torch.unique(flat[r])
        if int(ids[0]) < 0:
            raise param_error("feature_mask", caller, "made of non-negative group ids", f"id {int(ids[0])}")
        n = int(ids.numel())
        if int(ids[-1]) != n - 1:
            missing = sorted(set(range(int(ids[-1]) + 1)) - set(ids.tolist()))[:5]
            raise SISValueError(
                f"The `feature_mask` parameter of {caller} must use contiguous group ids 0..n-1"
                f"{' (example ' + str(r) + ')' if rows > 1 else ''}. Got ids up to {int(ids[-1])} "
                f"with {missing} missing instead."
            )
        n_features[r] = n
    if rows == 1:
        n_features = n_features.expand(batch).clone()
    return flat, n_features


def as_scalar(value: object) -> object:
    """A one-element non-bool tensor or a NumPy number as a Python ``float``/``int``; anything else unchanged."""
    if isinstance(value, Tensor):
        if value.numel() == 1 and value.dtype != torch.bool and not value.is_complex():
            return value.item()
        return value
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
    return value


def format_threshold(threshold: object, caller: str, *, probability: bool = True, param: str = "threshold") -> float:
    """A finite number; in (0, 1] when it is a ``probability`` (the default softmax score).

    One-element tensors and NumPy numbers count as numbers.
    """
    threshold = as_scalar(threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a number. Got {type(threshold).__name__} instead."
        )
    t = float(threshold)
    if probability and not (0.0 < t <= 1.0):
        raise param_error(param, caller, "in (0, 1]", t)
    if not math.isfinite(t):
        raise param_error(param, caller, "finite", t)
    return t


def format_output_kind(output: object, caller: str) -> str:
    """Validate the ``output`` parameter of the adapters' ``attribute``: ``"rank"`` or ``"keep_mask"``."""
    if output not in ("rank", "keep_mask"):
        raise SISValueError(
            f"The `output` parameter of {caller} must be 'rank' or 'keep_mask'. Got {output!r} instead."
        )
    return str(output)


def format_positive_int(value: object, param: str, caller: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise param_error(param, caller, "a positive integer", repr(value))
    return int(value)


def format_optional_positive_int(value: object, param: str, caller: str) -> int | None:
    """None or a positive integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise param_error(param, caller, "None or a positive integer", repr(value))
    return int(value)


def format_non_negative_int(value: object, param: str, caller: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise param_error(param, caller, "a non-negative integer", repr(value))
    return int(value)


def format_number(value: object, param: str, caller: str, *, low: float, low_open: bool, high: float | None) -> float:
    """A finite number in ``(low, high]`` / ``[low, high]`` (``high=None``: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise param_error(param, caller, "a finite number", repr(value))
    v = float(value)
    too_low = v <= low if low_open else v < low
    if too_low or (high is not None and v > high):
        interval = ("(" if low_open else "[") + f"{low:g}, " + (f"{high:g}]" if high is not None else "inf)")
        raise param_error(param, caller, f"in {interval}", repr(value))
    return v


def format_flag(value: object, param: str, caller: str) -> bool:
    if not isinstance(value, bool):
        raise SISTypeError(f"The `{param}` parameter of {caller} must be a bool. Got {type(value).__name__} instead.")
    return value


def format_string(value: object, param: str, caller: str) -> str:
    if not isinstance(value, str):
        raise SISTypeError(f"The `{param}` parameter of {caller} must be a string. Got {type(value).__name__} instead.")
    return value


def format_generator(generator: object, caller: str) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise SISTypeError(
            f"The `generator` parameter of {caller} must be None or a torch.Generator. "
            f"Got {type(generator).__name__} instead."
        )
    return generator


def resolve_batch_size(batch_size: object, perturbations_per_eval: object, inputs: object, caller: str) -> int | None:
    """Rows per forward pass: ``batch_size``, or Captum's ``perturbations_per_eval`` times the batch size;
    None when neither is given (the method then measures the best size)."""
    if batch_size is not None and perturbations_per_eval is not None:
        raise SISValueError(
            f"Pass either `batch_size` or `perturbations_per_eval` to {caller}, not both. "
            f"Got batch_size={batch_size} and perturbations_per_eval={perturbations_per_eval}."
        )
    if perturbations_per_eval is not None:
        ppe = format_positive_int(perturbations_per_eval, "perturbations_per_eval", caller)
        first = inputs[0] if isinstance(inputs, (tuple, list)) and inputs else inputs
        n = int(first.shape[0]) if isinstance(first, Tensor) and first.dim() > 0 else 1
        return ppe * n
    if batch_size is None:
        return None
    return format_positive_int(batch_size, "batch_size", caller)


def format_additional_args(additional_forward_args: object) -> tuple[Any, ...]:
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def _is_stochastic_in_training(module: nn.Module) -> bool:
    """Modules whose output depends on train/eval mode (dropout, batch norm, input dropout...)."""
    mode_dependent = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)
    return isinstance(module, mode_dependent) or "dropout" in type(module).__name__.lower()


def check_logits(output: Tensor, n: int, caller: str, *, shape_hint: str, binary_hint: str) -> None:
    """The model's output on ``n`` inputs must be ``(n, classes)`` logits with at least two classes.

    The one check of classifier outputs (the SIS scorer's and the analyses'); each caller ends the messages
    with its own advice (``shape_hint``, ``binary_hint``).
    """
    if output.dim() != 2 or output.shape[0] != n:
        raise SISValueError(
            f"The model passed to {caller} must return logits of shape (batch, classes) = ({n}, C). "
            f"Got shape {tuple(output.shape)} instead.{shape_hint}"
        )
    if output.shape[1] < 2:
        raise SISValueError(
            f"The model passed to {caller} returns a single logit per example; the softmax of one logit is "
            f"always 1.{binary_hint}"
        )
    if not output.is_floating_point():
        raise SISTypeError(
            f"The model passed to {caller} must return floating-point logits. Got dtype {output.dtype} instead: "
            "return the raw scores of the last layer (e.g. drop a final .argmax() or .long())."
        )


def check_deterministic(first: Tensor, second: Tensor, caller: str) -> None:
    """Two forward passes of the model on the same inputs must agree (up to floating-point noise).

    A model that samples at inference (dropout applied with ``F.dropout(x, training=True)``, noise layers,
    Monte Carlo dropout) gives every masked input a random score, and backward selection would rank noise.
    """
    a, b = first.detach().double(), second.detach().double()
    if a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True):
        return
    gap = float((a - b).abs().max()) if a.shape == b.shape else float("nan")
    raise SISValueError(
        f"The model passed to {caller} is not deterministic: two forward passes on the same inputs differ (by up "
        f"to {gap:.3g} in a logit). Call model.eval(), and remove the randomness it keeps at inference (dropout "
        "called with training=True, such as F.dropout(x, training=True), noise layers, sampling); for a Monte "
        "Carlo model, average a fixed set of samples with a seeded generator inside forward()."
    )


def warn_if_probabilities(output: Tensor, caller: str, stacklevel: int = 3) -> None:
    """Warn when a model's outputs look like probabilities (rows non-negative, summing to 1), not logits.

    The default score is the softmax of the outputs: applied to probabilities it caps every confidence (at
    ``e / (e + C - 1)``, 0.23 for 10 classes), so no image would be confident.
    """
    out = output.detach().double()
    if out.dim() != 2 or out.numel() == 0 or not bool((out >= 0).all()):
        return
    if bool(torch.allclose(out.sum(dim=1), torch.ones(out.shape[0], dtype=out.dtype), atol=1e-4)):
        cap = math.e / (math.e + out.shape[1] - 1)
        warnings.warn(
            f"The model passed to {caller} seems to return probabilities (its outputs are non-negative and sum to 1 "
            "per row), not logits: the confidence is the softmax of the outputs, so the softmax would be applied "
            f"twice and every confidence stays below {cap:.2f}. Remove the final softmax layer (log-probabilities "
            "are fine too).",
            SISWarning,
            stacklevel=stacklevel,
        )


def check_model(forward_func: Callable[..., Any], inputs: tuple[Tensor, ...], caller: str) -> None:
    """Check the model's device against the inputs' and warn about training mode. Never changes the model."""
    if not callable(forward_func):
        raise SISTypeError(
            f"The `forward_func` parameter of {caller} must be callable (a model or function). "
            f"Got {type(forward_func).__name__} instead."
        )
    if isinstance(forward_func, nn.Module):
        param = next(iter(forward_func.parameters()), None)
        if param is not None and param.device != inputs[0].device:
            raise SISDeviceError(
                f"The model passed to {caller} is on {param.device} but the inputs are on {inputs[0].device}. "
                "Move the inputs (and baselines, masks) to the model's device."
            )
        warn_if_training(forward_func, caller, stacklevel=7)  # the user's call: door -> pipeline -> format_problem


def format_target(target: object, batch: int, n_classes: int | None, device: torch.device, caller: str) -> Tensor:
    """Class per example as an int64 ``(batch,)`` tensor on ``device`` (None is resolved by the caller)."""
    if isinstance(target, bool):
        raise SISTypeError(f"The `target` parameter of {caller} must be an int, a list or a tensor. Got bool.")
    if isinstance(target, int):
        tgt = torch.full((batch,), target, dtype=torch.long, device=device)
    elif isinstance(target, Tensor):
        if target.is_floating_point() or target.dim() > 1:
            raise SISValueError(
                f"The `target` parameter of {caller} must be a 0-d or 1-d integer tensor. "
                f"Got dtype {target.dtype} and shape {tuple(target.shape)} instead."
            )
        tgt = target.to(device, torch.long).reshape(-1)
    elif isinstance(target, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in target):
        tgt = torch.tensor(target, dtype=torch.long, device=device)
    else:
        raise SISTypeError(
            f"The `target` parameter of {caller} must be None, an int, a list of ints or an integer tensor "
            f"(tuple targets for multi-dimensional outputs are not supported: SIS scores a (batch, classes) "
            f"output). Got {type(target).__name__} instead."
        )
    if tgt.numel() == 1:
        tgt = tgt.expand(batch).clone()
    if tgt.numel() != batch:
        raise SISValueError(
            f"The `target` parameter of {caller} must have one entry per example ({batch}). "
            f"Got {tgt.numel()} entries instead."
        )
    if int(tgt.min()) < 0:
        raise param_error("target", caller, "made of non-negative class indices", f"the value {int(tgt.min())}")
    if n_classes is not None and int(tgt.max()) >= n_classes:
        raise SISValueError(
            f"The `target` parameter of {caller} must hold class indices in [0, {n_classes - 1}]. "
            f"Got values from {int(tgt.min())} to {int(tgt.max())} instead."
        )
    return tgt


def format_images(images: object, caller: str, param: str = "images", *, four_d: bool = True) -> Tensor:
    """A non-empty, finite, floating-point batch: ``(N, C, H, W)``, or any ``(N, ...)`` with ``four_d=False``."""
    shape = "(N, C, H, W)" if four_d else "(N, ...)"
    if not isinstance(images, Tensor):
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a float tensor of shape {shape}. "
            f"Got {type(images).__name__} instead."
        )
    if images.dim() != 4 if four_d else images.dim() < 2:
        raise param_error(param, caller, f"a tensor of shape {shape}", f"shape {tuple(images.shape)}")
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
    fraction = as_scalar(fraction)
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
    if isinstance(thresholds, Tensor) and thresholds.dim() == 1:
        thresholds = thresholds.tolist()
    if isinstance(thresholds, np.ndarray) and thresholds.ndim == 1:
        thresholds = thresholds.tolist()
    thresholds = as_scalar(thresholds)
    if isinstance(thresholds, (int, float)) and not isinstance(thresholds, bool):
        thresholds = (thresholds,)
    if not isinstance(thresholds, Sequence) or isinstance(thresholds, str) or len(thresholds) == 0:
        raise SISTypeError(
            f"The `thresholds` parameter of {caller} must be a non-empty sequence of numbers in (0, 1]. "
            f"Got {thresholds!r} instead."
        )
    out = []
    for t in map(as_scalar, thresholds):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0.0 < float(t) <= 1.0):
            raise param_error("thresholds", caller, "a sequence of numbers in (0, 1]", f"the entry {t!r}")
        out.append(float(t))
    return tuple(sorted(set(out)))


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


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); the CPU for a model without either."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def warn_if_training(model: nn.Module, caller: str, stacklevel: int = 3) -> None:
    """The one training-mode warning: a dropout or batch-norm layer in training mode (never changes the model)."""
    if any(m.training and _is_stochastic_in_training(m) for m in model.modules()):
        warnings.warn(
            f"The model passed to {caller} is in training mode: dropout or batch-norm make its outputs random "
            "(and batch norm updates its running statistics). Call model.eval() first (sis_attr never changes "
            "your model).",
            SISWarning,
            stacklevel=stacklevel,
        )


# ------------------------------------------------------------------------------------------------ image analyses
# The checks of sis_attr.overinterpretation: one batch of (N, C, H, W) images, one feature mask shared by all
# images, one baseline broadcastable to the images.


def format_image_feature_mask(feature_mask: object, image_shape: tuple[int, int, int], caller: str) -> Tensor:
    """``(1, 1 or C, H, W)`` int64 CPU group ids ``0..d-1`` shared by all images of shape ``image_shape``.

    ``"pixel"`` groups the channels of a pixel (ids ``0..H*W-1``), None makes every element a feature, and a
    tensor of shape ``(H, W)``, ``(1 or C, H, W)`` or ``(1, 1 or C, H, W)`` is checked for contiguous ids.
    """
    c, h, w = image_shape
    if isinstance(feature_mask, str):
        if feature_mask != "pixel":
            raise param_error("feature_mask", caller, '"pixel", None or an integer tensor', repr(feature_mask))
        return torch.arange(h * w, dtype=torch.long).reshape(1, 1, h, w)
    if feature_mask is None:
        return torch.arange(c * h * w, dtype=torch.long).reshape(1, c, h, w)
    if not isinstance(feature_mask, Tensor):
        raise SISTypeError(
            f'The `feature_mask` parameter of {caller} must be "pixel", None or an integer tensor of group ids. '
            f"Got {type(feature_mask).__name__} instead."
        )
    if feature_mask.is_floating_point() or feature_mask.is_complex() or feature_mask.dtype == torch.bool:
        raise SISTypeError(
            f"The `feature_mask` parameter of {caller} must be an integer tensor of group ids. "
            f"Got dtype {feature_mask.dtype} instead."
        )
    m = feature_mask.detach().to("cpu", torch.long)
    while m.dim() < 4:
        m = m.unsqueeze(0)
    if not (m.dim() == 4 and m.shape[0] == 1 and m.shape[1] in (1, c) and tuple(m.shape[2:]) == (h, w)):
        raise SISValueError(
            f"The `feature_mask` parameter of {caller} must be one mask shared by all images, of shape (H, W), "
            f"(1 or C, H, W) or (1, 1 or C, H, W) with (C, H, W) = {image_shape}. "
            f"Got shape {tuple(feature_mask.shape)} instead."
        )
    ids = torch.unique(m)
    if int(ids[0]) != 0 or int(ids[-1]) != ids.numel() - 1:
        raise param_error(
            "feature_mask", caller, "made of contiguous group ids 0..n-1", f"ids from {int(ids[0])} to {int(ids[-1])}"
        )
    return m.contiguous()


def format_image_baselines(baselines: object, images: Tensor, caller: str, param: str = "baselines") -> float | Tensor:
    """A float, or a finite tensor broadcast to ``images.shape`` in the images' dtype; None means 0.0.

    The tensor keeps the baselines' device (callers move the rows they need to the model's device).
    """
    if baselines is None:
        return 0.0
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        if not math.isfinite(float(baselines)):
            raise param_error(param, caller, "finite (no NaN or inf)", repr(baselines))
        return float(baselines)
    if not isinstance(baselines, Tensor):
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be a number or a tensor broadcastable to the images. "
            f"Got {type(baselines).__name__} instead."
        )
    b = baselines.detach().to(images.dtype)
    try:
        full = torch.broadcast_to(b, images.shape)
    except RuntimeError:
        raise SISValueError(
            f"The `{param}` parameter of {caller} must be broadcastable to the images' shape "
            f"{tuple(images.shape)}. Got shape {tuple(baselines.shape)} instead."
        ) from None
    if not torch.isfinite(b).all():
        raise param_error(param, caller, "finite (no NaN or inf)", "non-finite values")
    return full


def format_renamed(value: Any, old_value: Any, *, new: str, old: str, caller: str, stacklevel: int = 3) -> Any:
    """The value of a renamed keyword: ``value``, or the deprecated ``old_value`` (None: not given), with a warning.

    Giving both is an error. The :class:`DeprecationWarning` points at the code that called ``caller`` (the
    default ``stacklevel=3`` counts this function, the public function and its caller).
    """
    if old_value is None:
        return value
    if value is not None:
        raise SISValueError(
            f"The `{old}` parameter of {caller} is the deprecated name of `{new}`: pass only `{new}`. "
            f"Got both `{old}` ({_describe(old_value)}) and `{new}` ({_describe(value)}) instead."
        )
    warnings.warn(
        f"The `{old}` parameter of {caller} is deprecated and will be removed in the next release; "
        f"pass `{new}=` instead (same meaning).",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return old_value


def _describe(value: object) -> str:
    """A short description of an argument for messages: tensors by shape, other values by repr."""
    if isinstance(value, Tensor):
        return f"tensor {value.item()!r}" if value.numel() == 1 else f"a tensor of shape {tuple(value.shape)}"
    return repr(value)


def format_proportion(value: object, caller: str, param: str) -> float:
    """A threshold or fraction in (0, 1]; a percentage (a number in (1, 100]) gets a hint in the message."""
    value = as_scalar(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1.0 < float(value) <= 100.0:
        raise param_error(param, caller, f"in (0, 1], a proportion ({float(value) / 100:g} for {value}%)", value)
    if param == "fraction":
        return format_fraction(value, caller)
    return format_threshold(value, caller, param=param)


def format_generator_or_seed(generator: object, caller: str) -> torch.Generator | None:
    """None, a :class:`torch.Generator`, or an integer seed (a new CPU generator seeded with it)."""
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise param_error("generator", caller, "None, a torch.Generator or an integer seed", type(generator).__name__)
    return generator
