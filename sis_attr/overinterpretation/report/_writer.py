"""Writing reports to disk: one directory per report, several side by side, never half-written.

Files are written to a hidden staging directory and moved into place at the end, ``index.html`` last, so a
directory with an ``index.html`` always holds a complete report. Only directories marked as written by
sis_attr are ever replaced. Writing draws and serialises what the reports hold; it computes nothing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from sis_attr.exceptions import ReportWriteError, SISTypeError
from sis_attr.overinterpretation.report import _figures as _figures
from sis_attr.overinterpretation.report import _html as _html
from sis_attr.overinterpretation.report._format import json_safe
from sis_attr.overinterpretation.report._results import AuditReport, check_reports

__all__ = ["check_output_directory", "save_comparison"]

MARKER = ".sis-attr-report"
"""Empty file marking a directory written by this module (only such directories are ever replaced)."""

FORMAT_VERSION = 1
"""Version of the layout of ``report.json`` and ``comparison.json``."""


# ------------------------------------------------------------------------------------------------ checks
def check_output_directory(directory: str | os.PathLike[str], caller: str = "check_output_directory") -> Path:
    """Check early that a report can be written to ``directory`` (nothing is created).

    The directory must be writable if it exists; otherwise its nearest existing ancestor must be a writable
    directory.

    Parameters
    ----------
    directory : str or os.PathLike
        Where the report will go.
    caller : str, default "check_output_directory"
        Name of the public function to name in error messages.

    Returns
    -------
    pathlib.Path
        ``directory`` as a path.

    Raises
    ------
    ReportWriteError
        With the reason, if it cannot be written.
    SISTypeError
        If ``directory`` is not a path.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     check_output_directory(Path(tmp) / "new" / "report").name
    'report'
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise SISTypeError(
            f"The `directory` parameter of {caller} must be a path. Got {type(directory).__name__} instead."
        )
    path = Path(directory)
    if str(directory) == "":
        raise ReportWriteError(f"{caller}: the output directory must be a non-empty path.")
    if "\0" in str(directory):
        raise ReportWriteError(f"{caller} cannot write the report to {str(path)!r}: the path holds a NUL character.")
    probe = path
    try:
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
    except (ValueError, OSError) as err:  # e.g. an embedded NUL byte, a name too long
        raise ReportWriteError(f"{caller} cannot write the report to {str(path)!r}: {err}.") from err
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == path else f"has a parent that is not a directory: {str(probe)!r}"
        raise ReportWriteError(f"{caller} cannot write the report to {str(path)!r}: the path {where}.")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise ReportWriteError(
            f"{caller} cannot write the report to {str(path)!r}: {str(probe)!r} is not writable ({err.strerror})."
        ) from err
    return path


# ------------------------------------------------------------------------------------------------ staging
def _fresh_directory(parent: Path, prefix: str) -> Path:
    """Create a new uniquely named directory in ``parent`` with the default (umask) permissions.

    (``tempfile.mkdtemp`` would make it private, and the report directory it becomes would stay so.)
    """
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"could not create a staging directory in {str(parent)!r}")


def _owned(path: Path) -> bool:
    return path.is_dir() and (path / MARKER).is_file()


@contextmanager
def staged_directory(
    directory: str | os.PathLike[str], caller: str, *, overwrite: bool = False, mark: bool = True
) -> Iterator[Path]:
    """Yield an empty staging directory; on success move its contents into ``directory`` (index.html last).

    If ``directory`` does not exist, the staging directory is its hidden sibling and is renamed to it in one
    step. Otherwise its contents are moved in one by one: the old ``index.html`` is removed first and the new
    one moved last, so a partly replaced report never has an ``index.html``. Sub-directories are only replaced
    when they were written by this module, and files only in a directory it wrote (its :data:`MARKER` file,
    which the directory gets unless ``mark`` is False) or with ``overwrite``: a user's own ``index.html`` is
    never replaced by accident. On any error the staging directory is removed. ``overwrite`` is the caller's
    public parameter: anything but True or False is a :class:`SISTypeError` naming ``caller``.
    """
    if not isinstance(overwrite, bool):
        raise SISTypeError(f"The `overwrite` parameter of {caller} must be True or False. Got {overwrite!r}.")
    target = check_output_directory(directory, caller)
    try:
        if target.exists():
            staging = _fresh_directory(target, ".sis-attr-staging-")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = _fresh_directory(target.parent, f".{target.name}.sis-attr-staging-")
    except (OSError, ValueError) as err:
        raise ReportWriteError(f"{caller} cannot create the report directory {str(target)!r}: {err}") from err
    try:
        yield staging
        if mark:
            (staging / MARKER).touch()
        _commit(staging, target, caller, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _commit(staging: Path, target: Path, caller: str, overwrite: bool) -> None:
    try:
        if not target.exists():
            staging.rename(target)
            return
        if not overwrite and not _owned(target):
            clashes = sorted(
                e.name for e in staging.iterdir() if not e.is_dir() and e.name != MARKER and (target / e.name).exists()
            )
            if clashes:
                raise ReportWriteError(
                    f"{caller} will not replace {', '.join(clashes)} in {str(target)!r}: the directory was not "
                    f"written by sis_attr (it has no {MARKER} file). Pass overwrite=True (--overwrite on the "
                    "command line) to replace them, or choose another directory."
                )
        for entry in staging.iterdir():
            dest = target / entry.name
            if entry.is_dir() and dest.exists() and not _owned(dest):
                raise ReportWriteError(
                    f"{caller} will not replace {str(dest)!r}: it exists and was not written by sis_attr. "
                    "Choose another output directory."
                )
        old_index = target / "index.html"
        if old_index.is_file() or old_index.is_symlink():
            old_index.unlink()
        entries = sorted(staging.iterdir(), key=lambda p: (p.name == "index.html", p.name))
        for entry in entries:
            dest = target / entry.name
            if entry.is_dir():
                if dest.exists():
                    trash = _fresh_directory(target, ".sis-attr-old-")
                    dest.rename(trash / entry.name)
                    entry.rename(dest)
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    entry.rename(dest)
            else:
                os.replace(entry, dest)
        staging.rmdir()
    except ReportWriteError:
        raise
    except OSError as err:
        raise ReportWriteError(f"{caller} could not write the report to {str(target)!r}: {err}") from err


# ------------------------------------------------------------------------------------------------ files
def _write_figures(specs: Sequence[_figures.FigureSpec], figures_dir: Path) -> list[tuple[str, str]]:
    """Draw and save each figure into ``figures_dir``: ``(path relative to its parent, caption)`` per figure."""
    figures_dir.mkdir()
    (figures_dir / MARKER).touch()
    written: list[tuple[str, str]] = []
    for spec in specs:
        spec.draw().savefig(figures_dir / spec.filename, format="png")
        written.append((f"{figures_dir.name}/{spec.filename}", spec.caption))
    return written


def _write_json(path: Path, payload: Mapping[str, object]) -> None:
    path.write_text(json.dumps(json_safe(payload), indent=1, allow_nan=False), encoding="utf-8")


def _write_report_files(report: AuditReport, staging: Path, back: Mapping[str, str] | None = None) -> None:
    """Write every file of ``report`` into ``staging`` (index.html last); ``back`` links to a parent page."""
    written = _write_figures(_figures.report_figures(report), staging / "figures")
    report.selection.save(staging / "selection.pt")
    _write_json(
        staging / "report.json", {"generator": "sis_attr", "format_version": FORMAT_VERSION, "report": report.to_dict()}
    )
    (staging / MARKER).touch()
    (staging / "index.html").write_text(_html.report_page(report, written, back), encoding="utf-8")


def write_report(
    report: AuditReport, directory: str | os.PathLike[str], *, caller: str, overwrite: bool = False
) -> Path:
    """Write ``report`` to ``directory`` (the work of :meth:`AuditReport.save`), naming ``caller`` in errors."""
    if not isinstance(report, AuditReport):
        raise SISTypeError(
            f"The `report` parameter of {caller} must be an AuditReport. Got {type(report).__name__} instead."
        )
    with staged_directory(directory, caller, overwrite=overwrite) as staging:
        _write_report_files(report, staging)
    return Path(directory) / "index.html"


# ------------------------------------------------------------------------------------------------ comparisons
def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower()[:40] or "model"
    slug, i = base, 2
    while slug in taken or slug in ("figures",):
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def save_comparison(
    reports: Mapping[str, AuditReport],
    directory: str | os.PathLike[str],
    *,
    title: str = "Overinterpretation audit",
    description: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write several audit reports side by side: one page comparing them, and each full report.

    Layout of ``directory``::

        index.html            the comparison: table of headline numbers, Figure 6 with every model (when the
                              reports hold their SIS-size curves), heatmaps and example SIS side by side,
                              links to each report
        comparison.json       the headline numbers and every report's numbers
        figures/*.png
        <model>/index.html    each report, as written by AuditReport.save

    Parameters
    ----------
    reports : dict of str to AuditReport
        Name -> report (the names title the columns; the reports' own names are kept inside their pages).
    directory : str or os.PathLike
        Created if needed. Written through a staging directory, ``index.html`` last.
    title : str, default "Overinterpretation audit"
        Page title.
    description : str, optional
        A paragraph shown under the title (escaped).
    overwrite : bool, default False
        Replace files of an existing ``directory`` that sis_attr did not write (by default that is an error;
        an earlier report or comparison there is always replaced).

    Returns
    -------
    pathlib.Path
        The path of the comparison ``index.html``.

    Raises
    ------
    ReportWriteError
        If ``directory`` cannot be created or written, or holds files of the same names that sis_attr did not
        write (without ``overwrite``).
    SISTypeError
        If ``reports`` is not a non-empty dict of names to reports, or ``title``/``description`` not strings.
    """
    caller = "save_comparison"
    reports = check_reports(reports, caller)
    if not isinstance(title, str) or (description is not None and not isinstance(description, str)):
        raise SISTypeError(f"The `title` and `description` parameters of {caller} must be strings.")
    taken: set[str] = set()
    slugs = {name: _slug(name, taken) for name in reports}
    with staged_directory(directory, caller, overwrite=overwrite) as staging:
        for name, report in reports.items():
            sub = staging / slugs[name]
            sub.mkdir()
            _write_report_files(report, sub, back={"href": "../index.html", "text": f"{title}: all models"})
        written = _write_figures(_figures.comparison_figures(reports), staging / "figures")
        _write_json(
            staging / "comparison.json",
            {
                "generator": "sis_attr",
                "format_version": FORMAT_VERSION,
                "title": title,
                "models": {name: {"directory": slugs[name], **r.headline()} for name, r in reports.items()},
                "reports": {name: r.to_dict() for name, r in reports.items()},
            },
        )
        (staging / MARKER).touch()
        (staging / "index.html").write_text(
            _html.comparison_page(reports, slugs, written, title, description), encoding="utf-8"
        )
    return Path(directory) / "index.html"
