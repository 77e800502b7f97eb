"""Building a human classification study: sample images, make their subsets, write the page and the key."""

from __future__ import annotations

import json
import os
import secrets
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from sis_attr._core.methods import format_method
from sis_attr._core.validation import (
    format_flag,
    format_image_baselines,
    format_image_feature_mask,
    format_images,
    format_labels,
    format_model,
    format_named,
    format_non_negative_int,
    format_positive_int,
    format_proportion,
    format_string,
    param_error,
    warn_if_training,
)
from sis_attr.exceptions import ReportWriteError, SISTypeError, SISValueError, SISWarning
from sis_attr.overinterpretation._common import predict_probabilities, raw_dataset_tensors
from sis_attr.overinterpretation._common import subset_size as _subset_size
from sis_attr.overinterpretation.report._figures import _display_range
from sis_attr.overinterpretation.report._format import fmt_pct
from sis_attr.overinterpretation.report._writer import check_output_directory, staged_directory
from sis_attr.overinterpretation.selection import backward_selection
from sis_attr.overinterpretation.study import _render
from sis_attr.overinterpretation.subsets import backselect_subsets

if TYPE_CHECKING:
    from sis_attr._core.schedule import AdaptiveK

__all__ = ["Study", "make_study"]

KEY_FORMAT = "sis-attr-study-key"
"""The ``format`` field of a key file."""
ANSWERS_FORMAT = "sis-attr-study-answers"
"""The ``format`` field of an answer file written by the page."""
FORMAT_VERSION = 1
"""Version of the key and answer file layouts."""
PAGE_NAME = "index.html"
"""The one file of a study folder."""
_PAGE_SIGNATURE = b'"sis-attr-study:"'
"""In every participant page (the prefix of its local-storage key): how a rerun recognises its own page."""


def fraction_label(fraction: float) -> str:
    """``0.05`` -> ``"5%"``; ``1.0`` -> ``"full images"`` (the control batch)."""
    return "full images" if fraction >= 1.0 else f"{100 * fraction:g}%"


@dataclass(frozen=True, eq=False)
class Study:
    """A human classification study written by :func:`make_study`: where its files are and what they hold.

    The same object is read back from the key file with :meth:`from_key`; :func:`score_study` scores answer
    files against it. Everything here is in the key (which participants must never see); the page holds only
    the images, under opaque random ids.

    Attributes
    ----------
    study_id : str
        Random id written in the page, the key and every answer file (answers to another study are refused).
    title : str
        Title of the page.
    page : Path
        The participant page (``index.html``, the only file of its folder).
    key : Path
        The key file (JSON), kept apart from the page.
    fractions : tuple of float
        Fraction of the features kept in each batch, in the order shown (increasing); ``1.0`` is the batch of full
        images.
    classes : tuple of int
        Class indices offered as answers (and sampled), in the order of the buttons; the button at position ``p``
        answers to the number key ``p`` (the first ten).
    class_names : tuple of str
        Names of ``classes``.
    indices : Tensor
        ``(n,)`` int64 positions in the data of the images shown, ``per_class`` per class in the order of
        ``classes``.
    labels : Tensor
        ``(n,)`` int64 true classes of those images.
    image_models : tuple of str
        Name of the model whose backward selection made each image's subsets (``"model"`` for one model).
    item_ids : tuple of str
        Opaque id of every item (one image at one fraction), in the order of the page.
    item_images : Tensor
        ``(n_items,)`` int64: which image (position in ``indices``) each item shows.
    item_batches : Tensor
        ``(n_items,)`` int64: which batch (position in ``fractions``) each item belongs to.
    model_predictions : Tensor
        ``(n_items,)`` int64: the class that the image's model predicts on the item itself (the subset, with the
        hidden features set to the baseline).
    kept : tuple of int
        Features kept per image in each batch: ``ceil(fraction * n_features)``.
    n_features : int
        Features per image (pixels for the paper's pixel features).
    settings : dict
        How the study was made (method, threshold, baselines, seed, ...), for the record.
    """

    study_id: str
    title: str
    page: Path
    key: Path
    fractions: tuple[float, ...]
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    indices: Tensor
    labels: Tensor
    image_models: tuple[str, ...]
    item_ids: tuple[str, ...]
    item_images: Tensor
    item_batches: Tensor
    model_predictions: Tensor
    kept: tuple[int, ...]
    n_features: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        """Images per batch (``per_class * len(classes)``)."""
        return int(self.indices.shape[0])

    @property
    def n_items(self) -> int:
        """Images to classify in all: ``n_images * len(fractions)``."""
        return len(self.item_ids)

    @property
    def item_labels(self) -> Tensor:
        """``(n_items,)`` int64 true class of every item, in the order of the page."""
        return self.labels[self.item_images]

    @property
    def model_accuracy(self) -> Tensor:
        """``(len(fractions),)`` float64: accuracy of the model(s) on the items of each batch.

        Each image is judged by the model whose backward selection made its subsets; on full images every model
        is right by construction (only correctly classified images are sampled).
        """
        right = (self.model_predictions == self.item_labels).double()
        return torch.stack([right[self.item_batches == b].mean() for b in range(len(self.fractions))])

    def summary(self) -> str:
        """A few lines: the files, the batches and the model's accuracy on each."""
        lines = [
            f"Human classification study {self.study_id}: {self.title}",
            f"  page (give to participants): {self.page}",
            f"  key (keep private):          {self.key}",
            f"  {len(self.classes)} classes x {self.n_images // max(1, len(self.classes))} images, "
            f"{len(self.fractions)} batches, {self.n_items} images to classify",
        ]
        for b, (f, kept, acc) in enumerate(zip(self.fractions, self.kept, self.model_accuracy.tolist(), strict=True)):
            what = "full images (control)" if f >= 1.0 else f"{fraction_label(f)} kept ({kept} of {self.n_features})"
            lines.append(f"  batch {b + 1}: {what}; model accuracy on them {fmt_pct(acc)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """The contents of the key file (JSON-serialisable)."""
        return {
            "format": KEY_FORMAT,
            "format_version": FORMAT_VERSION,
            "warning": "This file holds the answers of the study: never give it to participants.",
            "study_id": self.study_id,
            "title": self.title,
            "page": str(self.page),
            "fractions": list(self.fractions),
            "kept": list(self.kept),
            "n_features": self.n_features,
            "classes": list(self.classes),
            "class_names": list(self.class_names),
            "images": [
                {"index": int(i), "label": int(lab), "model": m}
                for i, lab, m in zip(self.indices.tolist(), self.labels.tolist(), self.image_models, strict=True)
            ],
            "items": [
                {"id": item, "image": int(img), "batch": int(b), "model_prediction": int(p)}
                for item, img, b, p in zip(
                    self.item_ids,
                    self.item_images.tolist(),
                    self.item_batches.tolist(),
                    self.model_predictions.tolist(),
                    strict=True,
                )
            ],
            "model_accuracy": [float(a) for a in self.model_accuracy.tolist()],
            "settings": self.settings,
        }

    @classmethod
    def from_key(cls, path: str | os.PathLike[str]) -> Study:
        """Read a key file written by :func:`make_study`.

        Raises
        ------
        SISValueError
            If the file is not a study key (or not of this version); FileNotFoundError if it does not exist.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise SISTypeError(f"The `path` parameter of Study.from_key must be a path. Got {type(path).__name__}.")
        file = Path(path)
        try:
            payload = json.loads(file.read_text(encoding="utf-8"))
        except (FileNotFoundError, IsADirectoryError):
            raise
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SISValueError(f"The study key {str(file)!r} could not be read as JSON: {err}.") from err
        return _study_from_dict(payload, file)


def _study_from_dict(payload: object, file: Path) -> Study:
    where = f"The study key {str(file)!r}"
    if not isinstance(payload, dict) or payload.get("format") != KEY_FORMAT:
        raise SISValueError(f"{where} is not a key written by make_study (no format {KEY_FORMAT!r}).")
    if payload.get("format_version") != FORMAT_VERSION:
        raise SISValueError(
            f"{where} has format version {payload.get('format_version')!r}; this sis_attr reads version "
            f"{FORMAT_VERSION}."
        )
    try:
        images = payload["images"]
        items = payload["items"]
        fractions = tuple(float(f) for f in payload["fractions"])
        return Study(
            study_id=str(payload["study_id"]),
            title=str(payload["title"]),
            page=Path(payload["page"]),
            key=file,
            fractions=fractions,
            classes=tuple(int(c) for c in payload["classes"]),
            class_names=tuple(str(n) for n in payload["class_names"]),
            indices=torch.tensor([int(im["index"]) for im in images], dtype=torch.long),
            labels=torch.tensor([int(im["label"]) for im in images], dtype=torch.long),
            image_models=tuple(str(im["model"]) for im in images),
            item_ids=tuple(str(it["id"]) for it in items),
            item_images=torch.tensor([int(it["image"]) for it in items], dtype=torch.long),
            item_batches=torch.tensor([int(it["batch"]) for it in items], dtype=torch.long),
            model_predictions=torch.tensor([int(it["model_prediction"]) for it in items], dtype=torch.long),
            kept=tuple(int(k) for k in payload["kept"]),
            n_features=int(payload["n_features"]),
            settings=dict(payload.get("settings", {})),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise SISValueError(f"{where} is damaged: {type(err).__name__}: {err}.") from err


# ------------------------------------------------------------------------------------------------ validation
def _format_data(data: object, caller: str) -> tuple[Tensor, Tensor, tuple[str, ...] | None]:
    """``(images, labels, class names or None)`` of (images, labels[, names]), a LabelledImages or a Dataset."""
    names: tuple[str, ...] | None = None
    if isinstance(data, Tensor):
        raise SISTypeError(
            f"The `data` parameter of {caller} must hold the true labels with the images: (images, labels), a "
            f"LabelledImages or a dataset of (image, label) pairs. Got a tensor of shape {tuple(data.shape)} alone "
            "instead."
        )
    if isinstance(data, tuple) and len(data) == 3 and isinstance(data[0], Tensor):
        names = None if data[2] is None else _format_names(data[2], caller, "data")
        data = (data[0], data[1])
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        raw_images, raw_labels = data
    else:
        raw_images, raw_labels = raw_dataset_tensors(data, caller, "data")
    images = format_images(raw_images, caller, "data")
    return images, format_labels(raw_labels, int(images.shape[0]), caller, "data"), names


def _format_names(names: object, caller: str, param: str = "class_names") -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise SISTypeError(
            f"The `{param}` parameter of {caller} must hold a sequence of class names. Got {type(names).__name__}."
        )
    return tuple(str(n) for n in names)


def _probabilities(model: nn.Module, images: Tensor, batch_size: int, caller: str) -> Tensor:
    """Softmax probabilities on the full images; a model that cannot run on them is an error a person can act on."""
    try:
        return predict_probabilities(model, images, caller, batch_size=batch_size)
    except SISValueError:
        raise
    except Exception as err:  # any error of the user's model on these images means the data do not fit it
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SISValueError(
            f"The model passed to {caller} cannot run on the data: images of shape {tuple(images.shape[1:])} "
            f"(C, H, W) raised {type(err).__name__}: {first}. Check that the data fit the model (channels, image "
            "size, normalisation)."
        ) from err


def _describe(baselines: object) -> str:
    if isinstance(baselines, Tensor):
        return f"tensor of shape {tuple(baselines.shape)}"
    return "0" if baselines is None else f"{baselines:g}" if isinstance(baselines, (int, float)) else str(baselines)


def _format_models(model: object, caller: str) -> dict[str, nn.Module]:
    if isinstance(model, Mapping):
        models = format_named(model, caller, "model", "torch.nn.Module objects")
        for name, m in models.items():
            format_model(m, caller, param=f"model[{name!r}]")
        return models
    return {"model": format_model(model, caller)}


def _format_fractions(fractions: object, control: bool, caller: str) -> tuple[float, ...]:
    if isinstance(fractions, (int, float)) and not isinstance(fractions, bool):
        fractions = (fractions,)
    if not isinstance(fractions, Sequence) or isinstance(fractions, str):
        raise SISTypeError(
            f"The `fractions` parameter of {caller} must be a sequence of numbers in (0, 1]. "
            f"Got {type(fractions).__name__} instead."
        )
    values = {format_proportion(f, caller, "fraction") for f in fractions}
    if control:
        values.add(1.0)
    if not values:
        raise param_error("fractions", caller, "a non-empty sequence (or control=True)", "an empty sequence")
    return tuple(sorted(values))


def _format_classes(classes: object, n_classes: int, caller: str) -> tuple[int, ...]:
    if classes is None:
        return tuple(range(n_classes))
    if not isinstance(classes, Sequence) or isinstance(classes, str) or len(classes) < 2:
        raise param_error("classes", caller, "None or a sequence of at least two class indices", repr(classes))
    out: list[int] = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n_classes:
            raise param_error(
                "classes", caller, f"made of class indices in [0, {n_classes - 1}] (the model's outputs)", repr(c)
            )
        if c in out:
            raise param_error("classes", caller, "made of distinct class indices", f"{c} twice")
        out.append(int(c))
    return tuple(out)


def _format_display(display_images: object, images: Tensor, caller: str) -> Tensor:
    """Images to show, mapped to ``[0, 1]`` like the audit report's figures."""
    if display_images is None:
        shown = images
    else:
        if not isinstance(display_images, Tensor) or not display_images.is_floating_point():
            raise SISTypeError(
                f"The `display_images` parameter of {caller} must be None or a float tensor (N, C, H, W) of the "
                f"images as people should see them. Got {type(display_images).__name__} instead."
            )
        n, _, h, w = images.shape
        if display_images.dim() != 4 or (display_images.shape[0], *display_images.shape[2:]) != (n, h, w):
            raise param_error(
                "display_images",
                caller,
                f"of shape ({n}, C, {h}, {w}), one display image per image",
                f"shape {tuple(display_images.shape)}",
            )
        if not torch.isfinite(display_images).all():
            raise param_error("display_images", caller, "finite (no NaN or inf)", "non-finite values")
        shown = display_images
    lo, hi = _display_range(shown)
    return ((shown.detach().double().cpu() - lo) / (hi - lo)).clamp(0.0, 1.0)


def _format_mask_color(mask_color: object, channels: int, caller: str) -> Tensor:
    values: list[object]
    if isinstance(mask_color, (int, float)) and not isinstance(mask_color, bool):
        values = [mask_color] * channels
    elif isinstance(mask_color, Sequence) and not isinstance(mask_color, str) and len(mask_color) == channels:
        values = list(mask_color)
    else:
        raise param_error(
            "mask_color", caller, f"a number in [0, 1] or one number per display channel ({channels})", repr(mask_color)
        )
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0 for v in values):
        raise param_error("mask_color", caller, "made of numbers in [0, 1] (display intensities)", repr(mask_color))
    return torch.tensor([float(v) for v in values], dtype=torch.float64).view(channels, 1, 1)  # type: ignore[arg-type]


def _css_colour(grey: Tensor) -> str:
    v = grey.flatten().tolist()
    rgb = v[:3] if len(v) >= 3 else [v[0]] * 3
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def _format_paths(out: object, key: object, overwrite: bool, caller: str) -> tuple[Path, Path]:
    if not isinstance(out, (str, os.PathLike)):
        raise SISTypeError(f"The `out` parameter of {caller} must be a path. Got {type(out).__name__} instead.")
    folder = check_output_directory(out, caller)
    if key is None:
        key_path = folder.resolve().parent / f"{folder.resolve().name}-key.json"
    elif isinstance(key, (str, os.PathLike)):
        key_path = Path(key)
    else:
        raise SISTypeError(f"The `key` parameter of {caller} must be None or a path. Got {type(key).__name__}.")
    resolved_key, resolved_out = key_path.resolve(), folder.resolve()
    if resolved_key == resolved_out or resolved_out in resolved_key.parents:
        raise param_error(
            "key", caller, f"outside the page folder {str(folder)!r} (participants must not get it)", str(key_path)
        )
    if key_path.is_dir():
        raise param_error("key", caller, "a file path, not a directory", str(key_path))
    if key_path.exists() and not overwrite:
        raise SISValueError(
            f"{caller} will not overwrite the study key {str(key_path)!r}: answers to that study could no longer be "
            "scored. Choose another `out`/`key`, or pass overwrite=True."
        )
    check_output_directory(key_path.parent, caller)
    page = folder / PAGE_NAME
    if page.exists() and not overwrite and not _is_study_page(page):
        raise SISValueError(
            f"{caller} will not replace {str(page)!r}: it is not a study page sis_attr wrote. Choose another `out`, "
            "or pass overwrite=True."
        )
    return folder, key_path


def _is_study_page(path: Path) -> bool:
    """Whether ``path`` is a participant page written by :func:`make_study` (it stores answers under its key)."""
    try:
        with path.open("rb") as f:
            return _PAGE_SIGNATURE in f.read(1 << 20)
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ sampling
def _sample(
    eligible: Tensor, labels: Tensor, classes: Sequence[int], names: Sequence[str], per_class: int, gen: torch.Generator
) -> Tensor:
    """``per_class`` eligible images of each class (sorted positions), drawn with ``gen``; an error if too few."""
    picked: list[Tensor] = []
    short: list[str] = []
    for c in classes:
        candidates = torch.nonzero(eligible & (labels == c)).flatten()
        if candidates.numel() < per_class:
            short.append(f"{names[c]!r} has {candidates.numel()}")
            continue
        picked.append(candidates[torch.randperm(candidates.numel(), generator=gen)[:per_class]].sort().values)
    if short:
        raise SISValueError(
            f"make_study needs {per_class} images per class that the model classifies correctly and confidently; "
            f"{', '.join(short)}. Lower `threshold` or `per_class`, or pass more images."
        )
    return torch.cat(picked)


def _item_ids(n: int) -> list[str]:
    """``n`` distinct opaque ids (random, unrelated to anything in the key)."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        token = secrets.token_hex(6)
        if token not in seen:
            seen.add(token)
            ids.append(token)
    return ids


def _write_json_atomic(path: Path, payload: Mapping[str, Any], caller: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ReportWriteError(f"{caller} could not write the study key {str(path)!r}: {err}") from err


# ------------------------------------------------------------------------------------------------ the door
def make_study(
    model: nn.Module | Mapping[str, nn.Module],
    data: Any,
    *,
    out: str | os.PathLike[str],
    key: str | os.PathLike[str] | None = None,
    fractions: Sequence[float] = (0.05, 0.3, 0.5),
    control: bool = True,
    per_class: int = 10,
    classes: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    threshold: float = 0.99,
    method: Literal["exact", "gradient"] = "gradient",
    baselines: float | Tensor | None = 0.0,
    feature_mask: Literal["pixel"] | Tensor | None = "pixel",
    k: int | float | str | AdaptiveK | None = None,
    shortlist: int | None = None,
    batch_size: int = 256,
    display_images: Tensor | None = None,
    mask_color: float | Sequence[float] = 0.5,
    title: str = "Which class is it?",
    seed: int = 0,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Study:
    """Build the human classification study of Carter et al. (Section 3.4, Table 2) for a model and a dataset.

    Samples ``per_class`` images of each class that the model classifies correctly with confidence at least
    ``threshold``, runs backward selection once on each (all fractions come from that one record) and writes:

    * ``out/index.html``, the only file of the folder you hand to participants: one static page (no server, no
      network; images embedded as PNG data URIs) that shows the images batch by batch in order of increasing
      fraction, shuffled within each batch (the same order for every participant), then the full images as a
      control when ``control`` is True (last, so that they cannot help with the subsets). Hidden pixels are
      drawn in a flat grey (``mask_color``) that the page explains, scaled up without smoothing. People answer
      with the mouse or the number keys; the page saves the answers as a JSON file they download and send back.
    * the key (JSON, default ``<out>-key.json`` beside the folder, never inside it): which image and class each
      item is, and what the model predicts on it. The page holds only opaque random ids, so participants cannot
      read the answers from it.

    Score the answer files with :func:`score_study`.

    Parameters
    ----------
    model : torch.nn.Module or dict of str to torch.nn.Module
        Classifier(s) mapping ``(N, C, H, W)`` images to ``(N, classes)`` logits, in eval mode (never changed). With
        several models (the paper used three), images must be classified correctly and confidently by all of them,
        and each image's subsets come from one model, assigned in turn.
    data : LabelledImages, (images, labels), (images, labels, class_names) or Dataset
        Images in the model's input space and their true labels, as for
        :func:`~sis_attr.overinterpretation.audit`.
    out : str or os.PathLike
        Folder of the participant page (created; its ``index.html`` is replaced if it exists).
    key : str or os.PathLike, optional
        Where the key file goes; by default ``<out>-key.json`` beside ``out``. Must not be inside ``out``.
    fractions : sequence of float, default (0.05, 0.3, 0.5)
        Fractions of the features kept by backward selection, one batch each (the paper's 5%, 30%, 50%); shown
        in increasing order.
    control : bool, default True
        Add a last batch of the full images (fraction 1.0; people score about 94% on full CIFAR-10 images).
    per_class : int, default 10
        Images sampled per class (the paper: 10 of each of the 10 CIFAR-10 classes).
    classes : sequence of int, optional
        Classes sampled and offered as answers, in the order of the buttons (all the model's classes by
        default). The first ten buttons answer to the keys ``0``-``9``.
    class_names : sequence of str, optional
        Names indexed by class; defaults to the data's names, else ``"0"``, ``"1"``, ...
    threshold : float, default 0.99
        Minimum confidence of the (every) model in the true class on the full image (the paper: 0.99).
    method, baselines, feature_mask, k, shortlist, batch_size
        Backward selection, as in :func:`~sis_attr.overinterpretation.backward_selection` (``k=None``: the
        gradient method's default schedule): ``baselines`` is what the model sees in place of a hidden feature
        (people see ``mask_color`` instead).
    display_images : Tensor, optional
        ``(N, C', H, W)`` images as people should see them (e.g. before normalisation); ``data``'s images by
        default. Either is shown as is when within ``[0, 1]``, else rescaled from its minimum and maximum.
    mask_color : float or sequence of float, default 0.5
        Display intensity of hidden pixels in ``[0, 1]`` (one value, or one per display channel): a neutral grey.
    title : str, default "Which class is it?"
        Title of the page.
    seed : int, default 0
        Seeds the choice of images and the order within each batch (item ids are random regardless).
    overwrite : bool, default False
        Replace an existing key file (answers to the old study can then no longer be scored), and an
        ``index.html`` in ``out`` that sis_attr did not write.
    show_progress : bool, default True
        Show a progress bar during backward selection.

    Returns
    -------
    Study
        The paths, the order of the page and everything in the key; ``print(study.summary())``.

    Raises
    ------
    SISValueError
        If there are fewer than ``per_class`` eligible images in a class, the key exists (without
        ``overwrite``) or would be inside ``out``, or for invalid options.
    SISTypeError
        For arguments of the wrong type.
    ReportWriteError
        If ``out`` or the key cannot be written.

    See Also
    --------
    score_study : Score the answer files.
    backward_selection : The selection behind the subsets.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import torch
    >>> from sis_attr.testing import SumGridClassifier
    >>> model = SumGridClassifier()  # two classes: the sign of the sum of a 2x2 grid
    >>> images = torch.randn(20, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    >>> labels = model(images).argmax(dim=1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     study = make_study(model, (images, labels), out=Path(tmp) / "study", per_class=3, threshold=0.6,
    ...                        show_progress=False)
    ...     files = sorted(p.name for p in (Path(tmp) / "study").iterdir() if not p.name.startswith("."))
    >>> files, study.key.name, study.fractions, study.n_items
    (['index.html'], 'study-key.json', (0.05, 0.3, 0.5, 1.0), 24)
    >>> study.model_accuracy[-1].item()  # full images: correct by construction
    1.0
    """
    caller = "make_study"
    models = _format_models(model, caller)
    images, labels, data_names = _format_data(data, caller)
    control = format_flag(control, "control", caller)
    fracs = _format_fractions(fractions, control, caller)
    per_class = format_positive_int(per_class, "per_class", caller)
    t = format_proportion(threshold, caller, "threshold")
    seed = format_non_negative_int(seed, "seed", caller)
    title = format_string(title, "title", caller)
    overwrite = format_flag(overwrite, "overwrite", caller)
    show_progress = format_flag(show_progress, "show_progress", caller)
    given_names = None if class_names is None else _format_names(class_names, caller)
    given_k: dict[str, Any] = {} if k is None else {"k": k}  # None: the gradient method's own default schedule
    format_method(method, **given_k, shortlist=shortlist, batch_size=batch_size, caller=caller)  # checked here
    batch_size = format_positive_int(batch_size, "batch_size", caller)
    image_shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
    fmask = format_image_feature_mask(feature_mask, image_shape, caller)
    base = format_image_baselines(baselines, images, caller)
    shown = _format_display(display_images, images, caller)
    grey = _format_mask_color(mask_color, int(shown.shape[1]), caller)
    folder, key_path = _format_paths(out, key, overwrite, caller)
    for m in models.values():
        warn_if_training(m, caller)

    # ---- which images: correct and confident under every model, per_class of each offered class
    probs = {name: _probabilities(m, images, batch_size, caller) for name, m in models.items()}
    widths = {int(p.shape[1]) for p in probs.values()}
    if len(widths) != 1:
        raise param_error("model", caller, "models with one number of classes", f"{sorted(widths)} classes")
    n_classes = widths.pop()
    if int(labels.max()) >= n_classes:
        raise SISValueError(
            f"The labels in the `data` passed to {caller} must be class indices of the model, in [0, {n_classes - 1}] "
            f"(the model has {n_classes} outputs). Got labels up to {int(labels.max())} instead."
        )
    known = given_names if given_names is not None else data_names or ()
    names = known + tuple(str(i) for i in range(len(known), n_classes))
    offered = _format_classes(classes, n_classes, caller)
    eligible = torch.ones(images.shape[0], dtype=torch.bool)
    for p in probs.values():
        eligible &= (p.argmax(dim=1) == labels) & (p.gather(1, labels.unsqueeze(1)).squeeze(1) >= t)
    gen = torch.Generator().manual_seed(seed)
    chosen = _sample(eligible, labels, offered, names, per_class, gen)
    chosen_labels = labels[chosen]
    n = int(chosen.numel())
    model_names = list(models)
    assigned = torch.arange(n) % len(model_names)  # model of each image, in turn

    # ---- one backward selection per image; every fraction's subset and the model's verdict on it
    n_features = int(fmask.max()) + 1
    kept = tuple(_subset_size(f, n_features) for f in fracs)
    keep = torch.zeros(len(fracs), n, *fmask.shape[1:], dtype=torch.bool)
    predictions = torch.zeros(len(fracs), n, dtype=torch.long)
    for j, name in enumerate(model_names):
        pos = torch.nonzero(assigned == j).flatten()
        if pos.numel() == 0:
            continue
        m, src = models[name], chosen[pos]
        sub_images, sub_labels = images[src], labels[src]
        sub_base = base if isinstance(base, float) else base[src]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SISWarning)  # the training-mode warning was given above
            selection = backward_selection(
                m,
                sub_images,
                method=method,
                baselines=sub_base,
                feature_mask=fmask,
                target=sub_labels,  # the prediction too: only correctly classified images are sampled
                **given_k,
                shortlist=shortlist,
                batch_size=batch_size,
                show_progress=show_progress,
            )
            for b, f in enumerate(fracs):
                subsets = backselect_subsets(sub_images, selection, fraction=f, labels=sub_labels, baselines=sub_base)
                keep[b, pos] = subsets.keep_masks.bool()
                predictions[b, pos] = predict_probabilities(m, subsets.images, caller, batch_size=batch_size).argmax(1)

    # ---- the page order (batches by increasing fraction, shuffled within), opaque ids, images
    order = [torch.randperm(n, generator=gen) for _ in fracs]
    item_images = torch.cat(order)
    item_batches = torch.arange(len(fracs)).repeat_interleave(n)
    ids = _item_ids(int(item_images.numel()))
    sources = shown[chosen]
    batches: list[dict[str, Any]] = []
    for b, f in enumerate(fracs):
        entries: list[dict[str, str]] = []
        for i in order[b].tolist():
            mask = None if kept[b] >= n_features else keep[b, i]
            png = _render.png_bytes(_render.masked_pixels(sources[i], mask, grey))
            entries.append({"id": ids[b * n + len(entries)], "src": _render.data_uri(png)})
        full = f >= 1.0
        batches.append(
            {
                "short": "whole images" if full else f"{fraction_label(f)} of pixels visible",
                "description": "whole images, nothing hidden"
                if full
                else f"about {fraction_label(f)} of the pixels of each image are visible, the rest is grey",
                "items": entries,
            }
        )
    buttons = [{"value": c, "name": names[c], "key": str(p) if p < 10 else ""} for p, c in enumerate(offered)]
    study_id = secrets.token_hex(8)
    page_data = {
        "study_id": study_id,
        "answers_format": ANSWERS_FORMAT,
        "format_version": FORMAT_VERSION,
        "classes": buttons,
        "batches": batches,
    }
    page = _render.render(
        "study.html.jinja",
        title=title,
        data=page_data,
        classes=buttons,
        batches=batches,
        batch_size=n,
        n_items=len(ids),
        has_full=fracs[-1] >= 1.0,
        last_key=str(min(len(buttons), 10) - 1),
        mask_css=_css_colour(grey),
        width=int(images.shape[3]),
        height=int(images.shape[2]),
    )

    study = Study(
        study_id=study_id,
        title=title,
        page=folder / PAGE_NAME,
        key=key_path,
        fractions=fracs,
        classes=offered,
        class_names=tuple(names[c] for c in offered),
        indices=chosen,
        labels=chosen_labels,
        image_models=tuple(model_names[int(j)] for j in assigned.tolist()),
        item_ids=tuple(ids),
        item_images=item_images,
        item_batches=item_batches,
        model_predictions=predictions[item_batches, item_images],
        kept=kept,
        n_features=n_features,
        settings={
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "models": model_names,
            "method": method,
            "threshold": t,
            "per_class": per_class,
            "baselines": _describe(baselines),
            "feature groups": "pixels" if isinstance(feature_mask, str) else f"{n_features} groups",
            "mask colour": _css_colour(grey),
            "seed": seed,
            "data images": int(images.shape[0]),
            "eligible images": int(eligible.sum()),
        },
    )
    # the key first: a page whose key failed to be written could never be scored
    existed = key_path.exists()
    _write_json_atomic(key_path, study.to_dict(), caller)
    try:
        # the folder holds the page alone (no marker file): _format_paths checked any page it replaces
        with staged_directory(folder, caller, overwrite=True, mark=False) as staging:
            (staging / PAGE_NAME).write_text(page, encoding="utf-8")
    except BaseException:
        if not existed:
            key_path.unlink(missing_ok=True)
        raise
    return study
