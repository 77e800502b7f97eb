"""Functional API: exact backward selection, FindSIS and SIScollection on any PyTorch model.

The classes :class:`~sis_attr.SufficientInputSubsets` and :class:`~sis_attr.BatchedGradientSIS` are thin
Captum adapters over the same core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from sis_attr._core import methods
from sis_attr._core.results import BackSelectRecord, SISResult
from sis_attr._core.schedule import KSpec
from sis_attr._core.scoring import ScoreFunc

__all__ = [
    "backselect",
    "batched_gradient_sis",
    "find_sis",
    "gradient_backselect",
    "sis_collection",
    "sufficient_input_subsets",
]


def backselect(
    forward_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    baselines: object = None,
    target: object = None,
    additional_forward_args: object = None,
    feature_mask: object = None,
    *,
    score_func: ScoreFunc | None = None,
    batch_size: int | None = None,
    perturbations_per_eval: int | None = None,
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
    batch_size : int, optional
        Masked inputs per forward pass; bounds peak memory. Results do not depend on it. None (default) measures
        the fastest size on the first call (cached per model, input shape, dtype and device).
    perturbations_per_eval : int, optional
        Captum-style alternative to ``batch_size``: ``batch_size = perturbations_per_eval * len(inputs)``.
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
    method = methods.format_exact(batch_size, perturbations_per_eval, inputs, caller)
    call = methods.Call(
        forward_func, score_func, inputs, baselines, target, additional_forward_args, feature_mask, caller
    )
    return methods.records(
        method,
        call,
        show_progress=show_progress,
    )


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
    batch_size: int | None = None,
    perturbations_per_eval: int | None = None,
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
    method = methods.format_exact(batch_size, perturbations_per_eval, inputs, caller)
    call = methods.Call(
        forward_func, score_func, inputs, baselines, target, additional_forward_args, feature_mask, caller
    )
    return methods.explain(
        method,
        call,
        threshold=threshold,
        collection=collection,
        max_sis=max_sis,
        show_progress=show_progress,
    )


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
    batch_size: int | None = None,
    perturbations_per_eval: int | None = None,
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
        perturbations_per_eval=perturbations_per_eval,
        show_progress=show_progress,
    )


# ---------------------------------------------------------------------------------------------------------------
# Batched gradient SIS (Carter et al., 2021, Supplementary S5)
# ---------------------------------------------------------------------------------------------------------------


def gradient_backselect(
    forward_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    baselines: object = None,
    target: object = None,
    additional_forward_args: object = None,
    feature_mask: object = None,
    *,
    k: KSpec = methods.DEFAULT_K,
    shortlist: int | None = None,
    score_func: ScoreFunc | None = None,
    batch_size: int | None = None,
    perturbations_per_eval: int | None = None,
    show_progress: bool = False,
    generator: torch.Generator | None = None,
) -> list[BackSelectRecord]:
    """Batched Gradient BackSelect: backward selection guided by the gradient w.r.t. a feature mask.

    The masked input is ``x * (1 - m) + baseline * m`` for a continuous removal mask ``m`` over features.
    Each iteration runs one forward and one backward pass (for up to ``batch_size`` examples at a time) at
    the current binary mask, records the exact score there, and removes the ``k`` remaining features with the
    largest ``d score / d m_j`` (the removals predicted to hurt the score least; ties: the lowest feature id,
    or at random with ``generator``). The gradient is taken with respect to ``m`` only: the model's parameters
    never accumulate gradients and their ``requires_grad`` flags are left alone.

    With ``shortlist=M`` (gradient-screened exact selection) the gradient proposes the ``M`` most promising
    removals, these are evaluated exactly with batched forward passes, and the best ``k`` of them are removed.

    Parameters
    ----------
    forward_func, inputs, baselines, target, additional_forward_args, score_func, show_progress
        As in :func:`backselect`; ``forward_func`` must be differentiable with respect to its inputs.
    feature_mask : None, Tensor or tuple of Tensor, optional
        Integer group ids (Captum convention). Default: one feature per *pixel* for 4-D ``(B, C, H, W)`` inputs
        (all channels together, as in the paper) and one per element for other ranks.
    k : int, float, "auto", "adaptive", AutoK or AdaptiveK, default "auto"
        ``"auto"`` (:class:`~sis_attr.AutoK`): the subset forward selection finds for 0.99 (for the default score;
        with a custom ``score_func``, the subset that scores as much as the whole input) is ranked last, the other
        features by gradient blocks before it. Otherwise features removed per iteration: an integer; a fraction
        in (0, 1) of the remaining features (at least one; scikit-learn's ``RFE(step=...)`` takes a fraction of
        the total instead); or an adaptive schedule, which here needs ``AdaptiveK(threshold=...)``. With
        ``shortlist`` a block never exceeds ``M``.
    shortlist : int, optional
        ``M`` for gradient-screened exact selection (``k <= M``); None (default) is the paper's pure gradient
        method. With ``k="auto"``: the single additions screened per forward step (None: ``AutoK``'s 32).
    batch_size : int, optional
        Rows per forward(/backward) pass: images per gradient pass and masked inputs per exact evaluation. Bounds
        peak memory. None (default): the fastest size, measured on the first call (cached).
    perturbations_per_eval : int, optional
        Captum-style alternative to ``batch_size``: ``batch_size = perturbations_per_eval * len(inputs)``.
    generator : torch.Generator, optional
        Break ties between equal gradients (or equal exact scores) at random instead of by lowest feature id:
        one seed is drawn from it per call, and each example's features are ordered at random by that seed and
        the example's values (the same whatever the batch size or the other examples).

    Returns
    -------
    list of BackSelectRecord
        One record per example with the full removal ``order``. ``values[i]`` is the exact score after ``i``
        removals where it was measured (the start of each block, the score after the first removal of a block
        with ``shortlist``, and the fully removed input) and NaN elsewhere; :meth:`BackSelectRecord.find_sis`
        ignores NaN, so it returns the last *measured* crossing (a valid SIS, minimal to a block).

    Notes
    -----
    Costs ``ceil(d / k)`` forward+backward passes per example for ``d`` features (plus ``M`` exact
    evaluations per iteration with ``shortlist``), against ``d (d + 1) / 2`` evaluations for exact
    :func:`backselect`. With ``k=1`` and a score that is linear in the mask (a linear model with a linear
    ``score_func``) the gradient equals each single removal's effect and the order equals exact BackSelect's.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.functional import gradient_backselect
    >>> from sis_attr.testing import LinearScore
    >>> model = LinearScore(torch.tensor([3.0, 1.0, 2.0]))
    >>> record = gradient_backselect(model, torch.ones(1, 3), score_func=LinearScore.score)[0]
    >>> record.order.tolist()  # as exact BackSelect on a linear score
    [1, 2, 0]
    >>> gradient_backselect(model, torch.ones(1, 3), k=2, score_func=LinearScore.score)[0].values.tolist()
    [6.0, nan, 3.0, 0.0]
    """
    caller = "gradient_backselect"
    method = methods.format_gradient(k, shortlist, True, generator, batch_size, perturbations_per_eval, inputs, caller)
    call = methods.Call(
        forward_func, score_func, inputs, baselines, target, additional_forward_args, feature_mask, caller
    )
    return methods.records(
        method,
        call,
        show_progress=show_progress,
    )


def batched_gradient_sis(
    forward_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    baselines: object = None,
    target: object = None,
    additional_forward_args: object = None,
    feature_mask: object = None,
    *,
    threshold: float,
    k: KSpec = methods.DEFAULT_K,
    shortlist: int | None = None,
    refine: bool = True,
    collection: bool = False,
    max_sis: int | None = None,
    score_func: ScoreFunc | None = None,
    batch_size: int | None = None,
    perturbations_per_eval: int | None = None,
    show_progress: bool = False,
    generator: torch.Generator | None = None,
) -> SISResult:
    """Batched Gradient SIS: :func:`gradient_backselect`, FindSIS with refinement, and SIScollection.

    FindSIS takes the last measured score >= ``threshold`` (inclusive) of the target class. With ``refine``
    the single-feature prefixes of the block after it are evaluated exactly (batched across examples), so the
    SIS is minimal to one feature along the order rather than to ``k``. Every SIS is then checked with a final
    forward pass and is guaranteed to reach the threshold; where even the full input does not, the example
    gets no SIS (``sis`` is None), never an invalid one. With ``collection=True`` each SIS found is masked and
    the search repeated (Batched Gradient SIScollection), giving disjoint SIS.

    Parameters
    ----------
    forward_func, inputs, baselines, target, additional_forward_args, feature_mask, k, shortlist, score_func, \
batch_size, show_progress, generator
        As in :func:`gradient_backselect`. ``k="adaptive"`` (or ``AdaptiveK()``) steers by ``threshold``.
    threshold : float
        Score the SIS alone must reach; in (0, 1] for the default softmax score.
    refine : bool, default True
        Refine inside the final block. False gives the paper's Batched Gradient FindSIS (SIS minimal to a
        block of ``k``).
    collection : bool, default False
        Find the SIScollection (disjoint SIS).
    max_sis : int, optional
        With ``collection``, stop after this many SIS per example.

    Returns
    -------
    SISResult
        As :func:`sufficient_input_subsets`. ``result[i].sis_at(t)`` reads another threshold from the stored
        record without running the model: the SIS found is valid but not refined (minimal to a block).

    Notes
    -----
    The paper's setting (Inception-v3 at 299x299, k=100, threshold 0.9) is
    ``batched_gradient_sis(model, x, threshold=0.9, k=100, refine=False)``; ``refine=True`` (default) adds at
    most ``k - 1`` batched forward passes per image and per SIS.

    Examples
    --------
    >>> import torch
    >>> from sis_attr.functional import batched_gradient_sis
    >>> from sis_attr.testing import TinyConvNet
    >>> net = TinyConvNet(in_channels=3, classes=4, seed=0)
    >>> x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    >>> result = batched_gradient_sis(net, x, threshold=0.5, k=4, shortlist=8)
    >>> result.keep_mask().shape  # per-pixel features, broadcast over the channels
    torch.Size([2, 3, 6, 6])
    >>> all(not e.has_sis or bool(e.record.scores[e.record.sis_index(0.5)] >= 0.5) for e in result)
    True
    """
    caller = "batched_gradient_sis"
    method = methods.format_gradient(
        k, shortlist, refine, generator, batch_size, perturbations_per_eval, inputs, caller
    )
    call = methods.Call(
        forward_func, score_func, inputs, baselines, target, additional_forward_args, feature_mask, caller
    )
    return methods.explain(
        method,
        call,
        threshold=threshold,
        collection=collection,
        max_sis=max_sis,
        show_progress=show_progress,
    )
