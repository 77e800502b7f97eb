"""The automatic schedule (``k="auto"``): cheap gradient blocks early, exact screening late, an exact endgame.

Backward selection only has to be careful near its end. While many features remain, the features removed only
have to avoid the important ones, and the gradient ranks them well enough: one gradient step (a forward and a
backward pass, three forward-equivalents) removes a fixed fraction of the remaining features, so these steps
are logarithmic in the number of features. Once few features remain (or, when the threshold is known, once the
score comes within a margin of it), each gradient step only proposes a shortlist whose single removals are
evaluated exactly, and the best of them go; near the threshold a gradient block that the first-order
prediction calls safe still goes unscreened when it is at least a shortlist long, so inputs with many features
stay logarithmic. A guard takes back any unscreened block that used too much of the margin, screens the next
step and halves later gradient blocks. The margin is measured on a float64 log-probability that does not
saturate (:func:`~sis_attr._core.scoring.target_log_prob`): float32's log-softmax is exactly 0 for a confident
image, which would hide how much of its evidence a block removed. The last features are ordered by exact
BackSelect (:func:`~sis_attr._core.exact.exact_backselect`, ``r (r + 1) / 2`` evaluations for ``r`` features),
where the SIS of a confident image usually lies. ``benchmarks/bench_sis_schedule.py`` measures the cost and SIS size
against exact BackSelect on real images; the defaults are the point of its frontier chosen there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sis_attr._core.exact import exact_backselect
from sis_attr._core.gradient import SelectionState, score_and_grad, screen, top_ranked
from sis_attr._core.problem import SISProblem
from sis_attr._core.schedule import AutoK, _log_odds, predicted_lead
from sis_attr._core.ties import tie_keys
from sis_attr._progress import progress_bar


class AutoBackSelect:
    """Backward selection with the automatic schedule, a ``backselect_fn`` for
    :func:`~sis_attr._core.sis.compute_sis`.

    Parameters
    ----------
    options : AutoK
        Validated options.
    threshold_space : float or None
        The SIS threshold in the comparison space, if known: screening then also starts near it.
    log_space : bool
        Whether scores are log-probabilities (the margin is then measured in log-odds).
    tie_seed : int or None
        Seeded random tie-breaking among equal gradients and equal exact scores, the endgame's included
        (:mod:`~sis_attr._core.ties`); ties go to the lowest feature id without it.
    """

    def __init__(
        self,
        options: AutoK,
        threshold_space: float | None,
        log_space: bool,
        tie_seed: int | None = None,
    ) -> None:
        self.options = options
        self.threshold_space = threshold_space
        self.log_space = log_space
        self.tie_seed = tie_seed

    def __call__(
        self,
        problem: SISProblem,
        examples: Tensor,
        keep_start: Tensor,
        *,
        show_progress: bool = False,
        desc: str = "Automatic BackSelect",
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Select until no feature is left; returns per example the order and the measured scores (CPU)."""
        device = problem.device
        examples = examples.to(device)
        state = SelectionState.start(keep_start.to(device), problem.max_features)
        keys = tie_keys(problem, examples, self.tie_seed)
        n = int(examples.shape[0])
        # per example: the last block removed and the score measured before it, and the largest block allowed
        # for gradient blocks (halved each time the guard takes a block back; screened blocks are measured)
        self._last_block = torch.zeros(n, dtype=torch.long, device=device)
        self._last_value = torch.full((n,), float("nan"), dtype=torch.float64, device=device)
        self._cap = torch.full((n,), problem.max_features + 1, dtype=torch.long, device=device)
        # whether the last block was screened, and whether the next step must screen (after a guarded undo)
        self._last_screened = torch.zeros(n, dtype=torch.bool, device=device)
        self._force_screen = torch.zeros(n, dtype=torch.bool, device=device)
        # the largest next block of any kind: half a block that backtracking took back (one step only)
        self._next_max = torch.full((n,), problem.max_features + 1, dtype=torch.long, device=device)
        # the gradient measured before the last block: a block taken back restores that state (its score is
        # still recorded in state.values), so its step goes on with it instead of measuring it again
        self._prev_grad: Tensor | None = None
        end = self.options.endgame
        bs = problem.batch_size
        with progress_bar(int(state.remaining.sum()), desc, show_progress, unit="feature") as bar:
            active = torch.nonzero(state.remaining > end).flatten()
            while active.numel() > 0:
                for i in range(0, int(active.shape[0]), bs):
                    chunk = active[i : i + bs]
                    removed = self._step(problem, examples, chunk, state, None if keys is None else keys[chunk])
                    bar.update(max(0, removed))
                active = torch.nonzero(state.remaining > end).flatten()
            todo = state.active()
            if todo.numel() > 0:
                orders, values = exact_backselect(problem, examples[todo], state.keep[todo], tie_seed=self.tie_seed)
                for j, order, vals in zip(todo.tolist(), orders, values, strict=True):
                    s, r = int(state.step[j]), int(order.numel())
                    state.orders[j, s : s + r] = order.to(device)
                    state.values[j, s : s + r + 1] = vals.to(device)
                    state.keep[j, order.to(device)] = False
                    state.step[j] = s + r
                    state.remaining[j] = 0
                    bar.update(r)
        # the fully removed input of examples that never had features (the endgame measured everyone else's)
        unmeasured = torch.nonzero(torch.isnan(state.values.gather(1, state.step.unsqueeze(1)).squeeze(1)))
        state.measure(problem, examples, unmeasured.flatten())
        return state.records()

    def _margin(self, value: Tensor) -> Tensor | None:
        """How far each score is above the threshold (log-odds for the softmax score); None without one."""
        if self.threshold_space is None:
            return None
        t = torch.tensor(self.threshold_space, dtype=torch.float64, device=value.device)
        v = value.double()
        return _log_odds(v)[0] - _log_odds(t)[0] if self.log_space else v - t

    def _step(
        self, problem: SISProblem, examples: Tensor, chunk: Tensor, state: SelectionState, keys: Tensor | None
    ) -> int:
        """One gradient step for ``chunk`` (local ids, all with more than ``endgame`` features left; ``keys``:
        their tie priorities); returns the number of features removed (net of any block taken back)."""
        a = self.options
        rows = examples[chunk]
        keep_c, rem_c, step_c = state.keep[chunk], state.remaining[chunk], state.step[chunk]
        # v: the scores selection compares and records; steer: the same without float32 saturation (how far a
        # confident image is above the threshold), for the margin, the guard and the predicted block
        v, g, steer = score_and_grad(problem, rows, keep_c)
        margin = self._margin(steer)
        undone = 0
        if margin is not None and (a.backtrack or a.guard > 0):
            before = self._margin(self._last_value[chunk])
            if before is None:  # pragma: no cover - margin and before come from the same threshold
                raise RuntimeError("no threshold to backtrack by")
            last = self._last_block[chunk]
            overshot = torch.zeros_like(margin, dtype=torch.bool)
            if a.backtrack:
                # a block of several features that took the score from above the threshold to below it: the SIS
                # would be decided inside a block. Take the block back and go on with blocks half its size.
                overshot |= (before >= 0) & (margin < 0) & (last > 1)
            guarded = torch.zeros_like(overshot)
            if a.guard > 0:
                # an unscreened gradient block that used more than `guard` of the margin to the threshold: the
                # gradient misjudged it (typically a saturated softmax). Take it back, screen the next step
                # exactly, and halve the gradient blocks until they behave again.
                unscreened = ~self._last_screened[chunk]
                guarded = unscreened & (last > 1) & (before >= 0) & (before - margin > a.guard * before)
                grown = unscreened & ~guarded & (last > 0)
                self._cap[chunk[grown]] = torch.clamp(self._cap[chunk[grown]] * 2, max=problem.max_features + 1)
            overshot |= guarded
            if bool(overshot.any()):
                back = chunk[overshot]
                undone = int(self._last_block[back].sum())
                self._cap[back] = torch.clamp(self._last_block[back] // 2, min=1)
                self._force_screen[chunk[guarded]] = True
                # with backtracking, a guarded block halves the next block too (the screened block forced after
                # it could otherwise cross, be taken back and alternate with the guarded one forever)
                backtracked = chunk[overshot] if a.backtrack else chunk[overshot & ~guarded]
                self._next_max[backtracked] = torch.clamp(self._last_block[backtracked] // 2, min=1)
                # the state before the block comes back with the scores and gradient measured there, and this
                # step goes on from it (screened after a guard, with half the block after backtracking)
                steer = torch.where(overshot, self._last_value[chunk], steer)
                self._undo(state, back)
                keep_c, rem_c, step_c = state.keep[chunk], state.remaining[chunk], state.step[chunk]
                v = torch.where(overshot, state.values[chunk, step_c].to(v.dtype), v)
                if self._prev_grad is None:  # pragma: no cover - a block was removed, so a gradient was kept
                    raise RuntimeError("no gradient kept for the block taken back")
                g = torch.where(overshot.unsqueeze(1), self._prev_grad[chunk].to(g.dtype), g)
                margin = self._margin(steer)
                if margin is None:  # pragma: no cover - margin and before come from the same threshold
                    raise RuntimeError("no threshold to backtrack by")
        state.values[chunk, step_c] = v
        screening = (rem_c <= a.screen_at) | self._force_screen[chunk]
        near = torch.zeros_like(screening)
        if margin is not None and a.margin > 0:
            near = (margin >= 0) & (margin < a.margin) & ~screening
        remf = rem_c.double()
        # the cap (halved by the guard) limits gradient blocks only: a screened block's removals are measured
        grad_block = torch.minimum(torch.clamp(torch.floor(remf * a.fraction).long(), min=1), self._cap[chunk])
        screen_block = torch.clamp(torch.floor(remf * a.screen_fraction).long(), min=1, max=a.shortlist)
        # never remove into the endgame's features in one block
        grad_block = torch.minimum(grad_block, rem_c - a.endgame)
        screen_block = torch.minimum(screen_block, rem_c - a.endgame)
        need = int(torch.where(screening, screen_block, grad_block).max())
        if bool((screening | near).any()):
            need = max(need, a.shortlist)
        ranked = top_ranked(g, keep_c, min(need, int(g.shape[1])), keys)
        if margin is not None and bool(near.any()):
            # near the threshold with many features left: a gradient block whose first-order prediction keeps
            # the score within half the margin still goes unscreened (under the guard) when it is at least a
            # shortlist long, so large inputs stay logarithmic; shorter ones are screened
            wide_block = torch.minimum(grad_block, self._predicted_safe(steer, g, ranked, rem_c, margin))
            wide = near & (wide_block >= a.shortlist)
            grad_block = torch.where(wide, wide_block, grad_block)
            screening = screening | (near & ~wide)
        block = torch.minimum(torch.where(screening, screen_block, grad_block), self._next_max[chunk])
        s = torch.nonzero(screening).flatten()
        if s.numel() > 0:
            s_keys = None if keys is None else keys[s]
            best_first, exact = screen(problem, rows[s], keep_c[s], ranked[s], rem_c[s], a.shortlist, s_keys)
            m = int(best_first.shape[1])
            ranked[s, :m] = best_first
            state.values[chunk[s], step_c[s] + 1] = exact[:, 0]
            if margin is not None:
                block[s] = torch.minimum(block[s], self._safe_prefix(steer[s], exact, margin[s]))
        state.remove(chunk, ranked, block)
        if margin is not None and (a.backtrack or a.guard > 0):
            if self._prev_grad is None:
                self._prev_grad = torch.zeros(state.keep.shape, dtype=g.dtype, device=g.device)
            self._prev_grad[chunk] = g
        self._last_block[chunk] = block
        self._last_value[chunk] = steer
        self._last_screened[chunk] = screening
        self._force_screen[chunk] = False
        self._next_max[chunk] = problem.max_features + 1
        return int(block.sum()) - undone

    def _undo(self, state: SelectionState, back: Tensor) -> None:
        """Put back the last block removed from each example of ``back``."""
        for j in back.tolist():
            b, s = int(self._last_block[j]), int(state.step[j])
            feats = state.orders[j, s - b : s].clone()
            state.keep[j, feats] = True
            state.orders[j, s - b : s] = -1
            state.values[j, s - b + 1 : s + 1] = float("nan")
            state.step[j] = s - b
            state.remaining[j] += b
            self._last_block[j] = 0
            self._last_value[j] = float("nan")

    def _predicted_safe(self, value: Tensor, g: Tensor, ranked: Tensor, rem: Tensor, margin: Tensor) -> Tensor:
        """Longest prefix of ``ranked`` whose first-order predicted drop (the summed gradients, in log-odds for
        the softmax score) stays within half the margin."""
        cols = torch.arange(ranked.shape[1], device=ranked.device).unsqueeze(0)
        drops = g.gather(1, ranked).double().masked_fill(cols >= rem.unsqueeze(1), float("-inf"))
        return predicted_lead(value, drops, margin, 0.5, self.log_space)

    def _safe_prefix(self, value: Tensor, exact: Tensor, margin: Tensor) -> Tensor:
        """Longest prefix of the screened removals (best first) whose summed exact drops stay within half the
        margin to the threshold (at least one). Below the threshold the SIS is decided: no limit."""
        lo_v = self._margin(value)
        lo_e = self._margin(exact)
        if lo_v is None or lo_e is None:
            return torch.full_like(value, exact.shape[1], dtype=torch.long)
        drops = torch.clamp(lo_v.unsqueeze(1) - lo_e, min=0).nan_to_num(posinf=float("inf"))
        ok = torch.cumsum(drops, dim=1) <= 0.5 * margin.unsqueeze(1)
        safe = torch.cumprod(ok.long(), dim=1).sum(dim=1).clamp(min=1)
        return torch.where(margin >= 0, safe, torch.full_like(safe, exact.shape[1]))
