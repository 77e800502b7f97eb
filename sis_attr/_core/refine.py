"""FindSIS over a gradient record: refinement inside the final block and the final validity check.

Gradient backward selection measures the score only at the start of each block (see
:mod:`~sis_attr._core.gradient`), so FindSIS over its record is minimal to a block. :class:`GradientFindSIS`
evaluates the single-feature prefixes of the block after the last measured crossing (batched across
examples) and then checks every SIS alone with one more forward pass, so every SIS it returns is valid.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sis_attr._core.problem import SISProblem
from sis_attr._core.results import BackSelectRecord, last_index_at_or_above

_BIG = torch.iinfo(torch.long).max


def _evaluate_prefixes(
    problem: SISProblem,
    examples: list[int],
    keep_start: Tensor,
    records: list[BackSelectRecord],
    requests: dict[int, Tensor],
) -> dict[int, Tensor]:
    """Exact scores after the requested numbers of removals (prefixes of the order), per local example.

    Requests of all examples are packed into forward passes of ``batch_size`` rows; keep-masks are built per
    pass, so memory stays bounded by ``batch_size``.
    """
    if not requests:
        return {}
    device = problem.device
    locals_ = list(requests)
    d = keep_start.shape[1]
    pos = torch.full((len(locals_), d), _BIG, dtype=torch.long, device=device)
    for i, j in enumerate(locals_):
        order = records[j].order.to(device)
        pos[i, order] = torch.arange(order.numel(), device=device)
    counts = [int(requests[j].numel()) for j in locals_]
    which = torch.repeat_interleave(torch.arange(len(locals_), device=device), torch.tensor(counts, device=device))
    prefix = torch.cat([requests[j] for j in locals_]).to(device)
    local_ids = torch.tensor(locals_, dtype=torch.long, device=device)
    example_ids = torch.tensor([examples[j] for j in locals_], dtype=torch.long, device=device)
    vals = []
    for i in range(0, int(prefix.shape[0]), problem.batch_size):
        w, p = which[i : i + problem.batch_size], prefix[i : i + problem.batch_size]
        keep = keep_start[local_ids[w]] & (pos[w] >= p.unsqueeze(1))
        vals.append(problem.evaluate(example_ids[w], keep))
    flat = torch.cat(vals).cpu()
    return dict(zip(locals_, torch.split(flat, counts), strict=True))


def _spread(lo: int, hi: int, width: int) -> Tensor:
    """Up to ``width`` prefixes strictly between ``lo`` and ``hi``, evenly spaced (all of them if they fit)."""
    inner = hi - lo - 1
    if inner <= width:
        return torch.arange(lo + 1, hi, dtype=torch.long)
    return torch.unique(torch.linspace(lo + 1, hi - 1, width, dtype=torch.float64).round().long())


class GradientFindSIS:
    """FindSIS over a gradient record, refinement inside the final block, and a final validity check.

    Used as ``find_fn`` of :func:`~sis_attr._core.sis.compute_sis`. FindSIS takes the last measured score
    >= threshold (inclusive). With ``refine`` the single-feature prefixes of the block after it are evaluated
    exactly (batched across examples; blocks longer than ``width`` are bisected in rounds of ``width`` evenly
    spaced prefixes), so the SIS is minimal to one feature along the order: removing its next feature brings the
    measured score below the threshold. Every SIS is then evaluated once more alone; if that final forward pass
    scores below the threshold (floating-point differences between batch compositions), features are added back
    along the order until it passes, and "no SIS" is returned rather than an invalid one.

    Measured scores are written into the records' ``values`` (in place), so a record's ``find_sis`` at the
    same threshold returns the refined SIS.
    """

    def __init__(self, refine: bool = True, width: int = 128) -> None:
        self.refine = refine
        self.width = width

    def __call__(
        self,
        problem: SISProblem,
        examples: list[int],
        records: list[BackSelectRecord],
        keep_start: Tensor,
        threshold: float,
    ) -> list[Tensor | None]:
        t = problem.scorer.to_space(threshold)
        keep_start = keep_start.to(problem.device)
        n = len(records)
        lo: list[int | None] = [last_index_at_or_above(r.values, t) for r in records]

        def next_measured(j: int, after: int) -> int:
            vals = records[j].values
            later = torch.nonzero(~torch.isnan(vals[after + 1 :])).flatten()
            return after + 1 + int(later[0]) if later.numel() else int(vals.numel())

        if self.refine:
            hi = {j: next_measured(j, lo_j) for j in range(n) if (lo_j := lo[j]) is not None}
            pending = {j for j in hi if hi[j] - (lo[j] or 0) > 1}
            while pending:
                requests = {j: _spread(lo[j] or 0, hi[j], self.width) for j in sorted(pending)}
                measured = _evaluate_prefixes(problem, examples, keep_start, records, requests)
                for j, vals in measured.items():
                    records[j].values[requests[j]] = vals
                    lo_j = lo[j] or 0
                    good = requests[j][vals >= t]
                    if good.numel():
                        lo_j = int(good.max())
                    lo[j] = lo_j
                    hi[j] = next_measured(j, lo_j)
                pending = {j for j in pending if hi[j] - (lo[j] or 0) > 1}

        # final check: every SIS alone, once more; walk back along the order where it fails
        todo = {j: lo_j for j in range(n) if (lo_j := lo[j]) is not None}
        tried: dict[int, int] = dict(todo)  # the smallest prefix checked so far, per example
        checks = {j: torch.tensor([p]) for j, p in todo.items()}
        while checks:
            measured = _evaluate_prefixes(problem, examples, keep_start, records, checks)
            nxt: dict[int, Tensor] = {}
            for j, vals in measured.items():
                records[j].values[checks[j]] = vals
                good = checks[j][vals >= t]
                if good.numel():
                    lo[j] = int(good.max())
                    continue
                low = tried[j]
                if low == 0:
                    lo[j] = None  # not even the starting input passes: no SIS, never an invalid one
                    continue
                nxt[j] = torch.arange(max(0, low - self.width), low, dtype=torch.long)
                tried[j] = max(0, low - self.width)
            checks = nxt
        out: list[Tensor | None] = []
        for rec, lo_j in zip(records, lo, strict=True):
            out.append(None if lo_j is None else rec.order[lo_j:].flip(0))
        return out
