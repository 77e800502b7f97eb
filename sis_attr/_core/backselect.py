"""Exact BackSelect, batched across candidates *and* examples.

At each step of each example every remaining feature is removed in turn and the model is evaluated; the
removal that leaves the highest score is kept (ties: the lowest feature id). Candidates of all examples are
packed into forward passes of exactly ``batch_size`` rows: when one example has few candidates left in its
current step, other examples' candidates fill the batch, so the model runs at its efficient batch size
until the very end. The result does not depend on ``batch_size`` (candidate lists are scanned in ascending
feature order and a tie never replaces an earlier best).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sis_attr._core.problem import SISProblem
from sis_attr._progress import progress_bar


def exact_backselect(
    problem: SISProblem,
    examples: Tensor,
    keep_start: Tensor,
    *,
    show_progress: bool = False,
    desc: str = "BackSelect",
) -> tuple[list[Tensor], list[Tensor]]:
    """Run exact BackSelect for ``examples`` starting from ``keep_start`` (``(n, D)`` bool).

    Returns per example the removal order (``(r,)`` int64, CPU) and the scores after ``0..r`` removals
    (``(r + 1,)`` float64, CPU, comparison space).
    """
    device = problem.device
    n_ex = int(examples.shape[0])
    d = problem.max_features
    bs = problem.batch_size
    keep = keep_start.to(device)
    examples = examples.to(device)

    layout = problem.layout
    # the current masked input of each example, updated as features are removed; a candidate row is a copy
    # with one more feature's positions set to the baseline (cheaper than composing rows from keep-masks)
    current = torch.where(layout.positions_keep(examples, keep), layout.flat_x[examples], layout.flat_b[examples])
    table = layout.feature_positions()
    shared = table.shape[0] == 1
    n_pos = layout.flat_b.shape[1]

    def positions(ex_local: Tensor, feats: Tensor) -> Tensor:
        return table[0][feats] if shared else table[examples[ex_local], feats]

    def baseline_at(ex_local: Tensor, pos: Tensor) -> Tensor:
        return torch.take(layout.flat_b, examples[ex_local].unsqueeze(1) * n_pos + pos)

    remaining = [int(c) for c in keep.sum(dim=1).tolist()]
    cand: list[Tensor] = [torch.nonzero(keep[i]).flatten() for i in range(n_ex)]
    pos = [0] * n_ex
    step = [0] * n_ex
    orders = torch.full((n_ex, max(d, 1)), -1, dtype=torch.long, device=device)
    values = torch.full((n_ex, d + 1), float("nan"), dtype=torch.float64, device=device)
    best_val = torch.full((n_ex,), float("-inf"), dtype=torch.float64, device=device)
    big = torch.iinfo(torch.long).max
    best_feat = torch.full((n_ex,), big, dtype=torch.long, device=device)

    # scores of the starting inputs
    local_all = torch.arange(n_ex, device=device)
    for i in range(0, n_ex, bs):
        sl = local_all[i : i + bs]
        values[sl, 0] = problem.evaluate_flat(examples[sl], current[sl])

    total = sum(r * (r + 1) // 2 for r in remaining)
    active = [i for i in range(n_ex) if remaining[i] > 0]
    with progress_bar(total, desc, show_progress, unit="eval") as bar:
        while active:
            # ---- pack one batch from the current step of active examples, in order
            segs: list[tuple[int, int, int]] = []
            filled = 0
            for i in active:
                take = min(bs - filled, remaining[i] - pos[i])
                if take <= 0:
                    continue
                segs.append((i, pos[i], pos[i] + take))
                filled += take
                if filled == bs:
                    break
            seg_local = torch.tensor([s[0] for s in segs], device=device)
            seg_np = np.repeat(np.arange(len(segs)), [b - a for _, a, b in segs])
            seg_id = torch.from_numpy(seg_np).to(device)
            feats = torch.cat([cand[i][a:b] for i, a, b in segs])
            row_local = seg_local[seg_id]
            rows = current[row_local]
            idx = positions(row_local, feats)
            rows.scatter_(1, idx, baseline_at(row_local, idx))
            vals = problem.evaluate_flat(examples[row_local], rows)

            # ---- per segment: max score, lowest feature id among ties; merge with the running best
            seg_max = torch.full((len(segs),), float("-inf"), dtype=vals.dtype, device=device)
            seg_max = seg_max.scatter_reduce(0, seg_id, vals, reduce="amax")
            cand_feat = torch.where(vals == seg_max[seg_id], feats, torch.full_like(feats, big))
            seg_feat = torch.full((len(segs),), big, dtype=torch.long, device=device)
            seg_feat = seg_feat.scatter_reduce(0, seg_id, cand_feat, reduce="amin")
            better = seg_max > best_val[seg_local]
            best_val[seg_local] = torch.where(better, seg_max, best_val[seg_local])
            best_feat[seg_local] = torch.where(better, seg_feat, best_feat[seg_local])
            bar.update(filled)

            # ---- finish the steps whose candidates are all evaluated
            finished = []
            for i, _a, b in segs:
                pos[i] = b
                if b == remaining[i]:
                    finished.append(i)
            if finished:
                fin = torch.tensor(finished, device=device)
                steps = torch.tensor([step[i] for i in finished], device=device)
                chosen = best_feat[fin]
                idx = positions(fin, chosen)
                current[fin] = current[fin].scatter(1, idx, baseline_at(fin, idx))
                orders[fin, steps] = chosen
                values[fin, steps + 1] = best_val[fin]
                best_val[fin] = float("-inf")
                best_feat[fin] = big
                for j, i in enumerate(finished):
                    cand[i] = cand[i][cand[i] != chosen[j]]
                    remaining[i] -= 1
                    step[i] += 1
                    pos[i] = 0
                active = [i for i in active if remaining[i] > 0]

    orders_cpu = orders.cpu()
    values_cpu = values.cpu()
    out_orders = [orders_cpu[i, : step[i]].clone() for i in range(n_ex)]
    out_values = [values_cpu[i, : step[i] + 1].clone() for i in range(n_ex)]
    return out_orders, out_values
