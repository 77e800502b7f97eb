"""Shared fixtures: the location of the real data (tests that need it skip with a reason when absent).

The real CIFAR-10 batches and pretrained checkpoints are found through ``$SIS_ATTR_SHARED_DATA``
(:func:`sis_attr.datasets.shared_data_dir`). In a development checkout they sit in ``../shared/data`` beside the
project; when the variable is not set and that directory exists, this module sets the variable to it for the
whole test session (subprocesses such as the examples inherit it), so that the library's own lookups
(``load_pretrained_cifar_resnet(20)``) and the tests agree on one directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sis_attr.datasets import SHARED_DATA_ENV_VAR, shared_data_dir

CHECKOUT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""``../shared/data`` beside the project root: where a development checkout keeps the real data."""

if not os.environ.get(SHARED_DATA_ENV_VAR) and CHECKOUT_SHARED_DATA.is_dir():
    os.environ[SHARED_DATA_ENV_VAR] = str(CHECKOUT_SHARED_DATA)


def _shared_data() -> Path | None:
    root = shared_data_dir()
    if root is not None and (root / "weights").is_dir() and (root / "cifar10").is_dir():
        return root
    return None


SHARED_DATA = _shared_data()


def shared_path(*parts: str) -> Path:
    """Path of a file under the shared data directory, or skip the test with the reason."""
    root = shared_data_dir()
    if root is None:
        pytest.skip(f"../shared/data not found: set ${SHARED_DATA_ENV_VAR} or place it next to the project")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path} is missing")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if SHARED_DATA is None:
        pytest.skip("../shared/data (real CIFAR-10 and pretrained ResNet checkpoints) is not available beside the repo")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
