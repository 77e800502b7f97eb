"""FindSIS and SIScollection on top of any batched backward-selection routine."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from sis_attr._core.problem import SISProblem
from sis_attr._core.results import BackSelectRecord, SISExplanation, SISResult
from sis_attr.exceptions import UninformativeBaselineWarning

BackSelectFn = Callable[..., tuple[list[Tensor], list[Tensor]]]
"""``fn(problem, examples, keep_start, *, show_progress, desc) -> (orders, values)``."""

FindFn = Callable[[SISProblem, list[int], list[BackSelectRecord], Tensor, float], list[Tensor | None]]
"""``fn(problem, examples, records, keep_start, threshold) -> SIS per example`` (feature ids or None)."""


def find_from_records(
    problem: SISProblem, examples: list[int], records: list[BackSelectRecord], keep_start: Tensor, threshold: float
) -> list[Tensor | None]:
    """FindSIS from complete records (exact backward selection): no model evaluation."""
    return [r.find_sis(threshold, warn=False) for r in records]


def make_records(
    problem: SISProblem, examples: list[int], orders: list[Tensor], values: list[Tensor], *, first_example: int = 0
) -> list[BackSelectRecord]:
    """Records of the problem's ``examples``, numbered from ``first_example`` (an offset into the caller's data)."""
    n_feat = problem.n_features.tolist()
    log_space = problem.scorer.log_space
    return [
        BackSelectRecord(order=o, values=v, log_space=log_space, n_features=int(n_feat[e]), example=first_example + e)
        for e, o, v in zip(examples, orders, values, strict=True)
    ]


def compute_sis(
    problem: SISProblem,
    backselect_fn: BackSelectFn,
    threshold: float,
    *,
    collection: bool = False,
    max_sis: int | None = None,
    show_progress: bool = False,
    find_fn: FindFn = find_from_records,
    method: str = "BackSelect",
) -> SISResult:
    """Backward selection on every example, FindSIS, and (optionally) SIScollection.

    SIScollection masks each SIS found (sets it to the baseline) and repeats backward selection on the
    remaining features, until the score falls below the threshold, nothing is left, or ``max_sis`` SIS were
    found. The SIS of one example are disjoint.
    """
    layout = problem.layout
    keep = layout.initial_keep()
    examples = list(range(problem.batch))
    collections: list[list[Tensor]] = [[] for _ in examples]
    first_records: list[BackSelectRecord | None] = [None] * problem.batch
    empty: list[int] = []
    limit = max_sis if collection else 1
    active = examples
    round_ = 0
    while active:
        round_ += 1
        idx = torch.tensor(active, device=problem.device)
        desc = method if round_ == 1 else f"{method} (SIS collection round {round_})"
        orders, values = backselect_fn(problem, idx, keep[idx], show_progress=show_progress, desc=desc)
        records = make_records(problem, active, orders, values)
        found = find_fn(problem, active, records, keep[idx], threshold)
        next_active = []
        for e, rec, found_sis in zip(active, records, found, strict=True):
            if first_records[e] is None:
                first_records[e] = rec
            if found_sis is None:
                continue
            if found_sis.numel() == 0:
                empty.append(e)
                continue
            collections[e].append(found_sis)
            keep[e, found_sis.to(problem.device)] = False
            if bool(keep[e].any()) and (limit is None or len(collections[e]) < limit):
                next_active.append(e)
        active = next_active
    if empty:
        warnings.warn(
            "The score with every feature removed already reaches the threshold for examples "
            f"{sorted(set(empty))[:10]}{'...' if len(set(empty)) > 10 else ''}, so their SIS is empty: the "
            "baseline itself carries evidence for the class. Choose another baseline or a higher threshold.",
            UninformativeBaselineWarning,
            stacklevel=5,  # the user's call: door -> pipeline -> method -> compute_sis
        )
    full = problem.full_values
    if full is None:  # a trusted problem: the records start from the full inputs
        full = torch.stack([r.values[0] for r in first_records if r is not None])
    confidences = problem.scorer.from_space(full).tolist()
    targets = problem.target.tolist()
    explanations = []
    for e in examples:
        first = first_records[e]
        assert first is not None  # every example runs in round 1 (internal invariant, not user input)
        coll = tuple(collections[e])
        sis: Tensor | None
        if coll:
            sis = coll[0]
        elif e in empty:
            sis = torch.zeros(0, dtype=torch.long)
        else:
            sis = None
        explanations.append(
            SISExplanation(
                example=e,
                target=int(targets[e]),
                confidence=float(confidences[e]),
                threshold=threshold,
                sis=sis,
                collection=coll,
                record=first,
                layout=layout,
            )
        )
    return SISResult(explanations=tuple(explanations), threshold=threshold, layout=layout)
