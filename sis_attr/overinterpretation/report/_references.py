"""Reference values that every report compares its own numbers with: the paper's, and measured method ratios.

Update here, in one place, when better measurements exist (the verdict of :mod:`._verdict` and the row
explanations of :mod:`._results` read them).
"""

from __future__ import annotations

__all__: list[str] = []  # data of the report's verdict; nothing public

PAPER = "Carter et al. (NeurIPS 2021)"
"""How the report names the paper."""

PAPER_THRESHOLD = 0.99
"""The SIS threshold of the paper's CIFAR-10 experiments (Section 4.1)."""

PAPER_FRACTION = 0.05
"""The size of the paper's pixel-subsets (Section 4.1, Table 1)."""

PAPER_SIS_FRACTION = 0.05
"""Section 4.1: at threshold 0.99 "the average SIS size ... is < 5% of each image" (ResNet20, ResNet18, VGG16)."""

PAPER_RESNET20 = {
    "full": 0.9223,
    "backselect": 0.9248,
    "random": 0.0999,
    "confidence_drop": -0.035,
    "confidence_drop_std": 0.107,
}
"""ResNet20 on the CIFAR-10 test set (Table 1, mean over five models, and Section 4.1)."""

PAPER_CONFIDENCE_DROPS = {"ResNet20": -0.035, "ResNet18": -0.016, "VGG16": -0.012}
"""Mean confidence drop from full images to their 5% backward-selection subsets (Section 4.1)."""

PAPER_HUMAN_ACCURACY = 0.192
"""Human accuracy on 5% backward-selection subsets of CIFAR-10 images (Table 2)."""

# The three signs of overinterpretation the verdict checks, as the paper observed them on CIFAR-10 CNNs.
SPARSE_SIS_LIMIT = PAPER_SIS_FRACTION
"""Mean SIS size (share of the input) at or below which the SIS count as tiny."""

SUBSETS_KEEP_ACCURACY = 0.9
"""Backward-selection subsets "suffice" when they keep at least this share of the full-image accuracy..."""

RANDOM_GAP_SHARE = 0.5
"""...and random subsets of the same size stay at least this share of the (full - chance) gap below them."""

CONFIDENCE_DROP_LIMIT = 0.05
"""Mean confidence drop at or below which the model counts as about as confident on the subsets."""

GRADIENT_SIZE_RATIOS: dict[tuple[str, str], tuple[float, str]] = {
    ("1", "16"): (1.17, "ResNet20, 2 CIFAR-10 test images, pixels, threshold 0.99"),
    ("4", "16"): (1.75, "ResNet20, 2 CIFAR-10 test images, pixels, threshold 0.99"),
    ("1", "None"): (4.0, "ResNet20, 2 CIFAR-10 test images, pixels, threshold 0.99"),
    ("16", "None"): (6.46, "ResNet20, 2 CIFAR-10 test images, pixels, threshold 0.99"),
    ("auto", "None"): (0.74, "ResNet20, 24 CIFAR-10 test images, pixels, threshold 0.99"),
}
"""Mean SIS size of gradient selection over that of exact selection on the same images, by ``(str(k),
str(shortlist))``, with where it was measured (``benchmarks/results/gradient_sis_exact_cpu_pixels2.json``;
``k="auto"``: ``benchmarks/results/sis_schedule_pixels_cpu.json``).
Settings not listed here are reported as "ratio to exact SIS not measured"."""

# The controls beyond the paper (not counted in the verdict's level).
LEAKAGE_REFERENCE = (
    "Rong et al. (ICML 2022), Balasubramanian & Feizi (ICCV 2023): the pattern of kept pixels can itself encode "
    "the class"
)
"""Who asked for the mask-shape leakage control, and why."""

SMOOTHING_REFERENCE = (
    "Springer (2022): adding the pixels bordering each SIS can make the confidence collapse, as for an "
    "adversarial pattern"
)
"""Who asked for the smoothed-SIS control, and why."""
