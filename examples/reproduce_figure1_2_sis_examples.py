"""
Reproduce Figures 1 and 2: example SIS of every CIFAR-10 class, and where the 5% subsets sit in the image
=========================================================================================================

Carter et al. (NeurIPS 2021, Section 4.1) show in **Figure 1** sufficient input subsets (SIS, threshold 0.99,
the other pixels masked with zeros in normalised space) of randomly chosen CIFAR-10 test images that the model
classifies correctly and confidently, one per class: a few dozen scattered pixels, meaningless to a person, on
which the model is at least 99% confident. **Figure 2** is the heatmap of pixel locations of the 5%
backward-selection subsets over the test set: for each position, the fraction of the subsets that keep it.
(For ImageNet, Figure 4, the paper finds the SIS "strongly concentrated along the image borders".)

This script draws both for the pretrained ResNet20 (or 32, 44, 56) of akamaster/pytorch_resnet_cifar10 on the
real CIFAR-10 test images of ``../shared/data``, with the backward selection of
``reproduce_table1_cifar10.py`` (same options, same resumable checkpoint layout, so ``--checkpoint-dir``
reuses the Table 1 run's selections and computes nothing new), the SIS of
:meth:`~sis_attr.overinterpretation.SelectionResult.sis_masks`, the figure of
:class:`~sis_attr.overinterpretation.SISExamples` and the heatmaps of
:func:`~sis_attr.overinterpretation.location_heatmap`. It is **not executed** when the documentation is built:
run it yourself. The reproduction page (:doc:`/reproduction`) is generated from its JSON output.

.. code-block:: bash

   python examples/reproduce_figure1_2_sis_examples.py                 # 20 images: about a minute
   python examples/reproduce_figure1_2_sis_examples.py --n-images 846 --checkpoint-dir ckpt \\
       --json examples/results/figure1_2_resnet20.json --figures docs/_static/reproduction
                                                 # every lossless test image: the Table 1 run's selections

Options (``--help`` lists them all):

* ``--n-images`` (20): test images (the shared data hold the first 846 losslessly).
* ``--per-class`` (1), ``--seed`` (0): Figure 1 shows this many examples per class, drawn at random (seeded)
  among the images the model classifies correctly with confidence at least ``--threshold`` and whose SIS is
  not empty; ``--columns`` (5) of them per row of the figure.
* ``--method`` (gradient), ``--k`` (auto), ``--shortlist`` (0), ``--threshold`` (0.99), ``--fraction`` (0.05):
  backward selection and the subsets, as in ``reproduce_table1_cifar10.py``.
* ``--checkpoint-dir``, ``--chunk`` (50), ``--only-finished``: resumable selection in chunks of images, shared
  with ``reproduce_table1_cifar10.py``.
* ``--depth`` (20), ``--device`` (cpu), ``--batch-size`` (256), ``--threads`` (0), ``--json`` (numbers: the
  heatmap counts, the examples, border statistics, command, hardware, wall time), ``--figures`` (a folder for
  ``figure1_sis_examples.png``, ``figure2_heatmaps.png`` and ``figure2_per_class.png``).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sis_attr.datasets import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN_STD_AKAMASTER,
    load_cifar10_batches,
    normalize,
    shared_data_dir,
)
from sis_attr.models import load_pretrained_cifar_resnet
from sis_attr.overinterpretation import (
    LocationHeatmap,
    SelectionResult,
    SISExamples,
    backselect_subsets,
    confidence_drop,
    location_heatmap,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_table1_cifar10 import chunked_selection, hardware, parse_k

FIGURE1 = "figure1_sis_examples.png"
FIGURE2 = "figure2_heatmaps.png"
FIGURE2_PER_CLASS = "figure2_per_class.png"
RINGS = (1, 2, 4)  # widths (pixels) of the outer rings of the border statistics

PAPER = {
    "figure1": "SIS of randomly chosen test images classified correctly with confidence >= 0.99, one per class: "
    "highly sparse (mean SIS size under 5% of the pixels), nonsensical to humans, yet classified with >= 99% "
    "confidence.",
    "figure2": "Frequency of each pixel location in the 5% backward-selection subsets over the CIFAR-10 test "
    "set, per model, with the mean confidence on the subsets (no statistic is given in the text).",
    "figure4_imagenet": "On ImageNet (Inception-v3), the SIS 'tend to be strongly concentrated along the image "
    "borders rather than the corresponding object'.",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reproduce Figures 1 and 2 of Carter et al. (NeurIPS 2021): example SIS of every CIFAR-10 "
        "class and the heatmap of the 5% backward-selection subsets, for a pretrained ResNet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n-images", type=int, default=20, help="CIFAR-10 test images")
    parser.add_argument("--per-class", type=int, default=1, help="Figure 1 examples per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random choice of the examples")
    parser.add_argument("--columns", type=int, default=5, help="Figure 1 examples per row of the figure")
    parser.add_argument("--depth", type=int, default=20, choices=[20, 32, 44, 56], help="pretrained ResNet depth")
    parser.add_argument("--method", default="gradient", choices=["gradient", "exact"], help="backward selection")
    parser.add_argument("--k", default="auto", help="gradient method: features per step (int, fraction, auto...)")
    parser.add_argument("--shortlist", type=int, default=0, help="gradient method: exact choice among M (0: none)")
    parser.add_argument("--threshold", type=float, default=0.99, help="SIS threshold (steers k='auto')")
    parser.add_argument("--fraction", type=float, default=0.05, help="fraction of pixels in the subsets")
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="resumable selection in chunks here")
    parser.add_argument("--chunk", type=int, default=50, help="images per resumable chunk")
    parser.add_argument("--only-finished", action="store_true", help="use the finished chunks only")
    parser.add_argument("--data-dir", type=Path, default=None, help="a cifar-10-batches-py directory")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=256, help="masked images per forward pass")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers to this JSON file")
    parser.add_argument("--figures", type=Path, default=None, help="write the PNG figures into this folder")
    args = parser.parse_args(argv)
    for name in ("n_images", "per_class", "columns"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def ring_statistics(heat: LocationHeatmap) -> dict[str, dict[str, float]]:
    """Share of the kept pixels in the outer ring of each width in ``RINGS``, beside the ring's share of the area.

    ``ratio`` above 1 means the subsets favour the border; 1 is a uniform spread. ``border_ratio`` is
    :meth:`LocationHeatmap.border_ratio` (mean frequency on the ring over mean frequency inside it).
    """
    freq = heat.frequency
    h, w = freq.shape
    total = float(freq.sum())
    out = {}
    for width in RINGS:
        ring = torch.ones(h, w, dtype=torch.bool)
        ring[width : h - width, width : w - width] = False
        kept = float(freq[ring].sum()) / total if total > 0 else float("nan")
        area = float(ring.double().mean())
        out[str(width)] = {
            "kept_share": round(kept, 4),
            "area_share": round(area, 4),
            "ratio": round(kept / area, 3),
            "border_ratio": round(heat.border_ratio(width), 3),
        }
    return out


def heatmap_entry(heat: LocationHeatmap) -> dict[str, Any]:
    """Counts (images keeping each position) as a nested list, with the peak and the ring statistics."""
    counts = (heat.frequency * heat.n_images).round().long()
    total = max(1, int(counts.sum()))
    # the four one-pixel sides: a tie-breaking artifact toward the last feature ids would favour bottom and right
    sides = {"top": counts[0], "bottom": counts[-1], "left": counts[:, 0], "right": counts[:, -1]}
    return {
        "n_images": heat.n_images,
        "counts": counts.tolist(),
        "max_frequency": round(float(heat.frequency.max()), 4),
        "peak": list(heat.peak()),
        "rings": ring_statistics(heat),
        "sides": {name: round(int(side.sum()) / total, 4) for name, side in sides.items()},
        "corners": [int(counts[0, 0]), int(counts[0, -1]), int(counts[-1, 0]), int(counts[-1, -1])],
    }


def choose_examples(
    selection: SelectionResult,
    labels: torch.Tensor,
    sizes: torch.Tensor,
    *,
    threshold: float,
    per_class: int,
    seed: int,
) -> list[int]:
    """Up to ``per_class`` random images of each class, correctly classified at ``threshold``, with a non-empty SIS."""
    eligible = (selection.targets == labels) & (selection.confidences >= threshold) & (sizes > 0)
    order = torch.randperm(len(selection), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = []
    for c in range(len(CIFAR10_CLASSES)):
        chosen += [i for i in order if bool(eligible[i]) and int(labels[i]) == c][:per_class]
    return chosen


def sis_examples(
    net: torch.nn.Module,
    raw: torch.Tensor,
    x: torch.Tensor,
    labels: torch.Tensor,
    selection: SelectionResult,
    chosen: list[int],
    *,
    threshold: float,
    device: torch.device,
) -> SISExamples:
    """The chosen images beside their SIS, shown in colour (the masked pixels take the mean colour, the baseline)."""
    idx = torch.tensor(chosen, dtype=torch.long)
    sub = selection.select(idx)
    masks = sub.sis_masks(threshold)  # (n, 1, H, W)
    with torch.no_grad():
        on_sis = torch.where(masks, x[idx], torch.zeros_like(x[idx])).to(device)
        probs = torch.softmax(net(on_sis).double(), dim=1).cpu()
    mean = torch.tensor(CIFAR10_MEAN_STD_AKAMASTER[0]).view(1, 3, 1, 1)  # 0 in normalised space
    return SISExamples(
        indices=tuple(chosen),
        images=raw[idx],
        sis_images=torch.where(masks, raw[idx], mean.expand_as(raw[idx])),
        sis_masks=masks[:, 0],
        labels=tuple(int(v) for v in labels[idx]),
        predictions=tuple(int(v) for v in sub.targets),
        confidences=tuple(float(v) for v in sub.confidences),
        sis_confidences=tuple(float(v) for v in probs.gather(1, sub.targets.unsqueeze(1)).squeeze(1)),
        sis_sizes=tuple(int(v) for v in sub.sis_sizes(threshold)),
        threshold=threshold,
        class_names=CIFAR10_CLASSES,
    )


def draw(
    folder: Path,
    examples: SISExamples,
    columns: int,
    heatmaps: dict[str, LocationHeatmap],
    per_class_heatmaps: dict[str, LocationHeatmap],
    title: str,
) -> list[Path]:
    """Figure 1 (examples), Figure 2 (heatmaps of the subsets and of the SIS) and the per-class heatmaps."""
    from matplotlib.figure import Figure  # no pyplot: the script only writes files

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    n = len(examples)
    if n:
        # blocks of three rows (image, SIS only, SIS location), ``columns`` examples across, in class order
        blocks = [list(range(i, min(i + columns, n))) for i in range(0, n, columns)]
        height = 5.0 * len(blocks) + 0.6
        fig = Figure(figsize=(1.9 * min(columns, n) + 0.9, height))
        axes = fig.subplots(3 * len(blocks), min(columns, n), squeeze=False)
        for r, block in enumerate(blocks):
            part = SISExamples(
                indices=tuple(examples.indices[j] for j in block),
                images=examples.images[block],
                sis_images=examples.sis_images[block],
                sis_masks=examples.sis_masks[block],
                labels=tuple(examples.labels[j] for j in block),
                predictions=tuple(examples.predictions[j] for j in block),
                confidences=tuple(examples.confidences[j] for j in block),
                sis_confidences=tuple(examples.sis_confidences[j] for j in block),
                sis_sizes=tuple(examples.sis_sizes[j] for j in block),
                threshold=examples.threshold,
                class_names=examples.class_names,
            )
            part.plot(ax=axes[3 * r : 3 * r + 3, : len(block)])
            for ax in axes[3 * r : 3 * r + 3, len(block) :].flat:
                ax.set_axis_off()
        fig.suptitle(f"Figure 1: SIS at threshold {examples.threshold:g}, {title}", fontsize=10)
        fig.subplots_adjust(left=0.06, right=0.99, top=1 - 0.75 / height, bottom=0.1 / height, hspace=0.45, wspace=0.1)
        fig.savefig(folder / FIGURE1, dpi=110)
        written.append(folder / FIGURE1)

    fig = Figure(figsize=(4.2 * len(heatmaps), 3.6))
    for i, (label, heat) in enumerate(heatmaps.items()):
        heat.plot(ax=fig.add_subplot(1, len(heatmaps), i + 1), title=f"{label}\n{heat.n_images} images")
    fig.suptitle(f"Figure 2: where the kept pixels are, {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(folder / FIGURE2, dpi=100)
    written.append(folder / FIGURE2)

    if per_class_heatmaps:
        fig = Figure(figsize=(11, 5.2))
        top = max(float(h.frequency.max()) for h in per_class_heatmaps.values())
        im = None
        for i, (name, heat) in enumerate(per_class_heatmaps.items()):
            ax = fig.add_subplot(2, 5, i + 1)
            im = ax.imshow(heat.frequency.numpy(), cmap="viridis", vmin=0.0, vmax=top)
            ax.set_title(f"{name} ({heat.n_images})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"5% subsets per predicted class (images), {title}; one colour scale", fontsize=10)
        fig.subplots_adjust(left=0.02, right=0.88, top=0.86, bottom=0.03, wspace=0.08, hspace=0.25)
        if im is not None:
            fig.colorbar(im, cax=fig.add_axes((0.9, 0.1, 0.02, 0.72)), label="frequency")
        fig.savefig(folder / FIGURE2_PER_CLASS, dpi=100)
        written.append(folder / FIGURE2_PER_CLASS)
    return written


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
    raw, labels, _ = load_cifar10_batches(data_dir, "test", limit=args.n_images)
    x = normalize(raw, *CIFAR10_MEAN_STD_AKAMASTER)
    options: dict[str, Any] = {"method": args.method, "batch_size": args.batch_size, "show_progress": False}
    if args.method == "gradient":
        options |= {"k": parse_k(args.k), "shortlist": args.shortlist or None, "threshold": args.threshold}
    print(f"Backward selection on {len(x)} test images ({options})...")
    timings: list[float] = []
    selection = chunked_selection(
        net,
        x,
        options,
        checkpoint_dir=None if args.checkpoint_dir is None else args.checkpoint_dir / f"resnet{args.depth}_test",
        chunk=args.chunk,
        only_finished=args.only_finished,
        timings=timings,
    )
    if selection is None:
        print("No finished chunk yet: nothing to draw.")
        return 0
    n = len(selection)
    raw, x, labels = raw[:n], x[:n], labels[:n]

    # Figure 1: example SIS of each class
    sizes = selection.sis_sizes(args.threshold)
    chosen = choose_examples(
        selection, labels, sizes, threshold=args.threshold, per_class=args.per_class, seed=args.seed
    )
    examples = sis_examples(net, raw, x, labels, selection, chosen, threshold=args.threshold, device=device)
    eligible = (selection.targets == labels) & (selection.confidences >= args.threshold) & (sizes > 0)

    # Figure 2: where the kept pixels of the 5% subsets (and of the SIS) are
    subsets = location_heatmap(selection, fraction=args.fraction)
    heatmaps = {f"{args.fraction:.0%} backward-selection subsets": subsets}
    has_sis = ~torch.isnan(sizes)
    sis_heat = location_heatmap(selection, threshold=args.threshold) if bool((sizes[has_sis] > 0).any()) else None
    if sis_heat is not None:
        heatmaps[f"SIS at threshold {args.threshold:g}"] = sis_heat
    per_class = {
        name: location_heatmap(
            selection.select(torch.nonzero(selection.targets == c).flatten()), fraction=args.fraction
        )
        for c, name in enumerate(CIFAR10_CLASSES)
        if bool((selection.targets == c).any())
    }
    drop = confidence_drop(net, x, backselect_subsets(x, selection, fraction=args.fraction))

    model = f"ResNet{args.depth} (akamaster pretrained)"
    results: dict[str, Any] = {
        "experiment": "figure1_2",
        "command": "python examples/reproduce_figure1_2_sis_examples.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "model": model,
        "images": {
            "count": n,
            "requested": args.n_images,
            "partial": n < args.n_images,
            "source": "JPEG q75" if args.data_dir is not None and "jpeg" in str(args.data_dir).lower() else "lossless",
            "set": f"CIFAR-10 test images 0..{n - 1}",
        },
        "selection": {
            "method": args.method,
            "k": args.k if args.method == "gradient" else None,
            "shortlist": args.shortlist or None,
            "threshold": args.threshold,
            "features": "pixel",
            "baseline": "0 in normalised space (mean colour)",
            "compute_seconds": round(sum(timings), 1),  # summed over the chunks, when each was computed
        },
        "hardware": hardware(device),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "paper": PAPER,
        "figure1": {
            "threshold": args.threshold,
            "per_class": args.per_class,
            "seed": args.seed,
            "eligible": int(eligible.sum()),
            "sis_at_threshold": int(has_sis.sum()),
            "empty_sis": int((sizes == 0).sum()),
            "mean_sis_size": round(float(sizes[has_sis].mean()), 2) if bool(has_sis.any()) else None,
            "examples": [
                {k: v for k, v in e.items() if k != "sis_mask"} | {"sis_fraction": round(e["sis_size"] / 1024, 4)}
                for e in examples.to_dict()["examples"]
            ],
        },
        "figure2": {
            "fraction": args.fraction,
            "subset_size": selection.subset_size(args.fraction),
            "mean_subset_confidence": round(float(drop.subset_confidences.mean()), 4),
            "mean_full_confidence": round(float(drop.full_confidences.mean()), 4),
            "subsets": heatmap_entry(subsets),
            "sis": None if sis_heat is None else heatmap_entry(sis_heat),
            "per_class": {name: heatmap_entry(h) for name, h in per_class.items()},
        },
    }

    print(f"\nFigure 1: {len(examples)} examples (ResNet{args.depth}, threshold {args.threshold:g})")
    for e in results["figure1"]["examples"]:
        print(
            f"  {e['label_name']:<11} test image {e['index']:>4}: SIS {e['sis_size']:>3} pixels, "
            f"confidence {e['confidence']:.4f} full, {e['sis_confidence']:.4f} on the SIS"
        )
    print(f"Figure 2: {n} images, {args.fraction:.0%} subsets, peak at {subsets.peak()}")
    for key, entry in (("subsets", results["figure2"]["subsets"]), ("SIS", results["figure2"]["sis"])):
        if entry is not None:
            rings = ", ".join(
                f"{w}-pixel ring {100 * r['kept_share']:.1f}% of kept pixels ({100 * r['area_share']:.1f}% of area)"
                for w, r in entry["rings"].items()
            )
            print(f"  {key}: {rings}")
    if args.figures is not None:
        title = f"{model.split(' ')[0]}, {n} {results['images']['source']} test images"
        for path in draw(args.figures, examples, args.columns, heatmaps, per_class, title):
            print(f"Figure written to {path}")
    wall = time.perf_counter() - start
    results["wall_seconds"] = round(wall, 1)
    print(f"({wall:.0f} s in all)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(results, indent=1)
        # one line per innermost list of numbers (the heatmap rows), not one line per number
        text = re.sub(r"\[[^\[\]{}\"]*\]", lambda m: json.dumps(json.loads(m.group(0))), text)
        args.json.write_text(text + "\n", encoding="utf-8")
        print(f"Results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
