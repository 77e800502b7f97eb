"""The benchmark scripts run (tiny sizes) and agree with their reference implementations."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exact_benchmark_smoke(tmp_path: Path) -> None:
    bench = _load("bench_exact_sis")
    out = tmp_path / "exact.json"
    report = bench.main(["--smoke", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report))
    (case,) = saved["cases"]
    assert case["naive_order_equals_ours"] is True  # the batched scheduler equals one-image-at-a-time selection
    assert case["model_evaluations"] == 3 * (36 * 37 // 2 + 1)
    assert case["ratio_ours_to_floor"] > 0 and case["speedup_over_naive"] > 0


def test_gradient_benchmark_floor_case_smoke(tmp_path: Path, shared_data: Path) -> None:
    bench = _load("bench_gradient_sis")
    args = ["floor", "--images", "2", "--k", "256", "--rounds", "1", "--repeats", "1", "--out-dir", str(tmp_path)]
    assert bench.main(args) == 0
    (row,) = json.loads((tmp_path / "gradient_sis_floor_cpu.json").read_text())["rows"]
    assert row["iterations"] == 4  # ceil(1024 / 256) gradient steps per image
    assert row["interleaved_backselect_ratios"] and all(r > 0 for r in row["interleaved_backselect_ratios"])
    assert row["ratio_sis_to_floor_plus_refinement"] > 0 and row["refinement_rows"] > 0


def test_batch_size_benchmark_smoke(tmp_path: Path) -> None:
    bench = _load("bench_batch_size")
    out = tmp_path / "batch_size.json"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert [c["pass"].split(",")[0] for c in saved["cases"]] == ["forward", "forward + backward (gradient steps)"]
    for case in saved["cases"]:
        (probed,) = case["probed_sizes"]
        assert str(probed) in case["rows_per_second_median"]  # the probed size was swept too
        assert 0 < case["worst_probed_over_best"] <= 1


def test_gradient_ranking_is_perfect_where_the_gradient_is_exact() -> None:
    """With two classes and logits linear in the input the log-odds are linear, so the gradient ranks every
    single removal exactly as measured: rank correlation 1, and its first 5% are exact's first 5%."""
    import torch

    bench = _load("bench_gradient_ranking")
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, 3 * 8 * 8, generator=gen)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(w)
    x = torch.randn(1, 3, 8, 8, generator=gen)
    row = bench.measure(model, x, 0, torch.arange(64).reshape(1, 1, 8, 8), batch=16)
    assert abs(row["spearman"] - 1.0) < 1e-9
    # the smoothed gradients average positive multiples of the same vector: the same ranking
    assert abs(row["spearman_integrated_gradients"] - 1.0) < 1e-9
    assert abs(row["spearman_expected_gradients"] - 1.0) < 1e-9
    assert abs(row["gradient_top5pct_mean_change"] - row["exact_top5pct_mean_change"]) < 1e-9
    assert row["exact_top5pct_mean_change"] > row["random_mean_change"]


def test_gradient_ranking_benchmark_on_real_images(tmp_path: Path, shared_data: Path) -> None:
    bench = _load("bench_gradient_ranking")
    out = tmp_path / "ranking.json"
    assert bench.main(["--images", "1", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    for features, d in (("pixels", 1024), ("superpixels", 256)):
        case = saved["features"][features]
        assert case["d"] == d and len(case["images"]) == 1
        mean = case["mean"]
        assert -1.0 <= mean["spearman"] <= 1.0
        # exact's best 5% bound from above both the gradient's first 5% and the mean of all removals
        assert mean["exact_top5pct_mean_change"] >= mean["gradient_top5pct_mean_change"]
        assert mean["exact_top5pct_mean_change"] >= mean["random_mean_change"]
