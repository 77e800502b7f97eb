"""examples/reproduce_table1_cifar10.py and reproduce_figure6_sis_size.py: resumable chunks and the JSON output.

The chunked, resumable selection the paper-scale runs use must give what one uninterrupted selection gives; the
scripts' small defaults run end to end on the real data (skipped without ``../shared/data``) and write the
JSON the reproduction page is generated from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

from sis_attr.overinterpretation import backward_selection
from sis_attr.testing import TinyConvNet
from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _load(name: str) -> ModuleType:
    return load_script(EXAMPLES / f"{name}.py")


@pytest.fixture(scope="module")
def table1() -> ModuleType:
    return _load("reproduce_table1_cifar10")


@pytest.fixture(scope="module")
def figure6(table1: ModuleType) -> ModuleType:
    return _load("reproduce_figure6_sis_size")


OPTIONS = {"method": "gradient", "k": "auto", "threshold": 0.9, "batch_size": 64, "show_progress": False}


def _orders(selection: object) -> list[list[int]]:
    return [list(map(int, record.order)) for record in selection.records]  # type: ignore[attr-defined]


def test_chunked_selection_equals_one_selection_and_resumes(table1: ModuleType, tmp_path: Path) -> None:
    model = TinyConvNet(classes=3).eval()
    images = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    whole = backward_selection(model, images, **OPTIONS)
    chunked = table1.chunked_selection(model, images, OPTIONS, checkpoint_dir=tmp_path, chunk=2)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["00000-00002.pt", "00002-00004.pt", "00004-00005.pt"]
    assert _orders(chunked) == _orders(whole)
    assert torch.equal(chunked.targets, whole.targets)
    torch.testing.assert_close(chunked.confidences, whole.confidences)
    # a rerun reads the finished chunks (even with another chunk size) and runs nothing
    calls = []
    counting = lambda x: (calls.append(len(x)), model(x))[1]  # noqa: E731
    again = table1.chunked_selection(counting, images, OPTIONS, checkpoint_dir=tmp_path, chunk=3)
    assert calls == [] and _orders(again) == _orders(whole)
    # only the finished chunks: the leading images whose chunks exist
    (tmp_path / "00002-00004.pt").unlink()
    partial = table1.chunked_selection(model, images, OPTIONS, checkpoint_dir=tmp_path, chunk=2, only_finished=True)
    assert len(partial) == 2 and _orders(partial) == _orders(whole)[:2]
    assert (
        table1.chunked_selection(model, images, OPTIONS, checkpoint_dir=tmp_path / "new", chunk=2, only_finished=True)
        is None
    )


def test_mean_ci_is_the_normal_interval(table1: ModuleType) -> None:
    values = torch.tensor([1.0, 2.0, 3.0, float("nan"), 6.0])
    stats = table1.mean_ci(values)
    assert stats["n"] == 4 and stats["mean"] == pytest.approx(3.0)
    assert stats["ci95"] == pytest.approx(1.96 * math.sqrt(14 / 3) / 2)
    assert table1.mean_ci(torch.tensor([float("nan")])) == {"n": 0, "mean": None, "ci95": None}


@pytest.mark.real_data
def test_table1_script_writes_the_results(table1: ModuleType, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "t1.json"
    argv = [
        "--n-test",
        "3",
        "--controls",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert table1.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["images"] == {
        "count": 3,
        "requested": 3,
        "partial": False,
        "source": "lossless",
        "set": "CIFAR-10 test images 0..2",
    }
    assert result["command"].endswith(" ".join(argv))
    assert result["selection"]["method"] == "gradient" and result["selection"]["k"] == "auto"
    for key in ("full", "backselect", "random"):
        assert 0.0 <= result["evaluate_on"][key] <= 1.0
    sizes = result["sis_sizes"]["0.99"]
    assert len(sizes["per_image"]) == 3 and sizes["all"]["n"] == sum(v is not None for v in sizes["per_image"])
    assert result["controls"]["mask_shape_leakage"]["n_images"] == 3
    assert "confidences" not in result["controls"]["smoothed_sis"]
    # --only-finished on more images than were selected: a partial result, labelled so
    assert table1.main([*argv[:1], "5", *argv[2:], "--only-finished"]) == 0
    partial = json.loads(out.read_text())
    assert partial["images"]["count"] == 3 and partial["images"]["partial"] is True


@pytest.mark.real_data
def test_figure6_script_reuses_the_table1_selections(
    table1: ModuleType, figure6: ModuleType, shared_data: Path, tmp_path: Path
) -> None:
    ck = tmp_path / "ck"
    assert table1.main(["--n-test", "1", "--checkpoint-dir", str(ck), "--threads", "1"]) == 0
    out = tmp_path / "f6.json"
    argv = [
        "--n-images",
        "1",
        "--depths",
        "20",
        "32",
        "--no-ensemble",
        "--checkpoint-dir",
        str(ck),
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    assert figure6.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["models"] == ["ResNet20", "ResNet32"] and result["images"]["count"] == 1
    transfer = result["transfer"]
    assert transfer["sources"] == transfer["models"] == ["ResNet20", "ResNet32"]
    assert len(transfer["accuracy"]) == 2 and all(len(row) == 2 for row in transfer["accuracy"])
    assert set(result["curves"]["models"]) == {"ResNet20", "ResNet32"}
