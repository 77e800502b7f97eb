"""``sis-attr study make`` and ``sis-attr study score``: a study from a model file and an .npz, scored end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sis_attr.cli import main
from sis_attr.overinterpretation import Study

FACTORY = """
from torch import nn


class Brightest(nn.Module):
    # class = the brightest colour channel, confidently
    def forward(self, x):
        return 40.0 * x.mean(dim=(2, 3))


def build():
    return Brightest()
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study_cli")
    (root / "factory.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    images = (rng.random((60, 6, 6, 3)) * 120).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, :, :, c] += 120
    np.savez(root / "data.npz", X=images, y=labels)
    return root


def make(root: Path, *extra: str) -> int:
    args = ["study", "make", "--model", str(root / "factory.py") + ":build", "--data", str(root / "data.npz")]
    return main([*args, "--per-class", "3", "--threshold", "0.9", "--no-progress", *extra])


def answer_file(path: Path, study: Study, choices: list[int], session: str) -> Path:
    payload = {
        "format": "sis-attr-study-answers",
        "format_version": 1,
        "study_id": study.study_id,
        "session": session,
        "participant": "",
        "answers": dict(zip(study.item_ids, choices, strict=True)),
    }
    path.write_text(json.dumps(payload))
    return path


def test_make_then_score(inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study"
    assert make(inputs, "--out", str(out), "--fractions", "0.1", "0.5", "--title", "Colours") == 0
    printed = capsys.readouterr().out
    key = tmp_path / "study-key.json"
    assert sorted(p.name for p in out.iterdir()) == ["index.html"] and key.is_file()
    assert f"sis-attr study score {key}" in printed and "Keep" in printed
    study = Study.from_key(key)
    assert study.fractions == (0.1, 0.5, 1.0) and study.title == "Colours" and study.n_images == 9

    right = answer_file(tmp_path / "a.json", study, study.item_labels.tolist(), "s1")
    first = answer_file(tmp_path / "b.json", study, [study.classes[0]] * study.n_items, "s2")
    assert main(["study", "score", str(key), str(right), str(first), "--out", str(tmp_path / "scored")]) == 0
    printed = capsys.readouterr().out
    assert "2 participant(s), 3 classes" in printed and "66.7% ± 47.1%" in printed
    assert (tmp_path / "scored" / "index.html").is_file() and (tmp_path / "scored" / "human_accuracy.png").is_file()


def test_score_errors_are_one_line(inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make(inputs, "--out", str(tmp_path / "s"), "--no-control", "--fractions", "0.5") == 0
    study = Study.from_key(tmp_path / "s-key.json")
    capsys.readouterr()
    one = answer_file(tmp_path / "a.json", study, study.item_labels.tolist(), "s1")
    assert main(["study", "score", str(study.key), str(one), str(one)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sis-attr study: error: score_study refused 1 of 2") and "given twice" in err
    assert len(err.splitlines()) == 1
    assert main(["study", "score", str(study.key), str(one), str(one), "--skip-invalid"]) == 0
    assert "warning" in capsys.readouterr().err
    assert main(["study", "score", str(tmp_path / "nope.json"), str(one)]) == 2
    assert "the key" in capsys.readouterr().err


def test_make_errors(inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make(inputs, "--out", str(tmp_path / "s"), "--method", "exact", "--k", "4") == 2
    assert "--k and --shortlist apply to --method gradient only" in capsys.readouterr().err
    assert make(inputs, "--out", str(tmp_path / "s"), "--per-class", "40") == 2
    assert "needs 40 images per class" in capsys.readouterr().err
    assert make(inputs, "--out", str(tmp_path / "s"), "--mean", "0.5") == 2
    assert "--mean and --std go together" in capsys.readouterr().err
    assert make(inputs, "--out", str(tmp_path / "s")) == 0
    assert make(inputs, "--out", str(tmp_path / "s")) == 2  # the key exists
    assert "will not overwrite the study key" in capsys.readouterr().err
    assert make(inputs, "--out", str(tmp_path / "s"), "--overwrite") == 0


def test_gradient_method_and_normalisation(inputs: Path, tmp_path: Path) -> None:
    args = ("--method", "gradient", "--k", "2", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25")
    assert make(inputs, "--out", str(tmp_path / "s"), *args) == 0
    study = Study.from_key(tmp_path / "s-key.json")
    assert study.settings["method"] == "gradient" and study.model_accuracy[-1] == 1.0


def test_help_lists_the_study(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "study" in capsys.readouterr().out
    assert main(["study", "make", "--help"]) == 0
    assert "--per-class" in capsys.readouterr().out
