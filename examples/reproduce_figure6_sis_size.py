"""
Reproduce Figure 6: mean SIS size against threshold, single models and their ensemble
=====================================================================================

Carter et al. (NeurIPS 2021, Section 4.6 and Figure 6) find that more accurate CIFAR-10 models have larger
sufficient input subsets (SIS), and that a mean-logit ensemble is both more accurate and has larger SIS than
its members: it needs the evidence of several independently trained feature detectors at once, which
mitigates overinterpretation.

This script measures the mean SIS size (as a fraction of the 1024 pixels) at several thresholds for the
pretrained CIFAR-10 ResNet20, ResNet32, ResNet44 and ResNet56 of akamaster/pytorch_resnet_cifar10 and for
their mean-logit ensemble (:class:`~sis_attr.overinterpretation.MeanLogitEnsemble`), on the real CIFAR-10 test images of
``../shared/data``, and plots the curves with their 95% confidence intervals and the models' accuracies.
It is **not executed** when the documentation is built: run it yourself.

.. code-block:: bash

   python examples/reproduce_figure6_sis_size.py                          # small defaults, see below
   python examples/reproduce_figure6_sis_size.py --n-images 846 --device cuda --batch-size 4096 \\
       --out figure6.png --json figure6.json                            # every lossless test image

Options (``--help`` lists them all):

* ``--n-images`` (16): test images, the same for every model (the shared data hold the first 846 test images
  losslessly).
* ``--depths`` (20 32 44 56): the ensemble members, each also shown alone; ``--no-ensemble`` leaves the
  ensemble out.
* ``--thresholds`` (0.5 0.7 0.8 0.9 0.95 0.99): SIS thresholds. One backward selection per model and image
  gives the SIS at every threshold.
* ``--method``, ``--k``, ``--shortlist``: backward selection. The default, gradient-screened exact selection
  (``--method gradient --k 0.05 --shortlist 16``), finds SIS close to the exact method's size; the pure
  gradient method (``--shortlist 0``) is about ten times cheaper but its SIS are larger. ``--method exact`` is
  the paper's procedure (524,800 forward passes per image and model: a GPU job).
* ``--device`` (cpu), ``--batch-size`` (256), ``--out`` (figure file, ``figure6.png``), ``--json`` (numbers).

**Runtime** with the defaults: 15-25 minutes on a CPU (measured at about one minute of CPU time per image for
the five models, one core). The ensemble costs as much as its four members together, and ResNet56 about three
times as much as ResNet20. With so few images the confidence intervals are wide: the paper used the 10,000
test images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, normalize, shared_data_dir
from sis_attr.models import load_pretrained_cifar_resnet
from sis_attr.overinterpretation import MeanLogitEnsemble, backward_selection, mean_sis_size_curve
from sis_attr.training import evaluate_accuracy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reproduce Figure 6 of Carter et al. (NeurIPS 2021): mean SIS size against threshold for "
        "pretrained CIFAR-10 ResNets and their mean-logit ensemble.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n-images", type=int, default=16, help="CIFAR-10 test images")
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 32, 44, 56], help="ResNet depths")
    parser.add_argument("--no-ensemble", action="store_true", help="leave the mean-logit ensemble out")
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.99], help="SIS thresholds"
    )
    parser.add_argument("--method", default="gradient", choices=["gradient", "exact"], help="backward selection")
    parser.add_argument("--k", default="0.05", help="gradient method: features per step (int, fraction, adaptive)")
    parser.add_argument("--shortlist", type=int, default=16, help="gradient method: exact choice among M (0: none)")
    parser.add_argument("--data-dir", type=Path, default=None, help="a cifar-10-batches-py directory")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=256, help="masked images per forward pass")
    parser.add_argument("--out", type=Path, default=Path("figure6.png"), help="where to save the figure")
    parser.add_argument("--json", type=Path, default=None, help="write the curves to this JSON file")
    return parser.parse_args(argv)


def parse_k(text: str) -> int | float | str:
    if text == "adaptive":
        return text
    return float(text) if "." in text else int(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the directory named by $SIS_ATTR_SHARED_DATA or, in a source checkout, ../shared/data beside it
    root = shared_data_dir(fallback=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    data_dir = args.data_dir or (None if root is None else root / "cifar10" / "cifar-10-batches-py-subset")
    checkpoints = {d: [] if root is None else sorted((root / "weights").glob(f"resnet{d}-*.th")) for d in args.depths}
    missing = [d for d, found in checkpoints.items() if not found]
    if data_dir is None or not data_dir.is_dir() or missing:
        print(
            "The real CIFAR-10 data or the ResNet checkpoints were not found (looked in ../shared/data, or "
            "$SIS_ATTR_SHARED_DATA; see ../shared/data/README.md). Nothing to reproduce without them."
        )
        return 0

    device = torch.device(args.device)
    start = time.perf_counter()
    # The paper masks with 0 in normalised space: the bare networks on normalised images, baseline 0.
    models: dict[str, torch.nn.Module] = {
        f"ResNet{d}": load_pretrained_cifar_resnet(checkpoints[d][0], with_normalization=False, map_location=device)
        for d in args.depths
    }
    if not args.no_ensemble and len(models) > 1:
        models["Ensemble (mean logits)"] = MeanLogitEnsemble(list(models.values())).eval()
    images, labels, _ = load_cifar10_batches(data_dir, "test", limit=args.n_images)
    images = normalize(images, *CIFAR10_MEAN_STD_AKAMASTER)

    options = {"method": args.method, "batch_size": args.batch_size}
    if args.method == "gradient":
        options |= {"k": parse_k(args.k), "shortlist": args.shortlist or None}
    selections, accuracies = {}, {}
    for name, model in models.items():
        t0 = time.perf_counter()
        accuracies[name] = evaluate_accuracy(model, images, labels)
        print(f"{name}: accuracy {accuracies[name]:.3f} on {len(images)} images; backward selection ({options})...")
        selections[name] = backward_selection(model, images, **options)
        print(f"{name}: done in {time.perf_counter() - t0:.0f} s")

    curve = mean_sis_size_curve(selections, args.thresholds, accuracies=accuracies)
    print(f"\nMean SIS size (% of the {selections[next(iter(selections))].n_features} pixels) per threshold")
    print(f"{'model':<26}" + "".join(f"{t:>8}" for t in curve.thresholds))
    for name, mean in curve.mean.items():
        print(f"{name:<26}" + "".join(f"{100 * float(v):>7.2f}%" for v in mean))
    print(f"({time.perf_counter() - start:.0f} s in all)")

    fig = Figure(figsize=(7, 4.5))  # no pyplot: the script only writes the file
    ax = fig.add_subplot()
    curve.plot(ax=ax)
    top = max(float(m[~m.isnan()].max()) for m in curve.mean.values() if (~m.isnan()).any())
    ax.set_ylim(0, min(1.0, 2 * top))  # confidence intervals of a few images can be very wide
    ax.set_title(f"Mean SIS size on {len(images)} CIFAR-10 test images (accuracy in the legend)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"Figure written to {args.out}")
    if args.json is not None:
        args.json.write_text(json.dumps(curve.to_dict(), indent=1), encoding="utf-8")
        print(f"Curves written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
