"""Tests for sis_attr.overinterpretation.report._writer: complete directories, safe replacement, no computation."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

import sis_attr.overinterpretation.sis_size as sis_size
from sis_attr.exceptions import SISError, SISTypeError
from sis_attr.overinterpretation import SelectionResult
from sis_attr.overinterpretation.pipeline import audit
from sis_attr.overinterpretation.report import (
    AuditReport,
    ReportWriteError,
    check_output_directory,
    save_comparison,
)
from sis_attr.overinterpretation.report import _figures as figures
from sis_attr.overinterpretation.report import _writer as writer
from tests.overinterpretation.report.helpers import no_staging_left, referenced_files, with_curve
from tests.overinterpretation.test_pipeline import marked_digits


def test_save_writes_a_complete_report(report: AuditReport, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "report"
    index = report.save(out)
    assert index == out / "index.html" and index.is_file()
    refs = referenced_files(index)
    pngs = [r for r in refs if r.endswith(".png")]
    assert "figures/examples.png" in pngs and "figures/sis_heatmap.png" in pngs and len(pngs) >= 5
    assert "figures/sis_size_curve.png" not in pngs  # the report holds no curve: that figure is left out
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


def test_write_report_is_the_work_of_save(report_with_curve: AuditReport, tmp_path: Path) -> None:
    index = writer.write_report(report_with_curve, tmp_path / "r", caller="save_report")
    assert "figures/sis_size_curve.png" in referenced_files(index)
    with pytest.raises(SISTypeError, match="must be an AuditReport"):
        writer.write_report("report", tmp_path / "s", caller="save_report")  # type: ignore[arg-type]


def test_save_computes_nothing_and_runs_no_model(
    report_with_curve: AuditReport, other: AuditReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_with_curve = with_curve(other)  # computed before the analyses are forbidden

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("rendering must not compute")

    monkeypatch.setattr(sis_size, "mean_sis_size_curve", forbidden)
    monkeypatch.setattr(sis_size, "sis_size_statistics", forbidden)
    for module in (figures, writer):  # any name a rendering module might have bound
        for name in ("mean_sis_size_curve", "sis_size_statistics"):
            monkeypatch.setattr(module, name, forbidden, raising=False)
    monkeypatch.setattr(SelectionResult, "sis_sizes", forbidden)
    monkeypatch.setattr(SelectionResult, "sis_masks", forbidden)
    monkeypatch.setattr(torch.nn.Module, "__call__", forbidden)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index = report_with_curve.save(tmp_path / "r")
        cmp_index = save_comparison({"a": report_with_curve, "b": other_with_curve}, tmp_path / "c")
    assert "figures/sis_size_curve.png" in referenced_files(index)
    assert (tmp_path / "r" / "figures" / "sis_size_curve.png").is_file()
    assert "figures/sis_size_curve.png" in referenced_files(cmp_index)


def test_save_comparison(report: AuditReport, other: AuditReport, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    index = save_comparison({"a b": report, "a-b": other}, out, title="T <1>", description="x & y")
    text = index.read_text(encoding="utf-8")
    assert "T &lt;1&gt;" in text and "x &amp; y" in text
    refs = referenced_files(index)
    assert "a-b/index.html" in refs and "a-b-2/index.html" in refs  # distinct directories for similar names
    assert "figures/sis_size_curve.png" not in refs  # drawn only when every report holds its curve
    for ref in refs:
        assert (out / ref).is_file(), ref
    for sub in ("a-b", "a-b-2"):
        for ref in referenced_files(out / sub / "index.html"):
            assert (out / sub / ref).is_file()
    payload = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert set(payload["models"]) == {"a b", "a-b"}
    assert payload["models"]["a b"]["mean_sis_size"] == 1.0
    assert no_staging_left(out)


def test_save_comparison_with_curves(report_with_curve: AuditReport, other: AuditReport, tmp_path: Path) -> None:
    index = save_comparison({"a": report_with_curve, "b": with_curve(other)}, tmp_path / "c")
    assert "figures/sis_size_curve.png" in referenced_files(index)
    assert "figures/sis_size_curve.png" in referenced_files(tmp_path / "c" / "a" / "index.html")


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


def test_a_users_own_index_is_replaced_only_with_overwrite(
    report: AuditReport, other: AuditReport, tmp_path: Path
) -> None:
    """A folder sis_attr did not write keeps its index.html and report.json unless the caller says overwrite."""
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("my home page")
    (out / "report.json").write_text("{}")
    with pytest.raises(ReportWriteError, match=r"will not replace index\.html, report\.json in .*overwrite=True"):
        report.save(out)
    with pytest.raises(ReportWriteError, match=r"will not replace index\.html"):
        save_comparison({"a": report, "b": other}, out)
    assert (out / "index.html").read_text() == "my home page" and (out / "report.json").read_text() == "{}"
    assert no_staging_left(out)
    index = report.save(out, overwrite=True)
    assert index.read_text(encoding="utf-8") != "my home page"
    renamed = dataclasses.replace(report, name="second")
    renamed.save(out)  # now sis_attr's: an earlier report is replaced without asking
    assert json.loads((out / "report.json").read_text())["report"]["name"] == "second"
    with pytest.raises(SISTypeError, match=r"`overwrite` parameter of AuditReport\.save must be True or False"):
        report.save(out, overwrite="yes")  # type: ignore[arg-type]


def test_failure_while_writing_leaves_nothing_that_looks_complete(
    report: AuditReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom() -> None:
        raise RuntimeError("disk on fire")

    def broken(report: AuditReport) -> list[figures.FigureSpec]:
        return [figures.FigureSpec("a.png", "caption", boom)]  # type: ignore[arg-type]

    monkeypatch.setattr(figures, "report_figures", broken)
    out = tmp_path / "new"
    with pytest.raises(RuntimeError, match="disk on fire"):
        report.save(out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    # an existing report is left as it was
    monkeypatch.undo()
    report.save(out)
    before = (out / "report.json").read_text()
    monkeypatch.setattr(figures, "report_figures", broken)
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
