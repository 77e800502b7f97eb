"""One private implementation per method, shared by every door (the TorchMetrics pattern).

Every door (:class:`~sis_attr.SufficientInputSubsets`, :class:`~sis_attr.BatchedGradientSIS` and the functions
of :mod:`sis_attr.functional`) validates its method's options once (:func:`format_exact` /
:func:`format_gradient`), wraps its Captum arguments in a :class:`Call` and calls one pipeline: :func:`records`,
:func:`explain` or :func:`attribute`. These validate the rest, build the problem with one pass over the full
inputs and run the method (:class:`ExactMethod` / :class:`GradientMethod`). The defaults live here, once.

The analyses of :mod:`sis_attr.overinterpretation` have validated their inputs already: they call
:func:`format_method` once and :func:`backselect_records` per chunk, which neither validates nor runs the model
on the full images.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor

from sis_attr._core.auto import AutoSelect
from sis_attr._core.exact import exact_backselect
from sis_attr._core.feature_masks import default_feature_mask
from sis_attr._core.gradient import GradientBackSelect
from sis_attr._core.problem import SISProblem, format_problem
from sis_attr._core.refine import GradientFindSIS
from sis_attr._core.results import BackSelectRecord, SISResult, cast_like, rank_maps
from sis_attr._core.schedule import AdaptiveK, AdaptiveSchedule, AutoK, FixedK, FractionK, Schedule, format_k
from sis_attr._core.scoring import ScoreFunc, threshold_to_space
from sis_attr._core.sis import BackSelectFn, FindFn, compute_sis, find_from_records, make_records
from sis_attr._core.ties import draw_tie_seed
from sis_attr._core.validation import (
    format_flag,
    format_generator,
    format_optional_positive_int,
    format_output_kind,
    format_threshold,
    param_error,
    resolve_batch_size,
)
from sis_attr.exceptions import SISTypeError, SISValueError

EXACT_BATCH_SIZE = 256
"""Masked inputs per forward pass of exact BackSelect where ``batch_size=None`` cannot measure a better one."""

GRADIENT_BATCH_SIZE = 64
"""Rows per forward(/backward) pass of gradient BackSelect where ``batch_size=None`` cannot measure one."""

DEFAULT_K = "auto"
"""The gradient method's schedule unless the user says otherwise: :class:`~sis_attr._core.schedule.AutoK`."""

AUTO_STEERING_THRESHOLD = 0.99
"""The threshold ``k="auto"`` selects forward to when a call has none (rank maps, backward selection alone): the
paper's. It only shapes the order near that confidence; the SIS at any threshold still come from the record."""

OutputKind = Literal["rank", "keep_mask"]


# ------------------------------------------------------------------------------------------------ the methods
class _Method:
    """Backward selection and SIS for a problem; subclasses give the engine, the FindSIS step and a name.

    ``batch_size`` None: measured on the problem (:meth:`fit_batch_size`), once per model, shape and device.
    """

    batch_size: int | None
    description: str
    fallback_batch_size: int

    def rows_per_pass(self, problem: SISProblem) -> int:
        """The most rows one pass of this method can hold on ``problem`` (the probe's upper bound)."""
        raise NotImplementedError

    def probes_gradient(self) -> bool:
        """Whether most of the method's work is forward + backward passes (else no-grad forward passes)."""
        return False

    def initial_batch_size(self) -> int:
        return self.fallback_batch_size if self.batch_size is None else self.batch_size

    def fit_batch_size(self, problem: SISProblem) -> SISProblem:
        """Measure the best batch size on ``problem`` when the user gave none."""
        if self.batch_size is None:
            problem.probe_batch_size(
                gradient=self.probes_gradient(),
                max_rows=self.rows_per_pass(problem),
                fallback=self.fallback_batch_size,
            )
        return problem

    def engine(self, problem: SISProblem, threshold: float | None) -> BackSelectFn:
        raise NotImplementedError

    def find_fn(self) -> FindFn:
        return find_from_records

    def backselect(
        self,
        problem: SISProblem,
        *,
        threshold: float | None = None,
        show_progress: bool = False,
        first_example: int = 0,
    ) -> list[BackSelectRecord]:
        """Backward selection from all features (``threshold`` only steers an adaptive ``k``)."""
        examples = list(range(problem.batch))
        idx = torch.arange(problem.batch, device=problem.device)
        orders, values = self.engine(problem, threshold)(
            problem, idx, problem.layout.initial_keep(), show_progress=show_progress, desc=self.description
        )
        return make_records(problem, examples, orders, values, first_example=first_example)

    def sis(
        self,
        problem: SISProblem,
        threshold: float,
        *,
        collection: bool = False,
        max_sis: int | None = None,
        show_progress: bool = False,
    ) -> SISResult:
        """SIS (and SIScollection) at ``threshold`` (the user's space)."""
        return compute_sis(
            problem,
            self.engine(problem, threshold),
            threshold,
            collection=collection,
            max_sis=max_sis,
            show_progress=show_progress,
            find_fn=self.find_fn(),
            method=self.description,
        )


@dataclass(frozen=True)
class ExactMethod(_Method):
    """Exact BackSelect (``d (d + 1) / 2`` evaluations per example) with validated options."""

    batch_size: int | None = None
    tie_seed: int | None = None
    description: str = field(default="SIS BackSelect", init=False)
    fallback_batch_size: int = field(default=EXACT_BATCH_SIZE, init=False)

    def rows_per_pass(self, problem: SISProblem) -> int:
        return problem.batch * problem.max_features

    def engine(self, problem: SISProblem, threshold: float | None) -> BackSelectFn:
        if self.tie_seed is None:
            return exact_backselect
        return functools.partial(exact_backselect, tie_seed=self.tie_seed)


@dataclass(frozen=True)
class GradientMethod(_Method):
    """Batched Gradient BackSelect (optionally gradient-screened) with validated options."""

    k: FixedK | FractionK | AdaptiveK | AutoK = field(default_factory=AutoK)
    shortlist: int | None = None
    refine: bool = True
    tie_seed: int | None = None
    batch_size: int | None = None
    fallback_batch_size: int = field(default=GRADIENT_BATCH_SIZE, init=False)

    def rows_per_pass(self, problem: SISProblem) -> int:
        n = problem.batch
        if isinstance(self.k, AutoK):
            return n * max(self.k.shortlist, 1)
        return n * (self.shortlist or 1)

    def probes_gradient(self) -> bool:
        return not isinstance(self.k, AutoK) and self.shortlist is None

    @property
    def description(self) -> str:  # type: ignore[override]
        if isinstance(self.k, AutoK):
            return "Automatic SIS"
        if self.shortlist is None:
            return "Batched Gradient BackSelect"
        return f"Gradient-screened BackSelect (M={self.shortlist})"

    def schedule(self, problem: SISProblem, threshold: float | None) -> Schedule:
        """The block schedule; an adaptive ``k`` steers by its own threshold, else by ``threshold``."""
        if isinstance(self.k, AutoK):
            raise TypeError("AutoK has no block schedule: GradientMethod.engine runs AutoSelect")
        if not isinstance(self.k, AdaptiveK):
            return self.k
        caller = problem.caller
        t = self.k.threshold
        if t is None:
            if threshold is None:
                raise SISValueError(
                    f"The `k` parameter of {caller} is adaptive, which steers by a threshold, but {caller} has "
                    "none. Pass AdaptiveK(threshold=...) or a fixed k."
                )
            t = threshold
        else:
            t = format_threshold(t, caller, probability=problem.scorer.log_space, param="k.threshold")
        return AdaptiveSchedule(self.k, threshold_to_space(t, problem.scorer.log_space))

    def engine(self, problem: SISProblem, threshold: float | None) -> BackSelectFn:
        if isinstance(self.k, AutoK):
            log_space = problem.scorer.log_space
            if threshold is None and log_space:
                threshold = AUTO_STEERING_THRESHOLD
            t = None if threshold is None else threshold_to_space(threshold, log_space)
            return AutoSelect(self.k, t, tie_seed=self.tie_seed)
        return GradientBackSelect(self.schedule(problem, threshold), shortlist=self.shortlist, tie_seed=self.tie_seed)

    def find_fn(self) -> FindFn:
        return GradientFindSIS(refine=self.refine)


Method = ExactMethod | GradientMethod


# ------------------------------------------------------------------------------------------------ formatting
def format_exact(batch_size: object, perturbations_per_eval: object, inputs: object, caller: str) -> ExactMethod:
    """The options of the exact method, validated with ``caller``'s name."""
    return ExactMethod(batch_size=resolve_batch_size(batch_size, perturbations_per_eval, inputs, caller))


def format_gradient(
    k: object,
    shortlist: object,
    refine: object,
    generator: object,
    batch_size: object,
    perturbations_per_eval: object,
    inputs: object,
    caller: str,
) -> GradientMethod:
    """The options of the gradient method, validated with ``caller``'s name (``inputs``: for Captum's
    ``perturbations_per_eval``)."""
    schedule, m = format_k(k, shortlist, caller)
    return GradientMethod(
        k=schedule,
        shortlist=m,
        refine=format_flag(refine, "refine", caller),
        tie_seed=draw_tie_seed(format_generator(generator, caller)),
        batch_size=resolve_batch_size(batch_size, perturbations_per_eval, inputs, caller),
    )


def format_tie_seed(generator: object, caller: str) -> int | None:
    """The tie seed of the analyses' ``generator`` parameter: None (ties to the lowest feature id), an integer
    seed (used as it is, so a checkpoint's manifest records it) or a :class:`torch.Generator` (one draw)."""
    if isinstance(generator, int) and not isinstance(generator, bool):
        if generator < 0:
            raise param_error("generator", caller, "a non-negative integer seed", repr(generator))
        return generator
    if generator is not None and not isinstance(generator, torch.Generator):
        raise SISTypeError(
            f"The `generator` parameter of {caller} must be None, a torch.Generator or an integer seed. "
            f"Got {type(generator).__name__} instead."
        )
    return draw_tie_seed(generator)


def format_method(
    method: object,
    *,
    k: object = DEFAULT_K,
    shortlist: object = None,
    batch_size: object,
    caller: str,
    generator: object = None,
) -> Method:
    """``"exact"`` or ``"gradient"`` with its options, validated with ``caller``'s name (for the analyses);
    ``generator``: see :func:`format_tie_seed`."""
    tie_seed = format_tie_seed(generator, caller)
    if method == "exact":
        if isinstance(k, bool) or k != DEFAULT_K or shortlist is not None:
            raise SISValueError(
                f'The `k` and `shortlist` parameters of {caller} apply to method="gradient" only. Got k={k!r}, '
                f'shortlist={shortlist!r} with method="exact"; drop them or use method="gradient".'
            )
        return replace(format_exact(batch_size, None, None, caller), tie_seed=tie_seed)
    if method == "gradient":
        return replace(format_gradient(k, shortlist, True, None, batch_size, None, None, caller), tie_seed=tie_seed)
    raise param_error("method", caller, 'one of "exact" or "gradient"', repr(method))


# ------------------------------------------------------------------------------------------------ the pipelines
@dataclass(frozen=True)
class Call:
    """The Captum-style arguments of one call of a public door, as the user gave them (not yet validated)."""

    forward_func: Callable[..., Any]
    score_func: ScoreFunc | None
    inputs: object
    baselines: object
    target: object
    additional_forward_args: object
    feature_mask: object
    caller: str

    def threshold(self, threshold: object) -> float:
        """``threshold`` validated: in (0, 1] for the default softmax score, any finite number otherwise."""
        return format_threshold(threshold, self.caller, probability=self.score_func is None)

    def flag(self, value: object, name: str) -> bool:
        return format_flag(value, name, self.caller)

    def problem(self, method: Method) -> SISProblem:
        """Validate the arguments and resolve the targets (one pass over the full inputs)."""
        feature_mask = self.feature_mask
        if isinstance(method, GradientMethod) and feature_mask is None:
            feature_mask = default_feature_mask(self.inputs)
        problem = format_problem(
            self.forward_func,
            self.inputs,
            self.baselines,
            self.target,
            self.additional_forward_args,
            feature_mask,
            score_func=self.score_func,
            batch_size=method.initial_batch_size(),
            caller=self.caller,
        )
        return method.fit_batch_size(problem)


def records(
    method: Method, call: Call, *, threshold: object = None, show_progress: object = False
) -> list[BackSelectRecord]:
    """Backward selection on every example (``threshold`` only steers an adaptive ``k``)."""
    t = None if threshold is None else call.threshold(threshold)
    progress = call.flag(show_progress, "show_progress")
    return method.backselect(call.problem(method), threshold=t, show_progress=progress)


def explain(
    method: Method,
    call: Call,
    *,
    threshold: object,
    collection: object = False,
    max_sis: object = None,
    show_progress: object = False,
) -> SISResult:
    """SIS (and SIScollection) of every example."""
    t = call.threshold(threshold)
    coll = call.flag(collection, "collection")
    max_n = format_optional_positive_int(max_sis, "max_sis", call.caller)
    progress = call.flag(show_progress, "show_progress")
    return method.sis(call.problem(method), t, collection=coll, max_sis=max_n, show_progress=progress)


def attribute(
    method: Method, call: Call, *, threshold: object, output: object, show_progress: object = False
) -> Tensor | tuple[Tensor, ...]:
    """Captum-style attributions shaped like the inputs: rank maps, or SIS keep-masks (``output="keep_mask"``).

    The rank map does not depend on ``threshold`` (except through an adaptive ``k``), so it may be None there.
    """
    kind = format_output_kind(output, call.caller)
    progress = call.flag(show_progress, "show_progress")
    if kind == "rank":
        t = None if threshold is None else call.threshold(threshold)
        problem = call.problem(method)
        maps = rank_maps(problem.layout, method.backselect(problem, threshold=t, show_progress=progress))
    else:
        if threshold is None:
            raise param_error("threshold", call.caller, 'a number with output="keep_mask"', "None")
        t = call.threshold(threshold)
        problem = call.problem(method)
        maps = method.sis(problem, t, show_progress=progress).keep_mask()
    return cast_like(maps, problem.inputs, problem.is_tuple)


def backselect_records(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    *,
    method: Method,
    target: Tensor,
    baselines: float | Tensor,
    feature_mask: Tensor,
    threshold: float | None = None,
    start_values: Tensor | None = None,
    first_example: int = 0,
    caller: str,
) -> list[BackSelectRecord]:
    """Backward selection on validated inputs with known targets (for the analyses, chunk by chunk).

    No validation, no training-mode warning, no progress bar and no pass over the full inputs: ``inputs``
    ``(n, ...)`` float, ``target`` ``(n,)`` int64, ``baselines`` (a number or broadcastable tensor) and
    ``feature_mask`` (group ids ``0..d-1`` broadcastable to one example) all on the model's device. With
    ``start_values`` (the full inputs' scores in the comparison space, e.g. the log of known confidences) the
    exact engine does not run the model on the full inputs either. Records are numbered
    ``first_example, first_example + 1, ...``.
    """
    problem = SISProblem.trusted(
        forward_func,
        inputs,
        target=target,
        baselines=baselines,
        feature_mask=feature_mask,
        batch_size=method.initial_batch_size(),
        caller=caller,
        full_values=start_values,
    )
    method.fit_batch_size(problem)
    return method.backselect(problem, threshold=threshold, first_example=first_example)
