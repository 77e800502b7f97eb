"""The controls beyond the paper in audit()'s report: mask-shape leakage and smoothed SIS.

The oracle is the pair of public functions: the report's numbers must be those of ``mask_shape_leakage`` and
``smoothed_sis`` called on the audit's own selection with ``generator=seed``, whatever the data source.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from markupsafe import escape
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sis_attr.exceptions import SISTypeError, SISWarning
from sis_attr.overinterpretation import MaskShapeLeakage, SmoothedSIS, mask_shape_leakage, smoothed_sis
from sis_attr.overinterpretation.pipeline import audit
from sis_attr.overinterpretation.report import AuditReport
from sis_attr.testing import TinyConvNet
from tests.overinterpretation.test_pipeline import MarkReader, marked_digits
from tests.test_cli import audit_args, run, workspace  # noqa: F401  (workspace is a fixture)

KW: dict = {"show_progress": False, "n_examples": 2}


class Pairs(Dataset):
    """(image, label) pairs read one at a time: a streamed data source."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels
        self.transform = lambda x: x

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])


class IsolatedPixel(nn.Module):
    """Two classes; class 1 scores ``5 x[c] + sum(x[far]) - 0.5 sum(x[neighbours of c])`` on 8x8 images.

    ``c`` is pixel (4, 4) and the 6 far pixels are the first of row 0. On an all-ones image the score is 7
    (confidence 0.999); backward selection drops the neighbours first (the score rises to 11), then the other
    pixels, then the far ones, and keeps ``c`` last, so every SIS at 0.99 (score >= log 99 = 4.6) is ``c`` alone
    (score 5). Its one-pixel dilation adds the 8 neighbours (score 1, confidence 0.73): the SIS breaks when
    smoothed. (The scores stay small so that float32 confidences never saturate at 1.)
    """

    def __init__(self) -> None:
        super().__init__()
        weight = torch.zeros(8, 8)
        weight[3:6, 3:6] = -0.5
        weight[4, 4] = 5.0
        weight[0, :6] = 1.0
        self.register_buffer("weight", weight)

    def forward(self, x: Tensor) -> Tensor:
        z = (x[:, 0] * self.weight).sum(dim=(1, 2))
        return torch.stack([torch.zeros_like(z), z], dim=1)


def same_leakage(got: MaskShapeLeakage | None, want: MaskShapeLeakage) -> None:
    assert got is not None
    for name in ("labels", "donors", "full_predictions", "subset_predictions", "swapped_predictions"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert torch.equal(got.shape_predictions, want.shape_predictions)
    assert torch.equal(got.random_predictions, want.random_predictions)
    assert got.fill == pytest.approx(want.fill, rel=1e-6)  # summed block by block in float64
    assert got.kept_fraction == want.kept_fraction and got.n_classes == want.n_classes
    a, b = got.to_dict(), want.to_dict()
    a.pop("fill"), b.pop("fill")
    assert a == b


def same_smoothing(got: SmoothedSIS | None, want: SmoothedSIS) -> None:
    assert got is not None
    assert got.threshold == want.threshold and got.n_inputs == want.n_inputs
    for name in ("indices", "targets", "sis_masks", "dilated_masks", "random_masks", "sis_plus_random_masks"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    for which in ("full", "sis", "dilated", "random", "sis_plus_random"):
        torch.testing.assert_close(got._confidences(which), want._confidences(which), rtol=0, atol=1e-6)
    assert got.interpretation() == want.interpretation()


@pytest.fixture(scope="module")
def marked() -> tuple[nn.Module, Tensor, Tensor, AuditReport]:
    d = marked_digits(20)
    model = MarkReader().eval()
    # lowest-id ties: the hand-known shape-only outcome below assumes the subsets the paper's rule keeps
    return model, d.images, d.labels, audit(model, d, name="mark reader", seed=3, ties="lowest", **KW)


def test_the_report_holds_the_numbers_of_the_public_functions(marked: tuple) -> None:
    model, images, labels, rep = marked
    same_leakage(rep.mask_shape_leakage, mask_shape_leakage(model, images, labels, rep.selection, generator=3))
    same_smoothing(rep.smoothed_sis, smoothed_sis(model, images, rep.selection, threshold=0.99, generator=3))
    # MarkReader reads the value at its class's mark: one constant colour on the mark keeps the class
    leak = rep.mask_shape_leakage
    assert leak is not None and leak.subsets == 1.0 and leak.shape_only == 1.0 and leak._leaky_versions()


def test_a_conv_net_with_per_image_baselines_and_block_features() -> None:
    """Tensor baselines (the donors fill the recipients' subsets over the *recipients'* baselines) and 2x2 blocks."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(9, 1, 6, 6, generator=gen)
    base = torch.rand(9, 1, 6, 6, generator=gen) * 0.1
    model = TinyConvNet(in_channels=1, classes=3, seed=2).eval()
    labels = model(images).argmax(dim=1)
    labels[:2] = (labels[:2] + 1) % 3  # two misclassified images
    from sis_attr.overinterpretation import block_feature_mask

    fmask = block_feature_mask(6, 6, 2)
    rep = audit(model, (images, labels), threshold=0.5, fraction=0.2, baselines=base, feature_mask=fmask, **KW)
    direct = mask_shape_leakage(model, images, labels, rep.selection, fraction=0.2, baselines=base, generator=0)
    same_leakage(rep.mask_shape_leakage, direct)
    same_smoothing(rep.smoothed_sis, smoothed_sis(model, images, rep.selection, threshold=0.5, baselines=base))


def test_streamed_data_give_the_in_memory_controls() -> None:
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(11, 1, 4, 4, generator=gen)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1])
    model = TinyConvNet(in_channels=1, classes=3, seed=0).eval()
    kw = {**KW, "threshold": 0.4, "fraction": 0.25, "shard_size": 4, "batch_size": 3}
    ref = audit(model, (images, labels), **kw)
    for source in (Pairs(images, labels), DataLoader(Pairs(images, labels), batch_size=5)):
        rep = audit(model, source, **kw)
        assert ref.mask_shape_leakage is not None and ref.smoothed_sis is not None
        same_leakage(rep.mask_shape_leakage, ref.mask_shape_leakage)
        same_smoothing(rep.smoothed_sis, ref.smoothed_sis)
    same_leakage(ref.mask_shape_leakage, mask_shape_leakage(model, images, labels, ref.selection, fraction=0.25))
    same_smoothing(ref.smoothed_sis, smoothed_sis(model, images, ref.selection, threshold=0.4))


def test_a_rebuild_from_the_selection_or_a_checkpoint_gives_the_same_controls(marked: tuple, tmp_path: Path) -> None:
    model, images, labels, rep = marked
    again = audit(model, (images, labels), selection=rep.selection, seed=3, **KW)
    assert rep.mask_shape_leakage is not None and rep.smoothed_sis is not None
    same_leakage(again.mask_shape_leakage, rep.mask_shape_leakage)
    same_smoothing(again.smoothed_sis, rep.smoothed_sis)
    audit(model, (images, labels), checkpoint_dir=tmp_path, seed=3, ties="lowest", **KW)  # as the fixture
    rebuilt = audit(model, (images, labels), selection=tmp_path, seed=3, **KW)
    same_leakage(rebuilt.mask_shape_leakage, rep.mask_shape_leakage)
    same_smoothing(rebuilt.smoothed_sis, rep.smoothed_sis)
    # (a checkpoint stores the full-image confidences in float32: same_smoothing compares them to 1e-6)
    assert rebuilt.verdict()["controls"] == rep.verdict()["controls"]


def test_json_summary_and_page_carry_the_controls(marked: tuple, tmp_path: Path) -> None:
    _, _, _, rep = marked
    leak, smooth = rep.mask_shape_leakage, rep.smoothed_sis
    assert leak is not None and smooth is not None
    payload = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert payload["controls"]["mask_shape_leakage"] == json.loads(json.dumps(leak.to_dict()))
    assert payload["controls"]["smoothed_sis"]["sufficient"]["dilated"] == smooth.sufficient("dilated")
    assert payload["settings"]["controls"] == "mask-shape leakage, smoothed SIS"
    assert "controls" in payload["timings_seconds"]
    head = rep.headline()  # comparison.json's numbers per model
    assert (head["content_swapped_accuracy"], head["shape_only_accuracy"]) == (leak.swapped, leak.shape_only)
    assert head["dilated_sis_sufficient"] == smooth.sufficient("dilated")
    # the verdict names each control's finding and adds a caveat to the sign the leakage weakens
    controls = {c["key"]: c for c in payload["verdict"]["controls"]}
    assert controls["mask_shape_leakage"]["present"] is True
    assert controls["mask_shape_leakage"]["observed"].startswith("The shape of the kept positions carries the class.")
    assert controls["smoothed_sis"]["present"] is False
    assert controls["smoothed_sis"]["observed"].startswith("The SIS survive smoothing.")
    assert [s["level"] for s in [payload["verdict"]]] == ["strong signs"]  # the controls do not change the level
    assert any(c.startswith("Mask-shape leakage: about 100.0%") for c in payload["verdict"]["caveats"])
    lines = {line.split("  ")[1]: line for line in rep.summary().splitlines() if line.startswith("  ")}
    assert f"accuracy {100 * leak.swapped:.1f}% content swapped, 100.0% shape only" in lines["mask-shape leakage"]
    assert f"100.0% of {smooth.n_images} SIS stay sufficient when dilated" in lines["smoothed SIS"]
    text = rep.summary()
    assert "controls beyond the paper (not counted in the verdict):" in text
    index = rep.save(tmp_path / "r")
    page = index.read_text(encoding="utf-8")
    assert page.count('<section class="control ') == 2 and 'id="controls"' in page
    assert "Mask-shape leakage" in page and "Smoothed SIS" in page and "What to conclude:" in page
    assert str(escape(leak.interpretation())) in page and str(escape(smooth.interpretation())) in page
    for figure in ("mask_shape_leakage.png", "smoothed_sis.png"):
        assert (tmp_path / "r" / "figures" / figure).read_bytes()[:4] == b"\x89PNG"
        assert page.count(f'src="figures/{figure}"') == 1  # in its section, not again under Figures


def test_controls_false_leaves_them_out(marked: tuple, tmp_path: Path) -> None:
    model, images, labels, _ = marked
    rep = audit(model, (images, labels), controls=False, **KW)
    assert rep.mask_shape_leakage is None and rep.smoothed_sis is None
    payload = rep.to_dict()
    assert payload["controls"] == {"mask_shape_leakage": None, "smoothed_sis": None}
    assert payload["verdict"]["controls"] == [] and payload["settings"]["controls"] == "off"
    assert "controls" not in payload["timings_seconds"]
    assert rep.headline()["content_swapped_accuracy"] is None and rep.headline()["dilated_sis_sufficient"] is None
    assert "mask-shape leakage" not in rep.summary() and "controls beyond" not in rep.summary()
    page = rep.save(tmp_path / "r").read_text(encoding="utf-8")
    assert 'id="controls"' not in page and "Controls beyond the paper" not in page
    assert not (tmp_path / "r" / "figures" / "mask_shape_leakage.png").exists()


def test_controls_is_validated() -> None:
    model, d = MarkReader().eval(), marked_digits(2)
    with pytest.raises(SISTypeError, match=r"The `controls` parameter of audit must be a bool\. Got str instead\."):
        audit(model, d, controls="yes", **KW)  # type: ignore[arg-type]


def test_a_fragile_sis_is_reported_and_weakens_the_tiny_sis_sign(tmp_path: Path) -> None:
    images = torch.ones(10, 1, 8, 8)
    model = IsolatedPixel().eval()
    rep = audit(model, (images, torch.ones(10, dtype=torch.long)), **KW)
    smooth = rep.smoothed_sis
    assert smooth is not None and smooth.n_images == 10
    assert smooth.sis_sizes.tolist() == [1] * 10 and smooth.dilated_sizes.tolist() == [9] * 10
    assert smooth.sufficient("sis") == 1.0 and smooth.sufficient("dilated") == 0.0
    same_smoothing(smooth, smoothed_sis(model, images, rep.selection, threshold=0.99))
    v = rep.verdict()
    control = {c["key"]: c for c in v["controls"]}["smoothed_sis"]
    assert control["present"] is True and control["observed"].startswith("Adding the bordering pixels breaks the SIS.")
    assert any(c.startswith("Smoothed SIS: only 0.0% of the SIS stay sufficient") for c in v["caveats"])
    page = rep.save(tmp_path / "r").read_text(encoding="utf-8")
    assert '<section class="control present">' in page  # the smoothed-SIS section is marked as a finding


def test_leakage_needs_two_images_and_a_visible_shape() -> None:
    model = MarkReader().eval()
    d = marked_digits(1)
    with pytest.warns(SISWarning, match="Mask-shape leakage was not measured: it needs at least two images"):
        one = audit(model, d, **KW)
    assert one.mask_shape_leakage is None and one.smoothed_sis is not None
    assert any("Mask-shape leakage was not measured" in n for n in one.notes)
    page_data = one.to_dict()["controls"]
    assert page_data["mask_shape_leakage"] is None and page_data["smoothed_sis"]["n_inputs"] == 1
    # all-black images with a black baseline: the mean kept colour is the baseline, so no shape can be shown
    black = torch.zeros(4, 1, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = audit(model, (black, torch.tensor([0, 1, 2, 3])), **KW)
    assert rep.mask_shape_leakage is None
    assert any("equals the baseline on every kept position" in str(w.message) for w in caught)


def test_the_command_line_flag(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code, out, err = run(audit_args(workspace), capsys)
    assert code == 0, err
    payload = json.loads((workspace / "out" / "report.json").read_text())["report"]
    assert payload["controls"]["smoothed_sis"] is not None and "smoothed SIS" in out
    code, out, err = run(audit_args(workspace, "--no-controls", "--overwrite"), capsys)
    assert code == 0, err
    payload = json.loads((workspace / "out" / "report.json").read_text())["report"]
    assert payload["controls"] == {"mask_shape_leakage": None, "smoothed_sis": None}
    assert "smoothed SIS" not in out and payload["settings"]["controls"] == "off"
