"""Rows per forward pass: measured when the user passes ``batch_size=None``, halved after out-of-memory errors.

:func:`probe_batch_size` times the model at a few batch sizes on the call's own inputs (no-grad forward passes
for exact evaluations, forward + backward for gradient steps) and keeps the size with the highest throughput
(rows per second). The result is cached per model, row shape, dtype, device and pass kind, so a model is probed
once per process. Calls too small to need more than one pass of the smallest candidate are not probed.

:func:`is_out_of_memory` recognises the allocator errors of CUDA and other accelerators; the problem's
forward pass splits a batch in halves on such an error and remembers the size that worked
(:class:`~sis_attr._core.problem.SISProblem`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

CANDIDATES = (16, 32, 64, 128, 256, 512, 1024)
"""Batch sizes tried by :func:`probe_batch_size` (those above the call's largest pass are skipped)."""

MIN_SECONDS = 0.05
"""Each candidate is timed in :data:`WINDOWS` windows of repeated passes, each at least this long (at most
:data:`MAX_REPEATS` passes)."""

WINDOWS = 3
"""Timing windows per candidate; the fastest counts (a busy machine only ever slows a window down)."""

MAX_REPEATS = 1000

SLOW_PASS_SECONDS = 0.25
"""A pass this long is timed once, and no larger size is tried: per-pass overhead no longer matters there."""

PROBE_BUDGET_SECONDS = 3.0
"""Probing stops trying larger sizes once it has spent this long."""

_CacheKey = tuple[Any, ...]
_UNLIMITED = 2**62
# per model: key -> (best size, the largest rows per pass it holds for)
_cache: weakref.WeakKeyDictionary[Any, dict[_CacheKey, tuple[int, int]]] = weakref.WeakKeyDictionary()
_cache_by_id: dict[int, dict[_CacheKey, tuple[int, int]]] = {}


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocator's out-of-memory error (``torch.OutOfMemoryError`` or its message)."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def release_cached_memory(device: torch.device) -> None:
    """Return the caching allocator's free blocks after an out-of-memory error (CUDA only)."""
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _entries(model: object) -> dict[_CacheKey, tuple[int, int]]:
    try:
        return _cache.setdefault(model, {})
    except TypeError:  # not weak-referenceable (e.g. a bound method of a slotted object): cache by id
        return _cache_by_id.setdefault(id(model), {})


def cached_batch_size(model: object, key: _CacheKey, max_rows: int | None = None) -> int | None:
    """The measured size for ``model`` and ``key``, if probed before in this process and still valid for a call
    of at most ``max_rows`` rows per pass (a probe capped below that, whose best was its cap, is not)."""
    entry = _entries(model).get(key)
    if entry is None:
        return None
    size, holds_up_to = entry
    if max_rows is not None and max_rows > holds_up_to:
        return None  # the best was the largest size a smaller call allowed: a larger call may do better
    return size


def remember_batch_size(model: object, key: _CacheKey, size: int, holds_up_to: int) -> None:
    _entries(model)[key] = (size, holds_up_to)


def clear_cache() -> None:
    """Forget every measured batch size (the next ``batch_size=None`` call probes again)."""
    _cache.clear()
    _cache_by_id.clear()


def _throughput(run: Callable[[int], None], size: int, device: torch.device) -> tuple[float, float]:
    """Rows per second of ``run(size)`` and the seconds of its first pass.

    A first pass longer than :data:`SLOW_PASS_SECONDS` is the measurement (one-time costs are small beside it);
    otherwise it is a warm-up, and the fastest of :data:`WINDOWS` windows of repeats, each timed until
    :data:`MIN_SECONDS`, counts: other work on a shared machine only slows a window down, so the fastest window
    is the least disturbed.
    """
    start = time.perf_counter()
    run(size)
    _sync(device)
    first = time.perf_counter() - start
    if first >= SLOW_PASS_SECONDS:
        return size / first, first
    best = 0.0
    for _ in range(WINDOWS):
        start = time.perf_counter()
        repeats = 0
        while True:
            run(size)
            repeats += 1
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= MIN_SECONDS or repeats >= MAX_REPEATS:
                break
        best = max(best, size * repeats / max(elapsed, 1e-9))
    return best, first


def _sync(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def probe_batch_size(
    model: object,
    key: _CacheKey,
    run: Callable[[int], None],
    *,
    max_rows: int,
    device: torch.device,
    fallback: int,
) -> int:
    """The batch size with the highest measured throughput of ``run`` (cached per ``model`` and ``key``).

    ``run(n)`` performs one pass of ``n`` rows. Candidates above ``max_rows`` (the most rows one pass of the
    call can hold) are skipped; a call of at most ``CANDIDATES[0]`` rows per pass is not probed and gets
    ``max_rows``. Probing stops at the first out-of-memory error, once throughput has fallen below 85% of the
    best for two larger sizes in a row, after a pass of :data:`SLOW_PASS_SECONDS` or more (a large model: larger
    batches gain nothing measurable) and after :data:`PROBE_BUDGET_SECONDS`. ``fallback`` is returned if no
    candidate could be measured.
    """
    cached = cached_batch_size(model, key, max_rows)
    if cached is not None:
        return max(1, min(cached, max_rows))
    if max_rows <= CANDIDATES[0]:
        return max(1, max_rows)
    best_size, best_rate, worse, largest = 0, 0.0, 0, 0
    # the largest rows per pass the result holds for: unlimited when probing stopped for the model's sake
    holds = _UNLIMITED
    began = time.perf_counter()
    for size in CANDIDATES:
        if size > max_rows:  # every size this call can use has been tried
            holds = max_rows
            break
        try:
            rate, first = _throughput(run, size, device)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            release_cached_memory(device)
            break  # larger passes do not fit
        largest = size
        if rate > best_rate:
            best_size, best_rate, worse = size, rate, 0
        elif rate < 0.85 * best_rate:
            worse += 1
            if worse >= 2:
                break  # past the peak
        if first >= SLOW_PASS_SECONDS or time.perf_counter() - began >= PROBE_BUDGET_SECONDS:
            break  # a large model: larger passes gain nothing measurable
    if not best_size:
        return max(1, min(fallback, max_rows))
    if best_size < largest:
        holds = _UNLIMITED  # a peak below the largest size tried: it holds for larger calls too
    remember_batch_size(model, key, best_size, holds)
    return best_size


def split_rows(n: int, limit: int) -> list[slice]:
    """Consecutive slices of at most ``limit`` rows covering ``0..n``."""
    return [slice(i, min(i + limit, n)) for i in range(0, n, max(1, limit))]


def cat_outputs(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)
