"""
Reproduce Figures 3 and 4: sufficient input subsets of Inception-v3 on ImageNet
===============================================================================

Carter et al. (NeurIPS 2021, Section 4.1.1 and Supplement S5) run **Batched Gradient SIS** (backward selection
guided by the gradient with respect to a pixel mask, ``k = 100`` pixels removed per step, threshold 0.9, removed
pixels set to zero in normalised space) on ImageNet validation images that a pretrained Inception-v3 classifies
with at least 90% confidence:

* **Figure 3.** Example images, the location of their SIS pixels and the SIS alone (everything else masked),
  still classified with at least 90% confidence. The SIS look nonsensical and lie mostly outside the object.
* **Figure 4.** The frequency with which each pixel location belongs to an SIS, over 1,000 such images: the SIS
  concentrate along the image borders.

This script runs :class:`sis_attr.BatchedGradientSIS` with those settings and writes ``figure3_sis_examples.png``,
``figure4_sis_heatmap.png`` and ``results.json`` (per image: class, confidence on the full image and on the SIS
alone, SIS size; the heatmap's border ratio; timings). It is **not executed** when the documentation is built.

**What it needs** (none of it is bundled, and nothing is downloaded unless you ask):

1. torchvision, matching your torch (``pip install torchvision``; see pytorch.org for the pairs).
2. The Inception-v3 ImageNet weights: ``--download`` lets torchvision fetch ``inception_v3_google-0cc3c7bd.pth``
   (104 MB) into ``$TORCH_HOME/hub/checkpoints`` once; or pass a copy with ``--weights FILE``.
3. The ILSVRC2012 validation images (registration at image-net.org), one folder per class
   (``val/n01440764/ILSVRC2012_val_00000293.JPEG``, ...; the devkit's ``valprep.sh`` arranges them so): pass it
   with ``--imagenet-dir``, or set ``$SIS_ATTR_IMAGENET_DIR``, or place it at ``imagenet/val`` under
   ``$SIS_ATTR_SHARED_DATA``.

Without them the script says what was not found and exits cleanly. ``--smoke`` (or ``SIS_ATTR_EXAMPLE_SMOKE=1``)
runs the same code on a randomly initialised Inception-shaped network (a small width) and 2 random images, so
that this code path stays tested (in CI, in well under a minute on a CPU); its numbers mean nothing.

.. code-block:: bash

   python examples/reproduce_imagenet_sis.py --smoke --out imagenet_smoke        # no data needed
   python examples/reproduce_imagenet_sis.py --imagenet-dir /data/imagenet/val --download --images 16
   python examples/reproduce_imagenet_sis.py --imagenet-dir /data/imagenet/val --images 1000 --device cuda \\
       --out figure4_1000                                                         # the paper's scale

**Runtime.** One SIS costs ``ceil(89401 / 100) = 895`` forward and backward passes of Inception-v3 at 299x299;
the paper reports 1-2 minutes per batch of 32 images on a GPU. On a CPU count a few minutes per image.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sis_attr import BatchedGradientSIS
from sis_attr.datasets import normalize, shared_data_dir
from sis_attr.overinterpretation import location_heatmap

SMOKE_ENV_VAR = "SIS_ATTR_EXAMPLE_SMOKE"
"""Set to 1 to run the smoke version (as ``--smoke``)."""
IMAGENET_ENV_VAR = "SIS_ATTR_IMAGENET_DIR"
"""Where the ImageNet validation folder is, when ``--imagenet-dir`` is not given."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reproduce Figures 3 and 4 of Carter et al. (NeurIPS 2021): Batched Gradient SIS of Inception-v3 "
        "on ImageNet validation images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--imagenet-dir", type=Path, default=None, help="ImageNet validation folder (val/<wnid>/*)")
    parser.add_argument("--weights", type=Path, default=None, help="Inception-v3 state dict (torchvision's file)")
    parser.add_argument("--download", action="store_true", help="let torchvision download the weights if needed")
    parser.add_argument("--images", type=int, default=None, help="confident images to explain (16; smoke: 2)")
    parser.add_argument("--max-scan", type=int, default=None, help="images scanned for confident ones (20 x images)")
    parser.add_argument("--threshold", type=float, default=0.9, help="SIS threshold and minimum confidence")
    parser.add_argument("--k", type=int, default=100, help="pixels removed per gradient step (the paper: 100)")
    parser.add_argument("--size", type=int, default=None, help="input size (299; smoke: 128)")
    parser.add_argument("--sis-batch", type=int, default=32, help="images per Batched Gradient SIS call")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per forward/backward pass")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--workers", type=int, default=2, help="data loading processes")
    parser.add_argument("--examples", type=int, default=4, help="images shown in Figure 3")
    parser.add_argument("--seed", type=int, default=0, help="order in which validation images are scanned")
    parser.add_argument("--out", type=Path, default=Path("imagenet_sis_results"), help="output folder")
    parser.add_argument("--smoke", action="store_true", help=f"random Inception-shaped model (also ${SMOKE_ENV_VAR}=1)")
    parser.add_argument("--smoke-width", type=float, default=0.1, help="channel multiplier of the smoke model")
    args = parser.parse_args(argv)
    args.smoke = args.smoke or os.environ.get(SMOKE_ENV_VAR, "").strip().lower() in ("1", "true", "yes")
    if args.images is None:
        args.images = 2 if args.smoke else 16
    if args.size is None:
        args.size = 128 if args.smoke else 299
    if args.max_scan is None:
        args.max_scan = 20 * args.images
    for name in ("images", "k", "size", "sis_batch", "batch_size", "examples", "max_scan"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if not 0.0 < args.threshold <= 1.0:
        parser.error("--threshold must be in (0, 1]")
    return args


# ------------------------------------------------------------------------------------------------ requirements
def imagenet_dir(args: argparse.Namespace) -> Path | None:
    """The ImageNet validation folder: --imagenet-dir, $SIS_ATTR_IMAGENET_DIR, or <shared data>/imagenet/val."""
    if args.imagenet_dir is not None:
        return args.imagenet_dir
    if os.environ.get(IMAGENET_ENV_VAR):
        return Path(os.environ[IMAGENET_ENV_VAR])
    shared = shared_data_dir()
    return None if shared is None else shared / "imagenet" / "val"


def missing_requirements(args: argparse.Namespace) -> list[str]:
    """One line per missing requirement of the real run (each says 'not found' and how to get it)."""
    problems = []
    try:
        import torchvision  # noqa: F401
    except ImportError:
        problems.append(
            "torchvision not found: pip install torchvision (the release that matches your torch, see pytorch.org)."
        )
    if args.weights is not None:
        if not args.weights.is_file():
            problems.append(f"Inception-v3 weights not found at {args.weights} (the --weights file).")
    elif not args.download:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
        if not cached.is_file():
            problems.append(
                f"Inception-v3 weights not found in {cached.parent}: pass --download to let torchvision fetch "
                f"{WEIGHTS_FILE} (104 MB, once), or --weights FILE."
            )
    folder = imagenet_dir(args)
    if folder is None or not folder.is_dir():
        where = "(no --imagenet-dir, $SIS_ATTR_IMAGENET_DIR or shared data)" if folder is None else f"at {folder}"
        problems.append(
            f"ImageNet validation folder not found {where}: get ILSVRC2012 from image-net.org (registration), "
            "arrange val/ in one folder per class (the devkit's valprep.sh) and pass --imagenet-dir."
        )
    return problems


# ------------------------------------------------------------------------------------------------ models and data
class Calibrated(nn.Module):
    """Smoke model: logits of a random network relative to those of the all-baseline input, times ``scale``.

    A random network is neither confident nor sensitive to its input; with this shift the baseline alone scores a
    uniform distribution (an uninformative baseline) and with the scale every image starts confident, so that
    backward selection crosses the threshold somewhere between the full image and the baseline, as for a real
    classifier.
    """

    base_logits: Tensor

    def __init__(self, model: nn.Module, base_logits: Tensor, scale: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("base_logits", base_logits)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = (self.model(x) - self.base_logits) * self.scale
        return out


def smoke_setup(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, Tensor, list[str]]:
    """A random Inception-shaped model made confident on ``args.images`` random images, in normalised space."""
    from sis_attr._inception import InceptionV3Like

    net = InceptionV3Like(width=args.smoke_width, seed=args.seed).to(device).eval()
    gen = torch.Generator().manual_seed(args.seed)
    pixels = torch.rand(args.images, 3, args.size, args.size, generator=gen)
    images = normalize(pixels, IMAGENET_MEAN, IMAGENET_STD).to(device)
    with torch.no_grad():
        base = net(torch.zeros_like(images[:1]))
        logits = (net(images) - base).double()
    target = logits.argmax(dim=1, keepdim=True)

    def least_confidence(scale: float) -> float:
        return float(torch.softmax(logits * scale, dim=1).gather(1, target).min())

    low, high = 1.0, 1.0
    while least_confidence(high) < 0.95 and high < 1e8:
        high *= 2
    for _ in range(40):  # the smallest scale at which every image is >= 95% confident
        mid = (low + high) / 2
        low, high = (mid, high) if least_confidence(mid) < 0.95 else (low, mid)
    model = Calibrated(net, base, high).eval()
    return model, images, [f"random class {i}" for i in range(1000)]


def load_inception(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, list[str] | None]:
    """torchvision's Inception-v3 with its ImageNet weights (inputs normalised with the ImageNet statistics)."""
    import torchvision

    if args.weights is not None:
        model = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
        model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        names = None
    else:
        weights = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
        model = torchvision.models.inception_v3(weights=weights)
        names = list(weights.meta["categories"])
    return model.to(device).eval(), names


def confident_images(
    args: argparse.Namespace, model: nn.Module, device: torch.device
) -> tuple[Tensor, Tensor, list[str], int]:
    """Validation images (in a seeded random order) classified with at least ``threshold`` confidence."""
    import torchvision
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.Resize(342),
            transforms.CenterCrop(args.size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    folder = imagenet_dir(args)
    assert folder is not None  # checked by missing_requirements
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))[: args.max_scan]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, order.tolist()), batch_size=32, num_workers=args.workers
    )
    kept: list[Tensor] = []
    labels: list[int] = []
    files: list[str] = []
    scanned = 0
    with torch.no_grad():
        for x, y in loader:
            probs = torch.softmax(model(x.to(device)), dim=1)
            ok = (probs.max(dim=1).values >= args.threshold).cpu()
            for i in ok.nonzero().flatten().tolist():
                kept.append(x[i])
                labels.append(int(y[i]))
                files.append(dataset.samples[int(order[scanned + i])][0])
            scanned += int(x.shape[0])
            if len(kept) >= args.images:
                break
    n = min(args.images, len(kept))
    images = torch.stack(kept[:n]) if n else torch.zeros(0, 3, args.size, args.size)
    return images, torch.tensor(labels[:n], dtype=torch.long), files[:n], scanned


# ------------------------------------------------------------------------------------------------ figures
def to_display(images: Tensor) -> Tensor:
    """Normalised images back to [0, 1] RGB, ``(N, H, W, 3)`` for imshow."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1)


def figure3(images: Tensor, masks: Tensor, titles: list[str], path: Path) -> None:
    """Image, SIS location (red) and the SIS alone (the rest at the baseline, shown as the mean colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = int(images.shape[0])
    fig, axes = plt.subplots(3, n, figsize=(2.6 * n, 8), squeeze=False)
    shown = to_display(images)
    baseline = to_display(torch.zeros_like(images[:1]))[0]
    for j in range(n):
        keep = masks[j].any(dim=0).cpu()
        located = shown[j].clone()
        located[keep] = torch.tensor([1.0, 0.0, 0.0])
        alone = torch.where(keep[..., None], shown[j], baseline)
        for row, picture in enumerate((shown[j], located, alone)):
            axes[row, j].imshow(picture.numpy())
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
        axes[0, j].set_title(titles[j], fontsize=8)
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("SIS pixels (red)")
    axes[2, 0].set_ylabel("SIS alone")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure4(masks: Tensor, threshold: float, path: Path) -> dict[str, Any]:
    """Heatmap of SIS pixel locations; returns its summary (peak, border ratio)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heat = location_heatmap(masks)
    fig, ax = plt.subplots(figsize=(5, 4.3))
    heat.plot(ax=ax, title=f"SIS pixel locations (threshold {threshold:g}), {heat.n_images} images")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    width = max(1, round(masks.shape[-1] * 0.1))
    return {
        "n_images": heat.n_images,
        "peak": list(heat.peak()),
        "border_ratio_1px": heat.border_ratio(1),
        f"border_ratio_{width}px": heat.border_ratio(width),
    }


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    problems = missing_requirements(args)
    if problems and not args.smoke:
        print("Not running the ImageNet reproduction:")
        for line in problems:
            print(f"  - {line}")
        print(f"Run with --smoke (or {SMOKE_ENV_VAR}=1) to run the same code on a random Inception-shaped model.")
        return 0
    start = time.perf_counter()
    if args.smoke:
        for line in problems:
            print(f"[smoke] {line}")
        print(f"[smoke] random Inception-shaped model (width {args.smoke_width}), {args.images} random images")
        model, images, names = smoke_setup(args, device)
        labels, files, scanned = None, [f"random image {i}" for i in range(args.images)], args.images
    else:
        model, names_or_none = load_inception(args, device)
        images, labels, files, scanned = confident_images(args, model, device)
        names = names_or_none or [f"class {i}" for i in range(1000)]
        print(f"{images.shape[0]} of {scanned} scanned validation images are classified with >= {args.threshold:g}")
        if images.shape[0] == 0:
            print("No confident image: scan more with --max-scan.")
            return 0
    prepared = time.perf_counter() - start

    explainer = BatchedGradientSIS(model)
    results = []
    masks = []
    sis_start = time.perf_counter()
    for i in range(0, int(images.shape[0]), args.sis_batch):
        chunk = images[i : i + args.sis_batch].to(device)
        result = explainer.explain(
            chunk, baselines=0.0, threshold=args.threshold, k=args.k, batch_size=args.batch_size, show_progress=True
        )
        keep = result.keep_mask()
        assert isinstance(keep, Tensor)
        masks.append(keep.cpu())
        with torch.no_grad():  # confidence on the SIS alone (the rest at the baseline, 0)
            alone = torch.softmax(model(torch.where(keep.to(device), chunk, torch.zeros_like(chunk))), dim=1)
        for j, explanation in enumerate(result):
            results.append(
                {
                    "file": files[i + j],
                    "label": None if labels is None else int(labels[i + j]),
                    "target": explanation.target,
                    "class": names[explanation.target],
                    "confidence": explanation.confidence,
                    "sis_size": explanation.size,
                    "sis_fraction": None if explanation.size is None else explanation.size / explanation.n_features,
                    "confidence_on_sis": float(alone[j, explanation.target]),
                }
            )
    sis_seconds = time.perf_counter() - sis_start
    keep_masks = torch.cat(masks).bool()
    has_sis = keep_masks.flatten(1).any(dim=1)

    args.out.mkdir(parents=True, exist_ok=True)
    shown = has_sis.nonzero().flatten()[: args.examples]
    titles = [
        f"{results[i]['class']}\n{results[i]['confidence']:.2f} -> {results[i]['confidence_on_sis']:.2f}"
        for i in shown.tolist()
    ]
    if shown.numel():
        figure3(images[shown].cpu(), keep_masks[shown], titles, args.out / "figure3_sis_examples.png")
        heatmap = figure4(keep_masks[has_sis], args.threshold, args.out / "figure4_sis_heatmap.png")
    else:
        heatmap = {"n_images": 0}
    sizes = [r["sis_size"] for r in results if r["sis_size"] is not None]
    summary = {
        "mode": "smoke (random Inception-shaped model, random images: numbers mean nothing)"
        if args.smoke
        else "imagenet",
        "paper": "Carter et al., NeurIPS 2021, Figures 3 and 4 (Inception-v3, threshold 0.9, k = 100, 1000 images)",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "images": len(results),
        "scanned": scanned,
        "with_sis": int(has_sis.sum()),
        "mean_sis_fraction": None if not sizes else sum(sizes) / len(sizes) / (args.size * args.size),
        "all_sis_sufficient": all(
            r["confidence_on_sis"] >= args.threshold - 1e-6 for r in results if r["sis_size"] is not None
        ),
        "heatmap": heatmap,
        "per_image": results,
        "seconds": {"prepare": prepared, "sis": sis_seconds, "per_image": sis_seconds / max(1, len(results))},
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)},
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    fraction = summary["mean_sis_fraction"]
    mean_size = "n/a" if fraction is None else f"{100 * fraction:.1f}% of the pixels"
    print(
        f"{summary['with_sis']} of {len(results)} images have an SIS at {args.threshold:g}; mean SIS size "
        f"{mean_size}; {sis_seconds:.1f} s ({sis_seconds / max(1, len(results)):.1f} s per image). Wrote {args.out}/."
    )
    if not args.smoke and "border_ratio_1px" in heatmap and not math.isnan(heatmap["border_ratio_1px"]):
        print(f"SIS frequency on the 1-pixel border / inside: {heatmap['border_ratio_1px']:.2f} (paper: borders)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
