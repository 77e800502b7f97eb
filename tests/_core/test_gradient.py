"""Batched Gradient BackSelect core: ordering oracles, record format, block schedules, FindSIS refinement."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from itertools import pairwise

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sis_attr._core.feature_masks import default_feature_mask
from sis_attr._core.gradient import GradientBackSelect, rank_order, top_ranked
from sis_attr._core.problem import SISProblem, format_problem
from sis_attr._core.refine import GradientFindSIS
from sis_attr._core.schedule import AdaptiveK, FixedK
from sis_attr._core.sis import make_records
from sis_attr.functional import backselect, batched_gradient_sis, gradient_backselect
from sis_attr.testing import LinearScore
from tests import _oracle

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Many small forward/backward passes: one intra-op thread is faster, and far faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _net(seed: int, channels: int = 2, classes: int = 3, size: int = 4) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * size * size, classes),
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return net.eval()


def _x(seed: int, n: int = 2, channels: int = 2, size: int = 4) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ ranking
@given(
    rows=st.lists(st.lists(st.integers(-3, 3), min_size=12, max_size=12), min_size=1, max_size=4),
    need=st.integers(1, 12),
    drop=st.integers(0, 11),
    seed=st.one_of(st.none(), st.integers(0, 2**16)),
)
@FAST
def test_top_ranked_equals_full_stable_sort(rows: list[list[int]], need: int, drop: int, seed: int | None) -> None:
    values = torch.tensor(rows, dtype=torch.float32)
    valid = torch.ones_like(values, dtype=torch.bool)
    valid[:, :drop:2] = False  # some removed features
    keys = None
    if seed is not None:  # random tie priorities: one permutation per row
        gen = torch.Generator().manual_seed(seed)
        keys = torch.stack([torch.randperm(12, generator=gen) for _ in rows])
    full = rank_order(values, valid, keys)
    got = top_ranked(values, valid, need, keys)
    n_valid = valid.sum(dim=1)
    for r in range(values.shape[0]):
        upto = min(need, int(n_valid[r]))
        assert got[r, :upto].tolist() == full[r, :upto].tolist()
        # the oracle: sorted by value descending, then by tie key (the column without keys) ascending
        key = (lambda c: c) if keys is None else (lambda c, r=r: int(keys[r, c]))
        cols = [c for c in range(12) if valid[r, c]]
        expected = sorted(cols, key=lambda c: (-float(values[r, c]), key(c)))
        assert full[r, : len(cols)].tolist() == expected


def test_top_ranked_breaks_ties_by_lowest_id_or_by_the_tie_keys() -> None:
    values = torch.zeros(1, 200)
    valid = torch.ones(1, 200, dtype=torch.bool)
    assert top_ranked(values, valid, 5, None).tolist() == [[0, 1, 2, 3, 4]]
    keys = torch.randperm(200, generator=torch.Generator().manual_seed(1)).unsqueeze(0)
    assert top_ranked(values, valid, 5, keys).tolist() == [torch.argsort(keys[0])[:5].tolist()]


# ------------------------------------------------------------------------------------------------ oracles
@given(
    weights=st.lists(st.integers(-5, 5), min_size=1, max_size=7),
    data=st.data(),
)
@FAST
def test_k1_on_a_linear_score_orders_like_exact_backselect(weights: list[int], data: st.DataObject) -> None:
    """Linear score: the gradient is each single removal's exact effect, so the orders coincide."""
    d = len(weights)
    x = torch.tensor([data.draw(st.lists(st.integers(-4, 4), min_size=d, max_size=d))], dtype=torch.float64)
    base = torch.tensor([data.draw(st.lists(st.integers(-2, 2), min_size=d, max_size=d))], dtype=torch.float64)
    model = LinearScore(torch.tensor(weights, dtype=torch.float64))
    exact = backselect(model, x, base, score_func=LinearScore.score)[0]
    grad = gradient_backselect(model, x, base, k=1, score_func=LinearScore.score)[0]
    assert grad.order.tolist() == exact.order.tolist()
    torch.testing.assert_close(grad.values, exact.values, rtol=0, atol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_shortlist_with_k1_is_exact_backselect(seed: int) -> None:
    """Gradient-screened selection that shortlists every remaining feature is exact BackSelect."""
    net, x = _net(seed), _x(seed + 10)
    pixels = default_feature_mask(x)
    grad = gradient_backselect(net, x, feature_mask=pixels, k=1, shortlist=16, batch_size=5)
    for i in range(2):
        target = int(net(x[i : i + 1]).argmax())
        order, values = _oracle.backselect(
            _oracle.make_score(net, x[i], pixels[0, 0].expand(2, 4, 4), 0.0, target), set(range(16))
        )
        assert grad[i].order.tolist() == order
        torch.testing.assert_close(grad[i].values, torch.tensor(values, dtype=torch.float64), rtol=0, atol=1e-12)


def test_gradient_step_removes_the_features_with_the_largest_mask_gradient() -> None:
    net, x = _net(3), _x(4, n=1)
    rec = gradient_backselect(net, x, k=5)[0]
    m = torch.zeros(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    target = int(net(x).argmax())
    (g,) = torch.autograd.grad(torch.log_softmax(net(x * (1 - m)), 1)[0, target], m)
    g_pixels = g.sum(dim=1).flatten()  # one feature per pixel by default
    assert set(rec.order[:5].tolist()) == set(torch.argsort(g_pixels, descending=True, stable=True)[:5].tolist())


# ------------------------------------------------------------------------------------------------ record format
@pytest.mark.parametrize("k", [1, 3, 7, 16])
def test_record_has_full_order_and_values_measured_at_block_starts(k: int) -> None:
    net, x = _net(0), _x(1)
    exact_end = backselect(net, x, feature_mask=default_feature_mask(x))[0].values[-1]
    for rec in gradient_backselect(net, x, k=k):
        assert sorted(rec.order.tolist()) == list(range(16)) and rec.values.shape == (17,)
        measured = (~torch.isnan(rec.values)).nonzero().flatten().tolist()
        assert measured == sorted(set(range(0, 16, k)) | {16})
        assert bool(rec.measured[0]) and bool(rec.measured[-1])
    torch.testing.assert_close(gradient_backselect(net, x, k=k)[0].values[-1], exact_end)


def test_fraction_k_removes_a_fraction_of_the_remaining_features() -> None:
    x = torch.ones(1, 100, dtype=torch.float64)
    model = LinearScore(torch.arange(1, 101, dtype=torch.float64))
    rec = gradient_backselect(model, x, k=0.5, score_func=LinearScore.score)[0]
    starts = (~torch.isnan(rec.values)).nonzero().flatten().tolist()
    # remaining 100 -> 50 -> 25 -> 13 -> 7 -> 4 -> 2 -> 1 -> 0
    assert starts == [0, 50, 75, 87, 93, 96, 98, 99, 100]
    assert rec.order.tolist() == list(range(100))  # smallest weight first


def test_adaptive_k_takes_large_blocks_far_from_the_threshold_and_single_steps_near_it() -> None:
    x = torch.ones(1, 200, dtype=torch.float64)
    model = LinearScore(torch.ones(200, dtype=torch.float64))
    rec = gradient_backselect(model, x, k=AdaptiveK(threshold=20.0, max_fraction=0.25), score_func=LinearScore.score)[0]
    starts = (~torch.isnan(rec.values)).nonzero().flatten().tolist()
    gaps = [b - a for a, b in pairwise(starts)]
    assert gaps[0] == 50  # capped by max_fraction=0.25 of 200
    assert max(gaps) <= 50 and len(starts) < 60
    crossing = [b - a for a, b in pairwise(starts) if a <= 180 <= b]
    assert crossing and max(crossing) <= 2  # small blocks where the score reaches 20 (180 removed)
    with pytest.raises(ValueError, match=re.escape("AdaptiveK(threshold=...)")):
        gradient_backselect(model, x, k="adaptive", score_func=LinearScore.score)


def test_shortlist_records_the_exact_score_after_the_first_removal_of_each_block() -> None:
    net, x = _net(5), _x(6)
    for rec in gradient_backselect(net, x, k=4, shortlist=6):
        measured = (~torch.isnan(rec.values)).nonzero().flatten().tolist()
        assert measured == sorted({0, 1, 4, 5, 8, 9, 12, 13, 16})


# ------------------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("shortlist", [None, 5])
def test_results_do_not_depend_on_batch_size(shortlist: int | None) -> None:
    net, x = _net(7), _x(8, n=5)
    ref = gradient_backselect(net, x, k=3, shortlist=shortlist, batch_size=64)
    for bs in (1, 2, 7):
        got = gradient_backselect(net, x, k=3, shortlist=shortlist, batch_size=bs)
        for a, b in zip(ref, got, strict=True):
            assert a.order.tolist() == b.order.tolist()
            torch.testing.assert_close(a.values, b.values, rtol=0, atol=1e-12, equal_nan=True)


def test_generator_breaks_ties_reproducibly() -> None:
    model = LinearScore(torch.ones(30, dtype=torch.float64))
    x = torch.ones(1, 30, dtype=torch.float64)
    default = gradient_backselect(model, x, k=1, score_func=LinearScore.score)[0].order.tolist()
    assert default == list(range(30))
    a = gradient_backselect(model, x, k=1, score_func=LinearScore.score, generator=torch.Generator().manual_seed(0))
    b = gradient_backselect(model, x, k=1, score_func=LinearScore.score, generator=torch.Generator().manual_seed(0))
    assert a[0].order.tolist() == b[0].order.tolist() != default


# ------------------------------------------------------------------------------------------------ FindSIS
def _problem(net: torch.nn.Module, x: torch.Tensor, **kw: object) -> SISProblem:
    return format_problem(
        net, x, feature_mask=default_feature_mask(x), caller="test", batch_size=8, score_func=None, **kw
    )  # type: ignore[arg-type]


def _score_alone(problem: SISProblem, example: int, features: torch.Tensor) -> float:
    keep = problem.layout.features_keep(features)
    return float(problem.evaluate(torch.tensor([example]), keep)[0])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [3, 8])
def test_refinement_is_minimal_to_one_feature_and_never_larger(seed: int, k: int) -> None:
    net, x = _net(seed), _x(seed + 20, n=3)
    problem = _problem(net, x)
    schedule = FixedK(k)
    keep = problem.layout.initial_keep()
    examples = torch.arange(3)
    for t in (0.4, 0.7):
        t_space = math.log(t)
        orders, values = GradientBackSelect(schedule)(problem, examples, keep)
        plain_records = make_records(problem, [0, 1, 2], orders, [v.clone() for v in values])
        plain = GradientFindSIS(refine=False)(problem, [0, 1, 2], plain_records, keep, t)
        records = make_records(problem, [0, 1, 2], orders, [v.clone() for v in values])
        refined = GradientFindSIS(refine=True)(problem, [0, 1, 2], records, keep, t)
        for e in range(3):
            if plain[e] is None:
                assert refined[e] is None and float(problem.full_values[e]) < t_space + 1e-9
                continue
            p, r = plain[e], refined[e]
            assert r is not None and p is not None
            assert r.numel() <= p.numel() and set(r.tolist()) <= set(p.tolist())
            assert _score_alone(problem, e, r) >= t_space
            if r.numel() > 0:  # removing the next feature of the order drops below the threshold
                assert _score_alone(problem, e, r[:-1]) < t_space
            assert records[e].find_sis(t, warn=False).tolist() == r.tolist()  # refined scores stored


class _GradInflated(torch.nn.Module):
    """Class 0 scores far higher when autograd is on: the gradient passes' measurements are wrong on purpose."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if torch.is_grad_enabled():
            out = out + torch.tensor([50.0, 0.0, 0.0], dtype=out.dtype)
        return out


@pytest.mark.parametrize("refine", [True, False])
def test_every_returned_sis_passes_the_final_forward_pass(refine: bool) -> None:
    """Even when the gradient passes report every prefix above the threshold, no invalid SIS comes back."""
    net, x = _GradInflated(_net(2)), _x(3, n=6)
    result = batched_gradient_sis(net, x, target=0, threshold=0.6, k=4, refine=refine)
    problem = _problem(net, x, target=0)
    sizes = []
    for e in result:
        if e.sis is not None:
            assert _score_alone(problem, e.example, e.sis) >= math.log(0.6)
            sizes.append(e.size)
        else:
            assert float(problem.full_values[e.example]) < math.log(0.6)
    assert sizes and any(s > 0 for s in sizes)  # the check walked back to real SIS
