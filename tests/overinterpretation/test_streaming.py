"""Data read a shard at a time: Dataset and DataLoader give the tensor results, with memory bounded by the shard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation import audit, backward_selection
from sis_attr.testing import TinyConvNet
from tests.overinterpretation.test_store import assert_same

REPO = Path(__file__).resolve().parents[2]


class Pairs(Dataset):
    """(image, label) pairs made on access, with a transform: never held as tensors by the dataset."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels
        self.transform = lambda x: x
        self.reads = 0

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        self.reads += 1
        return self.transform(self.images[i]), int(self.labels[i])


@pytest.fixture
def data() -> tuple[nn.Module, Tensor, Tensor]:
    model = TinyConvNet(in_channels=1, classes=3, seed=0).eval()
    images = torch.rand(7, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    return model, images, labels


def test_dataset_and_loader_give_the_tensor_selection(data: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, images, labels = data
    ref = backward_selection(model, images, shard_size=4, chunk_size=2, show_progress=False)
    for source in (
        Pairs(images, labels),
        DataLoader(Pairs(images, labels), batch_size=3),
        DataLoader(TensorDataset(images), batch_size=5),  # batches of images alone
    ):
        sel = backward_selection(model, source, shard_size=4, chunk_size=2, show_progress=False)
        assert_same(sel, ref)


def test_streamed_audit_equals_the_in_memory_audit(data: tuple[nn.Module, Tensor, Tensor], tmp_path: Path) -> None:
    model, images, labels = data
    kwargs: dict = {"threshold": 0.4, "fraction": 0.25, "shard_size": 4, "n_examples": 3, "show_progress": False}
    ref = audit(model, (images, labels), **kwargs)
    for source in (Pairs(images, labels), DataLoader(Pairs(images, labels), batch_size=3)):
        rep = audit(model, source, **kwargs)
        assert rep.summary() == ref.summary()
        assert torch.equal(rep.labels, ref.labels)
        assert torch.equal(rep.confidence.drops, ref.confidence.drops)
        assert torch.equal(rep.subset_heatmap.frequency, ref.subset_heatmap.frequency)
        assert rep.examples.indices == ref.examples.indices and torch.equal(rep.examples.images, ref.examples.images)
        assert rep.subset_accuracy.random == ref.subset_accuracy.random  # same random subsets, drawn block by block
    streamed = audit(model, DataLoader(Pairs(images, labels), batch_size=3), checkpoint_dir=tmp_path, **kwargs)
    assert streamed.summary() == audit(model, (images, labels), checkpoint_dir=tmp_path, **kwargs).summary()


def test_a_resumed_stream_in_another_order_is_refused(data: tuple[nn.Module, Tensor, Tensor], tmp_path: Path) -> None:
    model, images, labels = data
    backward_selection(model, DataLoader(Pairs(images, labels), batch_size=4), shard_size=4, checkpoint_dir=tmp_path,
                       show_progress=False)  # fmt: skip
    flipped = Pairs(images.flip(0), labels.flip(0))
    with pytest.raises(SISValueError, match=r"images 0\.\.3 differ from those the checkpoint"):
        backward_selection(model, flipped, shard_size=4, checkpoint_dir=tmp_path, show_progress=False)


def test_unusable_streams_are_refused(data: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, images, labels = data
    ds = Pairs(images, labels)
    with pytest.raises(SISValueError, match="shuffle=False"):
        backward_selection(model, DataLoader(ds, batch_size=2, shuffle=True), show_progress=False)
    with pytest.raises(SISValueError, match="drop_last=False"):
        backward_selection(model, DataLoader(ds, batch_size=2, drop_last=True), show_progress=False)

    class Stream(IterableDataset):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield from zip(images, labels, strict=True)

    with pytest.raises(SISTypeError, match="with a length"):
        backward_selection(model, DataLoader(Stream(), batch_size=2), show_progress=False)

    class Ragged(Pairs):
        def __getitem__(self, i: int) -> tuple[Tensor, int]:
            return (torch.zeros(1, 5, 5) if i == 5 else images[i]), 0

    with pytest.raises(SISValueError, match=r"one shape, \(1, 4, 4\).*at index 5"):
        backward_selection(model, Ragged(images, labels), shard_size=4, show_progress=False)

    class Unlabelled(Pairs):
        def __getitem__(self, i: int) -> Tensor:  # type: ignore[override]
            return images[i]

    with pytest.raises(SISTypeError, match=r"\(image, label\) pairs"):
        audit(model, Unlabelled(images, labels), show_progress=False)

    class BadLabel(Pairs):
        def __getitem__(self, i: int) -> tuple[Tensor, int]:
            return images[i], 7

    with pytest.raises(SISValueError, match=r"class indices of the model, in \[0, 2\]"):
        audit(model, BadLabel(images, labels), threshold=0.4, show_progress=False)


_RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset
    from sis_attr.overinterpretation import audit, block_feature_mask

    torch.set_num_threads(1)

    class Synthetic(Dataset):  # each image is made from its index: the data set never exists as a whole
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return torch.rand(16, 32, 32, generator=torch.Generator().manual_seed(i)), i % 3

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux

    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 3)).eval()
    kwargs = dict(feature_mask=block_feature_mask(32, 32, 16), threshold=0.4, n_examples=2, show_progress=False)
    audit(model, DataLoader(Synthetic(300), batch_size=100), **kwargs)  # warm-up: libraries, allocator pools
    before = peak()
    n = int(sys.argv[1])
    report = audit(model, DataLoader(Synthetic(n), batch_size=100), **kwargs)
    print(json.dumps({"before": before, "after": peak(), "n_images": report.n_images}))
    """
)


@pytest.mark.slow
def test_streamed_audit_memory_is_bounded_by_the_shard_not_the_data_set() -> None:
    """An audit over 262 MB of images (4,000 of 16x32x32 float32) grows peak RSS by less than a 128 MB cap.

    The images exist only one block at a time (a Dataset that makes each image from its index, read through a
    DataLoader). glibc's mmap threshold is fixed at 1 MiB in the child so that freed blocks go back to the system
    and the peak measures what is held, not what the allocator keeps cached.
    """
    n, image_bytes, cap = 4000, 16 * 32 * 32 * 4, 128 * 2**20
    env = {**os.environ, "PYTHONPATH": str(REPO), "MALLOC_MMAP_THRESHOLD_": str(2**20)}
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(n)], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    assert rss["n_images"] == n
    data_bytes = n * image_bytes
    grown = rss["after"] - rss["before"]
    assert data_bytes > 1.9 * cap  # the data set is about twice the cap
    assert grown < cap, f"peak RSS grew by {grown / 2**20:.0f} MiB for {data_bytes / 2**20:.0f} MiB of images"
