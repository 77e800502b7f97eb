"""End-to-end tests of the ``sis-attr`` command line: the demo, audits of user models and every error path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sis_attr.cli import main
from sis_attr.demo import DIGITS_SHORTCUT_POSITIONS
from sis_attr.testing import TinyConvNet

EVIL = "<script>alert(1)</script>"

FACTORY = """
from sis_attr.testing import TinyConvNet

def build():
    return TinyConvNet(in_channels=1, classes=3, width=4, seed=0)

def build_rgb():
    return TinyConvNet(in_channels=3, classes=3, width=4, seed=0)

def build_wide():
    return TinyConvNet(in_channels=1, classes=3, width=6, seed=0)

def not_a_model():
    return 42

def broken():
    raise RuntimeError("factory exploded")

def build_resnet8():
    from sis_attr.models import cifar_resnet

    return cifar_resnet(8, num_classes=3)

class Factory:
    @staticmethod
    def make():
        return build()
"""


def referenced_files(index: Path) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', index.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ demo
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("demo") / "report"
    capture = tmp_path_factory.mktemp("demo_stdout") / "stdout.txt"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["demo", "--out", str(out), "--fast", "--images", "16", "--no-progress"])
    capture.write_text(buffer.getvalue())
    return out, code, buffer.getvalue()


def test_demo_writes_a_complete_report(demo_run: tuple[Path, int, str]) -> None:
    out, code, stdout = demo_run
    assert code == 0
    index = out / "index.html"
    assert index.is_file()
    refs = referenced_files(index)
    pngs = [r for r in refs if r.endswith(".png")]
    assert len(pngs) >= 5
    for ref in refs:
        assert (out / ref).is_file(), ref
    for sub in ("clean-cnn", "shortcut-cnn"):
        sub_refs = referenced_files(out / sub / "index.html")
        assert "figures/examples.png" in sub_refs
        for ref in sub_refs:
            assert (out / sub / ref).is_file(), ref
    assert "Overinterpretation audit: comparison" in stdout
    assert f"Report: {index}" in stdout


def test_demo_exposes_the_shortcut(demo_run: tuple[Path, int, str]) -> None:
    out, code, _ = demo_run
    assert code == 0
    models = json.loads((out / "comparison.json").read_text())["models"]
    clean, shortcut = models["clean CNN"], models["shortcut CNN"]
    # the shortcut model's SIS sit on the planted marks ...
    assert tuple(shortcut["sis_location_peak"]) in DIGITS_SHORTCUT_POSITIONS
    assert tuple(clean["sis_location_peak"]) not in DIGITS_SHORTCUT_POSITIONS
    assert shortcut["metrics"]["share of SIS pixels on the marks"] > 0.8
    # ... are much smaller than the clean model's ...
    assert shortcut["mean_sis_size"] < clean["mean_sis_size"]
    assert shortcut["mean_sis_size"] <= 2.0 <= clean["mean_sis_size"]
    # ... and its 5% subsets stay accurate, while both score alike on their own test images
    assert shortcut["backselect_subset_accuracy"] >= 0.9
    assert shortcut["accuracy"] >= 0.9 and clean["accuracy"] >= 0.9
    acc_without = next(v for k, v in shortcut["metrics"].items() if "without" in k)
    assert acc_without < 0.5  # without the mark it fails


def test_old_demo_module_is_a_deprecated_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import sis_attr.demo
    import sis_attr.overinterpretation

    # import it afresh (an earlier import would be cached), and leave no trace for other tests
    monkeypatch.delitem(sys.modules, "sis_attr.overinterpretation.demo", raising=False)
    monkeypatch.delattr(sis_attr.overinterpretation, "demo", raising=False)
    with pytest.warns(DeprecationWarning, match=r"sis_attr\.demo"):
        old = importlib.import_module("sis_attr.overinterpretation.demo")
    assert old.__all__ == sis_attr.demo.__all__
    for name in old.__all__:
        assert getattr(old, name) is getattr(sis_attr.demo, name)
    monkeypatch.delitem(sys.modules, "sis_attr.overinterpretation.demo")
    monkeypatch.delattr(sis_attr.overinterpretation, "demo", raising=False)


def test_demo_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["demo", "--images", "0"], "expected a positive integer, got '0'"),
        (["demo", "--epochs", "two"], "expected a positive integer, got 'two'"),
        (["demo", "--seed", "-1"], "expected a non-negative integer, got '-1'"),
    ):
        code, out, err = run([*argv, "--no-progress"], capsys)
        assert code == 2 and out == "" and message in err, err


# ------------------------------------------------------------------------------------------------ audit
@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "factory.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", X=x, y=np.array([0, 1, 2, 1, 0]), class_names=np.array([EVIL, "b&c", "c"]))
    np.savez(tmp_path / "rgb.npz", X=rng.integers(0, 256, size=(3, 6, 6, 3), dtype=np.uint8), y=np.array([0, 1, 2]))
    np.savez(tmp_path / "bad_labels.npz", X=x, y=np.array([0, 1, 7, 1, 0]))
    np.savez(tmp_path / "empty.npz", X=np.zeros((0, 6, 6), dtype=np.uint8), y=np.zeros(0, dtype=np.int64))
    weights = {"module." + k: v for k, v in TinyConvNet(in_channels=1, classes=3, width=4, seed=1).state_dict().items()}
    torch.save({"state_dict": weights, "epoch": 3}, tmp_path / "weights.pt")
    return tmp_path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def audit_args(ws: Path, *extra: str, data: str = "data.npz", model: str = "factory.py:build") -> list[str]:
    return [
        "audit",
        "--model",
        str(ws / model.split(":")[0]) + ":" + model.split(":")[1] if ".py" in model else model,
        "--data",
        str(ws / data),
        "--threshold",
        "0.4",
        "--out",
        str(ws / "out"),
        "--no-progress",
        *extra,
    ]


def test_audit_npz_end_to_end(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(audit_args(workspace, "--weights", str(workspace / "weights.pt")), capsys)
    assert code == 0, err
    index = workspace / "out" / "index.html"
    assert f"Report: {index}" in out and "Overinterpretation audit: factory.py:build" in out
    for ref in referenced_files(index):
        assert (workspace / "out" / ref).is_file(), ref
    payload = json.loads((workspace / "out" / "report.json").read_text())["report"]
    assert payload["n_images"] == 5 and payload["n_features"] == 36
    # the weights were loaded (seed 1), not the factory's own (seed 0)
    x = torch.from_numpy(np.load(workspace / "data.npz")["X"]).float().div(255).unsqueeze(1)
    expected = TinyConvNet(in_channels=1, classes=3, width=4, seed=1)(x).argmax(dim=1).tolist()
    assert payload["selection"]["targets"] == expected
    assert payload["settings"]["model factory"].endswith("factory.py:build")
    # class names from the data are escaped in the page
    text = index.read_text()
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_audit_dotted_module_from_cwd_and_options(
    workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace)
    monkeypatch.delitem(sys.modules, "factory", raising=False)
    args = audit_args(workspace, "--mean", "0.5", "--std", "0.25", "--mask-space", "pixel", "--limit", "3")
    args += ["--superpixel", "2", "--fraction", "0.2", "--name", "dotted", "--examples", "2"]
    args[2] = "factory:Factory.make"
    code, _, err = run(args, capsys)
    assert code == 0, err
    payload = json.loads((workspace / "out" / "report.json").read_text())["report"]
    assert payload["name"] == "dotted" and payload["n_images"] == 3 and payload["n_features"] == 9
    assert payload["subset_features"] == 2
    assert payload["settings"]["normalisation"] == "mean [0.5], std [0.25]"
    assert payload["settings"]["baseline"] == "0"
    monkeypatch.delitem(sys.modules, "factory", raising=False)


def test_audit_gradient_method(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = audit_args(workspace, "--method", "gradient", "--k", "0.5", "--shortlist", "4", "--mean", "0.5")
    args += ["--std", "0.25"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    payload = json.loads((workspace / "out" / "report.json").read_text())["report"]
    assert payload["settings"]["method"] == "gradient" and payload["settings"]["shortlist"] == 4
    # mask space "normalized": 0 after normalising, which is the colour 0.5 of the [0, 1] images
    baseline = "0 after normalisation (the colour [0.5] (per channel) in the input images)"
    assert payload["settings"]["baseline"] == baseline
    assert "Removed features were set to 0 after normalisation (the colour [0.5]" in payload["verdict"]["caveats"][1]


def test_unsafe_pickle_needs_the_flag(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(TinyConvNet(in_channels=1, classes=3, width=4, seed=1), workspace / "whole.pt")
    code, out, err = run(audit_args(workspace, "--weights", str(workspace / "whole.pt")), capsys)
    assert code == 2 and "--unsafe-load-pickle" in err and out == ""
    assert "holds pickled sis_attr.testing.TinyConvNet" in err  # what it holds, read without unpickling it
    assert not (workspace / "out").exists()
    code, _, err = run(audit_args(workspace, "--weights", str(workspace / "whole.pt"), "--unsafe-load-pickle"), capsys)
    assert code == 0, err
    assert "may run arbitrary code" in err


def test_audit_image_folder_and_cifar_batches(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from sis_attr.testing import write_cifar10_batches

    folder = workspace / "folder"
    for cls, value in (("cat", 40), ("dog", 200)):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (6, 6), value + 10 * i).save(folder / cls / f"{i}.png")
    args = audit_args(workspace, "--grayscale", "--limit", "4", "--examples", "1")
    args[4] = str(folder)
    code, _, err = run(args, capsys)
    assert code == 0, err
    payload = json.loads((workspace / "out" / "report.json").read_text())["report"]
    assert payload["n_images"] == 4 and payload["class_names"][:2] == ["cat", "dog"]
    assert sorted(set(payload["labels"])) == [0, 1]  # drawn at random, not the first 4 files of one class

    batches = workspace / "cifar-10-batches-py"
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    write_cifar10_batches(batches, images, torch.tensor([0, 1, 2]), split="test")
    args = audit_args(workspace, "--superpixel", "8", "--examples", "1", "--out", str(workspace / "out2"))
    args[2], args[4] = str(workspace / "factory.py") + ":build_rgb", str(batches)
    code, _, err = run(args, capsys)
    assert code == 0, err
    payload = json.loads((workspace / "out2" / "report.json").read_text())["report"]
    assert payload["n_images"] == 3 and payload["n_features"] == 16 and payload["class_names"][0] == "airplane"


def test_demo_output_not_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code, out, err = run(["demo", "--out", str(tmp_path / "file" / "demo"), "--no-progress"], capsys)
    assert code == 2 and out == ""
    assert err.strip().startswith("sis-attr demo: error: ") and err.strip().count("\n") == 0


@pytest.mark.real_data
def test_audit_pretrained_resnet20_on_real_cifar10(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subset = shared_data / "cifar10" / "cifar-10-batches-py-subset"
    checkpoint = shared_data / "weights" / "resnet20-12fca82f.th"
    if not subset.is_dir() or not checkpoint.is_file():
        pytest.skip("the CIFAR-10 subset or the ResNet20 checkpoint is missing from ../shared/data")
    (tmp_path / "resnet_factory.py").write_text(
        "from sis_attr.models import cifar_resnet\n\ndef build():\n    return cifar_resnet(20)\n"
    )
    # the akamaster checkpoint: {"best_prec1", "state_dict"} with a "module." prefix, ImageNet normalisation.
    # Exact SIS on 1024 pixels costs 524,800 forward passes per image, and the gradient-screened hybrid still
    # about 1024 (one block of at most `shortlist` removals per step): use it on 4x4 superpixels (64 features).
    args = ["audit", "--model", str(tmp_path / "resnet_factory.py") + ":build", "--weights", str(checkpoint)]
    args += ["--data", str(subset), "--limit", "2", "--method", "gradient", "--k", "0.2", "--shortlist", "8"]
    args += ["--superpixel", "4"]
    args += ["--mean", "0.485", "0.456", "0.406", "--std", "0.229", "0.224", "0.225", "--examples", "2"]
    args += ["--out", str(tmp_path / "out"), "--no-progress"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    payload = json.loads((tmp_path / "out" / "report.json").read_text())["report"]
    assert payload["n_images"] == 2 and payload["n_features"] == 64 and payload["image_shape"] == [3, 32, 32]
    assert payload["class_names"][:2] == ["airplane", "automobile"]
    assert payload["accuracy"] == 1.0  # test images 0 (cat) and 1 (ship): ResNet20 gets both right
    assert payload["settings"]["baseline"].startswith("0 after normalisation (the colour [0.485, 0.456, 0.406]")
    assert payload["n_confident"] >= 1 and 1 <= payload["mean_sis_size"] < 64
    assert payload["settings"]["shortlist"] == 8 and payload["settings"]["features"] == "4x4 superpixels"
    for ref in referenced_files(tmp_path / "out" / "index.html"):
        assert (tmp_path / "out" / ref).is_file()


# ------------------------------------------------------------------------------------------------ errors
ERROR_CASES = {
    "no colon": (["--model", "factory.py"], "MODULE:CALLABLE"),
    "missing module": (["--model", "no_such_module_xyz:build"], "cannot import the module"),
    "missing file": (["--model", "{ws}/nope.py:build"], "does not exist"),
    "syntax error": (["--model", "{ws}/syntax.py:build"], "SyntaxError"),
    "import error": (["--model", "{ws}/imports.py:build"], "ModuleNotFoundError"),
    "missing callable": (["--model", "{ws}/factory.py:nope"], "has no attribute"),
    "not a module": (["--model", "{ws}/factory.py:not_a_model"], "must return a torch.nn.Module"),
    "factory raises": (["--model", "{ws}/factory.py:broken"], "factory exploded"),
    "weights shapes": (["--model", "{ws}/factory.py:build_wide", "--weights", "{ws}/weights.pt"], "shape mismatch"),
    "weights keys": (["--weights", "{ws}/other_keys.pt"], "missing key"),
    "weights garbage": (["--weights", "{ws}/garbage.pt"], "cannot read '{ws}/garbage.pt' as a torch checkpoint"),
    "weights of another depth": (
        ["--model", "{ws}/factory.py:build_resnet8", "--weights", "{ws}/resnet14.pt"],
        "36 unexpected keys (layer1.1.conv1.weight, layer1.1.bn1.weight, layer1.1.bn1.bias, ...). Does --model build",
    ),
    "weights of another width": (
        ["--model", "{ws}/factory.py:build_resnet8", "--weights", "{ws}/resnet8_5.pt"],
        "2 shape mismatches (linear.weight: file (5, 64) vs model (3, 64), linear.bias: file (5,) vs model (3,))",
    ),
    "weights missing": (["--weights", "{ws}/nope.pt"], "does not exist"),
    "weights directory": (["--weights", "{ws}"], "is a directory. Give the checkpoint file in it."),
    "weights not a dict": (["--weights", "{ws}/tensor.pt"], "not a state dict"),
    "data shape": (["--data", "{ws}/rgb.npz"], "cannot run on the data"),
    "empty data": (["--data", "{ws}/empty.npz"], "no image"),
    "labels outside": (["--data", "{ws}/bad_labels.npz"], "up to 7"),
    "data missing": (["--data", "{ws}/nope"], "does not exist"),
    "data not npz": (["--data", "{ws}/factory.py"], "not an .npz"),
    "output not writable": (["--out", "{ws}/factory.py/out"], "not a directory"),
    "mean without std": (["--mean", "0.5"], "--mean and --std"),
    "channels": (["--mean", "0.5", "0.5", "--std", "1", "1"], "one value per channel"),
    "k with exact": (["--method", "exact", "--k", "4"], "gradient only"),
    "bad device": (["--device", "tpu:0:1"], "--device"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_exit_2_with_one_line(case: str, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workspace / "syntax.py").write_text("def build(:\n")
    (workspace / "imports.py").write_text("import no_such_dependency_xyz\n")
    torch.save(torch.nn.Linear(2, 2).state_dict(), workspace / "other_keys.pt")
    (workspace / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save(torch.zeros(3), workspace / "tensor.pt")
    if "resnet" in case or "depth" in case or "width" in case:
        from sis_attr.models import cifar_resnet

        torch.save({"state_dict": cifar_resnet(14, num_classes=3).state_dict()}, workspace / "resnet14.pt")
        torch.save(cifar_resnet(8, num_classes=5).state_dict(), workspace / "resnet8_5.pt")
    extra, message = ERROR_CASES[case]
    message = message.replace("{ws}", str(workspace))
    # later options override the defaults of audit_args
    args = audit_args(workspace) + [e.replace("{ws}", str(workspace)) for e in extra]
    code, out, err = run(args, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sis-attr audit: error: ")
    assert message in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (workspace / "out").exists()


def test_cuda_unavailable(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code, _, err = run([*audit_args(workspace), "--device", "cuda"], capsys)
    assert code == 2 and "CUDA is not available" in err


def test_usage_errors_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["audit", "--data", "x.npz"], capsys)
    assert code == 2 and "--model" in err
    code, _, err = run(["audit", "--model", "m:f", "--data", "x", "--threshold", "2"], capsys)
    assert code == 2 and "(0, 1]" in err
    code, _, _ = run([], capsys)
    assert code == 2
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "demo" in out and "audit" in out
    code, out, _ = run(["audit", "--help"], capsys)
    assert code == 0 and "--unsafe-load-pickle" in out and "--mask-space" in out
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("sis-attr ")
    code, out, err = run(["demo", "--images", "400", "--no-progress"], capsys)
    assert code == 2 and out == "" and "--images must be in [1, 297]" in err and err.strip().count("\n") == 0


def test_real_process_error_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sis_attr.cli", "audit", "--model", "no_such_module_xyz:f", "--data", "x.npz"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert not (tmp_path / "sis-attr-report").exists()


# ------------------------------------------------------------------------------------------------ issue 9
def test_rerun_resumes_from_the_checkpoint_and_rebuilds_without_recomputing(
    workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = audit_args(workspace, "--shard-size", "2")
    code, first, err = run(args, capsys)
    assert code == 0, err
    checkpoint = workspace / "out" / "checkpoint"
    assert len(list(checkpoint.glob("shard-*.npz"))) == 3
    report = json.loads((workspace / "out" / "report.json").read_text())["report"]
    assert report["settings"]["checkpoint"] == str(checkpoint)
    next(checkpoint.glob("shard-000001-*.npz")).unlink()  # as if killed during shard 1
    import sis_attr.overinterpretation.selection as selection_module

    computed: list[int] = []
    original = selection_module._compute_shard

    def counting(*a: object, **k: object) -> object:
        computed.append(int(a[5]))  # type: ignore[call-overload]
        return original(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(selection_module, "_compute_shard", counting)
    code, second, err = run(args, capsys)
    assert code == 0, err
    assert computed == [2]  # only the missing shard (images 2..3) ran
    assert second == first
    code, third, err = run(args, capsys)
    assert code == 0 and third == first and computed == [2]  # a finished run: the report is rebuilt
    code, _, err = run([*args, "--method", "exact"], capsys)
    assert code == 2 and "will not mix results" in err and "another method" in err


def test_k_adaptive_works(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 9, defect 2: --k adaptive was listed by --help but always failed."""
    code, _, err = run(audit_args(workspace, "--method", "gradient", "--k", "adaptive"), capsys)
    assert code == 0, err
    payload = json.loads((workspace / "out" / "report.json").read_text())["report"]
    assert payload["settings"]["k"] == "adaptive"


@pytest.mark.parametrize("name", ["index.html", "report.json", "selection.pt"])
def test_user_files_in_out_are_never_overwritten_without_overwrite(
    name: str, workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9, defect 1: a user's own file in --out is refused before any computation, unless --overwrite."""
    out = workspace / "out"
    out.mkdir()
    (out / name).write_text("my own work")
    (out / "notes.txt").write_text("unrelated")
    import sis_attr.overinterpretation as oi

    monkeypatch.setattr(oi, "audit", lambda *a, **k: pytest.fail("the audit ran"))
    code, stdout, err = run(audit_args(workspace), capsys)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert f"holds {name}, which sis-attr did not write" in err and "--overwrite" in err
    assert (out / name).read_text() == "my own work" and not (out / "checkpoint").exists()
    monkeypatch.undo()
    code, _, err = run([*audit_args(workspace), "--overwrite"], capsys)
    assert code == 0, err
    assert (out / name).read_bytes() != b"my own work" and (out / "notes.txt").read_text() == "unrelated"
    code, _, err = run(audit_args(workspace), capsys)  # now marked as sis-attr's: replaced without --overwrite
    assert code == 0, err


def test_user_directory_named_like_a_report_directory_is_refused_before_computing(
    workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace / "out" / "figures").mkdir(parents=True)
    (workspace / "out" / "figures" / "mine.png").write_bytes(b"png")
    import sis_attr.overinterpretation as oi

    monkeypatch.setattr(oi, "audit", lambda *a, **k: pytest.fail("the audit ran"))
    for extra in ([], ["--overwrite"]):
        code, _, err = run([*audit_args(workspace), *extra], capsys)
        assert code == 2 and "figures' exists and was not written by sis-attr" in err
    assert (workspace / "out" / "figures" / "mine.png").read_bytes() == b"png"


def test_demo_refuses_user_files_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sis_attr.demo as demo

    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: pytest.fail("the demo ran"))
    for name in ("index.html", "comparison.json"):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        (out / name).write_text("mine")
        code, _, err = run(["demo", "--out", str(out), "--no-progress"], capsys)
        assert code == 2 and f"holds {name}" in err and (out / name).read_text() == "mine"
    (tmp_path / "d" / "clean-cnn").mkdir(parents=True)
    code, _, err = run(["demo", "--out", str(tmp_path / "d"), "--no-progress", "--overwrite"], capsys)
    assert code == 2 and "clean-cnn' exists and was not written by sis-attr" in err


def test_staging_directories_left_by_a_killed_writer_are_removed(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 9, defect 5: a SIGKILL while writing left a hidden staging directory that was never cleaned."""
    beside = workspace / ".out.sis-attr-staging-deadbeef"
    beside.mkdir()
    (beside / "index.html").write_text("half")
    code, _, err = run(audit_args(workspace), capsys)
    assert code == 0, err
    inside = workspace / "out" / ".sis-attr-staging-0badf00d"
    inside.mkdir()
    code, _, err = run(audit_args(workspace), capsys)
    assert code == 0, err
    assert not beside.exists() and not inside.exists()
    assert not [p for p in workspace.rglob("*sis-attr-staging*")]


def test_factory_that_exits_is_reported(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workspace / "exits.py").write_text("import sys\n\ndef build():\n    sys.exit(3)\n")
    code, out, err = run(audit_args(workspace, "--model", str(workspace / "exits.py") + ":build"), capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "calling build() failed with SystemExit(3)" in err


def test_grayscale_is_honoured_for_cifar_and_npz(workspace: Path) -> None:
    from sis_attr.cli import load_data
    from sis_attr.testing import write_cifar10_batches

    rgb, _, _ = load_data(workspace / "rgb.npz")
    grey, _, _ = load_data(workspace / "rgb.npz", grayscale=True)
    assert grey.shape == (3, 1, 6, 6)
    torch.testing.assert_close(grey[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])
    batches = workspace / "cifar-10-batches-py"
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    write_cifar10_batches(batches, images, torch.tensor([0, 1]), split="test")
    assert load_data(batches, grayscale=True)[0].shape == (2, 1, 32, 32)
    one, _, _ = load_data(workspace / "data.npz", grayscale=True)  # already one channel: unchanged
    assert torch.equal(one, load_data(workspace / "data.npz")[0])


def test_refused_pickle_names_the_reason_and_the_flag(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pickle

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("echo pwned > " + str(workspace / "pwned"),))

    with open(workspace / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    torch.save({"state_dict": Evil()}, workspace / "evil_torch.pt")
    for name in ("evil.pt", "evil_torch.pt"):
        code, out, err = run(audit_args(workspace, "--weights", str(workspace / name)), capsys)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "pickled posix.system" in err and "arbitrary code" in err and "--unsafe-load-pickle" in err
    assert not (workspace / "pwned").exists()


@pytest.mark.parametrize("kind", ["bad zip", "object array", "truncated"])
def test_corrupt_npz_is_a_one_line_error(kind: str, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 9, defect 4: a corrupt .npz crashed with a traceback and exit 1."""
    path = workspace / "broken.npz"
    if kind == "bad zip":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif kind == "object array":
        np.savez(path, X=np.array([np.zeros(3), np.zeros(2)], dtype=object), y=np.array([0, 1]))
    else:
        np.savez(path, X=np.zeros((4, 6, 6), dtype=np.uint8), y=np.zeros(4, dtype=np.int64))
        path.write_bytes(path.read_bytes()[:-40])
    code, out, err = run(audit_args(workspace, "--data", str(path)), capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("sis-attr audit: error: load_npz_images could not read")
    if kind == "object array":
        assert "Python objects" in err
