"""backend="ray": shards as Ray tasks on a local two-CPU Ray instance give the local results, survive a killed worker
and share the local shard store (each resumes the other)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from sis_attr.overinterpretation import SelectionResult, audit, backward_selection
from sis_attr.testing import TinyConvNet
from tests.overinterpretation.test_store import assert_same

ray = pytest.importorskip("ray", reason="the Ray backend is the optional extra sis-attr[ray]")


@pytest.fixture(scope="module")
def cluster() -> object:
    """A local Ray instance with two CPU workers, as CI has."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


class Traced(nn.Module):
    """TinyConvNet that sleeps a little per call and records which processes ran it (files named by pid)."""

    def __init__(self, trace: str | None = None, sleep: float = 0.0) -> None:
        super().__init__()
        self.inner = TinyConvNet(in_channels=1, classes=3, seed=0)
        self.trace = trace
        self.sleep = sleep

    def forward(self, x: Tensor) -> Tensor:
        if self.trace is not None:
            Path(self.trace, str(os.getpid())).touch()
        if self.sleep:
            time.sleep(self.sleep)
        return self.inner(x)


def _images(n: int = 24) -> Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def test_ray_equals_local_and_each_resumes_the_other(cluster: object, tmp_path: Path) -> None:
    images, model = _images(), Traced().eval()
    kwargs: dict = {"shard_size": 4, "chunk_size": 2, "show_progress": False}
    local = backward_selection(model, images, checkpoint_dir=tmp_path / "local", **kwargs)
    on_ray = backward_selection(model, images, checkpoint_dir=tmp_path / "ray", backend="ray", **kwargs)
    assert_same(on_ray, local)
    in_memory = backward_selection(model, images, **kwargs)  # without a store the scores stay float64
    assert_same(backward_selection(model, images, backend="ray", **kwargs), in_memory)
    # a Ray run finishes what a local run left, and the other way round
    for first, then in (("local", "ray"), ("ray", "local")):
        directory = tmp_path / f"{first}-then-{then}"
        backward_selection(model, images, checkpoint_dir=directory, backend=first, **kwargs)
        for i in (1, 4):
            next(directory.glob(f"shard-{i:06d}-*.npz")).unlink()
        resumed = backward_selection(model, images, checkpoint_dir=directory, backend=then, **kwargs)
        assert_same(resumed, local)
        assert_same(SelectionResult.load(directory), local)


def test_audit_on_ray_equals_the_local_audit(cluster: object) -> None:
    images, model = _images(12), Traced().eval()
    labels = model(images).argmax(dim=1)
    kwargs: dict = {"threshold": 0.4, "shard_size": 4, "show_progress": False}
    local = audit(model, (images, labels), **kwargs)
    on_ray = audit(model, (images, labels), backend="ray", **kwargs)
    assert on_ray.summary() == local.summary() and on_ray.settings["backend"] == "ray"
    assert_same(on_ray.selection, local.selection)
    assert torch.equal(on_ray.confidence.drops, local.confidence.drops)


def test_a_killed_worker_is_retried_and_the_run_completes_identically(cluster: object, tmp_path: Path) -> None:
    images = _images()
    reference = backward_selection(
        Traced().eval(), images, shard_size=4, chunk_size=2, checkpoint_dir=tmp_path / "local", show_progress=False
    )
    trace = tmp_path / "pids"
    trace.mkdir()
    model = Traced(str(trace), sleep=0.01).eval()
    killed: list[int] = []
    stop = threading.Event()

    def kill_first_worker() -> None:
        while not stop.is_set() and not killed:
            for p in trace.iterdir():
                pid = int(p.name)
                if pid != os.getpid():  # a Ray worker, in the middle of a shard
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    try:
        result = backward_selection(
            model, images, shard_size=4, chunk_size=2, checkpoint_dir=tmp_path / "ck", backend="ray",
            show_progress=False,
        )  # fmt: skip
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1
    workers = {int(p.name) for p in trace.iterdir()} - {os.getpid()}
    assert killed[0] in workers and len(workers) >= 2  # another worker took over the killed one's shard
    assert_same(result, reference)
    assert len(list((tmp_path / "ck").glob("shard-*.npz"))) == 6


def test_models_defined_in_scripts_travel_by_value(cluster: object) -> None:
    """A model class Ray workers cannot import (here: made at run time in a module of no file) still runs."""
    import sys
    import types

    module = types.ModuleType("_sis_attr_model_runtime_only")
    exec(  # the point is a class whose module has no file
        "import torch\nfrom torch import nn\n"
        "class Linear(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        torch.manual_seed(0)\n"
        "        self.fc = nn.Linear(16, 3)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.flatten(1))\n",
        module.__dict__,
    )
    sys.modules[module.__name__] = module
    try:
        model = module.Linear().eval()
        images = _images(6)
        local = backward_selection(model, images, shard_size=2, show_progress=False)
        assert_same(backward_selection(model, images, shard_size=2, backend="ray", show_progress=False), local)
    finally:
        del sys.modules[module.__name__]


def test_cli_backend_ray_with_a_model_file(cluster: object, tmp_path: Path) -> None:
    """``sis-attr audit --backend ray`` with a model factory given as a file path (shipped to the workers)."""
    import json

    import numpy as np

    from sis_attr.cli import main

    (tmp_path / "my_models.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        torch.manual_seed(0)\n"
        "        self.fc = nn.Linear(36, 3)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.flatten(1))\n\n"
        "def build():\n"
        "    return Net()\n"
    )
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.integers(0, 256, (6, 6, 6), dtype=np.uint8), y=np.array([0, 1, 2, 0, 1, 2]))
    base = ["audit", "--model", f"{tmp_path / 'my_models.py'}:build", "--data", str(tmp_path / "d.npz")]
    base += ["--threshold", "0.4", "--shard-size", "2", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "local")]) == 0
    assert main([*base, "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 0
    reports = [json.loads((tmp_path / d / "report.json").read_text())["report"] for d in ("local", "ray")]
    assert reports[1]["settings"]["backend"] == "ray"
    for key in ("mean_sis_size", "n_confident", "accuracy", "selection"):
        assert reports[0][key] == reports[1][key]
    assert_same(
        SelectionResult.load(tmp_path / "ray" / "checkpoint"), SelectionResult.load(tmp_path / "local" / "checkpoint")
    )
