"""
Mitigation of overinterpretation by input dropout: SIS size of a ResNet20 trained with and without it
======================================================================================================

Carter et al. (NeurIPS 2021, Section 4.6) find two mitigations of overinterpretation: a mean-logit ensemble
(reproduced by ``reproduce_figure6_sis_size.py``) and **training with input dropout**, whole pixels randomly set
to zero (the mean colour in normalised space) while the model trains. The input-dropout models have larger
sufficient input subsets (SIS): they need more of the image before they are confident. The authors' code
(``train.py --input_dropout --keep_prob=0.8``, gifford-lab/overinterpretation) keeps each pixel with probability
0.8, i.e. a dropout rate of 0.2, the default here.

This script trains two ResNet20s (:func:`sis_attr.models.cifar_resnet`) from scratch on the lossless CIFAR-10
training images of ``../shared/data``, with the same seed (same initial weights, batches and augmentation) and the
same recipe (:func:`sis_attr.training.train_classifier`: the paper's SGD schedule, fewer epochs, standard CIFAR
augmentation), one plain and one behind :func:`~sis_attr.overinterpretation.with_input_dropout`. It then
measures on the first test images:

* test accuracy (on every lossless test image, and on the images used for SIS);
* the mean SIS size at several thresholds with 95% confidence intervals, how many images reach each threshold,
  and the paired difference (input dropout minus plain) on the images where both models reach it;
* accuracy on the 5% backward-selection subsets and on 5% random subsets (Table 1's "evaluate on").

Unlike the authors' code, which keeps the dropout active at test time (one random mask per forward pass), SIS
are computed on the deterministic model, dropout off (backward selection needs a deterministic model); the JSON
also reports the accuracy with dropout on at test time.

It is **not executed** when the documentation is built: run it yourself. The reproduction page
(:doc:`/reproduction`) is generated from its JSON output.

.. code-block:: bash

   python examples/reproduce_mitigation_input_dropout.py               # 512 images, 1 epoch, 2 test images
   python examples/reproduce_mitigation_input_dropout.py --n-train 4660 --epochs 30 --n-test 200 \
       --cache-dir ~/.cache/sis_attr/input_dropout --checkpoint-dir ~/.cache/sis_attr/input_dropout/sel \
       --threads 1 --json examples/results/mitigation_input_dropout.json   # CPU: about 40 minutes
   python examples/reproduce_mitigation_input_dropout.py --n-train 4660 --epochs 200 --n-test 846 \
       --device cuda --batch-size 4096 --cache-dir ckpt --checkpoint-dir ckpt/sel --json dropout.json  # GPU

Options (``--help`` lists them all):

* ``--n-train`` (512; the shared data hold 4,660 lossless training images), ``--epochs`` (1), ``--seed`` (0),
  ``--no-augment``: training. Random 32x32 crops of the 4-pixel zero-padded image and horizontal flips are on by
  default (they help at this data size); the learning rate is divided by 5 at 30/60/80% of the epochs.
* ``--dropout`` (0.2): the input-dropout rate (probability of dropping a pixel, all its channels).
* ``--cache-dir``: the trained weights are saved there (keyed by the settings) and a rerun loads them instead of
  training again. Keep it outside the repository.
* ``--n-test`` (2): test images for SIS and subset accuracy (the first ones; accuracy on full images also uses
  every lossless test image). ``--checkpoint-dir``, ``--chunk`` (50), ``--only-finished``: resumable selection in
  chunks of images, as in ``reproduce_table1_cifar10.py``.
* ``--thresholds`` (0.5 0.6 0.7 0.8 0.9 0.95 0.99): SIS thresholds. Models trained on few images are less
  confident than the paper's: an SIS exists only where the full image reaches the threshold, and the JSON says
  how many images do. ``--k`` (auto), ``--threshold`` (0.9, steers ``k="auto"``): backward selection.
* ``--fraction`` (0.05), ``--device`` (cpu), ``--batch-size`` (256), ``--threads``, ``--json`` (numbers).

The paper trained on the 50,000 training images for 200 epochs and measured the 10,000 test images; here the
scale is reduced (say so beside the numbers), so compare the two models with each other, not with the paper's
accuracies.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, normalize, shared_data_dir
from sis_attr.models import cifar_resnet
from sis_attr.overinterpretation import (
    SelectionResult,
    backselect_subsets,
    mean_sis_size_curve,
    random_subsets,
    subset_accuracy,
    with_input_dropout,
)
from sis_attr.training import evaluate_accuracy, predict_proba, train_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_table1_cifar10 import chunked_selection, hardware, mean_ci, parse_k

PAPER_KEEP_PROB = 0.8  # gifford-lab/overinterpretation, train.py --keep_prob (default and documented usage)
PAPER_CLAIM = (
    "Input dropout partially mitigates overinterpretation: CIFAR-10 models trained with it (the authors' code keeps "
    "each pixel with probability 0.8 and sets dropped pixels to zero) have larger SIS (Section 4.6 and Figure 6, "
    "models trained on the 50,000 training images for 200 epochs, SIS on the 10,000 test images)"
)
MODELS = ("plain", "input dropout")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Mitigation of overinterpretation (Carter et al., Section 4.6): SIS size and subset accuracy "
        "of a ResNet20 trained with and without input dropout on CIFAR-10.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n-train", type=int, default=512, help="training images (the first ones)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of each model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, batches and augmentation")
    parser.add_argument("--no-augment", action="store_true", help="train without random crops and flips")
    parser.add_argument("--dropout", type=float, default=0.2, help="input-dropout rate (paper: 1 - 0.8)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="save/load the trained weights here")
    parser.add_argument("--n-test", type=int, default=2, help="test images for SIS and subset accuracy")
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99],
        help="SIS size thresholds",
    )
    parser.add_argument("--k", default="auto", help="gradient backward selection: features per step (or auto)")
    parser.add_argument("--threshold", type=float, default=0.9, help="SIS threshold steering k='auto'")
    parser.add_argument("--fraction", type=float, default=0.05, help="fraction of pixels kept in the subsets")
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="resumable selection in chunks here")
    parser.add_argument("--chunk", type=int, default=50, help="images per resumable chunk")
    parser.add_argument("--only-finished", action="store_true", help="evaluate the images both models finished")
    parser.add_argument("--data-dir", type=Path, default=None, help="a cifar-10-batches-py directory")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=256, help="masked images per forward pass")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    return parser.parse_args(argv)


def model_key(name: str, args: argparse.Namespace, n_train: int) -> str:
    """A file-name-safe key of everything that determines a trained model."""
    drop = f"drop{args.dropout:g}" if name == "input dropout" else "plain"
    aug = "noaug" if args.no_augment else "aug"
    return f"resnet20_{drop}_n{n_train}_e{args.epochs}_{aug}_s{args.seed}"


def train_or_load(
    name: str, args: argparse.Namespace, train: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained bare ResNet20 (eval mode) and its training record; read from ``--cache-dir`` when there."""
    key = model_key(name, args, len(train[0]))
    cached = None if args.cache_dir is None else args.cache_dir / f"{key}.pt"
    torch.manual_seed(args.seed)  # same initial weights for both models
    net = cifar_resnet(20)
    if cached is not None and cached.is_file():
        saved = torch.load(cached, map_location="cpu", weights_only=True)
        net.load_state_dict(saved["state_dict"])
        print(f"{name}: weights read from {cached}")
        return net.to(device).eval(), saved["record"] | {"from_cache": True}
    # the dropout masks have their own generator, so both models see the same batches and augmentation
    model = net if name == "plain" else with_input_dropout(net, args.dropout, generator=_generator(args.seed + 1))
    print(f"{name}: training on {len(train[0])} images for {args.epochs} epoch(s)...")
    _, history = train_classifier(
        model, train, epochs=args.epochs, augment=not args.no_augment, seed=args.seed, device=device
    )
    record = {
        "key": key,
        "input_dropout": args.dropout if name == "input dropout" else 0.0,
        "train_seconds": round(history.seconds, 1),
        "final_train_loss": round(history.loss[-1], 4),
        "final_train_accuracy": round(history.accuracy[-1], 4),
    }
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": net.state_dict(), "record": record}, cached.with_suffix(".tmp"))
        cached.with_suffix(".tmp").replace(cached)
    return net.eval(), record | {"from_cache": False}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def accuracy_with_test_dropout(
    net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, p: float, repeats: int, seed: int
) -> float:
    """Mean accuracy with the input dropout still on at test time (one mask per image), as in the authors' code."""
    wrapper = with_input_dropout(net, p, generator=_generator(seed))
    wrapper[0].train()  # only the dropout layer: the network stays in eval mode
    with warnings.catch_warnings():  # the training-mode warning is expected here
        warnings.simplefilter("ignore")
        return sum(evaluate_accuracy(wrapper, images, labels) for _ in range(repeats)) / repeats


def paired_difference(
    sel_a: SelectionResult, sel_b: SelectionResult, thresholds: list[float]
) -> dict[str, dict[str, Any]]:
    """SIS size of ``b`` minus that of ``a`` (fraction of the pixels) on the images where both have an SIS."""
    table: dict[str, dict[str, Any]] = {}
    for t in thresholds:
        a = sel_a.sis_sizes(t) / sel_a.n_features
        b = sel_b.sis_sizes(t) / sel_b.n_features
        both = ~torch.isnan(a) & ~torch.isnan(b)
        stats = mean_ci(b[both] - a[both])
        mean, half = stats["mean"], stats["ci95"]
        if mean is None or half is None:
            verdict = "too few images"
        elif mean - half > 0:
            verdict = "larger"
        elif mean + half < 0:
            verdict = "smaller"
        else:
            verdict = "no significant difference"
        ratio = float(b[both].mean() / a[both].mean()) if bool(both.any()) and float(a[both].mean()) > 0 else None
        table[f"{t:g}"] = stats | {"ratio_of_means": ratio, "verdict": verdict}
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # the directory named by $SIS_ATTR_SHARED_DATA or, in a source checkout, ../shared/data beside it
    root = shared_data_dir(fallback=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    data_dir = args.data_dir or (None if root is None else root / "cifar10" / "cifar-10-batches-py-subset")
    if data_dir is None or not data_dir.is_dir():
        print(
            "The real CIFAR-10 data were not found (looked in ../shared/data, or $SIS_ATTR_SHARED_DATA; see "
            "../shared/data/README.md). Nothing to reproduce without them."
        )
        return 0

    device = torch.device(args.device)
    start = time.perf_counter()
    stats = CIFAR10_MEAN_STD_AKAMASTER  # as the Table 1 script; the SIS baseline is 0 in normalised space
    x_train, y_train, _ = load_cifar10_batches(data_dir, "train", limit=args.n_train)
    x_all, y_all, _ = load_cifar10_batches(data_dir, "test")
    x_train, x_all = normalize(x_train, *stats), normalize(x_all, *stats)
    models: dict[str, torch.nn.Module] = {}
    training: dict[str, dict[str, Any]] = {}
    for name in MODELS:
        models[name], training[name] = train_or_load(name, args, (x_train, y_train), device)

    options: dict[str, Any] = {
        "method": "gradient",
        "k": parse_k(args.k),
        "threshold": args.threshold,
        "batch_size": args.batch_size,
        "show_progress": False,
    }
    x_test = x_all[: args.n_test]
    found: dict[str, SelectionResult | None] = {}
    seconds: dict[str, float] = {}
    for name, model in models.items():
        where = None
        if args.checkpoint_dir is not None:  # keyed by the trained model, so that another model never reuses it
            where = args.checkpoint_dir / f"{model_key(name, args, len(x_train))}_k{args.k}_t{args.threshold:g}"
        timings: list[float] = []
        sel = found[name] = chunked_selection(
            model,
            x_test,
            options,
            checkpoint_dir=where,
            chunk=args.chunk,
            only_finished=args.only_finished,
            timings=timings,
        )
        seconds[name] = sum(timings)
        print(f"{name}: {0 if sel is None else len(sel)} images selected ({seconds[name]:.0f} s)")
    n = min(0 if sel is None else len(sel) for sel in found.values())
    if n == 0:
        print("No image finished by both models: nothing to evaluate.")
        return 0
    sels = {name: sel.select(range(n)) for name, sel in found.items() if sel is not None}
    x_test, y_test = x_test[:n], y_all[:n]

    accuracy_all = {name: evaluate_accuracy(m, x_all, y_all) for name, m in models.items()}
    accuracy_n = {name: evaluate_accuracy(m, x_test, y_test) for name, m in models.items()}
    correct = {name: (predict_proba(m, x_all).argmax(1) == y_all).double() for name, m in models.items()}
    cost = mean_ci(correct["input dropout"] - correct["plain"])
    curve = mean_sis_size_curve(sels, args.thresholds, accuracies=accuracy_n)
    subsets: dict[str, Any] = {}
    random = random_subsets(x_test, labels=y_test, fraction=args.fraction, generator=1)
    for name, model in models.items():
        bs = backselect_subsets(x_test, sels[name], fraction=args.fraction, labels=y_test)
        subsets[name] = subset_accuracy(model, x_test, y_test, backselect=bs, random=random).to_dict()
    paired = paired_difference(sels["plain"], sels["input dropout"], args.thresholds)
    confidence = {name: float(sel.confidences.mean()) for name, sel in sels.items()}
    dropout_at_test = accuracy_with_test_dropout(
        models["input dropout"], x_all, y_all, args.dropout, repeats=5, seed=args.seed + 2
    )

    wall = time.perf_counter() - start
    results: dict[str, Any] = {
        "experiment": "mitigation_input_dropout",
        "command": "python examples/reproduce_mitigation_input_dropout.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "models": list(MODELS),
        "architecture": "ResNet20 (sis_attr.models.cifar_resnet(20)), trained from scratch",
        "training": {
            "images": len(x_train),
            "source": "lossless",
            "epochs": args.epochs,
            "seed": args.seed,
            "augmentation": None if args.no_augment else "random crop (padding 4) and horizontal flip",
            "recipe": "SGD, Nesterov momentum 0.9, lr 0.1 divided by 5 at 30/60/80% of the epochs, weight decay "
            "5e-4, batch size 128 (sis_attr.training.train_classifier)",
            "input_dropout": args.dropout,
            "per_model": training,
        },
        "images": {"count": n, "requested": args.n_test, "source": "lossless", "accuracy_count": len(x_all)},
        "selection": {
            "method": "gradient",
            "k": args.k,
            "threshold": args.threshold,
            "features": "pixel",
            "baseline": "0 in normalised space (mean colour)",
            "dropout_at_test": False,
            "compute_seconds": {name: round(s, 1) for name, s in seconds.items()},
        },
        "hardware": hardware(device),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "paper": {"claim": PAPER_CLAIM, "keep_prob": PAPER_KEEP_PROB},
        "accuracy": {
            "all_test_images": accuracy_all,
            "sis_images": accuracy_n,
            "dropout_at_test": dropout_at_test,
            "difference_all_test_images": cost,  # input dropout minus plain, paired over the same images
        },
        "mean_confidence": confidence,
        "curves": curve.to_dict(),
        "paired_sis_difference": paired,
        "subset_accuracy": subsets,
        "wall_seconds": round(wall, 1),  # this run (training and selections read from disk are not in it)
        # training and selection as each was computed (also when read back from --cache-dir / --checkpoint-dir)
        "compute_seconds": round(sum(r["train_seconds"] for r in training.values()) + sum(seconds.values()), 1),
    }

    print(
        f"\nTest accuracy on {len(x_all)} lossless images: "
        + ", ".join(f"{k} {100 * v:.2f}%" for k, v in accuracy_all.items())
    )
    print(f"Mean SIS size (% of the {sels['plain'].n_features} pixels) on {n} test images [images with an SIS]")
    print(f"{'threshold':<11}" + "".join(f"{name:>22}" for name in MODELS) + f"{'paired difference':>34}")
    for i, t in enumerate(curve.thresholds):
        cells = "".join(
            f"{100 * float(curve.mean[name][i]):>16.2f}% [{int(curve.n_images[name][i]):>3}]" for name in MODELS
        )
        p = paired[f"{t:g}"]
        diff = "n/a" if p["mean"] is None else f"{100 * p['mean']:+.2f} ± {100 * (p['ci95'] or math.nan):.2f}"
        print(f"{t:<11g}{cells}{diff:>22} ({p['verdict']})")
    for name in MODELS:
        s = subsets[name]
        print(
            f"{name}: accuracy {100 * s['full']:.1f}%, on 5% BS subsets {100 * s['backselect']:.1f}%, on 5% random "
            f"{100 * s['random']:.1f}% ({n} images)"
        )
    print(f"({wall:.0f} s in all)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"Results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
