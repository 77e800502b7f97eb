"""Backward selection on a set of images, stored per image for every later analysis.

:func:`backward_selection` runs (exact or gradient) backward selection once per image, on the confidence of the
predicted class, with all channels of a pixel as one feature (the paper's choice). The returned
:class:`SelectionResult` holds the full record of every image, so the 5% pixel-subsets, the SIS at any threshold
and the location heatmaps are all derived from it without running the model again.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sis_attr._core.methods import DEFAULT_K, GradientMethod, Method, backselect_records, format_method
from sis_attr._core.results import BackSelectRecord
from sis_attr._core.validation import (
    check_deterministic,
    check_label_range,
    format_flag,
    format_fraction,
    format_image_baselines,
    format_image_feature_mask,
    format_images,
    format_model,
    format_optional_positive_int,
    format_positive_int,
    format_target,
    format_threshold,
    model_device,
    param_error,
    warn_if_probabilities,
    warn_if_training,
)
from sis_attr._progress import progress_bar
from sis_attr.exceptions import SISTypeError, SISValueError, UninformativeBaselineWarning
from sis_attr.overinterpretation._common import (
    check_logits,
    predict_probabilities,
    subset_size,
)
from sis_attr.overinterpretation._sources import Source, TensorSource, format_source, shard_bounds
from sis_attr.overinterpretation._store import (
    SCORE_DTYPES,
    ShardStore,
    compact_tensor,
    images_sha256,
    model_sha256,
    smallest_uint,
    tensor_sha256,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from sis_attr._core.schedule import AdaptiveK, AutoK

__all__ = ["SelectionResult", "backward_selection"]

_METHODS = ("exact", "gradient")
_FORMAT_VERSION = 2  # 1: int64 orders and float64 values padded per image; 2: compact, one row per image
_PROBE_IMAGES = 4  # images of the model check run before any shard
_SHARD_IMAGES = 64  # default images per shard (rounded up to a multiple of chunk_size)


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
    records : sequence of BackSelectRecord
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

    records: Sequence[BackSelectRecord]
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
        recs = self.records
        if isinstance(recs, _PackedRecords):  # complete records: the last `count` removed of every row at once
            count = max(0, min(int(count), self.n_features))
            if count:
                keep.scatter_(1, torch.from_numpy(recs.orders[:, self.n_features - count :].astype(np.int64)), True)
            return self.positions(keep)
        for i, rec in enumerate(recs):
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
        """Save with :func:`torch.save` as a dict of tensors only (loadable with ``weights_only=True``).

        Orders are stored in the smallest integer type that holds a feature id and scores in the precision the
        records hold (float32 or float16 for results read from a compact checkpoint, float64 otherwise).
        """
        orders, values = _packed_arrays(self)
        payload = {
            "format_version": torch.tensor(_FORMAT_VERSION),
            "orders": torch.from_numpy(orders.astype(_torch_int_dtype(self.n_features), copy=False)),
            "values": torch.from_numpy(values),
            "log_space": torch.tensor([r.log_space for r in self.records[:1]] or [True], dtype=torch.bool),
            "targets": self.targets,
            "confidences": self.confidences,
            "n_features": torch.tensor(self.n_features),
            "method": torch.tensor(_METHODS.index(self.method)),
            "feature_mask": self.feature_mask,
            "image_shape": torch.tensor(self.image_shape),
        }
        torch.save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SelectionResult:
        """Load a file written by :meth:`save` (with ``weights_only=True``: no code runs), or a finished checkpoint.

        Parameters
        ----------
        path : str or os.PathLike
            A ``.pt`` file written by :meth:`save`, or the ``checkpoint_dir`` of a finished
            :func:`backward_selection` or :func:`~sis_attr.overinterpretation.audit` run (its shards are read one at
            a time and checked against their checksums).

        Raises
        ------
        SISValueError
            If the file is not a saved selection, or the checkpoint is unfinished or corrupted.
        """
        caller = "SelectionResult.load"
        if isinstance(path, (str, os.PathLike)) and Path(path).is_dir():
            return _load_store(ShardStore.existing(path, caller), caller)[0]
        try:
            p = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # torch raises several types for foreign files
            raise SISValueError(f"{caller} could not read {str(path)!r} as a saved SelectionResult: {err}") from err
        keys = {"format_version", "orders", "values", "log_space", "targets", "confidences"}
        keys |= {"n_features", "method", "feature_mask", "image_shape"}
        if not isinstance(p, dict) or not keys <= set(p):
            raise SISValueError(f"{caller}: {str(path)!r} is not a file written by SelectionResult.save.")
        version = int(p["format_version"])
        if version not in (1, _FORMAT_VERSION):
            raise SISValueError(f"{caller}: unsupported format version {version} in {str(path)!r}.")
        d = int(p["n_features"])
        c, h, w = (int(v) for v in p["image_shape"].tolist())
        if version == 1:  # one row per image, -1/NaN padded to the longest record
            lengths = p["lengths"].tolist()
            if any(int(n) != d for n in lengths):
                records: Sequence[BackSelectRecord] = [
                    BackSelectRecord(
                        order=p["orders"][i, : int(n)].long().clone(),
                        values=p["values"][i, : int(n) + 1].double().clone(),
                        log_space=bool(p["log_space"][i]),
                        n_features=d,
                        example=i,
                    )
                    for i, n in enumerate(lengths)
                ]
            else:
                records = _PackedRecords(p["orders"].numpy(), p["values"].numpy(), bool(p["log_space"].all()))
        else:
            records = _PackedRecords(p["orders"].numpy(), p["values"].numpy(), bool(p["log_space"].all()))
        return cls(
            records=records,
            targets=p["targets"],
            confidences=p["confidences"],
            n_features=d,
            method=_METHODS[int(p["method"])],
            feature_mask=p["feature_mask"],
            image_shape=(c, h, w),
        )

    @classmethod
    def iter_shards(cls, checkpoint_dir: str | os.PathLike[str]) -> Iterator[SelectionResult]:
        """The results of a finished checkpoint one shard at a time (memory follows the shard, not the data set).

        Each yielded result covers a contiguous range of images; its records keep their index in the whole data
        set (``records[0].example`` is the shard's first image).

        Examples
        --------
        >>> import tempfile, torch
        >>> from sis_attr.testing import TinyConvNet
        >>> images = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     sel = backward_selection(TinyConvNet(in_channels=1, classes=3), images, checkpoint_dir=tmp,
        ...                              shard_size=2, show_progress=False)
        ...     [(len(s), s.records[0].example) for s in SelectionResult.iter_shards(tmp)]
        [(2, 0), (2, 2), (1, 4)]
        """
        caller = "SelectionResult.iter_shards"
        store = ShardStore.existing(checkpoint_dir, caller)
        _require_complete(store, caller)
        meta = _StoreMeta.of(store)
        for start, _stop, arrays in store.iter_shards():
            yield meta.result(arrays, first=start)


# ------------------------------------------------------------------------------------------------ packed records
class _PackedRecords(Sequence[BackSelectRecord]):
    """The records of many images as two compact arrays; each :class:`BackSelectRecord` is made on access.

    ``orders`` ``(N, d)`` in any integer dtype (the smallest that fits, from a checkpoint), ``values``
    ``(N, d + 1)`` in float16/32/64. A record holds int64 orders and float64 values, as everywhere else.
    """

    def __init__(self, orders: np.ndarray, values: np.ndarray, log_space: bool, first: int = 0) -> None:
        self.orders = orders
        self.values = values
        self.log_space = log_space
        self.first = first

    def __len__(self) -> int:
        return int(self.orders.shape[0])

    def _record(self, i: int) -> BackSelectRecord:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"record index {i} out of range for {n} records")
        return BackSelectRecord(
            order=torch.from_numpy(self.orders[i].astype(np.int64)),
            values=torch.from_numpy(self.values[i].astype(np.float64)),
            log_space=self.log_space,
            n_features=int(self.orders.shape[1]),
            example=self.first + i,
        )

    @overload
    def __getitem__(self, index: int) -> BackSelectRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[BackSelectRecord]: ...

    def __getitem__(self, index: int | slice) -> BackSelectRecord | list[BackSelectRecord]:
        if isinstance(index, slice):
            return [self._record(i) for i in range(*index.indices(len(self)))]
        return self._record(int(index))

    def __iter__(self) -> Iterator[BackSelectRecord]:
        for i in range(len(self)):
            yield self._record(i)


def _packed_arrays(selection: SelectionResult) -> tuple[np.ndarray, np.ndarray]:
    """``(orders, values)`` of every record, ``(N, d)`` and ``(N, d + 1)`` (records must be complete)."""
    recs = selection.records
    if isinstance(recs, _PackedRecords) and recs.first == 0:
        return recs.orders, recs.values
    d = selection.n_features
    orders = np.zeros((len(recs), d), dtype=smallest_uint(max(0, d - 1)))
    values = np.full((len(recs), d + 1), np.nan, dtype=np.float64)
    for i, r in enumerate(recs):
        if r.order.numel() != d:
            raise SISValueError(
                f"SelectionResult.save needs complete records (every feature removed). Record {i} has "
                f"{r.order.numel()} of {d}."
            )
        orders[i] = r.order.numpy()
        values[i] = r.values.double().numpy()
    return orders, values


def _torch_int_dtype(n_features: int) -> np.dtype[Any]:
    """The smallest integer dtype torch can save that holds ``0..n_features - 1``."""
    if n_features <= 256:
        return np.dtype(np.uint8)
    if n_features <= 2**15:
        return np.dtype(np.int16)
    return np.dtype(np.int32) if n_features <= 2**31 else np.dtype(np.int64)


# ------------------------------------------------------------------------------------------------ one shard
@dataclass(frozen=True)
class _ShardTask:
    """What computing a shard needs besides the model and the images (picklable: it travels to Ray workers)."""

    impl: Method
    feature_mask: Tensor
    threshold: float | None
    chunk_size: int
    caller: str


def _compute_shard(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None,
    baselines: float | Tensor,
    task: _ShardTask,
    first_example: int,
    progress: Callable[[int], object] | None = None,
) -> dict[str, np.ndarray]:
    """Backward selection on one shard: full-image probabilities, targets, then the records, chunk by chunk.

    ``baselines`` is a number or a tensor broadcastable to ``images``. Returns the arrays of the shard with
    float64 scores: ``orders`` ``(n, d)`` (smallest unsigned type), ``values`` ``(n, d + 1)``, ``targets``,
    ``confidences`` and ``probabilities`` ``(n, classes)``.
    """
    device = model_device(model)
    n = int(images.shape[0])
    batch_size = task.impl.initial_batch_size()  # the full-image pass: forward only
    probs = predict_probabilities(model, images, task.caller, batch_size=batch_size)
    tgt = probs.argmax(dim=1) if targets is None else targets.to("cpu", torch.long)
    confidences = probs.gather(1, tgt.unsqueeze(1)).squeeze(1)
    base = baselines if isinstance(baselines, float) else torch.broadcast_to(baselines, images.shape)
    fmask = task.feature_mask.to(device)
    d = int(task.feature_mask.max()) + 1
    orders = np.zeros((n, d), dtype=smallest_uint(max(0, d - 1)))
    values = np.zeros((n, d + 1), dtype=np.float64)
    for start in range(0, n, task.chunk_size):
        stop = min(n, start + task.chunk_size)
        records = backselect_records(
            model,
            images[start:stop].to(device),
            method=task.impl,
            target=tgt[start:stop].to(device),
            baselines=base if isinstance(base, float) else base[start:stop].to(device),
            feature_mask=fmask,
            threshold=task.threshold,
            start_values=confidences[start:stop].log().to(device),  # known: no full-image pass
            first_example=first_example + start,
            caller=task.caller,
        )
        for j, rec in enumerate(records):
            orders[start + j] = rec.order.cpu().numpy()
            values[start + j] = rec.values.double().cpu().numpy()
        if progress is not None:
            progress(stop - start)
    return {
        "orders": orders,
        "values": values,
        "targets": tgt.numpy().astype(np.int64),
        "confidences": confidences.numpy(),
        "probabilities": probs.numpy(),
    }


def _to_storage(arrays: dict[str, np.ndarray], scores_dtype: str) -> dict[str, np.ndarray]:
    """The arrays of a shard in their storage dtypes (scores as asked, probabilities at least float32)."""
    targets = arrays["targets"]
    top = int(targets.max()) if targets.size else 0
    return {
        "orders": arrays["orders"],
        "values": arrays["values"].astype(scores_dtype),
        "targets": targets.astype(smallest_uint(top)),
        "confidences": arrays["confidences"].astype(np.float64),
        "probabilities": arrays["probabilities"].astype("float64" if scores_dtype == "float64" else "float32"),
    }


# ------------------------------------------------------------------------------------------------ preflight
@torch.no_grad()
def _check_model(model: nn.Module, probe: Tensor, caller: str) -> int:
    """Run the model twice on a small probe batch: it must run, return floating-point ``(batch, classes)`` logits
    and give the same outputs twice; warns if they look like probabilities. Returns the number of classes."""
    try:
        first = model(probe)
    except Exception as err:  # any error of the user's model on this input means the data do not fit it
        raise SISValueError(
            f"The model passed to {caller} cannot run on the data: images of shape {tuple(probe.shape[1:])} "
            f"(C, H, W) raised {type(err).__name__}: {_first_line(err)}. Check that the data fit the model "
            "(channels, image size, normalisation)."
        ) from err
    check_logits(first, probe, caller)
    second = model(probe)
    check_deterministic(first, second, caller)
    warn_if_probabilities(first, caller, stacklevel=4)
    return int(first.shape[1])


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _probe(source: Source, baselines: float | Tensor) -> Tensor:
    """A few images half-way to the baseline: in the model's input range, but none of the full images."""
    images, _ = source.head(_PROBE_IMAGES)
    base = baselines if isinstance(baselines, float) else torch.broadcast_to(baselines[: images.shape[0]], images.shape)
    return (images + base) / 2 if isinstance(base, float) else (images + base.to(images.dtype)) / 2


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class _Run:
    """A validated backward-selection run: the shards, where they come from and where they go."""

    model: nn.Module
    source: Source
    task: _ShardTask
    method: str
    baselines: float | Tensor  # a number, or broadcastable to (N, C, H, W)
    targets: Tensor | None
    shard_size: int
    scores_dtype: str
    checkpoint_dir: str | os.PathLike[str] | None
    backend: str
    show_progress: bool

    @property
    def bounds(self) -> list[tuple[int, int]]:
        return shard_bounds(self.source.n, self.shard_size)

    def shard_baselines(self, start: int, stop: int) -> float | Tensor:
        if isinstance(self.baselines, float):
            return self.baselines
        rows = self.baselines[start:stop] if self.baselines.shape[0] == self.source.n else self.baselines
        return compact_tensor(rows).contiguous()

    def identity(self) -> dict[str, Any]:
        """What the results depend on (compared when a checkpoint is reopened)."""
        from sis_attr import __version__

        impl = self.task.impl
        params: dict[str, Any] = {"feature_mask_sha256": tensor_sha256(self.task.feature_mask)}
        if isinstance(impl, GradientMethod):
            params.update(k=repr(impl.k), shortlist=impl.shortlist, refine=impl.refine, threshold=self.task.threshold)
        if impl.tie_seed is not None:  # recorded only when set: lowest-id checkpoints stay readable
            params["tie_seed"] = impl.tie_seed
        if isinstance(self.baselines, float):
            params["baselines"] = self.baselines
        else:
            params["baselines"] = {"sha256": tensor_sha256(compact_tensor(self.baselines))}
        params["targets"] = "predicted" if self.targets is None else tensor_sha256(self.targets)
        return {
            "n_images": self.source.n,
            "data": {"n_images": self.source.n, "image_shape": list(self.source.image_shape)},
            "model": {
                "class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
                "state_dict_sha256": model_sha256(self.model),
            },
            "method": self.method,
            "parameters": params,
            "storage": {"scores_dtype": self.scores_dtype},
            "package_version": __version__,
        }


def _execute(run: _Run, description: str) -> tuple[SelectionResult, Tensor]:
    """Compute every shard not finished yet (locally or on Ray), then the result (and the full-image probabilities).

    With a checkpoint directory every shard is written as it finishes and the result is read back from the
    store, so an interrupted and resumed run returns exactly what an uninterrupted one does.
    """
    caller = run.task.caller
    bounds = run.bounds
    store = None
    if run.checkpoint_dir is not None:
        store = ShardStore.open(run.checkpoint_dir, run.identity(), shard_size=run.shard_size, caller=caller)
    try:
        finished = store.finished() if store is not None else {}
        if store is not None:
            store.write_array("feature_mask", run.task.feature_mask.numpy())
        kept: dict[int, dict[str, np.ndarray]] = {}
        hashes: dict[int, str] = {i: str(meta["data_sha256"]) for i, meta in finished.items()}
        done = sum(stop - start for i, (start, stop) in enumerate(bounds) if i in finished)
        with progress_bar(run.source.n, description, run.show_progress, unit="image") as bar:
            bar.n = bar.last_print_n = bar.initial = done  # a resumed run: the rate counts this run's images only
            bar.refresh()

            def jobs() -> Iterator[tuple[int, Tensor, str]]:
                """The shards to compute, read in order; finished shards are read to check their data."""
                for i, (images, _) in enumerate(run.source.blocks(bounds)):
                    digest = images_sha256(images) if store is not None else ""
                    if i in finished:
                        if digest != finished[i]["data_sha256"]:
                            start, stop = bounds[i]
                            raise SISValueError(
                                f"{caller} will not mix results: images {start}..{stop - 1} differ from those the "
                                f"checkpoint {str(run.checkpoint_dir)!r} was computed on (another data set, another "
                                "order or another preprocessing). Use another checkpoint directory, or delete this "
                                "one to start over."
                            )
                        continue
                    yield i, images, digest

            def finish(i: int, arrays: dict[str, np.ndarray], digest: str, seconds: float) -> None:
                if store is not None:
                    store.write(i, _to_storage(arrays, run.scores_dtype), data_sha256=digest, seconds=seconds)
                    hashes[i] = digest
                else:
                    kept[i] = arrays

            if run.backend == "ray":
                from sis_attr.overinterpretation._ray import run_shards

                run_shards(run, jobs(), finish, bar)
            else:
                for i, images, digest in jobs():
                    start, stop = bounds[i]
                    tick = time.perf_counter()
                    targets = None if run.targets is None else run.targets[start:stop]
                    arrays = _compute_shard(
                        run.model, images, targets, run.shard_baselines(start, stop), run.task, start, bar.update
                    )
                    finish(i, arrays, digest, time.perf_counter() - tick)
        if store is None:
            meta = _StoreMeta(run.method, run.task.feature_mask, run.source.image_shape)
            parts = [kept[i] for i in range(len(bounds))]
            return meta.result(_concatenate(parts)), torch.from_numpy(_concatenate(parts)["probabilities"])
        store.mark_complete([hashes[i] for i in range(len(bounds))])
        return _load_store(store, caller)
    finally:
        if store is not None:
            store.close()


def _concatenate(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


@dataclass(frozen=True)
class _StoreMeta:
    """What turns shard arrays into a :class:`SelectionResult`."""

    method: str
    feature_mask: Tensor
    image_shape: tuple[int, int, int]

    @classmethod
    def of(cls, store: ShardStore) -> _StoreMeta:
        identity = store.identity
        mask = torch.from_numpy(store.read_array("feature_mask").astype(np.int64))
        c, h, w = (int(v) for v in identity["data"]["image_shape"])
        return cls(str(identity["method"]), mask, (c, h, w))

    def result(self, arrays: dict[str, np.ndarray], first: int = 0) -> SelectionResult:
        return SelectionResult(
            records=_PackedRecords(arrays["orders"], arrays["values"], True, first),
            targets=torch.from_numpy(arrays["targets"].astype(np.int64)),
            confidences=torch.from_numpy(arrays["confidences"].astype(np.float64)),
            n_features=int(self.feature_mask.max()) + 1,
            method=self.method,
            feature_mask=self.feature_mask,
            image_shape=self.image_shape,
        )


def _require_complete(store: ShardStore, caller: str) -> None:
    if not store.manifest.get("complete"):
        missing = store.n_shards - len(store.finished())
        raise SISValueError(
            f"{caller}: the checkpoint {str(store.directory)!r} is not finished ({missing} of {store.n_shards} shards "
            "missing). Rerun the computation with this checkpoint directory to finish it."
        )


def _load_store(store: ShardStore, caller: str) -> tuple[SelectionResult, Tensor]:
    """The whole result of a finished store (read one shard at a time) and its full-image probabilities."""
    _require_complete(store, caller)
    meta = _StoreMeta.of(store)
    parts = [arrays for _, _, arrays in store.iter_shards()]
    arrays = _concatenate(parts)
    return meta.result(arrays), torch.from_numpy(arrays["probabilities"].astype(np.float64))


# ------------------------------------------------------------------------------------------------ validation
def _format_scores_dtype(value: object, caller: str) -> str:
    if value not in SCORE_DTYPES:
        raise param_error("scores_dtype", caller, f"one of {', '.join(map(repr, SCORE_DTYPES))}", repr(value))
    return str(value)


def _format_backend(value: object, caller: str) -> str:
    if value not in ("local", "ray"):
        raise param_error("backend", caller, "'local' or 'ray'", repr(value))
    return str(value)


def _format_checkpoint(value: object, caller: str) -> str | os.PathLike[str] | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise SISTypeError(f"The `checkpoint_dir` parameter of {caller} must be None or a path. Got {value!r} instead.")
    return value


def _default_shard_size(chunk_size: int) -> int:
    """The smallest multiple of ``chunk_size`` holding at least 64 images (shards align with chunks)."""
    return chunk_size * max(1, -(-_SHARD_IMAGES // chunk_size))


def _format_image_source(data: object, caller: str, param: str, *, labels: bool) -> tuple[Source, Tensor | None]:
    """A source of images (and labels): a validated tensor, or a Dataset/DataLoader read block by block."""
    source = format_source(data, caller, param, labels=labels)
    if source is not None:
        return source, None
    images = format_images(data, caller, param)
    return TensorSource(images, None, caller, param), images


def _format_baselines_for(baselines: object, source: Source, images: Tensor | None, caller: str) -> float | Tensor:
    """Baselines checked against the images (a tensor source) or against their shape (a streamed source)."""
    if images is not None:
        return format_image_baselines(baselines, images, caller)
    shape_only = torch.empty((), dtype=torch.float32).expand(source.n, *source.image_shape)
    return format_image_baselines(baselines, shape_only, caller)


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


# ------------------------------------------------------------------------------------------------ public door
def backward_selection(
    model: nn.Module,
    images: Tensor | Dataset[Any] | DataLoader[Any],
    *,
    method: Literal["exact", "gradient"] = "gradient",
    baselines: float | Tensor | None = 0.0,
    feature_mask: Literal["pixel"] | Tensor | None = "pixel",
    target: int | Sequence[int] | Tensor | None = None,
    k: int | float | str | AdaptiveK | AutoK = DEFAULT_K,
    shortlist: int | None = None,
    threshold: float | None = None,
    generator: int | torch.Generator | None = None,
    batch_size: int | None = None,
    chunk_size: int = 64,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    shard_size: int | None = None,
    scores_dtype: Literal["float64", "float32", "float16"] = "float32",
    backend: Literal["local", "ray"] = "local",
    show_progress: bool = True,
) -> SelectionResult:
    """Backward selection on every image, on the confidence of the predicted class (Carter et al., 3.3).

    Each image is reduced feature by feature, always removing (setting to the baseline) the feature whose
    removal leaves the confidence highest, until none remains. The record of every image is kept, so the
    ``fraction`` of features removed last (the 5% pixel-subsets of the paper, :meth:`SelectionResult.keep_masks`)
    and the SIS at any threshold (:meth:`SelectionResult.sis_sizes`) come without running the model again.

    Images are processed in shards of ``shard_size`` images. With ``checkpoint_dir`` each shard is written to
    disk as soon as it is finished (atomically, with a checksum); running the same call again skips the finished
    shards, recomputes partial or corrupted ones and refuses to mix results of another model, data set, method or
    parameters. ``backend="ray"`` runs the shards as Ray tasks (see :doc:`/howto_scale_out`).

    Parameters
    ----------
    model : torch.nn.Module
        Classifier mapping ``(N, C, H, W)`` images to ``(N, classes)`` logits. It is only called: put it in eval
        mode yourself (a warning is issued otherwise). Images follow the model's device. It must be
        deterministic: it runs twice on a few inputs first, and outputs that differ are an error.
    images : Tensor, Dataset or DataLoader
        ``(N, C, H, W)`` float images in the model's input space; or a map-style
        :class:`~torch.utils.data.Dataset` of images (or of ``(image, ...)`` tuples), or a
        :class:`~torch.utils.data.DataLoader` over one in a fixed order, read one shard at a time (memory follows
        the shard, not the data set).
    method : {"exact", "gradient"}, default "gradient"
        ``"gradient"``: :func:`sis_attr.functional.gradient_backselect`, removing ``k`` features per gradient
        step (by default the automatic schedule ``k="auto"``), or with ``shortlist=M`` the exact choice among
        the ``M`` features the gradient ranks first. ``"exact"``: exact BackSelect (``d (d + 1) / 2``
        evaluations per image: 524,800 for a 32x32 image with per-pixel features).
    baselines : float or Tensor, default 0.0
        Value of removed features (0: the mean pixel of normalised data), broadcastable to ``images``; None
        means 0, as in Captum. With a Dataset or DataLoader, one baseline for every image (broadcastable to
        ``(1, C, H, W)``).
    feature_mask : "pixel", None or Tensor, default "pixel"
        ``"pixel"``: all channels of a pixel are one feature (the paper's choice). None: every element is a
        feature. A tensor: integer group ids ``0..d-1`` of shape ``(H, W)``, ``(1 or C, H, W)`` or
        ``(1, 1 or C, H, W)``, shared by all images.
    target : None, int, sequence of int or Tensor, optional
        Class explained per image; the predicted class when None (the paper's choice).
    k : int, float, "adaptive", "auto", AdaptiveK or AutoK, default "auto"
        With ``method="gradient"``: features removed per gradient step (an integer, a fraction of the remaining
        features, or a schedule; see :func:`sis_attr.functional.gradient_backselect`). A fraction such as
        ``0.2`` takes large steps while many features remain and single steps near the end, where the kept
        subsets are decided; ``"adaptive"`` and ``"auto"`` steer by ``threshold``.
    shortlist : int, optional
        With ``method="gradient"``: choose each removal exactly among the ``shortlist`` features the gradient
        ranks first (the gradient-screened exact hybrid); with ``k="auto"``, the single additions screened per
        forward step (None: 32).
    threshold : float, optional
        The SIS threshold that an adaptive or automatic ``k`` steers by (``k="adaptive"`` needs it); ignored
        by the exact method.
    generator : int or torch.Generator, optional
        Tie-breaking. None (default): among equal scores (and equal gradients) the lowest feature id goes first,
        the rule of the paper's exact BackSelect. On a model that ignores many pixels they all tie, so the pixels
        kept to the end are the bottom-right ones, and the 5% subsets and their heatmaps show a border that the
        model does not use. An integer seed (or a generator, which gives one seed) breaks ties in a random
        order of each image's features, drawn from the seed and the image's values: independent of
        ``batch_size``, ``chunk_size``, shards, backend and the image's position. :func:`audit` does this by
        default.
    batch_size : int, optional
        Masked images per forward pass; None measures the fastest on the first chunk (cached per model, shape
        and device).
    chunk_size : int, default 64
        Images per call of the backward-selection routine (bounds memory, sets progress granularity).
    checkpoint_dir : str or os.PathLike, optional
        Directory where each finished shard is written (created if needed); rerunning with it resumes. The
        result is then read back from it, so a resumed run returns exactly what an uninterrupted one does.
    shard_size : int, optional
        Images per shard: the unit of checkpointing, of Ray tasks and of memory for streamed data. Default: the
        smallest multiple of ``chunk_size`` holding at least 64 images.
    scores_dtype : {"float32", "float16", "float64"}, default "float32"
        Precision of the stored scores (log-probabilities) in ``checkpoint_dir``; orders are stored in the
        smallest integer type that holds a feature id. float32 keeps about 7 significant digits.
    backend : {"local", "ray"}, default "local"
        ``"ray"`` runs each shard as a Ray task (``pip install 'sis-attr[ray]'``), one GPU per task where the
        cluster has GPUs, with Ray's retries for failed workers; it joins the running Ray instance
        (``ray.init(...)`` first) or starts a local one.
    show_progress : bool, default True
        Show a progress bar over images (done, rate and time left, across shards and workers).

    Returns
    -------
    SelectionResult
        Records, targets, confidences on the full images, feature mask and shapes (all on the CPU).

    Raises
    ------
    SISValueError, SISTypeError
        For invalid arguments (shapes, classes outside the model's outputs, unknown method...), a model whose
        outputs differ between two identical calls, or a checkpoint directory holding other results.

    Warns
    -----
    SISWarning
        If the model is in training mode, or its outputs look like probabilities rather than logits.

    Examples
    --------
    A two-class model with logits ``[0, sum of the pixels]`` (hand-checkable: removing a pixel of value ``v``
    changes the logit by ``-v``):

    >>> import torch
    >>> from sis_attr.testing import SumGridClassifier
    >>> image = torch.tensor([[[[1.0, 2.0], [0.5, -1.0]]]])
    >>> sel = backward_selection(SumGridClassifier(), image, method="exact", show_progress=False)
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
    source, tensor_images = _format_image_source(images, caller, "images", labels=False)
    impl = format_method(method, k=k, shortlist=shortlist, batch_size=batch_size, caller=caller, generator=generator)
    t = None if threshold is None else format_threshold(threshold, caller)
    chunk_size = format_positive_int(chunk_size, "chunk_size", caller)
    shard = format_optional_positive_int(shard_size, "shard_size", caller)
    show_progress = format_flag(show_progress, "show_progress", caller)
    n = source.n
    fmask = format_image_feature_mask(feature_mask, source.image_shape, caller)
    base = _format_baselines_for(baselines, source, tensor_images, caller)
    if isinstance(target, tuple):  # a sequence of classes, one per image (format_target takes lists)
        target = list(target)
    tgt = None if target is None else format_target(target, n, None, torch.device("cpu"), caller)
    run = _Run(
        model=model,
        source=source,
        task=_ShardTask(impl=impl, feature_mask=fmask, threshold=t, chunk_size=chunk_size, caller=caller),
        method=str(method),
        baselines=base,
        targets=tgt,
        shard_size=shard if shard is not None else _default_shard_size(chunk_size),
        scores_dtype=_format_scores_dtype(scores_dtype, caller),
        checkpoint_dir=_format_checkpoint(checkpoint_dir, caller),
        backend=_format_backend(backend, caller),
        show_progress=show_progress,
    )
    warn_if_training(model, caller)
    n_classes = _check_model(model, _probe(source, base).to(model_device(model)), caller)
    if tgt is not None:
        check_label_range(tgt, n_classes, caller, param="target")
    return _execute(run, f"Backward selection ({method})")[0]
