"""One call for the single-model overinterpretation audit of Carter et al. (Sections 4.1, 4.4; Figures 1, 2, 4-6).

:func:`audit` validates its arguments once, runs the model once on the full images and backward selection once
on every image, then derives from the stored records every single-model analysis of the paper: SIS sizes
(correct vs misclassified, at several thresholds) and the mean SIS size curve, the 5% backward-selection and
random pixel-subsets, the confidence drop and the accuracy on those subsets, where the SIS pixels lie, and
example images beside their SIS. It calls the private implementations of the analyses (the public functions
validate, then call the same implementations) and returns an
:class:`~sis_attr.overinterpretation.report.AuditReport`, which only renders what was computed here.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from sis_attr._core.feature_masks import block_feature_mask as block_feature_mask  # importable here, as before
from sis_attr._core.methods import DEFAULT_K, GradientMethod, Method, format_method
from sis_attr._core.validation import (
    format_flag,
    format_image_feature_mask,
    format_images,
    format_labels,
    format_model,
    format_non_negative_int,
    format_optional_positive_int,
    format_probability_thresholds,
    format_proportion,
    format_string,
    model_device,
    param_error,
    warn_if_training,
)
from sis_attr.exceptions import SISTypeError, SISValueError, SISWarning
from sis_attr.overinterpretation._common import check_logits, predict_probabilities, raw_dataset_tensors, subset_size
from sis_attr.overinterpretation._sources import Source, TensorSource, format_source, shard_bounds
from sis_attr.overinterpretation._store import ShardStore, model_sha256
from sis_attr.overinterpretation.accuracy import _subset_accuracy
from sis_attr.overinterpretation.confidence import _confidence_drop
from sis_attr.overinterpretation.heatmap import LocationHeatmap, _sis_heatmap
from sis_attr.overinterpretation.leakage import MaskShapeLeakage, _donors, _random_positions
from sis_attr.overinterpretation.report import AuditReport, SISExamples
from sis_attr.overinterpretation.selection import (
    SelectionResult,
    _check_model,
    _default_shard_size,
    _execute,
    _format_backend,
    _format_baselines_for,
    _format_checkpoint,
    _format_scores_dtype,
    _load_store,
    _probe,
    _Run,
    _ShardTask,
)
from sis_attr.overinterpretation.sis_size import DEFAULT_THRESHOLDS, _mean_sis_size_curve, _sis_size_statistics
from sis_attr.overinterpretation.smoothing import SmoothedSIS, _smoothing_masks
from sis_attr.overinterpretation.subsets import _backselect_subsets, _random_subsets

if TYPE_CHECKING:
    from sis_attr._core.schedule import AdaptiveK, AutoK

__all__ = ["audit"]


# ------------------------------------------------------------------------------------------------ validation
def _format_audit_data(data: object, caller: str) -> tuple[Source, Tensor | None, tuple[str, ...] | None]:
    """``(source, images or None, class names or None)``: images and labels in memory (a LabelledImages, a tuple, a
    dataset holding ``images``/``labels`` tensors), validated once; or a Dataset/DataLoader read block by block."""
    names: tuple[str, ...] | None = None
    if isinstance(data, Tensor):
        raise SISTypeError(
            f"The `data` parameter of {caller} must hold the true labels with the images: (images, labels), a "
            f"LabelledImages or a dataset of (image, label) pairs. Got a tensor of shape {tuple(data.shape)} alone "
            "instead."
        )
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
    if isinstance(data, tuple) and len(data) == 1 and isinstance(data[0], Tensor):
        raise SISTypeError(
            f"The `data` parameter of {caller} must hold the true labels with the images: (images, labels). Got "
            "(images,) alone instead."
        )
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        raw_images, raw_labels = data
    else:
        source = format_source(data, caller, "data", labels=True)
        if source is not None:
            return source, None, names
        raw_images, raw_labels = raw_dataset_tensors(data, caller, "data")
    if isinstance(raw_images, Tensor) and raw_images.dim() >= 1 and raw_images.shape[0] == 0:
        raise SISValueError(f"The `data` parameter of {caller} must hold at least one image. Got 0 images.")
    images = format_images(raw_images, caller, "data")
    labels = format_labels(raw_labels, int(images.shape[0]), caller, "data")
    return TensorSource(images, labels, caller, "data"), images, names


def _format_data(data: object, caller: str) -> tuple[Tensor, Tensor, tuple[str, ...] | None]:
    """``(images, labels, class names or None)`` in memory, validated once (a dataset is read whole)."""
    names: tuple[str, ...] | None = None
    if isinstance(data, Tensor):
        raise SISTypeError(
            f"The `data` parameter of {caller} must hold the true labels with the images: (images, labels), a "
            f"LabelledImages or a dataset of (image, label) pairs. Got a tensor of shape {tuple(data.shape)} alone "
            "instead."
        )
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
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        raw_images, raw_labels = data
    else:
        raw_images, raw_labels = raw_dataset_tensors(data, caller, "data")
    if isinstance(raw_images, Tensor) and raw_images.dim() >= 1 and raw_images.shape[0] == 0:
        raise SISValueError(f"The `data` parameter of {caller} must hold at least one image. Got 0 images.")
    images = format_images(raw_images, caller, "data")
    return images, format_labels(raw_labels, int(images.shape[0]), caller, "data"), names


def _format_class_names(given: object, caller: str) -> tuple[str, ...] | None:
    if given is None:
        return None
    if isinstance(given, str) or not isinstance(given, Sequence):
        raise SISTypeError(
            f"The `class_names` parameter of {caller} must be a sequence of strings. "
            f"Got {type(given).__name__} instead."
        )
    return tuple(str(n) for n in given)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@torch.no_grad()
def _full_image_probabilities(model: nn.Module, images: Tensor, *, batch_size: int, caller: str) -> Tensor:
    """The one pass over the full images: ``(N, classes)`` softmax probabilities (float64, CPU).

    An error of the model on the first batch means the data do not fit it: it becomes an error a person can act on.
    """
    first = images[:batch_size].to(model_device(model))
    try:
        logits = model(first)
    except Exception as err:  # any error of the user's model on this input means the data do not fit it
        raise SISValueError(
            f"The model passed to {caller} cannot run on the data: images of shape {tuple(images.shape[1:])} "
            f"(C, H, W) raised {type(err).__name__}: {_first_line(err)}. Check that the data fit the model "
            "(channels, image size, normalisation)."
        ) from err
    check_logits(logits, first, caller)
    probs = [torch.softmax(logits.detach().double(), dim=1).cpu()]
    if images.shape[0] > batch_size:
        probs.append(predict_probabilities(model, images[batch_size:], caller, batch_size=batch_size))
    return torch.cat(probs)


def _describe_baseline(baselines: object) -> str:
    if isinstance(baselines, Tensor):
        if baselines.numel() <= 4:
            return "[" + ", ".join(f"{v:.4g}" for v in baselines.flatten().tolist()) + "] (per channel)"
        return f"tensor of shape {tuple(baselines.shape)}"
    return f"{float(baselines):g}" if isinstance(baselines, (int, float)) else "0"


def _default_chunk_size(impl: Method, n_features: int) -> int:
    """Images per backward-selection call: enough to fill a batch, few enough for a live progress bar."""
    if isinstance(impl, GradientMethod):
        return max(1, min(64, impl.initial_batch_size() // (impl.shortlist or 1)))
    return max(1, min(64, -(-2 * impl.initial_batch_size() // max(1, n_features))))


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
    source: Source,
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
    """The examples beside their SIS; ``sis_masks`` are ``(n, H, W)`` (any channel kept), ready for ``imshow``."""
    chosen = _choose_examples(selection, labels, threshold, n_examples, seed)
    _, h, w = selection.image_shape
    if not chosen:
        empty = torch.zeros(0, *source.image_shape)
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
    masks = sub._sis_masks(threshold, warn=False)  # (n, 1 or C, H, W); warned about by the SIS statistics
    originals = _take(source, chosen).cpu()
    base = baselines if isinstance(baselines, float) else baselines[idx].cpu()
    sis_images = torch.where(masks, originals, base)
    probs = predict_probabilities(model, sis_images, caller, batch_size=batch_size)
    sis_conf = probs.gather(1, sub.targets.unsqueeze(1)).squeeze(1)
    sizes = sub._sis_sizes(threshold, warn=False)
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


def _take(source: Source, indices: list[int]) -> Tensor:
    """The images at ``indices`` (sorted, distinct): indexed in memory, else read block by block."""
    if isinstance(source, TensorSource):
        return source.images[torch.tensor(indices, dtype=torch.long)]
    wanted = set(indices)
    bounds = [(i, i + 1) for i in indices] if hasattr(source, "dataset") else shard_bounds(source.n, 256)
    found: dict[int, Tensor] = {}
    for (start, _stop), (images, _) in zip(bounds, source.blocks(bounds), strict=True):
        for j in range(images.shape[0]):
            if start + j in wanted:
                found[start + j] = images[j]
        if len(found) == len(wanted):
            break
    return torch.stack([found[i] for i in indices])


def _format_selection(
    selection: object, source: Source, feature_mask: Tensor, model: nn.Module, caller: str
) -> tuple[SelectionResult, Tensor | None]:
    """A finished selection for these data (a SelectionResult or a checkpoint directory) and, from a checkpoint,
    the full-image probabilities it stored."""
    probs: Tensor | None = None
    if isinstance(selection, (str, os.PathLike)):
        store = ShardStore.existing(selection, caller)
        stored = store.identity.get("model", {}).get("state_dict_sha256")
        if stored != model_sha256(model):
            raise SISValueError(
                f"The `selection` passed to {caller} ({str(selection)!r}) was computed with another model (its "
                "state-dict hash differs). Pass the model it was computed with, or compute a new selection."
            )
        sel, probs = _load_store(store, caller)
    elif isinstance(selection, SelectionResult):
        sel = selection
    else:
        raise SISTypeError(
            f"The `selection` parameter of {caller} must be None, a SelectionResult or the checkpoint directory of "
            f"a finished run. Got {type(selection).__name__} instead."
        )
    if sel.n_images != source.n or tuple(sel.image_shape) != tuple(source.image_shape):
        raise SISValueError(
            f"The `selection` passed to {caller} must be computed on the audited images: {source.n} images of shape "
            f"{source.image_shape}. Got a selection of {sel.n_images} images of shape {sel.image_shape} instead."
        )
    if tuple(sel.feature_mask.shape) != tuple(feature_mask.shape) or not torch.equal(sel.feature_mask, feature_mask):
        raise SISValueError(
            f"The `feature_mask` of {caller} must be the one the `selection` was computed with "
            "(SelectionResult.feature_mask): the random subsets are drawn over the same features."
        )
    return sel, probs


def _check_targets(selection: SelectionResult, probs: Tensor, caller: str) -> None:
    """The selection must explain the model's predictions on these images (another model or data otherwise)."""
    differ = int((selection.targets != probs.argmax(dim=1)).sum())
    if not differ:
        return
    message = (
        f"The `selection` passed to {caller} explains other classes than the model predicts on {differ} of "
        f"{selection.n_images} images"
    )
    if differ > max(1, selection.n_images // 100):
        raise SISValueError(f"{message}: it was computed with another model or other data.")
    warnings.warn(f"{message} (near-ties, or another device).", SISWarning, stacklevel=4)


# ------------------------------------------------------------------------------------------------ audit
def audit(
    model: nn.Module,
    data: Any,
    *,
    method: Literal["exact", "gradient"] = "gradient",
    threshold: float = 0.99,
    fraction: float = 0.05,
    baselines: float | Tensor | None = 0.0,
    feature_mask: Literal["pixel"] | Tensor | None = "pixel",
    class_names: Sequence[str] | None = None,
    thresholds: Sequence[float] | None = None,
    k: int | float | str | AdaptiveK | AutoK = DEFAULT_K,
    shortlist: int | None = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    seed: int = 0,
    ties: Literal["random", "lowest"] = "random",
    n_examples: int = 10,
    name: str = "model",
    selection: SelectionResult | str | os.PathLike[str] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    shard_size: int | None = None,
    scores_dtype: Literal["float64", "float32", "float16"] = "float32",
    backend: Literal["local", "ray"] = "local",
    show_progress: bool = True,
    controls: bool = True,
) -> AuditReport:
    """Audit one image classifier for overinterpretation (Carter et al.).

    The arguments are validated once and the model runs once on the full images (its predictions, their
    confidences and the full-image side of every analysis come from that pass). Backward selection then runs
    once per image on the confidence of the predicted class, and every analysis is derived from the stored
    records:

    * SIS sizes at ``threshold`` and at each of ``thresholds``, for correctly classified and misclassified
      images, and the mean SIS size curve over those thresholds (Section 4.4, Figures 5, 6);
    * the ``fraction`` (5%) pixel-subsets kept by backward selection and random subsets of the same size, the
      accuracy on each and the confidence drop from full images to backward-selection subsets (Section 4.1,
      Table 1);
    * where the SIS pixels and subset pixels lie (Figures 2, 4);
    * up to ``n_examples`` confidently and correctly classified images beside their SIS, one class at a time
      (Figure 1);
    * with ``controls``, two controls its critics asked for, on the same subsets and SIS:
      :func:`~sis_attr.overinterpretation.mask_shape_leakage` (the accuracy when each ``fraction`` subset's
      positions hold another image's pixels or one colour: does the subsets' *shape* carry the class?) and
      :func:`~sis_attr.overinterpretation.smoothed_sis` (the confidence on each SIS dilated by one pixel and on
      same-size random sets: is the SIS a fragile, adversarial-like pattern?).

    Small SIS, high accuracy on backward-selection subsets (but not on random ones) and concentrated SIS
    locations are the signs of overinterpretation the paper describes.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier mapping ``(N, C, H, W)`` images to ``(N, classes)`` logits, in eval mode (it is never changed;
        a warning is issued if dropout or batch norm is in training mode). Images follow its device.
    data : LabelledImages, (images, labels), (images, labels, class_names), Dataset or DataLoader
        Images ``(N, C, H, W)`` in the model's input space and their true labels. Every loader of
        :mod:`sis_attr.datasets` returns a suitable value. A map-style :class:`~torch.utils.data.Dataset` of
        ``(image, label)`` pairs, or a :class:`~torch.utils.data.DataLoader` over one in a fixed order, is read
        one block of images at a time, so memory follows the shard, not the data set (a dataset holding
        ``images`` and ``labels`` tensors without a ``transform`` is used as those tensors).
    method : {"exact", "gradient"}, default "gradient"
        ``"gradient"``: batched-gradient selection with ``k`` (by default the automatic schedule, ``k="auto"``:
        about 660 forward-equivalents and 0.5 s per 32x32 CIFAR-10 image for a ResNet20 on one CPU core).
        ``"exact"``: the paper's exact BackSelect, ``d (d + 1) / 2`` forward passes per image for ``d`` features:
        524,800 for a 32x32 image with per-pixel features (5-8 minutes per image for a ResNet20 on a CPU core);
        group pixels with ``feature_mask`` (:func:`block_feature_mask`) to make it affordable. On ResNet20 and
        real CIFAR-10 images the automatic schedule's SIS were 0.74x the size of exact ones with 2x2-pixel
        features and 0.74x with single pixels (``benchmarks/bench_sis_schedule.py``): smaller, so compare SIS
        sizes only between runs of the same method. The report states the measured ratio of the settings used,
        and the documentation's "Choosing parameters" page has the frontier and run times.
    threshold : float, default 0.99
        SIS confidence threshold (the paper: 0.99 on CIFAR-10).
    fraction : float, default 0.05
        Fraction of features kept in the pixel-subsets (the paper: 5%).
    baselines : float or Tensor, default 0.0
        Value of removed features, broadcastable to the images: 0 is the mean pixel of normalised data (the
        paper's choice) or black for ``[0, 1]`` images. None means 0, as in Captum.
    feature_mask : "pixel", None or Tensor, default "pixel"
        Feature groups: ``"pixel"`` (all channels of a pixel, the paper's choice), None (every element) or
        integer group ids shared by all images (e.g. :func:`block_feature_mask`).
    class_names : sequence of str, optional
        Names indexed by class; defaults to the data's names, else ``"0"``, ``"1"``, ...
    thresholds : sequence of float, optional
        Thresholds of the SIS size statistics and curve; default (0.9, 0.95, 0.99), with ``threshold`` always
        added. Empty SIS (the baseline alone reaches a threshold) are warned about at ``threshold`` and at the
        ``thresholds`` you pass, not at the default ones.
    k : int, float, "adaptive", "auto", AdaptiveK or AutoK, default "auto"
        With ``method="gradient"``: features removed per gradient step, a fraction of the remaining features
        (e.g. 0.2), or a schedule (see :func:`~sis_attr.overinterpretation.backward_selection`); ``"adaptive"``
        and ``"auto"`` steer by ``threshold``.
    shortlist : int, optional
        With ``method="gradient"``: choose each removal exactly among the ``shortlist`` features the gradient
        ranks first (the gradient-screened exact hybrid); with ``k="auto"``, the single additions screened per
        forward step (None: 32).
    batch_size : int, optional
        Images per forward pass (masked images during backward selection); None measures the fastest on the
        first chunk (cached per model, shape and device).
    chunk_size : int, optional
        Images per backward-selection call (the progress bar advances per call). By default enough images to
        fill ``batch_size`` with the candidates of one step (exact: ``ceil(2 * batch_size / d)``; gradient:
        ``batch_size // shortlist``), at most 64: one image at a time for large images.
    seed : int, default 0
        Seeds the random subsets, the choice of examples and the random tie-breaking.
    ties : {"random", "lowest"}, default "random"
        How backward selection breaks ties between equal scores (and equal gradients). ``"random"``: in a random
        order of each image's features drawn from ``seed`` and the image (``backward_selection(generator=seed)``).
        ``"lowest"``: the lowest feature id first, the rule of the paper's exact BackSelect; on a model that
        ignores many pixels they all tie, the pixels kept to the end are then the bottom-right ones, and the
        subsets and heatmaps show a border the model does not use.
    n_examples : int, default 10
        Example images shown beside their SIS.
    name : str, default "model"
        Name of the model in the report.
    selection : SelectionResult or path, optional
        A finished backward selection of these images (a :class:`SelectionResult`, or the ``checkpoint_dir`` of
        a finished run): the report is rebuilt from it without running backward selection again. It must have
        been computed with this model (checked) and ``feature_mask``.
    checkpoint_dir : str or os.PathLike, optional
        Directory where backward selection writes each finished shard; rerunning the same audit with it skips
        the finished shards (see :func:`~sis_attr.overinterpretation.backward_selection`).
    shard_size : int, optional
        Images per shard (checkpoint unit, Ray task, block of streamed data); default: the smallest multiple of
        ``chunk_size`` holding at least 64 images.
    scores_dtype : {"float32", "float16", "float64"}, default "float32"
        Precision of the scores stored in ``checkpoint_dir``.
    backend : {"local", "ray"}, default "local"
        ``"ray"``: backward selection runs each shard as a Ray task (``pip install 'sis-attr[ray]'``; see
        :doc:`/howto_scale_out`).
    show_progress : bool, default True
        Show a progress bar during backward selection (images done, rate and time left).
    controls : bool, default True
        Add the mask-shape leakage and smoothed-SIS controls to the report (``report.mask_shape_leakage``,
        ``report.smoothed_sis``), each with what to conclude from it. They give the numbers of
        :func:`~sis_attr.overinterpretation.mask_shape_leakage` ``(model, images, labels, selection,
        fraction=fraction, baselines=baselines, generator=seed)`` and
        :func:`~sis_attr.overinterpretation.smoothed_sis` ``(model, images, selection, threshold=threshold,
        baselines=baselines, generator=seed)``, computed a block of images at a time: the images are read once
        more (a streamed data set too) and the model runs seven more times per image (three leakage
        conditions, four smoothed sets), a small cost beside backward selection (about 7 ms per CIFAR-10 image
        for a ResNet20 on a CPU core). Leakage needs at least two images and a mean kept colour that differs
        from the baseline; otherwise it is left out with a warning.

    Returns
    -------
    AuditReport
        Every result; ``print(report.summary())``, ``report.save(directory)``.

    Raises
    ------
    SISValueError
        If the data are empty, do not fit the model (it raises on the first batch, or does not return
        ``(batch, classes)`` logits with at least two classes), or hold labels outside the model's classes; if
        the model is not deterministic (two identical forward passes differ); if ``checkpoint_dir`` holds
        results of another model, data set, method or parameters; or for invalid options (a ``threshold`` or
        ``fraction`` outside (0, 1]: a probability, 0.99 rather than 99).
    SISTypeError
        For arguments of the wrong type.

    Warns
    -----
    SISWarning
        Once, if the model is in training mode (dropout or batch norm; it is never changed), or if its outputs
        look like probabilities rather than logits (the softmax would be applied twice); with ``controls``, if
        mask-shape leakage cannot be measured (a single image, or kept pixels whose mean colour is the baseline).
    UninformativeBaselineWarning
        If some SIS at ``threshold`` (or at the ``thresholds`` you pass) are empty. Warnings are also kept in
        ``report.notes``.

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
    >>> for line in report.summary().splitlines()[1:4]:  # doctest: +NORMALIZE_WHITESPACE
    ...     print(line)
      images                        6 of 1x4x4, 16 pixels
      method                        gradient backward selection (k=auto), baseline 0
      accuracy (full images)        100.0%
    >>> report.verdict()["level"]  # what the numbers mean, with the paper's reference values and caveats
    'no sign'
    """
    caller = "audit"
    # ---- validate every argument once
    model = format_model(model, caller)
    source, images, data_names = _format_audit_data(data, caller)
    t = format_proportion(threshold, caller, "threshold")
    f = format_proportion(fraction, caller, "fraction")
    asked = (t,) if thresholds is None else (t, *format_probability_thresholds(thresholds, caller))
    grid = tuple(sorted({*(DEFAULT_THRESHOLDS if thresholds is None else asked), t}))
    seed = format_non_negative_int(seed, "seed", caller)
    n_examples = format_non_negative_int(n_examples, "n_examples", caller)
    name = format_string(name, "name", caller)
    show_progress = format_flag(show_progress, "show_progress", caller)
    controls = format_flag(controls, "controls", caller)
    given_names = _format_class_names(class_names, caller)
    if ties not in ("random", "lowest"):
        raise param_error("ties", caller, 'one of "random" or "lowest"', repr(ties))
    impl = format_method(
        method,
        k=k,
        shortlist=shortlist,
        batch_size=batch_size,
        caller=caller,
        generator=seed if ties == "random" else None,
    )
    chunk = format_optional_positive_int(chunk_size, "chunk_size", caller)
    shard = format_optional_positive_int(shard_size, "shard_size", caller)
    fmask = format_image_feature_mask(feature_mask, source.image_shape, caller)
    base = _format_baselines_for(baselines, source, images, caller)
    n_features = int(fmask.max()) + 1
    chunk = chunk if chunk is not None else _default_chunk_size(impl, n_features)
    shard = shard if shard is not None else _default_shard_size(chunk)
    run = _Run(
        model=model,
        source=source,
        task=_ShardTask(
            impl=impl,
            feature_mask=fmask,
            threshold=t if isinstance(impl, GradientMethod) else None,  # steers an adaptive or automatic k
            chunk_size=chunk,
            caller=caller,
        ),
        method=str(method),
        baselines=base,
        targets=None,
        shard_size=shard,
        scores_dtype=_format_scores_dtype(scores_dtype, caller),
        checkpoint_dir=_format_checkpoint(checkpoint_dir, caller),
        backend=_format_backend(backend, caller),
        show_progress=show_progress,
    )
    device = model_device(model)
    notes: list[tuple[type[Warning], str]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_training(model, caller, stacklevel=2)
        # ---- the model check: it runs on the data, returns logits, twice the same
        n_classes = _check_model(model, _probe(source, base).to(device), caller)
    _reissue(caught, notes)
    known_labels = source.labels if isinstance(source, TensorSource) else None
    if known_labels is not None:
        _check_labels(known_labels, n_classes, caller)
    given: tuple[SelectionResult, Tensor | None] | None = None
    if selection is not None:
        if checkpoint_dir is not None:
            raise SISValueError(
                f"Pass either `selection` (a finished backward selection) or `checkpoint_dir` to {caller}, not both."
            )
        given = _format_selection(selection, source, fmask, model, caller)

    # ---- backward selection once per image: targets, confidences and the full-image probabilities
    timings: dict[str, float] = {}
    start = time.perf_counter()
    known_probs: Tensor | None
    if given is None:
        sel, known_probs = _execute(run, f"Backward selection ({method})")
    else:
        sel, known_probs = given
    timings["backward selection"] = time.perf_counter() - start

    # ---- the analyses, from the records, block by block over the images
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        blocks = _analysis_pass(model, run, sel, known_probs, f, seed, caller)
        labels = known_labels if known_labels is not None else blocks.labels
        probs = blocks.probs
        if given is not None:
            _check_targets(sel, probs, caller)
        known = given_names if given_names is not None else data_names or ()
        names = known + tuple(str(i) for i in range(len(known), n_classes))
        stats = _sis_size_statistics(sel, labels, grid, warn_at=asked)
        drop = _confidence_drop(probs, blocks.backselect)
        accuracy = _subset_accuracy(probs, labels, backselect=blocks.backselect, random=blocks.random)
        confident = bool((sel.confidences >= t).any())
        heatmap = _sis_heatmap(sel, t, warn=False) if confident else None
        subset_heatmap = LocationHeatmap(
            frequency=blocks.subset_counts / sel.n_images, n_images=sel.n_images, fraction=None, threshold=None
        )
        curve = _mean_sis_size_curve({name: sel}, grid, {name: accuracy.full}, warn=False)
        examples = _examples(
            model,
            source,
            labels,
            sel,
            threshold=t,
            baselines=base,
            n_examples=n_examples,
            seed=seed,
            class_names=names,
            batch_size=impl.initial_batch_size(),
            caller=caller,
        )
    _reissue(caught, notes)
    timings["analyses"] = time.perf_counter() - start

    # ---- the controls beyond the paper, on the same subsets and SIS
    leakage: MaskShapeLeakage | None = None
    smoothed: SmoothedSIS | None = None
    if controls:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            leakage, smoothed = _controls_pass(model, run, sel, labels, probs, blocks.backselect, f, t, seed, caller)
        _reissue(caught, notes)
        timings["controls"] = time.perf_counter() - start

    if isinstance(feature_mask, str):
        features = "pixels"
    elif feature_mask is None:
        features = "elements"
    else:
        features = "feature groups"
    settings: dict[str, Any] = {
        "model": type(model).__name__,
        "method": sel.method,
        "features": features,
        "baseline": _describe_baseline(baselines),
        "thresholds": list(grid),
        "seed": seed,
        "ties": f"random (seed {seed})" if ties == "random" else "lowest feature id",
        "controls": "mask-shape leakage, smoothed SIS" if controls else "off",
        "batch_size": impl.batch_size if impl.batch_size is not None else "measured",
        "device": str(device),
    }
    if sel.method == "gradient":
        settings.update(k=k, shortlist=shortlist)
    if run.backend != "local":
        settings["backend"] = run.backend
    return AuditReport(
        name=name,
        selection=sel,
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
        notes=tuple(f"{category.__name__}: {message}" for category, message in notes),
        sis_size_curve=curve,
        mask_shape_leakage=leakage,
        smoothed_sis=smoothed,
    )


def _check_labels(labels: Tensor, n_classes: int, caller: str) -> None:
    if labels.numel() and int(labels.max()) >= n_classes:
        raise SISValueError(
            f"The labels in the `data` passed to {caller} must be class indices of the model, in [0, {n_classes - 1}] "
            f"(the model has {n_classes} outputs). Got labels up to {int(labels.max())} instead."
        )


@dataclass(frozen=True)
class _Blocks:
    """What the analysis pass over the images collects (everything per image is a scalar or a probability row)."""

    labels: Tensor
    probs: Tensor
    backselect: Tensor
    random: Tensor
    subset_counts: Tensor


@torch.no_grad()
def _analysis_pass(
    model: nn.Module,
    run: _Run,
    selection: SelectionResult,
    probs: Tensor | None,
    fraction: float,
    seed: int,
    caller: str,
) -> _Blocks:
    """One pass over the images, a block at a time: the model on the backward-selection and random subsets (and
    on the full images if ``probs`` is None), the labels, and how often each position is in a subset.

    Blocks hold a multiple of ``batch_size`` images, so the forward passes see the batches a single pass would.
    """
    source = run.source
    batch_size = run.task.impl.initial_batch_size()
    block = batch_size * max(1, math.ceil(run.shard_size / batch_size))
    generator = torch.Generator().manual_seed(seed)  # drawn block after block: the same draws as all at once
    fmask = run.task.feature_mask
    labels, full, bs, rnd = [], [], [], []
    counts = torch.zeros(selection.image_shape[1:], dtype=torch.float64)
    bounds = shard_bounds(source.n, block)
    for (start, stop), (images, block_labels) in zip(bounds, source.blocks(bounds), strict=True):
        if block_labels is None:  # a TensorSource holds them
            raise RuntimeError("the audit's data source yields no labels")
        base = run.shard_baselines(start, stop)
        base = base if isinstance(base, float) else torch.broadcast_to(base, images.shape)
        if probs is None:
            p = predict_probabilities(model, images, caller, batch_size=batch_size)
            _check_labels(block_labels, int(p.shape[1]), caller)
            full.append(p)
        elif not isinstance(source, TensorSource):
            _check_labels(block_labels, int(probs.shape[1]), caller)
        part = selection.select(torch.arange(start, stop))
        subsets = _backselect_subsets(images, part, fraction, block_labels, base)
        random = _random_subsets(images, block_labels, fraction, fmask, generator, base)
        bs.append(predict_probabilities(model, subsets.images, caller, batch_size=batch_size))
        rnd.append(predict_probabilities(model, random.images, caller, batch_size=batch_size))
        counts += subsets.keep_masks.any(dim=1).double().sum(dim=0)
        labels.append(block_labels)
    return _Blocks(
        labels=torch.cat(labels),
        probs=probs if probs is not None else torch.cat(full),
        backselect=torch.cat(bs),
        random=torch.cat(rnd),
        subset_counts=counts,
    )


def _reissue(caught: list[warnings.WarningMessage], notes: list[tuple[type[Warning], str]]) -> None:
    """Issue each recorded warning once (to audit's caller) and keep it for the report's notes."""
    for w in caught:
        key = (w.category, str(w.message))
        if key not in notes:
            notes.append(key)
            warnings.warn(w.message, w.category, stacklevel=3)


# ------------------------------------------------------------------------------------------------ controls
def _baseline_rows(baselines: float | Tensor, rows: Tensor, like: Tensor) -> float | Tensor:
    """The baselines of the images at ``rows`` (a float is every image's), on ``like``'s device and dtype."""
    if isinstance(baselines, float):
        return baselines
    return baselines[rows.to(baselines.device)].to(device=like.device, dtype=like.dtype)


@torch.no_grad()
def _controls_pass(
    model: nn.Module,
    run: _Run,
    selection: SelectionResult,
    labels: Tensor,
    probs: Tensor,
    backselect: Tensor,
    fraction: float,
    threshold: float,
    seed: int,
    caller: str,
) -> tuple[MaskShapeLeakage | None, SmoothedSIS]:
    """Mask-shape leakage and smoothed SIS on the audit's subsets and SIS, one more pass over the images.

    The random draws (donors and random positions of :func:`~sis_attr.overinterpretation.mask_shape_leakage`,
    random sets of :func:`~sis_attr.overinterpretation.smoothed_sis`, each from a generator seeded with
    ``seed``) need no image: they are made first, in those functions' order. Then each block of images gives
    its random subsets, its smoothed sets, and the content-swapped subsets *of the images it lends its pixels
    to* (image ``j`` fills the subset positions of the image whose donor it is), so no image is read twice and
    memory follows the block. The full-image and subset predictions are the audit's own (``probs``,
    ``backselect``). The shape-only images need no image pixels: they are classified after the pass, in the
    mean colour of all kept pixels summed along the way.
    """
    source = run.source
    n = source.n
    batch_size = run.task.impl.initial_batch_size()
    block = batch_size * max(1, math.ceil(run.shard_size / batch_size))
    bounds = shard_bounds(n, block)

    def predict(x: Tensor) -> Tensor:
        return predict_probabilities(model, x, caller, batch_size=batch_size)

    # ---- the draws, before any image is read
    keep = selection._keep_masks(subset_size(fraction, selection.n_features))  # the audit's subsets
    leak = n >= 2
    if leak:
        generator = torch.Generator().manual_seed(seed)
        donors = _donors(labels, generator)
        random_keep = _random_positions(keep.flatten(1).sum(dim=1), tuple(keep.shape[1:]), generator)
        borrowers = torch.empty_like(donors)
        borrowers[donors] = torch.arange(n)  # image j lends its pixels to image borrowers[j]
    else:
        warnings.warn(
            f"Mask-shape leakage was not measured: it needs at least two images (each subset is filled with "
            f"another image's pixels). Got {n}.",
            SISWarning,
            stacklevel=2,
        )
    swapped = torch.zeros(n, dtype=torch.long)
    random_predictions = torch.zeros(n, dtype=torch.long)
    c = selection.image_shape[0]
    kept_sum = torch.zeros(c, dtype=torch.float64)
    all_sis = selection._sis_masks(threshold, warn=False)  # all False without an SIS (the statistics warned)
    indices = torch.nonzero(all_sis.flatten(1).any(dim=1)).flatten()
    sis_masks = all_sis[indices]
    dilated, random_sets, plus_random = _smoothing_masks(sis_masks, torch.Generator().manual_seed(seed))
    sets = (sis_masks, dilated, random_sets, plus_random)
    confidences = [torch.zeros(int(indices.numel()), dtype=torch.float64) for _ in sets]
    row_of = torch.full((n,), -1, dtype=torch.long)
    row_of[indices] = torch.arange(int(indices.numel()))
    dtype = torch.float32

    # ---- one pass over the images
    for (start, stop), (images, _) in zip(bounds, source.blocks(bounds), strict=True):
        dtype, device = images.dtype, images.device
        rows = torch.arange(start, stop)
        base = _baseline_rows(run.baselines, rows, images)
        if leak:
            kept = keep[start:stop].to(device).expand_as(images)
            kept_sum += torch.where(kept, images, 0.0).double().sum(dim=(0, 2, 3)).cpu()
            to = borrowers[start:stop]
            lent = torch.where(keep[to].to(device), images, _baseline_rows(run.baselines, to, images))
            swapped[to] = predict(lent).argmax(dim=1)
            own = torch.where(random_keep[start:stop].to(device), images, base)
            random_predictions[start:stop] = predict(own).argmax(dim=1)
        local = torch.nonzero(row_of[start:stop] >= 0).flatten()
        if local.numel():
            j = row_of[start:stop][local]
            x = images[local.to(device)]
            b = base if isinstance(base, float) else base[local.to(device)]
            target = selection.targets[indices[j]].unsqueeze(1)
            for out, masks in zip(confidences, sets, strict=True):
                out[j] = predict(torch.where(masks[j].to(device), x, b)).gather(1, target).squeeze(1)

    smoothed = SmoothedSIS(
        threshold=threshold,
        indices=indices,
        targets=selection.targets[indices],
        full_confidences=probs[indices].gather(1, selection.targets[indices].unsqueeze(1)).squeeze(1),
        sis_confidences=confidences[0],
        dilated_confidences=confidences[1],
        random_confidences=confidences[2],
        sis_plus_random_confidences=confidences[3],
        sis_masks=sis_masks,
        dilated_masks=dilated,
        random_masks=random_sets,
        sis_plus_random_masks=plus_random,
        n_inputs=n,
    )
    if not leak:
        return None, smoothed

    # ---- shape only: the subsets' positions in the mean colour of all kept pixels (no image needed)
    counts = keep.sum(dim=(0, 2, 3)).expand(c).clamp(min=1)  # kept positions per channel (masks: 1 or C channels)
    fill = (kept_sum / counts).to(dtype).reshape(1, c, 1, 1)
    shape_predictions = torch.zeros(n, dtype=torch.long)
    visible = False
    for start, stop in bounds:
        like = torch.empty((), dtype=dtype)
        base = _baseline_rows(run.baselines, torch.arange(start, stop), like)
        base_full = torch.broadcast_to(torch.as_tensor(base, dtype=dtype), (stop - start, *selection.image_shape))
        shape_images = torch.where(keep[start:stop], fill, base_full)
        visible = visible or not torch.equal(shape_images, base_full)
        shape_predictions[start:stop] = predict(shape_images).argmax(dim=1)
    if not visible:
        warnings.warn(
            f"Mask-shape leakage was not measured: the mean colour of the kept pixels "
            f"({[round(v, 6) for v in fill.flatten().tolist()]}) equals the baseline on every kept position, so "
            "the shape-only images would show no shape.",
            SISWarning,
            stacklevel=2,
        )
        return None, smoothed
    leakage = MaskShapeLeakage(
        labels=labels,
        donors=donors,
        full_predictions=probs.argmax(dim=1),
        subset_predictions=backselect.argmax(dim=1),
        swapped_predictions=swapped,
        shape_predictions=shape_predictions,
        random_predictions=random_predictions,
        fill=tuple(float(v) for v in fill.flatten().tolist()),
        kept_fraction=float(keep.flatten(1).double().mean(dim=1).mean()),
        n_classes=int(probs.shape[1]),
    )
    return leakage, smoothed
