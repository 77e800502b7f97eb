"""One call for the single-model overinterpretation audit of Carter et al. (Sections 4.1, 4.4; Figures 1, 2, 4-6).

:func:`audit` runs backward selection once on every image, then derives from the stored records every
single-model analysis of the paper: SIS sizes (correct vs misclassified, at several thresholds), the 5%
backward-selection and random pixel-subsets, the confidence drop and the accuracy on those subsets, where the
SIS pixels lie, and example images beside their SIS. It returns an
:class:`~sis_attr.overinterpretation.report.AuditReport` that prints a summary and saves JSON, figures and an
HTML page.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from sis_attr._core.validation import (
    format_fraction,
    format_images,
    format_labels,
    format_model,
    format_probability_thresholds,
    format_threshold,
    model_device,
    param_error,
)
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation._common import (
    dataset_tensors,
    predict_probabilities,
)
from sis_attr.overinterpretation.accuracy import subset_accuracy
from sis_attr.overinterpretation.confidence import confidence_drop
from sis_attr.overinterpretation.heatmap import location_heatmap
from sis_attr.overinterpretation.report import AuditReport, SISExamples
from sis_attr.overinterpretation.selection import SelectionResult, backward_selection
from sis_attr.overinterpretation.sis_size import DEFAULT_THRESHOLDS, sis_size_statistics
from sis_attr.overinterpretation.subsets import backselect_subsets, random_subsets

if TYPE_CHECKING:
    from sis_attr._core.gradient_backselect import AdaptiveK

__all__ = ["audit", "block_feature_mask"]


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

    Examples
    --------
    >>> block_feature_mask(4, 6, 2)[0, 0]
    tensor([[0, 0, 1, 1, 2, 2],
            [0, 0, 1, 1, 2, 2],
            [3, 3, 4, 4, 5, 5],
            [3, 3, 4, 4, 5, 5]])
    """
    caller = "block_feature_mask"
    for name, value in (("height", height), ("width", width), ("block", block)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise param_error(name, caller, "a positive integer", repr(value))
    cols = -(-width // block)
    rows = torch.arange(height).div(block, rounding_mode="floor")
    colsi = torch.arange(width).div(block, rounding_mode="floor")
    return (rows[:, None] * cols + colsi[None, :]).reshape(1, 1, height, width).long()


# ------------------------------------------------------------------------------------------------ validation
def _format_data(data: object, caller: str) -> tuple[Tensor, Tensor, tuple[str, ...] | None]:
    """``(images, labels, class names or None)`` from a LabelledImages, a tuple or a dataset."""
    names: tuple[str, ...] | None = None
    if isinstance(data, tuple) and len(data) == 3 and isinstance(data[0], Tensor):
        images, labels, raw_names = data
        if raw_names is not None:
            if isinstance(raw_names, str) or not isinstance(raw_names, Sequence):
                raise SISTypeError(
                    f"The third entry of the `data` parameter of {caller} must be a sequence of class names. "
                    f"Got {type(raw_names).__name__} instead."
                )
            names = tuple(str(n) for n in raw_names)
        data = (images, labels)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor) and not isinstance(data[1], Tensor):
        images = format_images(data[0], caller, "data")
        data = (images, format_labels(data[1], int(images.shape[0]), caller, "data"))
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor) and data[0].dim() >= 1:
        if data[0].shape[0] == 0:
            raise SISValueError(f"The `data` parameter of {caller} must hold at least one image. Got 0 images.")
    images, labels = dataset_tensors(data, caller, "data")
    return images, labels, names


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@torch.no_grad()
def _probe(model: nn.Module, images: Tensor, caller: str) -> int:
    """Run the model on two images; return its number of classes or raise an error a person can act on."""
    device = model_device(model)
    sample = images[:2].to(device)
    try:
        out = model(sample)
    except Exception as err:  # any error of the user's model on this input means the data do not fit it
        raise SISValueError(
            f"The model passed to {caller} cannot run on the data: images of shape {tuple(images.shape[1:])} "
            f"(C, H, W) raised {type(err).__name__}: {_first_line(err)}. Check that the data fit the model "
            "(channels, image size, normalisation)."
        ) from err
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != sample.shape[0]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise SISValueError(
            f"The model passed to {caller} must return logits of shape (batch, classes). On images of shape "
            f"{tuple(sample.shape)} it returned {got}."
        )
    if out.shape[1] < 2:
        raise SISValueError(
            f"The model passed to {caller} returns one logit per image; the audit needs a classifier with at least "
            "two classes (softmax confidences)."
        )
    return int(out.shape[1])


def _resolve_class_names(
    given: Sequence[str] | None, from_data: tuple[str, ...] | None, n_classes: int, caller: str
) -> tuple[str, ...]:
    if given is not None:
        if isinstance(given, str) or not isinstance(given, Sequence):
            raise SISTypeError(
                f"The `class_names` parameter of {caller} must be a sequence of strings. "
                f"Got {type(given).__name__} instead."
            )
        names = tuple(str(n) for n in given)
    else:
        names = from_data or ()
    return names + tuple(str(i) for i in range(len(names), n_classes))


def _describe_baseline(baselines: float | Tensor) -> str:
    if isinstance(baselines, Tensor):
        if baselines.numel() <= 4:
            return "[" + ", ".join(f"{v:.4g}" for v in baselines.flatten().tolist()) + "] (per channel)"
        return f"tensor of shape {tuple(baselines.shape)}"
    return f"{float(baselines):g}"


def _baseline_rows(baselines: float | Tensor, idx: Tensor, n: int) -> float | Tensor:
    """The baseline of the images ``idx`` (per-image baselines are indexed, shared ones kept)."""
    if isinstance(baselines, Tensor) and baselines.dim() == 4 and baselines.shape[0] == n and n > 1:
        return baselines[idx]
    return baselines


def _default_chunk_size(
    images: Tensor, feature_mask: object, method: str, batch_size: object, shortlist: object
) -> int:
    """Images per backward-selection call: enough to fill a batch, few enough for a live progress bar."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        return 64  # backward_selection reports the invalid batch size
    if isinstance(feature_mask, Tensor) and feature_mask.numel() > 0:
        d = int(feature_mask.max()) + 1
    elif feature_mask is None:
        d = int(images[0].numel())
    else:
        d = int(images.shape[2] * images.shape[3])
    if method == "gradient":
        per_image = shortlist if isinstance(shortlist, int) and not isinstance(shortlist, bool) and shortlist > 0 else 1
        return max(1, min(64, batch_size // per_image))
    return max(1, min(64, -(-2 * batch_size // max(1, d))))


# ------------------------------------------------------------------------------------------------ examples
def _choose_examples(
    selection: SelectionResult, labels: Tensor, threshold: float, n_examples: int, seed: int
) -> list[int]:
    """Confident, correctly classified images (confident misclassified ones if too few), one class at a time."""
    if n_examples == 0:
        return []
    confident = selection.confidences >= threshold
    correct = selection.targets == labels
    order = torch.randperm(selection.n_images, generator=torch.Generator().manual_seed(seed)).tolist()
    chosen: list[int] = []
    for pool_mask in (confident & correct, confident & ~correct):
        by_class: dict[int, list[int]] = {}
        for i in order:
            if bool(pool_mask[i]):
                by_class.setdefault(int(selection.targets[i]), []).append(i)
        while len(chosen) < n_examples and any(by_class.values()):
            for c in sorted(by_class):
                if by_class[c] and len(chosen) < n_examples:
                    chosen.append(by_class[c].pop(0))
    return sorted(chosen, key=lambda i: (int(selection.targets[i]), i))


def _examples(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    selection: SelectionResult,
    *,
    threshold: float,
    baselines: float | Tensor,
    n_examples: int,
    seed: int,
    class_names: tuple[str, ...],
    batch_size: int,
    caller: str,
) -> SISExamples:
    chosen = _choose_examples(selection, labels, threshold, n_examples, seed)
    _, h, w = selection.image_shape
    if not chosen:
        empty = images[:0].cpu()
        return SISExamples(
            indices=(),
            images=empty,
            sis_images=empty,
            sis_masks=torch.zeros(0, h, w, dtype=torch.bool),
            labels=(),
            predictions=(),
            confidences=(),
            sis_confidences=(),
            sis_sizes=(),
            threshold=threshold,
            class_names=class_names,
        )
    idx = torch.tensor(chosen, dtype=torch.long)
    sub = selection.select(idx)
    masks = sub.sis_masks(threshold)  # (n, 1 or C, H, W)
    originals = images[idx].cpu()
    base = _baseline_rows(baselines, idx, selection.n_images)
    base_t = torch.as_tensor(base, dtype=originals.dtype).cpu()
    sis_images = torch.where(masks, originals, torch.broadcast_to(base_t, originals.shape))
    probs = predict_probabilities(model, sis_images, caller, batch_size=batch_size)
    sis_conf = probs.gather(1, sub.targets.unsqueeze(1)).squeeze(1)
    sizes = sub.sis_sizes(threshold)
    return SISExamples(
        indices=tuple(chosen),
        images=originals,
        sis_images=sis_images,
        sis_masks=masks.any(dim=1),
        labels=tuple(int(v) for v in labels[idx].tolist()),
        predictions=tuple(int(v) for v in sub.targets.tolist()),
        confidences=tuple(float(v) for v in sub.confidences.tolist()),
        sis_confidences=tuple(float(v) for v in sis_conf.tolist()),
        sis_sizes=tuple(int(v) for v in sizes.tolist()),
        threshold=threshold,
        class_names=class_names,
    )


# ------------------------------------------------------------------------------------------------ audit
def audit(
    model: nn.Module,
    data: Any,
    *,
    method: Literal["exact", "gradient"] = "exact",
    threshold: float = 0.99,
    fraction: float = 0.05,
    baselines: float | Tensor = 0.0,
    feature_mask: Literal["pixel"] | Tensor | None = "pixel",
    class_names: Sequence[str] | None = None,
    thresholds: Sequence[float] | None = None,
    k: int | float | str | AdaptiveK = 1,
    shortlist: int | None = None,
    batch_size: int = 256,
    chunk_size: int | None = None,
    seed: int = 0,
    n_examples: int = 10,
    name: str = "model",
    show_progress: bool = True,
) -> AuditReport:
    """Audit one image classifier for overinterpretation (Carter et al.).

    Backward selection runs once per image on the confidence of the predicted class; every analysis is then
    derived from the stored records:

    * SIS sizes at ``threshold`` and at each of ``thresholds``, for correctly classified and misclassified
      images (Section 4.4, Figures 5, 6);
    * the ``fraction`` (5%) pixel-subsets kept by backward selection and random subsets of the same size, the
      accuracy on each and the confidence drop from full images to backward-selection subsets (Section 4.1,
      Table 1);
    * where the SIS pixels and subset pixels lie (Figures 2, 4);
    * up to ``n_examples`` confidently and correctly classified images beside their SIS, one class at a time
      (Figure 1).

    Small SIS, high accuracy on backward-selection subsets (but not on random ones) and concentrated SIS
    locations are the signs of overinterpretation the paper describes.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier mapping ``(N, C, H, W)`` images to ``(N, classes)`` logits, in eval mode (it is never changed;
        a warning is issued if dropout or batch norm is in training mode). Images follow its device.
    data : LabelledImages, (images, labels), (images, labels, class_names) or Dataset
        Images ``(N, C, H, W)`` in the model's input space and their true labels; a map-style dataset of
        ``(image, label)`` pairs also works. Every loader of :mod:`sis_attr.datasets` returns a suitable value.
    method : {"exact", "gradient"}, default "exact"
        Exact backward selection (``d (d + 1) / 2`` forward passes per image for ``d`` features) or the
        batched-gradient approximation (with ``k`` and ``shortlist``).
    threshold : float, default 0.99
        SIS confidence threshold (the paper: 0.99 on CIFAR-10).
    fraction : float, default 0.05
        Fraction of features kept in the pixel-subsets (the paper: 5%).
    baselines : float or Tensor, default 0.0
        Value of removed features, broadcastable to the images: 0 is the mean pixel of normalised data (the
        paper's choice) or black for ``[0, 1]`` images.
    feature_mask : "pixel", None or Tensor, default "pixel"
        Feature groups: ``"pixel"`` (all channels of a pixel, the paper's choice), None (every element) or
        integer group ids shared by all images (e.g. :func:`block_feature_mask`).
    class_names : sequence of str, optional
        Names indexed by class; defaults to the data's names, else ``"0"``, ``"1"``, ...
    thresholds : sequence of float, optional
        Thresholds of the SIS size statistics; default (0.9, 0.95, 0.99), with ``threshold`` always added.
    k : int, float, "adaptive" or AdaptiveK, default 1
        With ``method="gradient"``: features removed per gradient step, a fraction of the remaining features
        (e.g. 0.2), or an adaptive schedule (see :func:`~sis_attr.overinterpretation.backward_selection`).
    shortlist : int, optional
        With ``method="gradient"``: choose each removal exactly among the ``shortlist`` features the gradient
        ranks first (the gradient-screened exact hybrid).
    batch_size : int, default 256
        Masked images per forward pass.
    chunk_size : int, optional
        Images per backward-selection call (the progress bar advances per call). By default enough images to
        fill ``batch_size`` with the candidates of one step (exact: ``ceil(2 * batch_size / d)``; gradient:
        ``batch_size // shortlist``), at most 64: one image at a time for large images.
    seed : int, default 0
        Seeds the random subsets and the choice of examples.
    n_examples : int, default 10
        Example images shown beside their SIS.
    name : str, default "model"
        Name of the model in the report.
    show_progress : bool, default True
        Show a progress bar during backward selection.

    Returns
    -------
    AuditReport
        Every result; ``print(report.summary())``, ``report.save(directory)``.

    Raises
    ------
    SISValueError
        If the data are empty, do not fit the model (it raises on them), or hold labels outside the model's
        classes; or for invalid options.
    SISTypeError
        For arguments of the wrong type.

    References
    ----------
    .. [1] B. Carter, S. Jain, J. Mueller, D. Gifford, "Overinterpretation reveals image classification model
       pathologies", NeurIPS 2021.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.testing import TinyConvNet
    >>> model = TinyConvNet(in_channels=1, classes=3)
    >>> images = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> labels = model(images).argmax(dim=1)
    >>> report = audit(model, (images, labels), threshold=0.4, fraction=0.25, show_progress=False)
    >>> report.n_images, report.n_features, report.accuracy, report.subset_features
    (6, 16, 1.0, 4)
    >>> print(report.summary().splitlines()[0])
    Overinterpretation audit: model
    """
    caller = "audit"
    model = format_model(model, caller)
    images, labels, data_names = _format_data(data, caller)
    t = format_threshold(threshold, caller)
    f = format_fraction(fraction, caller)
    grid = format_probability_thresholds(DEFAULT_THRESHOLDS if thresholds is None else thresholds, caller)
    grid = tuple(sorted({*grid, t}))
    for pname, value, low in (("seed", seed, 0), ("n_examples", n_examples, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise param_error(pname, caller, "a non-negative integer", repr(value))
    if not isinstance(name, str):
        raise SISTypeError(f"The `name` parameter of {caller} must be a string. Got {type(name).__name__} instead.")
    if not isinstance(show_progress, bool):
        raise SISTypeError(f"The `show_progress` parameter of {caller} must be a bool. Got {show_progress!r}.")

    n_classes = _probe(model, images, caller)
    if int(labels.max()) >= n_classes:
        raise SISValueError(
            f"The labels in the `data` passed to {caller} must be class indices of the model, in [0, {n_classes - 1}] "
            f"(the model has {n_classes} outputs). Got labels up to {int(labels.max())} instead."
        )
    names = _resolve_class_names(class_names, data_names, n_classes, caller)

    if chunk_size is None:
        chunk_size = _default_chunk_size(images, feature_mask, method, batch_size, shortlist)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    selection = backward_selection(
        model,
        images,
        method=method,
        baselines=baselines,
        feature_mask=feature_mask,
        k=k,
        shortlist=shortlist,
        batch_size=batch_size,
        chunk_size=chunk_size,
        show_progress=show_progress,
    )
    timings["backward selection"] = time.perf_counter() - start

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = sis_size_statistics(selection, labels, thresholds=grid)
        bs_subsets = backselect_subsets(images, selection, fraction=f, labels=labels, baseline=baselines)
        random = random_subsets(
            images, labels=labels, fraction=f, feature_mask=selection.feature_mask, generator=seed, baseline=baselines
        )
        drop = confidence_drop(model, images, bs_subsets, batch_size=batch_size)
        accuracy = subset_accuracy(model, images, labels, backselect=bs_subsets, random=random, batch_size=batch_size)
        confident = bool((selection.confidences >= t).any())
        heatmap = location_heatmap(selection, threshold=t) if confident else None
        subset_heatmap = location_heatmap(bs_subsets)
        examples = _examples(
            model,
            images,
            labels,
            selection,
            threshold=t,
            baselines=baselines,
            n_examples=n_examples,
            seed=seed,
            class_names=names,
            batch_size=batch_size,
            caller=caller,
        )
    seen: list[tuple[type[Warning], str]] = []
    for w in caught:  # the same warning arises in several analyses: issue each once, and keep it in the report
        key = (w.category, str(w.message))
        if key not in seen:
            seen.append(key)
            warnings.warn(w.message, w.category, stacklevel=2)
    timings["analyses"] = time.perf_counter() - start

    if feature_mask == "pixel":
        features = "pixels"
    elif feature_mask is None:
        features = "elements"
    else:
        features = "feature groups"
    settings: dict[str, Any] = {
        "model": type(model).__name__,
        "method": selection.method,
        "features": features,
        "baseline": _describe_baseline(baselines),
        "thresholds": list(grid),
        "seed": seed,
        "batch_size": batch_size,
        "device": str(model_device(model)),
    }
    if selection.method == "gradient":
        settings.update(k=k, shortlist=shortlist)
    return AuditReport(
        name=name,
        selection=selection,
        sis_sizes=stats,
        confidence=drop,
        subset_accuracy=accuracy,
        heatmap=heatmap,
        subset_heatmap=subset_heatmap,
        examples=examples,
        labels=labels,
        threshold=t,
        fraction=f,
        class_names=names,
        settings=settings,
        timings=timings,
        notes=tuple(f"{category.__name__}: {message}" for category, message in seen),
    )
