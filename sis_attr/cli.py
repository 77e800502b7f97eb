"""The ``sis-attr`` command line: the shortcut demo and the overinterpretation audit of your own model.

Usage::

    sis-attr demo [--out DIR] [--fast]
    sis-attr audit --model MODULE:CALLABLE [--weights PATH] --data PATH [options]
    sis-attr study make --model MODULE:CALLABLE --data PATH [--out DIR] [options]
    sis-attr study score KEY ANSWERS... [--out DIR]

``sis-attr demo`` needs no download: it trains two small CNNs on scikit-learn's 8x8 digits (one of them on a
copy with a planted shortcut), audits both and writes a report comparing them (see
:mod:`sis_attr.demo`).

``sis-attr audit`` audits a model of yours on your data and writes the report of
:func:`sis_attr.overinterpretation.audit`:

* ``--model MODULE:CALLABLE``: ``MODULE`` is a dotted module importable from ``sys.path`` (the current
  directory is searched first, as with ``python -m``) or the path of a ``.py`` file; ``CALLABLE`` (which may be
  dotted, e.g. ``Factory.build``) is called without arguments and must return a ``torch.nn.Module``. The
  module's code runs: only name modules you trust.
* ``--weights PATH``: a state dict saved with ``torch.save``, read with ``torch.load(..., weights_only=True)``
  (no code runs). A checkpoint dict with a ``"state_dict"`` (or ``"model_state_dict"``) entry works too, and a
  ``module.`` prefix (from ``DataParallel``) is removed. The state dict must fit the model exactly. Files that
  need arbitrary unpickling (a whole pickled model, custom classes) are refused unless you pass
  ``--unsafe-load-pickle``, which runs whatever code the file holds: use it only for files you trust.
* ``--data PATH``: the official CIFAR-10 python-batch directory (``cifar-10-batches-py``, with ``--split``), a
  class-per-subfolder image folder (``root/<class>/<image>``) or an ``.npz`` archive of images and labels
  (``--images-key``, ``--labels-key``). Images are read as floats in ``[0, 1]``.
* Normalisation: ``--mean``/``--std`` (one value per channel) wrap the model in
  :class:`~sis_attr.models.NormalizedModel`, so the model still receives ``(x - mean) / std`` while masking
  happens on the ``[0, 1]`` images. ``--mask-space`` chooses what a removed pixel becomes: ``normalized``
  (default with ``--mean``/``--std``; the paper's choice) sets it to ``--baseline`` *after* normalisation, so the
  default baseline 0 is the mean colour; ``pixel`` sets it to ``--baseline`` in ``[0, 1]`` image space, so 0 is
  black. Without ``--mean``/``--std`` the model receives the ``[0, 1]`` images and removed pixels become
  ``--baseline``.

Backward selection is checkpointed: each finished shard of images is written to ``--checkpoint`` (default
``OUT/checkpoint``) as it completes, so rerunning an interrupted command resumes where it stopped, and rerunning
a finished one rebuilds the report without recomputing (``--checkpoint`` refuses results of another model, data
set, method or parameters). ``--backend ray`` runs the shards as Ray tasks (``pip install "sis-attr[ray]"``;
``--ray-address`` joins a running cluster).

The report adds two controls beyond the paper, on the same subsets and SIS: mask-shape leakage (do the
subsets' positions alone carry the class?) and smoothed SIS (does each SIS survive its one-pixel dilation?);
``--no-controls`` leaves them out.

Bad input (a model that does not import, weights or data that do not fit the model, an empty data set, labels
outside the model's classes, an output directory that cannot be written...) ends with exit status 2 and a
one-line message; the report directory is written through a staging directory, so nothing half-written looks
complete, and a staging directory left by an interrupted run is removed by the next. An existing ``--out``
directory is only written to if sis-attr wrote it (it holds the ``.sis-attr-report`` marker) or if none of the
files the report writes is there; ``--overwrite`` replaces such files anyway. This is checked before any
computation starts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sis_attr.exceptions import CLIError, SISError

__all__ = ["load_data", "load_model", "load_weights", "main"]

_EXIT_USAGE = 2


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------------ model
@contextlib.contextmanager
def _path_first(entry: str) -> Iterator[None]:
    """Temporarily put ``entry`` first on ``sys.path``."""
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _import_module(module_part: str) -> Any:
    looks_like_file = module_part.endswith(".py") or "/" in module_part or os.sep in module_part
    if looks_like_file:
        path = Path(module_part).expanduser()
        if not path.is_file():
            raise CLIError(f"--model: the file {module_part!r} does not exist.")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        name = f"_sis_attr_model_{path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CLIError(f"--model: cannot import {module_part!r} as a Python file.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            with _path_first(str(path.resolve().parent)):  # the file may import its siblings
                spec.loader.exec_module(module)
        except BaseException as err:
            sys.modules.pop(name, None)
            if isinstance(err, KeyboardInterrupt):
                raise
            raise CLIError(
                f"--model: importing {module_part!r} failed with {type(err).__name__}: {_first_line(err)}"
            ) from err
        return module
    try:
        with _path_first(os.getcwd()):
            return importlib.import_module(module_part)
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            raise
        raise CLIError(
            f"--model: cannot import the module {module_part!r} ({type(err).__name__}: {_first_line(err)}). "
            "Give a module importable from the current directory or sys.path, or the path of a .py file."
        ) from err


def load_model(spec: str) -> nn.Module:
    """Build the model named by ``MODULE:CALLABLE`` (``--model``; see the module docstring).

    The module's code runs: only name modules you trust.

    Parameters
    ----------
    spec : str
        ``MODULE:CALLABLE``: a dotted module importable from the current directory or ``sys.path``, or the path
        of a ``.py`` file, then a (possibly dotted) callable that takes no argument.

    Returns
    -------
    torch.nn.Module
        What the callable returned, unchanged (its mode included).

    Raises
    ------
    CLIError
        If the module cannot be imported, the callable is missing or fails, or it does not return an
        ``nn.Module``.

    Examples
    --------
    >>> load_model("sis_attr.testing:TinyConvNet").fc
    Linear(in_features=8, out_features=10, bias=True)
    """
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise CLIError(
            f"--model must be MODULE:CALLABLE (e.g. mypackage.models:build or path/to/models.py:build). Got {spec!r}."
        )
    module = _import_module(module_part)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"--model: {module_part!r} has no attribute {attr!r}.") from None
    if not callable(obj):
        raise CLIError(f"--model: {attr!r} in {module_part!r} is not callable (got {type(obj).__name__}).")
    try:
        model = obj()
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # SystemExit too: a factory that exits is an error of --model, not sis-attr's exit
        what = f"{type(err).__name__}({err.code!r})" if isinstance(err, SystemExit) else type(err).__name__
        raise CLIError(f"--model: calling {attr}() failed with {what}: {_first_line(err)}") from err
    if not isinstance(model, nn.Module):
        raise CLIError(f"--model: {attr}() must return a torch.nn.Module. Got {type(model).__name__} instead.")
    return model


def _state_dict_of(obj: Any) -> Mapping[str, Any] | None:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, (Mapping, nn.Module)):
                return _state_dict_of(inner)
        return obj
    return None


def _plural(n: int, word: str, plural: str) -> str:
    return f"{n} {word if n == 1 else plural}"


def _examples(keys: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (", ..." if len(keys) > limit else "")


def _unsafe_globals(file: Path) -> list[str]:
    """The globals that ``torch.load(file, weights_only=True)`` would refuse, read without unpickling anything.

    Empty where torch cannot tell (torch < 2.5, or a file that is not a zip checkpoint): ``torch.load`` decides.
    """
    inspect = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if inspect is None:
        return []
    try:
        return sorted(str(name) for name in inspect(file))
    except Exception:  # not a checkpoint written by torch.save (legacy format, or no checkpoint at all)
        return []


def _pickle_calls(file: Path) -> list[str]:
    """The ``module.name`` globals a plain pickle file would import when loaded (read with pickletools, nothing
    runs), other than torch's and the standard containers'; empty where the file cannot be parsed."""
    import pickletools

    found: list[str] = []
    strings: list[str] = []
    try:
        with open(file, "rb") as f:
            for opcode, arg, _ in pickletools.genops(f):
                if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(str(arg))
                elif opcode.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif opcode.name == "STOP":
                    break
    except Exception:  # not a pickle, or one pickletools cannot walk: torch.load's own message stands
        pass
    safe = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset")
    return sorted({g for g in found if not g.startswith(safe)})


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, unsafe_load_pickle: bool = False) -> None:
    """Load a state dict from ``path`` into ``model`` (``--weights``), which it must fit exactly.

    The file is read with ``torch.load(..., weights_only=True)``. A checkpoint dict with a ``"state_dict"`` (or
    ``"model_state_dict"``) entry works too, and a ``module.`` prefix on every key is removed. Shapes are
    compared with the model's before anything is copied; missing and unexpected keys are those that
    ``model.load_state_dict(..., strict=False)`` reports. After an error ``model`` may be partly loaded: discard it.

    Parameters
    ----------
    model : torch.nn.Module
        The model built by :func:`load_model`; its parameters and buffers are overwritten in place.
    path : str or os.PathLike
        The file written by ``torch.save``.
    unsafe_load_pickle : bool, default False
        Read the file with ``weights_only=False``, which runs whatever code it holds: trusted files only.

    Raises
    ------
    CLIError
        If the file is missing or unreadable, needs arbitrary unpickling without ``unsafe_load_pickle``, holds no
        state dict, or its keys or shapes do not fit the model (the message names the first few).

    Examples
    --------
    >>> import tempfile
    >>> from sis_attr.testing import TinyConvNet
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     torch.save({"state_dict": TinyConvNet(seed=1).state_dict()}, Path(tmp) / "w.pt")
    ...     model = TinyConvNet(seed=0)
    ...     load_weights(model, Path(tmp) / "w.pt")
    >>> torch.equal(model.fc.weight, TinyConvNet(seed=1).fc.weight)
    True
    """
    file = Path(path)
    if file.is_dir():
        raise CLIError(f"--weights: {str(file)!r} is a directory. Give the checkpoint file in it.")
    if not file.is_file():
        raise CLIError(f"--weights: the file {str(file)!r} does not exist.")
    if not unsafe_load_pickle:
        unsafe = _unsafe_globals(file) or _pickle_calls(file)  # a torch.save checkpoint, else a plain pickle
        if unsafe:
            raise CLIError(
                f"--weights: {str(file)!r} is not a plain state dict: it holds pickled {_examples(unsafe)}, which "
                "torch.load(weights_only=True) refuses because loading it can run arbitrary code. If you trust the "
                "file, pass --unsafe-load-pickle, or save model.state_dict() instead."
            )
    try:
        obj = torch.load(file, map_location="cpu", weights_only=not unsafe_load_pickle)
    except pickle.UnpicklingError as err:
        calls = [] if unsafe_load_pickle else _pickle_calls(file)
        if calls:
            raise CLIError(
                f"--weights: {str(file)!r} is not a plain state dict: it is a pickle that calls {_examples(calls)} "
                "when loaded, which torch.load(weights_only=True) refuses because it can run arbitrary code. If you "
                "trust the file, pass --unsafe-load-pickle, or save model.state_dict() with torch.save instead."
            ) from err
        # torch wraps the unpickler's own error (e.g. "Unsupported operand 110") in a long explanation: report
        # the original one
        reason = _first_line(err.__context__ if isinstance(err.__context__, pickle.UnpicklingError) else err)
        hint = "" if unsafe_load_pickle else " (if it is a pickle you trust, --unsafe-load-pickle may read it)"
        raise CLIError(
            f"--weights: cannot read {str(file)!r} as a torch checkpoint (a file written by torch.save): {reason}{hint}"
        ) from err
    except Exception as err:  # torch raises several types for files that are not checkpoints
        kind = f"{type(err).__module__}.{type(err).__name__}".removeprefix("builtins.")
        raise CLIError(
            f"--weights: cannot read {str(file)!r} as a torch checkpoint (a file written by torch.save): "
            f"{kind}: {_first_line(err)}"
        ) from err
    state = _state_dict_of(obj)
    if state is None or not state or not all(isinstance(k, str) for k in state):
        raise CLIError(
            f"--weights: {str(file)!r} holds a {type(obj).__name__}, not a state dict (a dict of parameter names to "
            "tensors, or a checkpoint dict with a 'state_dict' entry)."
        )
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if len(tensors) != len(state):
        bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
        raise CLIError(f"--weights: {str(file)!r} is not a state dict: {_examples(bad)} are not tensors.")
    prefix = "module."
    if all(k.startswith(prefix) for k in tensors):
        tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    expected = model.state_dict()
    mismatched = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)
    ]
    missing: list[str] = []
    unexpected: list[str] = []
    if not mismatched:
        try:
            # strict=False reports missing/unexpected keys after the modules' own compatibility rules (e.g.
            # batch norm accepts checkpoints without num_batches_tracked); any problem is an error below
            result = model.load_state_dict(tensors, strict=False)
        except RuntimeError as err:
            raise CLIError(f"--weights: {str(file)!r} does not fit the model: {_first_line(err)}") from err
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected or mismatched:
        problems = [
            f"{_plural(len(keys), word, plural)} ({_examples(keys, limit)})"
            for keys, word, plural, limit in (
                (missing, "missing key", "missing keys", 3),
                (unexpected, "unexpected key", "unexpected keys", 3),
                (mismatched, "shape mismatch", "shape mismatches", 2),
            )
            if keys
        ]
        hint = " Does --model build the architecture these weights were saved from?" if missing or unexpected else ""
        raise CLIError(f"--weights: {str(file)!r} does not fit the model: " + "; ".join(problems) + "." + hint)


# ------------------------------------------------------------------------------------------------ data
def load_data(
    path: str | os.PathLike[str],
    *,
    split: str = "test",
    limit: int | None = None,
    images_key: str = "X",
    labels_key: str = "y",
    grayscale: bool = False,
    seed: int = 0,
) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Read ``--data``: a CIFAR-10 python-batch directory, an image folder or an ``.npz`` archive.

    A directory holding ``batches.meta`` is read with :func:`~sis_attr.datasets.load_cifar10_batches`, any other
    directory with :func:`~sis_attr.datasets.load_image_folder`, an ``.npz`` file with
    :func:`~sis_attr.datasets.load_npz_images`.

    Parameters
    ----------
    path : str or os.PathLike
        The directory or file.
    split : {"test", "train"}, default "test"
        CIFAR-10 split.
    limit : int, optional
        Keep the first ``limit`` images (CIFAR-10, ``.npz``) or, for an image folder (whose files are sorted by
        class), ``limit`` images drawn at random with ``seed``.
    images_key, labels_key : str, default "X", "y"
        Arrays of an ``.npz`` archive.
    grayscale : bool, default False
        One-channel images: image folders are read in Pillow's ``"L"`` mode; CIFAR-10 and ``.npz`` colour images
        are converted with the same ITU-R 601-2 luma weights (``0.299 R + 0.587 G + 0.114 B``).
    seed : int, default 0
        Seed of the draw from an image folder.

    Returns
    -------
    tuple of (torch.Tensor, torch.Tensor, tuple of str)
        float32 images ``(N, C, H, W)`` in ``[0, 1]``, int64 labels ``(N,)`` and the class names.

    Raises
    ------
    CLIError, SISError
        If the path does not exist or its contents are not in one of the formats.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     np.savez(Path(tmp) / "d.npz", X=np.zeros((3, 8, 8, 3), dtype=np.uint8), y=np.array([0, 1, 1]))
    ...     images, labels, names = load_data(Path(tmp) / "d.npz", limit=2)
    >>> tuple(images.shape), labels.tolist(), names
    ((2, 3, 8, 8), [0, 1], ('0', '1'))
    """
    from sis_attr.datasets import load_cifar10_batches, load_image_folder, load_npz_images

    root = Path(path).expanduser()
    if root.is_dir():
        if (root / "batches.meta").is_file():
            if split not in ("test", "train"):
                raise CLIError(f"--split must be 'test' or 'train'. Got {split!r}.")
            images, labels, names = load_cifar10_batches(root, split, limit)  # type: ignore[arg-type]
            return (_grayscale(images) if grayscale else images), labels, names
        images, labels, names = load_image_folder(root, mode="L" if grayscale else "RGB")
        if limit is not None and limit < images.shape[0]:
            keep = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]
            keep = keep.sort().values
            images, labels = images[keep], labels[keep]
        return images, labels, names
    if root.is_file():
        if root.suffix.lower() != ".npz":
            raise CLIError(
                f"--data: {str(root)!r} is a file but not an .npz archive. Give a cifar-10-batches-py directory, an "
                "image folder (root/<class>/<image>) or an .npz file."
            )
        images, labels, names = load_npz_images(root, images_key, labels_key)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        return (_grayscale(images) if grayscale else images), labels, names
    raise CLIError(f"--data: {str(root)!r} does not exist.")


def _grayscale(images: Tensor) -> Tensor:
    """``(N, 1, H, W)`` luma of ``(N, 3, H, W)`` colour images (Pillow's "L" weights); one channel is kept."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise CLIError(f"--grayscale needs colour (3-channel) or grey images. Got {images.shape[1]} channels.")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


# ------------------------------------------------------------------------------------------------ output
_AUDIT_FILES = ("index.html", "report.json", "selection.pt")
_AUDIT_DIRS = ("figures",)
_DEMO_FILES = ("index.html", "comparison.json")
_DEMO_DIRS = ("figures", "clean-cnn", "shortcut-cnn")


def _claim_output(out: Path, *, overwrite: bool, files: Sequence[str], dirs: Sequence[str]) -> None:
    """Refuse, before any computation, an ``--out`` where the report would replace a user's own files.

    Directories the report writes (``figures/``...) are only ever replaced when sis-attr wrote them; files
    (``index.html``...) only in a directory sis-attr wrote (its marker file) or with ``--overwrite``. Staging
    directories left by an interrupted run are removed first.
    """
    from sis_attr.overinterpretation.report._writer import MARKER

    _remove_staging(out)
    if not out.is_dir():
        return
    for name in dirs:
        sub = out / name
        if sub.exists() and not (sub.is_dir() and (sub / MARKER).is_file()):
            raise CLIError(
                f"--out: {str(sub)!r} exists and was not written by sis-attr, and the report would replace it. Move "
                "it, or choose another --out."
            )
    if overwrite or (out / MARKER).is_file():
        return
    clashes = [name for name in files if (out / name).exists()]
    if clashes:
        raise CLIError(
            f"--out: {str(out)!r} holds {', '.join(clashes)}, which sis-attr did not write (the directory has no "
            f"{MARKER} marker) and the report would replace. Pass --overwrite to replace them, or choose another "
            "--out."
        )


def _remove_staging(out: Path) -> None:
    """Remove the hidden staging directories a killed report writer left beside or inside ``out``."""
    import shutil

    leftovers = list(out.parent.glob(f".{out.name}.sis-attr-staging-*")) if out.parent.is_dir() else []
    if out.is_dir():
        leftovers += list(out.glob(".sis-attr-staging-*")) + list(out.glob(".sis-attr-old-*"))
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ parser
def _int_at_least(low: int, kind: str) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``low`` (``kind`` names it in the message)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _k_value(text: str) -> int | float | str:
    if text in ("auto", "adaptive"):
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', a positive integer, a fraction in (0, 1) or 'adaptive', got {text!r}"
        )
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _add_input_options(parser: argparse.ArgumentParser, *, limit_help: str) -> None:
    """The model and data options shared by ``sis-attr audit`` and ``sis-attr study make``."""
    parser.add_argument("--model", required=True, metavar="MODULE:CALLABLE", help="model factory (module or .py file)")
    parser.add_argument("--weights", metavar="PATH", help="state dict to load (torch.load with weights_only=True)")
    parser.add_argument(
        "--unsafe-load-pickle",
        action="store_true",
        help="allow --weights files that need arbitrary unpickling (runs code from the file: trusted files only)",
    )
    parser.add_argument(
        "--data", required=True, metavar="PATH", help="cifar-10-batches-py directory, image folder or .npz"
    )
    parser.add_argument("--split", choices=("test", "train"), default="test", help="CIFAR-10 split (default: test)")
    parser.add_argument("--images-key", default="X", help=".npz array of images (default: %(default)s)")
    parser.add_argument("--labels-key", default="y", help=".npz array of labels (default: %(default)s)")
    parser.add_argument("--grayscale", action="store_true", help="read image folders as one-channel images")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help=limit_help)


def _add_selection_options(parser: argparse.ArgumentParser) -> None:
    """The backward-selection options shared by ``sis-attr audit`` and ``sis-attr study make``."""
    parser.add_argument(
        "--method",
        choices=("exact", "gradient"),
        default="gradient",
        help="backward selection method (default: gradient, with the automatic schedule k=auto)",
    )
    parser.add_argument(
        "--superpixel", type=_positive_int, metavar="N", help="group NxN pixels into one feature (cheaper SIS)"
    )
    parser.add_argument(
        "--k",
        type=_k_value,
        default=None,
        help="gradient method: 'auto' (the default: the SIS by screened forward selection, the rest ranked by "
        "gradient steps), features removed per step (an integer, or a fraction of the remaining such as 0.2) or "
        "'adaptive'",
    )
    parser.add_argument(
        "--shortlist",
        type=_positive_int,
        help="gradient method: exact choice among the gradient's best M (with --k auto: the additions screened "
        "per forward step, default 32)",
    )


def _add_normalisation_options(parser: argparse.ArgumentParser, *, baseline_help: str) -> None:
    """``--mean``, ``--std``, ``--mask-space`` and ``--baseline``, shared by ``sis-attr audit`` and ``study make``."""
    parser.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel normalisation mean")
    parser.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel normalisation std")
    parser.add_argument(
        "--mask-space",
        choices=("normalized", "pixel"),
        default="normalized",
        help="where --baseline applies when --mean/--std are given (default: %(default)s)",
    )
    parser.add_argument("--baseline", type=float, default=0.0, help=baseline_help)


def _build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sis-attr``."""
    from sis_attr import __version__

    parser = argparse.ArgumentParser(
        prog="sis-attr",
        description="Sufficient input subsets and the overinterpretation audit of Carter et al.",
    )
    parser.add_argument("--version", action="version", version=f"sis-attr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,audit,study}")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="audit a clean and a shortcut CNN on scikit-learn's digits (no download)",
        description=(
            "Train two small CNNs on scikit-learn's 8x8 digits, one of them on a copy with a planted shortcut "
            "(a label-dependent border pixel), audit both with exact SIS and write a report comparing them."
        ),
    )
    demo.add_argument("--out", default="sis-attr-demo", help="report directory (default: %(default)s)")
    demo.add_argument(
        "--fast", action="store_true", help="fewer training epochs and audited images: a quicker, noisier look"
    )
    demo.add_argument(
        "--images", type=_positive_int, help="test images audited per model, 1 to 297 (default 80, fast 30)"
    )
    demo.add_argument("--epochs", type=_positive_int, help="training epochs per model (default 6, fast 4)")
    demo.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.add_argument(
        "--overwrite", action="store_true", help="replace report files in --out that sis-attr did not write"
    )

    aud = sub.add_parser(
        "audit",
        help="audit your model on your data",
        description="Audit an image classifier for overinterpretation (Carter et al.) and write a report.",
        epilog=(
            "Normalisation: --mean/--std make the model receive (x - mean) / std while masking happens on the "
            "[0, 1] images; --mask-space normalized (default) sets removed pixels to --baseline after "
            "normalisation (0: the mean colour, the paper's choice), --mask-space pixel sets them to --baseline "
            "in [0, 1] image space (0: black)."
        ),
    )
    _add_input_options(aud, limit_help="audit at most N images")
    aud.add_argument("--threshold", type=_probability, default=0.99, help="SIS threshold (default: %(default)s)")
    aud.add_argument("--fraction", type=_probability, default=0.05, help="subset fraction (default: %(default)s)")
    _add_selection_options(aud)
    _add_normalisation_options(aud, baseline_help="value of removed pixels (default: %(default)s)")
    aud.add_argument("--batch-size", type=_positive_int, default=256, help="masked images per forward pass")
    aud.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    aud.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: %(default)s)")
    aud.add_argument(
        "--ties",
        choices=["random", "lowest"],
        default="random",
        help="tie-breaking of backward selection: seeded random order (default) or lowest feature id (the paper's)",
    )
    aud.add_argument("--examples", type=_non_negative_int, default=10, help="example SIS shown (default: 10)")
    aud.add_argument("--name", help="model name in the report (default: MODULE:CALLABLE without directories)")
    aud.add_argument("--out", default="sis-attr-report", help="report directory (default: %(default)s)")
    aud.add_argument(
        "--overwrite", action="store_true", help="replace report files in --out that sis-attr did not write"
    )
    aud.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="where finished shards are written; a rerun resumes from it (default: OUT/checkpoint)",
    )
    aud.add_argument("--shard-size", type=_positive_int, metavar="N", help="images per shard (default: 64 or more)")
    aud.add_argument(
        "--scores-dtype",
        choices=("float32", "float16", "float64"),
        default="float32",
        help="precision of the stored scores (default: %(default)s)",
    )
    aud.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="run the shards here or as Ray tasks (pip install 'sis-attr[ray]'; default: %(default)s)",
    )
    aud.add_argument("--ray-address", metavar="ADDR", help="with --backend ray: join this cluster (e.g. auto)")
    aud.add_argument(
        "--no-controls",
        action="store_true",
        help="leave out the mask-shape leakage and smoothed-SIS controls (7 more model runs per image)",
    )
    aud.add_argument("--no-progress", action="store_true", help="hide progress bars")

    from sis_attr._cli_study import add_study_parser  # the human study (its own module: it imports this one)

    add_study_parser(sub)
    return parser


# ------------------------------------------------------------------------------------------------ commands
def _resolve_device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise CLIError(f"--device: {text!r} is not a torch device ({_first_line(err)}).") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {text}: CUDA is not available on this machine.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CLIError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) are available.")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {text}: MPS is not available on this machine.")
    return device


def _run_demo(args: argparse.Namespace) -> int:
    from sis_attr.demo import _N_TEST, run_demo
    from sis_attr.overinterpretation.report import check_output_directory

    if args.images is not None and args.images > _N_TEST:
        raise CLIError(
            f"--images must be in [1, {_N_TEST}] (the demo holds out {_N_TEST} test digits). Got {args.images}."
        )
    out = check_output_directory(args.out, "sis-attr demo")
    _claim_output(out, overwrite=args.overwrite, files=_DEMO_FILES, dirs=_DEMO_DIRS)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise CLIError(
            "the demo needs scikit-learn (its bundled digits): pip install scikit-learn, or sis-attr[demo]."
        ) from None
    result = run_demo(
        args.out,
        fast=args.fast,
        seed=args.seed,
        n_images=args.images,
        epochs=args.epochs,
        show_progress=not args.no_progress,
        log=log,
        overwrite=args.overwrite,
    )
    print(result.summary())
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items())
    print(f"\nDone in {result.seconds:.0f} s ({steps}).\nReport: {result.index}")
    return 0


def _images_of(args: argparse.Namespace) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """The images, labels and class names of ``--data`` (``--split``, ``--limit``, ...); none is an error."""
    images, labels, names = load_data(
        args.data,
        split=args.split,
        limit=args.limit,
        images_key=args.images_key,
        labels_key=args.labels_key,
        grayscale=args.grayscale,
        seed=args.seed,
    )
    if images.shape[0] == 0:
        raise CLIError(f"--data: {args.data!r} holds no image.")
    return images, labels, names


def _model_and_baselines(args: argparse.Namespace, images: Tensor) -> tuple[nn.Module, float | Tensor]:
    """The model of ``--model``/``--weights`` (in eval mode, normalised with ``--mean``/``--std``) and baselines.

    Shared by ``sis-attr audit`` and ``sis-attr study make``: with ``--mask-space normalized`` the baseline
    applies after the normalisation, so it is mapped back into the ``[0, 1]`` image space the model receives.
    """
    from sis_attr.models import NormalizedModel

    if (args.mean is None) != (args.std is None):
        raise CLIError("--mean and --std go together: give both (one value per channel) or neither.")
    model = load_model(args.model)
    if args.weights is not None:
        if args.unsafe_load_pickle:
            print(
                f"warning: loading {args.weights} with --unsafe-load-pickle: it may run arbitrary code.",
                file=sys.stderr,
            )
        load_weights(model, args.weights, unsafe_load_pickle=args.unsafe_load_pickle)
    model.eval()  # the command line built this model; library functions never change a user's model mode
    baselines: float | Tensor = float(args.baseline)
    if args.mean is not None:
        channels = int(images.shape[1])
        if len(args.mean) != channels or len(args.std) != channels:
            raise CLIError(
                f"--mean and --std need one value per channel: the images have {channels} channel(s); got "
                f"{len(args.mean)} mean and {len(args.std)} std values."
            )
        if any(s <= 0 for s in args.std):
            raise CLIError(f"--std values must be positive. Got {args.std}.")
        model = NormalizedModel(model, args.mean, args.std).eval()
        if args.mask_space == "normalized":
            mean = torch.tensor(args.mean, dtype=images.dtype).view(1, -1, 1, 1)
            std = torch.tensor(args.std, dtype=images.dtype).view(1, -1, 1, 1)
            baselines = mean + args.baseline * std
    return model, baselines


def _run_audit(args: argparse.Namespace) -> int:
    from sis_attr.overinterpretation import audit, block_feature_mask
    from sis_attr.overinterpretation.report import check_output_directory

    out = check_output_directory(args.out, "sis-attr audit")
    _claim_output(out, overwrite=args.overwrite, files=_AUDIT_FILES, dirs=_AUDIT_DIRS)
    device = _resolve_device(args.device)
    if (args.mean is None) != (args.std is None):
        raise CLIError("--mean and --std go together: give both (one value per channel) or neither.")
    if args.method == "exact" and (args.k is not None or args.shortlist is not None):
        raise CLIError("--k and --shortlist apply to --method gradient only.")
    if args.ray_address is not None and args.backend != "ray":
        raise CLIError("--ray-address applies to --backend ray only.")
    checkpoint = Path(args.checkpoint) if args.checkpoint is not None else out / "checkpoint"

    images, labels, names = _images_of(args)
    model, baselines = _model_and_baselines(args, images)
    model = model.to(device)

    feature_mask: Any = "pixel"
    if args.superpixel is not None:
        feature_mask = block_feature_mask(int(images.shape[2]), int(images.shape[3]), args.superpixel)
    module_part, _, attr = args.model.rpartition(":")
    name = args.name or f"{Path(module_part).name}:{attr}"
    options: dict[str, Any] = {} if args.k is None else {"k": args.k}
    with _ray_cluster(args.backend, args.ray_address):
        report = audit(
            model,
            (images, labels, names),
            method=args.method,
            threshold=args.threshold,
            fraction=args.fraction,
            baselines=baselines,
            feature_mask=feature_mask,
            shortlist=args.shortlist,
            batch_size=args.batch_size,
            seed=args.seed,
            ties=args.ties,
            n_examples=args.examples,
            name=name,
            checkpoint_dir=checkpoint,
            shard_size=args.shard_size,
            scores_dtype=args.scores_dtype,
            backend=args.backend,
            show_progress=not args.no_progress,
            controls=not args.no_controls,
            **options,
        )
    baseline = report.settings.get("baseline")
    if args.mean is not None and args.mask_space == "normalized":
        # the model saw the colour that normalises to --baseline: say both, in the spaces they belong to
        baseline = f"{args.baseline:g} after normalisation (the colour {baseline} in the input images)"
    report = dataclasses.replace(
        report,
        settings={
            **report.settings,
            "baseline": baseline,
            "command": "sis-attr audit",
            "model factory": args.model,
            "weights": args.weights or "(none: the factory's own)",
            "data": str(args.data),
            "checkpoint": str(checkpoint),
            "normalisation": "none" if args.mean is None else f"mean {args.mean}, std {args.std}",
            "mask space": "input" if args.mean is None else args.mask_space,
            **({"features": f"{args.superpixel}x{args.superpixel} superpixels"} if args.superpixel else {}),
        },
    )
    index = report.save(out, overwrite=args.overwrite)
    print(report.summary())
    print(f"\nReport: {index}")
    return 0


@contextlib.contextmanager
def _ray_cluster(backend: str, address: str | None) -> Iterator[None]:
    """With ``--backend ray``: join the cluster at ``address`` (or start a local one) for the command's duration."""
    if backend != "ray":
        yield
        return
    from sis_attr.overinterpretation._ray import import_ray

    ray = import_ray("sis-attr audit")
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as err:  # an unreachable address, a version mismatch...
        raise CLIError(f"--ray-address {address}: cannot join the Ray cluster ({_first_line(err)}).") from err
    try:
        yield
    finally:
        ray.shutdown()


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """Print warnings as one line on stderr (no source line: the user did not write it)."""
    print(f"sis-attr: warning: {_one_line(str(message))}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sis-attr`` command line; return the exit status.

    0 on success; 2 (with a one-line message on stderr) for bad arguments or unusable input; 130 when
    interrupted.

    Examples
    --------
    >>> main(["audit", "--model", "no_such_module_xyz:build", "--data", "x.npz"])  # message on stderr
    2
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # argparse exits on bad usage (2) and after --help/--version (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else _EXIT_USAGE)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if args.command == "demo":
                return _run_demo(args)
            if args.command == "study":
                from sis_attr._cli_study import run_study

                return run_study(args)
            return _run_audit(args)
    except KeyboardInterrupt:
        print("sis-attr: interrupted", file=sys.stderr)
        return 130
    except (SISError, OSError) as err:
        print(f"sis-attr {args.command}: error: {_one_line(str(err))}", file=sys.stderr)
        return _EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
