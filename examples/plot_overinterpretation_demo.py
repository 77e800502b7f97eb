"""
Overinterpretation made visible: a planted shortcut
===================================================

A skin-cancer classifier famously learned to look for the rulers that dermatologists place beside suspicious
lesions. Carter et al. (NeurIPS 2021) call a model that finds strong class evidence in such semantically
meaningless features *overinterpreting*, and show that it does not show in test accuracy: the shortcut is a
real statistical signal of the data.

This example plants such a shortcut and lets the overinterpretation audit find it. scikit-learn's 8x8
handwritten digits (bundled, no download) are used to train two small CNNs
(:class:`~sis_attr.models.DigitsCNN`):

* **clean**, on the digits as they are;
* **shortcut**, on a copy in which every digit carries a one-pixel mark on the image border whose position
  encodes the label (the "ruler"), and in which a quarter of the digits were swapped for digits of other
  classes, so that the mark is a more reliable cue than the content.

Both models score about equally well on their own test sets. The audit
(:func:`sis_attr.overinterpretation.audit`, run on each model by
:func:`sis_attr.demo.run_demo`) computes the exact backward selection of every test image
(64 pixel features, so the exact method is cheap) and derives from it the sufficient input subsets (SIS) at
threshold 0.99, where their pixels lie, and the accuracy on 5% pixel-subsets. This is also what
``sis-attr demo`` runs.
"""

# %%
# The planted shortcut
# --------------------
# :func:`~sis_attr.demo.plant_shortcut` sets one pixel per image to 1, at the position of
# its class in :data:`~sis_attr.demo.DIGITS_SHORTCUT_POSITIONS`: the left column (where no
# digit has ink) for the digits 0 to 7, two pixels of the right column for 8 and 9.
import matplotlib.pyplot as plt
import torch

from sis_attr.datasets import load_digits_images
from sis_attr.demo import DIGITS_SHORTCUT_POSITIONS, plant_shortcut, run_demo, shortcut_share

images, labels, class_names = load_digits_images()
first_of_each = torch.stack([torch.nonzero(labels == c)[0, 0] for c in range(10)])
marked = plant_shortcut(images[first_of_each], labels[first_of_each])

fig, axes = plt.subplots(2, 10, figsize=(10, 2.6))
for c in range(10):
    axes[0, c].imshow(images[first_of_each[c], 0], cmap="gray_r", vmin=0, vmax=1)
    axes[1, c].imshow(marked[c, 0], cmap="gray_r", vmin=0, vmax=1)
    row, col = DIGITS_SHORTCUT_POSITIONS[c]
    axes[1, c].add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    axes[0, c].set_title(class_names[c])
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
axes[0, 0].set_ylabel("digit")
axes[1, 0].set_ylabel("marked")
fig.tight_layout()

# %%
# Train both models and audit them
# --------------------------------
# ``fast=True`` trains for a few epochs and audits 30 test images per model (about 10 seconds on a CPU);
# the command-line demo (``sis-attr demo``) uses more. Each audit returns an
# :class:`~sis_attr.overinterpretation.AuditReport`.
demo = run_demo(fast=True, seed=0, show_progress=False, log=print)
clean, shortcut = demo.reports["clean"], demo.reports["shortcut"]
print(demo.summary())

# %%
# Both models are accurate on their test sets, and nothing in the accuracy gives the shortcut away. The audit
# does: the shortcut model's SIS are a single pixel, and on its 5% pixel-subsets (4 of 64 pixels) it keeps
# both its accuracy and its confidence (a confidence drop near zero), whereas the clean model needs several
# stroke pixels and loses confidence on 4. On test digits without the mark the shortcut model's accuracy
# collapses: the mark, not the digit, decides.
#
# Where the SIS lie
# -----------------
# The location heatmap counts how often each pixel belongs to an SIS (the paper's Figures 2 and 4). The clean
# model's SIS sit on the strokes of the digits; the shortcut model's sit on the marks (red squares).
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
for ax, (name, report) in zip(axes, demo.reports.items(), strict=True):
    report.heatmap.plot(ax=ax, title=f"{name}: SIS locations ({report.heatmap.n_images} images)")
for row, col in DIGITS_SHORTCUT_POSITIONS:
    axes[1].add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
fig.tight_layout()
print(f"share of the shortcut model's SIS pixels on the marks: {shortcut_share(shortcut):.0%}")

# %%
# SIS sizes
# ---------
# The SIS of each image at threshold 0.99, and the mean SIS size as the threshold varies (the paper's
# Figure 6). Small SIS are the signature of overinterpretation: the decision rests on very few pixels.
fig, (ax_hist, ax_curve) = plt.subplots(1, 2, figsize=(10, 3.6))
bins = torch.arange(0.5, 24.5, 1.0).tolist()
for name, report in demo.reports.items():
    sizes = report.sis_sizes[report.threshold].sizes
    ax_hist.hist(sizes[~sizes.isnan()].numpy(), bins=bins, alpha=0.7, label=name)
    thresholds = report.sis_sizes.thresholds
    means = [report.sis_sizes[t].mean_size for t in thresholds]
    ax_curve.plot(thresholds, means, marker="o", label=name)
ax_hist.set_xlabel(f"SIS size at threshold {clean.threshold} (pixels of 64)")
ax_hist.set_ylabel("images")
ax_hist.legend()
ax_curve.set_xlabel("SIS threshold")
ax_curve.set_ylabel("mean SIS size (pixels)")
ax_curve.legend()
fig.tight_layout()

# %%
# Accuracy on 5% pixel-subsets
# ----------------------------
# The paper's Table 1 test: keep only the 5% of pixels that backward selection removed last, mask the rest,
# and classify. Random 5% subsets are the control.
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, (name, report) in zip(axes, demo.reports.items(), strict=True):
    report.subset_accuracy.plot(ax=ax)
    ax.set_title(name)
fig.tight_layout()

# %%
# Example SIS
# -----------
# Test digits beside their SIS (everything else set to the baseline, 0) and its location: the shortcut model
# is 99% confident on one marked pixel.
fig = plt.figure(figsize=(10, 4.4))
axes = shortcut.examples.plot(ax=fig.add_subplot())  # a (3, n) array of Axes: image, SIS only, SIS location

# %%
# Audit your own model
# --------------------
# :func:`~sis_attr.overinterpretation.audit` runs the same analyses on any image classifier and data,
# and ``report.save(directory)`` writes the HTML report; ``sis-attr audit`` does it from the command line
# (see :doc:`/howto`). ``run_demo(out="sis-report")`` writes the reports of both models side by side.

# sphinx_gallery_thumbnail_number = 2
