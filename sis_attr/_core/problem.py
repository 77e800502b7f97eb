"""One SIS problem: a model, a batch of inputs, baselines, feature groups, targets, a score and a batch size.

:func:`format_problem` is the public doors' ``_format`` step: it validates every argument once and resolves the
targets with one pass over the full inputs. :meth:`SISProblem.trusted` builds a problem from values a caller
has already validated (the analyses of :mod:`sis_attr.overinterpretation`), without any model call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sis_attr._core.batching import cat_outputs, is_out_of_memory, probe_batch_size, release_cached_memory, split_rows
from sis_attr._core.layout import Layout
from sis_attr._core.scoring import ScoreFunc, Scorer
from sis_attr._core.validation import (
    check_model,
    format_additional_args,
    format_baselines,
    format_feature_mask,
    format_inputs,
    format_target,
)


class SISProblem:
    """Validated, flattened view of one attribution call.

    Build it with :func:`format_problem` (public doors) or :meth:`trusted` (already validated values).
    ``full_values`` holds the scores of the full inputs in the comparison space when the construction ran the
    model on them (``format_problem``), else None.
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        inputs: tuple[Tensor, ...],
        is_tuple: bool,
        baselines: tuple[Tensor, ...],
        feature_index: Tensor,
        n_features: Tensor,
        additional_args: tuple[Any, ...],
        scorer: Scorer,
        batch_size: int,
        caller: str,
    ) -> None:
        self.caller = caller
        self.forward_func = forward_func
        self.inputs = inputs
        self.is_tuple = is_tuple
        self.scorer = scorer
        self.additional_args = additional_args
        self.batch = int(inputs[0].shape[0])
        self.device = inputs[0].device
        self.shapes = [tuple(x.shape[1:]) for x in inputs]
        self.flat_x = torch.cat([x.reshape(self.batch, -1) for x in inputs], dim=1)
        self.flat_b = torch.cat([b.reshape(self.batch, -1) for b in baselines], dim=1).to(self.flat_x.dtype)
        self.layout = Layout(self.flat_x, self.flat_b, feature_index, n_features, self.shapes, is_tuple)
        self.n_features = n_features
        self.max_features = self.layout.max_features
        self.batch_size = batch_size
        self.max_rows: int | None = None  # set after an out-of-memory error: the rows that fit in one pass
        self.target = torch.zeros(self.batch, dtype=torch.long, device=self.device)
        self.full_values: Tensor | None = None

    @classmethod
    def trusted(
        cls,
        forward_func: Callable[..., Any],
        inputs: Tensor,
        *,
        target: Tensor,
        baselines: float | Tensor,
        feature_mask: Tensor,
        batch_size: int,
        caller: str,
        score_func: ScoreFunc | None = None,
        full_values: Tensor | None = None,
    ) -> SISProblem:
        """A problem over one validated input tensor with known targets: no validation and no model call.

        ``feature_mask`` holds group ids ``0..d-1`` broadcastable to one example (``(1, ...)``); ``baselines`` is
        a number or a tensor broadcastable to ``inputs``; ``full_values``, if known, the scores of the full
        inputs in the comparison space (engines then need not measure them again); everything lives on the
        inputs' device.
        """
        base = torch.broadcast_to(torch.as_tensor(baselines, dtype=inputs.dtype, device=inputs.device), inputs.shape)
        mask = feature_mask.reshape((1,) * (inputs.dim() - feature_mask.dim()) + tuple(feature_mask.shape))
        flat = torch.broadcast_to(mask, (1, *inputs.shape[1:])).reshape(1, -1).long()
        n = int(flat.max()) + 1 if flat.numel() else 0
        n_features = torch.full((int(inputs.shape[0]),), n, dtype=torch.long, device=inputs.device)
        problem = cls(
            forward_func,
            (inputs,),
            False,
            (base,),
            flat,
            n_features,
            (),
            Scorer(score_func, caller),
            batch_size,
            caller,
        )
        problem.target = target
        problem.full_values = full_values
        return problem

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
        """The model's checked output on ``composed`` inputs of example ids ``rows``.

        An out-of-memory error splits the batch in halves (recursively) and the size that worked is
        remembered: later passes are split to it up front.
        """
        n = int(rows.shape[0])
        if self.max_rows is not None and n > self.max_rows:
            parts = [
                self.forward(rows[sl], [c[sl] for c in composed], finite=finite) for sl in split_rows(n, self.max_rows)
            ]
            return cat_outputs(parts)
        try:
            output = self.forward_func(*composed, *self._args_for(rows))
        except Exception as err:
            if n <= 1 or not is_out_of_memory(err):
                raise
            del err
            release_cached_memory(self.device)
            self.shrink(n // 2)
            return self.forward(rows, composed, finite=finite)
        return self.scorer.check_output(output, int(rows.shape[0]), finite=finite)

    def shrink(self, rows: int) -> None:
        """Remember that at most ``rows`` rows fit in one pass (after an out-of-memory error)."""
        self.max_rows = max(1, rows if self.max_rows is None else min(self.max_rows, rows))
        self.batch_size = min(self.batch_size, self.max_rows)

    def probe_batch_size(self, *, gradient: bool, max_rows: int, fallback: int) -> int:
        """Measure the rows per pass with the highest throughput on this problem's inputs (cached per model,
        row shape, dtype, device and pass kind) and use it."""
        key = (tuple(self.shapes), str(self.flat_x.dtype), str(self.device), gradient)
        size = probe_batch_size(
            self.forward_func,
            key,
            self.timed_pass(gradient),
            max_rows=max(1, max_rows),
            device=self.device,
            fallback=fallback,
        )
        self.batch_size = size
        return size

    def timed_pass(self, gradient: bool) -> Callable[[int], None]:
        """``run(n)``: one pass of ``n`` rows of the first input, as the probe times it (no-grad forward passes
        for exact evaluations, forward + backward with respect to the feature mask for gradient steps)."""
        keep = self.layout.initial_keep()[:1]
        dtype = self.flat_x.dtype

        def run(n: int) -> None:
            rows = torch.zeros(n, dtype=torch.long, device=self.device)
            if not gradient:
                with torch.no_grad():
                    self.forward_func(*self.layout.compose(rows, keep.expand(n, -1)), *self._args_for(rows))
                return
            with torch.enable_grad():
                m = torch.zeros(n, keep.shape[1], dtype=dtype, device=self.device, requires_grad=True)
                out = self.forward_func(*self.layout.compose_soft(rows, m), *self._args_for(rows))
                torch.autograd.grad(self.scorer(out, self.target[rows]).sum(), m, allow_unused=True)

        return run

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
    def resolve_target(self, target: object) -> None:
        """Run the model once on the full inputs: set :attr:`target` (the predicted class when None, else the
        validated ``target``) and :attr:`full_values`."""
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
        self.target = tgt
        self.full_values = self.scorer(output, tgt)


def format_problem(
    forward_func: Callable[..., Any],
    inputs: object,
    baselines: object = None,
    target: object = None,
    additional_forward_args: object = None,
    feature_mask: object = None,
    *,
    score_func: ScoreFunc | None,
    batch_size: int,
    caller: str,
) -> SISProblem:
    """Validate the Captum-style arguments of a public door once and resolve the targets (one model pass)."""
    inputs_t, is_tuple = format_inputs(inputs, caller)
    check_model(forward_func, inputs_t, caller)
    scorer = Scorer(score_func, caller)
    args = format_additional_args(additional_forward_args)
    base = format_baselines(baselines, inputs_t, caller)
    feature_index, n_features = format_feature_mask(feature_mask, inputs_t, caller)
    problem = SISProblem(
        forward_func, inputs_t, is_tuple, base, feature_index, n_features, args, scorer, batch_size, caller
    )
    problem.resolve_target(target)
    return problem
