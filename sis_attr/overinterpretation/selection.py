"""Backward selection on a set of images, stored per image for every later analysis.

:func:`backward_selection` runs (exact or gradient) backward selection once per image, on the confidence of the
predicted class, with all channels of a pixel as one feature (the paper's choice). The returned
:class:`SelectionResult` holds the full record of every image, so the 5% pixel-subsets, the SIS at any threshold
and the location heatmaps are all derived from it without running the model again.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from sis_attr._core.methods import Method, backselect_records, format_method
from sis_attr._core.results import BackSelectRecord
from sis_attr._core.validation import (
    check_label_range,
    format_flag,
    format_fraction,
    format_image_baselines,
    format_image_feature_mask,
    format_images,
    format_model,
    format_positive_int,
    format_target,
    format_threshold,
    model_device,
    param_error,
    warn_if_training,
)
from sis_attr._progress import progress_bar
from sis_attr.exceptions import SISValueError, UninformativeBaselineWarning
from sis_attr.overinterpretation._common import (
    predict_probabilities,
    subset_size,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from sis_attr._core.schedule import AdaptiveK

__all__ = ["SelectionResult", "backward_selection"]

_METHODS = ("exact", "gradient")
_FORMAT_VERSION = 1


def __getattr__(name: str) -> Any:
    """Deprecated aliases, kept for one release."""
    if name == "pixel_feature_mask":
        warnings.warn(
            "sis_attr.overinterpretation.selection.pixel_feature_mask is deprecated and will be removed in the next "
            "release; import pixel_feature_mask from sis_attr.overinterpretation instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        from sis_attr._core.feature_masks import pixel_feature_mask

        return pixel_feature_mask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, eq=False)
class SelectionResult:
    """Backward-selection records of a set of images, with the model's targets and confidences.

    Attributes
    ----------
    records : list of BackSelectRecord
        One record per image: removal order (first removed first) and the log-probability of the target after
        each removal (NaN where a method did not measure it).
    targets : Tensor
        ``(N,)`` int64 class explained per image (the predicted class by default).
    confidences : Tensor
        ``(N,)`` float64 probability of the target on the full image.
    n_features : int
        Features per image (``H * W`` for the paper's pixel features).
    method : str
        ``"exact"`` or ``"gradient"``.
    feature_mask : Tensor
        ``(1, 1 or C, H, W)`` int64 group ids used (one feature per id).
    image_shape : tuple of int
        ``(C, H, W)``.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.testing import TinyConvNet
    >>> images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> sel = backward_selection(TinyConvNet(classes=3), images, show_progress=False)
    >>> len(sel), sel.n_features, sel.keep_masks(0.25).shape, sel.keep_masks(0.25).sum().item()
    (2, 16, torch.Size([2, 1, 4, 4]), 8)
    >>> sel.select([1]).targets.tolist() == sel.targets[1:].tolist()
    True
    """

    records: list[BackSelectRecord]
    targets: Tensor
    confidences: Tensor
    n_features: int
    method: str
    feature_mask: Tensor
    image_shape: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def n_images(self) -> int:
        """Number of images with a backward-selection record."""
        return len(self.records)

    @property
    def mask_shape(self) -> tuple[int, int, int]:
        """``(1 or C, H, W)``: the shape of one position mask (1 channel for pixel features)."""
        return (int(self.feature_mask.shape[1]), int(self.feature_mask.shape[2]), int(self.feature_mask.shape[3]))

    # ------------------------------------------------------------------ masks
    # Mask convention: every mask of this class is a bool keep-mask (True: kept) of shape (N, 1 or C, H, W),
    # shaped like the feature mask, so it broadcasts against the (N, C, H, W) images
    # (``torch.where(masks, images, baseline)``). For pixel features, ``masks[i, 0]`` (or ``masks.any(dim=1)``
    # in general) is the (H, W) image to show with ``imshow``.
    def subset_size(self, fraction: float = 0.05) -> int:
        """Features kept per image at ``fraction``: ``ceil(fraction * n_features)`` (52 of 1024 at 5%).

        The same number as :func:`~sis_attr.overinterpretation.subset_size` ``(fraction, self.n_features)``.
        """
        return subset_size(format_fraction(fraction, "SelectionResult.subset_size"), self.n_features)

    def positions(self, feature_keep: Tensor) -> Tensor:
        """Spread an ``(N, n_features)`` bool feature keep-mask over positions: ``(N, 1 or C, H, W)``."""
        flat = self.feature_mask.reshape(-1)
        return feature_keep[:, flat].reshape(feature_keep.shape[0], *self.mask_shape)

    def keep_masks(self, fraction: float = 0.05) -> Tensor:
        """Keep-masks of the ``ceil(fraction * n_features)`` features removed last by backward selection.

        Returns
        -------
        Tensor
            Bool ``(N, 1 or C, H, W)`` (the shape of :attr:`feature_mask` per image): True on the kept
            positions; all channels of a pixel share one entry for pixel features, so ``masks[i, 0]`` is the
            ``(H, W)`` mask of image ``i``.
        """
        return self._keep_masks(subset_size(format_fraction(fraction, "SelectionResult.keep_masks"), self.n_features))

    def _keep_masks(self, count: int) -> Tensor:
        keep = torch.zeros(self.n_images, self.n_features, dtype=torch.bool)
        for i, rec in enumerate(self.records):
            keep[i, rec.top_features(count)] = True
        return self.positions(keep)

    def _sis(self, t: float, *, warn: bool, stacklevel: int) -> list[Tensor | None]:
        """The SIS (feature ids) of every image at the validated threshold ``t``; None below it.

        With ``warn``, images whose SIS is empty (the baseline alone reaches ``t``) are reported once, at
        ``stacklevel`` counted from here (the public caller's caller).
        """
        out: list[Tensor | None] = []
        blank: list[float] = []  # confidence on the baseline alone, for the images with an empty SIS
        for rec, conf in zip(self.records, self.confidences.tolist(), strict=True):
            if conf < t:
                out.append(None)
                continue
            sis = rec.find_sis(t, warn=False)
            if sis is not None and sis.numel() == 0:
                blank.append(float(rec.scores[-1]))
            out.append(sis)
        if warn and blank:
            highest = max(blank)
            advice = (
                f"Use another baseline, or a threshold above {highest:.6g} (the highest of these confidences)."
                if highest < 1.0
                else "Use another baseline."
            )
            warnings.warn(
                f"{len(blank)} of {self.n_images} images keep a confidence of at least {t} with every feature "
                f"removed (on the baseline alone), so their SIS at threshold {t} are empty: the baseline is not "
                f"uninformative to this model. {advice}",
                UninformativeBaselineWarning,
                stacklevel=stacklevel,
            )
        return out

    def _sis_sizes(self, t: float, *, warn: bool = True, stacklevel: int = 4) -> Tensor:
        sis = self._sis(t, warn=warn, stacklevel=stacklevel)
        return torch.tensor([float("nan") if s is None else float(s.numel()) for s in sis], dtype=torch.float64)

    def _sis_masks(self, t: float, *, warn: bool = True, stacklevel: int = 4) -> Tensor:
        keep = torch.zeros(self.n_images, self.n_features, dtype=torch.bool)
        for i, sis in enumerate(self._sis(t, warn=warn, stacklevel=stacklevel)):
            if sis is not None:
                keep[i, sis] = True
        return self.positions(keep)

    def sis_sizes(self, threshold: float) -> Tensor:
        """``(N,)`` float64 SIS sizes in features at ``threshold``; NaN where the confidence is below it.

        Warns (:class:`~sis_attr.exceptions.UninformativeBaselineWarning`) when some SIS are empty.
        """
        return self._sis_sizes(format_threshold(threshold, "SelectionResult.sis_sizes"))

    def sis_masks(self, threshold: float) -> Tensor:
        """Keep-masks of the SIS at ``threshold``, one per image (all False where the image has none).

        Returns
        -------
        Tensor
            Bool ``(N, 1 or C, H, W)``, like :meth:`keep_masks`: ``masks[i, 0]`` is the ``(H, W)`` SIS of image
            ``i`` for pixel features (``masks.any(dim=1)`` in general). The report's
            :attr:`SISExamples.sis_masks <sis_attr.overinterpretation.SISExamples.sis_masks>` holds this
            reduction, ``(n, H, W)``, for the few example images only.

        Examples
        --------
        >>> import torch
        >>> from sis_attr.testing import SumGridClassifier
        >>> image = torch.tensor([[[[1.0, 2.0], [0.5, -1.0]]]])
        >>> sel = backward_selection(SumGridClassifier(), image, show_progress=False)
        >>> masks = sel.sis_masks(0.85)
        >>> masks.shape, masks[0, 0].tolist()
        (torch.Size([1, 1, 2, 2]), [[False, True], [False, False]])
        """
        return self._sis_masks(format_threshold(threshold, "SelectionResult.sis_masks"))

    def select(self, indices: Sequence[int] | Tensor) -> SelectionResult:
        """The result restricted to some images (in the given order)."""
        idx = torch.as_tensor(indices).reshape(-1)
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx).flatten()
        idx = idx.long()
        if idx.numel() and (int(idx.min()) < -self.n_images or int(idx.max()) >= self.n_images):
            raise param_error("indices", "SelectionResult.select", f"indices into {self.n_images} images", idx.tolist())
        records = [dataclasses.replace(self.records[int(i)], example=j) for j, i in enumerate(idx.tolist())]
        return dataclasses.replace(
            self, records=records, targets=self.targets[idx].clone(), confidences=self.confidences[idx].clone()
        )

    # ------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary: method, sizes, per-image targets and confidences."""
        return {
            "method": self.method,
            "n_images": self.n_images,
            "n_features": self.n_features,
            "image_shape": list(self.image_shape),
            "mean_confidence": float(self.confidences.mean()),
            "targets": [int(t) for t in self.targets.tolist()],
            "confidences": [float(c) for c in self.confidences.tolist()],
        }

    def plot(self, ax: Axes | None = None, *, index: int = 0) -> Axes:
        """Plot the backward-selection curve of one image: confidence against the fraction of features kept."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        rec = self.records[index]
        scores = rec.scores.double()
        kept = torch.arange(scores.numel() - 1, -1, -1, dtype=torch.float64) / self.n_features
        ok = torch.isfinite(scores)
        ax.plot(kept[ok].numpy(), scores[ok].numpy(), marker="." if int(ok.sum()) < 80 else None)
        ax.set_xlabel("fraction of features kept")
        ax.set_ylabel(f"confidence (class {int(self.targets[index])})")
        ax.set_title(f"Backward selection ({self.method}), image {index}")
        return ax

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save with :func:`torch.save` as a dict of tensors only (loadable with ``weights_only=True``)."""
        n, d = self.n_images, self.n_features
        lengths = torch.tensor([r.order.numel() for r in self.records], dtype=torch.long)
        orders = torch.full((n, d), -1, dtype=torch.long)
        values = torch.full((n, d + 1), float("nan"), dtype=torch.float64)
        for i, r in enumerate(self.records):
            orders[i, : r.order.numel()] = r.order
            values[i, : r.values.numel()] = r.values.double()
        payload = {
            "format_version": torch.tensor(_FORMAT_VERSION),
            "orders": orders,
            "values": values,
            "lengths": lengths,
            "log_space": torch.tensor([r.log_space for r in self.records], dtype=torch.bool),
            "targets": self.targets,
            "confidences": self.confidences,
            "n_features": torch.tensor(d),
            "method": torch.tensor(_METHODS.index(self.method)),
            "feature_mask": self.feature_mask,
            "image_shape": torch.tensor(self.image_shape),
        }
        torch.save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SelectionResult:
        """Load a file written by :meth:`save` (with ``weights_only=True``: no code runs)."""
        caller = "SelectionResult.load"
        try:
            p = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # torch raises several types for foreign files
            raise SISValueError(f"{caller} could not read {str(path)!r} as a saved SelectionResult: {err}") from err
        keys = {"format_version", "orders", "values", "lengths", "log_space", "targets", "confidences"}
        keys |= {"n_features", "method", "feature_mask", "image_shape"}
        if not isinstance(p, dict) or not keys <= set(p):
            raise SISValueError(f"{caller}: {str(path)!r} is not a file written by SelectionResult.save.")
        if int(p["format_version"]) != _FORMAT_VERSION:
            raise SISValueError(f"{caller}: unsupported format version {int(p['format_version'])} in {str(path)!r}.")
        d = int(p["n_features"])
        records = [
            BackSelectRecord(
                order=p["orders"][i, : int(n)].clone(),
                values=p["values"][i, : int(n) + 1].clone(),
                log_space=bool(p["log_space"][i]),
                n_features=d,
                example=i,
            )
            for i, n in enumerate(p["lengths"].tolist())
        ]
        c, h, w = (int(v) for v in p["image_shape"].tolist())
        return cls(
            records=records,
            targets=p["targets"],
            confidences=p["confidences"],
            n_features=d,
            method=_METHODS[int(p["method"])],
            feature_mask=p["feature_mask"],
            image_shape=(c, h, w),
        )


def backward_selection(
    model: nn.Module,
    images: Tensor,
    *,
    method: Literal["exact", "gradient"] = "exact",
    baselines: float | Tensor | None = 0.0,
    feature_mask: Literal["pixel"] | Tensor | None = "pixel",
    target: int | Sequence[int] | Tensor | None = None,
    k: int | float | str | AdaptiveK = 1,
    shortlist: int | None = None,
    batch_size: int = 256,
    chunk_size: int = 64,
    show_progress: bool = True,
) -> SelectionResult:
    """Backward selection on every image, on the confidence of the predicted class (Carter et al., 3.3).

    Each image is reduced feature by feature, always removing (setting to the baseline) the feature whose
    removal leaves the confidence highest, until none remains. The record of every image is kept, so the
    ``fraction`` of features removed last (the 5% pixel-subsets of the paper, :meth:`SelectionResult.keep_masks`)
    and the SIS at any threshold (:meth:`SelectionResult.sis_sizes`) come without running the model again.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier mapping ``(N, C, H, W)`` images to ``(N, classes)`` logits. It is only called: put it in eval
        mode yourself (a warning is issued otherwise). Images follow the model's device.
    images : Tensor
        ``(N, C, H, W)`` float images, in the model's input space.
    method : {"exact", "gradient"}, default "exact"
        ``"exact"``: exact BackSelect (``d (d + 1) / 2`` evaluations per image: 524,800 for a 32x32 image).
        ``"gradient"``: :func:`sis_attr.functional.gradient_backselect`, removing ``k`` features per gradient
        step, or with ``shortlist=M`` the exact choice among the ``M`` features the gradient ranks first.
    baselines : float or Tensor, default 0.0
        Value of removed features (0: the mean pixel of normalised data), broadcastable to ``images``; None
        means 0, as in Captum.
    feature_mask : "pixel", None or Tensor, default "pixel"
        ``"pixel"``: all channels of a pixel are one feature (the paper's choice). None: every element is a
        feature. A tensor: integer group ids ``0..d-1`` of shape ``(H, W)``, ``(1 or C, H, W)`` or
        ``(1, 1 or C, H, W)``, shared by all images.
    target : None, int, sequence of int or Tensor, optional
        Class explained per image; the predicted class when None (the paper's choice).
    k : int, float, "adaptive" or AdaptiveK, default 1
        With ``method="gradient"``: features removed per gradient step (an integer, a fraction of the remaining
        features, or an adaptive schedule; see :func:`sis_attr.functional.gradient_backselect`). A fraction such
        as ``0.2`` takes large steps while many features remain and single steps near the end, where the
        kept subsets are decided.
    shortlist : int, optional
        With ``method="gradient"``: choose each removal exactly among the ``shortlist`` features the gradient
        ranks first (the gradient-screened exact hybrid).
    batch_size : int, default 256
        Masked images per forward pass.
    chunk_size : int, default 64
        Images per call of the backward-selection routine (bounds memory, sets progress granularity).
    show_progress : bool, default True
        Show a progress bar over images.

    Returns
    -------
    SelectionResult
        Records, targets, confidences on the full images, feature mask and shapes (all on the CPU).

    Raises
    ------
    SISValueError, SISTypeError
        For invalid arguments (shapes, classes outside the model's outputs, unknown method...).

    Examples
    --------
    A two-class model with logits ``[0, sum of the pixels]`` (hand-checkable: removing a pixel of value ``v``
    changes the logit by ``-v``):

    >>> import torch
    >>> from sis_attr.testing import SumGridClassifier
    >>> image = torch.tensor([[[[1.0, 2.0], [0.5, -1.0]]]])
    >>> sel = backward_selection(SumGridClassifier(), image, show_progress=False)
    >>> sel.method, sel.n_features, sel.targets.tolist(), round(sel.confidences.item(), 3)  # sigmoid(2.5)
    ('exact', 4, [1], 0.924)
    >>> sel.records[0].order.tolist()  # the negative pixel goes first, the largest last
    [3, 2, 0, 1]
    >>> sel.keep_masks(0.25)[0, 0].tolist()  # the 5% subset of the paper, here 1 of 4 pixels
    [[False, True], [False, False]]
    >>> sel.sis_sizes(0.85).tolist(), sel.sis_sizes(0.9).tolist(), sel.sis_sizes(0.95).tolist()
    ([1.0], [2.0], [nan])
    """
    caller = "backward_selection"
    model = format_model(model, caller)
    images = format_images(images, caller)
    impl = format_method(method, k=k, shortlist=shortlist, batch_size=batch_size, caller=caller)
    batch_size = format_positive_int(batch_size, "batch_size", caller)
    chunk_size = format_positive_int(chunk_size, "chunk_size", caller)
    show_progress = format_flag(show_progress, "show_progress", caller)
    n = int(images.shape[0])
    image_shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
    fmask = format_image_feature_mask(feature_mask, image_shape, caller)
    base = format_image_baselines(baselines, images, caller)
    device = model_device(model)
    if isinstance(target, tuple):  # a sequence of classes, one per image (format_target takes lists)
        target = list(target)
    tgt = None if target is None else format_target(target, n, None, torch.device("cpu"), caller)
    warn_if_training(model, caller)

    probs = predict_probabilities(model, images, caller, batch_size=batch_size)
    if tgt is None:
        tgt = probs.argmax(dim=1)
    else:
        check_label_range(tgt, int(probs.shape[1]), caller, param="target")
    return _backward_selection(
        model,
        images,
        impl=impl,
        method=method,
        baselines=base,
        feature_mask=fmask,
        targets=tgt,
        confidences=probs.gather(1, tgt.unsqueeze(1)).squeeze(1),
        chunk_size=chunk_size,
        show_progress=show_progress,
        device=device,
        caller=caller,
    )


def _backward_selection(
    model: nn.Module,
    images: Tensor,
    *,
    impl: Method,
    method: str,
    baselines: float | Tensor,
    feature_mask: Tensor,
    targets: Tensor,
    confidences: Tensor,
    chunk_size: int,
    show_progress: bool,
    device: torch.device,
    caller: str,
) -> SelectionResult:
    """Backward selection on validated inputs whose targets and full-image confidences are already known.

    ``impl`` comes from :func:`sis_attr._core.methods.format_method`; ``baselines`` from
    :func:`~sis_attr._core.validation.format_image_baselines` and ``feature_mask`` from
    :func:`~sis_attr._core.validation.format_image_feature_mask`. The model only sees masked images here.
    """
    n = int(images.shape[0])
    fmask_dev = feature_mask.to(device)
    records: list[BackSelectRecord] = []
    with progress_bar(n, f"Backward selection ({method})", show_progress, unit="image") as bar:
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            chunk_base = baselines if isinstance(baselines, float) else baselines[start:stop].to(device)
            records.extend(
                backselect_records(
                    model,
                    images[start:stop].to(device),
                    method=impl,
                    target=targets[start:stop].to(device),
                    baselines=chunk_base,
                    feature_mask=fmask_dev,
                    threshold=None,
                    start_values=confidences[start:stop].log().to(device),  # known: no full-image pass
                    first_example=start,
                    caller=caller,
                )
            )
            bar.update(stop - start)
    return SelectionResult(
        records=records,
        targets=targets.clone(),
        confidences=confidences,
        n_features=int(feature_mask.max()) + 1,
        method=method,
        feature_mask=feature_mask,
        image_shape=(int(images.shape[1]), int(images.shape[2]), int(images.shape[3])),
    )
