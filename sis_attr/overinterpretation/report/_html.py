"""The report and comparison pages, rendered with jinja2 from ``templates/*.html.jinja`` (autoescape on).

The functions here only gather plain data (dicts, lists and formatted strings) from result objects; the
templates lay it out. Every value is escaped by jinja2's autoescape, so names from data, labels and models
can hold any character.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import jinja2

from sis_attr.overinterpretation.leakage import MaskShapeLeakage
from sis_attr.overinterpretation.report import _references as ref
from sis_attr.overinterpretation.report._figures import LEAKAGE_FIGURE, SMOOTHING_FIGURE
from sis_attr.overinterpretation.report._format import class_name, fmt_num, fmt_pct
from sis_attr.overinterpretation.report._results import (
    AuditReport,
    SISExamples,
    comparison_table,
    is_warning_note,
    summary_table,
)
from sis_attr.overinterpretation.report._verdict import Sign, Verdict, verdict
from sis_attr.overinterpretation.smoothing import SmoothedSIS

__all__: list[str] = []  # rendering internals: the public doors are AuditReport.save and save_comparison

EXAMPLES_FIGURE = "figures/examples.png"
"""Where the examples figure of a report is, relative to its ``index.html``."""


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The jinja2 environment of the templates shipped in this package (autoescape on, strict undefined)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sis_attr.overinterpretation.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(written_at=time.strftime("%Y-%m-%d %H:%M"), **context)


def _figure(path: str, caption: str) -> dict[str, str]:
    return {"path": path, "caption": caption}


def _rows(rows: Sequence[tuple[str, str]] | Sequence[tuple[str, str, str]]) -> list[dict[str, str]]:
    return [{"label": row[0].strip(), "value": row[1], "explain": row[2] if len(row) > 2 else ""} for row in rows]


_WARNING_TITLES = {
    "UninformativeBaselineWarning": "some SIS are empty: the baseline alone keeps the prediction at the threshold, "
    "so it carries evidence for the class and is a poor stand-in for missing pixels.",
    "SISWarning": "the audit noticed something that may affect its numbers.",
}

_DOUBLE_NEGATIVE = "the baseline is not uninformative to this model"


def _note(text: str, model: str | None = None) -> dict[str, Any]:
    """A note as the templates show it: a warning (red, with a plain title) or a description of the model."""
    if not is_warning_note(text):
        return {"warning": False, "model": model, "text": text, "title": ""}
    kind, _, message = text.partition(": ")
    message = message.replace(_DOUBLE_NEGATIVE, "the baseline itself carries evidence for the class")
    title = _WARNING_TITLES.get(kind, "something in the audit may affect its numbers.")
    return {"warning": True, "model": model, "text": f"{kind}: {message}", "title": title}


_MARKS = {True: ("present", "yes"), False: ("absent", "no"), None: ("unknown", "n/a")}


def _sign(s: Sign) -> dict[str, str]:
    return {
        "state": _MARKS[s.present][0],
        "mark": _MARKS[s.present][1],
        "title": s.title,
        "observed": s.observed,
        "reference": s.reference,
    }


def _verdict(v: Verdict) -> dict[str, Any]:
    return {
        "level_class": v.level.replace(" ", "-"),
        "headline": v.headline,
        "signs": [_sign(s) for s in v.signs],
        "caveats": list(v.caveats),
        "controls": [_sign(s) for s in v.controls],
    }


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _leakage(leak: MaskShapeLeakage | None, sign: Sign | None, fraction: float) -> dict[str, Any]:
    pct = f"{fraction:.0%}"
    what = (
        f"Each image's {pct} subset keeps its positions but shows another image's pixels there (content swapped; "
        "the donor is of another class wherever the class counts allow), or one constant colour (shape only). A "
        "model that reads the pixels falls to chance on both; if either stays well above chance, the subsets' "
        "'evidence' is at least partly their shape."
    )
    base: dict[str, Any] = {"name": "Mask-shape leakage", "what": what, "reference": ref.LEAKAGE_REFERENCE}
    if leak is None or sign is None:
        return {**base, "measured": False}
    rows = [
        ("full images", leak.full, "full"),
        (f"{pct} subsets, their own pixels", leak.subsets, "subsets"),
        ("content swapped: another image's pixels", leak.swapped, "swapped"),
        ("shape only: one colour", leak.shape_only, "shape_only"),
        (f"random {pct} subsets, own pixels", leak.random, "random"),
    ]
    fill = ", ".join(f"{v:.3g}" for v in leak.fill)
    return {
        **base,
        "measured": True,
        **_sign(sign),
        "conclusion": leak.interpretation(),
        "columns": ["images shown", "accuracy", "p (above chance)"],
        "rows": [[label, fmt_pct(value), _p(leak.p_value(cond))] for label, value, cond in rows]  # type: ignore[arg-type]
        + [["chance (most frequent label)", fmt_pct(leak.chance), ""]],
        "details": (
            f"{leak.n_images} images; donors of the same class for {fmt_pct(leak.same_class_donors)} of them; "
            f"content-swapped images predicted as their donor's class: {fmt_pct(leak.donor_agreement)}; "
            f"shape-only colour: [{fill}] (the mean kept pixel); one-sided binomial tests against chance."
        ),
        "figure": None,
    }


def _smoothing(smooth: SmoothedSIS | None, sign: Sign | None) -> dict[str, Any]:
    what = (
        "Each SIS is dilated by one pixel (every pixel bordering it added, all channels) and classified again, "
        "beside the SIS plus as many random pixels and a random set as large as the dilated SIS. Dilated sets "
        "contain the SIS, so a model that finds real evidence in them stays confident; a collapse means the SIS is "
        "a fragile, adversarial-like pattern."
    )
    base: dict[str, Any] = {"name": "Smoothed SIS", "what": what, "reference": ref.SMOOTHING_REFERENCE}
    if smooth is None or sign is None:
        return {**base, "measured": False}
    t = f"{smooth.threshold:g}"
    sis_size = float(smooth.sis_sizes.double().mean()) if smooth.n_images else float("nan")
    dilated_size = float(smooth.dilated_sizes.double().mean()) if smooth.n_images else float("nan")
    rows = [
        ("full image", None, "full"),
        ("SIS", sis_size, "sis"),
        ("SIS dilated by one pixel", dilated_size, "dilated"),
        ("SIS + as many random pixels", dilated_size, "sis_plus_random"),
        ("random set, dilated size", dilated_size, "random"),
    ]
    return {
        **base,
        "measured": True,
        **_sign(sign),
        "conclusion": smooth.interpretation(),
        "columns": ["pixels kept", "mean size (pixels)", f"sufficient (>= {t})", "mean confidence", "p (vs SIS)"],
        "rows": [
            [
                label,
                "all" if size is None else fmt_num(size, 1),
                fmt_pct(smooth.sufficient(which)) if which != "full" else "",
                fmt_num(smooth.mean_confidence(which), 3),
                _p(smooth.mcnemar(which)) if which not in ("full", "sis") else "",
            ]
            for label, size, which in rows
        ],
        "details": (
            f"{smooth.n_images} of {smooth.n_inputs} images have an SIS at {t}; p: exact McNemar test of the change "
            "in how many sets are sufficient."
        ),
        "figure": None,
    }


def _controls(report: AuditReport, v: Verdict, captions: Mapping[str, str]) -> list[dict[str, Any]]:
    """The sections of the controls beyond the paper (none when the audit ran without them)."""
    if report.mask_shape_leakage is None and report.smoothed_sis is None:
        return []
    signs = {s.key: s for s in v.controls}
    sections = [
        (_leakage(report.mask_shape_leakage, signs.get("mask_shape_leakage"), report.fraction), LEAKAGE_FIGURE),
        (_smoothing(report.smoothed_sis, signs.get("smoothed_sis")), SMOOTHING_FIGURE),
    ]
    for section, name in sections:
        path = f"figures/{name}"
        if section["measured"] and path in captions:
            section["figure"] = _figure(path, captions[path])
    return [section for section, _ in sections]


def _examples(ex: SISExamples) -> list[dict[str, str]]:
    return [
        {
            "index": str(i),
            "label": class_name(ex.class_names, lab),
            "prediction": class_name(ex.class_names, pred),
            "confidence": f"{conf:.4f}",
            "sis_size": str(size),
            "sis_confidence": f"{sconf:.4f}",
        }
        for i, lab, pred, conf, size, sconf in zip(
            ex.indices, ex.labels, ex.predictions, ex.confidences, ex.sis_sizes, ex.sis_confidences, strict=True
        )
    ]


def report_page(report: AuditReport, figures: Sequence[tuple[str, str]], back: Mapping[str, str] | None = None) -> str:
    """The ``index.html`` of one report.

    Parameters
    ----------
    report : AuditReport
    figures : sequence of (str, str)
        ``(path relative to index.html, caption)`` of every figure written; ``figures/examples.png`` is shown
        with the examples, the others under "Figures".
    back : mapping, optional
        ``{"href": ..., "text": ...}``: a link back to the page this report belongs to (a comparison).
    """
    captions = dict(figures)
    judged = verdict(report)
    controls = _controls(report, judged, captions)
    shown_apart = {EXAMPLES_FIGURE, *(c["figure"]["path"] for c in controls if c["measured"] and c["figure"])}
    settings = [(str(k), str(v)) for k, v in report.settings.items()]
    settings += [("threshold", f"{report.threshold:g}"), ("fraction", f"{report.fraction:g}")]
    return _render(
        "report.html.jinja",
        title=f"Overinterpretation audit: {report.name}",
        back=dict(back) if back is not None else None,
        notes=[_note(n) for n in report.notes],
        verdict=_verdict(judged),
        summary=_rows(summary_table(report)),
        threshold=f"{report.threshold:g}",
        examples_figure=(_figure(EXAMPLES_FIGURE, captions[EXAMPLES_FIGURE]) if EXAMPLES_FIGURE in captions else None),
        examples=_examples(report.examples),
        figures=[_figure(path, caption) for path, caption in figures if path not in shown_apart],
        controls=controls,
        settings=_rows(settings),
        class_names=", ".join(report.class_names),
        timing=", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items()),
    )


def comparison_page(
    reports: Mapping[str, AuditReport],
    directories: Mapping[str, str],
    figures: Sequence[tuple[str, str]],
    title: str,
    description: str | None,
) -> str:
    """The ``index.html`` comparing several reports, each saved in ``directories[name]`` beside it."""
    models = [
        {
            "name": name,
            "directory": directories[name],
            "examples_figure": _figure(
                f"{directories[name]}/{EXAMPLES_FIGURE}",
                f"{name}: images, their SIS alone and the SIS location (threshold {r.threshold:g}).",
            ),
            "headline": verdict(r).headline,
        }
        for name, r in reports.items()
    ]
    return _render(
        "comparison.html.jinja",
        title=title,
        description=description or "",
        notes=[_note(note, name) for name, r in reports.items() for note in r.notes],
        models=models,
        rows=[
            {"label": label, "cells": cells, "explain": explain} for label, cells, explain in comparison_table(reports)
        ],
        figures=[_figure(path, caption) for path, caption in figures],
    )
