"""The score of one image against the number of features removed by backward selection, with FindSIS's answer.

Drawn when the documentation is built (``.. plot::`` in ``docs/concepts.rst``): a small CNN is trained for a few
seconds on scikit-learn's 8x8 digits, exact backward selection runs on one test digit (64 pixels), and the figure
marks the threshold, the last step still at or above it, and the SIS (the pixels removed after that step).
"""

import matplotlib.pyplot as plt
import torch

from sis_attr import SufficientInputSubsets
from sis_attr.datasets import load_digits_images
from sis_attr.models import DigitsCNN
from sis_attr.training import train_classifier

THRESHOLD = 0.99
torch.manual_seed(0)
images, labels, _ = load_digits_images()
model, _ = train_classifier(DigitsCNN(), (images[:1500], labels[:1500]), epochs=3, seed=0, show_progress=False)
model.eval()
pixels = torch.arange(64).reshape(1, 1, 8, 8)
result = SufficientInputSubsets(model).explain(images[1500:1520], feature_mask=pixels, threshold=THRESHOLD)
# the first test digit with an SIS of a few pixels
explanation = next(e for e in result if e.size is not None and 4 <= e.size <= 20)
record = explanation.record
scores = record.scores.double()
d = scores.numel() - 1
j = int(record.sis_index(THRESHOLD))

fig, (ax, ax_img) = plt.subplots(1, 2, figsize=(8.6, 3.4), gridspec_kw={"width_ratios": [3.2, 1]})
removed = torch.arange(d + 1)
ax.axvspan(j - 0.5, d + 0.5, color="tab:green", alpha=0.12, lw=0)
ax.plot(removed, scores, color="tab:blue", lw=1.6, label="score after i removals")
ax.axhline(THRESHOLD, color="tab:red", ls="--", lw=1, label=f"threshold {THRESHOLD}")
ax.plot([j], [float(scores[j])], "o", color="tab:red", ms=6, zorder=3)
ax.annotate(
    f"last step at or above the threshold\n(i = {j}): the SIS is the {d - j} pixels\nremoved after it",
    xy=(j, float(scores[j])),
    xytext=(j - 38, 0.55),
    fontsize=8,
    arrowprops={"arrowstyle": "->", "lw": 0.8},
)
ax.text(d - (d - j) / 2, 0.05, "SIS", ha="center", color="tab:green", fontsize=9, fontweight="bold")
ax.set_xlim(-0.5, d + 0.5)
ax.set_ylim(0, 1.04)
ax.set_xlabel("features (pixels) removed by backward selection, i")
ax.set_ylabel("probability of the predicted class")
ax.legend(loc="lower left", fontsize=8, frameon=False)

keep = explanation.keep_mask()[0]
shown = explanation.masked_input()[0]
ax_img.imshow(torch.where(keep, shown, torch.full_like(shown, float("nan"))), cmap="gray_r", vmin=0, vmax=1)
ax_img.set_title(f"the SIS ({explanation.size} pixels)\nprobability {float(scores[j]):.3f}", fontsize=8)
ax_img.set_xticks([])
ax_img.set_yticks([])
fig.tight_layout()
