"""Do one model's pixel-subsets convince another model? (Carter et al., 4.1).

The paper finds that 5% subsets from one ResNet18 (94.8% accuracy on them) are classified with only 27.6%,
29.2% and 27.5% accuracy by another ResNet18, a ResNet20 and a VGG16: different models rely on different
sparse evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from sis_attr._core.validation import (
    check_label_range,
    format_labels,
    format_model,
    format_named,
    format_positive_int,
    warn_if_training,
)
from sis_attr.exceptions import SISValueError
from sis_attr.overinterpretation._common import (
    dataset_tensors,
    predict_probabilities,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["TransferResult", "transfer_matrix"]


@dataclass(frozen=True, eq=False)
class TransferResult:
    """Accuracy and mean confidence of every model on every model's pixel-subsets.

    Attributes
    ----------
    sources : tuple of str
        Row names: the model whose subsets are evaluated.
    models : tuple of str
        Column names: the evaluating model.
    accuracy : Tensor
        ``(len(sources), len(models))`` float64 accuracies in [0, 1].
    confidence : Tensor
        Same shape: mean confidence of the evaluating model's prediction (its max probability).
    """

    sources: tuple[str, ...]
    models: tuple[str, ...]
    accuracy: Tensor
    confidence: Tensor

    def __getitem__(self, key: tuple[str, str]) -> float:
        """``result[source, model]``: accuracy of ``model`` on the subsets of ``source``."""
        source, model = key
        return float(self.accuracy[self.sources.index(source), self.models.index(model)])

    def self_accuracy(self) -> dict[str, float]:
        """Accuracy of each model on its own subsets (where a source has the same name as a model)."""
        return {s: self[s, s] for s in self.sources if s in self.models}

    def cross_accuracy(self) -> dict[tuple[str, str], float]:
        """Accuracy of every model on every *other* model's subsets, keyed by ``(source, model)``."""
        return {(s, m): self[s, m] for s in self.sources for m in self.models if s != m}

    def to_dict(self) -> dict[str, Any]:
        """Source and evaluating model names and the accuracy matrix as JSON-compatible values."""
        return {
            "sources": list(self.sources),
            "models": list(self.models),
            "accuracy": self.accuracy.tolist(),
            "confidence": self.confidence.tolist(),
        }

    def plot(self, ax: Axes | None = None, *, value: str = "accuracy") -> Axes:
        """Heatmap of accuracy (or ``value="confidence"``), subsets' source in rows, evaluating model in columns."""
        import matplotlib.pyplot as plt

        if value not in ("accuracy", "confidence"):
            raise SISValueError(
                f'The `value` parameter of TransferResult.plot must be "accuracy" or "confidence". '
                f"Got {value!r} instead."
            )
        if ax is None:
            _, ax = plt.subplots()
        data = (self.accuracy if value == "accuracy" else self.confidence).numpy()
        im = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(self.models)), self.models)
        ax.set_yticks(range(len(self.sources)), self.sources)
        ax.set_xlabel("evaluated by")
        ax.set_ylabel("subsets from")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{100 * data[i, j]:.1f}",
                    ha="center",
                    va="center",
                    color="white" if data[i, j] < 0.5 else "black",
                )
        ax.figure.colorbar(im, ax=ax, label=value)
        return ax


def transfer_matrix(
    models: Mapping[str, nn.Module],
    subsets: Mapping[str, Any],
    labels: Tensor | None = None,
    *,
    batch_size: int = 256,
) -> TransferResult:
    """Accuracy and mean confidence of every model on every model's pixel-subsets (Carter et al., 4.1).

    Parameters
    ----------
    models : dict of str to nn.Module
        The evaluating models (only called; put them in eval mode yourself).
    subsets : dict of str to PixelSubsetDataset
        Pixel-subsets per source model (usually the same names as ``models``), or any dataset of
        ``(image, label)`` pairs.
    labels : Tensor, optional
        ``(N,)`` true labels, shared by all subsets (all must then hold ``N`` images). Default: each dataset's
        own labels (which are the source model's predictions for :func:`backselect_subsets` without labels).
    batch_size : int, default 256

    Returns
    -------
    TransferResult
        Rows: subsets' source; columns: evaluating model.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.overinterpretation import random_subsets
    >>> from sis_attr.testing import TinyConvNet
    >>> nets = {"a": TinyConvNet(classes=3, seed=0), "b": TinyConvNet(classes=3, seed=1)}
    >>> images = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> subs = {name: random_subsets(images, labels=net(images).argmax(1), fraction=0.5, generator=0)
    ...         for name, net in nets.items()}
    >>> result = transfer_matrix(nets, subs)
    >>> result.accuracy.shape, result.sources, result.models
    (torch.Size([2, 2]), ('a', 'b'), ('a', 'b'))
    """
    caller = "transfer_matrix"
    mods = format_named(models, caller, "models", "nn.Module objects")
    for name, m in mods.items():
        format_model(m, caller, param=f"models['{name}']")
    subs = format_named(subsets, caller, "subsets", "PixelSubsetDataset objects")
    batch_size = format_positive_int(batch_size, "batch_size", caller)
    data = {name: dataset_tensors(ds, caller, f"subsets['{name}']") for name, ds in subs.items()}
    if labels is not None:
        sizes = {name: int(x.shape[0]) for name, (x, _) in data.items()}
        if len(set(sizes.values())) != 1:
            raise SISValueError(
                f"The `subsets` parameter of {caller} must hold subsets of the same images when `labels` is given. "
                f"Got sizes {sizes} instead."
            )
        lab = format_labels(labels, next(iter(sizes.values())), caller)
        data = {name: (x, lab) for name, (x, _) in data.items()}
    for name, m in mods.items():
        warn_if_training(m, f"{caller} (models['{name}'])")
    acc = torch.zeros(len(data), len(mods), dtype=torch.float64)
    conf = torch.zeros(len(data), len(mods), dtype=torch.float64)
    for i, (sname, (x, y)) in enumerate(data.items()):
        for j, (mname, m) in enumerate(mods.items()):
            probs = predict_probabilities(m, x, f"{caller} (models['{mname}'])", batch_size=batch_size)
            check_label_range(y, int(probs.shape[1]), caller, param=f"labels of subsets['{sname}']")
            c, pred = probs.max(dim=1)
            acc[i, j] = (pred == y).double().mean()
            conf[i, j] = c.mean()
    return TransferResult(sources=tuple(data), models=tuple(mods), accuracy=acc, confidence=conf)
