"""One SIS problem: a model, a batch of inputs, baselines, feature groups, targets and a score.

Inputs of any structure (a tensor or a tuple of tensors) are flattened per example and concatenated into
``(B, P)`` rows; a feature is a group of positions given by ``feature_index`` (``(1 or B, P)``). Keep-masks
over features have shape ``(n, D)`` where ``D`` is the largest number of features of any example; ids at or
above an example's own feature count are padding and never present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sis_attr._core.results import Layout
from sis_attr._core.validation import (
    check_model,
    format_additional_args,
    format_baselines,
    format_feature_mask,
    format_inputs,
    format_target,
)
from sis_attr.exceptions import SISTypeError, SISValueError

ScoreFunc = Callable[[Tensor, Tensor], Tensor]


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
            if output.dim() != 2 or output.shape[0] != n:
                raise SISValueError(
                    f"The model passed to {self.caller} must return logits of shape (batch, classes) = ({n}, C). "
                    f"Got shape {tuple(output.shape)} instead. For other outputs pass `score_func`."
                )
            if output.shape[1] < 2:
                raise SISValueError(
                    f"The model passed to {self.caller} returns a single logit per example; the softmax of one "
                    "class is always 1. Pass `score_func` (e.g. a sigmoid score) for binary models."
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
        if self.log_space:
            return float(torch.log(torch.tensor(threshold, dtype=torch.float64)))
        return threshold

    def from_space(self, values: Tensor) -> Tensor:
        return values.exp() if self.log_space else values


class SISProblem:
    """Validated, flattened view of one attribution call."""

    def __init__(
        self,
        forward_func: Callable[..., Any],
        inputs: object,
        baselines: object = None,
        target: object = None,
        additional_forward_args: object = None,
        feature_mask: object = None,
        *,
        score_func: ScoreFunc | None = None,
        caller: str,
        batch_size: int = 256,
    ) -> None:
        self.caller = caller
        self.inputs, self.is_tuple = format_inputs(inputs, caller)
        check_model(forward_func, self.inputs, caller)
        self.forward_func = forward_func
        self.scorer = Scorer(score_func, caller)
        self.additional_args = format_additional_args(additional_forward_args)
        base = format_baselines(baselines, self.inputs, caller)
        self.batch = int(self.inputs[0].shape[0])
        self.device = self.inputs[0].device
        self.shapes = [tuple(x.shape[1:]) for x in self.inputs]
        self.flat_x = torch.cat([x.reshape(self.batch, -1) for x in self.inputs], dim=1)
        self.flat_b = torch.cat([b.reshape(self.batch, -1) for b in base], dim=1).to(self.flat_x.dtype)
        feature_index, n_features = format_feature_mask(feature_mask, self.inputs, caller)
        self.layout = Layout(self.flat_x, self.flat_b, feature_index, n_features, self.shapes, self.is_tuple)
        self.n_features = n_features
        self.max_features = self.layout.max_features
        self.batch_size = batch_size
        self.target, self.full_values = self._resolve_target(target)

    # ------------------------------------------------------------------ running the model
    def _args_for(self, rows: Tensor) -> tuple[Any, ...]:
        out: list[Any] = []
        for a in self.additional_args:
            if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == self.batch:
                out.append(a[rows.to(a.device)])
            else:
                out.append(a)
        return tuple(out)

    def forward(self, rows: Tensor, composed: Sequence[Tensor], *, finite: bool = True) -> Tensor:
        output = self.forward_func(*composed, *self._args_for(rows))
        return self.scorer.check_output(output, int(rows.shape[0]), finite=finite)

    @torch.no_grad()
    def evaluate(self, rows: Tensor, keep: Tensor) -> Tensor:
        """Scores (float64, comparison space) of the masked inputs; no autograd."""
        out = self.forward(rows, self.layout.compose(rows, keep))
        return self.scorer(out, self.target[rows])

    @torch.no_grad()
    def evaluate_flat_host(self, rows: Tensor, flat: Tensor, targets: Tensor | None = None) -> np.ndarray:
        """Scores (float64 numpy, comparison space) of composed, flattened ``(n, P)`` inputs for example ids
        ``rows`` (``targets``: their target classes, if already at hand), brought to the host and checked there:
        one transfer per call."""
        out = self.forward(rows, self.layout.unflatten(flat), finite=False)
        tgt = self.target.index_select(0, rows) if targets is None else targets
        if self.scorer.log_space:  # the default score, as Scorer computes it, with fewer small ops
            logp = torch.log_softmax(out, dim=1).gather(1, tgt.unsqueeze(1))
            if logp.dtype not in (torch.float32, torch.float64):  # e.g. bfloat16, which numpy lacks
                logp = logp.double()
            scores = logp.cpu().numpy().reshape(-1).astype(np.float64)
        else:
            scores = self.scorer(out, tgt).cpu().numpy()
        return self.scorer.check_scores(scores)

    @torch.no_grad()
    def evaluate_chunked(self, rows: Tensor, keep: Tensor) -> Tensor:
        res = [
            self.evaluate(rows[i : i + self.batch_size], keep[i : i + self.batch_size])
            for i in range(0, int(rows.shape[0]), self.batch_size)
        ]
        return torch.cat(res)

    @torch.no_grad()
    def _resolve_target(self, target: object) -> tuple[Tensor, Tensor]:
        rows_all = torch.arange(self.batch, device=self.device)
        outputs = []
        for i in range(0, self.batch, self.batch_size):
            rows = rows_all[i : i + self.batch_size]
            outputs.append(self.forward(rows, tuple(x[rows] for x in self.inputs)))
        output = torch.cat(outputs)
        n_classes = int(output.shape[1]) if output.dim() == 2 else None
        if target is None:
            if output.dim() == 2:
                tgt = output.argmax(dim=1)
            else:
                tgt = torch.zeros(self.batch, dtype=torch.long, device=self.device)
        else:
            tgt = format_target(target, self.batch, n_classes, self.device, self.caller)
        return tgt, self.scorer(output, tgt)
