"""Out-of-distribution test sets: CIFAR-10.1 (the official ``.npy`` pair) and CIFAR-10-C (the official folder).

Neither image set is in ``../shared/data`` (only the CIFAR-10.1 v6 labels are), so every test writes small files
in the official formats with ``numpy.save`` directly (an independent writer) or with the writers of
:mod:`sis_attr.testing`, and loads them back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sis_attr.datasets import (
    CIFAR10_C_CORRUPTIONS,
    CIFAR10_CLASSES,
    load_cifar10_1,
    load_cifar10_batches,
    load_cifar10_c,
)
from sis_attr.exceptions import DatasetNotFoundError, SISTypeError, SISValueError
from sis_attr.testing import write_cifar10_1, write_cifar10_batches, write_cifar10_c
from tests.conftest import shared_path


def _hwc(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ CIFAR-10.1
def test_cifar10_1_official_layout_loads_like_cifar10_batches(tmp_path: Path) -> None:
    """Files written with plain numpy in the official layout give the tensors of load_cifar10_batches."""
    data = _hwc(7)
    labels = np.array([0, 1, 2, 3, 4, 5, 9], dtype=np.int32)  # int32, as the official labels file
    np.save(tmp_path / "cifar10.1_v6_data.npy", data)
    np.save(tmp_path / "cifar10.1_v6_labels.npy", labels)
    images, lab, names = load_cifar10_1(tmp_path)
    # the same images through the CIFAR-10 python batches: the one convention of the package
    write_cifar10_batches(tmp_path / "batches", torch.from_numpy(data).permute(0, 3, 1, 2), torch.from_numpy(labels))
    ref_images, ref_labels, ref_names = load_cifar10_batches(tmp_path / "batches")
    assert images.dtype == torch.float32 and images.shape == (7, 3, 32, 32)
    assert torch.equal(images, ref_images) and torch.equal(lab, ref_labels) and names == ref_names == CIFAR10_CLASSES
    assert lab.dtype == torch.int64
    # channel order: red plane first, rows then columns
    assert images[2, 0, 5, 7].item() == pytest.approx(data[2, 5, 7, 0] / 255)
    assert images[2, 2, 31, 0].item() == pytest.approx(data[2, 31, 0, 2] / 255)


def test_cifar10_1_writer_round_trip_dtype_limit_and_version(tmp_path: Path) -> None:
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([9, 8, 7, 6, 5])
    files = write_cifar10_1(tmp_path, x, y, version="v4")
    assert [f.name for f in files] == ["cifar10.1_v4_data.npy", "cifar10.1_v4_labels.npy"]
    raw = np.load(files[0])
    assert raw.dtype == np.uint8 and raw.shape == (5, 32, 32, 3) and np.load(files[1]).dtype == np.int32
    images, labels, _ = load_cifar10_1(tmp_path, version="v4", dtype=torch.uint8)
    assert torch.equal(images, x) and torch.equal(labels, y)
    first, first_labels, _ = load_cifar10_1(tmp_path, version="v4", limit=2, dtype=torch.float64)
    assert first.dtype == torch.float64 and torch.equal(first, x[:2].double() / 255)
    assert first_labels.tolist() == [9, 8]
    assert load_cifar10_1(tmp_path, version="v4", limit=50).images.shape[0] == 5  # a limit past the end keeps all
    with pytest.raises(DatasetNotFoundError, match=r"cifar10.1_v6_data.npy"):
        load_cifar10_1(tmp_path)  # v6 not written here


def test_cifar10_1_missing_files_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="must be an existing directory"):
        load_cifar10_1(tmp_path / "nowhere")
    np.save(tmp_path / "cifar10.1_v6_labels.npy", np.zeros(3, dtype=np.int32))
    with pytest.raises(DatasetNotFoundError, match=r"Missing: \['cifar10.1_v6_data.npy'\].*modestyachts/CIFAR-10.1"):
        load_cifar10_1(tmp_path)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


@pytest.mark.real_data
def test_cifar10_1_shared_folder_holds_only_the_labels() -> None:
    """../shared/data/cifar10.1 holds the official v6 labels but not the images: a clear error, not a crash."""
    folder = shared_path("cifar10.1", "cifar10.1_v6_labels.npy").parent
    if (folder / "cifar10.1_v6_data.npy").exists():
        pytest.skip("the CIFAR-10.1 images are present here")
    with pytest.raises(DatasetNotFoundError, match=r"Missing: \['cifar10.1_v6_data.npy'\]"):
        load_cifar10_1(folder)


@pytest.mark.parametrize(
    ("data", "labels", "match"),
    [
        (np.zeros((3, 32, 32, 3), np.float32), np.zeros(3, np.int64), r"uint8 array of shape \(N, 32, 32, 3\)"),
        (np.zeros((3, 3, 32, 32), np.uint8), np.zeros(3, np.int64), r"Got dtype uint8 and shape \(3, 3, 32, 32\)"),
        (np.zeros((3, 32, 32, 3), np.uint8), np.zeros(4, np.int64), r"3 integer labels \(shape \(3,\)"),
        (np.zeros((3, 32, 32, 3), np.uint8), np.zeros(3, np.float32), "integer labels"),
        (np.zeros((3, 32, 32, 3), np.uint8), np.array([0, 10, 1]), r"labels outside 0..9.*max 10"),
        (np.zeros((3, 32, 32, 3), np.uint8), np.array([0, -1, 1]), r"labels outside 0..9.*min -1"),
    ],
)
def test_cifar10_1_malformed_files(tmp_path: Path, data: np.ndarray, labels: np.ndarray, match: str) -> None:
    np.save(tmp_path / "cifar10.1_v6_data.npy", data)
    np.save(tmp_path / "cifar10.1_v6_labels.npy", labels)
    with pytest.raises(SISValueError, match=match):
        load_cifar10_1(tmp_path)


def test_cifar10_1_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "cifar10.1_v6_data.npy").write_bytes(b"not a numpy file")
    np.save(tmp_path / "cifar10.1_v6_labels.npy", np.zeros(3, np.int64))
    with pytest.raises(SISValueError, match=r"could not read .*cifar10.1_v6_data.npy. as a .npy array"):
        load_cifar10_1(tmp_path)
    np.save(tmp_path / "cifar10.1_v6_data.npy", np.array([{"a": 1}], dtype=object))  # a pickle: never loaded
    with pytest.raises(SISValueError, match="could not read"):
        load_cifar10_1(tmp_path)
    full = _hwc(4)
    np.save(tmp_path / "cifar10.1_v6_data.npy", full)
    blob = (tmp_path / "cifar10.1_v6_data.npy").read_bytes()
    (tmp_path / "cifar10.1_v6_data.npy").write_bytes(blob[: len(blob) // 2])  # truncated download
    with pytest.raises(SISValueError, match="could not read"):
        load_cifar10_1(tmp_path)


def test_cifar10_1_parameter_validation(tmp_path: Path) -> None:
    write_cifar10_1(tmp_path, torch.zeros(2, 3, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(SISValueError, match="The `version` parameter of load_cifar10_1 must be 'v6' or 'v4'"):
        load_cifar10_1(tmp_path, version="v5")  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="The `limit` parameter of load_cifar10_1"):
        load_cifar10_1(tmp_path, limit=0)
    with pytest.raises(SISTypeError, match="The `dtype` parameter of load_cifar10_1"):
        load_cifar10_1(tmp_path, dtype=torch.int64)


# ------------------------------------------------------------------------------------------------ CIFAR-10-C
def _write_official_c(
    root: Path, n: int, corruptions: tuple[str, ...] = ("fog",)
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """An official-layout folder with plain numpy: ``n`` images per severity, labels repeated 5 times (uint8)."""
    root.mkdir(parents=True, exist_ok=True)
    labels = np.random.default_rng(7).integers(0, 10, size=n).astype(np.uint8)
    arrays = {}
    for i, name in enumerate(corruptions):
        arrays[name] = _hwc(5 * n, seed=10 + i)
        np.save(root / f"{name}.npy", arrays[name])
    np.save(root / "labels.npy", np.tile(labels, 5))
    return arrays, labels


def test_cifar10_c_severity_blocks(tmp_path: Path) -> None:
    n = 4
    arrays, labels = _write_official_c(tmp_path, n, ("fog", "snow"))
    for severity in range(1, 6):
        images, lab, names = load_cifar10_c(tmp_path, "snow", severity)
        block = arrays["snow"][(severity - 1) * n : severity * n]
        assert images.shape == (n, 3, 32, 32) and images.dtype == torch.float32 and names == CIFAR10_CLASSES
        assert torch.equal(images, torch.from_numpy(block).permute(0, 3, 1, 2).float() / 255)
        assert lab.dtype == torch.int64 and lab.tolist() == labels.tolist()
    # several severities: blocks in the order given; limit keeps the same first images of each severity
    images, lab, _ = load_cifar10_c(tmp_path, "fog", (5, 1), limit=3, dtype=torch.uint8)
    expected = np.concatenate([arrays["fog"][4 * n : 4 * n + 3], arrays["fog"][:3]])
    assert torch.equal(images, torch.from_numpy(expected).permute(0, 3, 1, 2))
    assert lab.tolist() == labels[:3].tolist() * 2
    every = load_cifar10_c(tmp_path, "fog", [1, 2, 3, 4, 5], dtype=torch.uint8)
    assert torch.equal(every.images.permute(0, 2, 3, 1), torch.from_numpy(arrays["fog"]))


def test_cifar10_c_writer_round_trip(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(10, 3, 32, 32, generator=gen)
    y = torch.tensor([3, 8])
    files = write_cifar10_c(tmp_path, {"gaussian_noise": x, "contrast": x.flip(0)}, y)
    assert [f.name for f in files] == ["gaussian_noise.npy", "contrast.npy", "labels.npy"]
    saved_labels = np.load(files[-1])
    assert saved_labels.dtype == np.uint8 and saved_labels.tolist() == [3, 8] * 5
    images, labels, _ = load_cifar10_c(tmp_path, "gaussian_noise", 2)
    assert torch.equal(images, (x[2:4] * 255).round() / 255) and labels.tolist() == [3, 8]
    assert torch.equal(load_cifar10_c(tmp_path, "contrast", 5).images, (x.flip(0)[8:] * 255).round() / 255)


def test_cifar10_c_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="must be an existing directory"):
        load_cifar10_c(tmp_path / "CIFAR-10-C", "fog", 1)
    _write_official_c(tmp_path, 2, ("fog", "snow"))
    with pytest.raises(DatasetNotFoundError, match=r"no frost.npy .*holds \['fog', 'snow'\].*zoom_blur"):
        load_cifar10_c(tmp_path, "frost", 1)
    (tmp_path / "labels.npy").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"expected labels\.npy beside fog\.npy"):
        load_cifar10_c(tmp_path, "fog", 1)


@pytest.mark.parametrize(
    ("rows", "labels_rows", "dtype", "match"),
    [
        (12, 12, np.uint8, r"5 equal blocks of images.*Got 12 rows"),
        (10, 2, np.uint8, r"10 integer labels"),
        (10, 10, np.float32, "integer labels"),
    ],
)
def test_cifar10_c_malformed_files(tmp_path: Path, rows: int, labels_rows: int, dtype: type, match: str) -> None:
    np.save(tmp_path / "fog.npy", _hwc(rows))
    np.save(tmp_path / "labels.npy", np.zeros(labels_rows, dtype=dtype))
    with pytest.raises(SISValueError, match=match):
        load_cifar10_c(tmp_path, "fog", 1)
    np.save(tmp_path / "fog.npy", np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(SISValueError, match=r"uint8 array of shape \(N, 32, 32, 3\)"):
        load_cifar10_c(tmp_path, "fog", 1)


def test_cifar10_c_parameter_validation(tmp_path: Path) -> None:
    _write_official_c(tmp_path, 2)
    for bad in (0, 6, [1, 7]):
        with pytest.raises(
            SISValueError, match=r"The `severity` parameter of load_cifar10_c must hold integers in 1..5"
        ):
            load_cifar10_c(tmp_path, "fog", bad)
    for bad_type in ("3", [], 2.0, True):
        with pytest.raises((SISTypeError, SISValueError), match="The `severity` parameter of load_cifar10_c"):
            load_cifar10_c(tmp_path, "fog", bad_type)  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="must not repeat a severity"):
        load_cifar10_c(tmp_path, "fog", [2, 2])
    for bad_name in ("labels", "../fog", "", "sub/fog"):
        with pytest.raises(SISValueError, match="The `corruption` parameter of load_cifar10_c"):
            load_cifar10_c(tmp_path, bad_name, 1)
    with pytest.raises(SISTypeError, match="The `corruption` parameter of load_cifar10_c must be a string"):
        load_cifar10_c(tmp_path, 3, 1)  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="The `limit` parameter of load_cifar10_c"):
        load_cifar10_c(tmp_path, "fog", 1, limit=-1)


def test_cifar10_c_corruption_names() -> None:
    assert len(CIFAR10_C_CORRUPTIONS) == 15 and len(set(CIFAR10_C_CORRUPTIONS)) == 15
    assert CIFAR10_C_CORRUPTIONS[0] == "gaussian_noise" and "jpeg_compression" in CIFAR10_C_CORRUPTIONS


def test_writers_validate(tmp_path: Path) -> None:
    with pytest.raises(
        SISValueError, match=r"The `images` parameter of write_cifar10_1 must have shape \(N, 3, 32, 32\)"
    ):
        write_cifar10_1(tmp_path, torch.zeros(2, 32, 32, 3), torch.tensor([0, 1]))
    with pytest.raises(SISValueError, match=r"uint8 or floating point in \[0, 1\]"):
        write_cifar10_1(tmp_path, torch.full((1, 3, 32, 32), 2.0), torch.tensor([0]))
    with pytest.raises(SISValueError, match=r"The `labels` parameter of write_cifar10_1 must lie in 0..9"):
        write_cifar10_1(tmp_path, torch.zeros(1, 3, 32, 32), torch.tensor([10]))
    with pytest.raises(SISValueError, match=r"5 \* 2 = 10 images for 'fog'"):
        write_cifar10_c(tmp_path, {"fog": torch.zeros(4, 3, 32, 32)}, torch.tensor([0, 1]))
    with pytest.raises(SISValueError, match="plain file names as keys"):
        write_cifar10_c(tmp_path, {"labels": torch.zeros(10, 3, 32, 32)}, torch.tensor([0, 1]))
    with pytest.raises(SISTypeError, match="non-empty mapping"):
        write_cifar10_c(tmp_path, {}, torch.tensor([0, 1]))
    assert not list(tmp_path.iterdir())  # nothing written by a failed call
