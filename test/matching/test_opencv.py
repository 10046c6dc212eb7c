"""SIFT and ORB baselines on a real HPatches viewpoint pair with its ground-truth homography."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from casmtr_ros.matching import available_matchers, build_matcher


@pytest.fixture(scope="module")
def churchill(shared_data: Path):
    d = shared_data / "hpatches_v_churchill"
    if not (d / "1.ppm").is_file():
        pytest.skip(f"{d} absent")
    im1 = cv2.cvtColor(cv2.imread(str(d / "1.ppm")), cv2.COLOR_BGR2RGB)
    im2 = cv2.cvtColor(cv2.imread(str(d / "2.ppm")), cv2.COLOR_BGR2RGB)
    return cv2.resize(im1, None, fx=0.5, fy=0.5), cv2.resize(im2, None, fx=0.5, fy=0.5), np.loadtxt(d / "H_1_2")


def _warp(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    S = np.diag([0.5, 0.5, 1.0])  # images are downscaled by 2
    Hs = S @ H @ np.linalg.inv(S)
    p = np.c_[pts, np.ones(len(pts))] @ Hs.T
    return p[:, :2] / p[:, 2:]


@pytest.mark.parametrize("name", ["sift", "orb"])
def test_matches_agree_with_homography(churchill, name: str) -> None:
    im1, im2, H = churchill
    assert name in available_matchers()
    matcher = build_matcher(name, conf={"max_keypoints": 2000})
    m = matcher.match(im1, im2)
    assert len(m) > 200
    err = np.linalg.norm(_warp(H, m.kpts0) - m.kpts1, axis=1)
    assert np.mean(err < 3.0) > 0.85
    assert np.all((m.confidence >= 0) & (m.confidence <= 1))
    # mutual check: each keypoint used once on both sides
    assert len(np.unique(m.kpts0, axis=0)) == len(m) and len(np.unique(m.kpts1, axis=0)) == len(m)
    strict = build_matcher(name, conf={"max_keypoints": 2000, "ratio": 0.6}).match(im1, im2)
    assert len(strict) < len(m)
    assert np.mean(np.linalg.norm(_warp(H, strict.kpts0) - strict.kpts1, axis=1) < 3.0) >= np.mean(err < 3.0)


def test_flat_image_gives_no_matches_and_bad_conf_is_refused() -> None:
    flat = np.full((120, 160), 128, np.uint8)
    m = build_matcher("sift").match(flat, flat)
    assert len(m) == 0
    with pytest.raises(ValueError, match="unknown option"):
        build_matcher("orb", conf={"nfeatures": 10})
    with pytest.raises(ValueError, match="ratio"):
        build_matcher("sift", conf={"ratio": 1.5})
