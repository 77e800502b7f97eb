"""Resumable backward selection: the shard store, resuming after SIGKILL, corrupted shards, refusing to mix."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from sis_attr.exceptions import SISTypeError, SISValueError
from sis_attr.overinterpretation import SelectionResult, audit, backward_selection
from sis_attr.overinterpretation._store import ShardStore, smallest_uint
from sis_attr.testing import TinyConvNet

REPO = Path(__file__).resolve().parents[2]
QUADRANTS = torch.arange(4).reshape(2, 2).repeat_interleave(2, 0).repeat_interleave(2, 1)  # 4 features of 4x4


def _images(n: int = 10, size: int = 4, seed: int = 0) -> Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _model(seed: int = 0) -> nn.Module:
    return TinyConvNet(in_channels=1, classes=3, seed=seed).eval()


def assert_same(a: SelectionResult, b: SelectionResult) -> None:
    """Bit-for-bit equal results, every image exactly once and in order."""
    assert len(a) == len(b)
    assert [r.example for r in a.records] == list(range(len(a))) == [r.example for r in b.records]
    for ra, rb in zip(a.records, b.records, strict=True):
        assert torch.equal(ra.order, rb.order)
        assert torch.equal(ra.values, rb.values) or torch.allclose(ra.values, rb.values, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(a.targets, b.targets) and torch.equal(a.confidences, b.confidences)
    assert torch.equal(a.feature_mask, b.feature_mask) and a.method == b.method and a.image_shape == b.image_shape


# ------------------------------------------------------------------------------------------------ the store
def test_checkpointed_run_writes_shards_and_equals_the_in_memory_run(tmp_path: Path) -> None:
    images, model = _images(10), _model()
    plain = backward_selection(model, images, chunk_size=3, shard_size=3, show_progress=False)
    stored = backward_selection(
        model, images, chunk_size=3, shard_size=3, checkpoint_dir=tmp_path, scores_dtype="float64", show_progress=False
    )
    assert_same(plain, stored)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[:3] == [".lock", "feature_mask.npy", "manifest.json"] and len(names) == 7
    for i, name in enumerate(names[3:]):  # one file per shard, its SHA-256 in its name
        assert re.fullmatch(rf"shard-{i:06d}-[0-9a-f]{{64}}\.npz", name)
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == name[13:-4]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    ident = manifest["identity"]
    assert manifest["complete"] and manifest["n_shards"] == 4 and manifest["shard_size"] == 3
    assert ident["data"] == {"n_images": 10, "image_shape": [1, 4, 4]} and ident["method"] == "gradient"
    assert len(ident["model"]["state_dict_sha256"]) == 64 and ident["package_version"]
    meta = ShardStore.existing(tmp_path, "test").entry(3)
    assert meta is not None and (meta["start"], meta["stop"]) == (9, 10) and len(meta["data_sha256"]) == 64
    assert not any(".tmp-" in n for n in names)


def test_rerun_skips_finished_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, model = _images(8), _model()
    first = backward_selection(model, images, shard_size=2, checkpoint_dir=tmp_path, show_progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("shard-*")}
    import sis_attr.overinterpretation.selection as selection_module

    def no_compute(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished shard was computed again")

    monkeypatch.setattr(selection_module, "_compute_shard", no_compute)
    again = backward_selection(model, images, shard_size=2, checkpoint_dir=tmp_path, show_progress=False)
    assert_same(first, again)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("shard-*")} == stamps


def test_a_corrupted_or_partial_shard_is_recomputed(tmp_path: Path) -> None:
    images, model = _images(8), _model()
    ref = backward_selection(model, images, shard_size=2, checkpoint_dir=tmp_path, show_progress=False)
    (blob,) = tmp_path.glob("shard-000001-*.npz")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the checksum no longer matches
    blob.write_bytes(bytes(data))
    (last,) = tmp_path.glob("shard-000002-*.npz")
    last.write_bytes(last.read_bytes()[:-100])  # truncated
    (tmp_path / "shard-000003-0123.npz.tmp-123-abcd").write_bytes(b"half a shard")  # killed while writing
    store = ShardStore.existing(tmp_path, "test")
    assert store.entry(1) is None and store.entry(2) is None and store.entry(0) is not None
    assert not blob.exists() and not last.exists()  # corrupted shards are removed, to be recomputed
    again = backward_selection(model, images, shard_size=2, checkpoint_dir=tmp_path, show_progress=False)
    assert_same(ref, again)
    assert not list(tmp_path.glob("*.tmp-*")) and len(list(tmp_path.glob("shard-*.npz"))) == 4


def test_refuses_to_mix_models_data_methods_and_parameters(tmp_path: Path) -> None:
    images, model = _images(6), _model()
    backward_selection(model, images, shard_size=2, checkpoint_dir=tmp_path, show_progress=False)
    cases = [
        ({"model": _model(seed=1)}, "another model"),
        ({"images": _images(6, seed=5)}, r"images 0\.\.1 differ"),
        ({"images": _images(7)}, "other data"),
        ({"method": "exact"}, "another method"),
        ({"baselines": 0.5}, "other parameters"),
        (
            {"feature_mask": torch.arange(4).reshape(2, 2).repeat_interleave(2, 0).repeat_interleave(2, 1)},
            "other parameters",
        ),
        ({"target": 1}, "other parameters"),
        ({"scores_dtype": "float16"}, "another storage format"),
        ({"shard_size": 3}, "shard_size"),
    ]
    for change, match in cases:
        kwargs: dict = {"model": model, "images": images, "shard_size": 2, **change}
        with pytest.raises(SISValueError, match=match):
            backward_selection(
                kwargs.pop("model"), kwargs.pop("images"), checkpoint_dir=tmp_path, show_progress=False, **kwargs
            )
    # nothing was overwritten: the original run still resumes to the same results
    backward_selection(model, images, shard_size=2, checkpoint_dir=tmp_path, show_progress=False)


def test_checkpoint_directory_checks(tmp_path: Path) -> None:
    images, model = _images(3), _model()
    (tmp_path / "mine.txt").write_text("a user's file")
    with pytest.raises(SISValueError, match="holds other files"):
        backward_selection(model, images, checkpoint_dir=tmp_path, show_progress=False)
    with pytest.raises(SISValueError, match="must be a directory"):
        backward_selection(model, images, checkpoint_dir=tmp_path / "mine.txt", show_progress=False)
    with pytest.raises(SISTypeError, match="checkpoint_dir"):
        backward_selection(model, images, checkpoint_dir=3, show_progress=False)  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="scores_dtype"):
        backward_selection(model, images, scores_dtype="int8", show_progress=False)  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="shard_size"):
        backward_selection(model, images, shard_size=0, show_progress=False)
    with pytest.raises(SISValueError, match="not a checkpoint directory"):
        SelectionResult.load(tmp_path)


def test_another_run_holding_the_lock_is_refused(tmp_path: Path) -> None:
    images, model = _images(2), _model()
    identity = {"n_images": 2}
    with ShardStore.open(tmp_path / "ck", identity, shard_size=1, caller="test"):
        with pytest.raises(SISValueError, match="another run is writing"):
            backward_selection(model, images, checkpoint_dir=tmp_path / "ck", show_progress=False)


def test_compact_storage_and_shard_readers(tmp_path: Path) -> None:
    images, model = _images(5, size=4), _model()
    half = backward_selection(
        model, images, shard_size=2, checkpoint_dir=tmp_path / "f16", scores_dtype="float16", show_progress=False
    )
    full = backward_selection(
        model, images, shard_size=2, checkpoint_dir=tmp_path / "f64", scores_dtype="float64", show_progress=False
    )
    with np.load(next((tmp_path / "f16").glob("shard-000000-*.npz"))) as z:
        assert z["orders"].dtype == np.uint8 and z["values"].dtype == np.float16
        assert z["targets"].dtype == np.uint8 and z["probabilities"].dtype == np.float32
    assert smallest_uint(255) == np.uint8 and smallest_uint(256) == np.uint16 and smallest_uint(70000) == np.uint32
    for a, b in zip(half.records, full.records, strict=True):
        assert torch.equal(a.order, b.order) and a.values.dtype == torch.float64
        torch.testing.assert_close(a.values, b.values, rtol=2e-3, atol=2e-3, equal_nan=True)  # NaN: not measured
    assert torch.equal(half.keep_masks(0.25), full.keep_masks(0.25))
    shards = list(SelectionResult.iter_shards(tmp_path / "f64"))
    assert [len(s) for s in shards] == [2, 2, 1] and [s.records[0].example for s in shards] == [0, 2, 4]
    assert torch.equal(torch.cat([s.targets for s in shards]), full.targets)
    assert_same(SelectionResult.load(tmp_path / "f64"), full)
    # the .pt file is compact too and reads back the same records
    full.save(tmp_path / "sel.pt")
    raw = torch.load(tmp_path / "sel.pt", weights_only=True)
    assert raw["orders"].dtype == torch.uint8 and int(raw["format_version"]) == 2
    assert_same(SelectionResult.load(tmp_path / "sel.pt"), full)


def test_unfinished_checkpoint_is_not_loaded(tmp_path: Path) -> None:
    images, model = _images(4), _model()
    backward_selection(model, images, shard_size=2, checkpoint_dir=tmp_path, show_progress=False)
    next(tmp_path.glob("shard-000001-*.npz")).unlink()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(SISValueError, match=r"not finished \(1 of 2 shards missing\)"):
        SelectionResult.load(tmp_path)


def test_audit_resumes_and_is_rebuilt_from_a_finished_selection(tmp_path: Path) -> None:
    images, model = _images(8), _model()
    labels = model(images).argmax(dim=1)
    first = audit(model, (images, labels), threshold=0.4, checkpoint_dir=tmp_path / "ck", shard_size=4,
                  show_progress=False)  # fmt: skip
    again = audit(model, (images, labels), threshold=0.4, checkpoint_dir=tmp_path / "ck", shard_size=4,
                  show_progress=False)  # fmt: skip
    rebuilt = audit(model, (images, labels), threshold=0.4, selection=tmp_path / "ck", show_progress=False)
    from_object = audit(model, (images, labels), threshold=0.4, selection=first.selection, show_progress=False)
    for rep in (again, rebuilt, from_object):
        assert rep.summary() == first.summary()
        assert_same(rep.selection, first.selection)
    with pytest.raises(SISValueError, match="another model"):
        audit(_model(seed=2), (images, labels), threshold=0.4, selection=tmp_path / "ck", show_progress=False)
    with pytest.raises(SISValueError, match="computed on the audited images"):
        audit(model, (images[:4], labels[:4]), threshold=0.4, selection=first.selection, show_progress=False)
    with pytest.raises(SISValueError, match="feature_mask"):
        audit(model, (images, labels), threshold=0.4, selection=first.selection, feature_mask=QUADRANTS,
              show_progress=False)  # fmt: skip
    with pytest.raises(SISValueError, match="not both"):
        audit(model, (images, labels), selection=first.selection, checkpoint_dir=tmp_path / "x", show_progress=False)


# ------------------------------------------------------------------------------------------------ SIGKILL
_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    from torch import nn
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and deterministic
    from sis_attr.overinterpretation import backward_selection
    from sis_attr.testing import TinyConvNet

    class Slow(nn.Module):  # a few milliseconds per forward pass: the run lasts long enough to be killed
        def __init__(self):
            super().__init__()
            self.inner = TinyConvNet(in_channels=1, classes=3, seed=0)

        def forward(self, x):
            time.sleep(0.004)
            return self.inner(x)

    images = torch.rand(24, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    backward_selection(Slow().eval(), images, shard_size=2, chunk_size=2, checkpoint_dir=sys.argv[1],
                       show_progress=False)
    """
)


def _run_script(directory: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, str(directory)], env=env, stderr=subprocess.PIPE)


def test_killed_run_resumes_to_the_uninterrupted_results(tmp_path: Path) -> None:
    """SIGKILL at a random shard, resume: the results equal an uninterrupted run's, no image lost or twice."""
    target = random.Random().randint(1, 9)  # finished shards (of 12) before the kill
    killed = _run_script(tmp_path / "killed")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed.poll() is None:
        if len(list((tmp_path / "killed").glob("shard-*.npz"))) >= target:
            break
        time.sleep(0.002)
    assert killed.poll() is None, killed.stderr.read().decode() if killed.stderr else ""
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert not manifest["complete"]
    done_before = len(list((tmp_path / "killed").glob("shard-*.npz")))
    assert target <= done_before < 12
    for proc in (_run_script(tmp_path / "killed"), _run_script(tmp_path / "clean")):  # resume; uninterrupted
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    resumed, clean = SelectionResult.load(tmp_path / "killed"), SelectionResult.load(tmp_path / "clean")
    assert_same(resumed, clean)
    assert len(list((tmp_path / "killed").glob("shard-*.npz"))) == 12
    assert not list((tmp_path / "killed").glob("*.tmp-*"))
