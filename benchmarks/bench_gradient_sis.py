"""Benchmark Batched Gradient SIS: cost against the gradient floor, and quality/cost against exact BackSelect.

Cases (each writes ``benchmarks/results/gradient_sis_<case>_<device>.json`` and prints its ratios; every ratio
is measured within one run, on one machine, under the same thread settings):

``floor``
    Per-image cost of Batched Gradient BackSelect on CIFAR-size inputs against the floor
    ``ceil(d / k) x (one forward + one backward at the same batch size)``, timed in the same run, and the extra
    time FindSIS refinement takes. The headline ratios time the floor interleaved with our run (one floor pass
    after each of our model calls, :class:`InterleavedFloor`); back-to-back ratios are reported beside them.
``exact``
    Exact BackSelect vs the pure gradient method vs gradient-screened selection (``shortlist``) on the same real
    CIFAR-10 test images with the pretrained ResNet20: SIS sizes, validity, forward rows and wall time.
    ``--exact-features pixels`` (1024 features: 10-30 minutes per image for exact BackSelect on a CPU) or
    ``superpixels`` (2x2 blocks, 256 features: about 16x fewer evaluations). Also reports, for each method, how
    often the top 5% of features of its order alone keep the prediction, against random subsets.
``inception``
    32 images at 299x299 through a random-weight Inception-v3-sized network, k=100, threshold 0.9 (the paper's
    setting: "1-2 minutes per 32 images"); the target classes are set so every image is above the threshold.
    Meant for a GPU (``--device cuda``); records ``torch.cuda.get_device_name``.

Examples::

    python benchmarks/bench_gradient_sis.py floor exact --images 8
    python benchmarks/bench_gradient_sis.py exact --exact-features pixels --images 2
    python benchmarks/bench_gradient_sis.py inception --device cuda [--amp] [--channels-last]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sis_attr._inception import InceptionV3Like  # an Inception-v3-shaped network, random weights

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------
class Counted:
    """Counts forward calls and rows (masked inputs) through a model or function."""

    def __init__(self, model: Callable[[Tensor], Tensor]) -> None:
        self.model = model
        self.calls = 0
        self.rows = 0

    def reset(self) -> None:
        self.calls = 0
        self.rows = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.calls += 1
        self.rows += int(x.shape[0])
        return self.model(x)


class InterleavedFloor:
    """Wraps the model and times the floor *during* our run, one floor pass after each of our model calls.

    After a gradient-tracking call (a BackSelect iteration) it times one forward + backward of the unmasked
    batch with respect to the input; after a no-grad call of ``n`` rows (FindSIS refinement, final checks) it
    times one no-grad forward of ``n`` rows. Load that comes and goes on a shared machine then hits our run and
    its floor alike; our time is the wall time minus the floor passes.
    """

    def __init__(self, model: Callable[[Tensor], Tensor], x: Tensor, target: Tensor) -> None:
        self.model = model
        self.x = x
        self.target = target
        self.grad_s = 0.0
        self.grad_steps = 0
        self.forward_s = 0.0
        self.rows = 0
        self._pool = x.detach()

    @property
    def floor_s(self) -> float:
        return self.grad_s + self.forward_s

    def __call__(self, z: Tensor) -> Tensor:
        out = self.model(z)
        n = int(z.shape[0])
        self.rows += n
        _sync(z.device)
        start = time.perf_counter()
        if z.requires_grad:
            xr = self.x.detach().clone().requires_grad_(True)
            score = torch.log_softmax(self.model(xr).float(), 1).gather(1, self.target[:, None]).sum()
            torch.autograd.grad(score, xr)
            _sync(z.device)
            self.grad_s += time.perf_counter() - start
            self.grad_steps += 1
        else:
            if self._pool.shape[0] < n:
                reps = math.ceil(n / self.x.shape[0])
                self._pool = self.x.repeat(reps, *([1] * (self.x.dim() - 1)))
            with torch.no_grad():
                self.model(self._pool[:n])
            _sync(z.device)
            self.forward_s += time.perf_counter() - start
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def floor_time(
    model: Callable[[Tensor], Tensor], x: Tensor, target: Tensor, repeats: int, device: torch.device
) -> float:
    """Seconds for one forward + one backward (gradient w.r.t. the input only) at this batch size."""

    def once() -> None:
        xr = x.detach().clone().requires_grad_(True)
        out = model(xr)
        score = torch.log_softmax(out.float(), 1).gather(1, target[:, None]).sum()
        torch.autograd.grad(score, xr)

    once()
    _, dt = _timed(lambda: [once() for _ in range(repeats)], device)
    return dt / repeats


def forward_time(model: Callable[[Tensor], Tensor], x: Tensor, repeats: int, device: torch.device) -> float:
    """Seconds for one no-grad forward at this batch size."""
    with torch.no_grad():
        model(x)
        _, dt = _timed(lambda: [model(x) for _ in range(repeats)], device)
    return dt / repeats


def _load_cifar(n: int, device: torch.device) -> tuple[nn.Module, Tensor, Tensor]:
    from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, normalize, shared_data_dir
    from sis_attr.models import load_pretrained_cifar_resnet

    # $SIS_ATTR_SHARED_DATA, else ../shared/data beside this checkout
    root = shared_data_dir(fallback=Path(__file__).resolve().parents[2] / "shared" / "data")
    if root is None:
        sys.exit("../shared/data is not available: the CIFAR-10 cases need the real test images and ResNet20 weights")
    images, labels, _ = load_cifar10_batches(root / "cifar10" / "cifar-10-batches-py-subset", "test", limit=n)
    # the paper's masking: removed pixels take the mean colour, i.e. 0 in the normalised input space
    model = load_pretrained_cifar_resnet(
        20, weights_dir=root / "weights", with_normalization=False, map_location=device
    )
    return model, normalize(images, *CIFAR10_MEAN_STD_AKAMASTER).to(device), labels.to(device)


def _superpixel_mask(h: int, w: int, size: int, device: torch.device) -> Tensor:
    ids = (torch.arange(h, device=device)[:, None] // size) * math.ceil(w / size) + torch.arange(
        w, device=device
    ) // size
    return ids.reshape(1, 1, h, w)


# --------------------------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------------------------
def case_floor(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from sis_attr.functional import batched_gradient_sis, gradient_backselect

    model, x, _ = _load_cifar(args.images, device)
    counted = Counted(model)
    with torch.no_grad():
        target = model(x).argmax(1)
    d = x.shape[2] * x.shape[3]
    rows = []
    for k in args.k:
        iters = math.ceil(d / k)
        floors, fwds, t_bss, t_siss = [], [], [], []
        inter_bs, inter_sis = [], []
        for _ in range(args.rounds):
            # back to back: the floor measured alone, then our run (the minimum of each over rounds)
            floors.append(floor_time(model, x, target, args.repeats, device) * iters)
            fwds.append(forward_time(model, x, args.repeats, device) / x.shape[0])
            counted.reset()
            _, t = _timed(
                lambda k=k: gradient_backselect(counted, x, target=target, k=k, batch_size=x.shape[0]), device
            )
            t_bss.append(t)
            bs_rows = counted.rows
            counted.reset()
            result, t = _timed(
                lambda k=k: batched_gradient_sis(
                    counted, x, target=target, threshold=args.threshold, k=k, batch_size=x.shape[0]
                ),
                device,
            )
            t_siss.append(t)
            refine_rows = counted.rows - bs_rows
            # interleaved: one floor pass timed after each of our model calls (see InterleavedFloor)
            wrapped = InterleavedFloor(model, x, target)
            _, t = _timed(
                lambda k=k, w=wrapped: gradient_backselect(w, x, target=target, k=k, batch_size=x.shape[0]), device
            )
            step_floor = wrapped.grad_s / max(wrapped.grad_steps, 1) * iters
            inter_bs.append((t - wrapped.floor_s) / step_floor)
            wrapped = InterleavedFloor(model, x, target)
            _, t = _timed(
                lambda k=k, w=wrapped: batched_gradient_sis(
                    w, x, target=target, threshold=args.threshold, k=k, batch_size=x.shape[0]
                ),
                device,
            )
            step_floor = wrapped.grad_s / max(wrapped.grad_steps, 1) * iters
            inter_sis.append((t - wrapped.floor_s) / (step_floor + wrapped.forward_s))
        floor, fwd_row, t_bs, t_sis = min(floors), min(fwds), min(t_bss), min(t_siss)
        row = {
            "k": k,
            "images": int(x.shape[0]),
            "features": d,
            "iterations": iters,
            "rounds": args.rounds,
            "ratio_backselect_to_floor": statistics.median(inter_bs),
            "ratio_sis_to_floor_plus_refinement": statistics.median(inter_sis),
            "interleaved_backselect_ratios": sorted(inter_bs),
            "interleaved_sis_ratios": sorted(inter_sis),
            "floor_s": floor,
            "backselect_s": t_bs,
            "back_to_back_ratio_backselect": t_bs / floor,
            "sis_s": t_sis,
            "refinement_rows": refine_rows,
            "refinement_rows_cost_s": refine_rows * fwd_row,
            "back_to_back_ratio_sis": t_sis / (floor + refine_rows * fwd_row),
            "per_image_s": t_sis / x.shape[0],
            "mean_sis_size": float(result.sizes().nanmean()),
            "all_floors_s": floors,
            "all_backselect_s": t_bss,
            "all_sis_s": t_siss,
        }
        rows.append(row)
        print(
            f"[floor] k={k:>3}: BackSelect {t_bs:.2f}s, {row['ratio_backselect_to_floor']:.2f}x the floor "
            f"(interleaved, median; back to back {row['back_to_back_ratio_backselect']:.2f}x); "
            f"with FindSIS+refinement {t_sis:.2f}s, {row['ratio_sis_to_floor_plus_refinement']:.2f}x the floor "
            f"+ {refine_rows} refinement rows (back to back {row['back_to_back_ratio_sis']:.2f}x)"
        )
    return {"case": "floor", "threshold": args.threshold, "rows": rows}


def _valid(model: nn.Module, x: Tensor, target: Tensor, keeps: Tensor, threshold: float) -> Tensor:
    with torch.no_grad():
        p = torch.softmax(model(torch.where(keeps, x, torch.zeros_like(x))), 1).gather(1, target[:, None])[:, 0]
    return p >= threshold


def case_exact(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from sis_attr.functional import batched_gradient_sis, sufficient_input_subsets

    model, x, labels = _load_cifar(args.images, device)
    counted = Counted(model)
    with torch.no_grad():
        target = model(x).argmax(1)
    h, w = x.shape[2], x.shape[3]
    fmask = _superpixel_mask(h, w, 2, device) if args.exact_features == "superpixels" else None
    methods: list[tuple[str, Callable[[], Any]]] = []
    if not args.skip_exact:
        exact_mask = fmask if fmask is not None else _superpixel_mask(h, w, 1, device)
        methods.append(
            (
                "exact",
                lambda: sufficient_input_subsets(
                    counted, x, target=target, feature_mask=exact_mask, threshold=args.threshold, batch_size=256
                ),
            )
        )
    for k, m in [(1, None), (16, None), (4, 16), (1, 16)]:
        name = f"gradient k={k}" if m is None else f"hybrid M={m} k={k}"
        methods.append(
            (
                name,
                lambda k=k, m=m: batched_gradient_sis(
                    counted,
                    x,
                    target=target,
                    feature_mask=fmask,
                    threshold=args.threshold,
                    k=k,
                    shortlist=m,
                    batch_size=max(64, x.shape[0]),
                ),
            )
        )
    d = (h // 2) * (w // 2) if fmask is not None else h * w
    top = max(1, math.ceil(0.05 * d))  # 52 of 1024 pixels
    gen = torch.Generator().manual_seed(0)
    out_rows = []
    for name, run in methods:
        counted.reset()
        result, dt = _timed(run, device)
        sizes = [e.size for e in result]
        keep = result.keep_mask().to(device)
        valid = _valid(model, x, target, keep.bool(), args.threshold)
        # the top 5% of features of the order alone
        top_keep = torch.stack(
            [e.keep_mask(e.record.top_features(top)) for e in result]  # type: ignore[arg-type]
        ).to(device)
        with torch.no_grad():
            pred_top = model(torch.where(top_keep.bool(), x, torch.zeros_like(x))).argmax(1)
        row = {
            "method": name,
            "wall_s": dt,
            "per_image_s": dt / x.shape[0],
            "forward_calls": counted.calls,
            "forward_rows": counted.rows,
            "sis_sizes": sizes,
            "mean_sis_size": float(result.sizes().nanmean()),
            "all_valid": bool(valid[[s is not None for s in sizes]].all()),
            "top5pct_same_prediction": float((pred_top == target).float().mean()),
        }
        out_rows.append(row)
        print(
            f"[exact] {name:<16} {dt:8.1f}s  rows {counted.rows:>9}  SIS sizes {sizes}  "
            f"valid {row['all_valid']}  top-5% keeps prediction {row['top5pct_same_prediction']:.2f}"
        )
    # random 5% subsets, for reference
    rand_keep = torch.zeros(x.shape[0], d, dtype=torch.bool)
    for i in range(x.shape[0]):
        rand_keep[i, torch.randperm(d, generator=gen)[:top]] = True
    ids = (fmask if fmask is not None else _superpixel_mask(h, w, 1, device)).expand(x.shape[0], 1, h, w)
    rk = torch.gather(rand_keep.to(device), 1, ids.reshape(x.shape[0], -1)).reshape(x.shape[0], 1, h, w)
    with torch.no_grad():
        pred_rand = model(torch.where(rk.expand_as(x), x, torch.zeros_like(x))).argmax(1)
    rand_rate = float((pred_rand == target).float().mean())
    print(f"[exact] random {top} features keep the prediction for {rand_rate:.2f} of images")
    base = next((r for r in out_rows if r["method"] == "exact"), None)
    if base is not None:
        for r in out_rows:
            r["speedup_vs_exact"] = base["wall_s"] / r["wall_s"]
            r["rows_fraction_of_exact"] = r["forward_rows"] / base["forward_rows"]
    return {
        "case": "exact",
        "threshold": args.threshold,
        "features": args.exact_features,
        "d": d,
        "images": int(x.shape[0]),
        "test_indices": list(range(int(x.shape[0]))),
        "labels": labels.tolist(),
        "random_top5pct_same_prediction": rand_rate,
        "methods": out_rows,
    }


def case_inception(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from sis_attr.functional import batched_gradient_sis

    model = InceptionV3Like(width=args.width).to(device).eval()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    n, size = args.images, args.size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=gen).to(device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def raw(z: Tensor) -> Tensor:
        if args.amp and device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model(z).float()
        return model(z)

    # A random network is not confident, and its logits hardly depend on the input. Use the logits relative to
    # those of the all-baseline input (which then scores a uniform 1/1000: an uninformative baseline), scaled so
    # every image starts at >= 0.95 confidence in its top class: backward selection then crosses the threshold
    # somewhere between the full image and the baseline, as for a confident real classifier.
    with torch.no_grad():
        base_logits = raw(torch.zeros_like(x[:1]))
        logits = (raw(x) - base_logits).double()
    target = logits.argmax(1)
    lo, hi = 1.0, 1.0
    while float(torch.softmax(logits * hi, 1).gather(1, target[:, None]).min()) < 0.95 and hi < 1e8:
        hi *= 2
    for _ in range(30):
        mid = (lo + hi) / 2
        too_low = float(torch.softmax(logits * mid, 1).gather(1, target[:, None]).min()) < 0.95
        lo, hi = (mid, hi) if too_low else (lo, mid)
    scale = hi

    def forward(z: Tensor) -> Tensor:
        return (raw(z) - base_logits) * scale

    floor = floor_time(forward, x, target, max(1, args.repeats // 2), device) * math.ceil(size * size / args.k)
    counted = Counted(forward)
    result, dt = _timed(
        lambda: batched_gradient_sis(
            counted,
            x,
            target=target,
            threshold=args.inception_threshold,
            k=args.k,
            refine=not args.no_refine,
            batch_size=n,
        ),
        device,
    )
    sizes = result.sizes()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    row = {
        "case": "inception",
        "images": n,
        "size": size,
        "k": args.k,
        "threshold": args.inception_threshold,
        "width": args.width,
        "logit_scale": scale,
        "parameters": sum(p.numel() for p in model.parameters()),
        "amp_bf16": bool(args.amp),
        "channels_last": bool(args.channels_last),
        "wall_s": dt,
        "per_32_images_s": dt * 32 / n,
        "floor_s": floor,
        "ratio_to_floor": dt / floor,
        "forward_calls": counted.calls,
        "forward_rows": counted.rows,
        "gradient_rows": n * math.ceil(size * size / args.k),
        "other_rows": counted.rows - n * math.ceil(size * size / args.k),  # target, end score, refinement, check
        "images_with_sis": int((~sizes.isnan()).sum()),
        "mean_sis_size": float(sizes.nanmean()) if bool((~sizes.isnan()).any()) else None,
        "peak_gpu_memory_gib": peak,
        "paper_reported_s_per_32_images": [60, 120],
        "goal_s_per_32_images": 10,
    }
    print(
        f"[inception] {n} images {size}x{size}, k={args.k}: {dt:.1f}s ({row['per_32_images_s']:.1f}s per 32 images; "
        f"floor {floor:.1f}s -> {row['ratio_to_floor']:.2f}x), {counted.rows} rows, peak GPU memory {peak}"
    )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", nargs="*", help="floor, exact and/or inception (default: floor exact)")
    p.add_argument("--inception", action="store_true", help="run the inception case (alone unless cases are given)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--images", type=int, default=None, help="images (CIFAR cases: 8; inception: 32)")
    p.add_argument("--threshold", type=float, default=0.99)
    p.add_argument("--k", type=int, nargs="*", default=None, help="block sizes (floor: 1 16 64; inception: 100)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="floor case: interleaved rounds (minimum reported)")
    p.add_argument("--exact-features", choices=["pixels", "superpixels"], default="superpixels")
    p.add_argument("--skip-exact", action="store_true")
    p.add_argument("--width", type=float, default=1.0, help="inception channel multiplier (1 = Inception-v3 sized)")
    p.add_argument("--size", type=int, default=299)
    p.add_argument("--inception-threshold", type=float, default=0.9)
    p.add_argument("--no-refine", action="store_true")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--tag", default="")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON results go")
    args = p.parse_args(argv)
    unknown = [c for c in args.cases if c not in ("floor", "exact", "inception")]
    if unknown:
        p.error(f"unknown case(s) {unknown}: choose from floor, exact, inception")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cases = list(dict.fromkeys([*args.cases, *(["inception"] if args.inception else [])])) or ["floor", "exact"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for case in cases:
        a = argparse.Namespace(**vars(args))
        if case == "inception":
            a.images = a.images or 32
            a.k = (a.k or [100])[0]
        else:
            a.images = a.images or 8
            a.k = a.k or [1, 16, 64]
        run = {"floor": case_floor, "exact": case_exact, "inception": case_inception}[case]
        out = run(a, device)
        out["environment"] = _environment(device)
        out["command"] = " ".join(sys.argv)
        name = f"gradient_sis_{case}_{device.type}{'_' + args.tag if args.tag else ''}.json"
        (args.out_dir / name).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out_dir / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
