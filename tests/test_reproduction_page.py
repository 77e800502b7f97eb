"""docs/reproduction.rst is generated from the committed result files and in step with them.

The page is written by ``docs/scripts/make_reproduction_page.py`` from ``examples/results/*.json`` (and the
schedule benchmark); here it is regenerated and compared, and the generator is checked on synthetic results:
our numbers and the paper's appear side by side, and missing experiments are said to be missing.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "scripts" / "make_reproduction_page.py"
PAGE = ROOT / "docs" / "reproduction.rst"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_reproduction_page", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table1(full: float, backselect: float, random: float, count: int, requested: int) -> dict[str, object]:
    size = {"n": 3, "mean": 0.02, "ci95": 0.005}
    return {
        "command": "python examples/reproduce_table1_cifar10.py --n-test 3",
        "images": {"count": count, "requested": requested, "partial": count < requested, "source": "lossless"},
        "selection": {
            "method": "gradient",
            "k": "auto",
            "threshold": 0.99,
            "features": "pixel",
            "seconds_per_image": 2.5,
            "compute_seconds": 7.5,
        },
        "hardware": "test CPU",
        "wall_seconds": 12.0,
        "evaluate_on": {"full": full, "backselect": backselect, "random": random},
        "confidence_drop": {"mean": -0.0123, "std": 0.0456},
        "sis_sizes": {
            "0.99": {
                "all": size,
                "correct": {"n": 2, "mean": 0.03, "ci95": 0.01},
                "misclassified": {"n": 1, "mean": 0.01, "ci95": None},
            }
        },
    }


def test_page_is_in_step_with_the_result_files(generator: ModuleType) -> None:
    assert PAGE.is_file(), "docs/reproduction.rst is missing: run docs/scripts/make_reproduction_page.py"
    assert PAGE.read_text(encoding="utf-8") == generator.render(), (
        "docs/reproduction.rst is out of step with examples/results/*.json: "
        "run python docs/scripts/make_reproduction_page.py"
    )


def test_every_committed_result_is_on_the_page(generator: ModuleType) -> None:
    page = PAGE.read_text(encoding="utf-8")
    for path in sorted((ROOT / "examples" / "results").glob("table1_resnet*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        ev = result["evaluate_on"]
        for key in ("full", "backselect", "random"):
            assert f"{100 * ev[key]:.2f}" in page, f"{path.name}: {key} accuracy not on the page"
        assert result["command"] in page
        assert f"{result['images']['count']} {result['images']['source']}" in page


def test_numbers_come_from_the_files_beside_the_papers(generator: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "table1_resnet20.json").write_text(json.dumps(_table1(0.9123, 0.8765, 0.1111, 3, 3)))
    (tmp_path / "table1_resnet32.json").write_text(json.dumps(_table1(0.5, 0.25, 0.125, 2, 200)))
    page = generator.render(tmp_path)
    assert "91.23 (paper 92.23 ± 0.35)" in page
    assert "87.65 (paper 92.48)" in page
    assert "11.11 (paper 9.99 ± 0.07)" in page
    assert "-0.012 (std 0.046); paper −0.035 (std 0.107)" in page
    # only ResNet20 is in the paper: no paper value beside the other depths
    assert "50.00\n" in page and "50.00 (paper" not in page
    assert "2 lossless (partial: 2 of 200 requested)" in page
    # Figure 5: correct 3.00%, misclassified 1.00% -> +200%
    assert "3.00 ± 1.00 (n=2)" in page and "1.00 (n=1)" in page
    assert "Not run yet: no ``examples/results/figure6_transfer.json``" in page
    assert "**Not run at this scale.**" in page


def test_without_results_the_page_says_so(generator: ModuleType, tmp_path: Path) -> None:
    page = generator.render(tmp_path)
    assert "Not run yet: no ``examples/results/table1_resnet*.json``." in page
    assert "92.48" not in page.split('Table 1, "evaluate on"')[1].split('Table 1, "train on"')[0]


def test_check_mode(generator: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "page.rst"
    assert generator.main(["--check", "--out", str(out)]) == 1
    assert generator.main(["--out", str(out)]) == 0
    assert generator.main(["--check", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == generator.render()


def test_figures_on_the_page_exist(generator: ModuleType) -> None:
    page = PAGE.read_text(encoding="utf-8")
    for line in page.splitlines():
        if line.startswith(".. image:: /_static/"):
            path = ROOT / "docs" / line.split(":: /", 1)[1]
            assert path.is_file(), f"{path} is referenced by the page but missing: run make_reproduction_page.py"


def test_figures_are_drawn_from_the_files(generator: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "table1_resnet20.json").write_text(json.dumps(_table1(0.9, 0.9, 0.1, 3, 3)))
    written = generator.draw_figures(results, tmp_path / "figures")
    assert [p.name for p in written] == [generator.FIGURE5]
    assert written[0].stat().st_size > 1000
    assert f".. image:: /_static/reproduction/{generator.FIGURE5}" in generator.render(results)
