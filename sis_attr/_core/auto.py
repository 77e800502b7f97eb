"""The automatic schedule (``k="auto"``): the SIS by screened forward selection, the rest ranked by gradient blocks.

A sufficient subset is small, so it is cheaper to build it up than to whittle the input down to it. Starting from
the fully masked input, each step runs one gradient pass (three forward-equivalents), lets the gradient propose
the ``shortlist`` most promising single additions, evaluates them exactly and adds the best, until the score
reaches the threshold. Backward selection, in contrast, must evaluate its candidates while hundreds of features
are still present, where the gradient ranks single removals barely better than chance
(``benchmarks/results/gradient_ranking_cpu.json``: rank correlation 0.12 for CIFAR-10 pixels), and it spends most
of its budget before the SIS region. The subset found is then pruned: while dropping one of its features still
reaches the threshold (every one is tried exactly), the best such drop is made.

The features outside the subset are then ranked by gradient backward selection from the whole input with the
subset held in place: each gradient step removes ``fraction`` of the remaining ones (at least one), those whose
removal the gradient predicts to hurt least. The record lists them first and the subset last, so FindSIS over it
returns the subset, every score along it is one measured on the features the record says are present, and the
top of the ranking (the subset and the features that most support the class beside it) keeps the prediction.

Forward selection runs at most ``max_forward`` screened steps; after that it adds unscreened gradient blocks of a
quarter of the features added so far, so an input whose SIS is large costs logarithmically more, and FindSIS's
refinement finds the crossing inside the last block. The goal is the threshold, or the whole input's score when
that is lower (then no SIS exists; the subset still heads the ranking); calls without a threshold steer by 0.99
with the default score and by the whole input's score with a custom ``score_func``.
``benchmarks/bench_sis_schedule.py`` measures the cost and SIS size against exact BackSelect on real images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sis_attr._core.gradient import SelectionState, rank_order, score_and_grad, screen, top_ranked
from sis_attr._core.problem import SISProblem
from sis_attr._core.schedule import AutoK
from sis_attr._core.ties import tie_keys
from sis_attr._progress import progress_bar

_BIG = torch.iinfo(torch.long).max


@dataclass
class _Forward:
    """Where forward selection stands for ``n`` examples (local ids); updated in place.

    ``have``: the features added; ``added[:, :count]``: them in the order added; ``values[:, c]``: the score of the
    first ``c`` added alone (NaN where not measured; index 0 is the fully masked input); ``steps``: forward steps
    taken; ``done``: the goal is reached (or nothing is left to add); ``blocked``: unscreened blocks were added.
    """

    have: Tensor
    added: Tensor
    count: Tensor
    values: Tensor
    steps: Tensor
    done: Tensor
    blocked: Tensor

    @classmethod
    def start(cls, n: int, d: int, device: torch.device) -> _Forward:
        return cls(
            have=torch.zeros((n, d), dtype=torch.bool, device=device),
            added=torch.full((n, max(d, 1)), -1, dtype=torch.long, device=device),
            count=torch.zeros(n, dtype=torch.long, device=device),
            values=torch.full((n, d + 1), float("nan"), dtype=torch.float64, device=device),
            steps=torch.zeros(n, dtype=torch.long, device=device),
            done=torch.zeros(n, dtype=torch.bool, device=device),
            blocked=torch.zeros(n, dtype=torch.bool, device=device),
        )


class AutoSelect:
    """Forward selection of the SIS, then gradient ranking of the rest: a ``backselect_fn`` for
    :func:`~sis_attr._core.sis.compute_sis`.

    Parameters
    ----------
    options : AutoK
        Validated options.
    threshold_space : float or None
        The threshold in the comparison space; None: the whole input's score is the goal.
    tie_seed : int or None
        Seeded random tie-breaking among equal gradients and equal exact scores (:mod:`~sis_attr._core.ties`);
        ties go to the lowest feature id without it.
    """

    def __init__(self, options: AutoK, threshold_space: float | None, tie_seed: int | None = None) -> None:
        self.options = options
        self.threshold_space = threshold_space
        self.tie_seed = tie_seed

    def __call__(
        self,
        problem: SISProblem,
        examples: Tensor,
        keep_start: Tensor,
        *,
        show_progress: bool = False,
        desc: str = "Automatic SIS",
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Order every present feature; returns per example the order and the measured scores (CPU)."""
        device = problem.device
        examples = examples.to(device)
        keep_start = keep_start.to(device)
        n, d, bs = int(keep_start.shape[0]), problem.max_features, problem.batch_size
        keys = tie_keys(problem, examples, self.tie_seed)
        # the goal of forward selection: the threshold, or the whole input's score where that is lower
        whole = (
            torch.cat(
                [problem.evaluate(examples[i : i + bs], keep_start[i : i + bs]).double() for i in range(0, n, bs)]
            )
            if n > 0
            else torch.empty(0, dtype=torch.float64, device=device)
        )
        goal = whole if self.threshold_space is None else torch.clamp(whole, max=self.threshold_space)
        fwd = _Forward.start(n, d, device)
        state = SelectionState.start(keep_start, d)
        with progress_bar(int(keep_start.sum()), desc, show_progress, unit="feature") as bar:
            active = torch.arange(n, device=device)
            while active.numel() > 0:
                for i in range(0, int(active.shape[0]), bs):
                    chunk = active[i : i + bs]
                    ck = None if keys is None else keys[chunk]
                    bar.update(self._forward_step(problem, examples, keep_start, goal, fwd, chunk, ck))
                active = torch.nonzero(~fwd.done).flatten()
            empty = fwd.values[:, 0].clone()
            if self.options.prune:
                bar.update(-self._prune(problem, examples, goal, fwd, keys))
            state.remaining = (keep_start & ~fwd.have).sum(dim=1)
            active = state.active()
            while active.numel() > 0:
                for i in range(0, int(active.shape[0]), bs):
                    chunk = active[i : i + bs]
                    ck = None if keys is None else keys[chunk]
                    bar.update(self._rank_step(problem, examples, state, fwd.have, chunk, ck))
                active = state.active()
        # the subset goes last, the first feature added removed last
        for j in range(n):
            s, at = int(fwd.count[j]), int(state.step[j])
            state.orders[j, at : at + s] = fwd.added[j, :s].flip(0)
            state.values[j, at : at + s + 1] = fwd.values[j, : s + 1].flip(0)
            state.values[j, at + s] = empty[j]
            state.step[j] = at + s
        state.values[:, 0] = torch.where(torch.isnan(state.values[:, 0]), whole, state.values[:, 0])
        return state.records()

    def _forward_step(
        self,
        problem: SISProblem,
        examples: Tensor,
        pool: Tensor,
        goal: Tensor,
        fwd: _Forward,
        chunk: Tensor,
        keys: Tensor | None,
    ) -> int:
        """One forward step for ``chunk`` (local ids of examples not done; ``keys``: their tie priorities);
        returns the number of features added."""
        a = self.options
        rows, have_c, count_c = examples[chunk], fwd.have[chunk], fwd.count[chunk]
        v, g = score_and_grad(problem, rows, have_c)
        fwd.values[chunk, count_c] = v
        free = pool[chunk] & ~have_c
        left = free.sum(dim=1)
        go = (v < goal[chunk]) & (left > 0)
        fwd.done[chunk[~go]] = True
        if not bool(go.any()):
            return 0
        screened = go & (fwd.steps[chunk] < a.max_forward)
        # past max_forward screened steps: unscreened blocks of a quarter of the features added so far
        block = torch.where(screened, torch.ones_like(count_c), torch.clamp(count_c // 4, min=1))
        block = torch.minimum(block, left) * go
        need = max(int(block.max()), a.shortlist if bool(screened.any()) else 1)
        # adding feature j changes the score by about -g_j (g: the gradient w.r.t. the removal mask)
        ranked = top_ranked(-g, free, min(need, int(g.shape[1])), keys)
        s = torch.nonzero(screened).flatten()
        if s.numel() > 0:
            best, exact = screen(
                problem,
                rows[s],
                have_c[s],
                ranked[s],
                left[s],
                a.shortlist,
                None if keys is None else keys[s],
                add=True,
            )
            ranked[s, 0] = best[:, 0]
            fwd.values[chunk[s], count_c[s] + 1] = exact[:, 0]
            fwd.done[chunk[s[exact[:, 0] >= goal[chunk[s]]]]] = True
        fwd.blocked[chunk[go & ~screened]] = True
        cols = torch.arange(ranked.shape[1], device=ranked.device).unsqueeze(0)
        r, c = torch.nonzero(cols < block.unsqueeze(1), as_tuple=True)
        feats = ranked[r, c]
        fwd.have[chunk[r], feats] = True
        fwd.added[chunk[r], count_c[r] + c] = feats
        fwd.count[chunk] = count_c + block
        fwd.steps[chunk] += go.long()
        return int(block.sum())

    def _prune(self, problem: SISProblem, examples: Tensor, goal: Tensor, fwd: _Forward, keys: Tensor | None) -> int:
        """While leaving one feature out of a subset still reaches the goal, leave out the best such feature (every
        one is tried exactly; ties as in selection); returns the number left out.

        Only subsets that reached the goal by screened steps are pruned (a round costs one row per feature). A
        pruned subset keeps its order; the forward scores of its prefixes no longer hold, except the one the last
        round measured: the subset without its last-added feature.
        """
        device, bs = fwd.have.device, problem.batch_size
        reached = fwd.values.gather(1, fwd.count.unsqueeze(1)).squeeze(1) >= goal
        todo = torch.nonzero(reached & ~fwd.blocked & (fwd.count >= 2)).flatten()
        dropped = 0
        while todo.numel() > 0:
            counts = fwd.count[todo]
            width = int(counts.max())
            valid = torch.arange(width, device=device).unsqueeze(0) < counts.unsqueeze(1)
            members = fwd.added[todo, :width].clamp(min=0)
            ex, slot = torch.nonzero(valid, as_tuple=True)
            loo = torch.full((int(todo.shape[0]), width), float("-inf"), dtype=torch.float64, device=device)
            for i in range(0, int(ex.shape[0]), bs):
                e, sl = ex[i : i + bs], slot[i : i + bs]
                keep = fwd.have[todo[e]].clone()
                keep[torch.arange(e.shape[0], device=device), members[e, sl]] = False
                loo[e, sl] = problem.evaluate(examples[todo[e]], keep).double()
            tie = members if keys is None else keys[todo].gather(1, members)
            best = rank_order(loo, valid, tie.masked_fill(~valid, _BIG))[:, 0]
            best_value = loo.gather(1, best.unsqueeze(1)).squeeze(1)
            drop = best_value >= goal[todo]
            stay = todo[~drop]
            fwd.values[stay, fwd.count[stay] - 1] = loo[~drop].gather(1, (counts[~drop] - 1).unsqueeze(1)).squeeze(1)
            for j, pos, value in zip(todo[drop].tolist(), best[drop].tolist(), best_value[drop].tolist(), strict=True):
                c = int(fwd.count[j])
                fwd.have[j, int(fwd.added[j, pos])] = False
                fwd.added[j, pos : c - 1] = fwd.added[j, pos + 1 : c].clone()
                fwd.added[j, c - 1] = -1
                fwd.count[j] = c - 1
                fwd.values[j, : c + 1] = float("nan")
                fwd.values[j, c - 1] = value
                dropped += 1
            todo = todo[drop]
            todo = todo[fwd.count[todo] >= 2]
        return dropped

    def _rank_step(
        self,
        problem: SISProblem,
        examples: Tensor,
        state: SelectionState,
        fixed: Tensor,
        chunk: Tensor,
        keys: Tensor | None,
    ) -> int:
        """One gradient step of backward selection over the features outside the subset (``fixed``) for
        ``chunk``; returns the number of features removed."""
        rows, keep_c, rem_c, step_c = examples[chunk], state.keep[chunk], state.remaining[chunk], state.step[chunk]
        v, g = score_and_grad(problem, rows, keep_c)
        state.values[chunk, step_c] = v
        block = torch.clamp(torch.floor(rem_c.double() * self.options.fraction).long(), min=1)
        block = torch.minimum(block, rem_c)
        ranked = top_ranked(g, keep_c & ~fixed[chunk], int(block.max()), keys)
        state.remove(chunk, ranked, block)
        return int(block.sum())
