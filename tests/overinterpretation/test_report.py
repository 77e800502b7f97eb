"""Tests for sis_attr.overinterpretation.report: summaries, JSON, figures, HTML escaping and safe writing."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
import torch

from sis_attr.exceptions import SISError, SISTypeError
from sis_attr.overinterpretation import SelectionResult
from sis_attr.overinterpretation.pipeline import audit
from sis_attr.overinterpretation.report import (
    AuditReport,
    ReportWriteError,
    check_output_directory,
    compare_summary,
    save_comparison,
)
from tests.overinterpretation.test_pipeline import MarkReader, marked_digits

EVIL = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def report() -> AuditReport:
    d = marked_digits(10)
    names = (EVIL, "b&c", "$x$ <i>", *(str(i) for i in range(3, 10)))
    return audit(MarkReader().eval(), (d.images, d.labels, names), name=f"model {EVIL} $\\frac$ $", show_progress=False)


@pytest.fixture(scope="module")
def other() -> AuditReport:
    d = marked_digits(6)
    linear = torch.nn.Linear(64, 10)
    torch.nn.init.normal_(linear.weight, std=0.5, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Flatten(), linear).eval()
    return audit(model, d, threshold=0.5, name="linear", show_progress=False, n_examples=3)


def referenced_files(index: Path) -> list[str]:
    text = index.read_text(encoding="utf-8")
    return re.findall(r'(?:src|href)="([^"]+)"', text)


def no_staging_left(root: Path) -> bool:
    return not any(".sis-attr-" in p.name and p.name != ".sis-attr-report" for p in root.rglob("*")) and not any(
        "sis-attr-staging" in p.name for p in root.parent.iterdir()
    )


def test_save_writes_a_complete_report(report: AuditReport, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "report"
    index = report.save(out)
    assert index == out / "index.html" and index.is_file()
    refs = referenced_files(index)
    pngs = [r for r in refs if r.endswith(".png")]
    assert "figures/examples.png" in pngs and "figures/sis_heatmap.png" in pngs and len(pngs) >= 5
    for ref in refs:
        assert (out / ref).is_file(), ref
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    payload = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert payload["generator"] == "sis_attr"
    assert payload["report"] == json.loads(json.dumps(report.to_dict()))
    loaded = SelectionResult.load(out / "selection.pt")
    assert [r.order.tolist() for r in loaded.records] == [r.order.tolist() for r in report.selection.records]
    assert no_staging_left(out)
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o777 & ~umask)


def test_html_escapes_names_from_data_and_models(report: AuditReport, tmp_path: Path) -> None:
    index = report.save(tmp_path / "r")
    text = index.read_text(encoding="utf-8")
    assert EVIL not in text and "<i>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "b&amp;c" in text
    assert text.count("<script") == 0


def test_summary_and_comparison_text(report: AuditReport, other: AuditReport) -> None:
    table = compare_summary({"marks": report, "linear": other})
    lines = table.splitlines()
    assert lines[0] == "Overinterpretation audit: comparison"
    assert "marks" in lines[1] and "linear" in lines[1]
    assert any(line.strip().startswith("mean SIS size @ 0.99") for line in lines)
    with pytest.raises(SISTypeError):
        compare_summary({})
    with pytest.raises(SISTypeError):
        compare_summary({"a": 1})  # type: ignore[dict-item]


def test_save_comparison(report: AuditReport, other: AuditReport, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    index = save_comparison({"a b": report, "a-b": other}, out, title="T <1>", description="x & y")
    text = index.read_text(encoding="utf-8")
    assert "T &lt;1&gt;" in text and "x &amp; y" in text
    refs = referenced_files(index)
    assert "a-b/index.html" in refs and "a-b-2/index.html" in refs  # distinct directories for similar names
    for ref in refs:
        assert (out / ref).is_file(), ref
    for sub in ("a-b", "a-b-2"):
        for ref in referenced_files(out / sub / "index.html"):
            assert (out / sub / ref).is_file()
    payload = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert set(payload["models"]) == {"a b", "a-b"}
    assert payload["models"]["a b"]["mean_sis_size"] == 1.0
    assert no_staging_left(out)


def test_save_replaces_an_earlier_report_and_keeps_other_files(report: AuditReport, tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    report.save(out)
    first = (out / "report.json").read_text()
    renamed = dataclasses.replace(report, name="second")
    renamed.save(out)
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "report.json").read_text())["report"]["name"] == "second"
    assert first != (out / "report.json").read_text()
    for ref in referenced_files(out / "index.html"):
        assert (out / ref).is_file()
    assert no_staging_left(out)


def test_foreign_directory_is_never_replaced(report: AuditReport, tmp_path: Path) -> None:
    out = tmp_path / "r"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "holiday.png").write_bytes(b"mine")
    with pytest.raises(ReportWriteError, match="not written by sis_attr"):
        report.save(out)
    assert (out / "figures" / "holiday.png").read_bytes() == b"mine"
    assert not (out / "index.html").exists()
    assert no_staging_left(out)


def test_failure_while_writing_leaves_nothing_that_looks_complete(
    report: AuditReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: AuditReport) -> list[object]:
        def boom() -> None:
            raise RuntimeError("disk on fire")

        return [("a.png", "caption", boom)]

    monkeypatch.setattr(AuditReport, "_figures", broken)
    out = tmp_path / "new"
    with pytest.raises(RuntimeError, match="disk on fire"):
        report.save(out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    # an existing report is left as it was
    monkeypatch.undo()
    report.save(out)
    before = (out / "report.json").read_text()
    monkeypatch.setattr(AuditReport, "_figures", broken)
    with pytest.raises(RuntimeError):
        dataclasses.replace(report, name="changed").save(out)
    assert (out / "index.html").is_file() and (out / "report.json").read_text() == before
    assert no_staging_left(out)


def test_unwritable_directory(report: AuditReport, tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ReportWriteError, match="not a directory") as info:
        report.save(blocker / "report")
    assert isinstance(info.value, OSError) and isinstance(info.value, SISError)
    with pytest.raises(ReportWriteError, match="is a file"):
        report.save(blocker)
    with pytest.raises(ReportWriteError):
        check_output_directory(str(tmp_path / "a\0b"))
    with pytest.raises(SISTypeError):
        check_output_directory(3)  # type: ignore[arg-type]
    assert check_output_directory(tmp_path / "x" / "y") == tmp_path / "x" / "y"
    assert not (tmp_path / "x").exists()


def test_report_without_confident_images(tmp_path: Path) -> None:
    d = marked_digits(3)
    linear = torch.nn.Linear(64, 10)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    model = torch.nn.Sequential(torch.nn.Flatten(), linear).eval()
    rep = audit(model, d, show_progress=False)  # uniform predictions: nothing reaches 0.99
    assert rep.heatmap is None and len(rep.examples) == 0 and rep.n_confident == 0
    assert "n/a" in rep.summary()
    index = rep.save(tmp_path / "r")
    assert "No example to show" in index.read_text()
    for ref in referenced_files(index):
        assert (tmp_path / "r" / ref).is_file()
    json.dumps(rep.to_dict(), allow_nan=False)
