"""What a report's numbers mean: the paper's three signs of overinterpretation, checked on the report's own numbers.

:func:`verdict` reads an :class:`~sis_attr.overinterpretation.AuditReport` (it computes nothing new) and returns
a :class:`Verdict`: a headline, each sign with what was observed and what the paper found, the caveats that
apply to this audit (method, baseline, features, threshold, sample size), and the findings of the controls
beyond the paper when the report holds them (mask-shape leakage, smoothed SIS: not counted in the level, but a
finding that weakens a sign adds a caveat). The reference values live in :mod:`._references`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sis_attr.overinterpretation.report import _references as ref
from sis_attr.overinterpretation.report._format import fmt_gradient_settings, fmt_pct, fmt_signed

if TYPE_CHECKING:
    from sis_attr.overinterpretation.report._results import AuditReport

__all__: list[str] = []  # reached through AuditReport.verdict()


@dataclass(frozen=True)
class Sign:
    """One sign of overinterpretation: whether this audit shows it (None: cannot tell), observed vs reference."""

    key: str
    title: str
    present: bool | None
    observed: str
    reference: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "present": self.present,
            "observed": self.observed,
            "reference": self.reference,
        }


@dataclass(frozen=True)
class Verdict:
    """The verdict of one report (see :func:`verdict`)."""

    level: str
    headline: str
    signs: tuple[Sign, ...]
    caveats: tuple[str, ...]
    controls: tuple[Sign, ...] = ()

    @property
    def n_present(self) -> int:
        return sum(1 for s in self.signs if s.present)

    @property
    def n_known(self) -> int:
        return sum(1 for s in self.signs if s.present is not None)

    @property
    def short(self) -> str:
        """One cell of a comparison table: ``"strong signs: 3 of 3"``, ``"one sign: 1 of 3 (1 unknown)"``."""
        if self.n_known == 0:
            return "cannot tell"
        unknown = len(self.signs) - self.n_known
        return f"{self.level}: {self.n_present} of {len(self.signs)}" + (f" ({unknown} unknown)" if unknown else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "headline": self.headline,
            "signs": [s.to_dict() for s in self.signs],
            "caveats": list(self.caveats),
            "controls": [s.to_dict() for s in self.controls],
        }

    def lines(self) -> list[str]:
        """Plain-text lines: the headline, one line per sign, the caveats, then one line per control."""
        mark = {True: "yes", False: "no", None: "n/a"}
        out = [f"verdict: {self.headline}"]
        out += [f"  [{mark[s.present]:>3}] {s.title}: {s.observed} ({s.reference})" for s in self.signs]
        out += [f"  caveat: {c}" for c in self.caveats]
        if self.controls:
            out.append("controls beyond the paper (not counted in the verdict):")
            out += [f"  [{mark[s.present]:>3}] {s.title}: {s.observed} ({s.reference})" for s in self.controls]
        return out


_LEVELS = {3: "strong signs", 2: "signs", 1: "one sign", 0: "no sign"}


def _sparse_sign(report: AuditReport) -> Sign:
    t = report.threshold
    title = "tiny SIS"
    reference = f"paper: under {ref.SPARSE_SIS_LIMIT:.0%} of the image at {ref.PAPER_THRESHOLD:g} for CIFAR-10 CNNs"
    if report.n_confident == 0 or math.isnan(report.mean_sis_fraction):
        return Sign("sparse_sis", title, None, f"no image reaches confidence {t:g}, so there is no SIS", reference)
    frac = report.mean_sis_fraction
    observed = (
        f"SIS at {t:g} average {fmt_pct(frac)} of the input ({report.mean_sis_size:.1f} of {report.n_features} "
        f"features, over {report.n_confident} images)"
    )
    return Sign("sparse_sis", title, frac <= ref.SPARSE_SIS_LIMIT, observed, reference)


def _subsets_sign(report: AuditReport) -> Sign:
    acc = report.subset_accuracy
    pct = f"{report.fraction:.0%}"
    title = f"{pct} subsets suffice"
    p = ref.PAPER_RESNET20
    reference = (
        f"paper, ResNet20: {fmt_pct(p['backselect'])} on BS subsets, {fmt_pct(p['random'])} on random ones, "
        f"{fmt_pct(p['full'])} on full images"
    )
    if any(math.isnan(v) for v in (acc.full, acc.backselect, acc.random)):
        return Sign("subsets_suffice", title, None, "accuracy on the subsets is not available", reference)
    observed = (
        f"{pct} backward-selection subsets keep {fmt_pct(acc.backselect)} accuracy against {fmt_pct(acc.random)} "
        f"for random subsets ({fmt_pct(acc.full)} on full images, chance {fmt_pct(acc.chance)})"
    )
    keeps = acc.backselect >= ref.SUBSETS_KEEP_ACCURACY * acc.full
    random_low = acc.backselect - acc.random >= ref.RANDOM_GAP_SHARE * (acc.full - acc.chance)
    return Sign("subsets_suffice", title, bool(keeps and random_low and acc.full > acc.chance), observed, reference)


def _confidence_sign(report: AuditReport) -> Sign:
    drop = report.confidence
    title = "as confident on the subsets"
    reference = "paper: mean drop " + ", ".join(f"{v:+.3f} ({k})" for k, v in ref.PAPER_CONFIDENCE_DROPS.items())
    if math.isnan(drop.mean):
        return Sign("confidence_kept", title, None, "confidence drop not available", reference)
    observed = (
        f"mean confidence drop from full images to their {report.fraction:.0%} BS subsets {fmt_signed(drop.mean)} "
        f"(negative: more confident on the subset)"
    )
    return Sign("confidence_kept", title, drop.mean <= ref.CONFIDENCE_DROP_LIMIT, observed, reference)


def first_sentence(text: str) -> str:
    """The first sentence of a control's interpretation (its conclusion; numbers hold no ``". "``)."""
    head, sep, _ = text.partition(". ")
    return head + "." if sep else text


def _leakage_control(report: AuditReport) -> Sign | None:
    leak = report.mask_shape_leakage
    if leak is None:
        return None
    leaky = leak._leaky_versions()
    return Sign(
        "mask_shape_leakage",
        "the subsets' shape carries the class",
        None if leaky is None else bool(leaky),
        f"{first_sentence(leak.interpretation())} Accuracy {fmt_pct(leak.swapped)} with another image's pixels, "
        f"{fmt_pct(leak.shape_only)} in one colour, against {fmt_pct(leak.chance)} chance and "
        f"{fmt_pct(leak.subsets)} on the subsets",
        ref.LEAKAGE_REFERENCE,
    )


def _smoothing_control(report: AuditReport) -> Sign | None:
    smooth = report.smoothed_sis
    if smooth is None:
        return None
    observed = first_sentence(smooth.interpretation())
    if smooth.n_images:
        observed += (
            f" {fmt_pct(smooth.sufficient('dilated'))} of {smooth.n_images} SIS stay sufficient when dilated by one "
            f"pixel, against {fmt_pct(smooth.sufficient('sis'))} alone"
        )
    return Sign("smoothed_sis", "the SIS break when smoothed", smooth._breaks(), observed, ref.SMOOTHING_REFERENCE)


def _control_caveats(report: AuditReport, signs: tuple[Sign, ...]) -> list[str]:
    """Caveats from the controls that weaken a sign shown present."""
    present = {s.key for s in signs if s.present}
    caveats = []
    leak = report.mask_shape_leakage
    if leak is not None and leak._leaky_versions() and "subsets_suffice" in present:
        caveats.append(
            f"Mask-shape leakage: about {fmt_pct(min(leak.shape_share, 1.0))} of the subsets' accuracy above chance "
            f"survives without their content, so that much of the '{report.fraction:.0%} subsets suffice' sign comes "
            "from the subsets' shape, not from their pixels."
        )
    smooth = report.smoothed_sis
    if smooth is not None and smooth._breaks() and "sparse_sis" in present:
        caveats.append(
            f"Smoothed SIS: only {fmt_pct(smooth.sufficient('dilated'))} of the SIS stay sufficient with the pixels "
            "bordering them added, so these tiny SIS behave like fragile, adversarial-like patterns: the 'tiny SIS' "
            "sign may say more about what backward selection can find in a masked image than about the evidence "
            "the model uses in whole images (Springer, 2022)."
        )
    return caveats


def _method_caveat(report: AuditReport) -> str:
    settings = report.settings
    method = str(settings.get("method", report.selection.method))
    if method == "exact":
        return "Exact backward selection, as in the paper."
    k, shortlist = settings.get("k", "?"), settings.get("shortlist", None)
    known = ref.GRADIENT_SIZE_RATIOS.get((str(k), str(shortlist)))
    measured = (
        f"these settings gave SIS {known[0]:.2f}x the size of exact ones ({known[1]})"
        if known is not None
        else "the ratio of these settings' SIS sizes to exact ones has not been measured"
    )
    if known is not None and known[0] < 1.0:
        return (
            f"Gradient selection ({fmt_gradient_settings(k, shortlist)}) stands in for the paper's exact backward "
            f"selection; {measured}: smaller, as its forward search can beat exact BackSelect's greedy path, so "
            "compare SIS sizes only with runs of the same method and settings."
        )
    return (
        f"Gradient backward selection ({fmt_gradient_settings(k, shortlist)}) approximates the paper's exact "
        "selection and can find larger SIS and less predictive subsets, so the signs above are conservative; "
        f"{measured}."
    )


def _caveats(report: AuditReport) -> tuple[str, ...]:
    settings = report.settings
    caveats = [_method_caveat(report)]
    baseline = settings.get("baseline", "?")
    space = settings.get("mask space")
    # "normalized": the CLI's baseline already says "after normalisation" and the colour it became
    where = f" ({space} space)" if space and space != "normalized" else ""
    caveats.append(
        f"Removed features were set to {baseline}{where}. The paper masks with the data set's mean pixel (0 for "
        "normalised inputs); with another baseline, such as black for [0, 1] images, SIS sizes are not comparable "
        "with its numbers."
    )
    features = str(settings.get("features", "pixels"))
    if features != "pixels":
        caveats.append(
            f"Features are {features}: SIS sizes count them, so compare the share of the input, not the count, with "
            "the paper's per-pixel numbers."
        )
    if report.threshold != ref.PAPER_THRESHOLD or report.fraction != ref.PAPER_FRACTION:
        caveats.append(
            f"The paper's values are for threshold {ref.PAPER_THRESHOLD:g} and {ref.PAPER_FRACTION:.0%} subsets; "
            f"this audit used {report.threshold:g} and {report.fraction:.0%}."
        )
    if report.n_features < 256:
        caveats.append(
            f"Each image has only {report.n_features} features ({report.subset_features} in a "
            f"{report.fraction:.0%} subset); the paper's CIFAR-10 images have 1024 pixels."
        )
    n = report.n_confident
    curve = report.sis_size_curve
    ci = ""
    if curve is not None and len(curve.mean) == 1 and report.threshold in curve.thresholds:
        name = next(iter(curve.mean))
        i = list(curve.thresholds).index(report.threshold)
        lo, hi = float(curve.ci_low[name][i]), float(curve.ci_high[name][i])
        if not (math.isnan(lo) or math.isnan(hi)):
            ci = f" (95% interval of the mean SIS size: {fmt_pct(lo)} to {fmt_pct(hi)} of the input)"
    if n == 0:
        caveats.append(
            f"No image reaches the threshold {report.threshold:g}, so there is no SIS to judge: lower the threshold "
            "(the paper uses 0.9 on ImageNet) or audit images the model is confident on."
        )
    elif n < 100:
        caveats.append(f"{n} of {report.n_images} images have an SIS: a small sample{ci}.")
    return tuple(caveats)


def verdict(report: AuditReport) -> Verdict:
    """The verdict of ``report`` from its own numbers (see :meth:`AuditReport.verdict`)."""
    signs = (_sparse_sign(report), _subsets_sign(report), _confidence_sign(report))
    known = [s for s in signs if s.present is not None]
    present = [s for s in known if s.present]
    level = _LEVELS[len(present)] if known else "cannot tell"
    if not known:
        headline = "Cannot tell: no image reaches the threshold, and the subset analyses are not available."
    else:
        what = f"{len(present)} of the paper's {len(signs)} signs"
        unknown = len(signs) - len(known)
        untold = f"; {unknown} cannot be told from these numbers" if unknown else ""
        if present:
            named = ", ".join(s.title for s in present)
            headline = f"{level.capitalize()} of overinterpretation: {what} ({named}){untold}."
        else:
            headline = f"No sign of overinterpretation in these numbers: 0 of the paper's {len(signs)} signs{untold}."
    controls = tuple(c for c in (_leakage_control(report), _smoothing_control(report)) if c is not None)
    caveats = (*_caveats(report), *_control_caveats(report, signs))
    return Verdict(level=level, headline=headline, signs=signs, caveats=caveats, controls=controls)
