"""The audit report: every number of an overinterpretation audit, a plain-text summary, JSON, figures and HTML.

:class:`AuditReport` (returned by :func:`~sis_attr.overinterpretation.audit`) holds the result of each
single-model analysis. :meth:`AuditReport.save` writes a self-contained directory::

    report.json        every number (settings, accuracies, SIS sizes, confidence drops, heatmaps, examples)
    selection.pt       the backward-selection records (SelectionResult.load reads it back)
    figures/*.png      one figure per analysis (matplotlib, Agg backend, no display needed)
    index.html         the figures and tables in one page, including example images beside their SIS

:func:`save_comparison` writes several reports side by side (one sub-directory each, plus a page comparing
them). Nothing half-written looks complete: files are written to a hidden staging directory and moved into
place at the end, ``index.html`` last. Pages are rendered from jinja2 templates with autoescape, so every
string that comes from data, labels or models is HTML-escaped. Rendering computes nothing.

Every report states a verdict computed from its own numbers (:meth:`AuditReport.verdict`): the paper's three
signs of overinterpretation with the paper's reference values, the caveats of the audit (method, baseline,
features, threshold, sample size) and, when the audit ran them, what the controls beyond the paper found
(:attr:`AuditReport.mask_shape_leakage`, :attr:`AuditReport.smoothed_sis`: each also has its own section of the
page). Every row of a summary has a one-line explanation.

Private modules, each importing only those above it:

* ``_references``: the paper's reference values and measured SIS-size ratios of the gradient method.
* ``_format``: numbers, percentages, class names, JSON.
* ``_results``: :class:`SISExamples`, :class:`AuditReport`, :func:`compare_summary` (data and text); ``_verdict``:
  what the numbers mean (imported lazily by ``_results``).
* ``_figures``: the matplotlib figures, drawn from results.
* ``_html`` and ``templates/*.html.jinja``: the pages.
* ``_writer``: :func:`check_output_directory`, :func:`save_comparison`, the staged writing.
"""

from __future__ import annotations

from sis_attr.exceptions import ReportWriteError
from sis_attr.overinterpretation.report._results import AuditReport, SISExamples, compare_summary
from sis_attr.overinterpretation.report._writer import check_output_directory, save_comparison

__all__ = [
    "AuditReport",
    "ReportWriteError",
    "SISExamples",
    "check_output_directory",
    "compare_summary",
    "save_comparison",
]
