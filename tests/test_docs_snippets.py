"""Every Python snippet of the README and of Getting started runs as written.

The README's snippets run in order in one interpreter, as a reader pastes them (the first defines the model and
the images the others use); each snippet of ``docs/getting_started.rst`` runs on its own. Snippets that read the
real CIFAR-10 data and pretrained ResNets (``$SIS_ATTR_SHARED_DATA`` or ``../shared/data``) skip without them;
with them, they run. The README's ``sis-attr audit`` command line is checked against the parser (running it
would take minutes).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting_started.rst"
NEEDS_DATA = re.compile(r"shared_data_dir|load_cifar10_batches|load_pretrained_cifar_resnet")
TIMEOUT_S = 900


def markdown_snippets(path: Path, language: str = "python") -> list[str]:
    """The fenced ``language`` blocks of a Markdown file, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def rst_snippets(path: Path, language: str = "python") -> list[str]:
    """The ``.. code-block:: language`` blocks of a reStructuredText file, dedented, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == f".. code-block:: {language}":
            indent = len(lines[i]) - len(lines[i].lstrip())
            body: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i])
                i += 1
            text = "\n".join(body).strip("\n")
            width = min(len(ln) - len(ln.lstrip()) for ln in text.splitlines() if ln.strip())
            blocks.append("\n".join(ln[width:] for ln in text.splitlines()) + "\n")
            continue
        i += 1
    return blocks


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def test_the_parsers_find_the_snippets() -> None:
    assert len(markdown_snippets(README)) >= 2
    assert len(rst_snippets(GETTING_STARTED)) >= 2
    assert all(not s.startswith(" ") for s in rst_snippets(GETTING_STARTED))


@pytest.mark.slow
def test_readme_python_snippets_run_in_order(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the README trains on scikit-learn's digits (the demo extra)")
    snippets = markdown_snippets(README)
    assert not any(NEEDS_DATA.search(s) for s in snippets), "README snippets must run without the real data"
    proc = _run("\n".join(snippets), tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "verdict:" in proc.stdout  # print(report.summary())
    assert (tmp_path / "my-audit" / "index.html").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(rst_snippets(GETTING_STARTED))))
def test_getting_started_python_snippets_run(index: int, tmp_path: Path) -> None:
    code = rst_snippets(GETTING_STARTED)[index]
    if NEEDS_DATA.search(code) and SHARED_DATA is None:
        pytest.skip("this snippet reads the real CIFAR-10 data and pretrained ResNets, which are not available")
    proc = _run(code, ROOT)  # as written: "../shared/data" is the data beside a checkout
    assert proc.returncode == 0, f"snippet {index}:\n{code}\n" + proc.stdout[-2000:] + proc.stderr[-5000:]


def test_getting_started_cifar_snippet_says_what_is_missing_without_data(tmp_path: Path) -> None:
    """Without the data the CIFAR-10 snippet stops with a message naming the variable, not a TypeError."""
    (code,) = [s for s in rst_snippets(GETTING_STARTED) if NEEDS_DATA.search(s)]
    env_code = f"import os\nos.environ['SIS_ATTR_SHARED_DATA'] = {str(tmp_path / 'missing')!r}\n" + code
    proc = _run(env_code, tmp_path)
    assert proc.returncode != 0 and "TypeError" not in proc.stderr
    assert "SIS_ATTR_SHARED_DATA" in proc.stderr


def test_readme_command_line_matches_the_parser() -> None:
    from sis_attr.cli import _build_parser

    blocks = re.findall(r"^```\n(sis-attr .*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert blocks, "the README shows a sis-attr audit command line"
    for block in blocks:
        argv = shlex.split(block.replace("\\\n", " "))
        assert argv[0] == "sis-attr"
        args = _build_parser().parse_args(argv[1:])
        assert args.command == "audit"
        # the README's claims of cost hold for the automatic schedule: no other --k or --shortlist
        assert args.method == "gradient" and args.k is None and args.shortlist is None
