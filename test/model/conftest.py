"""Fixtures for the model tests: seeded random official-layout checkpoints (see ``fake_ckpt.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # makes ``fake_ckpt`` importable under --import-mode=importlib

import fake_ckpt

PARITY_THRESHOLDS = {"match_coarse": {"thr": 0.0}, "match_cascade": {"test_thr": 0.0, "pre_thr": 0.0}}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every model test on one thread (``one_torch_thread`` in test/conftest.py)."""


@pytest.fixture(scope="session")
def outdoor_manifest(reference_dir: Path) -> Path:
    return reference_dir / "casmtr_4c_outdoor_state_dict.tsv"


@pytest.fixture(scope="session")
def fake_outdoor_sd(outdoor_manifest: Path) -> dict[str, torch.Tensor]:
    return fake_ckpt.fake_state_dict(outdoor_manifest)


@pytest.fixture(scope="session")
def outdoor_thr0_model(fake_outdoor_sd):
    """outdoor-4c with the fake checkpoint loaded strictly and the parity files' thresholds (all 0)."""
    from casmtr_ros.model import build_model

    model = build_model("casmtr-4c-outdoor", PARITY_THRESHOLDS)
    model.load_state_dict(fake_outdoor_sd, strict=True)
    return model.eval()
