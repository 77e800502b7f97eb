"""Benchmark: backward selection scaled out over shards (locally and on Ray), and what the shard store costs.

Measured in one run, on the same images and model:

* ``bare``: backward selection as the library's core runs it (``backselect_records`` chunk by chunk, the known
  full-image confidences as starting scores), with no shards, no files, no hashing;
* ``store``: :func:`~sis_attr.overinterpretation.backward_selection` with ``checkpoint_dir``: the model check,
  the hashes of the model and of every shard's images, each shard written to a temporary file, fsynced,
  checksummed and renamed, the manifest, and the result read back from the store. Its overhead against
  ``bare`` is the cost of resumability (goal: under 5%). Besides the end-to-end comparison, each step the store
  adds is timed where it runs (``store_steps_seconds``), a measure the machine's noise hardly touches;
* ``ray``: the same call with ``backend="ray"`` on a local Ray instance with one, then two, CPU workers
  (``ray.init(num_cpus=W)``; Ray gives each worker one thread), in images per second. Ray's start-up and the
  workers' first import of torch are timed apart (a warm-up run), not in the throughput.

The local runs use one torch thread (``--threads``), as each Ray worker does: on a loaded two-core machine two
threads per process spin against each other and made the local runs 30 times slower than one Ray worker.

``bare`` and ``store`` run alternated, ``--rounds`` times each, and the medians are compared (the machine is
shared: alternating spreads its noise over both). The two-CPU machine this was written on is the limit of the
speedup: two workers can at best double one worker's throughput, and only if nothing else runs.

Usage::

    python benchmarks/bench_scale_out.py            # writes benchmarks/results/scale_out_cpu.json (a few minutes)
    python benchmarks/bench_scale_out.py --smoke    # seconds, no Ray: what the test suite runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sis_attr._core.methods import ExactMethod, backselect_records
from sis_attr.overinterpretation import backward_selection, block_feature_mask

RESULTS = Path(__file__).resolve().parent / "results"


class SmallCNN(nn.Module):
    """Two 3x3 convolutions (8, 16 channels), global pooling, a linear layer: cheap, but a real CNN."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _bare(model: nn.Module, images: torch.Tensor, mask: torch.Tensor, chunk: int, batch_size: int) -> float:
    """Seconds of the core's backward selection alone (targets and confidences from one forward pass)."""
    start = time.perf_counter()
    with torch.no_grad():
        probs = torch.softmax(model(images).double(), dim=1)
    targets = probs.argmax(dim=1)
    confidences = probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    impl = ExactMethod(batch_size=batch_size)
    for s in range(0, images.shape[0], chunk):
        backselect_records(
            model,
            images[s : s + chunk],
            method=impl,
            target=targets[s : s + chunk],
            baselines=0.0,
            feature_mask=mask,
            start_values=confidences[s : s + chunk].log(),
            first_example=s,
            caller="bench",
        )
    return time.perf_counter() - start


def _stored(model: nn.Module, images: torch.Tensor, mask: torch.Tensor, kwargs: dict[str, Any], **extra: Any) -> float:
    """Seconds of a checkpointed backward_selection into a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        backward_selection(model, images, feature_mask=mask, checkpoint_dir=tmp, show_progress=False, **kwargs, **extra)
        return time.perf_counter() - start


@contextlib.contextmanager
def _store_clock() -> Iterator[dict[str, float]]:
    """Time every step a checkpointed run adds to the bare computation (hashes, model check, writes, read-back).

    These steps do not depend on the model's speed, so their sum is a low-noise measure of the store's cost,
    beside the end-to-end comparison (which a shared machine's noise dominates).
    """
    from sis_attr.overinterpretation import _store, selection

    spent: dict[str, float] = {}
    patched: list[tuple[object, str, object]] = []

    def wrap(owner: object, name: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

        patched.append((owner, name, original))
        setattr(owner, name, timed)

    for name in ("images_sha256", "model_sha256", "_check_model", "_load_store"):
        wrap(selection, name)
    for name in ("open", "finished", "write", "write_array", "mark_complete"):
        wrap(_store.ShardStore, name)
    try:
        yield spent
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def _store_bytes(model: nn.Module, images: torch.Tensor, mask: torch.Tensor, kwargs: dict[str, Any]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        backward_selection(model, images, feature_mask=mask, checkpoint_dir=tmp, show_progress=False, **kwargs)
        return sum(p.stat().st_size for p in Path(tmp).iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--superpixel", type=int, default=2, help="features are NxN blocks (default: %(default)s)")
    parser.add_argument("--shard-size", type=int, default=16, help="images per shard (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated bare/store rounds (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of the local runs, as a Ray worker has (default: 1)"
    )
    parser.add_argument("--ray-rounds", type=int, default=2, help="timed Ray runs per worker count")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurements")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round, no Ray")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale_out_cpu.json", help="result file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.size, args.superpixel, args.shard_size, args.rounds = 8, 8, 4, 4, 1
        args.no_ray = True

    torch.set_num_threads(args.threads)
    model = SmallCNN().eval()
    images = torch.rand(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    mask = block_feature_mask(args.size, args.size, args.superpixel)
    d = int(mask.max()) + 1
    batch_size = 256
    chunk = args.shard_size  # one backselect_records call per shard: the same work in both runs
    kwargs: dict[str, Any] = {"shard_size": args.shard_size, "chunk_size": chunk, "batch_size": batch_size}

    _bare(model, images[:2], mask, chunk, batch_size)  # warm-up (allocator, kernels)
    bare, store, steps = [], [], []
    for _ in range(args.rounds):
        bare.append(_bare(model, images, mask, chunk, batch_size))
        with _store_clock() as spent:
            store.append(_stored(model, images, mask, kwargs))
        steps.append(spent)
    step_seconds = [sum(s.values()) for s in steps]
    overhead = statistics.median(store) / statistics.median(bare) - 1
    paired = [s / b - 1 for s, b in zip(store, bare, strict=True)]
    report: dict[str, Any] = {
        "benchmark": "scale_out",
        "command": " ".join(["python", "benchmarks/bench_scale_out.py", *map(shlex.quote, argv or sys.argv[1:])]),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "workload": {
            "model": "SmallCNN (conv 3->8, conv 8->16 stride 2, pool, linear 16->10)",
            "images": args.images,
            "image_shape": [3, args.size, args.size],
            "features": d,
            "method": "exact",
            "model_evaluations_per_image": d * (d + 1) // 2,
            "shard_size": args.shard_size,
            "batch_size": batch_size,
        },
        "bare_seconds": bare,
        "store_seconds": store,
        "store_overhead_median": overhead,
        "store_overhead_paired": paired,
        "store_steps_seconds": steps,
        "store_steps_overhead": statistics.median(step_seconds) / statistics.median(bare),
        "store_bytes_per_image": _store_bytes(model, images, mask, kwargs) / args.images,
        "local_images_per_second": args.images / statistics.median(store),
    }
    if not args.no_ray:
        report["ray"] = _ray_runs(model, images, mask, kwargs, args.ray_rounds)
    report["machine"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("machine", "workload")}, indent=1))
    return report


def _ray_runs(
    model: nn.Module, images: torch.Tensor, mask: torch.Tensor, kwargs: dict[str, Any], rounds: int
) -> dict[str, Any]:
    import ray

    out: dict[str, Any] = {"ray_version": ray.__version__}
    for workers in (1, 2):
        start = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = time.perf_counter() - start
        warm = _stored(model, images[: 2 * workers * kwargs["shard_size"]], mask, kwargs, backend="ray")
        seconds = [_stored(model, images, mask, kwargs, backend="ray") for _ in range(rounds)]
        ray.shutdown()
        out[f"{workers}_workers"] = {
            "ray_init_seconds": started,
            "warm_up_seconds": warm,
            "seconds": seconds,
            "images_per_second": images.shape[0] / statistics.median(seconds),
        }
    out["speedup_2_over_1"] = out["2_workers"]["images_per_second"] / out["1_workers"]["images_per_second"]
    return out


if __name__ == "__main__":  # pragma: no cover
    main()
