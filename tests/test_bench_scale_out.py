"""benchmarks/bench_scale_out.py runs (smoke size, no Ray) and reports the store's cost step by step."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale_out.py"


def test_scale_out_benchmark_smoke(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_scale_out", BENCHMARK)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "scale_out.json"
    report = bench.main(["--smoke", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report)) and "ray" not in saved
    assert saved["workload"]["features"] == 4 and saved["workload"]["model_evaluations_per_image"] == 10
    (steps,) = saved["store_steps_seconds"]
    assert {"write", "images_sha256", "model_sha256", "_check_model", "_load_store"} <= set(steps)
    assert saved["store_steps_overhead"] > 0 and saved["bare_seconds"][0] > 0
    assert saved["command"].startswith("python benchmarks/bench_scale_out.py --smoke")
