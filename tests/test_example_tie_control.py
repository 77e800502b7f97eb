"""examples/reproduce_tie_control.py: the planted-shortcut comparison of the two tie rules (no shared data)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import torch

from tests._scripts import load_script

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "reproduce_tie_control.py"


def _load() -> ModuleType:
    return load_script(EXAMPLE)


def test_planted_shortcut_shows_the_lowest_id_artifact_and_random_ties_remove_it(tmp_path: Path) -> None:
    example = _load()
    before = torch.get_num_threads()
    try:
        assert (
            example.main(["--n-planted", "3", "--n-real", "0", "--threads", "1", "--json", str(tmp_path / "t.json")])
            == 0
        )
    finally:
        torch.set_num_threads(before)
    result = json.loads((tmp_path / "t.json").read_text())
    lowest, random = result["planted"]["lowest"], result["planted"]["random"]
    assert lowest["patch_pixels_kept"] == random["patch_pixels_kept"] == 1.0  # the evidence is always kept
    assert lowest["kept_pixels"] == random["kept_pixels"] == 3 * (52 - 9)
    assert lowest["share_in_last_two_rows"] == 1.0 and lowest["peak_pixel"][0] >= 30
    assert random["share_in_last_two_rows"] < 0.25 and abs(random["mean_row"] - 15.5) < 4
    assert result["real"] is None and "--n-real 0" in result["command"]


def test_location_stats_on_a_known_set() -> None:
    example = _load()
    rc = torch.tensor([[31, 0], [31, 1], [0, 5], [31, 1]])
    s = example.location_stats(rc)
    assert s["kept_pixels"] == 4 and s["share_in_last_row"] == 0.75 and s["peak_pixel"] == [31, 1]
    assert s["largest_row_share"] == 0.75 and s["mean_column"] == 1.75
