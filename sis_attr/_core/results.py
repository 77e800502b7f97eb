"""Result types: the backward-selection record of one example, SIS explanations and batch results."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from sis_attr._core.layout import Layout
from sis_attr._core.scoring import threshold_to_space
from sis_attr._core.validation import format_threshold
from sis_attr.exceptions import UninformativeBaselineWarning

_EMPTY_SIS_MESSAGE = (
    "The score with every feature removed already reaches the threshold, so the SIS is empty: the baseline "
    "itself carries evidence for the class (example {example}). Choose another baseline or a higher threshold."
)


def last_index_at_or_above(values: Tensor, threshold_space: float) -> int | None:
    """Index of the last recorded score >= threshold, or None if the starting score is below it."""
    if values.numel() == 0 or float(values[0]) < threshold_space:
        return None
    hits = torch.nonzero(values >= threshold_space).flatten()
    return int(hits[-1])


@dataclass(frozen=True)
class BackSelectRecord:
    """The complete backward-selection record of one example.

    Attributes
    ----------
    order : Tensor
        ``(n,)`` int64 feature ids in removal order (first removed first) over the ``n`` features present at
        the start.
    values : Tensor
        ``(n + 1,)`` float64 scores in the comparison space: ``values[i]`` is the score after ``i`` removals
        (``values[0]``: the starting input). For the default softmax score this is the log-probability.
        Records of gradient backward selection (which removes blocks of features per step) hold the score
        where it was measured and NaN elsewhere; ``values[0]`` and ``values[n]`` are always measured, and
        FindSIS ignores NaN (``NaN >= t`` is False), so it returns the last *measured* crossing.
    log_space : bool
        Whether ``values`` are log-probabilities (then :attr:`scores` are probabilities).
    n_features : int
        The example's total number of features (present or not at the start).
    """

    order: Tensor
    values: Tensor
    log_space: bool
    n_features: int
    example: int = 0

    @property
    def scores(self) -> Tensor:
        """Scores after ``0..n`` removals in the user's space (probabilities for the default score)."""
        return self.values.exp() if self.log_space else self.values

    @property
    def measured(self) -> Tensor:
        """``(n + 1,)`` bool: where :attr:`values` holds a measured score (all True for exact BackSelect)."""
        return ~torch.isnan(self.values)

    def sis_index(self, threshold: float) -> int | None:
        """Number of removals ``j*`` after which the SIS starts (last score >= threshold), None if no SIS."""
        t = format_threshold(threshold, "BackSelectRecord.sis_index", probability=self.log_space)
        return last_index_at_or_above(self.values, threshold_to_space(t, self.log_space))

    def find_sis(self, threshold: float, *, warn: bool = True) -> Tensor | None:
        """FindSIS from the record: feature ids of the SIS at ``threshold``, last removed first.

        Returns None when the starting score is below ``threshold`` (no SIS exists) and an empty tensor, with
        an :class:`~sis_attr.exceptions.UninformativeBaselineWarning`, when even the fully masked input
        reaches it. No model evaluation is needed.
        """
        j = self.sis_index(threshold)
        if j is None:
            return None
        if j == self.order.numel() and warn:
            warnings.warn(_EMPTY_SIS_MESSAGE.format(example=self.example), UninformativeBaselineWarning, stacklevel=2)
        return self.order[j:].flip(0)

    def rank(self) -> Tensor:
        """``(n_features,)`` float ranks: the i-th removed feature gets ``i``; absent features 0.

        Features removed later rank higher, so the SIS features carry the top ranks.
        """
        r = torch.zeros(self.n_features, dtype=torch.float64)
        r[self.order] = torch.arange(1, self.order.numel() + 1, dtype=torch.float64)
        return r

    def top_features(self, count: int) -> Tensor:
        """The ``count`` features removed last (the most important by backward selection)."""
        count = max(0, min(int(count), self.order.numel()))
        return self.order[self.order.numel() - count :].flip(0)


@dataclass(frozen=True)
class SISExplanation:
    """SIS of one example.

    Attributes
    ----------
    example : int
        Position of the example in the batch.
    target : int
        The class explained.
    confidence : float
        The score of the full input (a probability for the default softmax score).
    threshold : float
        The threshold the SIS was found at.
    sis : Tensor or None
        Feature ids of the SIS, last removed first; None when the full input scores below the threshold.
    collection : tuple of Tensor
        All disjoint SIS found by SIScollection (the first equals ``sis``); empty without an SIS.
    record : BackSelectRecord
        The backward-selection record of the full input, reusable at any threshold.
    """

    example: int
    target: int
    confidence: float
    threshold: float
    sis: Tensor | None
    collection: tuple[Tensor, ...]
    record: BackSelectRecord
    layout: Layout = field(repr=False, compare=False)

    @property
    def has_sis(self) -> bool:
        """Whether an SIS exists (the full input reaches the threshold)."""
        return self.sis is not None

    @property
    def size(self) -> int | None:
        """Number of features in the SIS (None without an SIS)."""
        return None if self.sis is None else int(self.sis.numel())

    @property
    def n_features(self) -> int:
        """The example's number of features."""
        return self.record.n_features

    def sis_at(self, threshold: float) -> Tensor | None:
        """The SIS at another threshold, from the stored record (no model evaluation)."""
        return self.record.find_sis(threshold)

    def _structure(self, parts: tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
        return parts if self.layout.is_tuple else parts[0]

    def keep_mask(self, features: Tensor | None = None) -> Tensor | tuple[Tensor, ...]:
        """Bool mask shaped like one example of the input, True on the SIS (or on ``features``)."""
        if features is None:
            features = self.sis if self.sis is not None else torch.zeros(0, dtype=torch.long)
        return self._structure(self.layout.example_positions(self.example, features))

    def masked_input(self, features: Tensor | None = None) -> Tensor | tuple[Tensor, ...]:
        """The example with everything outside the SIS (or ``features``) set to the baseline."""
        if features is None:
            features = self.sis if self.sis is not None else torch.zeros(0, dtype=torch.long)
        rows = torch.tensor([self.example], device=self.layout.device)
        parts = self.layout.compose(rows, self.layout.features_keep(features))
        return self._structure(tuple(p[0] for p in parts))

    def rank_map(self) -> Tensor | tuple[Tensor, ...]:
        """Backward-selection ranks spread over the input positions (see :meth:`BackSelectRecord.rank`)."""
        ranks = torch.zeros(self.layout.max_features, dtype=torch.float64)
        ranks[: self.record.n_features] = self.record.rank()
        return self._structure(self.layout.example_values(self.example, ranks))


@dataclass(frozen=True)
class SISResult:
    """SIS for a batch: a sequence of :class:`SISExplanation` with batch-level helpers."""

    explanations: tuple[SISExplanation, ...]
    threshold: float
    layout: Layout = field(repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.explanations)

    def __getitem__(self, i: int) -> SISExplanation:
        return self.explanations[i]

    def __iter__(self) -> Iterator[SISExplanation]:
        return iter(self.explanations)

    @property
    def records(self) -> list[BackSelectRecord]:
        """The backward-selection record of every example."""
        return [e.record for e in self.explanations]

    def sizes(self) -> Tensor:
        """``(B,)`` float SIS sizes in features, NaN where no SIS exists."""
        return torch.tensor(
            [float("nan") if e.size is None else float(e.size) for e in self.explanations], dtype=torch.float32
        )

    def _stack(self, per_example: list[Tensor | tuple[Tensor, ...]]) -> Tensor | tuple[Tensor, ...]:
        parts = [p if isinstance(p, tuple) else (p,) for p in per_example]
        stacked = tuple(torch.stack([p[i] for p in parts]) for i in range(len(parts[0])))
        return stacked if self.layout.is_tuple else stacked[0]

    def keep_mask(self) -> Tensor | tuple[Tensor, ...]:
        """SIS keep-masks shaped like the inputs (all False where no SIS exists)."""
        return self._stack([e.keep_mask() for e in self.explanations])

    def rank_map(self) -> Tensor | tuple[Tensor, ...]:
        """Backward-selection rank maps shaped like the inputs."""
        return rank_maps(self.layout, self.records)


def cast_like(maps: Tensor | tuple[Tensor, ...], inputs: tuple[Tensor, ...], is_tuple: bool) -> Any:
    """Attributions in the inputs' dtype and structure (tensor in, tensor out; tuple in, tuple out)."""
    parts = maps if isinstance(maps, tuple) else (maps,)
    cast = tuple(p.to(x.dtype) for p, x in zip(parts, inputs, strict=True))
    return cast if is_tuple else cast[0]


def rank_maps(layout: Layout, records: list[BackSelectRecord]) -> Tensor | tuple[Tensor, ...]:
    """Rank maps of a batch of records, shaped like the inputs (see :meth:`BackSelectRecord.rank`)."""
    ranks = torch.zeros(len(records), layout.max_features, dtype=torch.float64, device=layout.device)
    for i, r in enumerate(records):
        ranks[i, : r.n_features] = r.rank().to(layout.device)
    rows = torch.arange(len(records), device=layout.device)
    parts = layout.unflatten(torch.gather(ranks, 1, layout.rows_feature_index(rows)))
    return parts if layout.is_tuple else parts[0]
