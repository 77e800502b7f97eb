"""
Reproduce Table 1: 5% backward-selection subsets versus 5% random subsets on CIFAR-10
=====================================================================================

Carter et al. (NeurIPS 2021, Table 1 and Section 4.2) keep 5% of the pixels of every CIFAR-10 image, either the
last 5% of backward selection on the confidence of the predicted class ("BS subsets") or 5% chosen at random,
mask the other 95% with zeros (in normalised space: the mean colour), and ask two questions:

* **Evaluate on.** Does the original model still classify the subsets? For ResNet20 the paper finds 92.48%
  on BS subsets (92.23% on full images) and 9.99% (chance) on random ones.
* **Train on.** Do the subsets carry a real statistical signal? New ResNet20s trained from scratch on the BS
  subsets of the training images reach 92.50% on the BS subsets of the test images; trained on random subsets,
  50.05%.

The same backward selection gives the SIS sizes of Figure 5 (correct versus misclassified images, at several
thresholds), and, with ``--controls``, the two controls the paper's critics asked for: mask-shape leakage
(the subsets' positions filled with another image's pixels, or with one colour) and smoothed SIS (the SIS
dilated by one pixel).

This script runs with the pretrained ResNet20 (or 32, 44, 56) of akamaster/pytorch_resnet_cifar10 on the
real CIFAR-10 images of ``../shared/data``. It is **not executed** when the documentation is built: run it
yourself. The numbers of the reproduction page (:doc:`/reproduction`) come from its JSON output.

.. code-block:: bash

   python examples/reproduce_table1_cifar10.py                        # 8 images, no retraining: a minute
   python examples/reproduce_table1_cifar10.py --n-test 846 --controls --checkpoint-dir ckpt \
       --out examples/results/table1_resnet20.json                    # every lossless test image (CPU: hours)
   python examples/reproduce_table1_cifar10.py --n-test 846 --n-train 4660 --epochs 200 --seeds 0 1 2 \
       --device cuda --batch-size 4096 --out table1.json             # with the "train on" half (GPU)

Options (``--help`` lists them all):

* ``--n-test`` (8), ``--n-train`` (0: no retraining): test and training images. The shared data hold the first
  846 test images and 4,660 training images losslessly (``--data-dir`` reads any ``cifar-10-batches-py``
  directory, for instance the full JPEG-derived one written by ``../shared/data/make_cifar10_jpeg_batches.py``;
  the JSON then says ``"jpeg"``).
* ``--epochs`` (5), ``--seeds`` (0 1 2): training of the new models, one per seed and condition, with the
  paper's SGD recipe (Nesterov momentum, learning rate 0.1 divided by 5 at 30/60/80% of the epochs, no
  augmentation).
* ``--method`` (gradient), ``--k`` (auto), ``--shortlist`` (0: none), ``--threshold`` (0.99): backward
  selection. ``k="auto"``, the automatic gradient schedule (screened forward selection of the SIS), costs about
  660 forward-equivalents per image (under a second on a CPU core for ResNet20) and finds SIS about as small as
  exact BackSelect's (0.74 times on 24 test images); ``--method exact`` is the paper's procedure, 524,800
  forward passes per image (a GPU job).
* ``--thresholds`` (0.5 0.7 0.8 0.9 0.95 0.99): SIS sizes recorded from the same selection (Figure 5).
* ``--controls``: mask-shape leakage and smoothed SIS on the 5% BS subsets and the SIS at ``--threshold``.
* ``--checkpoint-dir``: selection in resumable chunks of ``--chunk`` (50) images; a rerun skips finished
  chunks, and ``--only-finished`` evaluates the images of the finished chunks only (a partial run).
* ``--depth`` (20), ``--fraction`` (0.05), ``--device`` (cpu), ``--batch-size`` (256), ``--out`` (a JSON file
  with the settings, the command, the image count, the hardware and the wall time).
* ``--cifar10-1 DIR`` (the ``datasets/`` folder of github.com/modestyachts/CIFAR-10.1, holding
  ``cifar10.1_v6_data.npy`` and ``cifar10.1_v6_labels.npy``; ``--cifar10-1-version``) and ``--cifar10-c DIR`` (the
  ``CIFAR-10-C`` folder of zenodo.org/record/2535967, holding ``<corruption>.npy`` and ``labels.npy``;
  ``--corruptions`` (all 15), ``--severity`` (1 2 3 4 5)): Table 1's out-of-distribution columns, the same
  measurement on ``--n-ood`` (200; the paper: 2,000) images drawn uniformly at random (``--ood-seed``, 0) from
  each set (for CIFAR-10-C, an equal share from each corruption, over its severities and images), written under
  ``"out_of_distribution"`` in the JSON. Without these options nothing else changes.

The scale of the paper (60,000 images, 5 seeds, 200 epochs) needs a GPU. Small training sets give models far
below the paper's accuracy: compare the conditions with each other, not with the paper's numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sis_attr.datasets import (
    CIFAR10_C_CORRUPTIONS,
    CIFAR10_MEAN_STD_AKAMASTER,
    load_cifar10_1,
    load_cifar10_batches,
    load_cifar10_c,
    normalize,
    shared_data_dir,
)
from sis_attr.exceptions import SISError
from sis_attr.models import cifar_resnet, load_pretrained_cifar_resnet
from sis_attr.overinterpretation import (
    SelectionResult,
    backselect_subsets,
    backward_selection,
    confidence_drop,
    mask_shape_leakage,
    random_subsets,
    retraining_gap,
    smoothed_sis,
    subset_accuracy,
)

PAPER = {"full": 92.23, "backselect": 92.48, "random": 9.99, "confidence_drop": -0.035}
PAPER_TRAIN_ON = {"backselect": (92.50, 0.02), "random": (50.05, 0.18)}
# Table 1, ResNet20, "evaluate on" out of distribution (CIFAR-10.1 v6; a random sample of 2,000 CIFAR-10-C images)
PAPER_OOD = {
    "cifar10_1": {"full": 83.85, "backselect": 82.80, "random": 10.01},
    "cifar10_c": {"full": 69.99, "backselect": 70.65, "random": 10.03},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reproduce Table 1 of Carter et al. (NeurIPS 2021) on CIFAR-10 with a pretrained ResNet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n-test", type=int, default=8, help="test images")
    parser.add_argument("--n-train", type=int, default=0, help="training images for the 'train on' half (0: skip)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of each new model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one new model per seed and condition")
    parser.add_argument("--depth", type=int, default=20, choices=[20, 32, 44, 56], help="pretrained ResNet depth")
    parser.add_argument("--method", default="gradient", choices=["gradient", "exact"], help="backward selection")
    parser.add_argument("--k", default="auto", help="gradient method: features per step (int, fraction, auto...)")
    parser.add_argument("--shortlist", type=int, default=0, help="gradient method: exact choice among M (0: none)")
    parser.add_argument("--threshold", type=float, default=0.99, help="SIS threshold (steers k='auto')")
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.99], help="SIS size thresholds"
    )
    parser.add_argument("--fraction", type=float, default=0.05, help="fraction of pixels kept")
    parser.add_argument("--controls", action="store_true", help="mask-shape leakage and smoothed-SIS controls")
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="resumable selection in chunks here")
    parser.add_argument("--chunk", type=int, default=50, help="images per resumable chunk")
    parser.add_argument("--only-finished", action="store_true", help="evaluate the finished chunks only")
    parser.add_argument("--data-dir", type=Path, default=None, help="a cifar-10-batches-py directory")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=256, help="masked images per forward pass")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="write the results to this JSON file")
    ood = parser.add_argument_group("out of distribution (Table 1's CIFAR-10.1 and CIFAR-10-C columns)")
    ood.add_argument("--cifar10-1", type=Path, default=None, help="folder with the official CIFAR-10.1 .npy pair")
    ood.add_argument("--cifar10-1-version", default="v6", choices=["v6", "v4"], help="CIFAR-10.1 release")
    ood.add_argument("--cifar10-c", type=Path, default=None, help="the official CIFAR-10-C folder")
    ood.add_argument(
        "--corruptions", nargs="+", default=list(CIFAR10_C_CORRUPTIONS), help="CIFAR-10-C corruption files"
    )
    ood.add_argument("--severity", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="CIFAR-10-C severities")
    ood.add_argument("--n-ood", type=int, default=200, help="images drawn from each out-of-distribution set")
    ood.add_argument("--ood-seed", type=int, default=0, help="seed of the random draw of those images")
    args = parser.parse_args(argv)
    if args.n_ood < 1:
        parser.error(f"--n-ood must be at least 1, got {args.n_ood}")
    return args


def parse_k(text: str) -> int | float | str:
    if text in ("adaptive", "auto"):
        return text
    return float(text) if "." in text else int(text)


def hardware(device: torch.device) -> str:
    """One line naming the machine the numbers were measured on."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch thread(s) of {os.cpu_count()} cores (torch {torch.__version__})"


def concatenate(parts: Sequence[SelectionResult]) -> SelectionResult:
    """One SelectionResult from the results of consecutive chunks of images."""
    first = parts[0]
    return SelectionResult(
        records=[record for part in parts for record in part.records],
        targets=torch.cat([part.targets for part in parts]),
        confidences=torch.cat([part.confidences for part in parts]),
        n_features=first.n_features,
        method=first.method,
        feature_mask=first.feature_mask,
        image_shape=first.image_shape,
    )


def chunked_selection(
    model: torch.nn.Module,
    images: torch.Tensor,
    options: dict[str, Any],
    *,
    checkpoint_dir: Path | None,
    chunk: int,
    only_finished: bool = False,
    timings: list[float] | None = None,
) -> SelectionResult | None:
    """Backward selection, resumable in chunks of images under ``checkpoint_dir``.

    Each finished chunk is saved as ``<checkpoint_dir>/<first>-<stop>.pt`` with its compute time beside it
    (``<first>-<stop>.json``); a rerun loads it. With ``only_finished`` nothing is computed: the result covers the
    leading finished chunks (None if there is none). ``timings`` receives the compute seconds of every chunk used,
    measured when it was computed (so a resumed run still reports the cost of its selection).
    """
    if checkpoint_dir is None:
        t0 = time.perf_counter()
        result = backward_selection(model, images, **options)
        if timings is not None:
            timings.append(time.perf_counter() - t0)
        return result
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    finished: dict[int, list[int]] = {}  # first image -> stops of the finished chunks starting there
    for path in checkpoint_dir.glob("*-*.pt"):
        first_text, _, stop_text = path.stem.partition("-")
        if first_text.isdigit() and stop_text.isdigit():
            finished.setdefault(int(first_text), []).append(int(stop_text))
    parts = []
    first = 0
    while first < len(images):
        fitting = [stop for stop in finished.get(first, []) if stop <= len(images)]
        if fitting:  # reuse the longest finished chunk (whatever chunk size wrote it)
            stop = max(fitting)
            parts.append(SelectionResult.load(checkpoint_dir / f"{first:05d}-{stop:05d}.pt"))
            if timings is not None:
                timings.append(_chunk_seconds(checkpoint_dir, f"{first:05d}-{stop:05d}"))
            first = stop
            continue
        if only_finished:
            break
        stop = min(first + chunk, len(images))
        done = checkpoint_dir / f"{first:05d}-{stop:05d}.pt"
        t0 = time.perf_counter()
        part = backward_selection(
            model, images[first:stop], checkpoint_dir=checkpoint_dir / f"{first:05d}-{stop:05d}.shards", **options
        )
        seconds = time.perf_counter() - t0
        done.with_suffix(".json").write_text(json.dumps({"seconds": seconds, "images": stop - first}))
        if timings is not None:
            timings.append(seconds)
        part.save(checkpoint_dir / "partial.tmp")
        (checkpoint_dir / "partial.tmp").replace(done)
        parts.append(part)
        first = stop
    return concatenate(parts) if parts else None


def _chunk_seconds(checkpoint_dir: Path, stem: str) -> float:
    """Compute seconds of a finished chunk: recorded beside it, or from its start and end times on disk."""
    record = checkpoint_dir / f"{stem}.json"
    if record.is_file():
        return float(json.loads(record.read_text(encoding="utf-8"))["seconds"])
    started = checkpoint_dir / f"{stem}.shards" / "feature_mask.npy"  # written once, when the chunk started
    if started.is_file():
        return (checkpoint_dir / f"{stem}.pt").stat().st_mtime - started.stat().st_mtime
    return float("nan")


def mean_ci(values: torch.Tensor) -> dict[str, float | int | None]:
    """Mean and 95% normal confidence interval half-width of the finite values."""
    finite = values[~torch.isnan(values)].double()
    n = len(finite)
    if n == 0:
        return {"n": 0, "mean": None, "ci95": None}
    half = 1.96 * float(finite.std()) / math.sqrt(n) if n > 1 else None
    return {"n": n, "mean": float(finite.mean()), "ci95": half}


def sis_size_table(
    selection: SelectionResult, labels: torch.Tensor, thresholds: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """Figure 5: SIS size (fraction of the features) at each threshold, all / correct / misclassified images."""
    correct = selection.targets == labels
    table: dict[str, dict[str, Any]] = {}
    for t in thresholds:
        sizes = selection.sis_sizes(t) / selection.n_features
        table[f"{t:g}"] = {
            "all": mean_ci(sizes),
            "correct": mean_ci(sizes[correct]),
            "misclassified": mean_ci(sizes[~correct]),
            "empty": int((sizes == 0).sum()),  # the baseline alone reaches the threshold: size 0
            "per_image": [None if math.isnan(v) else round(v, 6) for v in sizes.tolist()],
        }
    return table


def load_out_of_distribution(args: argparse.Namespace) -> dict[str, tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]:
    """The out-of-distribution sets asked for: ``name -> (images in [0, 1], labels, description)``.

    ``--n-ood`` images are drawn uniformly at random (seeded) from CIFAR-10.1, and in equal shares from each
    CIFAR-10-C corruption (over the severities asked for and the test images). The loaders raise
    :class:`~sis_attr.exceptions.DatasetNotFoundError` or :class:`~sis_attr.exceptions.SISValueError` naming the
    expected files when a folder is missing or not in the official format.
    """
    sets: dict[str, tuple[torch.Tensor, torch.Tensor, dict[str, Any]]] = {}
    if args.cifar10_1 is not None:
        try:
            images, labels, _ = load_cifar10_1(args.cifar10_1, version=args.cifar10_1_version)
        except SISError as err:
            v = args.cifar10_1_version
            raise type(err)(
                f"--cifar10-1 must name the folder holding cifar10.1_{v}_data.npy and cifar10.1_{v}_labels.npy (the "
                f"datasets/ folder of https://github.com/modestyachts/CIFAR-10.1). Got {str(args.cifar10_1)!r}: {err}"
            ) from err
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.ood_seed))[: args.n_ood]
        sets["cifar10_1"] = (
            images[pick],
            labels[pick],
            {"set": f"CIFAR-10.1 {args.cifar10_1_version}", "of": len(images), "indices": pick.tolist()},
        )
    if args.cifar10_c is not None:
        corruptions = list(dict.fromkeys(args.corruptions))
        shares = [args.n_ood // len(corruptions) + (k < args.n_ood % len(corruptions)) for k in range(len(corruptions))]
        parts, part_labels, drawn = [], [], {}
        for k, (corruption, share) in enumerate(zip(corruptions, shares, strict=True)):
            try:
                raw, labels, _ = load_cifar10_c(args.cifar10_c, corruption, args.severity, dtype=torch.uint8)
            except SISError as err:
                raise type(err)(
                    f"--cifar10-c must name the CIFAR-10-C folder holding labels.npy and <corruption>.npy for each of "
                    f"--corruptions (https://zenodo.org/record/2535967, CIFAR-10-C.tar). Got "
                    f"{str(args.cifar10_c)!r}, reading {corruption}.npy: {err}"
                ) from err
            if not share:
                continue
            pick = torch.randperm(len(raw), generator=torch.Generator().manual_seed(args.ood_seed + k))[:share]
            parts.append(raw[pick].float() / 255)
            part_labels.append(labels[pick])
            per_severity = len(raw) // len(args.severity)
            drawn[corruption] = [[args.severity[int(i) // per_severity], int(i) % per_severity] for i in pick]
        sets["cifar10_c"] = (
            torch.cat(parts),
            torch.cat(part_labels),
            {"set": "CIFAR-10-C", "severities": list(args.severity), "drawn": drawn},
        )
    return sets


def evaluate_out_of_distribution(
    net: torch.nn.Module,
    name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    description: dict[str, Any],
    options: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any] | None:
    """Table 1's "evaluate on" measurement on one out-of-distribution set (None when no chunk is finished)."""
    x = normalize(images, *CIFAR10_MEAN_STD_AKAMASTER)
    checkpoint_dir = None
    if args.checkpoint_dir is not None:  # one folder per drawn sample, so another draw never reuses its chunks
        tag = hashlib.sha256(json.dumps([description, labels.tolist()]).encode()).hexdigest()[:10]
        checkpoint_dir = args.checkpoint_dir / f"resnet{args.depth}_{name}_{tag}"
    timings: list[float] = []
    print(f"Backward selection on {len(x)} {description['set']} images...")
    selection = chunked_selection(
        net,
        x,
        options,
        checkpoint_dir=checkpoint_dir,
        chunk=args.chunk,
        only_finished=args.only_finished,
        timings=timings,
    )
    if selection is None:
        return None
    n = len(selection)
    x, labels = x[:n], labels[:n]
    bs = backselect_subsets(x, selection, fraction=args.fraction, labels=labels)
    rnd = random_subsets(x, labels=labels, fraction=args.fraction, generator=1)
    evaluate = subset_accuracy(net, x, labels, backselect=bs, random=rnd)
    drop = confidence_drop(net, x, bs)
    sampled = {k: v for k, v in description.items() if k not in ("indices", "drawn")}
    if "drawn" in description:
        sampled["per_corruption"] = {c: len(v) for c, v in description["drawn"].items()}
    return {
        **sampled,
        "images": {"count": n, "requested": len(images), "partial": n < len(images), "seed": args.ood_seed},
        "evaluate_on": evaluate.to_dict(),
        "confidence_drop": {"mean": drop.mean, "std": drop.std},
        "compute_seconds": round(sum(timings), 1),
        "paper": PAPER_OOD[name],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # the directory named by $SIS_ATTR_SHARED_DATA or, in a source checkout, ../shared/data beside it
    root = shared_data_dir(fallback=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    data_dir = args.data_dir or (None if root is None else root / "cifar10" / "cifar-10-batches-py-subset")
    weights = [] if root is None else sorted((root / "weights").glob(f"resnet{args.depth}-*.th"))
    if data_dir is None or not data_dir.is_dir() or not weights:
        print(
            f"The real CIFAR-10 data or the ResNet{args.depth} checkpoint were not found (looked in ../shared/data, "
            "or $SIS_ATTR_SHARED_DATA; see ../shared/data/README.md). Nothing to reproduce without them."
        )
        return 0

    device = torch.device(args.device)
    start = time.perf_counter()
    # The paper masks with 0 in normalised space: the bare network on normalised images, baseline 0.
    net = load_pretrained_cifar_resnet(weights[0], with_normalization=False, map_location=device).eval()
    stats = CIFAR10_MEAN_STD_AKAMASTER
    x_test, y_test, _ = load_cifar10_batches(data_dir, "test", limit=args.n_test)
    x_test = normalize(x_test, *stats)
    try:  # before any selection: a missing or malformed folder is reported at once
        ood_sets = load_out_of_distribution(args)
    except SISError as err:
        print(f"{Path(__file__).name}: error: {err}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {"method": args.method, "batch_size": args.batch_size, "show_progress": False}
    if args.method == "gradient":
        options |= {"k": parse_k(args.k), "shortlist": args.shortlist or None, "threshold": args.threshold}
    print(f"Backward selection on {len(x_test)} test images ({options})...")
    timings: list[float] = []
    sel_test = chunked_selection(
        net,
        x_test,
        options,
        checkpoint_dir=None if args.checkpoint_dir is None else args.checkpoint_dir / f"resnet{args.depth}_test",
        chunk=args.chunk,
        only_finished=args.only_finished,
        timings=timings,
    )
    if sel_test is None:
        print("No finished chunk yet: nothing to evaluate.")
        return 0
    n = len(sel_test)
    x_test, y_test = x_test[:n], y_test[:n]
    selection_seconds = time.perf_counter() - start

    bs_test = backselect_subsets(x_test, sel_test, fraction=args.fraction, labels=y_test)
    rnd_test = random_subsets(x_test, labels=y_test, fraction=args.fraction, generator=1)
    evaluate = subset_accuracy(net, x_test, y_test, backselect=bs_test, random=rnd_test)
    drop = confidence_drop(net, x_test, bs_test)
    # Do the subsets keep the model's own prediction (what backward selection optimises)?
    keep = sel_test.keep_masks(args.fraction)
    on_subsets = []
    with torch.no_grad():
        for i in range(0, n, args.batch_size):
            x = x_test[i : i + args.batch_size].to(device)
            masked = torch.where(keep[i : i + args.batch_size].to(device), x, torch.zeros_like(x))
            on_subsets.append(net(masked).argmax(1).cpu())
    keeps_prediction = float((torch.cat(on_subsets) == sel_test.targets).double().mean())
    at_threshold = sel_test.sis_sizes(args.threshold)
    jpeg = args.data_dir is not None and "jpeg" in str(args.data_dir).lower()
    results: dict[str, Any] = {
        "experiment": "table1",
        "command": "python examples/reproduce_table1_cifar10.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "model": f"ResNet{args.depth} (akamaster pretrained)",
        "images": {
            "count": n,
            "requested": args.n_test,
            "partial": n < args.n_test,
            "source": "JPEG q75" if jpeg else "lossless",
            "set": f"CIFAR-10 test images 0..{n - 1}",
        },
        "selection": {
            "method": args.method,
            "k": args.k if args.method == "gradient" else None,
            "shortlist": args.shortlist or None,
            "threshold": args.threshold,
            "features": "pixel",
            "baseline": "0 in normalised space (mean colour)",
            "wall_seconds_this_run": round(selection_seconds, 1),
            "compute_seconds": round(sum(timings), 1),  # summed over the chunks, when each was computed
            "seconds_per_image": round(sum(timings) / n, 2),
        },
        "hardware": hardware(device),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "paper": PAPER,
        "evaluate_on": evaluate.to_dict(),
        "confidence_drop": {"mean": drop.mean, "std": drop.std},
        "backselect_keeps_prediction": keeps_prediction,
        "sis_larger_than_fraction": {
            "count": int((at_threshold > args.fraction * sel_test.n_features).sum()),
            "of": int((~torch.isnan(at_threshold)).sum()),
            "threshold": args.threshold,
        },
        "sis_sizes": sis_size_table(sel_test, y_test, args.thresholds),
    }

    table = [
        ("Full images", "Full images", evaluate.full, "92.23"),
        ("Full images", f"{args.fraction:.0%} BS subsets", evaluate.backselect, "92.48"),
        ("Full images", f"{args.fraction:.0%} random", evaluate.random, "9.99"),
    ]
    if args.controls:
        leak = mask_shape_leakage(net, x_test, y_test, sel_test, fraction=args.fraction, generator=0)
        smooth = smoothed_sis(net, x_test, sel_test, threshold=args.threshold, generator=0)
        smoothed = smooth.to_dict()
        smoothed.pop("confidences")  # per-image confidences: large, and not on the page
        results["controls"] = {"mask_shape_leakage": leak.to_dict(), "smoothed_sis": smoothed}
    if args.n_train:
        x_train, y_train, _ = load_cifar10_batches(data_dir, "train", limit=args.n_train)
        x_train = normalize(x_train, *stats)
        print(f"Backward selection on {len(x_train)} training images...")
        sel_train = chunked_selection(
            net,
            x_train,
            options,
            checkpoint_dir=None if args.checkpoint_dir is None else args.checkpoint_dir / f"resnet{args.depth}_train",
            chunk=args.chunk,
        )
        assert sel_train is not None  # every chunk is computed when only_finished is False
        train_subsets = {
            "backselect": backselect_subsets(x_train, sel_train, fraction=args.fraction, labels=y_train),
            "random": random_subsets(x_train, labels=y_train, fraction=args.fraction, generator=2),
        }
        test_subsets = {"backselect": bs_test, "random": rnd_test}
        print(f"Training {3 * len(args.seeds)} new ResNet{args.depth}s for {args.epochs} epochs each...")
        retrained = retraining_gap(
            lambda: cifar_resnet(args.depth),
            train_subsets,
            test_subsets,
            full=((x_train, y_train), (x_test, y_test)),
            seeds=args.seeds,
            epochs=args.epochs,
            device=device,
            show_progress=False,
        )
        results["train_on"] = retrained.to_dict() | {"n_train": len(x_train), "epochs": args.epochs}
        results["paper_train_on"] = PAPER_TRAIN_ON
        table += [
            ("Full images (retrained)", "Full images", retrained.mean("full"), "92.23"),
            (
                f"{args.fraction:.0%} BS subsets",
                f"{args.fraction:.0%} BS subsets",
                retrained.mean("backselect"),
                "92.50",
            ),
            (f"{args.fraction:.0%} random", f"{args.fraction:.0%} random", retrained.mean("random"), "50.05"),
        ]

    ood_results = {}
    for name, (images, labels, description) in ood_sets.items():
        found = evaluate_out_of_distribution(net, name, images, labels, description, options, args)
        if found is None:
            print(f"{description['set']}: no finished chunk yet, left out.")
            continue
        ood_results[name] = found
    if ood_results:
        results["out_of_distribution"] = ood_results

    wall = time.perf_counter() - start
    results["wall_seconds"] = round(wall, 1)
    print(f"\nTable 1, ResNet{args.depth}, {n} CIFAR-10 test images ({wall:.0f} s)")
    print(f"{'Train on':<26}{'Evaluate on':<18}{'accuracy':>10}{'paper':>9}")
    for train_on, evaluate_on, accuracy, paper in table:
        print(f"{train_on:<26}{evaluate_on:<18}{100 * accuracy:>9.2f}%{paper:>8}%")
    print(f"Mean confidence drop, full image minus BS subset: {drop.mean:+.3f} (std {drop.std:.3f}); paper -0.035")
    for name, found in ood_results.items():
        ev = found["evaluate_on"]
        print(
            f"{found['set']}, {found['images']['count']} images: full {100 * ev['full']:.2f}% "
            f"(paper {PAPER_OOD[name]['full']}), {args.fraction:.0%} BS {100 * ev['backselect']:.2f}% "
            f"(paper {PAPER_OOD[name]['backselect']}), random {100 * ev['random']:.2f}% "
            f"(paper {PAPER_OOD[name]['random']}); confidence drop {found['confidence_drop']['mean']:+.3f}"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"Results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
