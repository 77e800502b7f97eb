"""Masking geometry: how feature keep-masks map onto the user's inputs.

Inputs of any structure (a tensor or a tuple of tensors) are flattened per example and concatenated into
``(B, P)`` rows; a feature is a group of positions given by ``feature_index`` (``(1 or B, P)``). Keep-masks
over features have shape ``(n, D)`` where ``D`` is the largest number of features of any example; ids at or
above an example's own feature count are padding and never present.
"""

from __future__ import annotations

import torch
from torch import Tensor


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

    def features_keep(self, features: Tensor) -> Tensor:
        """``(1, D)`` keep-mask holding exactly ``features``."""
        keep = torch.zeros(1, self.max_features, dtype=torch.bool, device=self.device)
        keep[0, features.to(self.device)] = True
        return keep

    def example_positions(self, example: int, features: Tensor) -> tuple[Tensor, ...]:
        """Bool tensors shaped like one example of each input: True at the positions of ``features``."""
        rows = torch.tensor([example], device=self.device)
        pos = self.positions_keep(rows, self.features_keep(features))
        return tuple(p[0] for p in self.unflatten(pos))

    def example_values(self, example: int, per_feature: Tensor) -> tuple[Tensor, ...]:
        """Spread a ``(D,)`` per-feature value over the positions of one example."""
        idx = self.rows_feature_index(torch.tensor([example], device=self.device))[0]
        vals = per_feature.to(self.device)[idx].unsqueeze(0)
        return tuple(p[0] for p in self.unflatten(vals))
