"""Batched Gradient BackSelect and FindSIS with refinement (Carter et al., 2021, Supplementary S5).

Backward selection guided by the gradient of the target score with respect to a continuous removal mask
``m`` over features: the masked input is ``x * (1 - m) + baseline * m``. Each iteration runs one forward and
one backward pass for a chunk of up to ``batch_size`` examples at the current binary mask (which also measures
the exact score there), then removes a block of the remaining features whose removal the gradient predicts to
hurt the score least (the largest ``d score / d m_j``).

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

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sis_attr._core.feature_masks import default_feature_mask
from sis_attr._core.problem import SISProblem
from sis_attr._core.results import BackSelectRecord, SISResult, _last_index_at_or_above
from sis_attr._core.sis import compute_sis
from sis_attr._core.validation import format_threshold
from sis_attr._progress import progress_bar
from sis_attr.exceptions import SISTypeError, SISValueError

__all__ = [
    "AdaptiveK",
    "GradientBackSelect",
    "GradientFindSIS",
    "adaptive_threshold_space",
    "default_feature_mask",
    "resolve_generator",
    "resolve_k",
    "run_gradient_sis",
    "score_and_grad",
    "top_ranked",
]

_BIG = torch.iinfo(torch.long).max


# ------------------------------------------------------------------------------------------------ block schedules
@dataclass(frozen=True)
class AdaptiveK:
    """Adaptive block size: large blocks while the score is far from the threshold, small ones near it.

    At each step the gradient predicts the score after removing the ``i`` top-ranked features as the current
    score plus the sum of their gradients (first order). The block is the longest prefix whose prediction
    stays on the current side of the threshold by at least ``1 - caution`` of the current margin, clipped to
    ``[min_k, max(min_k, max_fraction * remaining)]``. For the default softmax score the margin and the
    prediction are in log-odds ``log(p / (1 - p))`` (a confident image is far above a threshold of 0.99 in
    log-odds, though not in log-probability); a user ``score_func`` is used as it is.

    Parameters
    ----------
    threshold : float, optional
        The threshold to steer by, in the user's score space. None: the SIS threshold of the call (required
        for :func:`~sis_attr.functional.gradient_backselect`, which has none).
    max_fraction : float, default 0.1
        Largest block as a fraction of the remaining features, in (0, 1].
    min_k : int, default 1
        Smallest block.
    caution : float, default 0.5
        Fraction of the current margin a block may be predicted to consume, in (0, 1].

    Examples
    --------
    >>> AdaptiveK(threshold=0.9)
    AdaptiveK(threshold=0.9, max_fraction=0.1, min_k=1, caution=0.5)
    """

    threshold: float | None = None
    max_fraction: float = 0.1
    min_k: int = 1
    caution: float = 0.5


@dataclass(frozen=True)
class _Schedule:
    """Resolved ``k``: ``kind`` in {"int", "fraction", "adaptive"}."""

    kind: str
    k: int = 1
    fraction: float = 0.0
    adaptive: AdaptiveK | None = None

    def describe(self) -> str:
        if self.kind == "int":
            return f"k={self.k}"
        if self.kind == "fraction":
            return f"k={self.fraction:g} of the remaining features"
        return "adaptive k"


def _k_error(caller: str, got: object) -> SISValueError:
    return SISValueError(
        f"The `k` parameter of {caller} must be a positive integer, a fraction in (0, 1), 'adaptive' or an "
        f"AdaptiveK. Got {got!r} instead."
    )


def resolve_k(k: object, shortlist: object, caller: str) -> tuple[_Schedule, int | None]:
    """Validate ``k`` and ``shortlist`` at a public entry point."""
    if shortlist is not None and (isinstance(shortlist, bool) or not isinstance(shortlist, int) or shortlist < 1):
        raise SISValueError(
            f"The `shortlist` parameter of {caller} must be None (pure gradient selection) or a positive "
            f"integer. Got {shortlist!r} instead."
        )
    if isinstance(k, bool):
        raise _k_error(caller, k)
    if isinstance(k, int):
        if k < 1:
            raise _k_error(caller, k)
        if shortlist is not None and k > shortlist:
            raise SISValueError(
                f"The `k` parameter of {caller} must not exceed `shortlist` (the best k of the shortlisted "
                f"removals are taken). Got k={k} and shortlist={shortlist} instead."
            )
        sched = _Schedule("int", k=k)
    elif isinstance(k, float):
        if not 0.0 < k < 1.0:
            raise _k_error(caller, k)
        sched = _Schedule("fraction", fraction=k)
    elif isinstance(k, str):
        if k != "adaptive":
            raise _k_error(caller, k)
        sched = _Schedule("adaptive", adaptive=AdaptiveK())
    elif isinstance(k, AdaptiveK):
        a = k
        if a.threshold is not None and (isinstance(a.threshold, bool) or not isinstance(a.threshold, (int, float))):
            raise SISTypeError(f"AdaptiveK.threshold must be None or a number. Got {a.threshold!r} instead.")
        if not (isinstance(a.max_fraction, (int, float)) and 0.0 < a.max_fraction <= 1.0):
            raise SISValueError(f"AdaptiveK.max_fraction must be in (0, 1]. Got {a.max_fraction!r} instead.")
        if isinstance(a.min_k, bool) or not isinstance(a.min_k, int) or a.min_k < 1:
            raise SISValueError(f"AdaptiveK.min_k must be a positive integer. Got {a.min_k!r} instead.")
        if not (isinstance(a.caution, (int, float)) and 0.0 < a.caution <= 1.0):
            raise SISValueError(f"AdaptiveK.caution must be in (0, 1]. Got {a.caution!r} instead.")
        sched = _Schedule("adaptive", adaptive=a)
    else:
        raise SISTypeError(
            f"The `k` parameter of {caller} must be a positive integer, a fraction in (0, 1), 'adaptive' or an "
            f"AdaptiveK. Got {type(k).__name__} instead."
        )
    return sched, shortlist


def resolve_generator(generator: object, caller: str) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise SISTypeError(
            f"The `generator` parameter of {caller} must be None or a torch.Generator. "
            f"Got {type(generator).__name__} instead."
        )
    return generator


def _log_odds(log_p: Tensor) -> tuple[Tensor, Tensor]:
    """``log(p / (1 - p))`` and ``1 - p`` from ``log p`` (float64, safe where ``p`` rounds to 1)."""
    one_minus_p = torch.clamp(-torch.expm1(log_p), min=1e-300)
    return log_p - torch.log(one_minus_p), one_minus_p


def _block_sizes(
    sched: _Schedule,
    remaining: Tensor,
    value: Tensor,
    sorted_grad: Tensor,
    threshold_space: float | None,
    log_space: bool,
) -> Tensor:
    """``(n,)`` number of features to remove per example (1..remaining)."""
    if sched.kind == "int":
        b = torch.clamp(remaining, max=sched.k)
    elif sched.kind == "fraction":
        b = torch.floor(remaining.double() * sched.fraction).long()
    else:
        a = sched.adaptive
        assert a is not None and threshold_space is not None
        cum = torch.cumsum(sorted_grad.double(), dim=1)
        v = value.double()
        if log_space:
            # steer in log-odds: near p = 1 log p hardly moves, so its margin to a threshold like 0.99 is tiny
            # while the evidence (logits) can still fall a long way before the score crosses it
            v_lo, one_minus_p = _log_odds(v)
            t_lo, _ = _log_odds(torch.tensor(threshold_space, dtype=torch.float64, device=v.device))
            margin = (v_lo - t_lo).unsqueeze(1)
            cum = cum / one_minus_p.unsqueeze(1)  # d log-odds = d log p / (1 - p)
        else:
            margin = (v - threshold_space).unsqueeze(1)
        above = margin >= 0
        ok = torch.where(above, cum >= -a.caution * margin, cum <= -a.caution * margin)
        # length of the leading run of predicted-safe prefixes
        lead = torch.cumprod(ok.long(), dim=1).sum(dim=1)
        cap = torch.clamp(torch.floor(remaining.double() * a.max_fraction).long(), min=a.min_k)
        b = torch.minimum(torch.clamp(lead, min=a.min_k), cap)
    return torch.minimum(torch.clamp(b, min=1), remaining)


# ------------------------------------------------------------------------------------------------ model passes
def score_and_grad(problem: SISProblem, rows: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Exact scores (float64) at ``keep`` and their gradient w.r.t. the removal mask, ``(n, D)``.

    Only the mask requires grad: the model's parameters never accumulate gradients and their
    ``requires_grad`` flags are left alone.
    """
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


def _rank_order(values: Tensor, valid: Tensor, generator: torch.Generator | None) -> Tensor:
    """Column indices of each row sorted by ``values`` descending; ties by lowest column (or at random)."""
    masked = values.masked_fill(~valid, float("-inf"))
    if generator is None:
        return torch.sort(masked, dim=1, descending=True, stable=True).indices
    noise = torch.rand(masked.shape, generator=generator, device=generator.device).to(masked.device)
    perm = torch.argsort(noise, dim=1)
    idx = torch.sort(masked.gather(1, perm), dim=1, descending=True, stable=True).indices
    return perm.gather(1, idx)


def top_ranked(values: Tensor, valid: Tensor, need: int, generator: torch.Generator | None) -> Tensor:
    """The first ``need`` columns of :func:`_rank_order` (same result), without a full sort when ``need`` is small.

    ``topk`` finds each row's ``need``-th largest value; every valid entry at or above it (ties included) is then
    sorted stably, so the tie-breaking rule is the full sort's. Columns past a row's number of valid entries
    are unspecified.
    """
    n, d = values.shape
    need = max(1, min(need, d))
    if need * 8 >= d:
        return _rank_order(values, valid, generator)[:, :need]
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
    return idx.gather(1, _rank_order(vals, slot_valid, generator))[:, :need]


# ------------------------------------------------------------------------------------------------ BackSelect
class GradientBackSelect:
    """Batched Gradient BackSelect as a ``backselect_fn`` for :func:`~sis_attr._core.sis.compute_sis`.

    Parameters
    ----------
    schedule : _Schedule
        Resolved block size (see :func:`resolve_k`).
    shortlist : int or None
        ``M`` for gradient-screened exact selection; None for the pure gradient method of the paper.
    generator : torch.Generator or None
        Random tie-breaking (deterministic lowest-id tie-breaking without it).
    threshold_space : float or None
        Threshold in the comparison space, for :class:`AdaptiveK`.
    """

    def __init__(
        self,
        schedule: _Schedule,
        shortlist: int | None = None,
        generator: torch.Generator | None = None,
        threshold_space: float | None = None,
    ) -> None:
        self.schedule = schedule
        self.shortlist = shortlist
        self.generator = generator
        self.threshold_space = threshold_space

    def __call__(
        self,
        problem: SISProblem,
        examples: Tensor,
        keep_start: Tensor,
        *,
        show_progress: bool = False,
        desc: str = "Batched Gradient BackSelect",
    ) -> tuple[list[Tensor], list[Tensor]]:
        device = problem.device
        n_ex = int(examples.shape[0])
        d = problem.max_features
        bs = problem.batch_size
        examples = examples.to(device)
        keep = keep_start.clone().to(device)
        remaining = keep.sum(dim=1)
        start = remaining.clone()
        step = torch.zeros(n_ex, dtype=torch.long, device=device)
        orders = torch.full((n_ex, max(d, 1)), -1, dtype=torch.long, device=device)
        values = torch.full((n_ex, d + 1), float("nan"), dtype=torch.float64, device=device)

        with progress_bar(int(start.sum()), desc, show_progress, unit="feature") as bar:
            active = torch.nonzero(remaining > 0).flatten()
            while active.numel() > 0:
                for i in range(0, int(active.shape[0]), bs):
                    chunk = active[i : i + bs]
                    removed = self._step(problem, examples, chunk, keep, remaining, step, orders, values)
                    bar.update(removed)
                active = torch.nonzero(remaining > 0).flatten()

        # the fully removed input (or the start, for examples without features)
        all_local = torch.arange(n_ex, device=device)
        for i in range(0, n_ex, bs):
            sl = all_local[i : i + bs]
            values[sl, step[sl]] = problem.evaluate(examples[sl], keep[sl])

        orders_cpu, values_cpu, steps = orders.cpu(), values.cpu(), step.tolist()
        return (
            [orders_cpu[i, : steps[i]].clone() for i in range(n_ex)],
            [values_cpu[i, : steps[i] + 1].clone() for i in range(n_ex)],
        )

    def _need(self, max_remaining: int, d: int) -> int:
        """How many top-ranked features a step may look at (the largest possible block or shortlist)."""
        sched = self.schedule
        if sched.kind == "int":
            need = sched.k
        elif sched.kind == "fraction":
            need = math.floor(max_remaining * sched.fraction)
        else:
            assert sched.adaptive is not None
            need = max(sched.adaptive.min_k, math.floor(max_remaining * sched.adaptive.max_fraction))
        if self.shortlist is not None:
            need = max(need, self.shortlist)
        return max(1, min(need, max_remaining, d))

    def _step(
        self,
        problem: SISProblem,
        examples: Tensor,
        chunk: Tensor,
        keep: Tensor,
        remaining: Tensor,
        step: Tensor,
        orders: Tensor,
        values: Tensor,
    ) -> int:
        """One gradient step for the examples ``chunk`` (local ids); updates the state in place."""
        device = keep.device
        rows = examples[chunk]
        keep_c = keep[chunk]
        rem_c = remaining[chunk]
        step_c = step[chunk]
        v, g = score_and_grad(problem, rows, keep_c)
        values[chunk, step_c] = v
        ranked = top_ranked(g, keep_c, self._need(int(rem_c.max()), int(g.shape[1])), self.generator)
        sorted_grad = g.gather(1, ranked).masked_fill(
            torch.arange(ranked.shape[1], device=device).unsqueeze(0) >= rem_c.unsqueeze(1), float("-inf")
        )
        b = _block_sizes(self.schedule, rem_c, v, sorted_grad, self.threshold_space, problem.scorer.log_space)
        if self.shortlist is None:
            sel = ranked
        else:
            sel, best = self._screen(problem, rows, keep_c, ranked, rem_c)
            b = torch.minimum(b, torch.clamp(rem_c, max=self.shortlist))
            values[chunk, step_c + 1] = best
        cols = torch.arange(sel.shape[1], device=device).unsqueeze(0)
        r, c = torch.nonzero(cols < b.unsqueeze(1), as_tuple=True)
        feats = sel[r, c]
        keep[chunk[r], feats] = False
        orders[chunk[r], step_c[r] + c] = feats
        step[chunk] = step_c + b
        remaining[chunk] = rem_c - b
        return int(b.sum())

    def _screen(
        self, problem: SISProblem, rows: Tensor, keep_c: Tensor, ranked: Tensor, rem_c: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Evaluate the shortlisted single removals exactly; return them best first, and the best score."""
        assert self.shortlist is not None
        device = keep_c.device
        m = min(self.shortlist, int(ranked.shape[1]))
        cand = ranked[:, :m]
        valid = torch.arange(m, device=device).unsqueeze(0) < rem_c.unsqueeze(1)
        ex, slot = torch.nonzero(valid, as_tuple=True)
        exact = torch.full((cand.shape[0], m), float("-inf"), dtype=torch.float64, device=device)
        bs = problem.batch_size
        for i in range(0, int(ex.shape[0]), bs):  # keep-masks built per forward pass: memory bounded by bs
            e, sl = ex[i : i + bs], slot[i : i + bs]
            cand_keep = keep_c[e].clone()
            cand_keep[torch.arange(e.shape[0], device=device), cand[e, sl]] = False
            exact[e, sl] = problem.evaluate(rows[e], cand_keep)
        if self.generator is None:
            # ties: the lowest feature id, as exact BackSelect
            by_id = torch.argsort(cand.masked_fill(~valid, _BIG), dim=1, stable=True)
            cand, exact, valid = cand.gather(1, by_id), exact.gather(1, by_id), valid.gather(1, by_id)
        idx = _rank_order(exact, valid, self.generator)
        return cand.gather(1, idx), exact.gather(1, idx[:, :1]).squeeze(1)


# ------------------------------------------------------------------------------------------------ FindSIS
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
        lo: list[int | None] = [_last_index_at_or_above(r.values, t) for r in records]

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


# ------------------------------------------------------------------------------------------------ entry point
def run_gradient_sis(
    problem: SISProblem,
    threshold: float,
    schedule: _Schedule,
    *,
    shortlist: int | None = None,
    refine: bool = True,
    collection: bool = False,
    max_sis: int | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
    adaptive_threshold_space: float | None = None,
) -> SISResult:
    """Batched Gradient SIS (and SIScollection) for a validated problem; ``threshold`` in the user's space."""
    t_space = adaptive_threshold_space
    if t_space is None and schedule.kind == "adaptive":
        t_space = problem.scorer.to_space(threshold)
    backselect = GradientBackSelect(schedule, shortlist=shortlist, generator=generator, threshold_space=t_space)
    method = "Batched Gradient BackSelect" if shortlist is None else f"Gradient-screened BackSelect (M={shortlist})"
    return compute_sis(
        problem,
        backselect,
        threshold,
        collection=collection,
        max_sis=max_sis,
        show_progress=show_progress,
        find_fn=GradientFindSIS(refine=refine),
        method=method,
    )


def adaptive_threshold_space(schedule: _Schedule, problem: SISProblem, caller: str, *, sis_call: bool) -> float | None:
    """The comparison-space threshold an :class:`AdaptiveK` steers by (None: the SIS threshold, or unused)."""
    if schedule.kind != "adaptive":
        return None
    assert schedule.adaptive is not None
    t = schedule.adaptive.threshold
    if t is None:
        if sis_call:
            return None
        raise SISValueError(
            f"The `k` parameter of {caller} is adaptive, which steers by a threshold, but {caller} has none. "
            "Pass AdaptiveK(threshold=...) or a fixed k."
        )
    return problem.scorer.to_space(format_threshold(t, caller, probability=problem.scorer.log_space))
