"""Tests for :mod:`sis_attr.datasets`: loaders against independent readings of the same data, and round trips."""

from __future__ import annotations

import pickle
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sis_attr.datasets import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN_STD_AKAMASTER,
    SHARED_DATA_ENV_VAR,
    LabelledImages,
    TensorImageDataset,
    load_cifar10_batches,
    load_digits_images,
    load_image_folder,
    load_npz_images,
    normalize,
    shared_data_dir,
)
from sis_attr.exceptions import DatasetNotFoundError, SISError, SISTypeError, SISValueError
from sis_attr.testing import write_cifar10_batches
from tests.conftest import shared_path

_shared = shared_path


def _subset_dir() -> Path:
    return _shared("cifar10", "cifar-10-batches-py-subset")


# --------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches on the real files
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_cifar_test_batch_matches_lossless_npz() -> None:
    npz = np.load(_shared("cifar10", "cifar10_test_first846_lossless.npz"))
    images, labels, names = load_cifar10_batches(_subset_dir(), "test", dtype=torch.uint8)
    assert images.dtype == torch.uint8 and images.shape == (846, 3, 32, 32)
    # Independent reading: the npz holds the same bytes in HWC order.
    assert torch.equal(images, torch.from_numpy(npz["X"]).permute(0, 3, 1, 2))
    assert labels.dtype == torch.int64 and torch.equal(labels, torch.from_numpy(npz["y"]))
    assert names == CIFAR10_CLASSES

    floats = load_cifar10_batches(_subset_dir(), "test")
    assert floats.images.dtype == torch.float32
    assert torch.equal(floats.images, images.float() / 255)
    assert 0.0 <= float(floats.images.min()) and float(floats.images.max()) <= 1.0


@pytest.mark.real_data
def test_cifar_train_batches_match_lossless_npz_and_official_labels() -> None:
    npz = np.load(_shared("cifar10", "cifar10_train_prefix_lossless.npz"))
    official = np.load(_shared("cifar10", "cifar10_labels.npz"))
    images, labels, _ = load_cifar10_batches(_subset_dir(), "train", dtype=torch.uint8)
    assert images.shape == (4660, 3, 32, 32)
    assert torch.equal(images, torch.from_numpy(npz["X"]).permute(0, 3, 1, 2))
    assert torch.equal(labels, torch.from_numpy(npz["y"]))
    assert np.array_equal(labels.numpy(), official["train_labels"][npz["index"]])


@pytest.mark.real_data
def test_cifar_limit_reads_a_prefix_across_batches() -> None:
    full = load_cifar10_batches(_subset_dir(), "train", dtype=torch.uint8)
    # 1000 > 932 images in data_batch_1: the prefix spans two files.
    part = load_cifar10_batches(_subset_dir(), "train", limit=1000, dtype=torch.uint8)
    assert torch.equal(part.images, full.images[:1000]) and torch.equal(part.labels, full.labels[:1000])
    big = load_cifar10_batches(_subset_dir(), "test", limit=10**6)
    assert big.images.shape[0] == 846


@pytest.mark.real_data
def test_real_npz_loader_agrees_with_batch_loader() -> None:
    from_npz = load_npz_images(_shared("cifar10", "cifar10_test_first846_lossless.npz"), class_names=CIFAR10_CLASSES)
    from_batches = load_cifar10_batches(_subset_dir(), "test")
    assert torch.equal(from_npz.images, from_batches.images)
    assert torch.equal(from_npz.labels, from_batches.labels)
    assert from_npz.class_names == from_batches.class_names


# --------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches: round trips and errors (no shared data needed)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["test", "train"])
def test_write_then_load_round_trip(tmp_path: Path, split: str) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (13, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (13,), generator=gen)
    write_cifar10_batches(tmp_path, images, labels, split=split)  # type: ignore[arg-type]
    loaded = load_cifar10_batches(tmp_path, split, dtype=torch.uint8)  # type: ignore[arg-type]
    assert isinstance(loaded, LabelledImages)
    assert torch.equal(loaded.images, images) and torch.equal(loaded.labels, labels)
    assert loaded.class_names == CIFAR10_CLASSES
    as_double = load_cifar10_batches(tmp_path, split, dtype=torch.float64)  # type: ignore[arg-type]
    assert as_double.images.dtype == torch.float64 and torch.equal(as_double.images, images.double() / 255)


def test_written_files_are_in_the_official_python2_format(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    write_cifar10_batches(tmp_path, images, torch.tensor([0, 1, 2, 3]), class_names=["a", "b", "c", "d"])
    with (tmp_path / "test_batch").open("rb") as fh:
        as_bytes = pickle.load(fh, encoding="bytes")
    with (tmp_path / "test_batch").open("rb") as fh:
        as_latin1 = pickle.load(fh, encoding="latin1")  # how torchvision reads it
    assert set(as_bytes) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert set(as_latin1) == {"data", "labels", "batch_label", "filenames"}
    # Rows are channel-major: the red plane, then green, then blue.
    assert np.array_equal(as_bytes[b"data"], images.numpy().reshape(4, 3072))
    assert as_bytes[b"labels"] == [0, 1, 2, 3]
    with (tmp_path / "batches.meta").open("rb") as fh:
        assert pickle.load(fh, encoding="bytes")[b"label_names"] == [b"a", b"b", b"c", b"d"]


def test_numpy1_pickles_load_without_deprecation_warnings(tmp_path: Path) -> None:
    """The official batches were pickled by NumPy 1 and name ``numpy.core.multiarray``."""
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    write_cifar10_batches(tmp_path, images, torch.tensor([1, 2, 3]))
    raw = (tmp_path / "test_batch").read_bytes()
    old_style = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert old_style != raw
    (tmp_path / "test_batch").write_bytes(old_style)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_cifar10_batches(tmp_path, dtype=torch.uint8)
    assert torch.equal(loaded.images, images)


def test_float_images_are_rounded_when_written(tmp_path: Path) -> None:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    write_cifar10_batches(tmp_path, images, torch.zeros(3, dtype=torch.long))
    loaded = load_cifar10_batches(tmp_path, dtype=torch.uint8)
    assert torch.equal(loaded.images, (images * 255).round().to(torch.uint8))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 12), seed=st.integers(0, 2**16), limit=st.integers(1, 15))
def test_round_trip_property(n: int, seed: int, limit: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10_batches(tmp, images, labels, split="train")
        loaded = load_cifar10_batches(tmp, "train", limit=limit, dtype=torch.uint8)
    assert torch.equal(loaded.images, images[:limit]) and torch.equal(loaded.labels, labels[:limit])


def test_missing_directory_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist") as info:
        load_cifar10_batches(tmp_path / "nope")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, SISError)


def test_directory_without_batches_names_the_missing_files(tmp_path: Path) -> None:
    (tmp_path / "test_batch").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"batches\.meta"):
        load_cifar10_batches(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar10_batches(tmp_path, "train")


def test_file_that_is_not_a_pickle_is_a_value_error(tmp_path: Path) -> None:
    write_cifar10_batches(tmp_path, torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    (tmp_path / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(SISValueError, match="not a CIFAR-10 python batch"):
        load_cifar10_batches(tmp_path)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_pickles_with_foreign_globals_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_cifar10_batches(tmp_path, torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    with (tmp_path / "test_batch").open("wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, fh, protocol=2)
    with pytest.raises(SISValueError, match="not allowed"):
        load_cifar10_batches(tmp_path)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({b"labels": [0]}, "b'data' and b'labels'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 integers"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "outside 0..9"),
        ([1, 2, 3], "hold a dict"),
    ],
)
def test_malformed_batches_are_value_errors(tmp_path: Path, batch: object, match: str) -> None:
    write_cifar10_batches(tmp_path, torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    with (tmp_path / "test_batch").open("wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    with pytest.raises(ValueError, match=match):
        load_cifar10_batches(tmp_path)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(SISValueError, match="The `split` parameter of load_cifar10_batches must be 'test' or 'train'"):
        load_cifar10_batches(tmp_path, "valid")  # type: ignore[arg-type]
    with pytest.raises(
        SISValueError,
        match=r"The `limit` parameter of load_cifar10_batches must be None or a positive integer\. Got 0 instead\.",
    ):
        load_cifar10_batches(tmp_path, limit=0)
    with pytest.raises(SISTypeError, match="`dtype`"):
        load_cifar10_batches(tmp_path, dtype=torch.int32)
    with pytest.raises(SISValueError, match=r"\(N, 3, 32, 32\)"):
        write_cifar10_batches(tmp_path, torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(SISValueError, match=r"in \[0, 1\]"):
        write_cifar10_batches(tmp_path, torch.full((1, 3, 32, 32), 2.0), torch.zeros(1, dtype=torch.long))
    with pytest.raises(SISValueError, match=r"0\.\.9"):
        write_cifar10_batches(tmp_path, torch.zeros(1, 3, 32, 32), torch.tensor([10]))


# --------------------------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------------------------


def test_npz_uint8_hwc_becomes_float_nchw(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    y = np.array([0, 2, 1, 2, 0])
    np.savez(tmp_path / "d.npz", X=x, y=y)
    images, labels, names = load_npz_images(tmp_path / "d.npz")
    assert images.dtype == torch.float32 and images.shape == (5, 3, 6, 7)
    for n, c, h, w in [(0, 0, 0, 0), (4, 2, 5, 6), (2, 1, 3, 4)]:
        assert images[n, c, h, w].item() == pytest.approx(x[n, h, w, c] / 255)
    assert labels.dtype == torch.int64 and labels.tolist() == y.tolist()
    assert names == ("0", "1", "2")


def test_npz_float_nchw_kept_and_other_rules(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((4, 2, 3, 3))  # float64 NCHW in [0, 1]
    np.savez(tmp_path / "f.npz", images=x, targets=np.arange(4), class_names=np.array(["a", "b", "c", "d"]))
    images, labels, names = load_npz_images(tmp_path / "f.npz", "images", "targets")
    assert labels.tolist() == [0, 1, 2, 3]
    assert images.dtype == torch.float32 and torch.allclose(images, torch.from_numpy(x).float())
    assert names == ("a", "b", "c", "d")

    grey = np.zeros((3, 5, 5), np.uint8)
    np.savez(tmp_path / "g.npz", X=grey, y=np.zeros(3, np.int32))
    assert load_npz_images(tmp_path / "g.npz").images.shape == (3, 1, 5, 5)

    nchw_bytes = np.zeros((2, 3, 4, 5), np.uint8)
    np.savez(tmp_path / "n.npz", X=nchw_bytes, y=np.zeros(2, np.int64))
    assert load_npz_images(tmp_path / "n.npz", layout="NCHW").images.shape == (2, 3, 4, 5)
    assert load_npz_images(tmp_path / "n.npz").images.shape == (2, 5, 3, 4)  # auto: uint8 is HWC


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", X=np.full((2, 1, 2, 2), 3.0), y=np.zeros(2, np.int64))
    with pytest.raises(SISValueError, match=r"lie in \[0, 1\]"):
        load_npz_images(tmp_path / "a.npz")
    with pytest.raises(SISValueError, match=r"holds \['X', 'y'\]"):
        load_npz_images(tmp_path / "a.npz", images_key="images")
    np.savez(tmp_path / "b.npz", X=np.zeros((2, 2, 2, 3), np.uint8), y=np.zeros(3, np.int64))
    with pytest.raises(SISValueError, match="2 integers"):
        load_npz_images(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", X=np.zeros((2, 2, 2, 3), np.uint8), y=np.zeros(2, np.float32))
    with pytest.raises(SISValueError, match="integers"):
        load_npz_images(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 2, 2, 3), np.uint8), y=np.array([0, 3]))
    with pytest.raises(SISValueError, match="name every label"):
        load_npz_images(tmp_path / "d.npz", class_names=["a", "b"])
    with pytest.raises(FileNotFoundError):
        load_npz_images(tmp_path / "missing.npz")


# --------------------------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------------------------


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def test_image_folder_reads_sorted_classes_and_exact_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for cls in ["zebra", "ant", "bee"]:
        (tmp_path / cls).mkdir()
        for name in ["b.png", "a.png"]:
            arr = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
            _write_png(tmp_path / cls / name, arr)
            arrays[(cls, name)] = arr
    (tmp_path / "ant" / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    images, labels, names = load_image_folder(tmp_path)
    assert names == ("ant", "bee", "zebra")
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert images.shape == (6, 3, 4, 5)
    expected = [arrays[(cls, name)] for cls in names for name in ["a.png", "b.png"]]
    assert torch.equal((images * 255).round().to(torch.uint8), torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2))


def test_image_folder_grey_and_errors(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    _write_png(tmp_path / "c" / "0.png", np.full((3, 3, 3), 255, np.uint8))
    grey = load_image_folder(tmp_path, mode="L")
    assert grey.images.shape == (1, 1, 3, 3) and float(grey.images.min()) == 1.0
    _write_png(tmp_path / "c" / "1.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(SISValueError, match="one size"):
        load_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SISValueError, match="no class subfolder"):
        load_image_folder(tmp_path / "empty")


# --------------------------------------------------------------------------------------------------------------
# Digits, shared_data_dir, normalize, TensorImageDataset
# --------------------------------------------------------------------------------------------------------------


def test_digits_match_scikit_learn() -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    raw = sklearn_datasets.load_digits()
    images, labels, names = load_digits_images()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert torch.equal(images[:, 0] * 16, torch.from_numpy(raw.images).float())
    assert 0.0 <= float(images.min()) and float(images.max()) == 1.0
    assert labels.dtype == torch.int64 and labels.tolist() == raw.target.tolist()
    assert names == tuple(str(i) for i in range(10))


def test_shared_data_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHARED_DATA_ENV_VAR, str(tmp_path))
    assert shared_data_dir() == tmp_path.resolve()
    monkeypatch.setenv(SHARED_DATA_ENV_VAR, str(tmp_path / "missing"))
    assert shared_data_dir() is None
    # a set variable wins over the fallback, even when it names no directory
    assert shared_data_dir(fallback=tmp_path) is None
    monkeypatch.delenv(SHARED_DATA_ENV_VAR)
    # unset: no guess about where the package was installed from, only the explicit fallback
    assert shared_data_dir() is None
    assert shared_data_dir(fallback=tmp_path) == tmp_path.resolve()
    assert shared_data_dir(fallback=str(tmp_path / "missing")) is None


def test_deprecated_names_of_datasets_warn() -> None:
    import sis_attr.datasets as datasets
    import sis_attr.exceptions as exceptions
    import sis_attr.testing as testing

    with pytest.warns(DeprecationWarning, match="sis_attr.testing"):
        alias = datasets.write_cifar10_batches
    assert alias is testing.write_cifar10_batches
    assert "write_cifar10_batches" not in datasets.__all__ and "DatasetNotFoundError" not in datasets.__all__
    # still importable from the old module (it uses it), without a warning
    assert datasets.DatasetNotFoundError is exceptions.DatasetNotFoundError
    with pytest.raises(AttributeError, match="no_such_name"):
        datasets.no_such_name  # noqa: B018


def test_normalize_matches_the_formula() -> None:
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    mean, std = CIFAR10_MEAN_STD_AKAMASTER
    out = normalize(x, mean, std)
    assert out.dtype == torch.float64
    for c in range(3):
        assert torch.allclose(out[:, c], (x[:, c] - mean[c]) / std[c])
    assert torch.allclose(normalize(x[0], mean, std), out[0])  # (C, H, W) works too
    assert torch.allclose(normalize(x, torch.tensor(mean), torch.tensor(std)), out)


def test_normalize_errors() -> None:
    with pytest.raises(SISTypeError, match="floating-point"):
        normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), (0, 0, 0), (1, 1, 1))
    with pytest.raises(SISValueError, match=r"one entry per channel \(3\)"):
        normalize(torch.zeros(1, 3, 2, 2), (0, 0), (1, 1))
    with pytest.raises(SISValueError, match="must be positive"):
        normalize(torch.zeros(1, 1, 2, 2), (0,), (0,))
    with pytest.raises(SISValueError, match=r"\(N, C, H, W\)"):
        normalize(torch.zeros(2, 2), (0,), (1,))


def test_tensor_image_dataset() -> None:
    images = torch.arange(24.0).view(6, 1, 2, 2)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    ds = TensorImageDataset(images, labels, transform=lambda im: im * 2)
    assert len(ds) == 6
    image, label = ds[3]
    assert torch.equal(image, images[3] * 2) and int(label) == 1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 1, 2, 2) and batch[1].tolist() == [0, 1, 0, 1]
    with pytest.raises(SISValueError, match=r"\(N, \.\.\.\) and \(N,\)"):
        TensorImageDataset(images, labels[:5])
    with pytest.raises(SISTypeError, match="integer"):
        TensorImageDataset(images, labels.float())
