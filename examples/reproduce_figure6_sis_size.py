"""
Reproduce Figure 6 and the transfer of Section 4.1: SIS size per model, their ensemble, subsets across models
=============================================================================================================

Carter et al. (NeurIPS 2021, Section 4.6 and Figure 6) find that more accurate CIFAR-10 models have larger
sufficient input subsets (SIS), and that a mean-logit ensemble is both more accurate and has larger SIS than
its members: it needs the evidence of several independently trained feature detectors at once, which
mitigates overinterpretation. Section 4.1 adds that the 5% backward-selection subsets of one model do not
transfer: those of a ResNet18 (94.8% accuracy on its own subsets) are classified at 27.6-29.2% by other models.

This script measures, for the pretrained CIFAR-10 ResNet20, ResNet32, ResNet44 and ResNet56 of
akamaster/pytorch_resnet_cifar10 and for their mean-logit ensemble
(:class:`~sis_attr.overinterpretation.MeanLogitEnsemble`), on the real CIFAR-10 test images of
``../shared/data``:

* the mean SIS size (as a fraction of the 1024 pixels) at several thresholds, with 95% confidence intervals
  and the models' accuracies (Figure 6);
* the 4x4 transfer matrix: each depth's 5% backward-selection subsets classified by every depth
  (:func:`~sis_attr.overinterpretation.transfer_matrix`).

It is **not executed** when the documentation is built: run it yourself. The reproduction page
(:doc:`/reproduction`) is generated from its JSON output.

.. code-block:: bash

   python examples/reproduce_figure6_sis_size.py                 # 4 images, ensemble on 2: about a minute
   python examples/reproduce_figure6_sis_size.py --n-images 200 --ensemble-images 50 --checkpoint-dir ckpt \
       --json examples/results/figure6_transfer.json --out figure6.png     # CPU: hours; resumable
   python examples/reproduce_figure6_sis_size.py --n-images 846 --device cuda --batch-size 4096 \
       --checkpoint-dir ckpt --json figure6.json                          # every lossless image (GPU)

Options (``--help`` lists them all):

* ``--n-images`` (4): test images, the same for every model (the shared data hold the first 846 test images
  losslessly). ``--ensemble-images`` (2; 0: all): the ensemble costs as much as its four members together, so
  it may run on the first images only; the JSON then also holds every model's curve on those images.
* ``--depths`` (20 32 44 56): the ensemble members, each also shown alone; ``--no-ensemble`` leaves the
  ensemble out.
* ``--thresholds`` (0.5 0.7 0.8 0.9 0.95 0.99): SIS thresholds. One backward selection per model and image
  gives the SIS at every threshold.
* ``--method`` (gradient), ``--k`` (auto), ``--shortlist`` (0), ``--threshold`` (0.99): backward selection,
  as in ``reproduce_table1_cifar10.py``; ``--method exact`` is the paper's procedure (a GPU job).
* ``--checkpoint-dir``, ``--chunk`` (50), ``--only-finished``: resumable selection in chunks of images, shared
  with ``reproduce_table1_cifar10.py`` (the same directory reuses its selections); ``--only-finished``
  evaluates the images every depth has finished (the ensemble's first ``--ensemble-images`` of them are
  still computed).
* ``--device`` (cpu), ``--batch-size`` (256), ``--out`` (figure file), ``--json`` (numbers).

ResNet56 costs about three times as much as ResNet20. With few images the confidence intervals are wide: the
paper used the 10,000 test images.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, normalize, shared_data_dir
from sis_attr.models import load_pretrained_cifar_resnet
from sis_attr.overinterpretation import (
    MeanLogitEnsemble,
    SelectionResult,
    backselect_subsets,
    mean_sis_size_curve,
    transfer_matrix,
)
from sis_attr.training import evaluate_accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_table1_cifar10 import chunked_selection, hardware, parse_k

# Section 4.1: 5% BS subsets of one ResNet18 (94.8% on its own subsets) under other models
PAPER_TRANSFER = {"source": "ResNet18", "self": 94.8, "ResNet18 replicate": 27.6, "ResNet20": 29.2, "VGG16": 27.5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reproduce Figure 6 of Carter et al. (NeurIPS 2021): mean SIS size against threshold for "
        "pretrained CIFAR-10 ResNets and their mean-logit ensemble, and the transfer matrix of their subsets.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n-images", type=int, default=4, help="CIFAR-10 test images")
    parser.add_argument("--ensemble-images", type=int, default=2, help="images for the ensemble (0: all)")
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 32, 44, 56], help="ResNet depths")
    parser.add_argument("--no-ensemble", action="store_true", help="leave the mean-logit ensemble out")
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.99], help="SIS thresholds"
    )
    parser.add_argument("--method", default="gradient", choices=["gradient", "exact"], help="backward selection")
    parser.add_argument("--k", default="auto", help="gradient method: features per step (int, fraction, auto...)")
    parser.add_argument("--shortlist", type=int, default=0, help="gradient method: exact choice among M (0: none)")
    parser.add_argument("--threshold", type=float, default=0.99, help="SIS threshold steering k='auto'")
    parser.add_argument("--fraction", type=float, default=0.05, help="fraction of pixels in the transfer subsets")
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="resumable selection in chunks here")
    parser.add_argument("--chunk", type=int, default=50, help="images per resumable chunk")
    parser.add_argument("--only-finished", action="store_true", help="use the images every model finished")
    parser.add_argument("--data-dir", type=Path, default=None, help="a cifar-10-batches-py directory")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=256, help="masked images per forward pass")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="where to save the figure")
    parser.add_argument("--json", type=Path, default=None, help="write the curves to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
    members: dict[str, torch.nn.Module] = {
        f"ResNet{d}": load_pretrained_cifar_resnet(
            checkpoints[d][0], with_normalization=False, map_location=device
        ).eval()
        for d in args.depths
    }
    images, labels, _ = load_cifar10_batches(data_dir, "test", limit=args.n_images)
    images = normalize(images, *CIFAR10_MEAN_STD_AKAMASTER)

    options: dict[str, Any] = {"method": args.method, "batch_size": args.batch_size, "show_progress": False}
    if args.method == "gradient":
        options |= {"k": parse_k(args.k), "shortlist": args.shortlist or None, "threshold": args.threshold}

    def select(name: str, model: torch.nn.Module, x: torch.Tensor, only_finished: bool) -> SelectionResult | None:
        where = None if args.checkpoint_dir is None else args.checkpoint_dir / f"{name.lower()}_test"
        timings: list[float] = []
        sel = chunked_selection(
            model, x, options, checkpoint_dir=where, chunk=args.chunk, only_finished=only_finished, timings=timings
        )
        seconds[name] = sum(timings)  # compute time of the chunks used, as each was computed
        print(f"{name}: {0 if sel is None else len(sel)} images selected ({seconds[name]:.0f} s)")
        return sel

    seconds: dict[str, float] = {}
    found = {name: select(name, model, images, args.only_finished) for name, model in members.items()}
    n = min(0 if sel is None else len(sel) for sel in found.values())
    if n == 0:
        print("No image finished by every model: nothing to evaluate.")
        return 0
    images, labels = images[:n], labels[:n]
    selections = {name: sel.select(range(n)) for name, sel in found.items() if sel is not None}
    accuracies = {name: evaluate_accuracy(model, images, labels) for name, model in members.items()}

    n_ensemble = 0
    common: dict[str, SelectionResult] = {}
    ens_sel = None
    ensemble_name = "Ensemble (mean logits)"
    if not args.no_ensemble and len(members) > 1:
        ensemble = MeanLogitEnsemble(list(members.values())).eval()
        n_ensemble = n if args.ensemble_images <= 0 else min(n, args.ensemble_images)
        tag = "ensemble" + "_".join(str(d) for d in args.depths)
        ens_sel = select(tag, ensemble, images[:n_ensemble], False)  # computed even with --only-finished
        n_ensemble = 0 if ens_sel is None else len(ens_sel)
    curve = mean_sis_size_curve(selections, args.thresholds, accuracies=accuracies)
    results: dict[str, Any] = {
        "experiment": "figure6_transfer",
        "command": "python examples/reproduce_figure6_sis_size.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "models": list(members) + ([ensemble_name] if n_ensemble else []),
        "images": {"count": n, "ensemble_count": n_ensemble, "source": "lossless", "requested": args.n_images},
        "selection": {
            "method": args.method,
            "k": args.k if args.method == "gradient" else None,
            "threshold": args.threshold,
            "features": "pixel",
            "baseline": "0 in normalised space (mean colour)",
        },
        "hardware": hardware(device),
        "selection_compute_seconds": {name: round(s, 1) for name, s in seconds.items()},
        "curves": curve.to_dict(),
    }
    if n_ensemble:
        assert ens_sel is not None
        sub = images[:n_ensemble], labels[:n_ensemble]
        common = {name: sel.select(range(n_ensemble)) for name, sel in selections.items()}
        common[ensemble_name] = ens_sel
        common_acc = {name: evaluate_accuracy(model, *sub) for name, model in members.items()}
        common_acc[ensemble_name] = evaluate_accuracy(ensemble, *sub)
        results["curves_with_ensemble"] = mean_sis_size_curve(common, args.thresholds, accuracies=common_acc).to_dict()

    subsets = {
        name: backselect_subsets(images, sel, fraction=args.fraction, labels=labels) for name, sel in selections.items()
    }
    transfer = transfer_matrix(members, subsets, labels)
    results["transfer"] = transfer.to_dict() | {"n_images": n, "fraction": args.fraction}
    results["paper_transfer"] = PAPER_TRANSFER

    print(f"\nMean SIS size (% of the {selections[next(iter(selections))].n_features} pixels), {n} images")
    print(f"{'model':<26}" + "".join(f"{t:>8}" for t in curve.thresholds))
    for name, mean in curve.mean.items():
        print(f"{name:<26}" + "".join(f"{100 * float(v):>7.2f}%" for v in mean))
    print(f"\nTransfer: accuracy (%) of each model (columns) on each model's {args.fraction:.0%} BS subsets (rows)")
    print(f"{'subsets of':<12}" + "".join(f"{m:>10}" for m in transfer.models))
    for source, row in zip(transfer.sources, transfer.accuracy, strict=True):
        print(f"{source:<12}" + "".join(f"{100 * float(v):>9.1f}%" for v in row))
    wall = time.perf_counter() - start
    results["wall_seconds"] = round(wall, 1)
    print(f"({wall:.0f} s in all)")

    if args.out is not None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.5))  # no pyplot: the script only writes the file
        ax = fig.add_subplot()
        shown = common if n_ensemble else selections
        mean_sis_size_curve(shown, args.thresholds).plot(ax=ax)
        ax.set_title(f"Mean SIS size on {len(next(iter(shown.values())))} CIFAR-10 test images")
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        print(f"Figure written to {args.out}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"Results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
