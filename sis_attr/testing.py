"""Toy models with hand-checkable SIS and data fixtures, for doctests, tutorials and tests (like ``captum.testing``).

* :class:`LinearScore`, :class:`L2NormScore`, :class:`SumGridClassifier`: models whose SIS are known by hand.
* :class:`TinyConvNet`: a small random conv net of any input size.
* :class:`PatchClassifier`: a planted shortcut, a 32x32 classifier that reads one 3x3 patch and ignores every
  other pixel exactly (the tie-breaking control).
* :func:`write_cifar10_batches`: a small directory in the official CIFAR-10 python-batch format, with known
  content (the inverse of :func:`sis_attr.datasets.load_cifar10_batches`).
* :func:`write_cifar10_1`, :func:`write_cifar10_c`: files in the official CIFAR-10.1 and CIFAR-10-C ``.npy``
  formats (the inverses of :func:`sis_attr.datasets.load_cifar10_1` and :func:`sis_attr.datasets.load_cifar10_c`).
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from sis_attr.datasets import _CIFAR_META_FILE, _CIFAR_TEST_FILES, _CIFAR_TRAIN_FILES, CIFAR10_CLASSES
from sis_attr.exceptions import SISTypeError, SISValueError

__all__ = [
    "L2NormScore",
    "LinearScore",
    "PatchClassifier",
    "SumGridClassifier",
    "TinyConvNet",
    "write_cifar10_1",
    "write_cifar10_batches",
    "write_cifar10_c",
]


class LinearScore(nn.Module):
    """``f(x) = x.flatten(1) @ weights``: one output per example, for use with :meth:`score`.

    The effect of removing one feature (baseline 0) is exactly ``-w_i x_i``, so backward selection removes
    features in increasing order of ``w_i x_i``.

    Examples
    --------
    >>> model = LinearScore(torch.tensor([1.0, 2.0]))
    >>> model(torch.ones(2, 2))
    tensor([3., 3.])
    """

    def __init__(self, weights: Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights.flatten().clone())
        self.weights: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1).to(self.weights.dtype) @ self.weights

    @staticmethod
    def score(output: Tensor, target: Tensor) -> Tensor:
        """Use the raw output as the score (pass as ``score_func``)."""
        return output


class L2NormScore(nn.Module):
    """``f(x) = ||x||_2`` per example: a positive score whose SIS are the largest-magnitude entries.

    Examples
    --------
    >>> L2NormScore()(torch.tensor([[3.0, 4.0]]))
    tensor([5.])
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1).norm(dim=1)


class SumGridClassifier(nn.Module):
    """Two-class logits ``[0, sum(x)]`` for 2x2 grids: the probability of class 1 is ``sigmoid(sum(x))``.

    Examples
    --------
    >>> SumGridClassifier()(torch.ones(1, 2, 2))
    tensor([[0., 4.]])
    """

    def forward(self, x: Tensor) -> Tensor:
        s = x.flatten(1).sum(dim=1)
        return torch.stack([torch.zeros_like(s), s], dim=1)


class TinyConvNet(nn.Module):
    """A small random conv net ``(B, C, H, W) -> (B, classes)`` for tests and examples.

    Examples
    --------
    >>> net = TinyConvNet(in_channels=3, classes=4, seed=0)
    >>> net(torch.zeros(2, 3, 6, 6)).shape
    torch.Size([2, 4])
    """

    def __init__(self, in_channels: int = 3, classes: int = 10, width: int = 8, seed: int | None = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, classes)
        if gen is not None:
            with torch.no_grad():
                for name, p in self.named_parameters():
                    scale = 0.0 if name.endswith("bias") else 2.0 / max(1, p[0].numel()) ** 0.5
                    p.copy_(torch.randn(p.shape, generator=gen) * scale)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))


class PatchClassifier(nn.Module):
    """Ten logits from one 3x3 patch of a ``(B, 3, 32, 32)`` image (rows 8-10, columns 12-14) and nothing else.

    Every other pixel has exactly zero effect on the output and on its gradient, so backward selection ties on
    all of them: the planted shortcut on which lowest-id tie-breaking keeps the bottom-right pixels. On the
    images of :meth:`images` (positive patch values) every patch pixel supports class 0, so the patch is kept
    to the end.

    Examples
    --------
    >>> model = PatchClassifier()
    >>> x = PatchClassifier.images(2, seed=0)
    >>> model(x).argmax(1).tolist()
    [0, 0]
    >>> y = x.clone()
    >>> y[:, :, 20:] = 0.0  # outside the patch: no effect
    >>> torch.equal(model(y), model(x))
    True
    """

    PATCH = (slice(8, 11), slice(12, 15))

    def __init__(self) -> None:
        super().__init__()
        weight = -torch.ones(10, 27)
        weight[0] = 1.0
        self.weight = nn.Parameter(weight)

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, self.PATCH[0], self.PATCH[1]].flatten(1) @ self.weight.t()

    @classmethod
    def images(cls, n: int, seed: int = 0) -> Tensor:
        """``n`` images of standard-normal pixels whose patch holds positive values (classified as class 0)."""
        images = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
        images[:, :, cls.PATCH[0], cls.PATCH[1]] = images[:, :, cls.PATCH[0], cls.PATCH[1]].abs() + 0.5
        return images


class _Py2StringPickler(pickle._Pickler):
    """Protocol-2 pickler that writes ``bytes`` as Python-2 ``str`` (``SHORT_BINSTRING``/``BINSTRING``), exactly
    like the official CIFAR-10 batches, so ``pickle.load(fh, encoding="bytes")`` gives ``bytes`` keys and
    ``encoding="latin1"`` gives ``str`` keys, and the file holds no ``_codecs.encode`` global."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)  # type: ignore[attr-defined]
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)  # type: ignore[attr-defined]
        self.memoize(obj)  # type: ignore[attr-defined]

    dispatch[bytes] = _save_py2_str  # type: ignore[assignment]


def _write_pickle(path: Path, obj: object) -> None:
    with path.open("wb") as fh:
        _Py2StringPickler(fh, protocol=2).dump(obj)


def write_cifar10_batches(
    directory: str | os.PathLike[str],
    images: Tensor,
    labels: Tensor,
    *,
    split: Literal["test", "train"] = "test",
    class_names: Sequence[str] = CIFAR10_CLASSES,
) -> list[Path]:
    """Write images in the official CIFAR-10 python-batch format (the inverse of :func:`load_cifar10_batches`).

    Bytes are written as Python-2 strings at pickle protocol 2, exactly like the official batches, so the files
    also load with ``pickle.load(fh, encoding="bytes")`` in other CIFAR-10 tools.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if needed. Existing batch files of the same names are overwritten.
    images : torch.Tensor
        ``(N, 3, 32, 32)`` images, either uint8 or floating point in ``[0, 1]`` (rounded to ``round(255 x)``).
    labels : torch.Tensor
        ``(N,)`` integer labels in ``0..len(class_names) - 1``.
    split : {"test", "train"}, default "test"
        ``"test"`` writes ``test_batch``; ``"train"`` splits the images in order over ``data_batch_1`` ..
        ``data_batch_5`` (as evenly as possible).
    class_names : sequence of str, default CIFAR10_CLASSES
        Written to ``batches.meta``.

    Returns
    -------
    list of pathlib.Path
        The files written, ``batches.meta`` last.

    Raises
    ------
    SISValueError, SISTypeError
        If the images are not ``(N, 3, 32, 32)`` uint8 or float in ``[0, 1]``, or the labels do not fit them.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     files = write_cifar10_batches(tmp, torch.zeros(6, 3, 32, 32), torch.zeros(6, dtype=torch.long),
    ...                                   split="train")
    ...     [f.name for f in files]
    ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'batches.meta']
    """
    caller = "write_cifar10_batches"
    if split not in ("test", "train"):
        raise SISValueError(f"The `split` parameter of {caller} must be 'test' or 'train'. Got {split!r} instead.")
    data = _cifar_uint8(images, caller)
    if not isinstance(labels, Tensor) or labels.shape != (images.shape[0],) or labels.is_floating_point():
        got_labels = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise SISValueError(
            f"The `labels` parameter of {caller} must be an integer tensor of shape ({images.shape[0]},). "
            f"Got {got_labels} instead."
        )
    names = [str(n) for n in class_names]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(names)):
        raise SISValueError(
            f"The `labels` parameter of {caller} must lie in 0..{len(names) - 1} (one per class name). "
            f"Got values from {int(labels.min())} to {int(labels.max())} instead."
        )
    rows = data.reshape(data.shape[0], -1)
    label_list = [int(v) for v in labels.tolist()]
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if split == "test":
        chunks = [(_CIFAR_TEST_FILES[0], np.arange(rows.shape[0]), "testing batch 1 of 1")]
    else:
        chunks = [
            (name, idx, f"training batch {i + 1} of 5")
            for i, (name, idx) in enumerate(
                zip(_CIFAR_TRAIN_FILES, np.array_split(np.arange(rows.shape[0]), 5), strict=True)
            )
        ]
    for name, idx, batch_label in chunks:
        batch = {
            b"batch_label": batch_label.encode(),
            b"labels": [label_list[i] for i in idx],
            b"data": np.ascontiguousarray(rows[idx]),
            b"filenames": [f"image_{i}.png".encode() for i in idx],
        }
        path = root / name
        _write_pickle(path, batch)
        written.append(path)
    meta = {b"num_cases_per_batch": int(rows.shape[0]), b"label_names": [n.encode() for n in names], b"num_vis": 3072}
    meta_path = root / _CIFAR_META_FILE
    _write_pickle(meta_path, meta)
    written.append(meta_path)
    return written


def _cifar_uint8(images: object, caller: str, param: str = "images") -> np.ndarray:
    """``(N, 3, 32, 32)`` uint8, or float in ``[0, 1]`` (rounded to ``round(255 x)``), as a uint8 NCHW array."""
    if not isinstance(images, Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (3, 32, 32):
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise SISValueError(f"The `{param}` parameter of {caller} must have shape (N, 3, 32, 32). Got {got} instead.")
    if images.dtype == torch.uint8:
        data = images.detach().cpu()
    elif images.is_floating_point():
        x = images.detach().cpu()
        if x.numel() and (x.min() < 0 or x.max() > 1 or not torch.isfinite(x).all()):
            raise SISValueError(
                f"The `{param}` parameter of {caller} must be uint8 or floating point in [0, 1]. "
                f"Got values from {float(x.min())} to {float(x.max())} instead."
            )
        data = (x * 255).round().to(torch.uint8)
    else:
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must be uint8 or floating point. Got dtype {images.dtype} instead."
        )
    return data.numpy()


def _cifar_label_array(labels: object, n: int, caller: str) -> np.ndarray:
    if (
        not isinstance(labels, Tensor)
        or labels.shape != (n,)
        or labels.is_floating_point()
        or labels.dtype == torch.bool
    ):
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise SISValueError(
            f"The `labels` parameter of {caller} must be an integer tensor of shape ({n},). Got {got} instead."
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= len(CIFAR10_CLASSES)):
        raise SISValueError(
            f"The `labels` parameter of {caller} must lie in 0..{len(CIFAR10_CLASSES) - 1}. "
            f"Got values from {int(labels.min())} to {int(labels.max())} instead."
        )
    return labels.detach().cpu().numpy()


def write_cifar10_1(
    directory: str | os.PathLike[str],
    images: Tensor,
    labels: Tensor,
    *,
    version: Literal["v4", "v6"] = "v6",
) -> list[Path]:
    """Write images as the official CIFAR-10.1 ``.npy`` pair (the inverse of :func:`load_cifar10_1`).

    ``cifar10.1_<version>_data.npy`` holds a uint8 ``(N, 32, 32, 3)`` array and ``cifar10.1_<version>_labels.npy``
    the ``N`` labels as int32, the dtypes of the official files.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if needed; files of the same names are overwritten.
    images : torch.Tensor
        ``(N, 3, 32, 32)`` images, uint8 or floating point in ``[0, 1]`` (rounded to ``round(255 x)``).
    labels : torch.Tensor
        ``(N,)`` integer labels in ``0..9``.
    version : {"v6", "v4"}, default "v6"
        Goes into the file names.

    Returns
    -------
    list of pathlib.Path
        The data file, then the labels file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     [p.name for p in write_cifar10_1(tmp, torch.zeros(2, 3, 32, 32), torch.tensor([0, 1]))]
    ['cifar10.1_v6_data.npy', 'cifar10.1_v6_labels.npy']
    """
    caller = "write_cifar10_1"
    if version not in ("v4", "v6"):
        raise SISValueError(f"The `version` parameter of {caller} must be 'v6' or 'v4'. Got {version!r} instead.")
    data = np.ascontiguousarray(_cifar_uint8(images, caller).transpose(0, 2, 3, 1))
    label_array = _cifar_label_array(labels, data.shape[0], caller).astype(np.int32)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    paths = [root / f"cifar10.1_{version}_data.npy", root / f"cifar10.1_{version}_labels.npy"]
    np.save(paths[0], data)
    np.save(paths[1], label_array)
    return paths


def write_cifar10_c(
    directory: str | os.PathLike[str],
    corruptions: Mapping[str, Tensor],
    labels: Tensor,
) -> list[Path]:
    """Write corrupted images as an official CIFAR-10-C folder (the inverse of :func:`load_cifar10_c`).

    Each ``<corruption>.npy`` holds a uint8 ``(5 n, 32, 32, 3)`` array, severity 1 first; ``labels.npy`` holds the
    ``n`` labels repeated for the 5 severities (``5 n`` entries, uint8, as in the official folder).

    Parameters
    ----------
    directory : str or os.PathLike
        Created if needed; files of the same names are overwritten.
    corruptions : mapping of str to torch.Tensor
        Corruption name (the file name without ``.npy``) to ``(5 n, 3, 32, 32)`` images, uint8 or floating point
        in ``[0, 1]``: the ``n`` images at severity 1, then the same at severity 2, ... up to 5.
    labels : torch.Tensor
        ``(n,)`` integer labels in ``0..9``, of the ``n`` images of each severity.

    Returns
    -------
    list of pathlib.Path
        The corruption files in the mapping's order, then ``labels.npy``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     files = write_cifar10_c(tmp, {"fog": torch.zeros(10, 3, 32, 32)}, torch.tensor([4, 2]))
    ...     [p.name for p in files], np.load(files[-1]).tolist()
    (['fog.npy', 'labels.npy'], [4, 2, 4, 2, 4, 2, 4, 2, 4, 2])
    """
    caller = "write_cifar10_c"
    if not isinstance(corruptions, Mapping) or not corruptions:
        raise SISTypeError(
            f"The `corruptions` parameter of {caller} must be a non-empty mapping of corruption names to images. "
            f"Got {type(corruptions).__name__ if not isinstance(corruptions, Mapping) else 'an empty mapping'} "
            "instead."
        )
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        got = f"shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise SISValueError(
            f"The `labels` parameter of {caller} must be a 1-d integer tensor, one label per image of a severity. "
            f"Got {got} instead."
        )
    n = int(labels.shape[0])
    label_array = _cifar_label_array(labels, n, caller)
    arrays: dict[str, np.ndarray] = {}
    for name, images in corruptions.items():
        if not isinstance(name, str) or not name or Path(name).name != name or name == "labels":
            raise SISValueError(
                f"The `corruptions` parameter of {caller} must have plain file names as keys (not 'labels'). "
                f"Got {name!r} instead."
            )
        data = np.ascontiguousarray(_cifar_uint8(images, caller, param="corruptions").transpose(0, 2, 3, 1))
        if data.shape[0] != 5 * n:
            raise SISValueError(
                f"The `corruptions` parameter of {caller} must hold 5 * {n} = {5 * n} images for {name!r} (the {n} "
                f"labelled images at each of the 5 severities). Got {data.shape[0]} instead."
            )
        arrays[name] = data
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in arrays.items():
        np.save(root / f"{name}.npy", data)
        written.append(root / f"{name}.npy")
    np.save(root / "labels.npy", np.tile(label_array, 5).astype(np.uint8))
    written.append(root / "labels.npy")
    return written
