"""SIS size against cost for gradient schedules, compared with stored exact BackSelect references.

For every schedule (the automatic schedule ``k="auto"`` and its variants, the paper's pure gradient method, the
gradient-screened settings), Batched Gradient SIS runs on the real CIFAR-10 test images whose exact references
``benchmarks/exact_references.py`` stored (pretrained ResNet20, mean-colour masking, threshold 0.99), with the same
feature groups. Reported per schedule, per image and as means:

* SIS size, and its ratio to exact BackSelect's on the same image (the mean of the sizes' ratio);
* validity: every SIS is evaluated alone once more here (``f(x_S) >= threshold``);
* whether the top-ranked 5% of features alone keep the prediction;
* forward-equivalents per image, counted by a wrapper around the model (a row evaluated with gradient
  tracking counts 3: its forward and its backward pass);
* wall time, and the floor: the time of the same number of plain forward (and forward + backward) rows at the
  model's best batch size, timed interleaved with the run (one floor pass after each model call,
  :class:`CountingModel`); their ratio is the floor ratio.

The JSON goes to ``benchmarks/results/sis_schedule_<features>_cpu.json`` and the size-against-cost frontier to
``docs/_static/schedule_frontier_<features>.png``.

``--inception``: ImageNet scale at a small count. ``k="auto"`` on an Inception-v3-shaped network (random weights,
``sis_attr._inception``; its logits are taken relative to the all-baseline input and scaled so every image
starts at >= 0.95 confidence, as a confident real classifier would) on 2 random 299x299 images, with
single-pixel features (89,401) and with 13x13-pixel blocks (529 features): forward-equivalents per image and
seconds, written to ``benchmarks/results/sis_schedule_inception_<device>.json``. On a GPU (the paper needed 1-2
minutes per 32 ImageNet images with k=100; the goal is under 10 s)::

    python benchmarks/bench_sis_schedule.py --inception --device cuda --images 32

Examples::

    python benchmarks/bench_sis_schedule.py --features superpixels --threads 1
    python benchmarks/bench_sis_schedule.py --features pixels --threads 1
    python benchmarks/bench_sis_schedule.py --inception --threads 2
    python benchmarks/bench_sis_schedule.py --timing 32 --threads 1   # wall time against the floor, 32 images

``--timing N``: the wall-time goal on a call of realistic size. ``k="auto"`` with the measured batch size on the
first ``N`` test images the model classifies with at least the threshold's confidence (single pixels), timed
against its interleaved floor ``--repeats`` times; written to ``benchmarks/results/sis_schedule_timing_cpu.json``.
(The 4-image reference run times a call whose gradient steps hold 4 rows, far below the best batch size.)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exact_references import BLOCK, block_feature_mask, load_cifar_resnet20, load_references

from sis_attr import AutoK
from sis_attr.functional import batched_gradient_sis

RESULTS = Path(__file__).resolve().parent / "results"
DOCS_STATIC = Path(__file__).resolve().parents[1] / "docs" / "_static"


class CountingModel(nn.Module):
    """Counts forward-equivalents: a row under gradient tracking counts 3 (forward + backward), else 1.

    With ``floor_batch`` (``B`` rows at the model's best batch size) it also times the floor *interleaved*: after
    each call of ``n`` rows, one plain pass of the same kind (no-grad forward, or forward + backward) over the
    ``B`` rows is timed and ``n / B`` of it is added to :attr:`floor_s`; the time spent on these passes is kept in
    :attr:`floor_overhead_s`, so our own time is the wall time minus it. Load that comes and goes on a shared
    machine then hits our run and its floor alike.
    """

    def __init__(self, model: nn.Module, floor_batch: Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.floor_batch = floor_batch
        self.reset()

    def reset(self) -> None:
        self.forward_rows = 0
        self.grad_rows = 0
        self.floor_s = 0.0
        self.floor_overhead_s = 0.0

    @property
    def equivalents(self) -> int:
        return self.forward_rows + 3 * self.grad_rows

    def forward(self, x: Tensor) -> Tensor:
        grad = torch.is_grad_enabled() and x.requires_grad
        n = int(x.shape[0])
        if grad:
            self.grad_rows += n
        else:
            self.forward_rows += n
        out = self.model(x)
        if self.floor_batch is not None:
            t0 = time.perf_counter()
            if grad:
                with torch.enable_grad():
                    z = self.floor_batch.clone().requires_grad_(True)
                    torch.autograd.grad(self.model(z).logsumexp(1).sum(), z)
            else:
                with torch.no_grad():
                    self.model(self.floor_batch)
            dt = time.perf_counter() - t0
            self.floor_overhead_s += dt
            self.floor_s += dt * n / int(self.floor_batch.shape[0])
        return out


def best_batch_size(model: nn.Module, x: Tensor, sizes: tuple[int, ...] = (32, 64, 128, 256, 512)) -> int:
    """The forward batch size with the highest throughput on this machine now (the floor's batch size)."""
    rates = {}
    with torch.no_grad():
        for bs in sizes:
            batch = x[:1].expand(bs, *x.shape[1:]).contiguous()
            model(batch)
            t0 = time.perf_counter()
            for _ in range(2):
                model(batch)
            rates[bs] = 2 * bs / (time.perf_counter() - t0)
    return max(rates, key=lambda b: rates[b])


def schedules(d: int) -> list[tuple[str, dict[str, Any]]]:
    """The settings compared: the automatic schedule's default and variants, and the older settings."""
    out: list[tuple[str, dict[str, Any]]] = [
        ("auto (default)", {"k": "auto"}),
        ("auto shortlist=16", {"k": AutoK(shortlist=16)}),
        ("auto shortlist=64", {"k": AutoK(shortlist=64)}),
        ("auto prune=False", {"k": AutoK(prune=False)}),
        ("auto fraction=0.05", {"k": AutoK(fraction=0.05)}),
        ("auto fraction=0.1", {"k": AutoK(fraction=0.1)}),
        ("auto max_forward=16", {"k": AutoK(max_forward=16)}),
        ("gradient k=16 (paper)", {"k": 16}),
        ("gradient k=0.05", {"k": 0.05}),
        ("screened k=0.05 M=16", {"k": 0.05, "shortlist": 16}),
    ]
    if d <= 256:
        out.append(("screened k=1 M=16", {"k": 1, "shortlist": 16}))
    return out


def _environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    refs = load_references(args.features)
    if args.images:
        refs = refs[: args.images]
    if not refs:
        sys.exit(f"no stored references for {args.features}: run benchmarks/exact_references.py first")
    model, x_all, _ = load_cifar_resnet20()
    idx = torch.tensor([r["test_index"] for r in refs])
    x = x_all[idx]
    target = torch.tensor([r["target"] for r in refs])
    exact = [r["sis_size_at_threshold"] for r in refs]
    fmask = block_feature_mask(x.shape[2], x.shape[3], BLOCK[args.features])
    d = int(fmask.max()) + 1
    top = max(1, math.ceil(0.05 * d))
    floor_bs = best_batch_size(model, x)
    counted = CountingModel(model, floor_batch=x[:1].expand(floor_bs, *x.shape[1:]).contiguous())
    if args.batch_size is None:
        # the measured batch size is probed once per model and shape (cached): probe it here, outside the counts,
        # so the first schedule does not pay for every schedule's probe (with every image: a probe for fewer rows
        # per pass than the runs hold is not reused)
        batched_gradient_sis(counted, x, target=target, feature_mask=fmask, threshold=args.threshold)
    rows: list[dict[str, Any]] = []
    chosen = [(n, kw) for n, kw in schedules(d) if not args.only or n in args.only]
    chosen += [(f"auto {e}", {"k": eval(f"AutoK({e})")}) for e in args.auto or []]
    for name, kw in chosen:
        counted.reset()
        t0 = time.perf_counter()
        result = batched_gradient_sis(
            counted,
            x,
            target=target,
            feature_mask=fmask,
            threshold=args.threshold,
            batch_size=args.batch_size,
            **kw,
        )
        wall = time.perf_counter() - t0 - counted.floor_overhead_s
        fr, gr = counted.forward_rows, counted.grad_rows
        floor = counted.floor_s
        sizes = [e.size for e in result]
        mask = result.keep_mask()
        assert isinstance(mask, Tensor)  # one input tensor
        keep = mask.bool()
        with torch.no_grad():
            p = torch.softmax(model(torch.where(keep, x, torch.zeros_like(x))), 1).gather(1, target[:, None])[:, 0]
            valid = [bool(p[i] >= args.threshold) for i in range(len(sizes)) if sizes[i] is not None]
            top_keep = torch.stack([e.keep_mask(e.record.top_features(top)) for e in result]).bool()  # type: ignore[misc]
            pred_top = model(torch.where(top_keep, x, torch.zeros_like(x))).argmax(1)
        ratios = [s / e for s, e in zip(sizes, exact, strict=True) if s is not None and e]
        row = {
            "schedule": name,
            "setting": {k: (repr(v) if not isinstance(v, (int, float, str)) else v) for k, v in kw.items()},
            "sis_sizes": sizes,
            "exact_sis_sizes": exact,
            "mean_sis_size": statistics.fmean(s for s in sizes if s is not None),
            "mean_exact_sis_size": statistics.fmean(e for e in exact if e is not None),
            "size_ratio_of_means": statistics.fmean(s for s in sizes if s is not None)
            / statistics.fmean(e for e in exact if e is not None),
            "mean_size_ratio": statistics.fmean(ratios),
            "max_size_ratio": max(ratios),
            "all_valid": all(valid),
            "top5pct_same_prediction": float((pred_top == target).float().mean()),
            "forward_rows": fr,
            "grad_rows": gr,
            "forward_equivalents_per_image": counted.equivalents / len(refs),
            "exact_forward_equivalents_per_image": d * (d + 1) // 2 + 1,
            "wall_s": wall,
            "floor_s": floor,
            "floor_ratio": wall / floor if floor > 0 else None,
        }
        rows.append(row)
        print(
            f"[{args.features}] {name:<26} size {row['mean_sis_size']:6.2f} vs exact {row['mean_exact_sis_size']:6.2f}"
            f"  ratio {row['size_ratio_of_means']:.3f} (per-image mean {row['mean_size_ratio']:.3f}, max "
            f"{row['max_size_ratio']:.2f})  fe/img {row['forward_equivalents_per_image']:8.0f}"
            f"  valid {row['all_valid']}"
            f"  top5% {row['top5pct_same_prediction']:.2f}  wall {wall:6.1f}s floor x{row['floor_ratio']:.2f}"
        )
        sys.stdout.flush()
    return {
        "benchmark": "sis_schedule",
        "features": args.features,
        "d": d,
        "threshold": args.threshold,
        "images": len(refs),
        "test_indices": [r["test_index"] for r in refs],
        "batch_size": args.batch_size if args.batch_size is not None else "measured (batch_size=None)",
        "floor_batch_size": floor_bs,
        "auto": "k=auto: the SIS by gradient-screened forward selection (pruned), the rest ranked by gradient blocks",
        "schedules": rows,
        "environment": _environment(),
        "command": "python benchmarks/bench_sis_schedule.py " + " ".join(sys.argv[1:]),
    }


def run_inception(args: argparse.Namespace) -> dict[str, Any]:
    from sis_attr._inception import InceptionV3Like

    device = torch.device(args.device)
    model = InceptionV3Like(width=args.width).to(device).eval()
    n = args.images or 2
    x = torch.randn(n, 3, 299, 299, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        base_logits = model(torch.zeros_like(x[:1]))
        logits = (model(x) - base_logits).double()
    target = logits.argmax(1)
    lo, hi = 1.0, 1.0
    while float(torch.softmax(logits * hi, 1).gather(1, target[:, None]).min()) < 0.95 and hi < 1e8:
        hi *= 2
    for _ in range(30):
        mid = (lo + hi) / 2
        if float(torch.softmax(logits * mid, 1).gather(1, target[:, None]).min()) < 0.95:
            lo = mid
        else:
            hi = mid

    class Scaled(nn.Module):
        def forward(self, z: Tensor) -> Tensor:
            return (model(z) - base_logits) * hi

    counted = CountingModel(Scaled())
    rows = []
    for name, fmask in [
        ("pixels", None),
        ("13x13 blocks", block_feature_mask(299, 299, 13).to(device)),
    ]:
        counted.reset()
        t0 = time.perf_counter()
        res = batched_gradient_sis(counted, x, target=target, feature_mask=fmask, threshold=0.9, k="auto")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - t0
        d = 299 * 299 if fmask is None else int(fmask.max()) + 1
        row = {
            "features": name,
            "d": d,
            "sis_sizes": [e.size for e in res],
            "forward_rows": counted.forward_rows,
            "grad_rows": counted.grad_rows,
            "forward_equivalents_per_image": counted.equivalents / n,
            "exact_forward_equivalents_per_image": d * (d + 1) // 2 + 1,
            "wall_s": wall,
            "seconds_per_image": wall / n,
        }
        rows.append(row)
        print(
            f"[inception] {name:<13} d={d:>6}  fe/img {row['forward_equivalents_per_image']:8.0f}  "
            f"{wall / n:7.1f} s/img  SIS {row['sis_sizes']}"
        )
        sys.stdout.flush()
    return {
        "benchmark": "sis_schedule_inception",
        "model": f"InceptionV3Like(width={args.width}), random weights, logits relative to the baseline",
        "parameters": sum(p.numel() for p in model.parameters()),
        "images": n,
        "threshold": 0.9,
        "k": "auto",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "cases": rows,
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "command": "python benchmarks/bench_sis_schedule.py " + " ".join(sys.argv[1:]),
    }


def run_timing(args: argparse.Namespace) -> dict[str, Any]:
    """Wall time of ``k="auto"`` against its floor on a call of realistic size (``--timing N`` confident test
    images, single-pixel features, the measured batch size): no references needed, only the cost."""
    model, x_all, _ = load_cifar_resnet20(n=max(4 * args.timing, 64))
    with torch.no_grad():
        conf, pred = torch.softmax(model(x_all), 1).max(1)
    idx = torch.nonzero(conf >= args.threshold).flatten()[: args.timing]
    x, target = x_all[idx], pred[idx]
    fmask = block_feature_mask(x.shape[2], x.shape[3], BLOCK["pixels"])
    floor_bs = best_batch_size(model, x)
    counted = CountingModel(model, floor_batch=x[:1].expand(floor_bs, *x.shape[1:]).contiguous())
    rows = []
    for repeat in range(args.repeats):
        counted.reset()
        t0 = time.perf_counter()
        result = batched_gradient_sis(
            counted, x, target=target, feature_mask=fmask, threshold=args.threshold, batch_size=args.batch_size
        )
        wall = time.perf_counter() - t0 - counted.floor_overhead_s
        rows.append(
            {
                "repeat": repeat,
                "wall_s": wall,
                "floor_s": counted.floor_s,
                "floor_ratio": wall / counted.floor_s,
                "forward_equivalents_per_image": counted.equivalents / len(idx),
                "mean_sis_size": statistics.fmean(e.size for e in result if e.size is not None),
            }
        )
        print(
            f"[timing] {len(idx)} images: wall {wall:.1f}s floor {counted.floor_s:.1f}s x{rows[-1]['floor_ratio']:.3f}"
        )
        sys.stdout.flush()
    return {
        "benchmark": "sis_schedule_timing",
        "features": "pixels",
        "schedule": 'k="auto" (default)',
        "threshold": args.threshold,
        "images": len(idx),
        "test_indices": idx.tolist(),
        "batch_size": args.batch_size if args.batch_size is not None else "measured (batch_size=None)",
        "floor_batch_size": floor_bs,
        "runs": rows,
        "median_floor_ratio": statistics.median(r["floor_ratio"] for r in rows),
        "environment": _environment(),
        "command": "python benchmarks/bench_sis_schedule.py " + " ".join(sys.argv[1:]),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """The size-against-cost frontier: one marker per schedule, named in the legend (log scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5), layout="constrained")
    markers = "o^v<>DPX*hsd"
    colors = plt.get_cmap("tab20").colors  # 20 colours x 11 markers: no two schedules drawn alike
    for i, r in enumerate(result["schedules"]):
        default = r["schedule"] == "auto (default)"
        ax.scatter(
            r["forward_equivalents_per_image"],
            r["size_ratio_of_means"],
            marker="o" if default else markers[(i % (len(markers) - 1)) + 1],
            color=colors[(2 * i) % 20 + (i // 10) % 2],
            s=90 if default else 45,
            edgecolor="black" if default else "none",
            zorder=3,
            label=f"{r['schedule']}: {r['size_ratio_of_means']:.2f}x at {r['forward_equivalents_per_image']:,.0f}",
        )
    ax.axhline(1.0, color="0.3", lw=0.8)
    ax.axhline(1.2, color="0.5", lw=0.8, ls="--")
    ax.text(0.01, 1.2, "goal: 1.2x exact", va="bottom", fontsize=8, color="0.4", transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks([0.8, 1, 1.2, 1.5, 2, 3, 5, 8])
    ax.set_xlabel("forward-equivalents per image (log scale; a backward pass counts 2)")
    ax.set_ylabel("mean SIS size / exact BackSelect's (log scale)")
    ax.legend(
        title="schedule: size ratio at cost",
        fontsize=7,
        title_fontsize=8,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )
    exact_fe = result["schedules"][0]["exact_forward_equivalents_per_image"]
    ax.set_title(
        f"SIS size against cost: ResNet20, {result['images']} CIFAR-10 test images, {result['d']} "
        f"{result['features']} (exact: {exact_fe:,} per image)",
        fontsize=9,
    )
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", choices=sorted(BLOCK), default="superpixels")
    p.add_argument("--images", type=int, default=None, help="use the first N stored references (default: all)")
    p.add_argument("--threshold", type=float, default=0.99)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None, help="default: measured (batch_size=None)")
    p.add_argument("--only", nargs="*", default=None, help="run only these schedules (by name)")
    p.add_argument("--auto", nargs="*", default=None, help="extra AutoK settings, e.g. 'shortlist=48, prune=False'")
    p.add_argument("--tag", default="")
    p.add_argument("--inception", action="store_true", help="the ImageNet-scale case instead")
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=float, default=1.0, help="inception channel multiplier")
    p.add_argument("--timing", type=int, default=0, help="wall time against the floor on N images instead")
    p.add_argument("--plot-only", action="store_true", help="redraw the frontier from the stored JSON")
    p.add_argument("--repeats", type=int, default=3, help="--timing: runs (the median ratio counts)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    def write(result: dict[str, Any], out: Path) -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")

    if args.timing:
        write(run_timing(args), RESULTS / f"sis_schedule_timing{args.tag}_cpu.json")
        return 0
    if args.inception:
        write(run_inception(args), RESULTS / f"sis_schedule_inception{args.tag}_{torch.device(args.device).type}.json")
        return 0
    out = RESULTS / f"sis_schedule_{args.features}{args.tag}_cpu.json"
    if args.plot_only:
        result = json.loads(out.read_text())
    else:
        result = run(args)
        write(result, out)
    DOCS_STATIC.mkdir(parents=True, exist_ok=True)
    figure = DOCS_STATIC / f"schedule_frontier_{args.features}{args.tag}.png"
    plot(result, figure)
    print(f"wrote {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
