"""BatchedGradientSIS: Captum conventions, validation, validity of every SIS, and real CIFAR-10 behaviour."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from captum.attr import NoiseTunnel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sis_attr.exceptions import SISError, SISTypeError, SISValueError
from sis_attr.functional import batched_gradient_sis, gradient_backselect, sufficient_input_subsets
from sis_attr.gradient_sis import AdaptiveK, BatchedGradientSIS
from sis_attr.testing import LinearScore, SumGridClassifier, TinyConvNet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Many small forward/backward passes: one intra-op thread is faster, and far faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _conv_net(seed: int, classes: int = 3) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 6, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(6, 6, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 25, classes),
    ).double()
    with torch.no_grad():  # no biases: the all-baseline input scores 1/classes (an uninformative baseline)
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * (0.0 if "bias" in name else 0.35))
    return net.eval()


def _score_alone(net: torch.nn.Module, x: torch.Tensor, keep: torch.Tensor, target: int) -> float:
    with torch.no_grad():
        return float(torch.softmax(net(torch.where(keep, x, torch.zeros_like(x))[None]), 1)[0, target])


# ------------------------------------------------------------------------------------------------ Captum conventions
def test_captum_conventions() -> None:
    sis = BatchedGradientSIS(TinyConvNet(in_channels=3, classes=4))
    assert sis.get_name() == "Batched Gradient SIS"
    assert not sis.multiplies_by_inputs
    assert hasattr(BatchedGradientSIS.attribute, "__wrapped__")
    x = torch.randn(3, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    ranks = sis.attribute(x, threshold=0.3, k=4)
    assert ranks.shape == x.shape and ranks.dtype == x.dtype
    # default features are pixels: every channel of a pixel has the same rank; ranks 1..25 per image
    assert torch.equal(ranks, ranks[:, :1].expand_as(ranks))
    assert sorted(ranks[0, 0].flatten().tolist()) == list(range(1, 26))
    keep = sis.attribute(x, threshold=0.3, k=4, output="keep_mask")
    result = sis.explain(x, threshold=0.3, k=4)
    assert torch.equal(keep, result.keep_mask().to(x.dtype))
    assert torch.equal(ranks, result.rank_map().to(x.dtype))
    # any batch budget gives the same result (Captum's perturbations_per_eval included)
    assert torch.equal(ranks, sis.attribute(x, threshold=0.3, k=4, batch_size=1))
    assert torch.equal(ranks, sis.attribute(x, threshold=0.3, k=4, perturbations_per_eval=2))


def test_tuple_inputs_and_additional_args() -> None:
    class TwoInputs(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            s = (a.flatten(1) * torch.tensor([3.0, 1.0])).sum(1) + (b.flatten(1) * torch.tensor([2.0, 0.5, 4.0])).sum(1)
            return torch.stack([torch.zeros_like(s), s * scale], dim=1)

    a, b = torch.ones(2, 2), torch.ones(2, 3)
    scale = torch.tensor([1.0, 2.0])
    out = BatchedGradientSIS(TwoInputs()).attribute(
        (a, b), target=1, additional_forward_args=(scale,), threshold=0.99, k=1, output="keep_mask"
    )
    assert isinstance(out, tuple) and out[0].shape == a.shape and out[1].shape == b.shape
    exact = sufficient_input_subsets(TwoInputs(), (a, b), target=1, additional_forward_args=(scale,), threshold=0.99)
    assert torch.equal(out[0].bool(), exact.keep_mask()[0]) and torch.equal(out[1].bool(), exact.keep_mask()[1])


def test_noise_tunnel_runs_the_gradient_passes_under_its_no_grad() -> None:
    sis = BatchedGradientSIS(TinyConvNet(in_channels=1, classes=3))
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    smooth = NoiseTunnel(sis).attribute(x, nt_samples=3, nt_type="smoothgrad", stdevs=0.05, threshold=0.4, k=2)
    assert smooth.shape == x.shape


def test_explicit_feature_mask_and_baselines() -> None:
    net = TinyConvNet(in_channels=2, classes=3, seed=4)
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    per_element = torch.arange(32).reshape(1, 2, 4, 4)
    res = BatchedGradientSIS(net).explain(x, 0.5, feature_mask=per_element, threshold=0.35, k=3, shortlist=6)
    assert all(e.n_features == 32 for e in res) and any(e.has_sis for e in res)
    for e in res:
        if e.sis is not None:
            keep = e.keep_mask()
            assert isinstance(keep, torch.Tensor) and int(keep.sum()) == e.size  # per element, not per pixel
            masked = e.masked_input()
            assert isinstance(masked, torch.Tensor) and bool((masked[~keep] == 0.5).all())
            with torch.no_grad():
                assert float(torch.softmax(net(masked[None]), 1)[0, e.target]) >= 0.35


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"threshold": 1.5, "k": 1},
            SISValueError,
            "The `threshold` parameter of BatchedGradientSIS.attribute must be in (0, 1]. Got 1.5 instead.",
        ),
        ({"threshold": 0.9, "k": 0}, SISValueError, "The `k` parameter of BatchedGradientSIS.attribute must be"),
        ({"threshold": 0.9, "k": 1.5}, SISValueError, "a fraction in (0, 1)"),
        ({"threshold": 0.9, "k": "big"}, SISValueError, "'adaptive'"),
        ({"threshold": 0.9, "k": [1]}, SISTypeError, "Got list instead"),
        ({"threshold": 0.9, "k": 8, "shortlist": 4}, SISValueError, "must not exceed `shortlist`"),
        ({"threshold": 0.9, "k": 1, "shortlist": 0}, SISValueError, "The `shortlist` parameter"),
        ({"threshold": 0.9, "k": 1, "generator": 3}, SISTypeError, "torch.Generator"),
        ({"threshold": 0.9, "k": 1, "refine": "yes"}, SISTypeError, "The `refine` parameter"),
        ({"threshold": 0.9, "k": 1, "output": "map"}, SISValueError, "'rank' or 'keep_mask'"),
        ({"threshold": 0.9, "k": 1, "batch_size": 4, "perturbations_per_eval": 2}, SISValueError, "not both"),
        ({"threshold": 0.9, "k": AdaptiveK(max_fraction=2.0)}, SISValueError, "max_fraction"),
        ({"threshold": 0.9, "k": 1, "target": 7}, SISValueError, "class indices in [0, 1]"),
    ],
)
def test_validation_messages(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    sis = BatchedGradientSIS(SumGridClassifier())
    with pytest.raises(error) as info:
        sis.attribute(torch.ones(1, 2, 2), **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, SISError)


def test_same_input_validation_as_the_exact_method() -> None:
    sis = BatchedGradientSIS(SumGridClassifier())
    with pytest.raises(SISTypeError, match=r"The `inputs` parameter of BatchedGradientSIS\.attribute"):
        sis.attribute([1, 2], threshold=0.9, k=1)  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="floating-point"):
        sis.attribute(torch.ones(1, 2, 2, dtype=torch.long), threshold=0.9, k=1)


def test_non_differentiable_model_is_reported() -> None:
    def detached(x: torch.Tensor) -> torch.Tensor:
        return SumGridClassifier()(x).detach()

    with pytest.raises(SISValueError, match="differentiable with respect to its inputs"):
        batched_gradient_sis(detached, torch.ones(1, 2, 2), threshold=0.9, k=1)
    with pytest.raises(SISValueError, match="differentiable with respect to its inputs"):
        batched_gradient_sis(detached, torch.ones(1, 8, 8), threshold=0.9)


def test_the_users_model_is_left_alone() -> None:
    net = TinyConvNet(in_channels=2, classes=3, seed=1)
    net.conv1.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in net.named_parameters()}
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # also works when the caller disabled autograd
        batched_gradient_sis(net, x, threshold=0.4, k=2, shortlist=4, collection=True)
    assert {n: p.requires_grad for n, p in net.named_parameters()} == flags
    assert all(p.grad is None for p in net.parameters())
    assert not net.training and not x.requires_grad


# ------------------------------------------------------------------------------------------------ SIS properties
def test_below_threshold_gets_no_sis_and_above_gets_a_valid_one() -> None:
    x = torch.tensor([[[3.0, -1.0], [1.5, 2.0]], [[0.1, 0.0], [0.0, 0.0]]])
    res = BatchedGradientSIS(SumGridClassifier()).explain(x, target=1, threshold=0.99, k=2)
    assert res[0].sis is not None and res[1].sis is None and res[1].collection == ()
    assert math.isnan(float(res.sizes()[1]))


@given(seed=st.integers(0, 10_000), k=st.sampled_from([1, 3, 0.3, "adaptive"]), shortlist=st.sampled_from([None, 6]))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_sis_is_valid_and_refinement_never_grows_it(seed: int, k: object, shortlist: int | None) -> None:
    if isinstance(k, int) and shortlist is not None and k > shortlist:
        return
    net = _conv_net(seed % 7)
    x = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    t = 0.6
    kw = {"threshold": t, "k": k, "shortlist": shortlist, "batch_size": 4}
    refined = batched_gradient_sis(net, x, collection=True, max_sis=2, **kw)  # type: ignore[arg-type]
    plain = batched_gradient_sis(net, x, refine=False, **kw)  # type: ignore[arg-type]
    for e, p in zip(refined, plain, strict=True):
        assert (e.sis is None) == (p.sis is None)
        if e.sis is None:
            assert e.confidence < t
            continue
        assert e.size is not None and p.size is not None and e.size <= p.size
        seen: set[int] = set()
        for s in e.collection:  # every SIS of the collection is valid on its own, and they are disjoint
            assert _score_alone(net, x[e.example], e.keep_mask(s).bool(), e.target) >= t
            assert not (seen & set(s.tolist()))
            seen |= set(s.tolist())


def test_sizes_against_exact_sis_on_small_conv_nets(record_property: Callable[[str, object], None]) -> None:
    """Report gradient, hybrid and exact SIS sizes side by side (pixels of 5x5 images, threshold 0.6).

    Exact BackSelect is greedy, not optimal: the gradient methods sometimes find smaller SIS.
    """
    x = torch.randn(6, 2, 5, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    pixels = torch.arange(25).reshape(1, 1, 5, 5)
    totals = {"exact": 0.0, "gradient": 0.0, "hybrid": 0.0}
    for seed in range(3):
        net = _conv_net(seed)
        exact = sufficient_input_subsets(net, x, feature_mask=pixels, threshold=0.6).sizes()
        grad = batched_gradient_sis(net, x, threshold=0.6, k=1).sizes()
        hybrid = batched_gradient_sis(net, x, threshold=0.6, k=1, shortlist=4).sizes()
        assert torch.equal(exact.isnan(), grad.isnan()) and torch.equal(exact.isnan(), hybrid.isnan())
        totals["exact"] += float(exact.nansum())
        totals["gradient"] += float(grad.nansum())
        totals["hybrid"] += float(hybrid.nansum())
    for name, total in totals.items():
        record_property(f"total_sis_size_{name}", total)
    assert totals["hybrid"] <= 1.5 * totals["exact"] and totals["gradient"] <= 3.0 * totals["exact"], totals


def test_paper_setting_is_expressible_exactly() -> None:
    """k=100 pure gradient blocks, FindSIS over block boundaries only (no refinement)."""
    net = TinyConvNet(in_channels=3, classes=4, seed=2)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    res = batched_gradient_sis(net, x, threshold=0.3, k=100, refine=False)
    for e in res:
        starts = e.record.measured.nonzero().flatten().tolist()
        assert starts == [0, 100, 200, 256]
        if e.sis is not None:
            assert e.size in (256, 156, 56, 0)


# ------------------------------------------------------------------------------------------------ real CIFAR-10
def _cifar(n: int) -> tuple[torch.nn.Module, torch.Tensor]:
    from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, normalize, shared_data_dir
    from sis_attr.models import load_pretrained_cifar_resnet

    root = shared_data_dir()
    batches = None if root is None else root / "cifar10" / "cifar-10-batches-py-subset"
    if batches is None or not batches.is_dir() or not any((root / "weights").glob("resnet20-*.th")):  # type: ignore[operator]
        pytest.skip("../shared/data (real CIFAR-10 test images and the ResNet20 checkpoint) is not available")
    images, _, _ = load_cifar10_batches(batches, "test", limit=n)
    model = load_pretrained_cifar_resnet(20, with_normalization=False)  # baseline 0 = the mean colour
    return model, normalize(images, *CIFAR10_MEAN_STD_AKAMASTER)


@pytest.mark.slow
@pytest.mark.real_data
def test_resnet20_real_images_valid_sis_and_top_5_percent_beats_random() -> None:
    model, x = _cifar(16)
    with torch.no_grad():
        pred = model(x).argmax(1)
    result = batched_gradient_sis(model, x, threshold=0.99, k=8, batch_size=16)
    confident = [e for e in result if e.confidence >= 0.99]
    assert len(confident) >= 8
    for e in result:
        if e.confidence < 0.99:
            assert e.sis is None
    keeps = result.keep_mask()
    with torch.no_grad():
        p = torch.softmax(model(torch.where(keeps, x, torch.zeros_like(x))), 1)
    sis_conf = p.gather(1, pred[:, None])[:, 0]
    for e in confident:
        assert float(sis_conf[e.example]) >= 0.99
        assert e.size is not None and e.size < 1024 // 4
    # the top 5% of pixels of the gradient order (52 of 1024) against 52 random pixels
    top = torch.stack([e.keep_mask(e.record.top_features(52)) for e in result])  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(0)
    rand_hits = []
    for _ in range(4):
        r = torch.zeros(16, 1024, dtype=torch.bool)
        for i in range(16):
            r[i, torch.randperm(1024, generator=gen)[:52]] = True
        rand = r.reshape(16, 1, 32, 32).expand_as(x)
        with torch.no_grad():
            rand_hits.append(float((model(torch.where(rand, x, torch.zeros_like(x))).argmax(1) == pred).float().mean()))
    with torch.no_grad():
        top_rate = float((model(torch.where(top, x, torch.zeros_like(x))).argmax(1) == pred).float().mean())
    rand_rate = sum(rand_hits) / len(rand_hits)
    assert top_rate >= 0.5 and top_rate >= rand_rate + 0.3, (top_rate, rand_rate)


@pytest.mark.slow
@pytest.mark.real_data
def test_resnet20_hybrid_sis_are_near_exact_size_on_real_images() -> None:
    """Gradient-screened selection (M=16, k=8) on official test images 0 and 1, threshold 0.99.

    Measured by ``benchmarks/bench_gradient_sis.py exact --exact-features pixels --images 2`` (mean-colour
    baseline): exact BackSelect 11 and 13 pixels (about 30 CPU minutes per image), gradient-screened selection
    9 and 19 (M=16, k=1) or 15 and 27 (M=16, k=4), the pure gradient method 42 and 54 (k=1) or 29 and 126 (k=16).
    """
    model, x = _cifar(2)
    hybrid = batched_gradient_sis(model, x, threshold=0.99, k=8, shortlist=16, batch_size=64)
    pure = batched_gradient_sis(model, x, threshold=0.99, k=8, batch_size=64)
    sizes, pure_sizes = hybrid.sizes().tolist(), pure.sizes().tolist()
    assert sizes[0] <= 3 * 11 and sizes[1] <= 3 * 13, sizes
    assert sum(sizes) <= 0.6 * sum(pure_sizes), (sizes, pure_sizes)
    for result in (hybrid, pure):
        keeps = result.keep_mask()
        with torch.no_grad():
            p = torch.softmax(model(torch.where(keeps, x, torch.zeros_like(x))), 1).max(1).values
        assert bool((p >= 0.99).all())


# ------------------------------------------------------------------------------------------------ 299x299 inputs
def _inception_like() -> type[torch.nn.Module]:
    path = ROOT / "benchmarks" / "bench_gradient_sis.py"
    spec = importlib.util.spec_from_file_location("bench_gradient_sis", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_gradient_sis", module)
    spec.loader.exec_module(module)
    return module.InceptionV3Like  # type: ignore[no-any-return]


@pytest.mark.slow
def test_299x299_inception_shaped_input_runs_with_bounded_rows_per_pass() -> None:
    net = _inception_like()(width=1 / 16, num_classes=10).eval()
    x = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(0))
    seen: list[int] = []

    def forward(z: torch.Tensor) -> torch.Tensor:
        seen.append(int(z.shape[0]))
        return net(z) * 50.0  # confident, so FindSIS and the refinement run

    result = batched_gradient_sis(forward, x, threshold=0.9, k=0.5, batch_size=2)
    assert max(seen) <= 2 and any(e.has_sis for e in result)
    assert all(e.n_features == 299 * 299 for e in result)
    records = gradient_backselect(forward, x[:1], k=0.5, batch_size=1)
    assert sorted(records[0].order.tolist()) == list(range(299 * 299))
    for e in result:
        if e.sis is not None:
            with torch.no_grad():
                keep = e.keep_mask().bool()
                p = torch.softmax(forward(torch.where(keep, x[e.example], 0.0)[None]), 1)[0, e.target]
            assert float(p) >= 0.9


def test_linear_score_k1_gives_the_exact_sis() -> None:
    model = LinearScore(torch.tensor([3.0, 1.0, 2.0, 0.5]))
    res = batched_gradient_sis(
        model, torch.ones(1, 4), threshold=2.5, k=1, collection=True, score_func=LinearScore.score
    )
    assert [s.tolist() for s in res[0].collection] == [[0], [2, 1]]


# ---------------------------------------------------------------------------------------- one pipeline, two doors
def test_class_and_function_share_one_pipeline_and_its_defaults() -> None:
    """``k`` defaults to "auto" and ``batch_size`` to 64 at both doors; ``perturbations_per_eval`` works at both."""
    net = TinyConvNet(in_channels=2, classes=3, seed=4)
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    a = BatchedGradientSIS(net).explain(x, threshold=0.5)
    b = batched_gradient_sis(net, x, threshold=0.5)
    c = batched_gradient_sis(net, x, threshold=0.5, k="auto", batch_size=64)
    d = BatchedGradientSIS(net).explain(x, threshold=0.5, perturbations_per_eval=1)
    for ea, eb, ec, ed in zip(a, b, c, d, strict=True):
        assert (
            ea.record.order.tolist() == eb.record.order.tolist() == ec.record.order.tolist() == ed.record.order.tolist()
        )
        assert ea.size == eb.size == ec.size == ed.size


def test_rank_map_of_a_fixed_k_needs_no_threshold() -> None:
    net = TinyConvNet(in_channels=2, classes=3, seed=4)
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    sis = BatchedGradientSIS(net)
    assert torch.equal(sis.attribute(x, k=2), sis.attribute(x, k=2, threshold=0.9))
    with pytest.raises(SISValueError, match="adaptive, which steers by a threshold"):
        sis.attribute(x, k="adaptive")
    with pytest.raises(SISValueError, match='must be a number with output="keep_mask"'):
        sis.attribute(x, k=2, output="keep_mask")
