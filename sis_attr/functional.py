"""Functional API: exact backward selection, FindSIS and SIScollection on any PyTorch model.

The classes :class:`~sis_attr.SufficientInputSubsets` and :class:`~sis_attr.BatchedGradientSIS` are thin
Captum adapters over the same core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from sis_attr._core.backselect import exact_backselect
from sis_attr._core.problem import ScoreFunc, SISProblem
from sis_attr._core.results import BackSelectRecord, SISResult
from sis_attr._core.sis import compute_sis, make_records
from sis_attr._core.validation import format_positive_int, format_threshold

__all__ = ["backselect", "find_sis", "sis_collection", "sufficient_input_subsets"]


def _problem(
    forward_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    baselines: object,
    target: object,
    additional_forward_args: object,
    feature_mask: object,
    score_func: ScoreFunc | None,
    batch_size: int,
    caller: str,
) -> SISProblem:
    bs = format_positive_int(batch_size, "batch_size", caller)
    assert bs is not None
    return SISProblem(
        forward_func,
        inputs,
        baselines,
        target,
        additional_forward_args,
        feature_mask,
        score_func=score_func,
        caller=caller,
        batch_size=bs,
    )


def backselect(
    forward_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    baselines: object = None,
    target: object = None,
    additional_forward_args: object = None,
    feature_mask: object = None,
    *,
    score_func: ScoreFunc | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
) -> list[BackSelectRecord]:
    """Exact BackSelect for every example of a batch.

    Starting from all features present, repeatedly remove the feature whose removal leaves the target
    score highest (ties: the lowest feature id), recording the score after each removal, until none remains.
    Needs ``d (d + 1) / 2`` model evaluations per example for ``d`` features, packed into forward passes of
    ``batch_size`` masked inputs across all examples.

    Parameters
    ----------
    forward_func : callable
        The model (or any function) mapping inputs (and ``additional_forward_args``) to ``(batch, classes)``
        logits.
    inputs : Tensor or tuple of Tensor
        A batch of inputs; tuples are for multi-input models.
    baselines : None, float, Tensor or tuple, optional
        Values that removed features take (default 0, the mean pixel of normalised data).
    target : None, int, list of int or Tensor, optional
        Class to explain per example; the predicted class when None.
    additional_forward_args : object, optional
        Extra arguments passed to ``forward_func`` after the inputs; tensors whose first dimension is the batch
        size are indexed per example.
    feature_mask : None, Tensor or tuple of Tensor, optional
        Integer group ids (Captum convention, ids 0..n-1) broadcastable to the inputs; positions with one id
        are removed together. Default: every element is its own feature.
    score_func : callable, optional
        ``score_func(output, target) -> (batch,)`` scores. Default: the softmax probability of the target
        (recorded as a log-probability).
    batch_size : int, default 256
        Masked inputs per forward pass; bounds peak memory. Results do not depend on it.
    show_progress : bool, default False
        Show a progress bar over model evaluations.

    Returns
    -------
    list of BackSelectRecord
        One record per example: removal order and the score after every removal.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.functional import backselect
    >>> from sis_attr.testing import LinearScore
    >>> model = LinearScore(torch.tensor([3.0, 1.0, 2.0]))
    >>> record = backselect(model, torch.ones(1, 3), score_func=LinearScore.score)[0]
    >>> record.order.tolist()  # the smallest weight goes first
    [1, 2, 0]
    >>> record.values.tolist()
    [6.0, 5.0, 3.0, 0.0]
    """
    caller = "backselect"
    problem = _problem(
        forward_func, inputs, baselines, target, additional_forward_args, feature_mask, score_func, batch_size, caller
    )
    examples = list(range(problem.batch))
    idx = problem.target.new_tensor(examples)
    orders, values = exact_backselect(problem, idx, problem.layout.initial_keep(), show_progress=show_progress)
    return make_records(problem, examples, orders, values)


def find_sis(record: BackSelectRecord, threshold: float) -> Tensor | None:
    """FindSIS on a stored backward-selection record, at any threshold, without running the model.

    The SIS is made of the features removed after the last step whose score is still >= ``threshold``,
    the last removed first. Returns None when the starting score is below ``threshold``.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.functional import backselect, find_sis
    >>> from sis_attr.testing import LinearScore
    >>> model = LinearScore(torch.tensor([3.0, 1.0, 2.0]))
    >>> record = backselect(model, torch.ones(1, 3), score_func=LinearScore.score)[0]
    >>> find_sis(record, 2.5).tolist(), find_sis(record, 4.5).tolist(), find_sis(record, 7.0)
    ([0], [0, 2], None)
    """
    return record.find_sis(threshold)


def sufficient_input_subsets(
    forward_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    baselines: object = None,
    target: object = None,
    additional_forward_args: object = None,
    feature_mask: object = None,
    *,
    threshold: float,
    collection: bool = False,
    max_sis: int | None = None,
    score_func: ScoreFunc | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
) -> SISResult:
    """Sufficient input subsets by exact backward selection (Carter et al., 2019).

    For each example: BackSelect, then FindSIS at ``threshold`` (the features removed after the last step
    whose score is >= ``threshold``); with ``collection=True`` the SIS is masked and the search repeated on
    what remains (SIScollection), giving disjoint SIS.

    Parameters
    ----------
    forward_func, inputs, baselines, target, additional_forward_args, feature_mask, score_func, batch_size, \
show_progress
        As in :func:`backselect`.
    threshold : float
        Score the SIS alone must reach; in (0, 1] for the default softmax score.
    collection : bool, default False
        Find the SIScollection (disjoint SIS) instead of one SIS per example.
    max_sis : int, optional
        With ``collection``, stop after this many SIS per example.

    Returns
    -------
    SISResult
        Per example: the SIS (feature ids), keep-masks shaped like the input, the full record (SIS at any
        other threshold without rerunning), target and confidence.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.functional import sufficient_input_subsets
    >>> from sis_attr.testing import LinearScore
    >>> model = LinearScore(torch.tensor([3.0, 1.0, 2.0, 0.5]))
    >>> result = sufficient_input_subsets(
    ...     model, torch.ones(1, 4), threshold=2.5, collection=True, score_func=LinearScore.score)
    >>> [s.tolist() for s in result[0].collection]
    [[0], [2, 1]]
    >>> result[0].keep_mask()
    tensor([ True, False, False, False])
    """
    caller = "sufficient_input_subsets"
    problem = _problem(
        forward_func, inputs, baselines, target, additional_forward_args, feature_mask, score_func, batch_size, caller
    )
    t = format_threshold(threshold, caller, probability=problem.scorer.log_space)
    max_n = format_positive_int(max_sis, "max_sis", caller, allow_none=True)
    return compute_sis(problem, exact_backselect, t, collection=collection, max_sis=max_n, show_progress=show_progress)


def sis_collection(
    forward_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    baselines: object = None,
    target: object = None,
    additional_forward_args: object = None,
    feature_mask: object = None,
    *,
    threshold: float,
    max_sis: int | None = None,
    score_func: ScoreFunc | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
) -> SISResult:
    """SIScollection: :func:`sufficient_input_subsets` with ``collection=True``.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.functional import sis_collection
    >>> from sis_attr.testing import LinearScore
    >>> model = LinearScore(torch.tensor([2.0, 2.0, 2.0]))
    >>> result = sis_collection(model, torch.ones(1, 3), threshold=1.5, score_func=LinearScore.score)
    >>> [s.tolist() for s in result[0].collection]
    [[2], [1], [0]]
    """
    return sufficient_input_subsets(
        forward_func,
        inputs,
        baselines,
        target,
        additional_forward_args,
        feature_mask,
        threshold=threshold,
        collection=True,
        max_sis=max_sis,
        score_func=score_func,
        batch_size=batch_size,
        show_progress=show_progress,
    )
