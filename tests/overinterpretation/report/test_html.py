"""Tests for sis_attr.overinterpretation.report._html: templates shipped in the package, autoescape everywhere."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from pathlib import Path

import jinja2
import markupsafe

import sis_attr
from sis_attr.overinterpretation.report import AuditReport, save_comparison
from sis_attr.overinterpretation.report import _html as html
from sis_attr.overinterpretation.report import _results as results
from tests.overinterpretation.report.helpers import EVIL

SCRIPT = "<script>alert(1)</script>"
TEMPLATES = ("base.html.jinja", "comparison.html.jinja", "macros.html.jinja", "report.html.jinja")


def test_templates_load_from_the_installed_package() -> None:
    folder = resources.files("sis_attr.overinterpretation.report") / "templates"
    assert {p.name for p in folder.iterdir() if p.name.endswith(".jinja")} == set(TEMPLATES)
    env = html.environment()
    assert isinstance(env.loader, jinja2.PackageLoader) and env.autoescape is True
    assert sorted(env.list_templates()) == sorted(TEMPLATES)
    for name in TEMPLATES:
        template = env.get_template(name)
        assert template.filename is not None
        assert Path(template.filename).resolve().is_relative_to(Path(sis_attr.__file__).resolve().parent)


def test_no_markup_in_python_source() -> None:
    """Code builds data, templates lay it out: no HTML tag in a Python string of the package."""
    folder = Path(html.__file__).parent
    tag = re.compile(r"""["'][^"'\n]*<(?:!DOCTYPE|html|body|table|tr|td|th|p|h[1-6]|figure|img|a|code|b)[ >]""")
    for source in folder.glob("*.py"):
        assert not tag.search(source.read_text(encoding="utf-8")), source.name


def test_html_escapes_names_from_data_and_models(report: AuditReport, tmp_path: Path) -> None:
    index = report.save(tmp_path / "r")
    text = index.read_text(encoding="utf-8")
    assert EVIL not in text and "<i>" not in text
    assert str(markupsafe.escape(EVIL)) in text  # &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;
    assert "b&amp;c" in text and "b&c" not in text
    assert text.count("<script") == 0


def test_autoescape_on_report_and_comparison_pages(report: AuditReport, other: AuditReport, tmp_path: Path) -> None:
    names = (f"cat {SCRIPT}", "salt & pepper", *other.class_names[2:])
    evil = dataclasses.replace(
        other,
        name=f"net {SCRIPT} & co",
        class_names=names,
        examples=dataclasses.replace(other.examples, class_names=names),
        notes=(f"note {SCRIPT} & more",),
        settings={**other.settings, f"key {SCRIPT}": f"value {SCRIPT} &"},
    )
    index = evil.save(tmp_path / "r")
    cmp_index = save_comparison(
        {f"cmp {SCRIPT} & x": evil, "plain": report}, tmp_path / "c", title=f"T {SCRIPT} &", description="a & b"
    )
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for page in (index, cmp_index, tmp_path / "c" / "cmp-script-alert-1-script-x" / "index.html"):
        text = page.read_text(encoding="utf-8")
        assert SCRIPT not in text and "<script" not in text, page
        assert escaped in text, page
    report_text = index.read_text(encoding="utf-8")
    assert f"net {escaped} &amp; co" in report_text
    assert f"cat {escaped}" in report_text and "salt &amp; pepper" in report_text  # class names and examples
    assert f"note {escaped} &amp; more" in report_text and f"value {escaped} &amp;" in report_text
    cmp_text = cmp_index.read_text(encoding="utf-8")
    assert f"<th>cmp {escaped} &amp; x</th>" in cmp_text
    assert f"<h1>T {escaped} &amp;</h1>" in cmp_text and "<p>a &amp; b</p>" in cmp_text
    assert f"<title>T {escaped} &amp;</title>" in cmp_text
    assert f"note {escaped} &amp; more" in cmp_text


def test_report_page_layout(report: AuditReport, tmp_path: Path) -> None:
    text = report.save(tmp_path / "r").read_text(encoding="utf-8")
    headings = re.findall(r"<h2>([^<]+)</h2>", text)
    assert headings == ["Verdict", "Summary", "Sufficient input subsets", "Figures", "Settings"]
    # the examples figure sits with its table, before the other figures
    assert text.index('src="figures/examples.png"') < text.index("<th>image #</th>") < text.index("<h2>Figures</h2>")
    assert text.count('src="figures/examples.png"') == 1
    for label, value, explain in results.summary_table(report):
        cell = f'<th>{markupsafe.escape(label.strip())}<span class="explain">{markupsafe.escape(explain)}</span></th>'
        assert f"<tr>{cell}<td>{markupsafe.escape(value)}</td></tr>" in text
    assert text.index("<h2>Verdict</h2>") < text.index("<h2>Summary</h2>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text


def test_every_summary_row_has_a_one_line_explanation(report: AuditReport, other: AuditReport) -> None:
    for rows in (results.summary_table(report), results.comparison_table({"a": report, "b": other})):
        for row in rows:
            explain = row[-1]
            assert explain and "\n" not in explain and explain.endswith("."), row
    labels = [label for label, _, _ in results.comparison_table({"a": report, "b": other})]
    assert labels[1] == "method" and labels[-1] == "verdict"


def test_warnings_look_like_warnings_and_descriptions_do_not(report: AuditReport, tmp_path: Path) -> None:
    warned = dataclasses.replace(
        report,
        notes=(
            "Trained on digits with a planted mark.",
            "UninformativeBaselineWarning: 2 of 10 images keep a confidence of at least 0.99 with every feature "
            "removed, so their SIS are empty: the baseline is not uninformative to this model. Use another baseline.",
        ),
    )
    text = warned.save(tmp_path / "r").read_text(encoding="utf-8")
    assert '<p class="about"><b>About this model:</b> Trained on digits with a planted mark.</p>' in text
    warning = re.search(r'<p class="warning" role="note">(.*?)</p>', text, re.S)
    assert warning is not None and "Warning:" in warning.group(1) and "some SIS are empty" in warning.group(1)
    assert "not uninformative" not in text and "carries evidence for the class" in text
    assert "warning: UninformativeBaselineWarning" in warned.summary()
    assert "note: Trained on digits" in warned.summary()


def test_comparison_links_each_report_back_and_states_the_settings(
    report: AuditReport, other: AuditReport, tmp_path: Path
) -> None:
    index = save_comparison({"marks": report, "linear": other}, tmp_path / "c", title="Two models")
    text = index.read_text(encoding="utf-8")
    assert "<th>method" in text and "exact backward selection" in text
    assert "gradient backward selection (k=auto)" in text  # `other` ran with the default method
    assert "<h2>Verdicts</h2>" in text and str(markupsafe.escape(report.verdict()["headline"])) in text
    for sub in ("marks", "linear"):
        page = (tmp_path / "c" / sub / "index.html").read_text(encoding="utf-8")
        assert page.count('<a href="../index.html">&larr; Two models: all models</a>') == 2
    assert 'href="../index.html"' not in report.save(tmp_path / "alone").read_text(encoding="utf-8")
