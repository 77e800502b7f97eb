"""Shared fixtures: the location of ../shared/data (tests that need it skip with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sis_attr.datasets import SHARED_DATA_ENV_VAR, shared_data_dir


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
