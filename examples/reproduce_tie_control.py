"""
Control: ties must not draw false locations
===========================================

Backward selection removes, among equal scores, the feature with the lowest id (the paper's exact BackSelect).
On a model that ignores most pixels, every uninformative pixel ties, so the pixels kept to the end are the
last ones, bottom-right, and a heatmap of the 5% subsets shows a border "shortcut" that the model does not
have. ``sis_attr`` breaks ties in a seeded random order of each image's features when asked
(``backward_selection(generator=seed)``), and :func:`~sis_attr.overinterpretation.audit` does so by default
(``ties="random"``).

This script measures both rules twice:

* on a **planted-shortcut model** whose decision rests on one 3x3 patch (every other pixel has exactly zero
  effect), with images of random pixels: where do the kept uninformative pixels of the 5% subsets sit?
* on the **pretrained ResNet20** and real CIFAR-10 test images (when ``../shared/data`` is there): how many of
  the 5% subsets' pixels change with the tie rule? On a real model exact ties are rare, and the answer says
  whether the Table 1 and Figure 2 runs (lowest-id ties) could carry the artifact.

.. code-block:: bash

   python examples/reproduce_tie_control.py                                   # 4 + 4 images: a minute
   python examples/reproduce_tie_control.py --n-planted 16 --n-real 50 --threads 1 \\
       --json examples/results/tie_control.json                               # the committed run

It is **not executed** when the documentation is built; the reproduction page (:doc:`/reproduction`) reads its
JSON output.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sis_attr.overinterpretation import backward_selection
from sis_attr.testing import PatchClassifier

PATCH = PatchClassifier.PATCH  # rows 8-10, columns 12-14


def kept_outside_patch(keep: torch.Tensor) -> torch.Tensor:
    """(row, column) of every kept pixel outside the patch; ``keep`` is ``(N, 1, 32, 32)``."""
    keep = keep[:, 0].clone()
    keep[:, PATCH[0], PATCH[1]] = False
    return torch.nonzero(keep)[:, 1:]


def location_stats(rc: torch.Tensor) -> dict[str, Any]:
    rows = rc[:, 0].double()
    cols = rc[:, 1].double()
    per_row = torch.bincount(rc[:, 0], minlength=32)
    count = torch.zeros(32, 32, dtype=torch.long)
    count.index_put_((rc[:, 0], rc[:, 1]), torch.ones(len(rc), dtype=torch.long), accumulate=True)
    peak = divmod(int(count.argmax()), 32)
    return {
        "kept_pixels": len(rc),
        "mean_row": float(rows.mean()),
        "mean_column": float(cols.mean()),
        "share_in_last_two_rows": float((rows >= 30).double().mean()),
        "share_in_last_row": float((rows == 31).double().mean()),
        "largest_row_share": float(per_row.max() / max(1, len(rc))),
        "peak_pixel": list(peak),
        "uniform_row_share": 1 / 32,
    }


def planted(n: int, seed: int) -> dict[str, Any]:
    model = PatchClassifier().eval()
    images = PatchClassifier.images(n, seed)
    out: dict[str, Any] = {"images": n, "patch": "rows 8-10, columns 12-14"}
    opts: dict[str, Any] = {"method": "gradient", "k": "auto", "threshold": 0.99, "show_progress": False}
    for name, gen in (("lowest", None), ("random", 0)):
        sel = backward_selection(model, images, generator=gen, **opts)
        keep = sel.keep_masks(0.05)
        patch_kept = float(keep[:, 0, PATCH[0], PATCH[1]].double().mean())
        out[name] = location_stats(kept_outside_patch(keep)) | {"patch_pixels_kept": patch_kept}
    return out


def real(n: int) -> dict[str, Any] | None:
    from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, normalize, shared_data_dir
    from sis_attr.models import load_pretrained_cifar_resnet

    root = shared_data_dir(fallback=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    if root is None:
        return None
    data_dir = root / "cifar10" / "cifar-10-batches-py-subset"
    weights = sorted((root / "weights").glob("resnet20-*.th"))
    if not data_dir.is_dir() or not weights:
        return None
    model = load_pretrained_cifar_resnet(weights[0], with_normalization=False).eval()
    x, _, _ = load_cifar10_batches(data_dir, "test", limit=n)
    x = normalize(x, *CIFAR10_MEAN_STD_AKAMASTER)
    with torch.no_grad():  # confidence saturation: a float32 log-probability of exactly 0 ties every removal
        saturated = int((torch.log_softmax(model(x), 1).max(1).values == 0).sum())
    opts: dict[str, Any] = {"method": "gradient", "k": "auto", "threshold": 0.99, "show_progress": False}
    lowest = backward_selection(model, x, **opts).keep_masks(0.05)
    random = backward_selection(model, x, generator=0, **opts).keep_masks(0.05)
    per_image = (lowest != random).flatten(1).sum(1).double() / lowest.flatten(1).sum(1).double() / 2
    rc_lowest = torch.nonzero(lowest[:, 0])[:, 1:]
    rc_random = torch.nonzero(random[:, 0])[:, 1:]
    return {
        "images": n,
        "set": f"CIFAR-10 test images 0..{n - 1} (lossless)",
        "model": "ResNet20 (akamaster pretrained), 0 in normalised space as baseline",
        "changed_share_mean": float(per_image.mean()),
        "changed_share_max": float(per_image.max()),
        "identical_images": int((per_image == 0).sum()),
        "full_images_with_log_probability_0": saturated,
        "lowest": location_stats(rc_lowest),
        "random": location_stats(rc_random),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-planted", type=int, default=4, help="random images for the planted-shortcut model")
    parser.add_argument("--n-real", type=int, default=4, help="real CIFAR-10 test images for ResNet20 (0: skip)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random images")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "experiment": "tie_control",
        "command": "python examples/reproduce_tie_control.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "selection": {"method": "gradient", "k": "auto", "threshold": 0.99, "fraction": 0.05},
        "planted": planted(args.n_planted, args.seed),
        "real": real(args.n_real) if args.n_real else None,
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s) "
        f"(torch {torch.__version__})",
    }
    if args.n_real and results["real"] is None:
        print(
            "The real CIFAR-10 data or the ResNet20 checkpoint were not found (looked in ../shared/data, or "
            "$SIS_ATTR_SHARED_DATA; see ../shared/data/README.md): the ResNet20 part is skipped."
        )
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    p = results["planted"]
    print(f"Planted shortcut, {p['images']} images: kept uninformative pixels in the last two rows:")
    for rule in ("lowest", "random"):
        s = p[rule]
        print(
            f"  ties {rule:<6}: {100 * s['share_in_last_two_rows']:5.1f}% (mean row {s['mean_row']:.1f}, peak "
            f"{tuple(s['peak_pixel'])}); patch kept {100 * s['patch_pixels_kept']:.0f}%"
        )
    if results["real"] is not None:
        r = results["real"]
        print(
            f"ResNet20, {r['images']} test images: {100 * r['changed_share_mean']:.2f}% of the 5% subsets' pixels "
            f"change with the tie rule (largest {100 * r['changed_share_max']:.2f}%; {r['identical_images']} "
            "images identical)"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"Results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
