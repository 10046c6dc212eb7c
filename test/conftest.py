"""Shared fixtures. Every test that starts rclpy runs with DDS discovery restricted to localhost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CASMTR_SHARED", REPO.parent / "shared"))


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test, restored afterwards: on a shared 2-core machine, spinning OpenMP
    threads competing with other processes make small forwards and tensor ops many times slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared``; tests that need it skip with a clear reason when it is absent (a user's fresh clone)."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set CASMTR_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    path = shared_dir / "data"
    if not path.is_dir():
        pytest.skip(f"{path} absent")
    return path


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    path = shared_dir / "reference"
    if not path.is_dir():
        pytest.skip(f"{path} absent")
    return path
