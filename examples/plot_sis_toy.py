"""
SIS on toy models you can check by hand
=======================================

A Sufficient Input Subset (SIS) is a smallest set of input features that, alone, with every other feature
replaced by a baseline, keeps a model's score at or above a threshold (Carter et al., AISTATS 2019). This
example runs the three steps of the SIS procedure on toy models from :mod:`sis_attr.testing`, whose answers can
be worked out with pen and paper:

1. **BackSelect** removes features one at a time, always the one whose removal leaves the score highest, and
   records the score after every removal;
2. **FindSIS** reads the SIS at a threshold off that record, with no further model call, so one record gives
   the SIS at every threshold;
3. **SIScollection** masks the SIS found and searches again, giving disjoint SIS.

Runs in about a second on a CPU.
"""

# %%
# A linear score: the order of removal is the order of the weights
# -----------------------------------------------------------------
# :class:`~sis_attr.testing.LinearScore` computes ``x @ w``. With the baseline 0, removing feature ``i`` of an
# all-ones input changes the score by exactly ``-w[i]``, so backward selection removes features in increasing
# order of their weight. Feature 5 has a negative weight: removing it *raises* the score.
#
# Every model in ``sis_attr`` is scored by ``score_func(output, target)``; the default is the softmax
# probability of the target class. This toy model returns one raw score per example, which
# :meth:`LinearScore.score <sis_attr.testing.LinearScore.score>` passes through unchanged.
import matplotlib.pyplot as plt
import torch

from sis_attr import SufficientInputSubsets
from sis_attr.functional import backselect, sis_collection
from sis_attr.testing import L2NormScore, LinearScore, SumGridClassifier

weights = torch.tensor([3.0, 1.0, 2.0, 0.5, 4.0, -1.0])
model = LinearScore(weights)
x = torch.ones(1, 6)

record = backselect(model, x, score_func=LinearScore.score)[0]
print("removal order (first removed first):", record.order.tolist())
print("score after 0, 1, ..., 6 removals:  ", record.values.tolist())

# %%
# FindSIS at several thresholds, from the same record
# ---------------------------------------------------
# The SIS at threshold ``t`` is made of the features removed *after the last step whose score is still
# >= t* (the last crossing, inclusive). The full input scores 9.5, and removing feature 5 raises the score to
# 10.5: at ``t = 9.5`` the last crossing is after two removals (score 10.0), so feature 5 is left out and the
# SIS keeps the four positive features. Above 9.5 the full input itself falls short, so there is no SIS
# (``None``), even though a subset scores 10.5: an SIS is only defined for inputs that reach the threshold.
thresholds = [2.0, 4.0, 6.5, 8.0, 9.5, 10.0]
for t in thresholds:
    sis = record.find_sis(t)
    print(f"threshold {t:>4}: SIS = {None if sis is None else sis.tolist()}")

fig, ax = plt.subplots(figsize=(6.4, 3.6))
steps = range(len(record.values))
ax.plot(steps, record.values.tolist(), marker="o", color="black", label="score after removals")
for t, colour in zip(thresholds[:-1], plt.cm.viridis(torch.linspace(0, 0.9, 5).numpy()), strict=True):
    j = record.sis_index(t)  # number of removals after which the SIS starts
    ax.axhline(t, color=colour, linestyle=":", linewidth=1)
    ax.plot([j], [record.values[j].item()], marker="s", markersize=10, color=colour, label=f"last crossing of {t}")
ax.set_xticks(list(steps), ["none"] + [f"x{i}" for i in record.order.tolist()])
ax.set_xlabel("feature removed at this step")
ax.set_ylabel("score")
ax.set_title("One BackSelect record gives the SIS at every threshold")
ax.legend(fontsize="small", loc="lower left")
fig.tight_layout()

# %%
# Probabilities, Captum's interface, and log space
# ------------------------------------------------
# :class:`~sis_attr.testing.SumGridClassifier` turns a 2x2 grid into two-class logits ``[0, sum(x)]``, so the
# probability of class 1 is ``sigmoid(sum(x))``. :class:`~sis_attr.SufficientInputSubsets` is a Captum
# attribution method: :meth:`~sis_attr.SufficientInputSubsets.attribute` returns tensors shaped like the input,
# either the backward-selection rank (features removed later rank higher, so the SIS holds the top ranks) or
# the SIS keep-mask. :meth:`~sis_attr.SufficientInputSubsets.explain` returns the rich result.
#
# The record stores the *log*-probability (``record.values``): probabilities near 1 saturate in floating
# point (``1 - 1e-9`` and ``1 - 1e-12`` are both 1.0 in float32), their logarithms do not, so removals are
# still ranked correctly. ``record.scores`` converts back to probabilities.
grid = torch.tensor([[[3.0, -1.0], [1.5, 2.0]]])
sis_method = SufficientInputSubsets(SumGridClassifier())
print("rank map:\n", sis_method.attribute(grid, target=1, threshold=0.99))
print("SIS keep-mask:\n", sis_method.attribute(grid, target=1, threshold=0.99, output="keep_mask"))

result = sis_method.explain(grid, target=1, threshold=0.99)
explanation = result[0]
print("confidence on the full grid:", round(explanation.confidence, 4))
print("log-probabilities recorded: ", [round(v, 4) for v in explanation.record.values.tolist()])
print("probabilities:              ", [round(v, 4) for v in explanation.record.scores.tolist()])
print("SIS at 0.99:", explanation.sis.tolist(), "  at 0.95:", explanation.sis_at(0.95).tolist())
print("the grid with everything outside the SIS at the baseline:\n", explanation.masked_input())

# %%
# SIScollection: disjoint SIS on a small image
# --------------------------------------------
# :class:`~sis_attr.testing.L2NormScore` scores an image by its Euclidean norm, so its SIS are the entries of
# largest magnitude. The image below holds two identical 2x2 blobs of ones (norm 2 each) and a faint pixel of
# 0.5. At threshold 1.9 either blob alone is sufficient: SIScollection finds one, masks it, finds the other,
# and stops when what is left (the faint pixel) falls below the threshold.
image = torch.zeros(1, 6, 6)
image[0, 1:3, 1:3] = 1.0
image[0, 3:5, 3:5] = 1.0
image[0, 0, 5] = 0.5

collection = sis_collection(L2NormScore(), image, threshold=1.9, score_func=LinearScore.score)[0]
print("disjoint SIS (flat feature ids):", [s.tolist() for s in collection.collection])

fig, axes = plt.subplots(1, 1 + len(collection.collection), figsize=(7.5, 2.6))
axes[0].imshow(image[0], cmap="Greys", vmin=0, vmax=1)
axes[0].set_title("image")
for i, (ax, sis) in enumerate(zip(axes[1:], collection.collection, strict=True)):
    ax.imshow(collection.keep_mask(sis).float(), cmap="Reds", vmin=0, vmax=1)
    ax.set_title(f"SIS {i + 1} ({sis.numel()} pixels)")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# What it costs
# -------------
# Exact backward selection tries every remaining feature at every step: ``d (d + 1) / 2`` model evaluations for
# ``d`` features (21 for the 6 features above, 524,800 for the 1024 pixels of a CIFAR-10 image). ``sis_attr``
# packs these evaluations, across all examples of a call, into forward passes of ``batch_size`` masked inputs.
# A counting wrapper shows the number of evaluations (two more: the full and the fully masked input):


class CountingModel(torch.nn.Module):
    """Count the inputs a model is evaluated on."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.evaluations = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.evaluations += x.shape[0]
        return self.model(x)


for d in (6, 12, 24):
    counter = CountingModel(LinearScore(torch.linspace(1.0, 2.0, d)))
    backselect(counter, torch.ones(1, d), score_func=LinearScore.score)
    print(f"d = {d:>2}: {counter.evaluations:>3} evaluations, d (d + 1) / 2 = {d * (d + 1) // 2}")

# %%
# Group features with ``feature_mask`` (see :doc:`/howto`) or use the gradient-based method
# (:doc:`plot_batched_gradient_sis`) when ``d`` is large.
