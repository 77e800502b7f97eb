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

This script runs both with the pretrained ResNet20 (or 32, 44, 56) of akamaster/pytorch_resnet_cifar10 on the
real CIFAR-10 images of ``../shared/data``. It is **not executed** when the documentation is built: run it
yourself.

.. code-block:: bash

   python examples/reproduce_table1_cifar10.py                        # small defaults, see below
   python examples/reproduce_table1_cifar10.py --n-test 846 --n-train 4660 --epochs 200 --seeds 0 1 2 3 4 \\
       --device cuda --batch-size 4096 --out table1.json             # every lossless image, the paper's recipe

Options (``--help`` lists them all):

* ``--n-test`` (40), ``--n-train`` (200): test and training images. The shared data hold the first 846 test
  images and 4,660 training images losslessly (``--data-dir`` reads any ``cifar-10-batches-py`` directory,
  for instance the full JPEG-derived one written by ``../shared/data/make_cifar10_jpeg_batches.py``).
* ``--epochs`` (20), ``--seeds`` (0): training of the new models, one per seed and condition, with the paper's
  SGD recipe (Nesterov momentum, learning rate 0.1 divided by 5 at 30/60/80% of the epochs, no augmentation).
  ``--skip-retraining`` runs only the "evaluate on" half.
* ``--method``, ``--k``, ``--shortlist``: backward selection. The default, gradient-screened exact selection
  (``--method gradient --k 0.05 --shortlist 16``), costs a few seconds per image on a CPU core and gives subsets
  as predictive as the paper's; the pure gradient method (``--shortlist 0``) is ten times cheaper and weaker;
  ``--method exact`` is the paper's procedure, 524,800 forward passes per image (a GPU job).
* ``--depth`` (20), ``--fraction`` (0.05), ``--device`` (cpu), ``--batch-size`` (256), ``--out`` (a JSON file).

**Runtime** with the defaults: 15-25 minutes on a CPU, almost all of it backward selection of the 240 images
(measured at 3.5-6 s of CPU time per image, one core); with ``--skip-retraining`` (the 40 test images only) a
few minutes. The scale of the paper (60,000 images, 5 seeds, 200 epochs) needs a GPU. Small training sets give
models far below the paper's accuracy: compare the conditions with each other, not with the paper's numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, normalize, shared_data_dir
from sis_attr.models import cifar_resnet, load_pretrained_cifar_resnet
from sis_attr.overinterpretation import (
    backselect_subsets,
    backward_selection,
    confidence_drop,
    random_subsets,
    retraining_gap,
    subset_accuracy,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reproduce Table 1 of Carter et al. (NeurIPS 2021) on CIFAR-10 with a pretrained ResNet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n-test", type=int, default=40, help="test images")
    parser.add_argument("--n-train", type=int, default=200, help="training images (for the 'train on' half)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of each new model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one new model per seed and condition")
    parser.add_argument("--skip-retraining", action="store_true", help="only the 'evaluate on' half")
    parser.add_argument("--depth", type=int, default=20, choices=[20, 32, 44, 56], help="pretrained ResNet depth")
    parser.add_argument("--method", default="gradient", choices=["gradient", "exact"], help="backward selection")
    parser.add_argument("--k", default="0.05", help="gradient method: features per step (int, fraction, adaptive)")
    parser.add_argument("--shortlist", type=int, default=16, help="gradient method: exact choice among M (0: none)")
    parser.add_argument("--fraction", type=float, default=0.05, help="fraction of pixels kept")
    parser.add_argument("--data-dir", type=Path, default=None, help="a cifar-10-batches-py directory")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=256, help="masked images per forward pass")
    parser.add_argument("--out", type=Path, default=None, help="write the results to this JSON file")
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
    net = load_pretrained_cifar_resnet(weights[0], with_normalization=False, map_location=device)
    stats = CIFAR10_MEAN_STD_AKAMASTER
    x_test, y_test, _ = load_cifar10_batches(data_dir, "test", limit=args.n_test)
    x_test = normalize(x_test, *stats)
    selection_options = {"method": args.method, "batch_size": args.batch_size}
    if args.method == "gradient":
        selection_options |= {"k": parse_k(args.k), "shortlist": args.shortlist or None}
    print(f"Backward selection on {len(x_test)} test images ({selection_options})...")
    sel_test = backward_selection(net, x_test, **selection_options)

    bs_test = backselect_subsets(x_test, sel_test, fraction=args.fraction, labels=y_test)
    rnd_test = random_subsets(x_test, labels=y_test, fraction=args.fraction, generator=1)
    evaluate = subset_accuracy(net, x_test, y_test, backselect=bs_test, random=rnd_test)
    drop = confidence_drop(net, x_test, bs_test)
    results: dict[str, object] = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "evaluate_on": evaluate.to_dict(),
        "confidence_drop": {"mean": drop.mean, "std": drop.std},
    }

    table = [
        ("Full images", "Full images", evaluate.full, "92.23"),
        ("Full images", f"{args.fraction:.0%} BS subsets", evaluate.backselect, "92.48"),
        ("Full images", f"{args.fraction:.0%} random", evaluate.random, "9.99"),
    ]
    if not args.skip_retraining:
        x_train, y_train, _ = load_cifar10_batches(data_dir, "train", limit=args.n_train)
        x_train = normalize(x_train, *stats)
        print(f"Backward selection on {len(x_train)} training images...")
        sel_train = backward_selection(net, x_train, **selection_options)
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
        )
        results["train_on"] = retrained.to_dict()
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

    print(f"\nTable 1, ResNet{args.depth}, {len(x_test)} CIFAR-10 test images ({time.perf_counter() - start:.0f} s)")
    print(f"{'Train on':<26}{'Evaluate on':<18}{'accuracy':>10}{'paper':>9}")
    for train_on, evaluate_on, accuracy, paper in table:
        print(f"{train_on:<26}{evaluate_on:<18}{100 * accuracy:>9.2f}%{paper:>8}%")
    print(f"Mean confidence drop, full image minus BS subset: {drop.mean:+.3f} (std {drop.std:.3f}); paper -0.035")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"Results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
