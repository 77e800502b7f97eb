"""Is the measured batch size good? ``batch_size=None`` against an exhaustive, interleaved sweep.

``batch_size=None`` (the default of every method) probes the model's throughput at a few batch sizes, once per
model, row shape, dtype, device and pass kind, and keeps the fastest (``sis_attr/_core/batching.py``). This
benchmark checks that choice: for each model and pass kind (no-grad forward passes of masked inputs, as the
exact method and the screening steps run them; forward + backward with respect to the feature mask, as the
gradient steps run them) it

1. runs the library's probe ``--probes`` times on a fresh cache (its choice can vary on a noisy machine), and
2. measures the throughput of every candidate size in ``--rounds`` interleaved rounds (each round visits every
   size once, so a load change on the shared machine hits all sizes alike) and takes each size's median.

The ratio that counts is the median throughput at each probed size over the best median throughput of the
sweep (goal: at least 0.9). The old fixed default of 256 rows is reported beside it.

.. code-block:: bash

   python benchmarks/bench_batch_size.py --threads 1                 # CPU: ResNet20 and the small CNN
   python benchmarks/bench_batch_size.py --device cuda --threads 0   # on a GPU

Writes ``benchmarks/results/batch_size_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_exact_sis import TwoConvCNN

from sis_attr._core import batching
from sis_attr._core.feature_masks import default_feature_mask
from sis_attr._core.problem import SISProblem, format_problem
from sis_attr.models import cifar_resnet

RESULTS = Path(__file__).resolve().parent / "results"


def _problem(model: nn.Module, x: torch.Tensor) -> SISProblem:
    return format_problem(model, x, feature_mask=default_feature_mask(x), caller="bench", batch_size=1, score_func=None)  # type: ignore[arg-type]


def _rate(run: Any, size: int, device: torch.device, min_seconds: float) -> float:
    run(size)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, repeats = time.perf_counter(), 0
    while True:
        run(size)
        repeats += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return size * repeats / elapsed


def run_case(
    name: str, model: nn.Module, shape: tuple[int, ...], device: torch.device, args: argparse.Namespace
) -> list[dict[str, Any]]:
    x = torch.randn(4, *shape, device=device)
    problem = _problem(model.to(device).eval(), x)
    out = []
    for gradient in (False, True):
        kind = "forward + backward (gradient steps)" if gradient else "forward, no grad (exact evaluations)"
        chosen = []
        for _ in range(args.probes):
            batching.clear_cache()
            chosen.append(problem.probe_batch_size(gradient=gradient, max_rows=1 << 30, fallback=256))
        run = problem.timed_pass(gradient)
        sizes = [s for s in batching.CANDIDATES if s <= args.max_size]
        rates: dict[int, list[float]] = {s: [] for s in sizes}
        for _ in range(args.rounds):
            for s in sizes:
                rates[s].append(_rate(run, s, device, args.min_seconds))
        median = {s: statistics.median(r) for s, r in rates.items()}
        best = max(median, key=lambda s: median[s])
        # a probed size outside the sweep (``--max-size``) has no measured ratio
        ratios = [median[c] / median[best] if c in median else None for c in chosen]
        row = {
            "model": name,
            "input_shape": list(shape),
            "pass": kind,
            "probed_sizes": chosen,
            "sweep_best_size": best,
            "rows_per_second_median": {str(s): round(v, 1) for s, v in median.items()},
            "probed_over_best": [None if r is None else round(r, 3) for r in ratios],
            "worst_probed_over_best": None if None in ratios else round(min(r for r in ratios if r is not None), 3),
            "default_256_over_best": round(median[256] / median[best], 3) if 256 in median else None,
        }
        out.append(row)
        print(
            f"{name:<22} {'grad' if gradient else 'fwd ':<5} probed {chosen} best {best} "
            f"probed/best {row['probed_over_best']}  256/best {row['default_256_over_best']}"
        )
        sys.stdout.flush()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--probes", type=int, default=3, help="library probes per case, each on a fresh cache")
    p.add_argument("--rounds", type=int, default=5, help="interleaved sweep rounds (median per size)")
    p.add_argument("--min-seconds", type=float, default=0.3, help="timing per size and round")
    p.add_argument("--max-size", type=int, default=1024)
    p.add_argument("--smoke", action="store_true", help="tiny settings, for the test suite")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.probes, args.rounds, args.min_seconds = 1, 1, 0.0
    device = torch.device(args.device)
    cases: list[tuple[str, nn.Module, tuple[int, ...]]] = [
        ("two-conv CNN 16x16", TwoConvCNN(), (3, 16, 16)),
        ("ResNet20 32x32", cifar_resnet(20), (3, 32, 32)),
    ]
    if args.smoke:
        cases = cases[:1]
    rows = []
    for name, model, shape in cases:
        torch.manual_seed(0)
        rows += run_case(name, model, shape, device, args)
    result = {
        "benchmark": "batch_size",
        "goal": "throughput at the probed batch size >= 0.9 of the best size's (median of interleaved rounds)",
        "cases": rows,
        "worst_probed_over_best": min((r["worst_probed_over_best"] or 0.0) for r in rows),
        "settings": {k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()},
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "device": str(device),
        },
        "command": "python benchmarks/bench_batch_size.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = args.out or RESULTS / f"batch_size_{device.type}.json"
    if not args.smoke or args.out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    print(f"worst probed/best: {result['worst_probed_over_best']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
