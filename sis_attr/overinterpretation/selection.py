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

from sis_attr._core.results import BackSelectRecord
from sis_attr._core.validation import (
    check_label_range,
    format_fraction,
    format_images,
    format_model,
    format_positive_int,
    format_threshold,
    model_device,
    param_error,
    warn_if_training,
)
from sis_attr._progress import progress_bar
from sis_attr.exceptions import SISTypeError, SISValueError, UninformativeBaselineWarning
from sis_attr.overinterpretation._common import (
    predict_probabilities,
    subset_size,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from sis_attr._core.gradient_backselect import AdaptiveK

__all__ = ["SelectionResult", "backward_selection", "pixel_feature_mask"]

_METHODS = ("exact", "gradient")
_FORMAT_VERSION = 1


def pixel_feature_mask(image_shape: Sequence[int]) -> Tensor:
    """Feature mask that makes all channels of a pixel one feature: ids ``0..H*W-1``, shape ``(1, 1, H, W)``.

    Examples
    --------
    >>> pixel_feature_mask((3, 2, 2))
    tensor([[[[0, 1],
              [2, 3]]]])
    """
    h, w = int(image_shape[-2]), int(image_shape[-1])
    return torch.arange(h * w, dtype=torch.long).reshape(1, 1, h, w)


def _format_feature_mask(feature_mask: object, image_shape: tuple[int, int, int], caller: str) -> Tensor:
    """``(1, 1 or C, H, W)`` int64 CPU group ids with contiguous ids ``0..d-1``."""
    c, h, w = image_shape
    if isinstance(feature_mask, str):
        if feature_mask != "pixel":
            raise param_error("feature_mask", caller, '"pixel", None or an integer tensor', repr(feature_mask))
        return pixel_feature_mask(image_shape)
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
    ok = m.dim() == 4 and m.shape[0] == 1 and m.shape[1] in (1, c) and tuple(m.shape[2:]) == (h, w)
    if not ok:
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


def _format_target(target: object, n: int, caller: str) -> Tensor | None:
    if target is None:
        return None
    if isinstance(target, bool):
        raise SISTypeError(f"The `target` parameter of {caller} must be None, an int or integer tensor. Got bool.")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long)
    elif isinstance(target, Tensor) and not (target.is_floating_point() or target.dtype == torch.bool):
        t = target.detach().to("cpu", torch.long).reshape(-1)
        if t.numel() == 1:
            t = t.expand(n).clone()
    elif isinstance(target, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in target):
        t = torch.tensor(list(target), dtype=torch.long)
    else:
        raise SISTypeError(
            f"The `target` parameter of {caller} must be None (the predicted class), an int, a list of ints or "
            f"an integer tensor. Got {type(target).__name__} instead."
        )
    if t.numel() != n:
        raise param_error("target", caller, f"one class per image ({n})", f"{t.numel()} entries")
    if int(t.min()) < 0:
        raise param_error("target", caller, "made of non-negative class indices", f"the value {int(t.min())}")
    return t


def _format_baselines(baselines: object, images: Tensor, caller: str) -> float | Tensor:
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return float(baselines)
    if not isinstance(baselines, Tensor):
        raise SISTypeError(
            f"The `baselines` parameter of {caller} must be a number or a tensor broadcastable to the images. "
            f"Got {type(baselines).__name__} instead."
        )
    b = baselines.to(images.dtype)
    try:
        full = torch.broadcast_to(b, images.shape)
    except RuntimeError:
        raise SISValueError(
            f"The `baselines` parameter of {caller} must be broadcastable to the images' shape "
            f"{tuple(images.shape)}. Got shape {tuple(baselines.shape)} instead."
        ) from None
    if not torch.isfinite(full).all():
        raise param_error("baselines", caller, "finite (no NaN or inf)", "non-finite values")
    return full


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
    def subset_size(self, fraction: float = 0.05) -> int:
        """Features kept per image at ``fraction``: ``ceil(fraction * n_features)`` (52 of 1024 at 5%)."""
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
            Bool ``(N, 1 or C, H, W)``: True on the kept positions (all channels of a pixel share one entry
            for pixel features).
        """
        count = subset_size(format_fraction(fraction, "SelectionResult.keep_masks"), self.n_features)
        keep = torch.zeros(self.n_images, self.n_features, dtype=torch.bool)
        for i, rec in enumerate(self.records):
            keep[i, rec.top_features(count)] = True
        return self.positions(keep)

    def _sis(self, threshold: float, caller: str) -> list[Tensor | None]:
        t = format_threshold(threshold, caller)
        out: list[Tensor | None] = []
        empty = 0
        for rec, conf in zip(self.records, self.confidences.tolist(), strict=True):
            if conf < t:
                out.append(None)
                continue
            sis = rec.find_sis(t, warn=False)
            empty += int(sis is not None and sis.numel() == 0)
            out.append(sis)
        if empty:
            warnings.warn(
                f"{empty} of {self.n_images} images reach the threshold {t} with every feature removed: their SIS "
                "are empty, so the baseline is not uninformative to this model. Choose another baseline or a higher "
                "threshold.",
                UninformativeBaselineWarning,
                stacklevel=3,
            )
        return out

    def sis_sizes(self, threshold: float) -> Tensor:
        """``(N,)`` float64 SIS sizes in features at ``threshold``; NaN where the confidence is below it."""
        return torch.tensor(
            [
                float("nan") if s is None else float(s.numel())
                for s in self._sis(threshold, "SelectionResult.sis_sizes")
            ],
            dtype=torch.float64,
        )

    def sis_masks(self, threshold: float) -> Tensor:
        """Bool ``(N, 1 or C, H, W)`` keep-masks of the SIS at ``threshold`` (all False where there is none)."""
        keep = torch.zeros(self.n_images, self.n_features, dtype=torch.bool)
        for i, sis in enumerate(self._sis(threshold, "SelectionResult.sis_masks")):
            if sis is not None:
                keep[i, sis] = True
        return self.positions(keep)

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
    baselines: float | Tensor = 0.0,
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
        Value of removed features (0: the mean pixel of normalised data), broadcastable to ``images``.
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
    if method not in _METHODS:
        raise param_error("method", caller, 'one of "exact" or "gradient"', repr(method))
    if method == "exact" and (isinstance(k, bool) or k != 1 or shortlist is not None):
        raise SISValueError(
            f'The `k` and `shortlist` parameters of {caller} apply to method="gradient" only. Got k={k!r}, '
            f'shortlist={shortlist!r} with method="exact"; drop them or use method="gradient".'
        )
    batch_size = format_positive_int(batch_size, "batch_size", caller)
    chunk_size = format_positive_int(chunk_size, "chunk_size", caller)
    n = int(images.shape[0])
    image_shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
    fmask = _format_feature_mask(feature_mask, image_shape, caller)
    n_features = int(fmask.max()) + 1
    base = _format_baselines(baselines, images, caller)
    tgt = _format_target(target, n, caller)
    warn_if_training(model, caller)

    if method == "gradient":
        try:
            from sis_attr._core.gradient_backselect import resolve_k
            from sis_attr.functional import gradient_backselect
        except ImportError:  # pragma: no cover - depends on the installed version
            raise SISValueError(
                f'method="gradient" of {caller} needs sis_attr.functional.gradient_backselect, which this '
                'version of sis_attr lacks. Use method="exact".'
            ) from None
        resolve_k(k, shortlist, caller)  # validates k and shortlist with this function's name
        run: Any = gradient_backselect
        options: dict[str, Any] = {"k": k, "shortlist": shortlist}
    else:
        from sis_attr.functional import backselect

        run = backselect
        options = {}

    probs = predict_probabilities(model, images, caller, batch_size=batch_size)
    n_classes = int(probs.shape[1])
    if tgt is None:
        tgt = probs.argmax(dim=1)
    else:
        check_label_range(tgt, n_classes, caller, param="target")
    confidences = probs.gather(1, tgt.unsqueeze(1)).squeeze(1)

    device = model_device(model)
    fmask_dev = fmask.to(device)
    records: list[BackSelectRecord] = []
    with progress_bar(n, f"Backward selection ({method})", show_progress, unit="image") as bar:
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            chunk = images[start:stop].to(device)
            chunk_base = base if isinstance(base, float) else base[start:stop].to(device)
            with warnings.catch_warnings():
                # warned once above; the core would repeat it for every chunk
                warnings.filterwarnings("ignore", message=".*is in training mode.*")
                recs = run(
                    model,
                    chunk,
                    baselines=chunk_base,
                    target=tgt[start:stop].to(device),
                    feature_mask=fmask_dev,
                    batch_size=batch_size,
                    show_progress=False,
                    **options,
                )
            records.extend(dataclasses.replace(r, example=start + j) for j, r in enumerate(recs))
            bar.update(stop - start)
    return SelectionResult(
        records=records,
        targets=tgt.clone(),
        confidences=confidences,
        n_features=n_features,
        method=method,
        feature_mask=fmask,
        image_shape=image_shape,
    )
