"""Exact BackSelect references on real CIFAR-10 test images, computed once and stored for every later comparison.

For the pretrained ResNet20 and the paper's masking (removed pixels take the mean colour, 0 after normalisation),
exact BackSelect is run on the first ``--images`` test images that the model classifies with probability at least
``--threshold`` (images below it have no SIS at that threshold and are listed as skipped). Each image's complete
record (removal order and the log-probability after every removal) is written as soon as it is done to
``benchmarks/results/exact_references/<features>/test_<index>.json``; rerunning the command skips images already
stored, so the run can be interrupted and resumed. ``benchmarks/bench_sis_schedule.py`` compares every schedule
against these files.

Cost: ``d (d + 1) / 2`` forward rows per image: 32,896 for 2x2-pixel features (``--features superpixels``, about
20-25 s per image on one CPU thread) and 524,800 for single pixels (``--features pixels``, 5-8 minutes; the
first four took 23-40 minutes while other jobs shared the machine).

Examples::

    python benchmarks/exact_references.py --features superpixels --images 32 --threads 1
    python benchmarks/exact_references.py --features pixels --images 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

RESULTS = Path(__file__).resolve().parent / "results" / "exact_references"
#: side of the square pixel block that forms one feature
BLOCK = {"pixels": 1, "superpixels": 2}


def block_feature_mask(h: int, w: int, size: int) -> Tensor:
    """``(1, 1, h, w)`` feature ids of ``size x size`` pixel blocks, row-major."""
    cols = -(-w // size)
    return ((torch.arange(h)[:, None] // size) * cols + torch.arange(w)[None, :] // size).reshape(1, 1, h, w)


def load_cifar_resnet20(n: int | None = None) -> tuple[nn.Module, Tensor, Tensor]:
    """The pretrained ResNet20 (without its normalisation layer) and the normalised lossless test images."""
    from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, normalize, shared_data_dir
    from sis_attr.models import load_pretrained_cifar_resnet

    root = shared_data_dir(fallback=Path(__file__).resolve().parents[2] / "shared" / "data")
    if root is None:
        sys.exit("../shared/data is not available: the references need the real test images and ResNet20 weights")
    images, labels, _ = load_cifar10_batches(root / "cifar10" / "cifar-10-batches-py-subset", "test", limit=n)
    model = load_pretrained_cifar_resnet(20, weights_dir=root / "weights", with_normalization=False)
    return model.eval(), normalize(images, *CIFAR10_MEAN_STD_AKAMASTER), labels


def reference_path(features: str, index: int, root: Path = RESULTS) -> Path:
    return root / features / f"test_{index:04d}.json"


def load_references(features: str, root: Path = RESULTS) -> list[dict[str, Any]]:
    """Every stored reference of ``features``, by test index."""
    return [json.loads(p.read_text()) for p in sorted((root / features).glob("test_*.json"))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", choices=sorted(BLOCK), default="superpixels")
    p.add_argument("--images", type=int, default=32, help="how many confident test images to reference")
    p.add_argument("--threshold", type=float, default=0.99, help="images below this confidence are skipped")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sis_attr.functional import backselect

    model, x, labels = load_cifar_resnet20()
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)
    conf, pred = probs.max(1)
    fmask = block_feature_mask(x.shape[2], x.shape[3], BLOCK[args.features])
    d = int(fmask.max()) + 1
    out = args.out_dir / args.features
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    for i in range(x.shape[0]):
        if done >= args.images:
            break
        if float(conf[i]) < args.threshold:
            continue
        done += 1
        path = reference_path(args.features, i, args.out_dir)
        if path.exists():
            continue
        rows = 0

        def counted(z: Tensor) -> Tensor:
            nonlocal rows
            rows += int(z.shape[0])
            return model(z)

        t0 = time.perf_counter()
        with torch.no_grad():
            (record,) = backselect(
                counted, x[i : i + 1], target=int(pred[i]), feature_mask=fmask, batch_size=args.batch_size
            )
        wall = time.perf_counter() - t0
        j = record.sis_index(args.threshold)
        entry = {
            "test_index": i,
            "label": int(labels[i]),
            "target": int(pred[i]),
            "confidence": float(conf[i]),
            "features": args.features,
            "d": d,
            "order": record.order.tolist(),
            "log_prob": [float(v) for v in record.values],
            "sis_size_at_threshold": None if j is None else d - j,
            "threshold": args.threshold,
            "forward_rows": rows,
            "wall_s": wall,
            "threads": args.threads,
            "torch": torch.__version__,
            "platform": platform.platform(),
            "command": "python benchmarks/exact_references.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(path)
        print(f"[{args.features}] test {i}: SIS {entry['sis_size_at_threshold']} of {d}, {rows} rows, {wall:.0f}s")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
