"""examples/reproduce_mitigation_input_dropout.py: training, the weight cache, the paired comparison and the JSON.

The script runs end to end on a tiny CIFAR-10-format directory written here (random images, so it needs no
``../shared/data``): two ResNet20s trained for one epoch, one image selected per model. A rerun reads the trained
weights from ``--cache-dir`` and gives the same numbers; the paired SIS-size difference is checked on a model
whose SIS are known by hand.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from sis_attr.overinterpretation import backward_selection
from sis_attr.testing import SumGridClassifier, write_cifar10_batches
from tests._scripts import load_script

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    return load_script(EXAMPLES / "reproduce_mitigation_input_dropout.py")


def test_paired_difference_on_hand_checked_sis(script: ModuleType) -> None:
    # SumGridClassifier: SIS at 0.9 of [[1, 2], [0.5, -1]] has 2 of 4 pixels, of an all-ones image 3 of 4
    small = backward_selection(
        SumGridClassifier(), torch.tensor([[[[1.0, 2.0], [0.5, -1.0]]]] * 2), show_progress=False
    )
    large = backward_selection(SumGridClassifier(), torch.ones(2, 1, 2, 2), show_progress=False)
    assert small.sis_sizes(0.9).tolist() == [2.0, 2.0] and large.sis_sizes(0.9).tolist() == [3.0, 3.0]
    grew = script.paired_difference(small, large, [0.9])["0.9"]
    assert grew["n"] == 2 and grew["mean"] == pytest.approx(0.25) and grew["ratio_of_means"] == pytest.approx(1.5)
    assert grew["verdict"] == "larger"
    assert script.paired_difference(large, small, [0.9])["0.9"]["verdict"] == "smaller"
    assert script.paired_difference(small, small, [0.9])["0.9"]["verdict"] == "no significant difference"
    # no image reaches 0.999 with the first image's confidence: nothing to compare
    assert script.paired_difference(small, large, [0.9999])["0.9999"]["verdict"] == "too few images"


def test_script_trains_caches_and_writes_the_results(script: ModuleType, tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    data = tmp_path / "cifar"
    write_cifar10_batches(
        data,
        torch.randint(0, 256, (16, 3, 32, 32), generator=gen, dtype=torch.uint8),
        torch.arange(16) % 10,
        split="train",
    )
    write_cifar10_batches(
        data, torch.randint(0, 256, (3, 3, 32, 32), generator=gen, dtype=torch.uint8), torch.arange(3), split="test"
    )
    out = tmp_path / "dropout.json"
    argv = [
        "--data-dir",
        str(data),
        "--n-train",
        "16",
        "--epochs",
        "1",
        "--n-test",
        "1",
        "--k",
        "0.25",  # large gradient steps: a second per selection (the default k="auto" is tested elsewhere)
        "--thresholds",
        "0.3",
        "0.5",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    assert script.main(argv) == 0
    first = json.loads(out.read_text())
    assert first["command"].endswith(" ".join(argv)) and first["models"] == ["plain", "input dropout"]
    assert first["images"] == {"count": 1, "requested": 1, "source": "lossless", "accuracy_count": 3}
    per_model = first["training"]["per_model"]
    assert [per_model[m]["input_dropout"] for m in first["models"]] == [0.0, 0.2]
    assert not any(r["from_cache"] for r in per_model.values())
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.pt")) == [
        "resnet20_drop0.2_n16_e1_aug_s0.pt",
        "resnet20_plain_n16_e1_aug_s0.pt",
    ]
    assert set(first["curves"]["models"]) == {"plain", "input dropout"}
    assert set(first["paired_sis_difference"]) == {"0.3", "0.5"}
    for name in first["models"]:
        assert set(first["subset_accuracy"][name]) >= {"full", "backselect", "random"}
    # a rerun trains nothing: the weights come from the cache, so every number is the same
    assert script.main(argv) == 0
    again = json.loads(out.read_text())
    assert all(r["from_cache"] for r in again["training"]["per_model"].values())
    for key in ("accuracy", "curves", "paired_sis_difference", "subset_accuracy", "mean_confidence"):
        assert again[key] == first[key], key


def test_script_exits_cleanly_without_data(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main(["--data-dir", str(tmp_path / "missing")]) == 0
    assert "Nothing to reproduce" in capsys.readouterr().out


def _result(verdicts: dict[str, str], cost: float) -> dict[str, object]:
    """A result file as the script writes it, with chosen verdicts and accuracy difference."""
    curve = {"mean_fraction": [0.01, None], "ci_low": [0.008, None], "ci_high": [0.012, None], "n_images": [9, 0]}
    return {
        "command": "python examples/reproduce_mitigation_input_dropout.py --n-test 9",
        "models": ["plain", "input dropout"],
        "training": {
            "images": 4660,
            "source": "lossless",
            "epochs": 7,
            "seed": 0,
            "augmentation": "random crop (padding 4) and horizontal flip",
            "input_dropout": 0.2,
            "per_model": {"plain": {"train_seconds": 100.0}, "input dropout": {"train_seconds": 110.0}},
        },
        "images": {"count": 9, "requested": 9, "source": "lossless", "accuracy_count": 846},
        "selection": {"method": "gradient", "k": "auto", "threshold": 0.9},
        "hardware": "test CPU",
        "paper": {"claim": "Input dropout makes SIS larger", "keep_prob": 0.8},
        "accuracy": {
            "all_test_images": {"plain": 0.6123, "input dropout": 0.5987},
            "sis_images": {"plain": 0.5, "input dropout": 0.25},
            "dropout_at_test": 0.4321,
            "difference_all_test_images": {"n": 846, "mean": cost, "ci95": 0.01},
        },
        "mean_confidence": {"plain": 0.8, "input dropout": 0.7},
        "curves": {"thresholds": [0.5, 0.99], "models": {"plain": curve, "input dropout": curve}},
        "paired_sis_difference": {
            t: {"n": 9, "mean": 0.002, "ci95": 0.001, "ratio_of_means": 1.25, "verdict": v} for t, v in verdicts.items()
        },
        "subset_accuracy": {
            "plain": {"full": 0.5, "backselect": 0.4444, "random": 0.1111},
            "input dropout": {"full": 0.25, "backselect": 0.3333, "random": 0.2222},
        },
        "wall_seconds": 50.0,
        "compute_seconds": 410.0,
    }


def test_reproduction_page_section_reads_the_result_file(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_reproduction_page", EXAMPLES.parent / "docs" / "scripts" / "make_reproduction_page.py"
    )
    assert spec is not None and spec.loader is not None
    page_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page_script)
    assert "Not run yet: no ``examples/results/mitigation_input_dropout.json``" in page_script.render(tmp_path)

    result = _result({"0.5": "larger", "0.99": "too few images"}, cost=-0.05)
    (tmp_path / "mitigation_input_dropout.json").write_text(json.dumps(result))
    page = page_script.render(tmp_path)
    section = page[page.index("Mitigation: input dropout") :]
    for text in (
        result["command"],
        "Input dropout makes SIS larger",
        "61.23",  # accuracies on the 846 images
        "59.87",
        "43.21%",  # with dropout on at test time
        "44.44",  # 5% BS subsets
        "first 4,660 lossless training images",
        "for 7 epochs",
        "training took 210 s and backward selection 200 s",
        "1.00 [0.80, 1.20] (n=9)",
        "+0.20 ± 0.10 (n=9)",
        "SIS grew: at every threshold with enough images (0.5)",
        "At 0.99 too few images have an SIS under both models",
        "input dropout lost 5.00 ± 1.00 points",
    ):
        assert text in section, text
    (tmp_path / "mitigation_input_dropout.json").write_text(
        json.dumps(_result({"0.5": "smaller", "0.99": "no significant difference"}, cost=0.001))
    )
    section = page_script.render(tmp_path)
    assert "SIS did not grow: they are significantly smaller at 0.5" in section
    assert "No significant accuracy cost: the difference is +0.10 ± 1.00 points" in section
    (tmp_path / "mitigation_input_dropout.json").write_text(
        json.dumps(_result({"0.5": "larger", "0.99": "no significant difference"}, cost=-0.001))
    )
    assert "but not at 0.99 (no significant difference): partial support" in page_script.render(tmp_path)
    drawn = page_script._draw_input_dropout(result, tmp_path)
    assert drawn.name == "mitigation_input_dropout.png" and drawn.stat().st_size > 1000
