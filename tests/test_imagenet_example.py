"""examples/reproduce_imagenet_sis.py (Figures 3 and 4) and the Inception-shaped smoke model it uses.

torchvision is optional and absent here: the smoke path (a random Inception-shaped network, 2 random images) runs
as CI does, the run without data must end cleanly, and the ImageNet path runs against a small stand-in for the
few torchvision pieces it uses (an image folder, the usual transforms, a model factory), so its bookkeeping is
tested too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from sis_attr._inception import InceptionV3Like

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "reproduce_imagenet_sis.py"
SMOKE_LIMIT_S = 60
"""The smoke run must stay well within a CI minute (measured: about 10 s on one idle CPU core)."""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MPLBACKEND": "Agg", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("SIS_ATTR_EXAMPLE_SMOKE", None)
    env.update(extra)
    return env


def _example() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("reproduce_imagenet_sis", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_without_torchvision_weights_or_imagenet_it_says_so_and_exits_cleanly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        env=_env(SIS_ATTR_SHARED_DATA=str(tmp_path / "no-such-dir")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "torchvision not found" in out and "Inception-v3 weights not found" in out
    assert "ImageNet validation folder not found" in out and "--smoke" in out
    assert not (tmp_path / "out").exists()


def test_smoke_run(tmp_path: Path) -> None:
    """CI's path: a random Inception-shaped model at 2 images, through Batched Gradient SIS to both figures."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--smoke", "--out", str(tmp_path / "smoke")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    print(f"smoke run: {seconds:.1f} s")
    assert seconds < SMOKE_LIMIT_S * 3  # generous on a busy machine; the budget is SMOKE_LIMIT_S on an idle core
    out = tmp_path / "smoke"
    for name in ("figure3_sis_examples.png", "figure4_sis_heatmap.png", "results.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 1000, name
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["mode"].startswith("smoke") and results["images"] == 2 and results["with_sis"] == 2
    assert results["all_sis_sufficient"] and results["heatmap"]["n_images"] == 2
    for image in results["per_image"]:
        assert image["confidence"] >= 0.95 and image["confidence_on_sis"] >= 0.9 - 1e-6
        assert 0 < image["sis_size"] < 128 * 128
    assert results["settings"]["k"] == 100 and results["settings"]["threshold"] == 0.9


def test_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    example = _example()
    monkeypatch.delenv(example.SMOKE_ENV_VAR, raising=False)
    real = example.parse_args([])
    assert not real.smoke and (real.images, real.size, real.k, real.threshold) == (16, 299, 100, 0.9)
    assert real.max_scan == 320
    monkeypatch.setenv(example.SMOKE_ENV_VAR, "1")
    smoke = example.parse_args([])
    assert smoke.smoke and (smoke.images, smoke.size) == (2, 128)
    with pytest.raises(SystemExit):
        example.parse_args(["--k", "0"])
    with pytest.raises(SystemExit):
        example.parse_args(["--threshold", "1.5"])


def test_requirements_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = _example()
    monkeypatch.setenv("SIS_ATTR_IMAGENET_DIR", str(tmp_path))
    args = example.parse_args(["--weights", str(tmp_path / "missing.pth")])
    assert example.imagenet_dir(args) == tmp_path
    problems = example.missing_requirements(args)
    assert any("weights not found at" in p and "missing.pth" in p for p in problems)
    assert not any("ImageNet" in p for p in problems)  # the folder exists
    args = example.parse_args(["--imagenet-dir", str(tmp_path / "nowhere"), "--download"])
    problems = example.missing_requirements(args)
    assert not any("weights" in p for p in problems) and any(
        f"not found at {tmp_path / 'nowhere'}" in p for p in problems
    )


# ------------------------------------------------------------------------------------------------ the ImageNet path
class _ColourNet(nn.Module):
    """Stand-in for Inception-v3: four classes from the mean colour (a confident, differentiable classifier)."""

    def __init__(self, **_: Any) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[8.0, 0, 0], [0, 8.0, 0], [0, 0, 8.0], [-8.0, -8.0, -8.0]]))
            self.fc.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc(x.mean(dim=(2, 3)))
        return out


def _fake_torchvision() -> types.ModuleType:
    """The torchvision pieces the example uses: ImageFolder, Resize/CenterCrop/ToTensor/Normalize, inception_v3."""
    from PIL import Image

    from sis_attr.datasets import normalize

    class ImageFolder(torch.utils.data.Dataset[tuple[Tensor, int]]):
        def __init__(self, root: str, transform: Any) -> None:
            classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
            self.class_to_idx = {c: i for i, c in enumerate(classes)}
            self.samples = [(str(f), i) for i, c in enumerate(classes) for f in sorted((Path(root) / c).iterdir())]
            self.targets = [t for _, t in self.samples]
            self.transform = transform

        def __len__(self) -> int:
            return len(self.samples)

        def __getitem__(self, i: int) -> tuple[Tensor, int]:
            with Image.open(self.samples[i][0]) as img:
                return self.transform(img.convert("RGB")), self.samples[i][1]

    def resize(size: int) -> Any:
        return lambda img: img.resize((size, size))

    def center_crop(size: int) -> Any:
        def crop(img: Any) -> Any:
            left, top = (img.width - size) // 2, (img.height - size) // 2
            return img.crop((left, top, left + size, top + size))

        return crop

    def to_tensor() -> Any:
        return lambda img: torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255

    def compose(steps: list[Any]) -> Any:
        def run(x: Any) -> Any:
            for step in steps:
                x = step(x)
            return x

        return run

    tv = types.ModuleType("torchvision")
    tv.transforms = types.SimpleNamespace(  # type: ignore[attr-defined]
        Compose=compose,
        Resize=resize,
        CenterCrop=center_crop,
        ToTensor=to_tensor,
        Normalize=lambda mean, std: lambda x: normalize(x, mean, std),
    )
    tv.datasets = types.SimpleNamespace(ImageFolder=ImageFolder)  # type: ignore[attr-defined]
    tv.models = types.SimpleNamespace(inception_v3=_ColourNet)  # type: ignore[attr-defined]
    return tv


def test_imagenet_path_with_a_stand_in_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    colours = {"n01": (250, 40, 40), "n02": (40, 250, 40), "n03": (128, 128, 128)}  # grey: not confident
    for wnid, colour in colours.items():
        (tmp_path / "val" / wnid).mkdir(parents=True)
        for j in range(3):
            pixels = Image.new("RGB", (40, 30), colour)
            pixels.putpixel((j, j), (0, 0, 0))
            pixels.save(tmp_path / "val" / wnid / f"ILSVRC2012_val_{wnid}_{j}.png")
    torch.save(_ColourNet().state_dict(), tmp_path / "weights.pth")
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision())
    example = _example()
    argv = ["--imagenet-dir", str(tmp_path / "val"), "--weights", str(tmp_path / "weights.pth"), "--images", "4"]
    argv += ["--size", "24", "--k", "20", "--workers", "0", "--examples", "3", "--out", str(tmp_path / "out")]
    assert example.missing_requirements(example.parse_args(argv)) == []
    assert example.main(argv) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert results["mode"] == "imagenet" and results["images"] == 4 and results["scanned"] == 9
    assert results["with_sis"] == 4 and results["all_sis_sufficient"]
    for image in results["per_image"]:  # only red and green images are confident; labels follow the folders
        wnid = Path(image["file"]).parent.name
        assert wnid in ("n01", "n02") and image["label"] == image["target"] == {"n01": 0, "n02": 1}[wnid]
        assert image["confidence"] >= 0.9 and image["confidence_on_sis"] >= 0.9 - 1e-6
        assert image["class"] == f"class {image['target']}"
    for name in ("figure3_sis_examples.png", "figure4_sis_heatmap.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000


# ------------------------------------------------------------------------------------------------ smoke model
def test_inception_like_has_the_shapes_of_torchvision_inception_v3() -> None:
    """Width 1: torchvision's inception_v3 has 27,161,264 parameters, its auxiliary head 3,326,696."""
    before = torch.random.get_rng_state()
    full = InceptionV3Like(width=1.0)
    assert torch.equal(before, torch.random.get_rng_state())  # seeded without touching the global generator
    assert sum(p.numel() for p in full.parameters()) == 27_161_264 - 3_326_696
    small = InceptionV3Like(width=0.1, num_classes=7).eval()
    again = InceptionV3Like(width=0.1, num_classes=7).eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        assert small(x).shape == (2, 7) and torch.equal(small(x), again(x))
        assert not torch.allclose(small(x), InceptionV3Like(width=0.1, num_classes=7, seed=1).eval()(x))
    # the logits depend on the input (variance-preserving initialisation): gradients reach every pixel
    z = x.clone().requires_grad_(True)
    small(z)[:, 0].sum().backward()
    assert z.grad is not None and float(z.grad.abs().mean()) > 0
