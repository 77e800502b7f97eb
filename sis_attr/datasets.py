"""Real-data loaders that return torch tensors, and the normalisation used by the pretrained CIFAR-10 models.

Every loader returns a :class:`LabelledImages` named tuple ``(images, labels, class_names)``: ``images`` is a
float32 ``(N, C, H, W)`` tensor with values in ``[0, 1]`` (unless a loader's ``dtype`` asks for raw ``uint8``),
``labels`` an int64 ``(N,)`` tensor and ``class_names`` a tuple of strings indexed by label.

Nothing here downloads anything. A directory of real data (CIFAR-10 batches, pretrained checkpoints) can be
named once in the environment variable ``SIS_ATTR_SHARED_DATA`` (see :func:`shared_data_dir`); the only data
set bundled with a dependency is scikit-learn's 8x8 digits (:func:`load_digits_images`). The out-of-distribution
test sets CIFAR-10.1 (:func:`load_cifar10_1`) and CIFAR-10-C (:func:`load_cifar10_c`) are read from their
official ``.npy`` files, in the convention of :func:`load_cifar10_batches`.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sis_attr._core.validation import format_optional_positive_int
from sis_attr.exceptions import DatasetNotFoundError, SISTypeError, SISValueError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_C_CORRUPTIONS",
    "CIFAR10_MEAN_STD_AKAMASTER",
    "SHARED_DATA_ENV_VAR",
    "LabelledImages",
    "TensorImageDataset",
    "load_cifar10_1",
    "load_cifar10_batches",
    "load_cifar10_c",
    "load_digits_images",
    "load_image_folder",
    "load_npz_images",
    "normalize",
    "shared_data_dir",
]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""The ten CIFAR-10 class names, in label order (as in the official ``batches.meta``)."""

CIFAR10_MEAN_STD_AKAMASTER: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
)
"""``(mean, std)`` per RGB channel used by the akamaster CIFAR-10 ResNet checkpoints (ImageNet statistics).

Those checkpoints expect ``normalize(x / 255, *CIFAR10_MEAN_STD_AKAMASTER)``.
"""

SHARED_DATA_ENV_VAR = "SIS_ATTR_SHARED_DATA"
"""Name of the environment variable that overrides the location of the shared data directory."""

_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILES = ("test_batch",)
_CIFAR_META_FILE = "batches.meta"
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class LabelledImages(NamedTuple):
    """Images, integer labels and class names, as returned by every loader in :mod:`sis_attr.datasets`.

    A named tuple, so ``images, labels, class_names = load_digits_images()`` works.
    """

    images: Tensor
    """``(N, C, H, W)`` images: float32 in ``[0, 1]``, or ``uint8`` in ``0..255`` where a loader says so."""
    labels: Tensor
    """``(N,)`` int64 labels."""
    class_names: tuple[str, ...]
    """Class names indexed by label."""


# --------------------------------------------------------------------------------------------------------------
# Shared data directory
# --------------------------------------------------------------------------------------------------------------


def shared_data_dir(*, fallback: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the directory of real data named by ``$SIS_ATTR_SHARED_DATA``, or ``None`` where there is none.

    The directory is, in order of precedence:

    1. the path in the environment variable ``SIS_ATTR_SHARED_DATA``, if it is set (``None`` is returned when it
       is set but is not a directory, so that a wrong setting is never silently replaced by another directory);
    2. ``fallback``, if it is given and is a directory (for instance the data directory beside a source
       checkout, which a script can compute from its own ``__file__``).

    Parameters
    ----------
    fallback : str or os.PathLike, optional
        Where to look when the environment variable is not set.

    Returns
    -------
    pathlib.Path or None
        The absolute path of the directory, or ``None`` where it does not exist.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     found = shared_data_dir(fallback=tmp)
    ...     found == Path(tmp).resolve() or SHARED_DATA_ENV_VAR in os.environ
    True
    """
    override = os.environ.get(SHARED_DATA_ENV_VAR)
    if override:
        path = Path(override).expanduser()
        return path.resolve() if path.is_dir() else None
    if fallback is None:
        return None
    candidate = Path(fallback).expanduser()
    return candidate.resolve() if candidate.is_dir() else None


# --------------------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------------------


def _channel_stats(values: Sequence[float] | Tensor, name: str, caller: str, like: Tensor) -> Tensor:
    """Return ``values`` as a ``(1, C, 1, 1)``-broadcastable tensor with ``like``'s device and dtype."""
    try:
        stats = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise SISTypeError(
            f"The `{name}` parameter of {caller} must be a sequence of numbers (one per channel). "
            f"Got {type(values).__name__} instead."
        ) from err
    if stats.dim() != 1 or stats.numel() == 0:
        raise SISValueError(
            f"The `{name}` parameter of {caller} must be a 1-d sequence with one entry per channel. "
            f"Got shape {tuple(stats.shape)} instead."
        )
    if not torch.isfinite(stats).all():
        raise SISValueError(f"The `{name}` parameter of {caller} must be finite. Got {stats.tolist()} instead.")
    return stats


def normalize(images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """Normalise images per channel: ``(images - mean) / std``, like ``torchvision.transforms.Normalize``.

    Parameters
    ----------
    images : torch.Tensor
        Floating-point images of shape ``(N, C, H, W)`` or ``(C, H, W)``.
    mean, std : sequence of float or torch.Tensor
        One value per channel. ``std`` must be positive.

    Returns
    -------
    torch.Tensor
        A new tensor of the same shape, device and dtype as ``images``.

    Raises
    ------
    SISTypeError
        If ``images`` is not a floating-point tensor.
    SISValueError
        If the number of channels does not match ``mean``/``std`` or ``std`` has a non-positive entry.

    See Also
    --------
    sis_attr.models.NormalizedModel : the same normalisation as the first step of a model.

    Examples
    --------
    >>> x = torch.full((1, 3, 2, 2), 0.5)
    >>> y = normalize(x, *CIFAR10_MEAN_STD_AKAMASTER)
    >>> [round(v, 4) for v in y[0, :, 0, 0].tolist()]
    [0.0655, 0.1964, 0.4178]
    """
    caller = "normalize"
    if not isinstance(images, Tensor) or not images.is_floating_point():
        got = f"dtype {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
        raise SISTypeError(
            f"The `images` parameter of {caller} must be a floating-point tensor (convert uint8 images with "
            f"`images.float() / 255`). Got {got} instead."
        )
    if images.dim() not in (3, 4):
        raise SISValueError(
            f"The `images` parameter of {caller} must have shape (N, C, H, W) or (C, H, W). "
            f"Got shape {tuple(images.shape)} instead."
        )
    mean_t = _channel_stats(mean, "mean", caller, images)
    std_t = _channel_stats(std, "std", caller, images)
    channels = images.shape[-3]
    for name, stats in (("mean", mean_t), ("std", std_t)):
        if stats.numel() != channels:
            raise SISValueError(
                f"The `{name}` parameter of {caller} must have one entry per channel ({channels}). "
                f"Got {stats.numel()} entries instead."
            )
    if (std_t <= 0).any():
        raise SISValueError(f"The `std` parameter of {caller} must be positive. Got {std_t.tolist()} instead.")
    return (images - mean_t[:, None, None]) / std_t[:, None, None]


# --------------------------------------------------------------------------------------------------------------
# Dataset wrapper
# --------------------------------------------------------------------------------------------------------------


class TensorImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """A map-style dataset over an image tensor and a label tensor, with an optional per-item transform.

    Parameters
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` images.
    labels : torch.Tensor
        ``(N,)`` integer labels.
    transform : callable, optional
        Applied to each ``(C, H, W)`` image when it is read.

    Examples
    --------
    >>> ds = TensorImageDataset(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    >>> len(ds), ds[2][0].shape, int(ds[2][1])
    (4, torch.Size([1, 8, 8]), 2)
    """

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor] | None = None) -> None:
        caller = "TensorImageDataset"
        if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
            raise SISTypeError(
                f"The `images` and `labels` parameters of {caller} must be tensors. "
                f"Got {type(images).__name__} and {type(labels).__name__} instead."
            )
        if images.dim() < 1 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
            raise SISValueError(
                f"The `images` and `labels` parameters of {caller} must have shapes (N, ...) and (N,). "
                f"Got {tuple(images.shape)} and {tuple(labels.shape)} instead."
            )
        if labels.is_floating_point() or labels.is_complex():
            raise SISTypeError(
                f"The `labels` parameter of {caller} must be an integer tensor. Got dtype {labels.dtype} instead."
            )
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


# --------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches
# --------------------------------------------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only reconstructs numpy arrays: CIFAR batches need nothing else, and arbitrary globals in a
    pickle would run arbitrary code."""

    _ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR-10 batch file")
        # NumPy 2 renamed numpy.core to numpy._core; map either name to the one this NumPy has (and so avoid
        # NumPy 2's deprecation shim for files pickled by NumPy 1, such as the official CIFAR-10 batches).
        if module.endswith(".multiarray"):
            module = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
        return super().find_class(module, name)


def _read_pickle(path: Path, caller: str) -> dict[bytes, Any]:
    try:
        with path.open("rb") as fh:
            obj = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as err:
        raise SISValueError(
            f"{caller} could not read {path}: it is not a CIFAR-10 python batch (a Python-2 pickle of a dict). "
            f"Reason: {err}"
        ) from err
    if not isinstance(obj, dict):
        raise SISValueError(
            f"{caller} expected {path} to hold a dict (CIFAR-10 python batch format). Got {type(obj).__name__} instead."
        )
    # Accept files written with str keys too (pickled under Python 3).
    return {(k.encode() if isinstance(k, str) else k): v for k, v in obj.items()}


def _read_cifar_batch(path: Path, caller: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_pickle(path, caller)
    if b"data" not in batch or b"labels" not in batch:
        raise SISValueError(
            f"{caller} expected {path} to hold the keys b'data' and b'labels' (CIFAR-10 python batch format). "
            f"Got keys {sorted(batch)} instead."
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if labels.size == 0:  # an empty list reads as float64
        labels = labels.astype(np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise SISValueError(
            f"{caller} expected b'data' in {path} to be a uint8 array of shape (N, 3072). "
            f"Got dtype {data.dtype} and shape {data.shape} instead."
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise SISValueError(
            f"{caller} expected b'labels' in {path} to be {data.shape[0]} integers. "
            f"Got an array of dtype {labels.dtype} and shape {labels.shape} instead."
        )
    return data, labels.astype(np.int64)


def _check_dtype(dtype: object, caller: str) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not (dtype == torch.uint8 or dtype.is_floating_point):
        raise SISTypeError(
            f"The `dtype` parameter of {caller} must be torch.uint8 or a floating-point torch dtype. "
            f"Got {dtype!r} instead."
        )
    return dtype


def _to_output(images_uint8_nchw: np.ndarray, dtype: torch.dtype) -> Tensor:
    images = torch.from_numpy(np.ascontiguousarray(images_uint8_nchw))
    if dtype == torch.uint8:
        return images
    return images.to(dtype).div_(255.0)


def load_cifar10_batches(
    directory: str | os.PathLike[str],
    split: Literal["test", "train"] = "test",
    limit: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> LabelledImages:
    """Load CIFAR-10 from the official python-batch directory (``cifar-10-batches-py``).

    The directory holds ``test_batch``, ``data_batch_1`` .. ``data_batch_5`` and ``batches.meta``: Python-2
    pickles of dicts whose ``b"data"`` is an ``(N, 3072)`` uint8 array (each row the red, green then blue
    32x32 plane) and whose ``b"labels"`` is a list of ``N`` integers. Directories holding fewer images per batch
    (such as a subset written by :func:`sis_attr.testing.write_cifar10_batches`) load the same way.

    The pickles are read with an unpickler that only admits numpy arrays, so a tampered file cannot run code.

    Parameters
    ----------
    directory : str or os.PathLike
        The ``cifar-10-batches-py`` directory.
    split : {"test", "train"}, default "test"
        ``"test"`` reads ``test_batch``; ``"train"`` reads ``data_batch_1`` .. ``data_batch_5`` in order (the
        torchvision order).
    limit : int, optional
        Keep only the first ``limit`` images (in file order). Batches past the limit are not read.
    dtype : torch.dtype, default torch.float32
        ``torch.uint8`` returns the raw bytes (``0..255``); a floating-point dtype returns ``bytes / 255``.

    Returns
    -------
    LabelledImages
        ``images`` of shape ``(N, 3, 32, 32)``, int64 ``labels`` of shape ``(N,)`` and the class names read from
        ``batches.meta``.

    Raises
    ------
    DatasetNotFoundError
        If ``directory`` or one of the files of ``split`` (or ``batches.meta``) does not exist. It subclasses
        :class:`FileNotFoundError`.
    SISValueError
        If a file is not in the CIFAR-10 python-batch format, or ``split``/``limit`` is invalid.

    References
    ----------
    .. [1] A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech. report, U. Toronto, 2009.

    Examples
    --------
    A directory written by :func:`sis_attr.testing.write_cifar10_batches` (the real one is read the same way):

    >>> import tempfile
    >>> from sis_attr.testing import write_cifar10_batches
    >>> x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_cifar10_batches(tmp, x, torch.arange(5), split="test")
    ...     images, labels, class_names = load_cifar10_batches(tmp, "test", dtype=torch.uint8)
    >>> torch.equal(images, x), labels.tolist(), class_names[:2]
    (True, [0, 1, 2, 3, 4], ('airplane', 'automobile'))
    """
    caller = "load_cifar10_batches"
    if split not in ("test", "train"):
        raise SISValueError(f"The `split` parameter of {caller} must be 'test' or 'train'. Got {split!r} instead.")
    limit = format_optional_positive_int(limit, "limit", caller)
    dtype = _check_dtype(dtype, caller)
    root = Path(directory)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"The `directory` parameter of {caller} must be an existing cifar-10-batches-py directory. "
            f"Got {str(root)!r}, which does not exist or is not a directory."
        )
    names = _CIFAR_TEST_FILES if split == "test" else _CIFAR_TRAIN_FILES
    missing = [n for n in (*names, _CIFAR_META_FILE) if not (root / n).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{caller} expected the CIFAR-10 python batch files {[*names, _CIFAR_META_FILE]} in {str(root)!r}. "
            f"Missing: {missing}. Is this a cifar-10-batches-py directory?"
        )
    class_names = _read_cifar_meta(root / _CIFAR_META_FILE, caller)

    data_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    count = 0
    for name in names:
        if limit is not None and count >= limit:
            break
        data, labels = _read_cifar_batch(root / name, caller)
        data_parts.append(data)
        label_parts.append(labels)
        count += data.shape[0]
    data = np.concatenate(data_parts)[:limit]
    labels = np.concatenate(label_parts)[:limit]
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise SISValueError(
            f"{caller} found labels outside 0..{len(class_names) - 1} in {str(root)!r}: "
            f"min {labels.min()}, max {labels.max()}."
        )
    images = data.reshape(-1, 3, 32, 32)
    return LabelledImages(_to_output(images, dtype), torch.from_numpy(labels), class_names)


def _read_cifar_meta(path: Path, caller: str) -> tuple[str, ...]:
    meta = _read_pickle(path, caller)
    names = meta.get(b"label_names")
    if not isinstance(names, (list, tuple)) or not names:
        raise SISValueError(
            f"{caller} expected {path} to hold a non-empty list under b'label_names' (CIFAR-10 batches.meta). "
            f"Got keys {sorted(meta)} instead."
        )
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


# --------------------------------------------------------------------------------------------------------------
# .npz arrays
# --------------------------------------------------------------------------------------------------------------


def _array_to_images(array: np.ndarray, layout: Literal["auto", "NHWC", "NCHW"], caller: str, source: str) -> Tensor:
    """Convert an image array to float32 NCHW in [0, 1] following the rules of :func:`load_npz_images`."""
    if array.ndim == 3:  # (N, H, W): add a channel axis where the resolved layout has it
        channels_last = layout == "NHWC" or (layout == "auto" and array.dtype == np.uint8)
        array = array[..., None] if channels_last else array[:, None, :, :]
    if array.ndim != 4:
        raise SISValueError(
            f"{caller} expected the images in {source} to have shape (N, H, W, C), (N, C, H, W) or (N, H, W). "
            f"Got shape {array.shape} instead."
        )
    if array.dtype == np.uint8:
        resolved = "NHWC" if layout == "auto" else layout
        images = torch.from_numpy(np.ascontiguousarray(array)).float().div_(255.0)
    elif np.issubdtype(array.dtype, np.floating):
        resolved = "NCHW" if layout == "auto" else layout
        images = torch.from_numpy(np.ascontiguousarray(array)).float()
        if images.numel() and (not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise SISValueError(
                f"{caller} expected floating-point images in {source} to lie in [0, 1]. "
                f"Got values from {float(images.min())} to {float(images.max())} instead."
            )
    else:
        raise SISTypeError(
            f"{caller} expected the images in {source} to be uint8 (0..255) or floating point ([0, 1]). "
            f"Got dtype {array.dtype} instead."
        )
    if resolved == "NHWC":
        images = images.permute(0, 3, 1, 2).contiguous()
    return images


def _labels_from_array(array: np.ndarray, n: int, caller: str, source: str) -> Tensor:
    if array.ndim != 1 or array.shape[0] != n or not np.issubdtype(array.dtype, np.integer):
        raise SISValueError(
            f"{caller} expected the labels in {source} to be {n} integers (shape ({n},)). "
            f"Got dtype {array.dtype} and shape {array.shape} instead."
        )
    if n and array.min() < 0:
        raise SISValueError(f"{caller} expected non-negative labels in {source}. Got minimum {array.min()} instead.")
    return torch.from_numpy(array.astype(np.int64))


def load_npz_images(
    path: str | os.PathLike[str] | BinaryIO,
    images_key: str = "X",
    labels_key: str = "y",
    *,
    layout: Literal["auto", "NHWC", "NCHW"] = "auto",
    class_names: Sequence[str] | None = None,
) -> LabelledImages:
    """Load labelled images from a NumPy ``.npz`` archive (read with ``allow_pickle=False``).

    Rules for the image array (``layout="auto"``):

    * ``uint8`` arrays hold values ``0..255`` in ``(N, H, W, C)`` (HWC, the usual on-disk layout); they are
      divided by 255 and moved to ``(N, C, H, W)``;
    * floating-point arrays are already ``(N, C, H, W)`` with values in ``[0, 1]`` (anything else is an error,
      so that normalised data is never mistaken for images) and are cast to float32;
    * a 3-d array ``(N, H, W)`` is a single-channel image stack.

    ``layout="NHWC"`` or ``"NCHW"`` overrides the layout for either dtype. Labels must be a 1-d integer array
    with one entry per image.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        The ``.npz`` file.
    images_key, labels_key : str, default "X", "y"
        Names of the image and label arrays in the archive.
    layout : {"auto", "NHWC", "NCHW"}, default "auto"
        Memory layout of the image array (see above).
    class_names : sequence of str, optional
        Defaults to the archive's ``class_names`` array if it has one, otherwise to ``"0"``, ``"1"``, ... up to
        the largest label.

    Returns
    -------
    LabelledImages
        float32 images ``(N, C, H, W)`` in ``[0, 1]``, int64 labels, class names.

    Raises
    ------
    DatasetNotFoundError
        If ``path`` does not exist.
    SISValueError
        If a key is missing or the arrays break the rules above.

    Examples
    --------
    >>> import io
    >>> buf = io.BytesIO()
    >>> np.savez(buf, X=np.full((2, 4, 4, 3), 255, dtype=np.uint8), y=np.array([1, 0]))
    >>> _ = buf.seek(0)
    >>> images, labels, names = load_npz_images(buf)
    >>> tuple(images.shape), float(images.max()), labels.tolist(), names
    ((2, 3, 4, 4), 1.0, [1, 0], ('0', '1'))
    """
    caller = "load_npz_images"
    if layout not in ("auto", "NHWC", "NCHW"):
        raise SISValueError(
            f"The `layout` parameter of {caller} must be 'auto', 'NHWC' or 'NCHW'. Got {layout!r} instead."
        )
    source = str(path) if isinstance(path, (str, os.PathLike)) else "the archive"
    if isinstance(path, (str, os.PathLike)) and not Path(path).is_file():
        raise DatasetNotFoundError(f"The `path` parameter of {caller} must be an existing .npz file. Got {source!r}.")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # a corrupt or truncated archive
        raise SISValueError(f"{caller} could not read {source} as a .npz archive: {err}") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise SISValueError(f"{caller} expected {source} to be a .npz archive, not a single .npy array.")
    with archive:
        keys = list(archive.files)
        for param, key in (("images_key", images_key), ("labels_key", labels_key)):
            if key not in keys:
                raise SISValueError(
                    f"The `{param}` parameter of {caller} must name an array in {source}. "
                    f"Got {key!r}; the archive holds {keys}."
                )
        images = _array_to_images(_npz_array(archive, images_key, caller, source), layout, caller, source)
        labels = _labels_from_array(_npz_array(archive, labels_key, caller, source), images.shape[0], caller, source)
        if class_names is None and "class_names" in keys:
            class_names = [str(n) for n in _npz_array(archive, "class_names", caller, source).tolist()]
    names = _resolve_class_names(class_names, labels, caller)
    return LabelledImages(images, labels, names)


def _npz_array(archive: Any, key: str, caller: str, source: str) -> np.ndarray:
    """One array of an open archive; a corrupt member or an array of Python objects is an SISValueError."""
    try:
        return np.asarray(archive[key])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        why = "it holds Python objects, which are never unpickled" if "allow_pickle" in str(err) else str(err)
        raise SISValueError(f"{caller} could not read the array {key!r} of {source}: {why}.") from err


def _resolve_class_names(class_names: Sequence[str] | None, labels: Tensor, caller: str) -> tuple[str, ...]:
    n_classes = int(labels.max()) + 1 if labels.numel() else 0
    if class_names is None:
        return tuple(str(i) for i in range(n_classes))
    names = tuple(str(n) for n in class_names)
    if len(names) < n_classes:
        raise SISValueError(
            f"The `class_names` parameter of {caller} must name every label (0..{n_classes - 1}). "
            f"Got {len(names)} names instead."
        )
    return names


# --------------------------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------------------------


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    mode: Literal["RGB", "L"] = "RGB",
    extensions: Sequence[str] = _IMAGE_EXTENSIONS,
) -> LabelledImages:
    """Load a class-per-subfolder image tree (``root/<class>/<image>``, as torchvision's ``ImageFolder``).

    Class names are the subfolder names in sorted order and label ``i`` is the ``i``-th of them; within a class
    the files are read in sorted order. Files are decoded with Pillow (a dependency of matplotlib) and converted
    to ``mode``. Every image must have the same size. Other files and hidden entries are ignored.

    Parameters
    ----------
    root : str or os.PathLike
        Directory whose subdirectories are the classes.
    mode : {"RGB", "L"}, default "RGB"
        Pillow mode: 3-channel colour or 1-channel grey.
    extensions : sequence of str, default (".png", ".jpg", ".jpeg")
        File name suffixes to read (case-insensitive).

    Returns
    -------
    LabelledImages
        float32 images ``(N, C, H, W)`` in ``[0, 1]``, int64 labels, sorted class names.

    Raises
    ------
    DatasetNotFoundError
        If ``root`` does not exist.
    SISValueError
        If there is no class folder or no image, or the images differ in size.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for cls, value in [("cat", 0), ("dog", 255)]:
    ...         (Path(tmp) / cls).mkdir()
    ...         Image.new("RGB", (4, 3), (value, value, value)).save(Path(tmp) / cls / "0.png")
    ...     images, labels, names = load_image_folder(tmp)
    >>> tuple(images.shape), labels.tolist(), names, images[1].min().item()
    ((2, 3, 3, 4), [0, 1], ('cat', 'dog'), 1.0)
    """
    caller = "load_image_folder"
    if mode not in ("RGB", "L"):
        raise SISValueError(f"The `mode` parameter of {caller} must be 'RGB' or 'L'. Got {mode!r} instead.")
    base = Path(root)
    if not base.is_dir():
        raise DatasetNotFoundError(
            f"The `root` parameter of {caller} must be an existing directory. Got {str(base)!r}."
        )
    suffixes = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    class_dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise SISValueError(f"{caller} found no class subfolder in {str(base)!r} (expected root/<class>/<image>).")
    from PIL import Image  # Pillow ships with matplotlib; imported lazily

    arrays: list[np.ndarray] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
        )
        for file in files:
            with Image.open(file) as img:
                array = np.asarray(img.convert(mode), dtype=np.uint8)
            if arrays and array.shape != arrays[0].shape:
                raise SISValueError(
                    f"{caller} needs images of one size. {str(file)!r} has shape {array.shape} but the first image "
                    f"has shape {arrays[0].shape}."
                )
            arrays.append(array)
            labels.append(label)
    if not arrays:
        raise SISValueError(f"{caller} found no image with suffix in {list(suffixes)} under {str(base)!r}.")
    stacked = np.stack(arrays)
    if stacked.ndim == 3:
        stacked = stacked[..., None]
    images = torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return LabelledImages(images, torch.tensor(labels, dtype=torch.int64), tuple(d.name for d in class_dirs))


# --------------------------------------------------------------------------------------------------------------
# Out-of-distribution test sets: CIFAR-10.1 and CIFAR-10-C (official .npy files)
# --------------------------------------------------------------------------------------------------------------

_CIFAR10_1_VERSIONS = ("v4", "v6")
_CIFAR10_1_URL = "https://github.com/modestyachts/CIFAR-10.1 (folder datasets/)"
_CIFAR10_C_URL = "https://zenodo.org/record/2535967 (CIFAR-10-C.tar)"
_CIFAR10_C_SEVERITIES = 5
_CIFAR10_C_LABELS = "labels.npy"

CIFAR10_C_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
"""The 15 corruptions of the CIFAR-10-C benchmark (Hendrycks & Dietterich, 2019), in the paper's order.

The official folder also holds four held-out corruptions (``speckle_noise``, ``gaussian_blur``, ``spatter``,
``saturate``); :func:`load_cifar10_c` reads any ``<corruption>.npy`` the folder holds.
"""


def _load_npy(path: Path, caller: str, what: str) -> np.ndarray:
    """A ``.npy`` array, memory-mapped (only the rows used are read) and never unpickled."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SISValueError(f"{caller} could not read {str(path)!r} as a .npy array ({what}): {err}") from err
    if not isinstance(array, np.ndarray):
        raise SISValueError(f"{caller} expected {str(path)!r} to be a single .npy array ({what}), not a .npz archive.")
    return array


def _check_hwc_images(array: np.ndarray, caller: str, path: Path) -> None:
    if array.dtype != np.uint8 or array.ndim != 4 or tuple(array.shape[1:]) != (32, 32, 3):
        raise SISValueError(
            f"{caller} expected {str(path)!r} to hold a uint8 array of shape (N, 32, 32, 3) (official format). "
            f"Got dtype {array.dtype} and shape {array.shape} instead."
        )


def _check_cifar_labels(array: np.ndarray, n: int, caller: str, path: Path) -> np.ndarray:
    if array.ndim != 1 or array.shape[0] != n or not np.issubdtype(array.dtype, np.integer):
        raise SISValueError(
            f"{caller} expected {str(path)!r} to hold {n} integer labels (shape ({n},), one per image). "
            f"Got dtype {array.dtype} and shape {array.shape} instead."
        )
    labels = np.asarray(array, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise SISValueError(
            f"{caller} found labels outside 0..{len(CIFAR10_CLASSES) - 1} in {str(path)!r}: "
            f"min {labels.min()}, max {labels.max()}."
        )
    return labels


def _existing_directory(directory: str | os.PathLike[str], caller: str, what: str) -> Path:
    root = Path(directory)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"The `directory` parameter of {caller} must be an existing directory ({what}). "
            f"Got {str(root)!r}, which does not exist or is not a directory."
        )
    return root


def load_cifar10_1(
    directory: str | os.PathLike[str],
    *,
    version: Literal["v4", "v6"] = "v6",
    limit: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> LabelledImages:
    """Load CIFAR-10.1 (Recht et al., 2018), a new test set drawn like CIFAR-10's, from its official ``.npy`` pair.

    The directory holds ``cifar10.1_<version>_data.npy``, a uint8 ``(N, 32, 32, 3)`` array (2,000 images for
    ``v6``, 2,021 for ``v4``), and ``cifar10.1_<version>_labels.npy``, ``N`` integer labels in CIFAR-10's class
    order: the ``datasets/`` folder of github.com/modestyachts/CIFAR-10.1. Nothing is downloaded. The arrays are
    memory-mapped and never unpickled.

    Parameters
    ----------
    directory : str or os.PathLike
        The folder holding the two files.
    version : {"v6", "v4"}, default "v6"
        The release (``v6`` is the one usually reported).
    limit : int, optional
        Keep only the first ``limit`` images (in file order; the official files are sorted by class, so take
        a class-balanced subset yourself when you need one).
    dtype : torch.dtype, default torch.float32
        ``torch.uint8`` returns the raw bytes (``0..255``); a floating-point dtype returns ``bytes / 255``.

    Returns
    -------
    LabelledImages
        ``images`` of shape ``(N, 3, 32, 32)`` (the convention of :func:`load_cifar10_batches`), int64
        ``labels`` and :data:`CIFAR10_CLASSES`.

    Raises
    ------
    DatasetNotFoundError
        If ``directory`` or one of the two files does not exist (the message names the missing file and where
        to get it).
    SISValueError
        If a file is not in the official format (dtype, shape, label range) or the counts differ.

    References
    ----------
    .. [1] B. Recht, R. Roelofs, L. Schmidt and V. Shankar, "Do CIFAR-10 Classifiers Generalize to CIFAR-10?",
       arXiv:1806.00451, 2018.

    Examples
    --------
    Files written by :func:`sis_attr.testing.write_cifar10_1` (the official ones are read the same way):

    >>> import tempfile
    >>> from sis_attr.testing import write_cifar10_1
    >>> x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_cifar10_1(tmp, x, torch.tensor([0, 3, 3, 9]))
    ...     images, labels, class_names = load_cifar10_1(tmp, dtype=torch.uint8)
    >>> torch.equal(images, x), labels.tolist(), class_names[3]
    (True, [0, 3, 3, 9], 'cat')
    """
    caller = "load_cifar10_1"
    if version not in _CIFAR10_1_VERSIONS:
        raise SISValueError(f"The `version` parameter of {caller} must be 'v6' or 'v4'. Got {version!r} instead.")
    limit = format_optional_positive_int(limit, "limit", caller)
    dtype = _check_dtype(dtype, caller)
    root = _existing_directory(directory, caller, "the datasets/ folder of CIFAR-10.1")
    data_path = root / f"cifar10.1_{version}_data.npy"
    labels_path = root / f"cifar10.1_{version}_labels.npy"
    missing = [p.name for p in (data_path, labels_path) if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{caller} expected the CIFAR-10.1 {version} files {[data_path.name, labels_path.name]} in "
            f"{str(root)!r}. Missing: {missing}. Get them from {_CIFAR10_1_URL}."
        )
    data = _load_npy(data_path, caller, "CIFAR-10.1 images")
    _check_hwc_images(data, caller, data_path)
    labels = _check_cifar_labels(
        _load_npy(labels_path, caller, "CIFAR-10.1 labels"), data.shape[0], caller, labels_path
    )
    stop = data.shape[0] if limit is None else min(limit, data.shape[0])
    images = np.asarray(data[:stop]).transpose(0, 3, 1, 2)
    return LabelledImages(_to_output(images, dtype), torch.from_numpy(labels[:stop].copy()), CIFAR10_CLASSES)


def _format_severities(severity: object, caller: str) -> tuple[int, ...]:
    values = (severity,) if isinstance(severity, int) and not isinstance(severity, bool) else severity
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise SISTypeError(
            f"The `severity` parameter of {caller} must be an integer in 1..{_CIFAR10_C_SEVERITIES} or a non-empty "
            f"sequence of them. Got {severity!r} instead."
        )
    out = []
    for s in values:
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= _CIFAR10_C_SEVERITIES:
            raise SISValueError(
                f"The `severity` parameter of {caller} must hold integers in 1..{_CIFAR10_C_SEVERITIES}. "
                f"Got {s!r} instead."
            )
        out.append(int(s))
    if len(set(out)) != len(out):
        raise SISValueError(f"The `severity` parameter of {caller} must not repeat a severity. Got {out} instead.")
    return tuple(out)


def _available_corruptions(root: Path) -> list[str]:
    return sorted(p.stem for p in root.glob("*.npy") if p.name != _CIFAR10_C_LABELS)


def load_cifar10_c(
    directory: str | os.PathLike[str],
    corruption: str,
    severity: int | Sequence[int],
    *,
    limit: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> LabelledImages:
    """Load one corruption of CIFAR-10-C (Hendrycks & Dietterich, 2019) at one or more severities.

    The official folder (``CIFAR-10-C/``, from zenodo.org/record/2535967) holds one ``<corruption>.npy`` per
    corruption, a uint8 ``(50000, 32, 32, 3)`` array: the 10,000 CIFAR-10 test images corrupted at severity 1,
    then the same images at severity 2, ... up to 5; and ``labels.npy``, the 50,000 matching labels. Folders
    written in that format with fewer images (``5 n`` rows, ``n`` per severity) load the same way. The arrays are
    memory-mapped, so only the rows of the severities asked for are read, and never unpickled.

    Parameters
    ----------
    directory : str or os.PathLike
        The ``CIFAR-10-C`` folder.
    corruption : str
        The file name without ``.npy``: one of :data:`CIFAR10_C_CORRUPTIONS` or a held-out corruption
        (``speckle_noise``, ``gaussian_blur``, ``spatter``, ``saturate``).
    severity : int or sequence of int
        Severity 1 (mildest) to 5, or several distinct ones: their blocks of ``n`` images are concatenated in the
        order given (block ``j`` holds ``severity[j]``).
    limit : int, optional
        Keep only the first ``limit`` images of each severity (in file order, so the same test images at every
        severity).
    dtype : torch.dtype, default torch.float32
        ``torch.uint8`` returns the raw bytes (``0..255``); a floating-point dtype returns ``bytes / 255``.

    Returns
    -------
    LabelledImages
        ``images`` of shape ``(len(severity) * n, 3, 32, 32)`` (the convention of :func:`load_cifar10_batches`),
        int64 ``labels`` and :data:`CIFAR10_CLASSES`.

    Raises
    ------
    DatasetNotFoundError
        If ``directory``, ``<corruption>.npy`` or ``labels.npy`` does not exist (the message lists the corruptions
        the folder holds).
    SISValueError, SISTypeError
        If a file is not in the official format, or ``corruption``/``severity``/``limit`` is invalid.

    References
    ----------
    .. [1] D. Hendrycks and T. Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
       Perturbations", ICLR 2019.

    Examples
    --------
    A folder written by :func:`sis_attr.testing.write_cifar10_c` (the official one is read the same way): 3
    images per severity, here severity ``s`` has every byte equal to ``s``.

    >>> import tempfile
    >>> from sis_attr.testing import write_cifar10_c
    >>> fog = torch.arange(1, 6, dtype=torch.uint8).repeat_interleave(3).view(15, 1, 1, 1).expand(15, 3, 32, 32)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_cifar10_c(tmp, {"fog": fog}, torch.tensor([1, 2, 3]))
    ...     images, labels, _ = load_cifar10_c(tmp, "fog", [5, 2], dtype=torch.uint8)
    >>> images.shape, images[:, 0, 0, 0].tolist(), labels.tolist()
    (torch.Size([6, 3, 32, 32]), [5, 5, 5, 2, 2, 2], [1, 2, 3, 1, 2, 3])
    """
    caller = "load_cifar10_c"
    if not isinstance(corruption, str):
        raise SISTypeError(
            f"The `corruption` parameter of {caller} must be a string such as 'fog'. "
            f"Got {type(corruption).__name__} instead."
        )
    if not corruption or Path(corruption).name != corruption or corruption in (".", "..", "labels"):
        raise SISValueError(
            f"The `corruption` parameter of {caller} must be the name of a corruption file without '.npy' (such as "
            f"'fog'). Got {corruption!r} instead."
        )
    severities = _format_severities(severity, caller)
    limit = format_optional_positive_int(limit, "limit", caller)
    dtype = _check_dtype(dtype, caller)
    root = _existing_directory(directory, caller, "the CIFAR-10-C folder")
    data_path = root / f"{corruption}.npy"
    labels_path = root / _CIFAR10_C_LABELS
    if not data_path.is_file():
        found = _available_corruptions(root)
        raise DatasetNotFoundError(
            f"{caller} found no {data_path.name} in {str(root)!r}: the folder holds "
            f"{found if found else 'no corruption file'}. The official folder ({_CIFAR10_C_URL}) holds "
            f"{', '.join(CIFAR10_C_CORRUPTIONS)} and four held-out corruptions."
        )
    if not labels_path.is_file():
        raise DatasetNotFoundError(
            f"{caller} expected {_CIFAR10_C_LABELS} beside {data_path.name} in {str(root)!r} (official CIFAR-10-C "
            f"folder, {_CIFAR10_C_URL}). It is missing."
        )
    data = _load_npy(data_path, caller, "CIFAR-10-C images")
    _check_hwc_images(data, caller, data_path)
    if data.shape[0] == 0 or data.shape[0] % _CIFAR10_C_SEVERITIES:
        raise SISValueError(
            f"{caller} expected {str(data_path)!r} to hold {_CIFAR10_C_SEVERITIES} equal blocks of images, one per "
            f"severity (50000 rows in the official files). Got {data.shape[0]} rows instead."
        )
    labels = _check_cifar_labels(
        _load_npy(labels_path, caller, "CIFAR-10-C labels"), data.shape[0], caller, labels_path
    )
    per_severity = data.shape[0] // _CIFAR10_C_SEVERITIES
    count = per_severity if limit is None else min(limit, per_severity)
    blocks = [slice((s - 1) * per_severity, (s - 1) * per_severity + count) for s in severities]
    images = np.concatenate([np.asarray(data[b]) for b in blocks]).transpose(0, 3, 1, 2)
    label_rows = np.concatenate([labels[b] for b in blocks])
    return LabelledImages(_to_output(images, dtype), torch.from_numpy(label_rows), CIFAR10_CLASSES)


# --------------------------------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------------------------------


def load_digits_images() -> LabelledImages:
    """Load scikit-learn's bundled 8x8 hand-written digits (no download) as images.

    The 17 grey levels ``0..16`` are divided by 16, so images lie in ``[0, 1]`` with 0 the background.

    Returns
    -------
    LabelledImages
        float32 images of shape ``(1797, 1, 8, 8)``, int64 labels ``0..9`` and class names ``"0"`` .. ``"9"``.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install scikit-learn``, or the ``demo`` extra).

    Examples
    --------
    >>> images, labels, names = load_digits_images()
    >>> tuple(images.shape), images.dtype, labels[:5].tolist(), names[-1]
    ((1797, 1, 8, 8), torch.float32, [0, 1, 2, 3, 4], '9')
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dev/demo dependency
        raise ImportError(
            "load_digits_images needs scikit-learn: pip install scikit-learn (or sis-attr[demo])."
        ) from err
    digits = load_digits()
    images = torch.from_numpy(np.asarray(digits.images, dtype=np.float32) / 16.0).unsqueeze(1).contiguous()
    labels = torch.from_numpy(np.asarray(digits.target, dtype=np.int64))
    return LabelledImages(images, labels, tuple(str(int(n)) for n in digits.target_names))


# --------------------------------------------------------------------------------------------------------------
# Deprecated names (removed in the next release)
# --------------------------------------------------------------------------------------------------------------


def __getattr__(name: str) -> Any:
    """Deprecated alias: ``write_cifar10_batches`` moved to :mod:`sis_attr.testing`."""
    if name == "write_cifar10_batches":
        warnings.warn(
            "sis_attr.datasets.write_cifar10_batches is deprecated and will be removed in the next release: import "
            "it from sis_attr.testing (a fixture for tests and documentation).",
            DeprecationWarning,
            stacklevel=2,
        )
        from sis_attr.testing import write_cifar10_batches

        return write_cifar10_batches
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
