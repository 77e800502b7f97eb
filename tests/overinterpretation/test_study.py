"""The human classification study kit: sampling, the page's order and images, key/page separation, no label leak,
and scoring answer files (Carter et al., Section 3.4, Table 2)."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from sis_attr.exceptions import SISError, SISTypeError, SISValueError, SISWarning
from sis_attr.overinterpretation import (
    Study,
    StudyScore,
    backselect_subsets,
    backward_selection,
    make_study,
    score_study,
)
from sis_attr.overinterpretation.study import _render

CLASSES = 4
NAMES = ("cat", "dog", "ship", "frog")
CONFIDENT, UNSURE, WRONG = 5, 2, 1  # images per class of each kind


class RowZeroVote(nn.Module):
    """Logits of class k: ``scale * x[:, 0, 0, k]`` on (1, 4, 4) images, so the confidence is set by hand."""

    def __init__(self, scale: float = 10.0, permute: tuple[int, ...] = (0, 1, 2, 3)) -> None:
        super().__init__()
        self.scale = scale
        self.permute = list(permute)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x[:, 0, 0, self.permute]


def make_data(seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Images, labels and which images are eligible (correct with confidence >= 0.99 under RowZeroVote(10)).

    Per class: CONFIDENT images with a 1 at pixel (0, c) (p = 0.9999), UNSURE with 0.1 there (p = 0.475) and WRONG
    with the 1 at the next class's pixel. The other rows are random and irrelevant to the model.
    """
    gen = torch.Generator().manual_seed(seed)
    images, labels, eligible = [], [], []
    for c in range(CLASSES):
        for kind, count in (("confident", CONFIDENT), ("unsure", UNSURE), ("wrong", WRONG)):
            for _ in range(count):
                x = torch.zeros(1, 4, 4)
                x[0, 1:] = torch.rand(3, 4, generator=gen)
                x[0, 0, c if kind != "wrong" else (c + 1) % CLASSES] = 1.0 if kind != "unsure" else 0.1
                images.append(x)
                labels.append(c)
                eligible.append(kind == "confident")
    perm = torch.randperm(len(images), generator=gen)  # classes interleaved in the data
    return torch.stack(images)[perm], torch.tensor(labels)[perm], torch.tensor(eligible)[perm]


@pytest.fixture(scope="module")
def data() -> tuple[Tensor, Tensor, Tensor]:
    return make_data()


def build(tmp: Path, data: tuple[Tensor, Tensor, Tensor], name: str = "study", **kwargs: Any) -> Study:
    images, labels, _ = data
    model = kwargs.pop("model", RowZeroVote())
    options: dict[str, Any] = {"per_class": 3, "class_names": NAMES, "show_progress": False, **kwargs}
    return make_study(model, (images, labels), out=tmp / name, **options)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, data: tuple[Tensor, Tensor, Tensor]) -> Study:
    return build(tmp_path_factory.mktemp("study"), data)


def page_data(study: Study) -> dict[str, Any]:
    html = study.page.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="study-data">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))


def decode_png(src: str) -> np.ndarray:
    from PIL import Image

    assert src.startswith("data:image/png;base64,")
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


def png_chunks(png: bytes) -> list[bytes]:
    chunks, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        chunks.append(png[pos + 4 : pos + 8])
        pos += 12 + length
    return chunks


# ------------------------------------------------------------------------------------------------ sampling
def test_samples_per_class_only_correct_and_confident_images(study: Study, data: tuple[Tensor, Tensor, Tensor]) -> None:
    _, labels, eligible = data
    assert study.n_images == 3 * CLASSES
    assert bool(eligible[study.indices].all())
    assert torch.equal(study.labels, labels[study.indices])
    assert study.labels.tolist() == [c for c in range(CLASSES) for _ in range(3)]  # per class, in class order
    assert len(set(study.indices.tolist())) == study.n_images
    assert study.classes == (0, 1, 2, 3) and study.class_names == NAMES


def test_sampling_follows_the_seed(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    again = build(tmp_path, data, "again")
    other_seeds = [build(tmp_path, data, f"seed{s}", seed=s).indices for s in range(1, 4)]
    first = build(tmp_path, data, "first")
    assert torch.equal(again.indices, first.indices)
    assert any(not torch.equal(first.indices, o) for o in other_seeds)
    assert again.item_ids != first.item_ids and again.study_id != first.study_id  # ids are random regardless


def test_threshold_decides_what_is_confident(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    _, labels, eligible = data
    low = build(tmp_path, data, per_class=CONFIDENT + UNSURE, threshold=0.4)  # the unsure ones (p = 0.475) qualify
    assert int((~eligible[low.indices]).sum()) == UNSURE * CLASSES
    assert bool((labels[low.indices] == low.labels).all())


def test_too_few_eligible_images_name_the_classes(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    with pytest.raises(SISValueError, match=r"needs 6 images per class.*'cat' has 5.*'frog' has 5.*threshold"):
        build(tmp_path, data, per_class=CONFIDENT + 1)
    assert not (tmp_path / "study").exists() and not (tmp_path / "study-key.json").exists()


def test_classes_restricts_sampling_and_buttons(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    study = build(tmp_path, data, classes=[2, 0])
    assert study.classes == (2, 0) and study.class_names == ("ship", "cat")
    assert study.labels.tolist() == [2, 2, 2, 0, 0, 0]
    buttons = page_data(study)["classes"]
    assert [(b["value"], b["name"], b["key"]) for b in buttons] == [(2, "ship", "0"), (0, "cat", "1")]


def test_several_models_share_the_images(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    study = build(tmp_path, data, model={"a": RowZeroVote(10.0), "b": RowZeroVote(20.0)})
    assert study.image_models == tuple("ab"[i % 2] for i in range(study.n_images))
    key = json.loads(study.key.read_text())
    assert [im["model"] for im in key["images"]] == list(study.image_models)
    swapped = RowZeroVote(10.0, permute=(1, 0, 2, 3))  # misclassifies cats and dogs
    with pytest.raises(SISValueError, match=r"'cat' has 0, 'dog' has 0"):
        build(tmp_path, data, "both", model={"a": RowZeroVote(), "b": swapped})


# ------------------------------------------------------------------------------------------------ order and images
def test_batches_in_increasing_fraction_with_full_images_last(study: Study) -> None:
    assert study.fractions == (0.05, 0.3, 0.5, 1.0)
    assert study.kept == (1, 5, 8, 16)  # ceil(f * 16)
    assert study.item_batches.tolist() == sorted(study.item_batches.tolist())
    for b in range(len(study.fractions)):
        shown = study.item_images[study.item_batches == b].tolist()
        assert sorted(shown) == list(range(study.n_images))  # every image once per batch
    orders = [tuple(study.item_images[study.item_batches == b].tolist()) for b in range(4)]
    assert len(set(orders)) == 4  # shuffled anew within each batch
    for order in orders:  # and not grouped by class
        assert list(study.labels[list(order)]) != sorted(study.labels[list(order)].tolist())


def test_fractions_are_sorted_and_control_is_optional(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    study = build(tmp_path, data, fractions=(0.5, 0.25), control=False)
    assert study.fractions == (0.25, 0.5) and study.n_items == 2 * study.n_images
    assert "whole images" not in study.page.read_text()


def test_page_shows_each_item_in_the_key_order(study: Study) -> None:
    data = page_data(study)
    ids = [item["id"] for batch in data["batches"] for item in batch["items"]]
    assert tuple(ids) == study.item_ids
    assert [len(b["items"]) for b in data["batches"]] == [study.n_images] * 4
    assert data["study_id"] == study.study_id


def test_images_are_the_backward_selection_subsets_on_grey(study: Study, data: tuple[Tensor, Tensor, Tensor]) -> None:
    images = data[0][study.indices]
    selection = backward_selection(RowZeroVote(), images, show_progress=False)  # independent, public door
    srcs = [item["src"] for batch in page_data(study)["batches"] for item in batch["items"]]
    for src, i, b in zip(srcs, study.item_images.tolist(), study.item_batches.tolist(), strict=True):
        pixels = decode_png(src)
        keep = selection.keep_masks(study.fractions[b])[i, 0].numpy()
        expected = np.where(keep, np.round(images[i, 0].double().numpy() * 255), 128).astype(np.uint8)
        np.testing.assert_array_equal(pixels, expected)
        assert int(keep.sum()) == study.kept[b]


def test_model_accuracy_is_measured_on_the_same_subsets(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    images, labels, _ = data

    # a model that needs two pixels: the class pixel and pixel (1, 0), so a 1-pixel subset is often wrong
    class NeedsTwo(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            logits = 10.0 * x[:, 0, 0, :4]
            return logits * (x[:, 0, 1, 0:1] > 0.05)

    model = NeedsTwo()
    study = make_study(model, (images, labels), out=tmp_path / "s", per_class=3, threshold=0.5, show_progress=False)
    chosen = images[study.indices]
    selection = backward_selection(model, chosen, show_progress=False)
    expected = []
    for f in study.fractions:
        subsets = backselect_subsets(chosen, selection, fraction=f, labels=study.labels, baselines=0.0)
        expected.append(float((model(subsets.images).argmax(dim=1) == study.labels).double().mean()))
    assert study.model_accuracy.tolist() == pytest.approx(expected)
    assert study.model_accuracy[-1] == 1.0
    assert json.loads(study.key.read_text())["model_accuracy"] == pytest.approx(expected)


def test_display_images_and_mask_colour(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    images, labels, _ = data
    shown = torch.rand(images.shape[0], 3, 4, 4, generator=torch.Generator().manual_seed(1))
    study = make_study(
        RowZeroVote(),
        (images, labels),
        out=tmp_path / "s",
        per_class=1,
        display_images=shown,
        mask_color=(0.2, 0.4, 0.6),
        show_progress=False,
    )
    first = page_data(study)["batches"][0]["items"][0]["src"]
    pixels = decode_png(first)
    assert pixels.shape == (4, 4, 3)
    hidden = (
        ~backward_selection(RowZeroVote(), images[study.indices], show_progress=False)
        .keep_masks(0.05)[int(study.item_images[0]), 0]
        .numpy()
    )
    assert (pixels[hidden] == [51, 102, 153]).all()
    assert "--grey: #336699" in study.page.read_text()


def test_png_encoder_round_trips_without_metadata() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for shape in ((5, 7), (3, 4, 3)):
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        png = _render.png_bytes(pixels)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels)
        assert png_chunks(png) == [b"IHDR", b"IDAT", b"IEND"]


# ------------------------------------------------------------------------------------------------ what participants get
def test_the_folder_holds_only_the_page_and_the_key_lies_beside_it(study: Study) -> None:
    folder = study.page.parent
    assert sorted(p.name for p in folder.iterdir()) == ["index.html"]
    assert study.key == folder.parent / f"{folder.name}-key.json"
    assert json.loads(study.key.read_text())["format"] == "sis-attr-study-key"


def test_the_page_is_self_contained(study: Study) -> None:
    html = study.page.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "image-rendering: pixelated" in html
    assert not re.search(r"https?://", html)
    assert not re.search(r"<link|<script[^>]+src=|@import|url\(", html)
    assert set(re.findall(r'src="([^"]*)"', html)) == {"data:,"}  # the one <img>, filled in by the script


def test_no_label_leaks_into_the_page(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    """The page is the same skeleton for any data: only random ids and the images themselves differ.

    Two studies of the same shape from different images and labels give identical pages once ids, images and
    study ids are blanked; the ids are random hex unrelated to the key, and each image is a PNG without metadata.
    """
    a = build(tmp_path, data, "a")
    b = build(tmp_path, make_data(seed=7), "b", seed=3)
    assert a.labels[a.item_images].tolist() != b.labels[b.item_images].tolist()  # the answers differ

    def skeleton(study: Study) -> str:
        html = study.page.read_text(encoding="utf-8")
        for item in study.item_ids:
            assert html.count(item) == 1
            html = html.replace(item, "ID")
        html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "IMG", html)
        return html.replace(study.study_id, "STUDY")

    assert skeleton(a) == skeleton(b)
    for study in (a, b):
        assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in study.item_ids)
        assert len(set(study.item_ids)) == study.n_items
        for batch in page_data(study)["batches"]:
            for item in batch["items"]:
                assert set(item) == {"id", "src"}
                import base64

                assert png_chunks(base64.b64decode(item["src"].split(",", 1)[1])) == [b"IHDR", b"IDAT", b"IEND"]
    assert not set(a.item_ids) & set(b.item_ids)


def test_key_is_never_inside_the_page_folder_and_never_overwritten(
    tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]
) -> None:
    with pytest.raises(SISValueError, match="outside the page folder"):
        build(tmp_path, data, key=tmp_path / "study" / "key.json")
    first = build(tmp_path, data, key=tmp_path / "private" / "k.json")
    assert first.key.is_file()
    page = first.page.read_text()
    with pytest.raises(SISValueError, match="will not overwrite the study key"):
        build(tmp_path, data, key=tmp_path / "private" / "k.json")
    assert first.page.read_text() == page  # nothing was replaced
    second = build(tmp_path, data, key=tmp_path / "private" / "k.json", overwrite=True)
    assert Study.from_key(first.key).study_id == second.study_id


def test_the_key_reads_back_as_the_study(study: Study) -> None:
    back = Study.from_key(study.key)
    for name in ("study_id", "title", "fractions", "classes", "class_names", "image_models", "item_ids", "kept"):
        assert getattr(back, name) == getattr(study, name), name
    for name in ("indices", "labels", "item_images", "item_batches", "model_predictions", "model_accuracy"):
        assert torch.equal(getattr(back, name), getattr(study, name)), name
    assert "batch 4: full images (control)" in study.summary()


def test_from_key_refuses_other_files(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"format": "something else"}')
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SISValueError, match="not a key written by make_study"):
        Study.from_key(tmp_path / "x.json")
    with pytest.raises(SISValueError, match="could not be read as JSON"):
        Study.from_key(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        Study.from_key(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fractions": (1.5,)}, SISValueError, r"`fraction` parameter of make_study must be in \(0, 1\]"),
        ({"fractions": (5,)}, SISValueError, r"0.05 for 5%"),
        ({"fractions": (), "control": False}, SISValueError, "non-empty"),
        ({"fractions": "0.05"}, SISTypeError, "sequence of numbers"),
        ({"per_class": 0}, SISValueError, "`per_class`"),
        ({"classes": [0, 9]}, SISValueError, r"class indices in \[0, 3\]"),
        ({"classes": [1, 1]}, SISValueError, "distinct"),
        ({"mask_color": (0.5, 0.5)}, SISValueError, "one number per display channel"),
        ({"mask_color": 2.0}, SISValueError, r"\[0, 1\]"),
        ({"display_images": torch.zeros(3, 1, 4, 4)}, SISValueError, "one display image per image"),
        ({"threshold": 99}, SISValueError, "0.99 for 99%"),
        ({"out": 3}, SISTypeError, "`out`"),
        ({"title": None}, SISTypeError, "`title`"),
        ({"model": "model"}, SISTypeError, "torch.nn.Module"),
        ({"method": "exact", "shortlist": 4}, SISValueError, "gradient"),
    ],
)
def test_invalid_arguments(
    tmp_path: Path, data: tuple[Tensor, Tensor, Tensor], kwargs: dict[str, Any], error: type, message: str
) -> None:
    images, labels, _ = data
    options: dict[str, Any] = {"out": tmp_path / "s", "show_progress": False, **kwargs}
    model = options.pop("model", RowZeroVote())
    with pytest.raises(error, match=message):
        make_study(model, (images, labels), **options)


def test_a_page_sis_attr_did_not_write_is_replaced_only_with_overwrite(
    tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]
) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "index.html").write_text("my home page")
    with pytest.raises(SISValueError, match=r"will not replace .*index\.html.*pass overwrite=True"):
        build(tmp_path, data, name="site")
    assert (folder / "index.html").read_text() == "my home page"
    assert not (tmp_path / "site-key.json").exists()  # refused before anything was computed or written
    study = build(tmp_path, data, name="site", overwrite=True)
    assert study.page.read_text(encoding="utf-8") != "my home page"
    build(tmp_path, data, name="site", overwrite=True)  # its own page (and key) again: replaced


def test_data_must_hold_labels(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    with pytest.raises(SISTypeError, match="true labels"):
        make_study(RowZeroVote(), data[0], out=tmp_path / "s")


# ------------------------------------------------------------------------------------------------ scoring
def answers(study: Study, choices: list[int], session: str, participant: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "format": "sis-attr-study-answers",
        "format_version": 1,
        "study_id": study.study_id,
        "session": session,
        "participant": participant,
        "complete": True,
        "answers": dict(zip(study.item_ids, choices, strict=True)),
        **extra,
    }


def write(path: Path, payload: dict[str, Any]) -> Path:
    path.write_text(json.dumps(payload))
    return path


def participants(study: Study) -> list[list[int]]:
    """Three participants: right on batch >= p and every third item; wrong otherwise (the next class)."""
    truth = study.item_labels.tolist()
    out = []
    for p in range(3):
        out.append(
            [
                t if (b >= p + 1 or i % 3 == p) else (t + 1) % CLASSES
                for i, (t, b) in enumerate(zip(truth, study.item_batches.tolist(), strict=True))
            ]
        )
    return out


def test_scores_reproduce_an_independent_count(tmp_path: Path, study: Study) -> None:
    from scipy import stats

    choices = participants(study)
    files = [write(tmp_path / f"p{p}.json", answers(study, c, f"s{p}", f"P{p}")) for p, c in enumerate(choices)]
    score = score_study(study.key, *files)
    assert isinstance(score, StudyScore) and score.participants == ("P0", "P1", "P2")

    truth = np.array(study.item_labels.tolist())
    batches = np.array(study.item_batches.tolist())
    right = np.array([[c == t for c, t in zip(row, truth, strict=True)] for row in choices], dtype=float)
    acc = np.stack([right[:, batches == b].mean(axis=1) for b in range(4)], axis=1)
    np.testing.assert_allclose(score.accuracy.numpy(), acc)
    np.testing.assert_allclose(score.mean_accuracy.numpy(), acc.mean(axis=0))
    np.testing.assert_allclose(score.std_accuracy.numpy(), acc.std(axis=0, ddof=1))
    x = np.tile([0.05, 0.3, 0.5], 3)
    assert score.r_squared == pytest.approx(stats.linregress(x, acc[:, :3].reshape(-1)).rvalue ** 2)
    for b in range(4):
        counts = Counter((int(t), int(row[i])) for row in choices for i, t in enumerate(truth) if batches[i] == b)
        expected = np.array([[counts[(t, a)] for a in range(CLASSES)] for t in range(CLASSES)])
        np.testing.assert_array_equal(score.confusion[b].numpy(), expected)
        for c in range(CLASSES):
            cols = (batches == b) & (truth == c)
            assert score.per_class_accuracy[b, c].item() == pytest.approx(right[:, cols].mean())
    assert torch.equal(score.model_accuracy, study.model_accuracy)
    assert score.chance == 0.25


def test_scoring_accepts_a_study_folders_lists_and_dicts(tmp_path: Path, study: Study) -> None:
    folder = tmp_path / "answers"
    folder.mkdir()
    choices = participants(study)
    for p, c in enumerate(choices):
        write(folder / f"p{p}.json", answers(study, c, f"s{p}"))
    by_folder = score_study(study, folder)
    by_list = score_study(str(study.key), sorted(folder.glob("*.json")))
    by_dict = score_study(study, *[answers(study, c, f"s{p}") for p, c in enumerate(choices)])
    for other in (by_list, by_dict):
        assert torch.equal(by_folder.accuracy, other.accuracy)
    assert by_folder.participants[0] == "session s0"


def test_scoring_a_second_study_refuses_the_first_ones_answers(
    tmp_path: Path, study: Study, data: tuple[Tensor, Tensor, Tensor]
) -> None:
    other = build(tmp_path, data, "other")
    mine = write(tmp_path / "mine.json", answers(study, study.item_labels.tolist(), "s0"))
    with pytest.raises(SISValueError, match=rf"mine.json is from another study .*{study.study_id}.*{other.study_id}"):
        score_study(other.key, mine)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("incomplete", r"bad.json is incomplete: 47 of 48 images answered"),
        ("unknown_id", r"bad.json answers 1 image ids that are not in this study"),
        ("bad_class", r"bad.json holds answers that are not classes of this study: \[7\]"),
        ("string_class", r"not classes of this study: \['cat'\]"),
        ("not_json", r"bad.json is not a JSON file"),
        ("not_answers", r"bad.json is not an answer file of a sis_attr study"),
        ("version", r"bad.json has format version 2"),
        ("no_session", r"bad.json is damaged"),
        ("missing", r"bad.json does not exist"),
    ],
)
def test_scoring_refuses_damaged_files(tmp_path: Path, study: Study, case: str, message: str) -> None:
    good = write(tmp_path / "good.json", answers(study, study.item_labels.tolist(), "s0"))
    payload = answers(study, study.item_labels.tolist(), "s1")
    bad = tmp_path / "bad.json"
    if case == "incomplete":
        payload["answers"].pop(study.item_ids[5])
    elif case == "unknown_id":
        payload["answers"]["ffffffffffff"] = 0
    elif case == "bad_class":
        payload["answers"][study.item_ids[0]] = 7
    elif case == "string_class":
        payload["answers"][study.item_ids[0]] = "cat"
    elif case == "not_answers":
        payload = json.loads(study.key.read_text())
    elif case == "version":
        payload["format_version"] = 2
    elif case == "no_session":
        payload.pop("session")
    if case == "not_json":
        bad.write_text("{oops")
    elif case != "missing":
        write(bad, payload)
    with pytest.raises(SISValueError, match=message) as info:
        score_study(study.key, good, bad)
    assert isinstance(info.value, SISError) and isinstance(info.value, ValueError)
    assert "1 of 2 answer files" in str(info.value) and "skip_invalid=True" in str(info.value)


def test_scoring_refuses_duplicates(tmp_path: Path, study: Study) -> None:
    truth = study.item_labels.tolist()
    a = write(tmp_path / "a.json", answers(study, truth, "s0", "P1"))
    copy = tmp_path / "copy.json"
    shutil.copy(a, copy)
    again = write(tmp_path / "again.json", answers(study, truth, "s9", "P1"))
    with pytest.raises(SISValueError, match=r"a.json: given twice"):
        score_study(study.key, a, tmp_path / "." / "a.json")
    with pytest.raises(SISValueError, match=r"copy.json: the same answers as .*a.json \(one session, two copies\)"):
        score_study(study.key, a, copy)
    with pytest.raises(SISValueError, match=r"again.json: participant code 'P1' also answered in .*a.json"):
        score_study(study.key, a, again)


def test_skip_invalid_scores_the_others_with_a_warning(tmp_path: Path, study: Study) -> None:
    truth = study.item_labels.tolist()
    good = write(tmp_path / "good.json", answers(study, truth, "s0"))
    half = answers(study, truth, "s1")
    half["answers"] = dict(list(half["answers"].items())[:10])
    bad = write(tmp_path / "half.json", half)
    with pytest.warns(SISWarning, match=r"skipped .*half.json is incomplete: 10 of 48"):
        score = score_study(study.key, good, bad, skip_invalid=True)
    assert score.n_participants == 1 and len(score.skipped) == 1
    assert "skipped:" in score.summary() and "% ±" not in score.summary()  # one participant: no spread
    assert bool(score.std_accuracy.isnan().all())
    with pytest.warns(SISWarning), pytest.raises(SISValueError, match="none of the 1 answer files"):
        score_study(study.key, bad, skip_invalid=True)


def test_scoring_needs_files_and_a_key(study: Study) -> None:
    with pytest.raises(SISValueError, match="at least one answer file"):
        score_study(study.key)
    with pytest.raises(SISTypeError, match="`key` parameter of score_study"):
        score_study(3, {})  # type: ignore[arg-type]
    with pytest.raises(SISTypeError, match="answers"):
        score_study(study.key, 3)


def test_r_squared_is_nan_without_two_subset_sizes(tmp_path: Path, data: tuple[Tensor, Tensor, Tensor]) -> None:
    one = build(tmp_path, data, fractions=(0.25,))
    score = score_study(one, answers(one, one.item_labels.tolist(), "s0"))
    assert math.isnan(score.r_squared)
    assert score.accuracy.tolist() == [[1.0, 1.0]]


def test_score_summary_plot_and_files(tmp_path: Path, study: Study) -> None:
    import matplotlib

    matplotlib.use("Agg")
    files = [write(tmp_path / f"p{p}.json", answers(study, c, f"s{p}")) for p, c in enumerate(participants(study))]
    score = score_study(study.key, *files)
    text = score.summary()
    assert "5% kept" in text and "full images" in text and "R^2 of subset size with human accuracy" in text
    ax = score.plot()
    assert len(ax.get_lines()) >= 5  # three participants, the model, chance (and the mean's error bars)
    index = score.save(tmp_path / "summary")
    written = json.loads((tmp_path / "summary" / "score.json").read_text())
    assert written["accuracy"] == score.accuracy.tolist()
    assert written["std_accuracy"] == pytest.approx(score.std_accuracy.tolist())
    assert (tmp_path / "summary" / "human_accuracy.png").stat().st_size > 1000
    html = index.read_text()
    assert "human_accuracy.png" in html and "frog" in html and study.study_id in html
    json.dumps(score.to_dict(), allow_nan=False)
