"""Captum adapter for exact Sufficient Input Subsets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from sis_attr._compat import PerturbationAttribution, wrap_attribute
from sis_attr._core import methods
from sis_attr._core.results import SISResult
from sis_attr._core.scoring import ScoreFunc

__all__ = ["SufficientInputSubsets"]


class SufficientInputSubsets(PerturbationAttribution):
    r"""Exact Sufficient Input Subsets (SIS) as a Captum attribution method.

    Backward selection removes, one at a time, the feature whose removal leaves the model's confidence in
    the target class highest; the SIS is the smallest suffix of that order that alone (everything else set
    to the baseline) keeps the confidence at or above ``threshold`` (Carter et al., 2019; Carter et al.,
    2021, "Overinterpretation reveals image classification model pathologies").

    :meth:`attribute` returns tensors shaped like the inputs: by default a backward-selection rank map
    (features removed later rank higher, so the SIS carries the top ranks) or, with ``output="keep_mask"``,
    the SIS keep-mask (1 on the SIS). :meth:`explain` returns the rich :class:`~sis_attr.SISResult`.

    Parameters
    ----------
    forward_func : callable
        The model or any function returning ``(batch, classes)`` logits. It is never modified: put it in
        eval mode yourself (a warning is issued if it is in training mode).
    score_func : callable, optional
        ``score_func(output, target) -> (batch,)`` scores replacing the default softmax probability of the
        target (e.g. a sigmoid for a binary model). Thresholds are then compared to these scores directly.

    Notes
    -----
    Exact backward selection needs ``d (d + 1) / 2`` model evaluations per example for ``d`` features
    (524,800 for a 32x32 image with pixels as features); group positions with ``feature_mask`` to reduce
    ``d``, or use :class:`~sis_attr.BatchedGradientSIS` for large inputs.

    References
    ----------
    .. [1] Carter, Mueller, Jain, Gifford. "What made you do this? Understanding black-box decisions with
       sufficient input subsets." AISTATS 2019.
    .. [2] Carter, Jain, Mueller, Gifford. "Overinterpretation reveals image classification model
       pathologies." NeurIPS 2021.

    Examples
    --------
    >>> import torch
    >>> from sis_attr import SufficientInputSubsets
    >>> from sis_attr.testing import SumGridClassifier
    >>> sis = SufficientInputSubsets(SumGridClassifier())
    >>> x = torch.tensor([[[3.0, -1.0], [1.5, 2.0]]])
    >>> sis.attribute(x, target=1, threshold=0.99, output="keep_mask")
    tensor([[[1., 0.],
             [0., 1.]]])
    >>> sis.attribute(x, target=1, threshold=0.99)  # rank map: removed last = highest
    tensor([[[4., 1.],
             [2., 3.]]])
    """

    def __init__(self, forward_func: Callable[..., Any], *, score_func: ScoreFunc | None = None) -> None:
        super().__init__(forward_func)
        self.score_func = score_func

    @classmethod
    def get_name(cls) -> str:
        """Readable name of the method (Captum uses it in logs and visualisations)."""
        return "Sufficient Input Subsets"

    @property
    def multiplies_by_inputs(self) -> bool:
        """False: attributions are ranks or keep-masks, never multiplied by the inputs (Captum's flag)."""
        return False

    @wrap_attribute
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: object = None,
        target: object = None,
        additional_forward_args: object = None,
        feature_mask: object = None,
        *,
        threshold: float | None = None,
        output: methods.OutputKind = "rank",
        batch_size: int | None = None,
        perturbations_per_eval: int | None = None,
        show_progress: bool = False,
    ) -> Tensor | tuple[Tensor, ...]:
        """Attributions shaped like ``inputs``: backward-selection ranks or the SIS keep-mask.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            A batch of inputs (tuples for multi-input models); the output has the same structure.
        baselines : None, float, Tensor or tuple, optional
            Values of removed features, broadcastable to the inputs (default 0).
        target : None, int, list of int or Tensor, optional
            Class per example; the predicted class when None.
        additional_forward_args : object, optional
            Extra arguments for ``forward_func`` after the inputs.
        feature_mask : None, Tensor or tuple of Tensor, optional
            Integer group ids 0..n-1 (Captum convention), per example or shared; positions sharing an id are
            one feature (e.g. all channels of a pixel).
        threshold : float, optional
            Confidence the SIS alone must reach, in (0, 1] for the default softmax score. Required for
            ``output="keep_mask"``; the rank map does not depend on it.
        output : {"rank", "keep_mask"}, default "rank"
            What to return: ranks 1..d (the last removed feature gets d; 0 for positions of absent features)
            or 1.0 on the SIS and 0.0 elsewhere (all zero where the input's confidence is below threshold).
        batch_size : int, optional
            Masked inputs per forward pass across the whole batch; bounds peak memory. None (default) measures the
            fastest size on the first call (cached per model, input shape, dtype and device).
        perturbations_per_eval : int, optional
            Captum-style alternative to ``batch_size``: ``batch_size = perturbations_per_eval * len(inputs)``.
        show_progress : bool, default False
            Show a progress bar.

        Returns
        -------
        Tensor or tuple of Tensor
            Shaped and typed like ``inputs``.
        """
        caller = "SufficientInputSubsets.attribute"
        method = methods.format_exact(batch_size, perturbations_per_eval, inputs, caller)
        call = methods.Call(
            self.forward_func, self.score_func, inputs, baselines, target, additional_forward_args, feature_mask, caller
        )
        return methods.attribute(
            method,
            call,
            threshold=threshold,
            output=output,
            show_progress=show_progress,
        )

    def explain(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: object = None,
        target: object = None,
        additional_forward_args: object = None,
        feature_mask: object = None,
        *,
        threshold: float,
        collection: bool = False,
        max_sis: int | None = None,
        batch_size: int | None = None,
        perturbations_per_eval: int | None = None,
        show_progress: bool = False,
    ) -> SISResult:
        """Rich SIS results: per example the SIS, keep-mask, full record, target and confidence.

        Takes the arguments of :meth:`attribute`, plus ``collection`` (find the disjoint SIScollection) and
        ``max_sis`` (stop after this many SIS per example).

        Examples
        --------
        >>> import torch
        >>> from sis_attr import SufficientInputSubsets
        >>> from sis_attr.testing import SumGridClassifier
        >>> result = SufficientInputSubsets(SumGridClassifier()).explain(
        ...     torch.tensor([[[3.0, -1.0], [1.5, 2.0]]]), target=1, threshold=0.99)
        >>> result[0].sis.tolist(), round(result[0].confidence, 4)
        ([0, 3], 0.9959)
        >>> result[0].sis_at(0.95).tolist()  # from the stored record, no model call
        [0]
        """
        caller = "SufficientInputSubsets.explain"
        method = methods.format_exact(batch_size, perturbations_per_eval, inputs, caller)
        call = methods.Call(
            self.forward_func, self.score_func, inputs, baselines, target, additional_forward_args, feature_mask, caller
        )
        return methods.explain(
            method,
            call,
            threshold=threshold,
            collection=collection,
            max_sis=max_sis,
            show_progress=show_progress,
        )
