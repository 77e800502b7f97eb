"""Batched Gradient BackSelect (Carter et al., 2021, Supplementary S5), with the gradient-screened option.

Backward selection guided by the gradient of the target score with respect to a continuous removal mask
``m`` over features: the masked input is ``x * (1 - m) + baseline * m``. Each iteration runs one forward and
one backward pass for a chunk of up to ``batch_size`` examples at the current binary mask (which also measures
the exact score there), then removes a block of the remaining features whose removal the gradient predicts to
hurt the score least (the largest ``d score / d m_j``); :mod:`~sis_attr._core.schedule` decides the block size.

With a ``shortlist`` of ``M`` the gradient only proposes: the ``M`` most promising single removals are then
evaluated exactly (no-grad forward passes packed across examples into rows of ``batch_size``) and the best
``k`` of them are removed (gradient-screened exact selection).

Record format
-------------
A gradient :class:`~sis_attr._core.results.BackSelectRecord` holds the full removal ``order``; ``values[i]`` is
the exact score after ``i`` removals where it was measured (the start of every block, the score after the
first removal of a block in shortlist mode, the fully removed input, and whatever FindSIS refinement
evaluated) and NaN elsewhere. FindSIS over such a record ignores NaN (``NaN >= t`` is False), so it returns the
last *measured* crossing, which is always a valid SIS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sis_attr._core.batching import is_out_of_memory, release_cached_memory, split_rows
from sis_attr._core.problem import SISProblem
from sis_attr._core.schedule import Schedule
from sis_attr._core.ties import tie_keys
from sis_attr._progress import progress_bar
from sis_attr.exceptions import SISValueError

_BIG = torch.iinfo(torch.long).max


def score_and_grad(problem: SISProblem, rows: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Exact scores (float64) at ``keep`` and their gradient w.r.t. the removal mask, ``(n, D)``.

    Only the mask requires grad: the model's parameters never accumulate gradients and their
    ``requires_grad`` flags are left alone. An out-of-memory error (in the forward or the backward pass) splits
    the rows in halves and the problem remembers the size that worked.
    """
    n = int(rows.shape[0])
    if problem.max_rows is not None and n > problem.max_rows:
        parts = [score_and_grad(problem, rows[sl], keep[sl]) for sl in split_rows(n, problem.max_rows)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    try:
        return _score_and_grad(problem, rows, keep)
    except Exception as err:
        if n <= 1 or not is_out_of_memory(err):
            raise
        del err
        release_cached_memory(problem.device)
        problem.shrink(n // 2)
        return score_and_grad(problem, rows, keep)


def _score_and_grad(problem: SISProblem, rows: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    dtype = problem.flat_x.dtype
    with torch.enable_grad():
        m = (~keep).to(dtype).requires_grad_(True)
        out = problem.forward(rows, problem.layout.compose_soft(rows, m))
        scores = problem.scorer(out, problem.target[rows])
        if not scores.requires_grad:
            raise SISValueError(
                f"The model passed to {problem.caller} must be differentiable with respect to its inputs: its "
                "output does not depend on them through autograd (torch.no_grad, .detach() or a non-torch "
                "computation inside forward?). Use SufficientInputSubsets for non-differentiable models."
            )
        (grad,) = torch.autograd.grad(scores.sum(), m, allow_unused=True)
    if grad is None:  # the score does not depend on the input at all
        grad = torch.zeros_like(m)
    if not torch.isfinite(grad).all():
        raise SISValueError(
            f"The gradient of the score of {problem.caller} with respect to the feature mask has NaN or inf "
            "entries. Check the model's numerical range (or pass a score_func with finite gradients)."
        )
    return scores.detach(), grad.detach()


def rank_order(values: Tensor, valid: Tensor, keys: Tensor | None = None) -> Tensor:
    """Column indices of each row sorted by ``values`` descending; ties by the lowest column, or by the lowest
    ``keys`` entry (same shape as ``values``: the random tie priorities of :mod:`~sis_attr._core.ties`)."""
    masked = values.masked_fill(~valid, float("-inf"))
    if keys is None:
        return torch.sort(masked, dim=1, descending=True, stable=True).indices
    perm = torch.argsort(keys, dim=1, stable=True)
    idx = torch.sort(masked.gather(1, perm), dim=1, descending=True, stable=True).indices
    return perm.gather(1, idx)


def top_ranked(values: Tensor, valid: Tensor, need: int, keys: Tensor | None = None) -> Tensor:
    """The first ``need`` columns of :func:`rank_order` (same result), without a full sort when ``need`` is small.

    ``topk`` finds each row's ``need``-th largest value; every valid entry at or above it (ties included) is then
    sorted stably, so the tie-breaking rule is the full sort's. Columns past a row's number of valid entries
    are unspecified.
    """
    n, d = values.shape
    need = max(1, min(need, d))
    if need * 8 >= d:
        return rank_order(values, valid, keys)[:, :need]
    masked = values.masked_fill(~valid, float("-inf"))
    kth = torch.topk(masked, need, dim=1).values[:, -1:]
    cand = (masked >= kth) & valid
    counts = cand.sum(dim=1)
    width = max(int(counts.max()), need)
    r, c = torch.nonzero(cand, as_tuple=True)  # row-major: ascending columns within a row
    slot = torch.arange(r.shape[0], device=values.device) - (torch.cumsum(counts, 0) - counts)[r]
    idx = torch.zeros((n, width), dtype=torch.long, device=values.device)
    vals = torch.full((n, width), float("-inf"), dtype=values.dtype, device=values.device)
    idx[r, slot] = c
    vals[r, slot] = masked[r, c]
    slot_valid = torch.arange(width, device=values.device).unsqueeze(0) < counts.unsqueeze(1)
    slot_keys = None
    if keys is not None:
        slot_keys = torch.full((n, width), _BIG, dtype=torch.long, device=values.device)
        slot_keys[r, slot] = keys[r, c]
    return idx.gather(1, rank_order(vals, slot_valid, slot_keys))[:, :need]


@dataclass
class SelectionState:
    """Where backward selection stands for ``n`` examples (local ids ``0..n-1``); updated in place.

    Attributes
    ----------
    keep : Tensor
        ``(n, D)`` bool: features still present.
    remaining : Tensor
        ``(n,)`` number of features still present.
    step : Tensor
        ``(n,)`` number of features removed so far (the next slot of ``orders``).
    orders : Tensor
        ``(n, D)`` removal order (``-1`` past ``step``).
    values : Tensor
        ``(n, D + 1)`` float64 measured scores after ``i`` removals (NaN where not measured).
    """

    keep: Tensor
    remaining: Tensor
    step: Tensor
    orders: Tensor
    values: Tensor

    @classmethod
    def start(cls, keep_start: Tensor, n_features: int) -> SelectionState:
        n, device = int(keep_start.shape[0]), keep_start.device
        keep = keep_start.clone()
        return cls(
            keep=keep,
            remaining=keep.sum(dim=1),
            step=torch.zeros(n, dtype=torch.long, device=device),
            orders=torch.full((n, max(n_features, 1)), -1, dtype=torch.long, device=device),
            values=torch.full((n, n_features + 1), float("nan"), dtype=torch.float64, device=device),
        )

    def active(self) -> Tensor:
        return torch.nonzero(self.remaining > 0).flatten()

    def remove(self, chunk: Tensor, ranked: Tensor, block: Tensor) -> None:
        """Remove the first ``block[i]`` features of ``ranked[i]`` from example ``chunk[i]``."""
        step_c = self.step[chunk]
        cols = torch.arange(ranked.shape[1], device=ranked.device).unsqueeze(0)
        r, c = torch.nonzero(cols < block.unsqueeze(1), as_tuple=True)
        feats = ranked[r, c]
        self.keep[chunk[r], feats] = False
        self.orders[chunk[r], step_c[r] + c] = feats
        self.step[chunk] = step_c + block
        self.remaining[chunk] = self.remaining[chunk] - block

    def measure(self, problem: SISProblem, examples: Tensor, local: Tensor) -> None:
        """Score the current inputs of the examples ``local`` (in passes of ``batch_size``) at their current step."""
        bs = problem.batch_size
        for i in range(0, int(local.shape[0]), bs):
            sl = local[i : i + bs]
            self.values[sl, self.step[sl]] = problem.evaluate(examples[sl], self.keep[sl])

    def records(self) -> tuple[list[Tensor], list[Tensor]]:
        """Per example the removal order and the measured scores, on the CPU."""
        orders, values, steps = self.orders.cpu(), self.values.cpu(), self.step.tolist()
        n = len(steps)
        return (
            [orders[i, : steps[i]].clone() for i in range(n)],
            [values[i, : steps[i] + 1].clone() for i in range(n)],
        )


class GradientBackSelect:
    """Batched Gradient BackSelect as a ``backselect_fn`` for :func:`~sis_attr._core.sis.compute_sis`.

    Parameters
    ----------
    schedule : Schedule
        Block sizes (:mod:`~sis_attr._core.schedule`).
    shortlist : int or None
        ``M`` for gradient-screened exact selection; None for the pure gradient method of the paper.
    tie_seed : int or None
        Seeded random tie-breaking (:mod:`~sis_attr._core.ties`); ties go to the lowest feature id without it.
    """

    def __init__(self, schedule: Schedule, shortlist: int | None = None, tie_seed: int | None = None) -> None:
        self.schedule = schedule
        self.shortlist = shortlist
        self.tie_seed = tie_seed

    def __call__(
        self,
        problem: SISProblem,
        examples: Tensor,
        keep_start: Tensor,
        *,
        show_progress: bool = False,
        desc: str = "Batched Gradient BackSelect",
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Select until no feature is left; returns per example the order and the measured scores (CPU)."""
        examples = examples.to(problem.device)
        state = SelectionState.start(keep_start.to(problem.device), problem.max_features)
        keys = tie_keys(problem, examples, self.tie_seed)
        bs = problem.batch_size
        with progress_bar(int(state.remaining.sum()), desc, show_progress, unit="feature") as bar:
            active = state.active()
            while active.numel() > 0:
                for i in range(0, int(active.shape[0]), bs):
                    chunk = active[i : i + bs]
                    bar.update(self._step(problem, examples, chunk, state, None if keys is None else keys[chunk]))
                active = state.active()
        # the fully removed input (or the start, for examples without features)
        state.measure(problem, examples, torch.arange(int(examples.shape[0]), device=problem.device))
        return state.records()

    def _need(self, max_remaining: int, d: int) -> int:
        """How many top-ranked features a step may look at (the largest possible block or shortlist)."""
        need = self.schedule.need(max_remaining)
        if self.shortlist is not None:
            need = max(need, self.shortlist)
        return max(1, min(need, max_remaining, d))

    def _step(
        self, problem: SISProblem, examples: Tensor, chunk: Tensor, state: SelectionState, keys: Tensor | None
    ) -> int:
        """One gradient step for the examples ``chunk`` (local ids; ``keys``: their tie priorities); returns the
        number of features removed."""
        rows = examples[chunk]
        keep_c, rem_c, step_c = state.keep[chunk], state.remaining[chunk], state.step[chunk]
        v, g = score_and_grad(problem, rows, keep_c)
        state.values[chunk, step_c] = v
        ranked = top_ranked(g, keep_c, self._need(int(rem_c.max()), int(g.shape[1])), keys)
        past_end = torch.arange(ranked.shape[1], device=ranked.device).unsqueeze(0) >= rem_c.unsqueeze(1)
        sorted_grad = g.gather(1, ranked).masked_fill(past_end, float("-inf"))
        block = self.schedule.block_sizes(rem_c, v, sorted_grad, problem.scorer.log_space)
        block = torch.minimum(torch.clamp(block, min=1), rem_c)
        if self.shortlist is not None:
            ranked, exact = screen(problem, rows, keep_c, ranked, rem_c, self.shortlist, keys)
            best = exact[:, 0]
            block = torch.minimum(block, torch.clamp(rem_c, max=self.shortlist))
            state.values[chunk, step_c + 1] = best
        state.remove(chunk, ranked, block)
        return int(block.sum())


def screen(
    problem: SISProblem,
    rows: Tensor,
    keep_c: Tensor,
    ranked: Tensor,
    rem_c: Tensor,
    shortlist: int,
    keys: Tensor | None = None,
    *,
    add: bool = False,
) -> tuple[Tensor, Tensor]:
    """Evaluate the first ``shortlist`` single removals of ``ranked`` exactly (single additions to ``keep_c``
    with ``add``); return them best first and their exact scores in that order (ties: the lowest feature id, or
    the lowest tie priority in ``keys``, the rows' ``(n, D)`` priorities; entries past an example's ``rem_c``
    candidates score ``-inf``)."""
    device = keep_c.device
    m = min(shortlist, int(ranked.shape[1]))
    cand = ranked[:, :m]
    valid = torch.arange(m, device=device).unsqueeze(0) < rem_c.unsqueeze(1)
    ex, slot = torch.nonzero(valid, as_tuple=True)
    exact = torch.full((cand.shape[0], m), float("-inf"), dtype=torch.float64, device=device)
    bs = problem.batch_size
    for i in range(0, int(ex.shape[0]), bs):  # keep-masks built per forward pass: memory bounded by bs
        e, sl = ex[i : i + bs], slot[i : i + bs]
        cand_keep = keep_c[e].clone()
        cand_keep[torch.arange(e.shape[0], device=device), cand[e, sl]] = add
        exact[e, sl] = problem.evaluate(rows[e], cand_keep)
    # ties: the lowest feature id, as exact BackSelect, or the lowest tie priority
    tie = cand if keys is None else keys.gather(1, cand)
    idx = rank_order(exact, valid, tie.masked_fill(~valid, _BIG))
    return cand.gather(1, idx), exact.gather(1, idx)
