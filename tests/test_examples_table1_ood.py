"""examples/reproduce_table1_cifar10.py: Table 1's CIFAR-10.1 and CIFAR-10-C columns on files in the official formats.

Neither image set is in ``../shared/data``: the test writes a few images in the official layouts with the writers
of :mod:`sis_attr.testing` (themselves tested against plain ``numpy.save`` files in ``tests/test_datasets_ood.py``)
and runs the script on them with the real pretrained ResNet20 (skipped without ``../shared/data``). Without the
options the JSON has no ``out_of_distribution`` key; a missing or malformed folder is an error naming the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from sis_attr.datasets import load_cifar10_batches
from sis_attr.testing import write_cifar10_1, write_cifar10_c
from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table1() -> ModuleType:
    module = load_script(ROOT / "examples" / "reproduce_table1_cifar10.py")
    return module


def _real_images(shared_data: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A few real test images as uint8 (so the model's accuracy on them means something), with their labels."""
    images, labels, _ = load_cifar10_batches(
        shared_data / "cifar10" / "cifar-10-batches-py-subset", "test", limit=n, dtype=torch.uint8
    )
    return images, labels


def test_ood_sets_are_drawn_per_corruption_and_reproducibly(table1: ModuleType, tmp_path: Path) -> None:
    rng = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=rng)
    write_cifar10_1(tmp_path / "c101", x, torch.tensor([0, 1, 2, 3, 4, 5]))
    # severity s of every image has all bytes equal to 10 * s + image index: the draw is readable from the pixels
    fog = torch.stack([torch.full((3, 32, 32), 10 * s + i, dtype=torch.uint8) for s in range(1, 6) for i in range(3)])
    write_cifar10_c(tmp_path / "c10c", {"fog": fog, "snow": fog + 100}, torch.tensor([7, 8, 9]))
    argv = ["--cifar10-1", str(tmp_path / "c101"), "--cifar10-c", str(tmp_path / "c10c")]
    args = table1.parse_args([*argv, "--corruptions", "fog", "snow", "--severity", "2", "5", "--n-ood", "3"])
    sets = table1.load_out_of_distribution(args)
    images, labels, info = sets["cifar10_1"]
    assert len(images) == 3 and info["of"] == 6
    for image, label in zip(images, labels, strict=True):  # each drawn image comes with its own label
        assert torch.equal((image * 255).round().to(torch.uint8), x[int(label)])
    images, labels, info = sets["cifar10_c"]
    assert len(images) == 3 and [len(v) for v in info["drawn"].values()] == [2, 1]  # 3 images over 2 corruptions
    values = (images[:, 0, 0, 0] * 255).round().long().tolist()
    for value, label, (severity, index) in zip(
        values, labels.tolist(), info["drawn"]["fog"] + info["drawn"]["snow"], strict=True
    ):
        assert severity in (2, 5) and value % 100 == 10 * severity + index and label == 7 + index
    assert values[2] >= 100  # the last image is from snow
    again = table1.load_out_of_distribution(args)
    assert torch.equal(again["cifar10_c"][0], images)  # seeded: the same draw
    assert table1.load_out_of_distribution(table1.parse_args([])) == {}


def test_missing_or_malformed_folders_name_the_expected_files(table1: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cifar10\.1_v6_data\.npy and cifar10\.1_v6_labels\.npy"):
        table1.load_out_of_distribution(table1.parse_args(["--cifar10-1", str(tmp_path / "nowhere")]))
    (tmp_path / "c10c").mkdir()
    np.save(tmp_path / "c10c" / "fog.npy", np.zeros((5, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match=r"found no gaussian_noise\.npy.*holds \['fog'\]"):
        table1.load_out_of_distribution(table1.parse_args(["--cifar10-c", str(tmp_path / "c10c")]))  # all 15
    with pytest.raises(FileNotFoundError, match=r"labels\.npy and <corruption>\.npy.*labels\.npy.*missing"):
        table1.load_out_of_distribution(
            table1.parse_args(["--cifar10-c", str(tmp_path / "c10c"), "--corruptions", "fog"])
        )
    np.save(tmp_path / "c10c" / "labels.npy", np.zeros(5, dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match=r"snow\.npy.*holds \['fog'\]"):
        table1.load_out_of_distribution(
            table1.parse_args(["--cifar10-c", str(tmp_path / "c10c"), "--corruptions", "fog", "snow"])
        )
    np.save(tmp_path / "c10c" / "fog.npy", np.zeros((5, 32, 32), dtype=np.uint8))  # not (N, 32, 32, 3)
    with pytest.raises(ValueError, match=r"uint8 array of shape \(N, 32, 32, 3\)"):
        table1.load_out_of_distribution(
            table1.parse_args(["--cifar10-c", str(tmp_path / "c10c"), "--corruptions", "fog"])
        )


@pytest.mark.real_data
def test_script_adds_the_ood_columns_only_when_asked(
    table1: ModuleType, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = _real_images(shared_data, 3)
    write_cifar10_1(tmp_path / "c101", x, y)
    write_cifar10_c(tmp_path / "c10c", {"fog": x.repeat(5, 1, 1, 1)}, y)
    out = tmp_path / "t1.json"
    base = ["--n-test", "1", "--checkpoint-dir", str(tmp_path / "ck"), "--threads", "1", "--out", str(out)]
    assert table1.main(base) == 0
    assert "out_of_distribution" not in json.loads(out.read_text())
    ood = ["--cifar10-1", str(tmp_path / "c101"), "--cifar10-c", str(tmp_path / "c10c"), "--corruptions", "fog"]
    assert table1.main([*base, *ood, "--n-ood", "2"]) == 0
    result = json.loads(out.read_text())["out_of_distribution"]
    assert set(result) == {"cifar10_1", "cifar10_c"}
    assert result["cifar10_1"]["set"] == "CIFAR-10.1 v6" and result["cifar10_c"]["per_corruption"] == {"fog": 2}
    for entry in result.values():
        assert entry["images"]["count"] == 2 and entry["paper"]["backselect"] > 0
        assert all(0.0 <= entry["evaluate_on"][k] <= 1.0 for k in ("full", "backselect", "random"))
        assert entry["evaluate_on"]["full"] in (0.0, 0.5, 1.0)
    # the selections are resumable like the test set's, one folder per drawn sample
    folders = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert folders[0].startswith("resnet20_cifar10_1_") and folders[1].startswith("resnet20_cifar10_c_")
    assert folders[2] == "resnet20_test"
    capsys.readouterr()
    assert table1.main([*base, "--cifar10-1", str(tmp_path / "missing")]) == 2
    assert "cifar10.1_v6_data.npy" in capsys.readouterr().err
