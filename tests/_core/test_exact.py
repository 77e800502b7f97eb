"""Exact BackSelect against the independent oracle, and its invariance to batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sis_attr import backselect, sufficient_input_subsets
from sis_attr._core.exact import exact_backselect, segment_best
from sis_attr._core.problem import format_problem
from tests import _oracle


def _net(seed: int, channels: int = 2, classes: int = 3) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(classes),
    ).double()
    net(torch.zeros(1, channels, 4, 4, dtype=torch.float64))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return net.eval()


GROUPINGS = {
    "elements": None,
    "pixels": torch.arange(16).reshape(1, 1, 4, 4).expand(1, 2, 4, 4),
    "rows": torch.arange(4).reshape(1, 1, 4, 1).expand(1, 2, 4, 4),
    "quadrants": torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]).expand(1, 2, 4, 4),
}


@pytest.mark.parametrize("grouping", list(GROUPINGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_oracle_on_random_conv_nets(grouping: str, seed: int) -> None:
    net = _net(seed)
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    fm = GROUPINGS[grouping]
    records = backselect(net, x, feature_mask=fm, batch_size=7)
    groups = torch.arange(32).reshape(2, 4, 4) if fm is None else fm[0]
    n = int(groups.max()) + 1
    for i in range(2):
        target = int(net(x[i : i + 1]).argmax())
        score = _oracle.make_score(net, x[i], groups, 0.0, target)
        order, values = _oracle.backselect(score, set(range(n)))
        assert records[i].order.tolist() == order
        torch.testing.assert_close(records[i].values, torch.tensor(values, dtype=torch.float64), rtol=0, atol=1e-12)
        for t in (0.3, 0.6, 0.9):
            expected = _oracle.find_sis(order, values, float(torch.log(torch.tensor(t, dtype=torch.float64))))
            got = records[i].find_sis(t, warn=False)
            assert (got is None and expected is None) or got.tolist() == expected


def test_matches_oracle_with_per_example_baselines_and_feature_masks() -> None:
    # a baseline that differs per example and per position, and a different grouping for each example
    # (one with fewer groups): the paths that gather baseline values and look up per-example positions
    net = _net(4)
    gen = torch.Generator().manual_seed(21)
    x = torch.randn(2, 2, 4, 4, generator=gen, dtype=torch.float64)
    base = torch.randn(2, 2, 4, 4, generator=gen, dtype=torch.float64)
    fm = torch.stack([GROUPINGS["pixels"][0], GROUPINGS["quadrants"][0]])
    records = backselect(net, x, baselines=base, feature_mask=fm, batch_size=5)
    for i, n in enumerate((16, 4)):
        target = int(net(x[i : i + 1]).argmax())
        score = _oracle.make_score(net, x[i], fm[i], base[i], target)
        order, values = _oracle.backselect(score, set(range(n)))
        assert records[i].order.tolist() == order
        torch.testing.assert_close(records[i].values, torch.tensor(values, dtype=torch.float64), rtol=0, atol=1e-12)


def test_collection_matches_oracle() -> None:
    net = _net(1)
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fm = GROUPINGS["pixels"]
    with torch.no_grad():
        target = int(net(x).argmax())
        p_full = float(torch.softmax(net(x), 1)[0, target])
        p_empty = float(torch.softmax(net(torch.zeros_like(x)), 1)[0, target])
    assert p_empty < p_full  # the fixture must leave room for a non-trivial SIS
    threshold = p_empty + 0.3 * (p_full - p_empty)
    result = sufficient_input_subsets(net, x, feature_mask=fm, threshold=threshold, collection=True)
    score = _oracle.make_score(net, x[0], fm[0], 0.0, target)
    expected = _oracle.sis_collection(
        score, set(range(16)), float(torch.log(torch.tensor(threshold, dtype=torch.float64)))
    )
    assert [s.tolist() for s in result[0].collection] == expected
    assert len(expected) >= 2  # a real collection, not a single SIS


@pytest.mark.parametrize("batch_size", [1, 3, 16, 100, 10_000])
def test_result_is_independent_of_batch_size(batch_size: int) -> None:
    net = _net(7)
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fm = GROUPINGS["pixels"]
    reference = backselect(net, x, feature_mask=fm, batch_size=5)
    got = backselect(net, x, feature_mask=fm, batch_size=batch_size)
    for r, g in zip(reference, got, strict=True):
        assert torch.equal(r.order, g.order)
        torch.testing.assert_close(r.values, g.values, rtol=0, atol=1e-12)


def test_chunking_the_batch_of_examples_does_not_matter() -> None:
    net = _net(8)
    x = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    fm = GROUPINGS["quadrants"]
    together = backselect(net, x, feature_mask=fm, batch_size=6)
    apart = [backselect(net, x[i : i + 1], feature_mask=fm, batch_size=6)[0] for i in range(4)]
    for a, b in zip(together, apart, strict=True):
        assert torch.equal(a.order, b.order)
        torch.testing.assert_close(a.values, b.values, rtol=0, atol=1e-12)


def test_partially_masked_start_only_removes_present_features() -> None:
    net = _net(9)
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fm = GROUPINGS["pixels"]
    problem = format_problem(net, x, feature_mask=fm, caller="test", batch_size=9, score_func=None)
    keep = problem.layout.initial_keep()
    keep[0, [1, 5, 6]] = False
    keep[1, 8:] = False
    orders, values = exact_backselect(problem, torch.arange(2), keep)
    assert sorted(orders[0].tolist()) == sorted(set(range(16)) - {1, 5, 6})
    assert sorted(orders[1].tolist()) == list(range(8))
    for i, present in enumerate([set(range(16)) - {1, 5, 6}, set(range(8))]):
        score = _oracle.make_score(net, x[i], fm[0], 0.0, int(problem.target[i]))
        order, vals = _oracle.backselect(score, present)
        assert orders[i].tolist() == order
        torch.testing.assert_close(values[i], torch.tensor(vals, dtype=torch.float64), rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    threshold=st.floats(0.05, 0.95),
    batch_size=st.integers(1, 40),
    grouping=st.sampled_from(["pixels", "rows", "quadrants"]),
)
def test_every_sis_is_sufficient_and_the_collection_is_disjoint(
    seed: int, threshold: float, batch_size: int, grouping: str
) -> None:
    net = _net(seed % 5)
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    fm = GROUPINGS[grouping]
    result = sufficient_input_subsets(
        net, x, feature_mask=fm, threshold=threshold, collection=True, batch_size=batch_size
    )
    reference = sufficient_input_subsets(net, x, feature_mask=fm, threshold=threshold, collection=True, batch_size=64)
    for e, ref in zip(result, reference, strict=True):
        assert [s.tolist() for s in e.collection] == [s.tolist() for s in ref.collection]
        seen: set[int] = set()
        for sis in e.collection:
            assert seen.isdisjoint(sis.tolist())
            seen |= set(sis.tolist())
            masked = e.masked_input(sis)
            assert isinstance(masked, torch.Tensor)
            with torch.no_grad():
                p = torch.softmax(net(masked.unsqueeze(0)), dim=1)[0, e.target]
            assert float(p) >= threshold
        if e.confidence < threshold:
            assert e.sis is None and e.collection == ()


def test_per_example_feature_masks_with_different_group_counts() -> None:
    net = _net(4)
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    masks = torch.stack([GROUPINGS["quadrants"][0], GROUPINGS["rows"][0]]).clone()
    masks[1] = masks[1] % 3  # example 1: three groups of rows
    together = backselect(net, x, feature_mask=masks, batch_size=5)
    assert [r.n_features for r in together] == [4, 3]
    for i in range(2):
        alone = backselect(net, x[i : i + 1], feature_mask=masks[i : i + 1], batch_size=5)[0]
        assert torch.equal(together[i].order, alone.order)
        torch.testing.assert_close(together[i].values, alone.values, rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch_size", [64, 200])
def test_many_segments_per_batch_match_the_oracle(batch_size: int) -> None:
    """12 examples of 4 features (rows): every batch packs more than 8 steps, the vectorised branch of
    ``segment_best``; orders, values and SIS equal the oracle's."""
    net = _net(5)
    n_ex = 12
    x = torch.randn(n_ex, 2, 4, 4, generator=torch.Generator().manual_seed(42), dtype=torch.float64)
    fm = GROUPINGS["rows"]
    records = backselect(net, x, feature_mask=fm, batch_size=batch_size)
    assert len(records) == n_ex
    for i in range(n_ex):
        target = int(net(x[i : i + 1]).argmax())
        score = _oracle.make_score(net, x[i], fm[0], 0.0, target)
        order, values = _oracle.backselect(score, set(range(4)))
        assert records[i].order.tolist() == order
        torch.testing.assert_close(records[i].values, torch.tensor(values, dtype=torch.float64), rtol=0, atol=1e-12)


def test_many_segments_per_batch_take_the_vectorised_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle test above does reach batches of more than 8 segments."""
    import sis_attr._core.exact as exact

    seen: list[int] = []
    original = exact.segment_best

    def counting(vals, feats, seg_len):  # type: ignore[no-untyped-def]
        seen.append(len(seg_len))
        return original(vals, feats, seg_len)

    monkeypatch.setattr(exact, "segment_best", counting)
    x = torch.randn(12, 2, 4, 4, generator=torch.Generator().manual_seed(42), dtype=torch.float64)
    backselect(_net(5), x, feature_mask=GROUPINGS["rows"], batch_size=64)
    assert max(seen) > 8


@given(
    st.lists(st.lists(st.integers(-3, 3), min_size=1, max_size=5), min_size=1, max_size=20),
)
@settings(max_examples=50, deadline=None)
def test_segment_best_branches_agree(segments: list[list[int]]) -> None:
    """Both branches of segment_best: the largest score, and among ties the lowest (first) feature id."""
    vals = np.asarray([v for seg in segments for v in seg], dtype=np.float64)
    feats = np.concatenate([np.arange(len(seg), dtype=np.int64) * 2 + 1 for seg in segments])
    seg_len = [len(seg) for seg in segments]
    expected = [(float(max(seg)), int(seg.index(max(seg))) * 2 + 1) for seg in segments]
    assert segment_best(vals, feats, seg_len) == expected
    # the vectorised branch alone, on the same data padded to more than 8 segments
    pad = 9 - len(segments) if len(segments) <= 8 else 0
    vals_p = np.concatenate([vals, np.zeros(pad)])
    feats_p = np.concatenate([feats, np.ones(pad, dtype=np.int64)])
    assert segment_best(vals_p, feats_p, seg_len + [1] * pad)[: len(segments)] == expected
