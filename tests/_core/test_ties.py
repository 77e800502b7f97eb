"""Tie-breaking: the lowest feature id by default, a seeded random order per example with a tie seed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from sis_attr._core.feature_masks import default_feature_mask
from sis_attr._core.methods import format_method
from sis_attr._core.problem import SISProblem, format_problem
from sis_attr._core.ties import draw_tie_seed, tie_keys
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.testing import LinearScore


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _problem(model: torch.nn.Module, x: torch.Tensor, batch_size: int, score_func: object = None) -> SISProblem:
    return format_problem(
        model, x, feature_mask=default_feature_mask(x), caller="test", batch_size=batch_size, score_func=score_func
    )  # type: ignore[arg-type]


def _select(method: str, x: torch.Tensor, model: torch.nn.Module, *, batch_size: int, seed: int | None, **kw: object):
    impl = format_method(method, batch_size=batch_size, caller="test", generator=seed, **kw)  # type: ignore[arg-type]
    problem = _problem(model, x, batch_size, score_func=LinearScore.score)
    idx = torch.arange(x.shape[0])
    return impl.engine(problem, None)(problem, idx, problem.layout.initial_keep())


def _equal_weights_model(d: int) -> LinearScore:
    return LinearScore(torch.ones(d, dtype=torch.float64))


@pytest.mark.parametrize("method", ["exact", "gradient"])
def test_equal_scores_follow_the_seeded_permutation(method: str) -> None:
    """Every removal ties: the order is the tie keys' permutation (lowest id without a seed)."""
    x = torch.ones(3, 20, dtype=torch.float64) + torch.arange(3, dtype=torch.float64)[:, None]
    model = _equal_weights_model(20)
    kw = {"k": 1} if method == "gradient" else {}
    orders, _ = _select(method, x, model, batch_size=8, seed=None, **kw)
    assert all(o.tolist() == list(range(20)) for o in orders)
    orders, _ = _select(method, x, model, batch_size=8, seed=5, **kw)
    keys = tie_keys(_problem(model, x, 8, score_func=LinearScore.score), torch.arange(3), 5)
    assert keys is not None
    for i, o in enumerate(orders):
        assert o.tolist() == torch.argsort(keys[i]).tolist()
    assert len({tuple(o.tolist()) for o in orders}) == 3  # different images, different orders


def test_tie_keys_depend_on_seed_and_content_only() -> None:
    x = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(18, 3))
    p = _problem(model, x, 4)
    k = tie_keys(p, torch.arange(4), 11)
    assert k is not None and k.shape == (4, 9)
    assert all(sorted(row.tolist()) == list(range(9)) for row in k)
    # the same image elsewhere in another batch gets the same keys; another seed other keys
    p2 = _problem(model, torch.cat([x[2:3], x[0:1]]), 4)
    k2 = tie_keys(p2, torch.arange(2), 11)
    assert k2 is not None and torch.equal(k2[0], k[2]) and torch.equal(k2[1], k[0])
    k3 = tie_keys(p, torch.arange(4), 12)
    assert k3 is not None and not torch.equal(k3, k)
    assert tie_keys(p, torch.arange(4), None) is None


@pytest.mark.parametrize(("method", "kw"), [("exact", {}), ("gradient", {"k": 2}), ("gradient", {"k": "auto"})])
def test_seeded_ties_do_not_depend_on_batch_size_or_companions(method: str, kw: dict[str, object]) -> None:
    """Integer inputs and weights with many equal gradients and scores: the seeded order is the same whatever
    the batch size and whichever images share the call."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(-1, 2, (4, 1, 6, 6), generator=gen).double()
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3)).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.randint(-1, 2, (3, 36), generator=gen).double())
        net[1].bias.zero_()

    def run(images: torch.Tensor, bs: int) -> list[list[int]]:
        impl = format_method(method, batch_size=bs, caller="test", generator=9, **kw)  # type: ignore[arg-type]
        problem = _problem(net.eval(), images, bs)
        orders, _ = impl.engine(problem, 0.9)(problem, torch.arange(images.shape[0]), problem.layout.initial_keep())
        return [o.tolist() for o in orders]

    a = run(x, 3)
    assert run(x, 64) == a
    assert run(x[[3, 1]], 5) == [a[3], a[1]]


def test_tie_seed_validation() -> None:
    with pytest.raises(SISTypeError, match=r"generator.*torch\.Generator or an integer seed"):
        format_method("exact", batch_size=None, caller="f", generator=1.5)
    with pytest.raises(SISValueError, match="non-negative"):
        format_method("exact", batch_size=None, caller="f", generator=-1)
    assert format_method("exact", batch_size=None, caller="f", generator=4).tie_seed == 4  # type: ignore[union-attr]
    a = draw_tie_seed(torch.Generator().manual_seed(0))
    assert a == draw_tie_seed(torch.Generator().manual_seed(0)) and isinstance(a, int)
