"""The documentation: every gallery example runs, and the API reference lists every public name.

* ``examples/plot_*.py`` are executed by sphinx-gallery at docs build time; here each one runs as a subprocess
  (without Sphinx) and must exit cleanly, with the real data of ``../shared/data`` when it is there and, for
  the examples that read it, without it (they must say so and fall back).
* ``examples/reproduce_*.py`` are not executed by the gallery; their ``--help`` must work, and without the
  real data they must end early with a message and exit status 0.
* ``docs/api.rst`` must list every name of every public ``__all__`` (``docs/sphinxext/sis_attr_docs.py``
  holds the rules; the strict docs build applies the same check).
* The strict docs build itself, its links and its layout are tested in ``tests/test_docs_site.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
DOCS_DIR = ROOT / "docs"
PLOT_EXAMPLES = sorted(EXAMPLES_DIR.glob("plot_*.py"))
SCRIPT_EXAMPLES = sorted(EXAMPLES_DIR.glob("reproduce_*.py"))
REQUIRED_EXAMPLES = (
    "plot_sis_toy.py",
    "plot_cifar10_sis.py",
    "plot_overinterpretation_demo.py",
    "plot_batched_gradient_sis.py",
    "reproduce_table1_cifar10.py",
    "reproduce_figure6_sis_size.py",
)

EXAMPLE_TIMEOUT_S = 900
"""Generous: an example takes under ~30 s on an idle CPU core, but CI machines may be busy."""
MISSING_DATA_MESSAGE = "not found"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    # One thread unless told otherwise: on a busy machine, OpenMP threads waiting for each other can make a
    # run many times slower than on one thread.
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _run(path: Path, *args: str, cwd: Path, timeout: float = EXAMPLE_TIMEOUT_S, **env: str) -> tuple[int, str, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(path), *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def _reads_shared_data(path: Path) -> bool:
    return "shared_data_dir" in path.read_text(encoding="utf-8")


def _docs_helpers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sis_attr_docs", DOCS_DIR / "sphinxext" / "sis_attr_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ examples
def test_required_examples_exist() -> None:
    present = {p.name for p in EXAMPLES_DIR.glob("*.py")}
    assert not set(REQUIRED_EXAMPLES) - present, f"missing examples: {sorted(set(REQUIRED_EXAMPLES) - present)}"
    assert (EXAMPLES_DIR / "README.rst").is_file(), "sphinx-gallery needs examples/README.rst"


@pytest.mark.parametrize("path", PLOT_EXAMPLES + SCRIPT_EXAMPLES, ids=lambda p: p.name)
def test_example_is_in_gallery_format(path: Path) -> None:
    """A module docstring whose first line is a title underlined with '=', then code cells."""
    source = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source), clean=True)
    assert docstring, f"{path.name} has no module docstring (sphinx-gallery takes the title from it)"
    lines = docstring.splitlines()
    assert len(lines) >= 2 and set(lines[1]) == {"="} and len(lines[1]) >= len(lines[0]), (
        f"{path.name}: the docstring must start with a title underlined by '=' at least as long as the title"
    )
    assert "# %%" in source or path.name.startswith("reproduce_"), f"{path.name} has no '# %%' cells"


@pytest.mark.slow
@pytest.mark.parametrize("path", PLOT_EXAMPLES, ids=lambda p: p.name)
def test_plot_example_runs(path: Path, tmp_path: Path) -> None:
    code, output, seconds = _run(path, cwd=tmp_path)
    assert code == 0, f"{path.name} failed after {seconds:.0f} s:\n{output[-4000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in PLOT_EXAMPLES if _reads_shared_data(p)], ids=lambda p: p.name)
def test_plot_example_runs_without_shared_data(path: Path, tmp_path: Path) -> None:
    """Without ../shared/data the example says so and falls back (here: $SIS_ATTR_SHARED_DATA is a bad path)."""
    code, output, seconds = _run(path, cwd=tmp_path, SIS_ATTR_SHARED_DATA=str(tmp_path / "no-such-dir"))
    assert code == 0, f"{path.name} failed without the shared data after {seconds:.0f} s:\n{output[-4000:]}"
    assert MISSING_DATA_MESSAGE in output, f"{path.name} does not say that the data were not found:\n{output[-2000:]}"


@pytest.mark.parametrize("path", SCRIPT_EXAMPLES, ids=lambda p: p.name)
def test_script_example_help(path: Path, tmp_path: Path) -> None:
    code, output, _ = _run(path, "--help", cwd=tmp_path, timeout=120)
    assert code == 0, output[-4000:]
    assert "usage:" in output


@pytest.mark.parametrize("path", SCRIPT_EXAMPLES, ids=lambda p: p.name)
def test_script_example_ends_early_without_shared_data(path: Path, tmp_path: Path) -> None:
    code, output, _ = _run(path, cwd=tmp_path, timeout=120, SIS_ATTR_SHARED_DATA=str(tmp_path / "no-such-dir"))
    assert code == 0, output[-4000:]
    assert MISSING_DATA_MESSAGE in output, output[-2000:]


# ------------------------------------------------------------------------------------------------ API reference
def test_api_reference_lists_every_public_name() -> None:
    helpers = _docs_helpers()
    problems = helpers.api_coverage_problems(DOCS_DIR / "api.rst")
    assert not problems, "docs/api.rst and the public API disagree:\n" + "\n".join(problems)


def test_api_reference_parser_sees_known_names() -> None:
    """Guard the check itself: the parser must find names that are certainly listed."""
    listed = _docs_helpers().documented_names(DOCS_DIR / "api.rst")
    for name in ("sis_attr.SufficientInputSubsets", "sis_attr.functional.backselect", "sis_attr.testing.LinearScore"):
        assert name in listed


def test_api_coverage_check_reports_a_missing_name(tmp_path: Path) -> None:
    helpers = _docs_helpers()
    text = (DOCS_DIR / "api.rst").read_text(encoding="utf-8")
    assert "\n   find_sis\n" in text
    broken = tmp_path / "api.rst"
    broken.write_text(
        text.replace("\n   find_sis\n", "\n", 1) + "\n.. currentmodule:: sis_attr\n\n.. autosummary::\n\n"
        "   not_a_public_name\n",
        encoding="utf-8",
    )
    problems = "\n".join(helpers.api_coverage_problems(broken))
    assert "sis_attr.functional.find_sis is in the __all__ of sis_attr.functional but api.rst documents it nowhere" in (
        problems
    )
    assert "sis_attr.find_sis is in the __all__ of sis_attr but api.rst documents it nowhere" in problems
    assert "sis_attr.not_a_public_name is listed" in problems


def test_api_coverage_check_reports_an_object_listed_twice(tmp_path: Path) -> None:
    """One page per object: sis_attr.SISError and sis_attr.exceptions.SISError are the same class."""
    helpers = _docs_helpers()
    text = (DOCS_DIR / "api.rst").read_text(encoding="utf-8")
    twice = tmp_path / "api.rst"
    twice.write_text(text + "\n.. currentmodule:: sis_attr\n\n.. autosummary::\n\n   SISError\n", encoding="utf-8")
    problems = "\n".join(helpers.api_coverage_problems(twice))
    assert "sis_attr.SISError and sis_attr.exceptions.SISError are the same object, listed 2 times" in problems
    assert helpers.alias_targets(DOCS_DIR / "api.rst")["sis_attr.SISError"] == "sis_attr.exceptions.SISError"


def test_api_sections_group_names_by_module() -> None:
    sections = dict(_docs_helpers().api_sections(DOCS_DIR / "api.rst"))
    assert "sis_attr.SufficientInputSubsets" in sections["sis_attr: attribution methods and results"]
    assert "sis_attr.exceptions.SISError" in sections["sis_attr.exceptions: errors and warnings"]
