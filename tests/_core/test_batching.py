"""Batch sizes: measured with ``batch_size=None``, halved after out-of-memory errors, capped by the work."""

from __future__ import annotations

import time

import pytest
import torch
from torch import Tensor, nn

from sis_attr._core import batching
from sis_attr.functional import batched_gradient_sis, sufficient_input_subsets
from sis_attr.testing import TinyConvNet


class RowLimited(nn.Module):
    """Raises the CUDA allocator's error above ``limit`` rows (as a GPU would), and counts what it saw."""

    def __init__(self, model: nn.Module, limit: int) -> None:
        super().__init__()
        self.model = model
        self.limit = limit
        self.ooms = 0
        self.largest_ok = 0

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] > self.limit:
            self.ooms += 1
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate rows for {x.shape[0]}")
        self.largest_ok = max(self.largest_ok, int(x.shape[0]))
        return self.model(x)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    batching.clear_cache()


def _data() -> tuple[nn.Module, Tensor]:
    net = TinyConvNet(in_channels=2, classes=3, seed=4).eval()
    x = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    return net, x


def test_exact_method_halves_the_batch_after_out_of_memory_and_remembers_it() -> None:
    net, x = _data()
    limited = RowLimited(net, limit=8)
    got = sufficient_input_subsets(limited, x, threshold=0.5, batch_size=64)
    ref = sufficient_input_subsets(net, x, threshold=0.5, batch_size=8)
    assert [e.record.order.tolist() for e in got] == [e.record.order.tolist() for e in ref]
    assert [e.size for e in got] == [e.size for e in ref]
    # 64 -> 32 -> 16 -> 8: three errors in all, not one per batch
    assert limited.ooms == 3
    assert limited.largest_ok == 8


@pytest.mark.parametrize("k", [1, "auto"])
def test_gradient_methods_halve_the_batch_after_out_of_memory(k: object) -> None:
    net, x = _data()
    x = torch.cat([x] * 6)  # 18 examples: gradient steps of more than 8 rows
    limited = RowLimited(net, limit=8)
    got = batched_gradient_sis(limited, x, threshold=0.5, batch_size=32, k=k)
    ref = batched_gradient_sis(net, x, threshold=0.5, batch_size=8, k=k)
    assert [e.record.order.tolist() for e in got] == [e.record.order.tolist() for e in ref]
    assert limited.largest_ok <= 8
    assert 1 <= limited.ooms <= 4


def test_other_errors_are_not_mistaken_for_out_of_memory() -> None:
    def broken(x: Tensor) -> Tensor:
        if x.shape[0] > 2:
            raise RuntimeError("shape mismatch in layer 3")
        return x.flatten(1)[:, :3]

    with pytest.raises(RuntimeError, match="shape mismatch"):
        sufficient_input_subsets(broken, torch.randn(4, 6), threshold=0.5, batch_size=16)


def test_batch_size_none_measures_once_and_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = _data()
    measured: list[int] = []
    throughput = batching._throughput

    def counting(run: object, size: int, device: torch.device) -> tuple[float, float]:
        measured.append(size)
        return throughput(run, size, device)  # type: ignore[arg-type]

    monkeypatch.setattr(batching, "_throughput", counting)
    auto = sufficient_input_subsets(net, x, threshold=0.5)  # batch_size=None: probed
    key = (((2, 6, 6),), str(torch.float32), "cpu", False)
    size = batching.cached_batch_size(net, key)
    assert size is not None and 1 <= size <= 3 * 72
    assert measured  # the first call measured
    first = len(measured)
    again = sufficient_input_subsets(net, x, threshold=0.5)  # cached: no probing this time
    assert len(measured) == first
    fixed = sufficient_input_subsets(net, x, threshold=0.5, batch_size=7)
    for a, b, c in zip(auto, again, fixed, strict=True):
        assert a.record.order.tolist() == b.record.order.tolist() == c.record.order.tolist()


def test_probe_picks_the_fastest_measured_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # a model whose pass costs 1 ms plus 0.01 ms per row up to 64 rows and 0.1 ms per row above: 64 rows win.
    # The clock is simulated, so load on the machine cannot change the measurement.
    clock = [0.0]
    monkeypatch.setattr(batching.time, "perf_counter", lambda: clock[0])

    def run(n: int) -> None:
        clock[0] += 0.001 + n * (0.00001 if n <= 64 else 0.0001)

    size = batching.probe_batch_size(object(), ("k",), run, max_rows=10_000, device=torch.device("cpu"), fallback=5)
    assert size == 64


def test_small_calls_are_not_probed() -> None:
    seen: list[int] = []

    def run(n: int) -> None:
        seen.append(n)

    assert batching.probe_batch_size(object(), ("k",), run, max_rows=12, device=torch.device("cpu"), fallback=64) == 12
    assert seen == []


def test_exact_batch_is_capped_by_the_rows_that_exist() -> None:
    # batch_size far above the work: memory follows the 16 candidate rows, not the batch size
    x = torch.randn(2, 16)
    w = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    seen: list[int] = []

    def model(z: Tensor) -> Tensor:
        seen.append(int(z.shape[0]))
        return z @ w

    t0 = time.perf_counter()
    res = sufficient_input_subsets(model, x, threshold=0.5, batch_size=10**10)
    assert time.perf_counter() - t0 < 30
    assert max(seen) <= 32
    ref = sufficient_input_subsets(model, x, threshold=0.5, batch_size=5)
    assert [e.record.order.tolist() for e in res] == [e.record.order.tolist() for e in ref]
