"""Scores: how model outputs become the numbers backward selection compares, and thresholds in that space.

The default score is the softmax probability of the target class, compared in log space (see :class:`Scorer`);
a user ``score_func(output, target) -> (n,)`` is compared as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from sis_attr._core.validation import check_logits
from sis_attr.exceptions import SISTypeError, SISValueError


def threshold_to_space(threshold: float, log_space: bool) -> float:
    """A (validated) threshold in the comparison space: ``log(threshold)`` for the default softmax score."""
    return math.log(threshold) if log_space else float(threshold)


ScoreFunc = Callable[[Tensor, Tensor], Tensor]


def target_log_prob(logits: Tensor, target: Tensor) -> Tensor:
    """``log softmax(logits)[target]`` per row in float64, without saturating at 0 for confident rows.

    Computed as ``-softplus(logsumexp_{j != t}(z_j - z_t))`` on the logits in float64. The float32 log-softmax of
    the :class:`Scorer` rounds to exactly 0 once the target's logit leads by about 17; this keeps changing up to a
    lead of about 700 (``benchmarks/bench_gradient_ranking.py`` measures log-odds changes with it); selection
    compares the :class:`Scorer`'s values, whose ties do not depend on how rows were batched.

    Examples
    --------
    >>> logits = torch.tensor([[30.0, 0.0, 1.0]])
    >>> float(torch.log_softmax(logits, dim=1)[0, 0])  # float32 rounds to 0
    0.0
    >>> float(target_log_prob(logits, torch.tensor([0])))  # doctest: +ELLIPSIS
    -3.47...e-13
    """
    z = logits.double()
    t = target.unsqueeze(1)
    gap = z - z.gather(1, t)
    others = torch.logsumexp(gap.scatter(1, t, float("-inf")), dim=1)
    # softplus(u) = max(u, 0) + log1p(exp(-|u|)), exactly (torch's softplus returns u itself above 20)
    return -(torch.clamp(others, min=0) + torch.log1p(torch.exp(-others.abs())))


class Scorer:
    """Turns model outputs into per-row scores in the space where scores are compared.

    The default scores the log-softmax probability of the target: it orders removals exactly like the
    probability in exact arithmetic but keeps distinct values where the softmax saturates at 1.0 in floating
    point. A user ``score_func(output, target) -> (n,)`` is used as given.
    """

    def __init__(self, score_func: ScoreFunc | None, caller: str) -> None:
        if score_func is not None and not callable(score_func):
            raise SISTypeError(
                f"The `score_func` parameter of {caller} must be None or a callable "
                f"(output, target) -> scores. Got {type(score_func).__name__} instead."
            )
        self.score_func = score_func
        self.caller = caller
        self.log_space = score_func is None

    def check_output(self, output: object, n: int, *, finite: bool = True) -> Tensor:
        """Check the model output's type and shape, and (``finite=True``) that it holds no NaN or inf.

        Callers that pass ``finite=False`` check the scores with :meth:`check_scores` instead: a NaN or +inf
        logit makes the log-softmax of its whole row NaN, so finite scores are what matters.
        """
        if not isinstance(output, Tensor):
            raise SISTypeError(
                f"The model passed to {self.caller} must return a tensor. Got {type(output).__name__} instead."
            )
        if self.score_func is None:
            check_logits(
                output,
                n,
                self.caller,
                shape_hint=" For other outputs pass `score_func`.",
                binary_hint=" Pass `score_func` (e.g. a sigmoid score) for binary models.",
            )
        elif output.dim() == 0 or output.shape[0] != n:
            raise SISValueError(
                f"The model passed to {self.caller} must return a batch of {n} outputs. "
                f"Got shape {tuple(output.shape)} instead."
            )
        if finite and not torch.isfinite(output).all():
            self.raise_non_finite()
        return output

    def raise_non_finite(self) -> None:
        raise SISValueError(
            f"The model passed to {self.caller} returned NaN or inf for some masked inputs. "
            "Check the baseline and the model's numerical range."
        )

    def check_scores(self, scores: np.ndarray) -> np.ndarray:
        """Host-side check of scores computed with ``check_output(..., finite=False)``."""
        if not np.isfinite(scores).all():
            self.raise_non_finite()
        return scores

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        """Scores of shape ``(n,)`` in float64."""
        if self.score_func is None:
            logp = torch.log_softmax(output, dim=1)
            return logp.gather(1, target.unsqueeze(1)).squeeze(1).double()
        scores = self.score_func(output, target)
        if not isinstance(scores, Tensor) or scores.shape != (output.shape[0],):
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise SISValueError(
                f"The `score_func` of {self.caller} must return one score per example, shape "
                f"({output.shape[0]},). Got {got} instead."
            )
        if not torch.isfinite(scores).all():
            raise SISValueError(f"The `score_func` of {self.caller} returned NaN or inf.")
        return scores.double()

    def to_space(self, threshold: float) -> float:
        """Map a threshold to the comparison space (log for the default softmax score)."""
        return threshold_to_space(threshold, self.log_space)

    def from_space(self, values: Tensor) -> Tensor:
        return values.exp() if self.log_space else values
