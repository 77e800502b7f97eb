"""examples/reproduce_figure1_2_sis_examples.py: the border statistics, the choice of examples and the outputs.

The ring statistics are checked against hand-computed heatmaps (uniform, border only); the example choice against
its rule (correct, confident, non-empty SIS, per class); and the script end to end on two real test images
(skipped without ``../shared/data``), reading the selection from a checkpoint written like Table 1's.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from sis_attr.overinterpretation import LocationHeatmap, backward_selection
from sis_attr.testing import TinyConvNet
from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _load(name: str) -> ModuleType:
    return load_script(EXAMPLES / f"{name}.py")


@pytest.fixture(scope="module")
def figure12() -> ModuleType:
    _load("reproduce_table1_cifar10")
    return _load("reproduce_figure1_2_sis_examples")


def test_ring_statistics_of_uniform_and_border_heatmaps(figure12: ModuleType) -> None:
    uniform = figure12.ring_statistics(LocationHeatmap(torch.full((32, 32), 0.05, dtype=torch.float64), 10, 0.05))
    for width, area in (("1", 124 / 1024), ("2", 240 / 1024), ("4", 448 / 1024)):
        assert uniform[width]["area_share"] == pytest.approx(area, abs=1e-4)
        assert uniform[width]["kept_share"] == pytest.approx(area, abs=1e-4)
        assert uniform[width]["ratio"] == pytest.approx(1.0, abs=1e-3)
    border = torch.zeros(32, 32, dtype=torch.float64)
    border[0, :] = 1.0  # every kept pixel in the top row
    stats = figure12.ring_statistics(LocationHeatmap(border, 4, 0.05))
    assert stats["1"]["kept_share"] == 1.0 and stats["1"]["ratio"] == pytest.approx(1024 / 124, abs=1e-3)
    entry = figure12.heatmap_entry(LocationHeatmap(border, 4, 0.05))
    assert entry["counts"][0] == [4] * 32 and sum(map(sum, entry["counts"])) == 128
    corner = pytest.approx(1 / 32, abs=1e-4)  # the corner pixels of the top row
    assert entry["sides"] == {"top": 1.0, "bottom": 0.0, "left": corner, "right": corner}
    assert entry["corners"] == [4, 4, 0, 0] and entry["peak"] == [0, 0]


def test_examples_are_correct_confident_and_one_per_class(figure12: ModuleType) -> None:
    model = TinyConvNet(classes=10).eval()
    images = torch.rand(12, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    sel = backward_selection(model, images, show_progress=False)
    labels = sel.targets.clone()
    labels[0] = (labels[0] + 1) % 10  # misclassified: never chosen
    sizes = torch.ones(12, dtype=torch.float64)
    sizes[1] = 0.0  # empty SIS: never chosen
    chosen = figure12.choose_examples(sel, labels, sizes, threshold=0.0, per_class=1, seed=0)
    assert 0 not in chosen and 1 not in chosen
    picked = [int(labels[i]) for i in chosen]
    assert picked == sorted(set(picked))  # one per class, in class order
    assert set(picked) == {int(labels[i]) for i in range(2, 12)}
    assert figure12.choose_examples(sel, labels, sizes, threshold=1.01, per_class=1, seed=0) == []


@pytest.mark.real_data
def test_script_writes_json_and_figures(figure12: ModuleType, shared_data: Path, tmp_path: Path) -> None:
    out, figures = tmp_path / "f12.json", tmp_path / "figures"
    argv = ["--n-images", "2", "--checkpoint-dir", str(tmp_path / "ck"), "--threads", "1", "--json", str(out)]
    assert figure12.main([*argv, "--figures", str(figures)]) == 0
    # the selection is stored in the Table 1 layout, so the Table 1 script reads it (and vice versa)
    assert [p.name for p in (tmp_path / "ck" / "resnet20_test").glob("*.pt")] == ["00000-00002.pt"]
    result = json.loads(out.read_text())
    assert result["images"]["count"] == 2 and result["command"].endswith(" ".join([*argv, "--figures", str(figures)]))
    heat = result["figure2"]["subsets"]
    assert heat["n_images"] == 2 and len(heat["counts"]) == 32 and all(len(row) == 32 for row in heat["counts"])
    assert sum(map(sum, heat["counts"])) == 2 * result["figure2"]["subset_size"] == 2 * 52
    for e in result["figure1"]["examples"]:
        assert e["label"] == e["prediction"] and e["confidence"] >= 0.99 and e["sis_confidence"] >= 0.99
    written = {p.name for p in figures.glob("*.png")}
    assert {figure12.FIGURE2, figure12.FIGURE2_PER_CLASS} <= written
    assert (figure12.FIGURE1 in written) == bool(result["figure1"]["examples"])
    # a rerun reads the finished chunk: nothing new is computed
    assert figure12.main(argv) == 0
    assert json.loads(out.read_text())["selection"]["compute_seconds"] == result["selection"]["compute_seconds"]
