"""Where the images of a selection or an audit come from: a tensor, a Dataset or a DataLoader (private).

A source yields the images (and labels) in contiguous blocks, one block in memory at a time: a tensor is
sliced, a map-style :class:`~torch.utils.data.Dataset` is read item by item and a
:class:`~torch.utils.data.DataLoader` batch by batch (its batches are cut and joined at the block bounds). Each
block is validated as it is read, with the public function's name in the messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler

from sis_attr._core.validation import format_images, format_labels, param_error
from sis_attr.exceptions import SISTypeError, SISValueError

__all__: list[str] = []

Block = tuple[Tensor, Tensor | None]


class Source:
    """Images ``(N, C, H, W)`` (and labels) read block by block; subclasses say how."""

    n: int
    image_shape: tuple[int, int, int]
    has_labels: bool
    caller: str
    param: str
    in_memory: bool = False

    def blocks(self, bounds: Sequence[tuple[int, int]]) -> Iterator[Block]:
        """``(images, labels or None)`` of each ``(start, stop)`` in ``bounds`` (increasing, contiguous from 0)."""
        raise NotImplementedError

    def head(self, count: int) -> Block:
        """The first ``min(count, n)`` images (and labels)."""
        return next(iter(self.blocks([(0, min(count, self.n))])))

    def _check_block(self, images: object, labels: Tensor | None, start: int, stop: int) -> Block:
        if not isinstance(images, Tensor):
            raise SISTypeError(
                f"The `{self.param}` parameter of {self.caller} must yield image tensors. "
                f"Got {type(images).__name__} for images {start}..{stop - 1} instead."
            )
        imgs = format_images(images, self.caller, self.param)
        if tuple(imgs.shape[1:]) != getattr(self, "image_shape", tuple(imgs.shape[1:])):
            raise SISValueError(
                f"The `{self.param}` parameter of {self.caller} must hold images of one shape, "
                f"{self.image_shape} (C, H, W). Got {tuple(imgs.shape[1:])} for images {start}..{stop - 1} instead."
            )
        if imgs.shape[0] != stop - start:
            raise SISValueError(
                f"The `{self.param}` parameter of {self.caller} yielded {imgs.shape[0]} images where "
                f"{stop - start} were expected (images {start}..{stop - 1}): it must hold {self.n} images."
            )
        if labels is not None:
            labels = format_labels(labels, stop - start, self.caller, self.param)
        return imgs, labels


class TensorSource(Source):
    """Images already in memory, validated once by the caller."""

    in_memory = True

    def __init__(self, images: Tensor, labels: Tensor | None, caller: str, param: str) -> None:
        self.images = images
        self.labels = labels
        self.n = int(images.shape[0])
        self.image_shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
        self.has_labels = labels is not None
        self.caller = caller
        self.param = param

    def blocks(self, bounds: Sequence[tuple[int, int]]) -> Iterator[Block]:
        for start, stop in bounds:
            yield self.images[start:stop], None if self.labels is None else self.labels[start:stop]


def _split_item(item: object, labels: bool, caller: str, param: str, where: str) -> tuple[object, int | None]:
    """``(image, label)`` of one dataset item: an image alone, or a pair whose first entry is the image."""
    if isinstance(item, (tuple, list)) and len(item) >= 1:
        image = item[0]
        label = item[1] if len(item) >= 2 else None
    else:
        image, label = item, None
    if labels:
        if label is None:
            raise SISTypeError(
                f"The `{param}` parameter of {caller} must yield (image, label) pairs. Got {type(item).__name__} "
                f"at {where} instead."
            )
        if isinstance(label, Tensor) and label.numel() == 1 and not label.is_floating_point():
            label = int(label)
        if isinstance(label, bool) or not isinstance(label, int):
            raise SISTypeError(
                f"The `{param}` parameter of {caller} must yield integer class labels. Got "
                f"{type(label).__name__} at {where} instead."
            )
        return image, int(label)
    return image, None


class DatasetSource(Source):
    """A map-style dataset of images or ``(image, label)`` pairs, read item by item."""

    def __init__(self, dataset: Dataset[Any], labels: bool, caller: str, param: str) -> None:
        try:
            n = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            raise SISTypeError(
                f"The `{param}` parameter of {caller} must be a map-style dataset with a length (or a DataLoader "
                "over one)."
            ) from None
        if n == 0:
            raise param_error(param, caller, "a non-empty dataset", "an empty one")
        self.dataset = dataset
        self.n = int(n)
        self.has_labels = labels
        self.caller = caller
        self.param = param
        first, _ = _split_item(dataset[0], labels, caller, param, "index 0")
        if not isinstance(first, Tensor) or first.dim() != 3:
            got = tuple(first.shape) if isinstance(first, Tensor) else type(first).__name__
            raise SISTypeError(
                f"The `{param}` parameter of {caller} must yield images as (C, H, W) float tensors. "
                f"Got {got} at index 0 instead."
            )
        self.image_shape = (int(first.shape[0]), int(first.shape[1]), int(first.shape[2]))

    def blocks(self, bounds: Sequence[tuple[int, int]]) -> Iterator[Block]:
        for start, stop in bounds:
            images: list[Any] = []
            labels: list[int] = []
            for i in range(start, stop):
                image, label = _split_item(self.dataset[i], self.has_labels, self.caller, self.param, f"index {i}")
                if not isinstance(image, Tensor) or tuple(image.shape) != self.image_shape:
                    got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                    raise SISValueError(
                        f"The `{self.param}` parameter of {self.caller} must yield images of one shape, "
                        f"{self.image_shape} (C, H, W). Got {got} at index {i} instead."
                    )
                images.append(image)
                if label is not None:
                    labels.append(label)
            stacked = torch.stack(images)
            yield self._check_block(stacked, torch.tensor(labels) if self.has_labels else None, start, stop)


class LoaderSource(Source):
    """A DataLoader over a map-style dataset, read batch by batch in its (fixed) order."""

    def __init__(self, loader: DataLoader[Any], labels: bool, caller: str, param: str) -> None:
        try:
            n = len(loader.dataset)  # type: ignore[arg-type]
        except TypeError:
            raise SISTypeError(
                f"The `{param}` parameter of {caller} must be a DataLoader over a dataset with a length."
            ) from None
        sampler = getattr(loader.batch_sampler, "sampler", loader.sampler)
        if isinstance(sampler, RandomSampler) or isinstance(loader.sampler, RandomSampler):
            raise SISValueError(
                f"The `{param}` parameter of {caller} must read the images in a fixed order: pass a DataLoader with "
                "shuffle=False (results are stored per image index, and a resumed run reads the data again)."
            )
        if getattr(loader, "drop_last", False) and loader.batch_size and n % loader.batch_size:
            raise SISValueError(
                f"The `{param}` parameter of {caller} must yield every image: pass a DataLoader with drop_last=False."
            )
        if n == 0:
            raise param_error(param, caller, "a non-empty data loader", "an empty one")
        self.loader = loader
        self.n = int(n)
        self.has_labels = labels
        self.caller = caller
        self.param = param
        images, _ = self._split_batch(next(iter(loader)), "the first batch")
        if not isinstance(images, Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise SISTypeError(
                f"The `{param}` parameter of {caller} must yield batches of images of shape (B, C, H, W). "
                f"Got {got} instead."
            )
        self.image_shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))

    def _split_batch(self, batch: object, where: str) -> tuple[Any, Tensor | None]:
        if isinstance(batch, (tuple, list)):
            images = batch[0] if batch else None
            labels = batch[1] if len(batch) >= 2 else None
        else:
            images, labels = batch, None
        if self.has_labels:
            if labels is None:
                raise SISTypeError(
                    f"The `{self.param}` parameter of {self.caller} must yield (images, labels) batches. "
                    f"Got {type(batch).__name__} for {where} instead."
                )
            if not isinstance(labels, Tensor):
                labels = torch.as_tensor(labels)
            return images, labels
        return images, None

    def blocks(self, bounds: Sequence[tuple[int, int]]) -> Iterator[Block]:
        if not bounds:
            return
        images: list[Tensor] = []
        labels: list[Tensor] = []
        held = 0  # images buffered
        offset = 0  # index of the first buffered image
        batches = iter(self.loader)
        for start, stop in bounds:
            while offset + held < stop:
                try:
                    batch = next(batches)
                except StopIteration:
                    raise SISValueError(
                        f"The `{self.param}` parameter of {self.caller} yielded {offset + held} images; its dataset "
                        f"has {self.n}."
                    ) from None
                imgs, labs = self._split_batch(batch, f"the batch after image {offset + held}")
                if not isinstance(imgs, Tensor) or imgs.dim() != 4:
                    raise SISTypeError(
                        f"The `{self.param}` parameter of {self.caller} must yield batches of image tensors "
                        f"(B, C, H, W). Got {type(imgs).__name__} instead."
                    )
                images.append(imgs)
                if labs is not None:
                    labels.append(labs.reshape(-1))
                held += int(imgs.shape[0])
            # skip what lies before start (a resumed run may skip no block: bounds are contiguous)
            cat_images = torch.cat(images) if len(images) > 1 else images[0]
            cat_labels = (torch.cat(labels) if len(labels) > 1 else labels[0]) if labels else None
            lo, hi = start - offset, stop - offset
            block_images = cat_images[lo:hi]
            block_labels = None if cat_labels is None else cat_labels[lo:hi]
            rest_images = cat_images[hi:]
            rest_labels = None if cat_labels is None else cat_labels[hi:]
            images = [rest_images] if rest_images.shape[0] else []
            labels = [rest_labels] if rest_labels is not None and rest_labels.shape[0] else []
            held = int(rest_images.shape[0])
            offset = stop
            yield self._check_block(block_images, block_labels, start, stop)


def format_source(data: object, caller: str, param: str, *, labels: bool) -> Source | None:
    """A streaming source for a Dataset (without in-memory ``images``/``labels``) or a DataLoader; else None."""
    if isinstance(data, DataLoader):
        return LoaderSource(data, labels, caller, param)
    if isinstance(data, Dataset) and not isinstance(data, Tensor):
        in_memory = isinstance(getattr(data, "images", None), Tensor) and getattr(data, "transform", None) is None
        if labels:
            in_memory = in_memory and isinstance(getattr(data, "labels", None), Tensor)
        if not in_memory:
            return DatasetSource(data, labels, caller, param)
    return None


def shard_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``[(0, size), (size, 2 size), ..., (.., n)]``."""
    return [(start, min(n, start + size)) for start in range(0, n, size)]
