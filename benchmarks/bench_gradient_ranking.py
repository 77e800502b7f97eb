"""How well does the gradient rank single-feature removals? ResNet20, real CIFAR-10 test images.

Gradient backward selection removes the features whose removal the gradient predicts to hurt the score least
(the first-order change of the target's log-probability, with respect to the removal mask). Exact BackSelect
measures every single removal instead. This benchmark compares the two on the full images of the stored exact
references (``benchmarks/exact_references.py``): for each image it evaluates all ``d`` single removals
(``d`` forward passes) and reports

* the Spearman rank correlation between the gradient and the measured change of the log-odds of the target, and
  the same for two smoothed gradients: integrated gradients along the removal of all features at once (mask 0 to
  0.2) and expected gradients over random masks that remove 5% of the features (16 gradient passes each);
* the mean measured change of the 5% removals the gradient ranks first, of all removals (what a random choice
  gets) and of the 5% best (what exact BackSelect's first steps take).

A correlation near 0 means the gradient's early blocks are close to random choices: exact BackSelect's first
steps remove features that *raise* the confidence (evidence for other classes), which the gradient does not
find. Written to ``benchmarks/results/gradient_ranking_cpu.json``.

Example::

    python benchmarks/bench_gradient_ranking.py --images 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exact_references import BLOCK, block_feature_mask, load_cifar_resnet20, load_references

from sis_attr._core.scoring import target_log_prob

RESULTS = Path(__file__).resolve().parent / "results"


def _log_odds(model: nn.Module, z: Tensor, target: int) -> Tensor:
    """float64 log-odds of ``target`` (no float32 saturation)."""
    lp = target_log_prob(model(z), torch.full((z.shape[0],), target, dtype=torch.long)).double()
    return lp - torch.log(-torch.expm1(lp))


def _ranks(v: Tensor) -> Tensor:
    return v.argsort().argsort().double()


def _mask_gradients(model: nn.Module, x: Tensor, target: int, flat: Tensor, masks: Tensor) -> Tensor:
    """Gradients of the target's log-probability w.r.t. the removal mask at each of ``masks`` ``(n, d)``."""
    m = masks.to(x.dtype).requires_grad_(True)
    z = x * (1 - m[:, flat].reshape(-1, 1, *x.shape[2:]))
    (grad,) = torch.autograd.grad(torch.log_softmax(model(z), 1)[:, target].sum(), m)
    return grad.double()


def measure(
    model: nn.Module, x: Tensor, target: int, fmask: Tensor, batch: int = 128, samples: int = 16, seed: int = 0
) -> dict[str, Any]:
    """Gradient against measured single-removal changes on one image ``(1, C, H, W)``.

    Besides the gradient at the image (what gradient backward selection uses), two smoothed variants are ranked
    with ``samples`` gradient passes each: integrated gradients along the removal of every feature at once (the
    mask from 0 to 0.2), and expected gradients over random masks removing 5% of the features.
    """
    flat = fmask.reshape(-1)
    d = int(flat.max()) + 1
    g = _mask_gradients(model, x, target, flat, torch.zeros(1, d))[0]
    path = torch.linspace(0.0, 0.2, samples + 1)[1:, None].expand(samples, d)
    integrated = _mask_gradients(model, x, target, flat, path).mean(0)
    gen = torch.Generator().manual_seed(seed)
    random_masks = (torch.rand(samples, d, generator=gen) < 0.05).to(x.dtype)
    expected = _mask_gradients(model, x, target, flat, random_masks).mean(0)
    with torch.no_grad():
        base = float(_log_odds(model, x, target)[0])
        deltas = []
        for i in range(0, d, batch):
            ids = torch.arange(i, min(d, i + batch))
            keep = (flat[None, :] != ids[:, None]).to(x.dtype).reshape(-1, 1, *x.shape[2:])
            deltas.append(_log_odds(model, x * keep, target) - base)
        delta = torch.cat(deltas)
    k = max(1, d // 20)

    def rho(v: Tensor) -> float:
        return float(torch.corrcoef(torch.stack([_ranks(v), _ranks(delta)]))[0, 1])

    return {
        "spearman": rho(g),
        "spearman_integrated_gradients": rho(integrated),
        "spearman_expected_gradients": rho(expected),
        "gradient_top5pct_mean_change": float(delta[g.argsort(descending=True)[:k]].mean()),
        "random_mean_change": float(delta.mean()),
        "exact_top5pct_mean_change": float(delta.sort(descending=True).values[:k].mean()),
        "full_image_log_odds": base,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10, help="the first N stored references of each feature kind")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "gradient_ranking_cpu.json")
    args = p.parse_args(argv)
    if args.images < 1:
        p.error(f"--images must be a positive integer, got {args.images}")
    torch.set_num_threads(args.threads)
    model, x_all, _ = load_cifar_resnet20()
    result: dict[str, Any] = {"benchmark": "gradient_ranking", "features": {}}
    for features, size in BLOCK.items():
        refs = load_references(features)[: args.images]
        if not refs:
            print(f"{features}: no stored references, skipped")
            continue
        fmask = block_feature_mask(32, 32, size)
        rows = []
        for r in refs:
            row = measure(model, x_all[[r["test_index"]]], int(r["target"]), fmask)
            rows.append({"test_index": r["test_index"], **row})
        summary = {
            key: statistics.fmean(row[key] for row in rows)
            for key in (
                "spearman",
                "spearman_integrated_gradients",
                "spearman_expected_gradients",
                "gradient_top5pct_mean_change",
                "random_mean_change",
                "exact_top5pct_mean_change",
            )
        }
        result["features"][features] = {"d": int(fmask.max()) + 1, "images": rows, "mean": summary}
        print(
            f"{features:12s} {len(rows)} images: Spearman {summary['spearman']:.3f} (integrated "
            f"{summary['spearman_integrated_gradients']:.3f}, expected {summary['spearman_expected_gradients']:.3f}); "
            "mean log-odds change of the 5% "
            f"removals ranked first: gradient {summary['gradient_top5pct_mean_change']:+.3f}, random "
            f"{summary['random_mean_change']:+.3f}, exact {summary['exact_top5pct_mean_change']:+.3f}"
        )
    result["environment"] = {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads}
    given = argv if argv is not None else sys.argv[1:]
    result["command"] = " ".join(["python benchmarks/bench_gradient_ranking.py", *given])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
