"""A deliberately simple, independent re-statement of BackSelect / FindSIS / SIScollection.

One model call per candidate, Python sets, no batching: slow but obviously right. Used as the test oracle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Score = Callable[[Tensor], float]


def make_score(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    groups: Tensor,
    baseline: Tensor | float,
    target: int,
    log_softmax: bool = True,
) -> Callable[[set[int]], float]:
    """score(kept feature set) for one example ``x`` (no batch dim), ``groups`` shaped like ``x``."""
    base = torch.as_tensor(baseline, dtype=x.dtype).expand_as(x)

    def score(kept: set[int]) -> float:
        keep = torch.zeros(x.shape, dtype=torch.bool)
        for f in kept:
            keep |= groups == f
        xin = torch.where(keep, x, base).unsqueeze(0)
        with torch.no_grad():
            out = model(xin)
        if log_softmax:
            return float(torch.log_softmax(out.double(), dim=1)[0, target])
        return float(out.double().reshape(-1)[0])

    return score


def backselect(score: Callable[[set[int]], float], features: set[int]) -> tuple[list[int], list[float]]:
    remaining = set(features)
    order: list[int] = []
    values = [score(remaining)]
    while remaining:
        best_f, best_v = None, None
        for f in sorted(remaining):
            v = score(remaining - {f})
            if best_v is None or v > best_v:
                best_f, best_v = f, v
        assert best_f is not None and best_v is not None
        remaining.remove(best_f)
        order.append(best_f)
        values.append(best_v)
    return order, values


def find_sis(order: list[int], values: list[float], threshold: float) -> list[int] | None:
    if values[0] < threshold:
        return None
    last = max(i for i, v in enumerate(values) if v >= threshold)
    return list(reversed(order[last:]))


def sis_collection(score: Callable[[set[int]], float], features: set[int], threshold: float) -> list[list[int]]:
    remaining = set(features)
    found: list[list[int]] = []
    while remaining:
        order, values = backselect(score, remaining)
        sis = find_sis(order, values, threshold)
        if not sis:
            break
        found.append(sis)
        remaining -= set(sis)
    return found
