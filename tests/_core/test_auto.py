"""The automatic schedule (``k="auto"``): validity, the exact oracle, invariances and a real-data size bound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sis_attr import AutoK, BatchedGradientSIS
from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.functional import batched_gradient_sis, sufficient_input_subsets

ROOT = Path(__file__).resolve().parents[2]
REFERENCES = ROOT / "benchmarks" / "results" / "exact_references" / "superpixels"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _conv_net(seed: int, side: int, classes: int = 3) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 6, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(6, 6, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * side * side, classes),
    ).double()
    with torch.no_grad():  # no biases: the all-baseline input scores 1/classes (an uninformative baseline)
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * (0.0 if "bias" in name else 0.35))
    return net.eval()


def _scores_alone(net: torch.nn.Module, x: torch.Tensor, keep: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        p = torch.softmax(net(torch.where(keep.bool(), x, torch.zeros_like(x))), 1)
    return p.gather(1, target[:, None])[:, 0]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    side=st.sampled_from([4, 7]),
    threshold=st.floats(0.4, 0.95),
    endgame=st.integers(0, 12),
    screen_at=st.integers(0, 40),
    backtrack=st.booleans(),
    guard=st.sampled_from([0.0, 0.3, 0.75, 1.0]),
)
def test_every_sis_of_the_automatic_schedule_is_sufficient(
    seed: int, side: int, threshold: float, endgame: int, screen_at: int, backtrack: bool, guard: float
) -> None:
    net = _conv_net(seed, side)
    x = torch.randn(3, 2, side, side, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
    k = AutoK(endgame=endgame, screen_at=screen_at, shortlist=4, backtrack=backtrack, guard=guard)
    res = batched_gradient_sis(net, x, threshold=threshold, k=k)
    target = torch.stack([torch.as_tensor(e.target) for e in res])
    alone = _scores_alone(net, x, res.keep_mask(), target)
    for i, e in enumerate(res):
        assert e.record.order.numel() == side * side  # every feature is removed exactly once
        assert sorted(e.record.order.tolist()) == list(range(side * side))
        if e.sis is not None:
            assert alone[i] >= threshold - 1e-9


def test_with_at_most_endgame_features_the_schedule_is_exact_backselect() -> None:
    net = _conv_net(3, 4)
    x = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    auto = batched_gradient_sis(net, x, threshold=0.6, k=AutoK(endgame=16))
    exact = sufficient_input_subsets(net, x, threshold=0.6, feature_mask=torch.arange(16).reshape(1, 1, 4, 4))
    for a, b in zip(auto, exact, strict=True):
        assert a.record.order.tolist() == b.record.order.tolist()
        assert a.size == b.size


def test_the_schedule_is_deterministic_and_batch_size_invariant() -> None:
    net = _conv_net(5, 7)
    x = torch.randn(5, 2, 7, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    k = AutoK(endgame=8, screen_at=24, shortlist=6, backtrack=True)
    runs = [batched_gradient_sis(net, x, threshold=0.7, k=k, batch_size=bs) for bs in (64, 64, 3, 1)]
    orders = [[e.record.order.tolist() for e in r] for r in runs]
    assert orders[0] == orders[1] == orders[2] == orders[3]
    assert [e.size for e in runs[0]] == [e.size for e in runs[2]]


class _CountingLinear(torch.nn.Module):
    """Logits linear in the features; counts forward-equivalents (a row with gradient tracking counts 3)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight
        self.equivalents = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.equivalents += int(z.shape[0]) * (3 if z.requires_grad else 1)
        return z.flatten(1) @ self.weight.t()


def test_a_large_input_starting_near_the_threshold_stays_logarithmic() -> None:
    """4,000 negligible features and 96 decisive ones; the image starts 1.2 log-odds above the threshold, inside
    the screening margin. Gradient blocks the first-order prediction calls safe still go unscreened, so the cost
    grows with log(d), not d / shortlist (before: 19 forward-equivalents per 16 features, about 4,800)."""
    d = 4096
    weight = torch.zeros(3, d, dtype=torch.float64)
    weight[0, :4000] = 1e-5
    weight[0, 4000:] = 0.05
    model = _CountingLinear(weight)
    x = torch.ones(1, d, dtype=torch.float64)
    res = batched_gradient_sis(model, x, threshold=0.95, feature_mask=torch.arange(d)[None], batch_size=64)
    assert model.equivalents < 1_500, model.equivalents
    (e,) = res
    assert e.sis is not None and bool((e.sis >= 4000).all())  # only decisive features in the SIS
    assert float(_scores_alone(model, x, res.keep_mask(), torch.zeros(1, dtype=torch.long))[0]) >= 0.95


def test_backtracking_a_screened_block_halves_the_next_block() -> None:
    """The score falls off a cliff once fewer than 42 of 64 features remain. From 44 features every single removal
    looks free, so the screened block of 4 goes and crosses the threshold: backtracking must take a smaller block
    next (it once retook the same screened block forever)."""
    calls = 0

    def model(z: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls > 5_000:
            raise RuntimeError("backward selection does not terminate")
        kept = z.flatten(1).sum(dim=1, keepdim=True)  # inputs of ones: the number of features kept
        lead = 10.0 * torch.tanh(5.0 * (kept - 41.5))
        return torch.cat([lead, torch.zeros_like(lead), torch.zeros_like(lead)], dim=1)

    x = torch.ones(1, 64, dtype=torch.float64)
    k = AutoK(backtrack=True, endgame=4)
    res = batched_gradient_sis(model, x, threshold=0.95, k=k, feature_mask=torch.arange(64)[None], batch_size=64)
    assert res[0].size == 42  # the cliff: any 42 features are sufficient, 41 are not


def test_a_block_taken_back_is_not_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the guard takes a block back, the step goes on with the gradient measured before that block: no
    gradient pass returns to the state measured two passes earlier (A, B, A), which cost one wasted pass per
    take-back before."""
    import sis_attr._core.auto as auto_module

    undone = 0
    undo = auto_module.AutoBackSelect._undo

    def counting_undo(self: auto_module.AutoBackSelect, state: object, back: torch.Tensor) -> None:
        nonlocal undone
        undone += int(back.numel())
        undo(self, state, back)  # type: ignore[arg-type]

    monkeypatch.setattr(auto_module.AutoBackSelect, "_undo", counting_undo)
    net = _conv_net(1, 7)
    x = torch.randn(4, 2, 7, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)[:1] * 2
    states: list[tuple[float, ...]] = []

    def model(z: torch.Tensor) -> torch.Tensor:
        if z.requires_grad:  # one image: every gradient pass has one row, its state
            states.append(tuple(z.detach().flatten().tolist()))
        return net(z)

    k = AutoK(guard=0.3, endgame=4, screen_at=8, shortlist=4)
    res = batched_gradient_sis(model, x, threshold=0.8, k=k, batch_size=8)
    assert undone == 1  # the guard acted
    assert all(states[i] != states[i - 2] for i in range(2, len(states)))
    alone = _scores_alone(net, x, res.keep_mask(), torch.as_tensor([res[0].target]))
    assert float(alone[0]) >= 0.8


def test_auto_is_the_default_and_shortlist_sets_its_screening() -> None:
    net = _conv_net(5, 7)
    x = torch.randn(2, 2, 7, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    default = BatchedGradientSIS(net).explain(x, threshold=0.7)
    auto = BatchedGradientSIS(net).explain(x, threshold=0.7, k="auto")
    assert [e.record.order.tolist() for e in default] == [e.record.order.tolist() for e in auto]
    short = batched_gradient_sis(net, x, threshold=0.7, k="auto", shortlist=4)
    explicit = batched_gradient_sis(net, x, threshold=0.7, k=AutoK(shortlist=4))
    assert [e.record.order.tolist() for e in short] == [e.record.order.tolist() for e in explicit]


@pytest.mark.parametrize(
    ("k", "match"),
    [
        (AutoK(fraction=0.0), "AutoK.fraction must be a fraction in"),
        (AutoK(screen_fraction=1.5), "AutoK.screen_fraction must be a fraction in"),
        (AutoK(shortlist=0), "AutoK.shortlist must be at least 1"),
        (AutoK(endgame=-1), "AutoK.endgame must be at least 0"),
        (AutoK(margin=float("nan")), "AutoK.margin must be a finite number"),
        (AutoK(guard=1.5), r"AutoK.guard must be a number in \[0, 1\]"),
        ("automatic", "'auto', 'adaptive'"),
    ],
)
def test_bad_schedules_say_what_was_expected(k: object, match: str) -> None:
    with pytest.raises(SISValueError, match=match):
        batched_gradient_sis(_conv_net(0, 4), torch.randn(1, 2, 4, 4, dtype=torch.float64), threshold=0.5, k=k)


def test_a_non_integer_endgame_is_a_type_error() -> None:
    with pytest.raises(SISTypeError, match=r"AutoK\.endgame must be an integer"):
        batched_gradient_sis(
            _conv_net(0, 4), torch.randn(1, 2, 4, 4, dtype=torch.float64), threshold=0.5, k=AutoK(endgame=2.5)
        )  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ real data
#: measured with the default AutoK on the first 4 stored references (2x2-pixel features, threshold 0.99):
#: benchmarks/bench_sis_schedule.py; the bound allows no regression beyond 1.25x exact BackSelect's total
AUTO_TOTAL_BOUND_RATIO = 1.25


def test_auto_sis_on_real_cifar_images_stay_close_to_exact_backselect(shared_data: Path) -> None:
    refs = [json.loads(p.read_text()) for p in sorted(REFERENCES.glob("test_*.json"))][:4]
    if len(refs) < 4:
        pytest.skip("the stored exact references (benchmarks/exact_references.py) are missing")
    from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, normalize
    from sis_attr.models import load_pretrained_cifar_resnet

    images, _, _ = load_cifar10_batches(
        shared_data / "cifar10" / "cifar-10-batches-py-subset", "test", limit=max(r["test_index"] for r in refs) + 1
    )
    x = normalize(images, *CIFAR10_MEAN_STD_AKAMASTER)[[r["test_index"] for r in refs]]
    model = load_pretrained_cifar_resnet(20, weights_dir=shared_data / "weights", with_normalization=False).eval()
    blocks = ((torch.arange(32)[:, None] // 2) * 16 + torch.arange(32)[None, :] // 2).reshape(1, 1, 32, 32)
    target = torch.tensor([r["target"] for r in refs])
    res = batched_gradient_sis(model, x, target=target, feature_mask=blocks, threshold=0.99)
    sizes = [e.size for e in res]
    exact = [r["sis_size_at_threshold"] for r in refs]
    assert all(s is not None for s in sizes)
    assert sum(sizes) <= AUTO_TOTAL_BOUND_RATIO * sum(exact), (sizes, exact)  # type: ignore[arg-type]
    assert bool((_scores_alone(model, x, res.keep_mask(), target) >= 0.99).all())
