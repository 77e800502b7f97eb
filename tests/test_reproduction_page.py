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


def test_out_of_distribution_columns_only_when_the_file_has_them(generator: ModuleType, tmp_path: Path) -> None:
    r20 = _table1(0.9, 0.9, 0.1, 3, 3)
    (tmp_path / "table1_resnet20.json").write_text(json.dumps(r20))
    page = generator.render(tmp_path)
    assert "**CIFAR-10.1 and CIFAR-10-C columns**" in page and "not run" in page
    assert "https://github.com/modestyachts/CIFAR-10.1" in page and "https://zenodo.org/record/2535967" in page
    ood = {
        "set": "CIFAR-10.1 v6",
        "of": 2000,
        "images": {"count": 200, "requested": 200, "partial": False, "seed": 0},
        "evaluate_on": {"full": 0.8123, "backselect": 0.7456, "random": 0.1011},
        "confidence_drop": {"mean": 0.0321, "std": 0.1},
    }
    corrupted = ood | {"set": "CIFAR-10-C", "severities": [1, 2, 3, 4, 5], "per_corruption": {"fog": 100, "snow": 100}}
    corrupted.pop("of")
    r20["out_of_distribution"] = {"cifar10_1": ood, "cifar10_c": corrupted}
    (tmp_path / "table1_resnet20.json").write_text(json.dumps(r20))
    page = generator.render(tmp_path)
    assert "**CIFAR-10.1 and CIFAR-10-C columns**" not in page
    assert "CIFAR-10.1 v6 (200 of 2000; random draw, seed 0)" in page
    assert (
        "81.23 (paper 83.85 ± 0.75)" in page and "74.56 (paper 82.80)" in page and "10.11 (paper 10.01 ± 0.02)" in page
    )
    assert "CIFAR-10-C (200, 2 corruptions, severities [1, 2, 3, 4, 5]; random draw, seed 0)" in page
    assert "81.23 (paper 69.99 ± 0.67)" in page and "+0.032 (std 0.100)" in page


def _figures1_2() -> dict[str, object]:
    ring = {"kept_share": 0.3172, "area_share": 0.1211, "ratio": 2.62, "border_ratio": 3.37}
    heat = {
        "n_images": 3,
        "counts": [[0] * 32 for _ in range(32)],
        "peak": [31, 31],
        "rings": {"1": ring, "2": ring, "4": ring},
        "sides": {"top": 0.05, "bottom": 0.09, "left": 0.097, "right": 0.098},
    }
    example = {"index": 7, "label_name": "cat", "sis_size": 14, "sis_fraction": 0.0137}
    return {
        "command": "python examples/reproduce_figure1_2_sis_examples.py --n-images 3",
        "model": "ResNet20 (akamaster pretrained)",
        "images": {"count": 3, "requested": 3, "partial": False, "source": "lossless"},
        "selection": {
            "method": "gradient",
            "k": "auto",
            "threshold": 0.99,
            "features": "pixel",
            "baseline": "0",
            "compute_seconds": 7.2,
        },
        "hardware": "test CPU",
        "wall_seconds": 4.0,
        "figure1": {
            "threshold": 0.99,
            "per_class": 1,
            "seed": 0,
            "eligible": 2,
            "sis_at_threshold": 3,
            "mean_sis_size": 20.5,
            "examples": [example | {"confidence": 0.99991, "sis_confidence": 0.99123}],
        },
        "figure2": {
            "fraction": 0.05,
            "subset_size": 52,
            "mean_subset_confidence": 0.9,
            "mean_full_confidence": 0.95,
            "subsets": heat,
            "sis": heat,
            "per_class": {"cat": heat, "dog": heat | {"rings": {"1": ring | {"kept_share": 0.25}}}},
        },
    }


def test_figures_1_2_section_reads_the_file(generator: ModuleType, tmp_path: Path) -> None:
    assert "Not run yet: no ``examples/results/figure1_2_resnet20.json``" in generator.render(tmp_path)
    (tmp_path / "figure1_2_resnet20.json").write_text(json.dumps(_figures1_2()))
    page = generator.render(tmp_path)
    section = page.split("Figures 1 and 2:")[1]
    assert "python examples/reproduce_figure1_2_sis_examples.py --n-images 3" in section
    assert "   * - cat\n     - 7\n     - 14 (1.4%)\n     - 0.9999\n     - 0.9912" in section
    assert "31.7% (2.62x its area share, 12.1%)" in section and "(31, 31)" in section
    assert "mean SIS holds 20.5 pixels (2.00% of the 1,024)" in section
    # left and right used about equally: the border is not a tie-breaking artifact; per-class range
    assert "left and right are used about equally" in section
    assert "from 25.0% (dog) to 31.7% (cat)" in section


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
