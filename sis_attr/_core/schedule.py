"""Block schedules of gradient backward selection: how many features one gradient step removes.

A user's ``k`` (an integer, a fraction of the remaining features, ``"adaptive"`` or an :class:`AdaptiveK`) is
validated once by :func:`format_k` into one of three typed schedules, each answering two questions per step:
how many top-ranked features the step may look at (:meth:`need`) and how many it removes (:meth:`block_sizes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from sis_attr._core.validation import format_optional_positive_int
from sis_attr.exceptions import SISTypeError, SISValueError


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
class AutoK:
    """Options of the automatic schedule, ``k="auto"`` (the defaults are what ``"auto"`` means).

    The SIS is built up from the fully masked input by gradient-screened forward selection and then pruned; the
    other features are ranked by gradient backward selection with the SIS held in place, and removed before it
    (:mod:`~sis_attr._core.auto`).

    Parameters
    ----------
    shortlist : int, default 32
        Forward selection: per step the gradient proposes this many single additions, which are evaluated
        exactly; the best is added.
    fraction : float, default 0.2
        Ranking: each gradient step removes this fraction of the features outside the SIS that remain (at least
        one).
    prune : bool, default True
        After forward selection, leave out one feature of the subset at a time (the best of all, each tried
        exactly) while the rest still reaches the threshold.
    max_forward : int, default 64
        Screened forward steps per example. Past them forward selection adds unscreened gradient blocks of a
        quarter of the features added so far, so inputs whose SIS is large stay cheap; FindSIS then refines
        inside the last block. Such SIS are much larger than a screened search finds (with 16 steps, 12 times
        exact BackSelect's on CIFAR-10 pixels), so raise it where SIS of more than 64 features are expected
        (large images): each screened step costs ``shortlist + 3`` forward-equivalents.

    Notes
    -----
    Forward selection steers by the SIS threshold, or by the whole input's score where that is lower. Calls
    without a threshold (rank maps, backward selection alone) steer by 0.99 with the default score and by the
    whole input's score with a custom ``score_func``. ``benchmarks/results/sis_schedule_*_cpu.json`` compares
    the settings with exact BackSelect on real CIFAR-10 images.

    Examples
    --------
    >>> AutoK()
    AutoK(shortlist=32, fraction=0.2, prune=True, max_forward=64)
    >>> AutoK(shortlist=64).shortlist  # a longer shortlist: smaller SIS, at a higher cost
    64
    """

    shortlist: int = 32
    fraction: float = 0.2
    prune: bool = True
    max_forward: int = 64

    def describe(self) -> str:
        return "k=auto"


def format_auto(a: AutoK, shortlist: int | None) -> AutoK:
    """Check an :class:`AutoK`'s fields (it is a plain dataclass); a door's ``shortlist`` replaces its own."""
    f = a.fraction
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f < 1.0:
        raise SISValueError(f"AutoK.fraction must be a fraction in (0, 1). Got {f!r} instead.")
    if not isinstance(a.prune, bool):
        raise SISTypeError(f"AutoK.prune must be a bool. Got {type(a.prune).__name__} instead.")
    for name, low in (("shortlist", 1), ("max_forward", 0)):
        v = getattr(a, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise SISTypeError(f"AutoK.{name} must be an integer. Got {type(v).__name__} instead.")
        if v < low:
            raise SISValueError(f"AutoK.{name} must be at least {low}. Got {v!r} instead.")
    return a if shortlist is None else replace(a, shortlist=shortlist)


KSpec = int | float | str | AdaptiveK | AutoK
"""A block size: an int, a fraction in (0, 1) of the remaining features, ``"auto"``, ``"adaptive"``, an
:class:`AutoK` or an :class:`AdaptiveK`."""


@dataclass(frozen=True)
class FixedK:
    """Remove ``k`` features per step."""

    k: int

    def need(self, max_remaining: int) -> int:
        return self.k

    def block_sizes(self, remaining: Tensor, value: Tensor, sorted_grad: Tensor, log_space: bool) -> Tensor:
        return torch.clamp(remaining, max=self.k)

    def describe(self) -> str:
        return f"k={self.k}"


@dataclass(frozen=True)
class FractionK:
    """Remove ``floor(fraction * remaining)`` features per step (at least one)."""

    fraction: float

    def need(self, max_remaining: int) -> int:
        return math.floor(max_remaining * self.fraction)

    def block_sizes(self, remaining: Tensor, value: Tensor, sorted_grad: Tensor, log_space: bool) -> Tensor:
        return torch.floor(remaining.double() * self.fraction).long()

    def describe(self) -> str:
        return f"k={self.fraction:g} of the remaining features"


@dataclass(frozen=True)
class AdaptiveSchedule:
    """:class:`AdaptiveK` resolved against the threshold it steers by (``threshold_space``: comparison space)."""

    options: AdaptiveK
    threshold_space: float

    def need(self, max_remaining: int) -> int:
        return max(self.options.min_k, math.floor(max_remaining * self.options.max_fraction))

    def block_sizes(self, remaining: Tensor, value: Tensor, sorted_grad: Tensor, log_space: bool) -> Tensor:
        a = self.options
        v = value.double()
        if log_space:
            # steer in log-odds: near p = 1 log p hardly moves, so its margin to a threshold like 0.99 is tiny
            # while the evidence (logits) can still fall a long way before the score crosses it
            t_lo, _ = _log_odds(torch.tensor(self.threshold_space, dtype=torch.float64, device=v.device))
            margin = _log_odds(v)[0] - t_lo
        else:
            margin = v - self.threshold_space
        lead = predicted_lead(v, sorted_grad, margin, a.caution, log_space)
        cap = torch.clamp(torch.floor(remaining.double() * a.max_fraction).long(), min=a.min_k)
        return torch.minimum(torch.clamp(lead, min=a.min_k), cap)

    def describe(self) -> str:
        return "adaptive k"


Schedule = FixedK | FractionK | AdaptiveSchedule


def _log_odds(log_p: Tensor) -> tuple[Tensor, Tensor]:
    """``log(p / (1 - p))`` and ``1 - p`` from ``log p`` (float64, safe where ``p`` rounds to 1)."""
    one_minus_p = torch.clamp(-torch.expm1(log_p), min=1e-300)
    return log_p - torch.log(one_minus_p), one_minus_p


def predicted_lead(value: Tensor, sorted_grad: Tensor, margin: Tensor, caution: float, log_space: bool) -> Tensor:
    """Per row, the length of the leading run of prefixes of ``sorted_grad`` (the gradients of the features in
    removal order; ``-inf`` past a row's features) whose first-order predicted change of the score (their sum)
    stays on the current side of the threshold by at least ``1 - caution`` of ``margin``. With ``log_space`` the
    scores ``value`` are log-probabilities and ``margin`` is in log-odds, so the sums are converted to log-odds
    (``d log-odds = d log p / (1 - p)``)."""
    cum = torch.cumsum(sorted_grad.double(), dim=1)
    if log_space:
        cum = cum / _log_odds(value.double())[1].unsqueeze(1)
    m = margin.unsqueeze(1)
    ok = torch.where(m >= 0, cum >= -caution * m, cum <= -caution * m)
    return torch.cumprod(ok.long(), dim=1).sum(dim=1)


_K_EXPECTED = "a positive integer, a fraction in (0, 1), 'auto', 'adaptive', an AutoK or an AdaptiveK"


def _k_error(caller: str, got: object) -> SISValueError:
    return SISValueError(f"The `k` parameter of {caller} must be {_K_EXPECTED}. Got {got!r} instead.")


def format_k(k: object, shortlist: object, caller: str) -> tuple[FixedK | FractionK | AdaptiveK | AutoK, int | None]:
    """Validate ``k`` and ``shortlist`` at a public door.

    An adaptive ``k`` comes back as its :class:`AdaptiveK` options: the method binds it to a threshold once the
    score space is known. ``"auto"`` comes back as :class:`AutoK` with ``shortlist`` (if given) as its own.
    """
    m = format_optional_positive_int(shortlist, "shortlist", caller)
    if isinstance(k, bool):
        raise _k_error(caller, k)
    if isinstance(k, int):
        if k < 1:
            raise _k_error(caller, k)
        if m is not None and k > m:
            raise SISValueError(
                f"The `k` parameter of {caller} must not exceed `shortlist` (the best k of the shortlisted "
                f"removals are taken). Got k={k} and shortlist={m} instead."
            )
        return FixedK(k), m
    if isinstance(k, float):
        if not 0.0 < k < 1.0:
            raise _k_error(caller, k)
        return FractionK(k), m
    if isinstance(k, str):
        if k == "auto":
            return format_auto(AutoK(), m), m
        if k != "adaptive":
            raise _k_error(caller, k)
        return AdaptiveK(), m
    if isinstance(k, AutoK):
        return format_auto(k, m), m
    if isinstance(k, AdaptiveK):
        a = k
        if a.threshold is not None and (isinstance(a.threshold, bool) or not isinstance(a.threshold, (int, float))):
            raise SISTypeError(f"AdaptiveK.threshold must be None or a number. Got {a.threshold!r} instead.")
        if not (isinstance(a.max_fraction, (int, float)) and 0.0 < a.max_fraction <= 1.0):
            raise SISValueError(f"AdaptiveK.max_fraction must be in (0, 1]. Got {a.max_fraction!r} instead.")
        if isinstance(a.min_k, bool) or not isinstance(a.min_k, int) or a.min_k < 1:
            raise SISValueError(f"AdaptiveK.min_k must be a positive integer. Got {a.min_k!r} instead.")
        if not (isinstance(a.caution, (int, float)) and 0.0 < a.caution <= 1.0):
            raise SISValueError(f"AdaptiveK.caution must be in (0, 1]. Got {a.caution!r} instead.")
        return a, m
    raise SISTypeError(f"The `k` parameter of {caller} must be {_K_EXPECTED}. Got {type(k).__name__} instead.")
