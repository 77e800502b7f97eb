"""Train new models on pixel-subsets: are the sparse subsets real statistical signals? (Carter et al., 4.2).

The paper trains fresh models on the 5% backward-selection subsets of the training images and evaluates them
on the 5% subsets of the test images; they reach almost the accuracy of models trained on full images, while
models trained on random 5% subsets fall far behind (Table 1, "train on").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from sis_attr._core.validation import (
    check_label_range,
    format_named,
    format_positive_int,
    param_error,
)
from sis_attr._progress import progress_bar
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation._common import (
    dataset_tensors,
    predict_probabilities,
    to_float,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PAPER_EPOCHS", "RetrainingResult", "Trainer", "retraining_gap"]

Trainer = Callable[[nn.Module, Any, int], nn.Module]
"""``trainer(model, dataset, seed) -> trained model``."""

PAPER_EPOCHS = 200
"""Epochs of the paper's training recipe (Supplementary S1)."""

FULL = "full"
"""Name of the full-image condition in :class:`RetrainingResult`."""


@dataclass(frozen=True, eq=False)
class RetrainingResult:
    """Test accuracy of models trained and evaluated on each condition, over seeds (Table 1, "train on").

    Attributes
    ----------
    accuracies : dict of str to tuple of float
        Per condition (``"full"`` first when full images were given), the test accuracy of the model trained
        with each seed.
    seeds : tuple of int
    """

    accuracies: dict[str, tuple[float, ...]]
    seeds: tuple[int, ...]

    @property
    def conditions(self) -> tuple[str, ...]:
        """Names of the training conditions (e.g. ``"full"``, ``"backselect"``, ``"random"``), in run order."""
        return tuple(self.accuracies)

    def mean(self, condition: str) -> float:
        """Mean test accuracy over seeds."""
        return float(torch.tensor(self.accuracies[condition], dtype=torch.float64).mean())

    def std(self, condition: str) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        acc = torch.tensor(self.accuracies[condition], dtype=torch.float64)
        return float(acc.std(unbiased=True)) if acc.numel() > 1 else 0.0

    def gap(self, condition: str) -> float:
        """Mean accuracy of the full-image models minus that of ``condition`` (NaN without full images)."""
        if FULL not in self.accuracies:
            return math.nan
        return self.mean(FULL) - self.mean(condition)

    def to_dict(self) -> dict[str, Any]:
        """Seeds and, per condition, the per-seed accuracies with their mean and std as JSON-compatible values."""
        return {
            "seeds": list(self.seeds),
            "conditions": {
                name: {
                    "accuracies": list(acc),
                    "mean": self.mean(name),
                    "std": self.std(name),
                    "gap_to_full": to_float(self.gap(name)),
                }
                for name, acc in self.accuracies.items()
            },
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """Bar plot of the mean test accuracy per training condition, with the std over seeds."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        names = list(self.accuracies)
        means = [100 * self.mean(n) for n in names]
        ax.bar(names, means, yerr=[100 * self.std(n) for n in names], capsize=4, color="tab:blue")
        for i, m in enumerate(means):
            ax.annotate(f"{m:.1f}%", (i, m), ha="center", va="bottom")
        ax.set_xlabel("trained and evaluated on")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 105)
        return ax


def _default_trainer(epochs: int, device: torch.device | None) -> Trainer:
    from sis_attr.training import train_classifier

    def trainer(model: nn.Module, dataset: Any, seed: int) -> nn.Module:
        data = dataset
        if isinstance(getattr(dataset, "images", None), Tensor) and getattr(dataset, "transform", None) is None:
            data = (dataset.images, dataset.labels)
        trained, _ = train_classifier(model, data, epochs=epochs, seed=seed, device=device)
        return trained

    return trainer


def retraining_gap(
    model_factory: Callable[[], nn.Module],
    train_subsets: Mapping[str, Dataset[Any] | tuple[Tensor, Tensor]],
    test_subsets: Mapping[str, Dataset[Any] | tuple[Tensor, Tensor]],
    *,
    full: tuple[Dataset[Any] | tuple[Tensor, Tensor], Dataset[Any] | tuple[Tensor, Tensor]] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    trainer: Trainer | None = None,
    epochs: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    show_progress: bool = True,
) -> RetrainingResult:
    """Train fresh models on each kind of pixel-subset and test them on the same kind (Carter et al., 4.2).

    For each condition (for instance ``"backselect"`` and ``"random"``) and each seed, a new model from
    ``model_factory`` (initialised under ``torch.manual_seed(seed)``) is trained on ``train_subsets[name]`` and
    its accuracy measured on ``test_subsets[name]``. With ``full=(train, test)``, models trained and tested on
    full images are the reference (condition ``"full"``).

    Parameters
    ----------
    model_factory : callable
        ``model_factory() -> nn.Module``: a fresh, untrained model.
    train_subsets, test_subsets : dict of str to Dataset
        Training and test data per condition (same keys): :class:`PixelSubsetDataset` objects, any map-style
        dataset of ``(image, label)`` pairs, or ``(images, labels)`` tuples. Train with the true labels.
    full : (train, test), optional
        Full-image training and test data, for the reference condition ``"full"``.
    seeds : sequence of int, default (0, 1, 2)
        One model per seed and condition.
    trainer : callable, optional
        ``trainer(model, dataset, seed) -> model``. Default: :func:`sis_attr.training.train_classifier` with the
        paper's SGD recipe (Nesterov momentum 0.9, lr 0.1 divided by 5 at 30/60/80% of the epochs, batch 128,
        weight decay 5e-4, no augmentation, as for Table 1).
    epochs : int, optional
        Epochs of the default trainer (default 200, the paper's; a few suffice on small data). Not allowed with
        a custom ``trainer``.
    device : str or torch.device, optional
        Where new models are trained and evaluated (default: where ``model_factory`` puts them).
    batch_size : int, default 256
        Images per forward pass when testing.
    show_progress : bool, default True
        Show a progress bar over the training runs.

    Returns
    -------
    RetrainingResult

    Notes
    -----
    The models are the function's own (built by ``model_factory``): they are trained, put in eval mode and
    tested, then dropped. Initialisation and training of each run happen under ``torch.manual_seed(seed)`` in
    a forked RNG state, so runs are reproducible and the global RNG is left as it was.

    Examples
    --------
    >>> import torch
    >>> images = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> labels = (images.mean(dim=(1, 2, 3)) > 0.5).long()
    >>> factory = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> res = retraining_gap(factory, {"all": (images, labels)}, {"all": (images, labels)}, seeds=[0, 1],
    ...                      epochs=3, show_progress=False)
    >>> res.conditions, len(res.accuracies["all"])
    (('all',), 2)
    """
    caller = "retraining_gap"
    if not callable(model_factory):
        raise SISTypeError(
            f"The `model_factory` parameter of {caller} must be a callable returning a fresh nn.Module. "
            f"Got {type(model_factory).__name__} instead."
        )
    train = format_named(train_subsets, caller, "train_subsets", "datasets")
    test = format_named(test_subsets, caller, "test_subsets", "datasets")
    if set(train) != set(test):
        raise SISValueError(
            f"The `train_subsets` and `test_subsets` parameters of {caller} must have the same keys (one test set "
            f"per training condition). Got {sorted(train)} and {sorted(test)} instead."
        )
    if FULL in train:
        raise param_error("train_subsets", caller, f'free of the reserved key "{FULL}" (pass `full=` instead)', FULL)
    conditions: dict[str, tuple[Any, Any]] = {}
    if full is not None:
        if not (isinstance(full, (tuple, list)) and len(full) == 2):
            raise SISTypeError(
                f"The `full` parameter of {caller} must be None or a (train, test) pair of datasets. "
                f"Got {type(full).__name__} instead."
            )
        conditions[FULL] = (full[0], full[1])
    for name in train:
        conditions[name] = (train[name], test[name])
    if isinstance(seeds, (int, str)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise param_error("seeds", caller, "a non-empty sequence of integers", repr(seeds))
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise param_error("seeds", caller, "a sequence of integers", repr(list(seeds)))
    batch_size = format_positive_int(batch_size, "batch_size", caller)
    dev = torch.device(device) if device is not None else None
    if trainer is None:
        n_epochs = PAPER_EPOCHS if epochs is None else epochs
        if isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 1:
            raise param_error("epochs", caller, "a positive integer", repr(epochs))
        run = _default_trainer(n_epochs, dev)
    else:
        if not callable(trainer):
            raise SISTypeError(
                f"The `trainer` parameter of {caller} must be None or a callable (model, dataset, seed) -> model. "
                f"Got {type(trainer).__name__} instead."
            )
        if epochs is not None:
            raise SISValueError(
                f"The `epochs` parameter of {caller} applies to the default trainer only; a custom `trainer` sets "
                "its own epochs. Drop `epochs`."
            )
        run = trainer
    # validate every test set before any (long) training starts
    tests = {name: dataset_tensors(pair[1], caller, f"test_subsets['{name}']") for name, pair in conditions.items()}
    for name, pair in conditions.items():
        if not isinstance(pair[0], Dataset) and not (isinstance(pair[0], tuple) and len(pair[0]) == 2):
            dataset_tensors(pair[0], caller, f"train_subsets['{name}']")  # raises a clear error

    accuracies: dict[str, tuple[float, ...]] = {}
    with progress_bar(len(conditions) * len(seeds), "Retraining", show_progress, unit="model") as bar:
        for name, (train_ds, _) in conditions.items():
            accs = []
            for seed in seeds:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = model_factory()
                if not isinstance(model, nn.Module):
                    raise SISTypeError(
                        f"The `model_factory` of {caller} must return an nn.Module. Got {type(model).__name__}."
                    )
                if dev is not None:
                    model = model.to(dev)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    trained = run(model, train_ds, seed)
                if not isinstance(trained, nn.Module):
                    raise SISTypeError(
                        f"The `trainer` of {caller} must return the trained nn.Module. Got {type(trained).__name__}."
                    )
                images, labels = tests[name]
                probs = predict_probabilities(trained.eval(), images, caller, batch_size=batch_size)
                check_label_range(labels, int(probs.shape[1]), caller, param=f"test_subsets['{name}']")
                accs.append(float((probs.argmax(dim=1) == labels).double().mean()))
                bar.update(1)
            accuracies[name] = tuple(accs)
    return RetrainingResult(accuracies=accuracies, seeds=tuple(int(s) for s in seeds))
