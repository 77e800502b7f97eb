"""Exact BackSelect, batched across candidates *and* examples (the engine of SufficientInputSubsets).

At each step of each example every remaining feature is removed in turn and the model is evaluated; the
removal that leaves the highest score is kept (ties: the lowest feature id, or with a tie seed the first in a
seeded random order of the example's features, :mod:`~sis_attr._core.ties`). Candidates of all examples are
packed into forward passes of exactly ``batch_size`` rows: when one example has few candidates left in its
current step, other examples' candidates fill the batch, so the model runs at its efficient batch size
until the last few steps. The examples with the most steps left are packed first, which keeps all examples
in step (otherwise the last examples finish alone, in small batches). The result does not depend on
``batch_size`` or on the packing (candidate lists are scanned in tie-breaking order, ascending feature ids by
default, and a tie never replaces an earlier best).

The bookkeeping (candidate lists, running maxima, orders and scores) lives on the host in numpy; per batch
the device receives one index tensor and returns one score vector, so the scheduler adds little beyond the
model's own time (``benchmarks/bench_exact_sis.py`` measures it against plain forward passes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from sis_attr._core.problem import SISProblem
from sis_attr._core.ties import tie_keys
from sis_attr._progress import progress_bar

_BIG = np.iinfo(np.int64).max


def _to_device(parts: list[np.ndarray], device: torch.device) -> list[Tensor]:
    """Move int64 host arrays to ``device`` in one transfer; return them as (views of) separate tensors."""
    if device.type == "cpu":  # no transfer: share the arrays' memory
        return [torch.from_numpy(p) for p in parts]
    moved = torch.from_numpy(np.concatenate(parts)).to(device)
    return list(torch.split(moved, [int(p.size) for p in parts]))


def _pack(
    active: list[int], remaining: list[int], pos: list[int], cand: list[np.ndarray], bs: int
) -> tuple[list[int], list[int], np.ndarray]:
    """Fill one batch of ``bs`` rows from the current steps of ``active`` examples, in the order given.

    Returns the examples of the batch's segments, the segments' lengths and the candidate features of every
    row (each segment continues its example's step at ``pos``).
    """
    seg_ex: list[int] = []
    seg_len: list[int] = []
    parts: list[np.ndarray] = []
    filled = 0
    for i in active:
        take = min(bs - filled, remaining[i] - pos[i])
        if take <= 0:
            continue
        seg_ex.append(i)
        seg_len.append(take)
        parts.append(cand[i][pos[i] : pos[i] + take])
        filled += take
        if filled == bs:
            break
    return seg_ex, seg_len, parts[0] if len(parts) == 1 else np.concatenate(parts)


def segment_best(vals: np.ndarray, feats: np.ndarray, seg_len: list[int]) -> list[tuple[float, int]]:
    """Per segment of consecutive rows: the largest score and, among ties, the first row's feature.

    Candidates are in tie-breaking order within a segment (ascending feature ids by default), so the first
    maximum wins a tie. Few segments are scanned one by one; many (small steps of many examples) with one
    vectorised reduction.
    """
    if len(seg_len) <= 8:
        out: list[tuple[float, int]] = []
        a = 0
        for n in seg_len:
            j = a + int(vals[a : a + n].argmax())
            out.append((float(vals[j]), int(feats[j])))
            a += n
        return out
    starts = np.zeros(len(seg_len), dtype=np.int64)
    np.cumsum(seg_len[:-1], out=starts[1:])
    seg_max = np.maximum.reduceat(vals, starts)
    at_max = vals == np.repeat(seg_max, seg_len)
    first = np.minimum.reduceat(np.where(at_max, np.arange(vals.size, dtype=np.int64), _BIG), starts)
    return list(zip(seg_max.tolist(), feats[first].tolist(), strict=True))


def exact_backselect(
    problem: SISProblem,
    examples: Tensor,
    keep_start: Tensor,
    *,
    show_progress: bool = False,
    desc: str = "BackSelect",
    tie_seed: int | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Run exact BackSelect for ``examples`` starting from ``keep_start`` (``(n, D)`` bool); ties go to the lowest
    feature id, or with ``tie_seed`` to the first in each example's seeded random order
    (:func:`~sis_attr._core.ties.tie_keys`).

    Returns per example the removal order (``(r,)`` int64, CPU) and the scores after ``0..r`` removals
    (``(r + 1,)`` float64, CPU, comparison space).
    """
    device = problem.device
    n_ex = int(examples.shape[0])
    d = problem.max_features
    keep = keep_start.to(device)
    examples = examples.to(device)
    # no batch holds more rows than the first step has candidates: memory follows the work, not batch_size
    bs = max(1, min(problem.batch_size, int(keep.sum())))

    layout = problem.layout
    # the current masked input of each example, updated as features are removed; a candidate row is a copy
    # with one more feature's positions set to the baseline (cheaper than composing rows from keep-masks)
    base = layout.flat_b.index_select(0, examples)
    current = torch.where(layout.positions_keep(examples, keep), layout.flat_x.index_select(0, examples), base)
    n_pos = int(base.shape[1])
    flat_base = base.reshape(-1)
    # one baseline value everywhere (the default 0 and any scalar) is written without gathering it
    fill: float | None = None
    if flat_base.numel() and bool((flat_base == flat_base[0]).all()):
        fill = float(flat_base[0])

    # All bookkeeping lives on the host in numpy; the device only builds rows, runs the model and applies
    # the chosen removals. Per batch that is one index transfer in and one score transfer out.
    table = layout.feature_positions().cpu().numpy()  # (1 or B, D, g) positions of each feature
    examples_np = examples.cpu().numpy()
    table_of = table[0] if table.shape[0] == 1 else None
    row_offsets = np.arange(max(bs, n_ex), dtype=np.int64) * n_pos

    def flat_positions(ex_local: np.ndarray, feats: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Flat indices into a ``(rows, P)`` tensor: feature ``feats[j]`` of ``ex_local[j]`` in row ``slots[j]``."""
        pos_ = table_of[feats] if table_of is not None else table[examples_np[ex_local], feats]
        return (pos_ + row_offsets[slots, None]).reshape(-1)

    def remove(target: Tensor, flat_idx: Tensor, base_idx: Tensor | None) -> None:
        """Set the flat positions ``flat_idx`` of ``target`` to the baseline values (at ``base_idx``, unless
        one value fills every position)."""
        if fill is not None:
            target.view(-1).index_fill_(0, flat_idx, fill)
        elif base_idx is not None:
            target.view(-1).index_copy_(0, flat_idx, flat_base.take(base_idx))

    keep_np = keep.cpu().numpy()
    # each example's candidates in tie-breaking order: ascending ids, or ascending random tie priorities
    cand: list[np.ndarray] = [np.flatnonzero(keep_np[i]).astype(np.int64) for i in range(n_ex)]
    keys = tie_keys(problem, examples, tie_seed)
    if keys is not None:
        keys_np = keys.cpu().numpy()
        cand = [c[np.argsort(keys_np[i, c], kind="stable")] for i, c in enumerate(cand)]
    remaining = [int(c.size) for c in cand]
    pos = [0] * n_ex
    step = [0] * n_ex
    orders = np.full((n_ex, max(d, 1)), -1, dtype=np.int64)
    values = np.full((n_ex, d + 1), np.nan, dtype=np.float64)
    # running best of each example's current step (feature -1: none yet), as Python scalars
    best_val = [-math.inf] * n_ex
    best_feat = [-1] * n_ex
    targets_np = problem.target.index_select(0, examples).cpu().numpy()

    # scores of the starting inputs (known already when they are the full inputs and the problem holds them)
    full = problem.full_values
    if full is not None and bool((keep == layout.initial_keep().index_select(0, examples)).all()):
        values[:, 0] = full.index_select(0, examples).double().cpu().numpy()
    else:
        for i in range(0, n_ex, bs):
            values[i : i + bs, 0] = problem.evaluate_flat_host(examples[i : i + bs], current[i : i + bs])

    total = sum(r * (r + 1) // 2 for r in remaining)
    active = [i for i in range(n_ex) if remaining[i] > 0]
    # flat positions of the removals chosen since the last batch, applied to `current` with the next transfer
    pending: np.ndarray | None = None
    with progress_bar(total, desc, show_progress, unit="eval") as bar:
        while active:
            # ---- pack one batch. The examples with the most steps left go first: they are the critical
            # path, and keeping all examples in step keeps the batches full until the last few steps.
            active.sort(key=lambda i: -remaining[i])
            seg_ex, seg_len, feats = _pack(active, remaining, pos, cand, bs)
            filled = int(feats.size)
            row_local = np.repeat(np.asarray(seg_ex, dtype=np.int64), seg_len)
            # one transfer: rows' local example ids, example ids, targets, positions to remove in the rows,
            # (baseline positions,) and the pending removals of `current`
            host = [row_local, examples_np[row_local], targets_np[row_local]]
            host.append(flat_positions(row_local, feats, np.arange(filled)))
            if fill is None:
                host.append(flat_positions(row_local, feats, row_local))
            if pending is not None:
                host.append(pending)
            moved = _to_device(host, device)
            rows_local, rows_ex, rows_target, removed_pos = moved[:4]
            base_pos = moved[4] if fill is None else None
            if pending is not None:
                remove(current, moved[-1], moved[-1])
                pending = None
            rows = current.index_select(0, rows_local)
            remove(rows, removed_pos, base_pos)
            vals = problem.evaluate_flat_host(rows_ex, rows, rows_target)
            bar.update(filled)

            # ---- per segment: max score, lowest feature id among ties, merged with the running best, where a
            # tie never replaces the earlier, lower feature id. Steps whose candidates are all evaluated finish.
            seg_best = segment_best(vals, feats, seg_len)
            finished: list[int] = []
            for i, n, (v, f) in zip(seg_ex, seg_len, seg_best, strict=True):
                if v > best_val[i] or best_feat[i] < 0:
                    best_val[i] = v
                    best_feat[i] = f
                pos[i] += n
                if pos[i] == remaining[i]:
                    finished.append(i)
            if finished:
                fin = np.asarray(finished, dtype=np.int64)
                chosen = np.asarray([best_feat[i] for i in finished], dtype=np.int64)
                pending = flat_positions(fin, chosen, fin)
                for i in finished:
                    f = best_feat[i]
                    orders[i, step[i]] = f
                    values[i, step[i] + 1] = best_val[i]
                    c = cand[i]
                    k = int(np.searchsorted(c, f)) if keys is None else int(np.flatnonzero(c == f)[0])
                    cand[i] = np.concatenate((c[:k], c[k + 1 :]))
                    remaining[i] -= 1
                    step[i] += 1
                    pos[i] = 0
                    best_val[i] = -math.inf
                    best_feat[i] = -1
                active = [i for i in active if remaining[i] > 0]

    out_orders = [torch.from_numpy(orders[i, : step[i]].copy()) for i in range(n_ex)]
    out_values = [torch.from_numpy(values[i, : step[i] + 1].copy()) for i in range(n_ex)]
    return out_orders, out_values
