"""Measure the run times quoted in the documentation and write them to ``docs/runtimes.csv``.

The page "Choosing parameters" (``docs/choosing_parameters.rst``) shows ``docs/runtimes.csv`` as a table; the
README and the How-to guide quote a few of its rows. Rerun this script after a change that affects speed (a new
default ``k``, a faster engine) and commit the new CSV::

    python docs/scripts/measure_runtimes.py                # about 8 minutes of CPU time, one thread
    python docs/scripts/measure_runtimes.py --quick        # fewer images per case

Every case runs on one CPU thread (``torch.set_num_threads(1)``) and reports the CPU seconds per image
(``time.process_time``), which is what one idle core takes; the wall time on a busy machine is longer. The
model rows count the images the model was run on (masked candidates included), which does not depend on the
machine: the time on yours is about (rows per image) x (your model's time per image).

It needs the real CIFAR-10 images and the pretrained ResNet20 (``$SIS_ATTR_SHARED_DATA`` or ``../shared/data``
beside the checkout); without them only the digits cases run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
OUT = DOCS / "runtimes.csv"
THRESHOLD = 0.99


class CountingModel(nn.Module):
    """Counts the images (rows) the wrapped model is run on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: Tensor) -> Tensor:
        self.rows += int(x.shape[0])
        return self.model(x)


@dataclass
class Row:
    case: str
    model: str
    features: str
    method: str
    images: int
    rows_per_image: float
    cpu_s_per_image: float
    mean_sis_size: float
    n_features: int
    note: str = ""

    def as_csv(self) -> list[str]:
        return [
            f"{self.model}, {self.case}",
            self.features,
            self.method,
            str(self.images),
            f"{self.rows_per_image:,.0f}",
            _seconds(self.cpu_s_per_image),
            "n/a" if math.isnan(self.mean_sis_size) else f"{self.mean_sis_size:.1f}",
            "n/a" if math.isnan(self.mean_sis_size) else f"{100 * self.mean_sis_size / self.n_features:.1f}%",
            self.note or "measured",
        ]


HEADER = [
    "model, data",
    "features",
    "method",
    "images",
    "model rows / image",
    "CPU time / image",
    "mean SIS (features)",
    "mean SIS (% of input)",
    "source",
]


def _seconds(s: float) -> str:
    if s < 0.1:
        return f"{1000 * s:.1f} ms"
    if s < 1:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.0f} min"


def _time(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def _selection_row(
    case: str,
    model_name: str,
    model: nn.Module,
    images: Tensor,
    features: str,
    feature_mask: Any,
    baselines: Any,
    method: str,
    note: str = "",
    **options: Any,
) -> Row:
    from sis_attr.overinterpretation import backward_selection

    counting = CountingModel(model).eval()

    def run() -> Any:
        return backward_selection(
            counting,
            images,
            method=method,  # type: ignore[arg-type]
            baselines=baselines,
            feature_mask=feature_mask,
            show_progress=False,
            **({"threshold": THRESHOLD} if method == "gradient" else {}),  # k="auto" steers by it, as in audit
            **options,
        )

    # the measured batch size is probed once per model and input shape (then cached): a first, untimed run pays
    # for it, as a session that explains more than one batch does, so rows and times are those of the selection
    run()
    counting.rows = 0
    selection, cpu = _time(run)
    sizes = selection.sis_sizes(THRESHOLD).float()
    label = method if method == "exact" else "gradient " + ", ".join(f"{k}={v}" for k, v in options.items())
    n = int(images.shape[0])
    print(f"{case}: {label} {cpu / n:.2f} s/image", flush=True)
    return Row(
        case=case,
        model=model_name,
        features=features,
        method=label,
        images=n,
        rows_per_image=counting.rows / n,
        cpu_s_per_image=cpu / n,
        mean_sis_size=float(sizes.nanmean()) if bool((~sizes.isnan()).any()) else float("nan"),
        n_features=selection.n_features,
        note=note,
    )


def _confident(model: nn.Module, images: Tensor, n: int) -> Tensor:
    from sis_attr.training import predict_proba

    conf = predict_proba(model, images).max(dim=1).values
    return images[conf >= THRESHOLD][:n]


def cifar_rows(n: int) -> list[Row]:
    from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, shared_data_dir
    from sis_attr.models import load_pretrained_cifar_resnet
    from sis_attr.overinterpretation import block_feature_mask

    root = shared_data_dir(fallback=ROOT.parent / "shared" / "data")
    if root is None:
        print("CIFAR-10 data not found: skipping the ResNet20 cases", file=sys.stderr)
        return []
    images, _, _ = load_cifar10_batches(root / "cifar10" / "cifar-10-batches-py-subset", "test", limit=64)
    model = load_pretrained_cifar_resnet(20, weights_dir=root / "weights").eval()
    x = _confident(model, images, n)
    mean = torch.tensor(CIFAR10_MEAN_STD_AKAMASTER[0]).view(1, 3, 1, 1)
    rows: list[Row] = []

    # the model's speed: everything below is a multiple of it
    batch = x[:1].expand(256, -1, -1, -1).contiguous()
    with torch.no_grad():
        model(batch)
        _, cpu = _time(lambda: [model(batch) for _ in range(4)])
    rows.append(Row("CIFAR-10", "ResNet20", "(forward pass)", "batches of 256", 1024, 1, cpu / 1024, float("nan"), 1))
    name = "ResNet20"
    rows.append(
        _selection_row(
            "CIFAR-10",
            name,
            model,
            x,
            "4x4 superpixels (64)",
            block_feature_mask(32, 32, 4),
            mean,
            "exact",
        )
    )
    rows.append(
        _selection_row(
            "CIFAR-10",
            name,
            model,
            x[:1],
            "2x2 superpixels (256)",
            block_feature_mask(32, 32, 2),
            mean,
            "exact",
        )
    )
    for options in ({"k": 0.05, "shortlist": 16}, {"k": "auto"}, {"k": 0.05}, {"k": 16}):
        rows.append(_selection_row("CIFAR-10", name, model, x, "pixels (1024)", "pixel", mean, "gradient", **options))
    rows += _benchmark_rows()
    return rows


def _benchmark_rows() -> list[Row]:
    """The slow cases, from the benchmark records of ``benchmarks/results`` (too slow to rerun here)."""
    path = ROOT / "benchmarks" / "results" / "gradient_sis_exact_cpu_pixels24.json"
    exact_path = ROOT / "benchmarks" / "results" / "gradient_sis_exact_cpu_pixels2.json"
    rows: list[Row] = []
    for source, wanted in ((exact_path, {"exact"}), (path, {"hybrid M=16 k=1", "gradient k=1"})):
        if not source.is_file():
            continue
        record = json.loads(source.read_text(encoding="utf-8"))
        for m in record["methods"]:
            if m["method"] not in wanted:
                continue
            method = {
                "exact": "exact",
                "hybrid M=16 k=1": "gradient k=1, shortlist=16",
                "gradient k=1": "gradient k=1",
            }[m["method"]]
            rows.append(
                Row(
                    "CIFAR-10",
                    "ResNet20",
                    "pixels (1024)",
                    method,
                    int(record["images"]),
                    m["forward_rows"] / record["images"] if "forward_rows" in m else 524_800,
                    m["per_image_s"],
                    float(m["mean_sis_size"]),
                    1024,
                    f"benchmark record ({source.stem.rsplit('_', 1)[-1]})",
                )
            )
    return rows


def digits_rows(n: int) -> list[Row]:
    from sis_attr.datasets import load_digits_images
    from sis_attr.models import DigitsCNN
    from sis_attr.training import train_classifier

    images, labels, _ = load_digits_images()
    model, _ = train_classifier(DigitsCNN(), (images[:1500], labels[:1500]), epochs=4, seed=0, show_progress=False)
    model.eval()
    x = _confident(model, images[1500:], n)
    return [_selection_row("digits", "DigitsCNN", model, x, "pixels (64)", "pixel", 0.0, "exact")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images per case")
    parser.add_argument("--out", type=Path, default=OUT, help="CSV to write (default: docs/runtimes.csv)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n = 2 if args.quick else 4
    rows = digits_rows(8 if not args.quick else 4) + cifar_rows(n)
    with args.out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(row.as_csv() for row in rows)
    meta = args.out.with_suffix(".json")
    meta.write_text(
        json.dumps(
            {
                "written": time.strftime("%Y-%m-%d"),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(),
                "threads": 1,
                "command": "python docs/scripts/measure_runtimes.py" + (" --quick" if args.quick else ""),
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {args.out} and {meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
