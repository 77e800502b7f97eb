"""Result types: the backward-selection record of one example, SIS explanations and batch results."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from sis_attr.exceptions import SISValueError, UninformativeBaselineWarning

_EMPTY_SIS_MESSAGE = (
    "The score with every feature removed already reaches the threshold, so the SIS is empty: the baseline is "
    "not uninformative to this model (example {example}). Choose another baseline or a higher threshold."
)


class Layout:
    """How flattened feature keep-masks map back onto the user's input structure.

    Holds the flattened inputs ``flat_x`` and baselines ``flat_b`` (``(B, P)``), the feature id of every
    position (``(1 or B, P)``), and the per-input shapes.
    """

    def __init__(
        self,
        flat_x: Tensor,
        flat_b: Tensor,
        feature_index: Tensor,
        n_features: Tensor,
        shapes: list[tuple[int, ...]],
        is_tuple: bool,
    ) -> None:
        self.flat_x = flat_x
        self.flat_b = flat_b
        self.feature_index = feature_index
        self.n_features = n_features
        self.max_features = int(n_features.max())
        self.shapes = shapes
        self.sizes = [int(torch.Size(s).numel()) for s in shapes]
        self.is_tuple = is_tuple
        self.device = flat_x.device

    def feature_positions(self) -> Tensor:
        """``(1 or B, D, g)`` int64 table: the positions of each feature, padded by repeating its first position.

        ``g`` is the largest group size. Writing a value at every listed position of a feature therefore
        writes exactly the feature's positions (padding repeats a position already written).
        """
        cached = getattr(self, "_feature_positions", None)
        if cached is not None:
            return cached
        rows = []
        counts_all = [torch.bincount(fi, minlength=self.max_features) for fi in self.feature_index]
        g = max(1, max(int(c.max()) for c in counts_all))
        for fi, counts in zip(self.feature_index, counts_all, strict=True):
            order = torch.argsort(fi, stable=True)
            sorted_ids = fi[order]
            starts = torch.cumsum(counts, 0) - counts
            rank = torch.arange(fi.numel(), device=fi.device) - starts[sorted_ids]
            table = torch.full((self.max_features, g), -1, dtype=torch.long, device=fi.device)
            table[sorted_ids, rank] = order
            first = table[:, :1].expand_as(table)
            table = torch.where(table < 0, first, table)
            rows.append(table)
        self._feature_positions = torch.stack(rows)
        return self._feature_positions

    def rows_feature_index(self, rows: Tensor) -> Tensor:
        if self.feature_index.shape[0] == 1:
            return self.feature_index.expand(rows.shape[0], -1)
        return self.feature_index[rows]

    def initial_keep(self) -> Tensor:
        """``(B, D)`` keep-mask with every real feature present."""
        ar = torch.arange(self.max_features, device=self.device)
        return ar.unsqueeze(0) < self.n_features.unsqueeze(1)

    def positions_keep(self, rows: Tensor, keep: Tensor) -> Tensor:
        """Expand a ``(n, D)`` feature keep-mask to ``(n, P)`` positions."""
        return torch.gather(keep, 1, self.rows_feature_index(rows))

    def compose(self, rows: Tensor, keep: Tensor) -> tuple[Tensor, ...]:
        """Masked inputs for example ids ``rows`` with features kept where ``keep`` is True."""
        flat = torch.where(self.positions_keep(rows, keep), self.flat_x[rows], self.flat_b[rows])
        return self.unflatten(flat)

    def compose_soft(self, rows: Tensor, removed: Tensor) -> tuple[Tensor, ...]:
        """``x * (1 - m) + baseline * m`` for a continuous ``(n, D)`` removal mask ``m`` (differentiable)."""
        m = torch.gather(removed, 1, self.rows_feature_index(rows)).to(self.flat_x.dtype)
        flat = self.flat_x[rows] * (1 - m) + self.flat_b[rows] * m
        return self.unflatten(flat)

    def unflatten(self, flat: Tensor) -> tuple[Tensor, ...]:
        n = flat.shape[0]
        if len(self.shapes) == 1:
            return (flat.view(n, *self.shapes[0]) if flat.is_contiguous() else flat.reshape(n, *self.shapes[0]),)
        parts = torch.split(flat, self.sizes, dim=1)
        return tuple(p.reshape(n, *s) for p, s in zip(parts, self.shapes, strict=True))

    def features_keep(self, example: int, features: Tensor) -> Tensor:
        """``(1, D)`` keep-mask holding exactly ``features`` of one example."""
        keep = torch.zeros(1, self.max_features, dtype=torch.bool, device=self.device)
        keep[0, features.to(self.device)] = True
        return keep

    def example_positions(self, example: int, features: Tensor) -> tuple[Tensor, ...]:
        """Bool tensors shaped like one example of each input: True at the positions of ``features``."""
        rows = torch.tensor([example], device=self.device)
        pos = self.positions_keep(rows, self.features_keep(example, features))
        return tuple(p[0] for p in self.unflatten(pos))

    def example_values(self, example: int, per_feature: Tensor) -> tuple[Tensor, ...]:
        """Spread a ``(D,)`` per-feature value over the positions of one example."""
        idx = self.rows_feature_index(torch.tensor([example], device=self.device))[0]
        vals = per_feature.to(self.device)[idx].unsqueeze(0)
        return tuple(p[0] for p in self.unflatten(vals))


def _last_index_at_or_above(values: Tensor, threshold_space: float) -> int | None:
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

    def _to_space(self, threshold: float) -> float:
        if self.log_space:
            if not 0.0 < threshold <= 1.0:
                raise SISValueError(
                    f"The `threshold` parameter of find_sis must be in (0, 1]. Got {threshold} instead."
                )
            return float(torch.log(torch.tensor(threshold, dtype=torch.float64)))
        return float(threshold)

    def sis_index(self, threshold: float) -> int | None:
        """Number of removals ``j*`` after which the SIS starts (last score >= threshold), None if no SIS."""
        return _last_index_at_or_above(self.values, self._to_space(threshold))

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
        parts = self.layout.compose(rows, self.layout.features_keep(self.example, features))
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
