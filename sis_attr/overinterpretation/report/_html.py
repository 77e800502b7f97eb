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

from sis_attr.overinterpretation.report._format import class_name
from sis_attr.overinterpretation.report._results import AuditReport, SISExamples, comparison_rows

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


def _rows(rows: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"label": label.strip(), "value": value} for label, value in rows]


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


def report_page(report: AuditReport, figures: Sequence[tuple[str, str]]) -> str:
    """The ``index.html`` of one report.

    Parameters
    ----------
    report : AuditReport
    figures : sequence of (str, str)
        ``(path relative to index.html, caption)`` of every figure written; ``figures/examples.png`` is shown
        with the examples, the others under "Figures".
    """
    captions = dict(figures)
    settings = [(str(k), str(v)) for k, v in report.settings.items()]
    settings += [("threshold", f"{report.threshold:g}"), ("fraction", f"{report.fraction:g}")]
    return _render(
        "report.html.jinja",
        title=f"Overinterpretation audit: {report.name}",
        notes=list(report.notes),
        summary=_rows(report.summary_rows()),
        threshold=f"{report.threshold:g}",
        examples_figure=(_figure(EXAMPLES_FIGURE, captions[EXAMPLES_FIGURE]) if EXAMPLES_FIGURE in captions else None),
        examples=_examples(report.examples),
        figures=[_figure(path, caption) for path, caption in figures if path != EXAMPLES_FIGURE],
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
        }
        for name, r in reports.items()
    ]
    return _render(
        "comparison.html.jinja",
        title=title,
        description=description or "",
        notes=[{"model": name, "text": note} for name, r in reports.items() for note in r.notes],
        models=models,
        rows=[{"label": label, "cells": cells} for label, cells in comparison_rows(reports)],
        figures=[_figure(path, caption) for path, caption in figures],
    )
