"""
Exact, batched-gradient and gradient-screened SIS: size against cost
====================================================================

Exact backward selection tries every remaining feature at every step: ``d (d + 1) / 2`` forward passes for
``d`` features, 524,800 for the 1024 pixels of one CIFAR-10 image. Carter et al. (NeurIPS 2021, Supplementary
S5) scale SIS to ImageNet with **Batched Gradient SIS**: the gradient of the score with respect to a feature
mask ranks the remaining features, and a block of ``k`` is removed per forward+backward pass, ``ceil(d / k)``
gradient steps in all. ``sis_attr`` adds a **gradient-screened exact** hybrid (``shortlist=M``): the gradient
proposes ``M`` candidates per step and they are evaluated exactly; and the **automatic schedule**
(``k="auto"``, the default), which builds the SIS up from the masked image with screened additions instead.

This example runs each method (:class:`~sis_attr.SufficientInputSubsets` and
:class:`~sis_attr.BatchedGradientSIS`, both Captum attribution methods) on two real CIFAR-10 test images with
the pretrained ResNet20, counts the forward rows and gradient passes each costs, and compares the SIS found.
Every SIS of every method is checked by a forward pass, so all of them reach the threshold; the question is
how small they are.

Without ``../shared/data`` the example falls back to a small CNN trained in a second on scikit-learn's digits.
"""

# %%
# Model, images and a counter of model evaluations
# ------------------------------------------------
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from sis_attr import BatchedGradientSIS, SufficientInputSubsets
from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, load_cifar10_batches, load_digits_images, shared_data_dir
from sis_attr.models import DigitsCNN, load_pretrained_cifar_resnet
from sis_attr.training import predict_proba, train_classifier

THRESHOLD = 0.99

# The real data: the directory named by $SIS_ATTR_SHARED_DATA or, in a source checkout, ../shared/data beside
# it (sphinx-gallery runs an example in its own directory and without ``__file__``).
EXAMPLES_DIR = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
root = shared_data_dir(fallback=EXAMPLES_DIR.parent.parent / "shared" / "data")
cifar_dir = None if root is None else root / "cifar10" / "cifar-10-batches-py-subset"
weights = [] if root is None else sorted((root / "weights").glob("resnet20-*.th"))
if cifar_dir is not None and cifar_dir.is_dir() and weights:
    images, labels, class_names = load_cifar10_batches(cifar_dir, "test", limit=20)
    net = load_pretrained_cifar_resnet(weights[0])  # takes images in [0, 1]
    baseline = torch.tensor(CIFAR10_MEAN_STD_AKAMASTER[0]).view(1, 3, 1, 1)  # the mean colour
    block = 4  # 4x4 superpixels: 64 features
else:
    print(
        "The real CIFAR-10 data and ResNet checkpoints were not found (looked in ../shared/data, or "
        "$SIS_ATTR_SHARED_DATA). Falling back to a small CNN trained on scikit-learn's 8x8 digits."
    )
    images, labels, class_names = load_digits_images()
    net, _ = train_classifier(DigitsCNN(), (images[:1500], labels[:1500]), epochs=5, seed=0)
    images, labels = images[1500:1520], labels[1500:1520]
    baseline = torch.zeros(1, 1, 1, 1)
    block = 2  # 2x2 superpixels: 16 features


class CountingModel(torch.nn.Module):
    """Wrap a model and count the rows it is evaluated on, with and without a gradient."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forward_rows = 0
        self.gradient_rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:  # a forward+backward pass of the gradient methods
            self.gradient_rows += x.shape[0]
        else:
            self.forward_rows += x.shape[0]
        return self.model(x)


model = CountingModel(net).eval()

N_IMAGES = 2
probs = predict_proba(net, images)
confidence, predicted = probs.max(dim=1)
chosen = ((predicted == labels) & (confidence >= THRESHOLD)).nonzero().flatten()[:N_IMAGES]
x = images[chosen]
height, width = x.shape[2], x.shape[3]
for i in chosen.tolist():
    print(f"image {i}: {class_names[int(labels[i])]}, confidence {confidence[i]:.4f}")

# %%
# Features: pixels and superpixels
# --------------------------------
# A ``feature_mask`` holds an integer group id per position (Captum's convention); positions with one id are
# removed together. Broadcast over the channels, ``pixels`` makes each pixel one feature and ``blocks`` each
# ``block x block`` square.
pixels = torch.arange(height * width).reshape(1, 1, height, width)
rows, cols = torch.arange(height) // block, torch.arange(width) // block
blocks = (rows[:, None] * (width // block) + cols[None, :]).reshape(1, 1, height, width)
print(f"{pixels.max() + 1} pixel features, {blocks.max() + 1} superpixel features of {block}x{block}")

# %%
# Run every method
# ----------------
# ``k`` is the block removed per gradient step: an integer, or a fraction of the remaining features
# (``k=0.05`` takes large steps while many features remain and single features near the end). The paper uses
# ``k=100`` on the 89,401 pixels of ImageNet images. All images of a call are explained together: their
# masked inputs share forward passes of ``batch_size`` rows.
methods = {
    f"exact, {block}x{block} superpixels": dict(kind="exact", feature_mask=blocks),
    f"gradient k=1, {block}x{block} superpixels": dict(kind="gradient", feature_mask=blocks, k=1),
    "gradient k=8, pixels": dict(kind="gradient", feature_mask=pixels, k=8),
    "screened k=5% M=16, pixels": dict(kind="gradient", feature_mask=pixels, k=0.05, shortlist=16),
    "auto (default), pixels": dict(kind="gradient", feature_mask=pixels, k="auto"),
}
if height * width <= 256:  # exact selection over the pixels is affordable only for small images
    methods["exact, pixels"] = dict(kind="exact", feature_mask=pixels)

runs = {}
for name, options in methods.items():
    options = dict(options)
    kind = options.pop("kind")
    model.forward_rows = model.gradient_rows = 0
    start = time.perf_counter()
    method = SufficientInputSubsets(model) if kind == "exact" else BatchedGradientSIS(model)
    result = method.explain(x, baselines=baseline, threshold=THRESHOLD, **options)
    seconds = time.perf_counter() - start
    keep = result.keep_mask()[:, 0]  # (N, H, W): the channels share the mask
    masked = torch.stack([e.masked_input() for e in result])
    on_sis = predict_proba(net, masked).gather(1, predicted[chosen].unsqueeze(1)).squeeze(1)
    runs[name] = dict(
        keep=keep,
        pixels=keep.flatten(1).sum(dim=1).tolist(),
        forward_rows=model.forward_rows / len(x),
        gradient_rows=model.gradient_rows / len(x),
    )
    print(
        f"{name:<34} SIS {runs[name]['pixels']} pixels (confidence on them {[round(float(c), 3) for c in on_sis]}); "
        f"per image: {runs[name]['forward_rows']:>6.0f} forward rows, {runs[name]['gradient_rows']:>4.0f} "
        f"gradient passes; {seconds:.1f} s"
    )

d = height * width
print(f"{'exact, pixels (not run)':<34} would need d (d + 1) / 2 = {d * (d + 1) // 2:,} forward rows per image")

# %%
# SIS size against cost
# ---------------------
# For a given set of features the exact method is the reference, at the full quadratic cost. The pure
# gradient order costs one forward+backward pass per block but is only a stand-in for it, and its SIS can be
# larger. Screening the gradient's best candidates exactly at the level of single pixels finds SIS far
# smaller than any method restricted to superpixels can, for a small fraction of the 524,800 forward rows of
# exact selection over pixels; the automatic schedule screens additions to a nearly empty image instead of
# removals from a full one, and needs fewer evaluations for SIS as small. (``benchmarks/bench_gradient_sis.py``
# and ``benchmarks/bench_sis_schedule.py`` measure these trade-offs on many images.)
names = list(runs)
fig, (ax_size, ax_cost) = plt.subplots(1, 2, figsize=(11, 4.2))
ypos = torch.arange(len(names)).float()
for j in range(len(x)):
    offset = (j - (len(x) - 1) / 2) * 0.8 / len(x)
    ax_size.barh(ypos + offset, [runs[n]["pixels"][j] for n in names], height=0.8 / len(x), label=f"image {j + 1}")
ax_size.set_yticks(ypos.tolist(), names)
ax_size.set_xlabel("SIS size (pixels)")
ax_size.legend(fontsize="small")
ax_size.invert_yaxis()
for offset, key, colour, label in (
    (-0.2, "forward_rows", "tab:blue", "forward rows"),
    (0.2, "gradient_rows", "tab:orange", "gradient passes"),
):
    values = [runs[n][key] for n in names]
    ax_cost.barh(ypos + offset, [v if v > 0 else float("nan") for v in values], height=0.4, color=colour, label=label)
ax_cost.axvline(d * (d + 1) / 2, color="black", linestyle=":", label="exact over pixels")
ax_cost.set_xscale("log")
ax_cost.set_xlim(1, 2 * d * (d + 1) / 2)
ax_cost.set_yticks(ypos.tolist(), [""] * len(names))
ax_cost.invert_yaxis()
ax_cost.set_xlabel("model evaluations per image (log scale)")
ax_cost.legend(fontsize="small", loc="lower right")
fig.tight_layout()

# %%
# Where the SIS lie
# -----------------
fig, axes = plt.subplots(len(x), len(names) + 1, figsize=(2.1 * (len(names) + 1), 2.3 * len(x)), squeeze=False)
for j in range(len(x)):
    image = x[j].permute(1, 2, 0).squeeze(-1).clamp(0, 1)
    cmap = "gray" if x.shape[1] == 1 else None
    axes[j, 0].imshow(image, cmap=cmap, vmin=0, vmax=1)
    for ax, name in zip(axes[j, 1:], names, strict=True):
        keep = runs[name]["keep"][j]
        shown = torch.where(keep.unsqueeze(-1) if x.shape[1] > 1 else keep, image, torch.ones_like(image))
        ax.imshow(shown, cmap=cmap, vmin=0, vmax=1)
        if j == 0:
            ax.set_title(name.replace(", ", "\n"), fontsize=8)
axes[0, 0].set_title("image", fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# Costs in general: exact ``d (d + 1) / 2`` evaluations; batched gradient ``ceil(d / k)`` forward+backward
# passes per image (plus at most ``k - 1`` forward rows to refine the SIS inside the last block); the screened
# hybrid adds ``M`` forward rows per step; the automatic schedule costs a gradient pass and ``shortlist`` (32)
# forward rows per SIS feature, plus about 40 gradient passes to rank the rest of 1,024 pixels. All of them
# pack the rows of every image of a call into forward passes of ``batch_size``, so explaining many images at once
# keeps a GPU busy (see :doc:`/howto`).

# sphinx_gallery_thumbnail_number = 2
