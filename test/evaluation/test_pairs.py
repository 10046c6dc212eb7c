"""Pose evaluation on pairs files: parsing, the AUC definition, the shared estimator, KITTI 06 pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casmtr_ros.bags.render import project, render_view, unproject
from casmtr_ros.bags.scenes import default_intrinsics, demo_trajectory, room_scene
from casmtr_ros.evaluation.common import error_auc
from casmtr_ros.evaluation.pairs import (
    PosePair,
    epipolar_errors,
    estimate_pose,
    evaluate_pairs,
    pose_errors,
    read_pairs,
)
from casmtr_ros.matching import build_matcher


def test_auc_definition() -> None:
    # Errors 1 and 3 with threshold 5: recall 0.5 from 1 to 3, 1.0 from 3 to 5 -> area 0.25 + 1.0 + 2.0 = 3.25.
    auc = error_auc([1.0, 3.0], [5])["auc@5"]
    assert auc == pytest.approx((0.5 * 1 * 0.5 + (0.5 + 1.0) / 2 * 2 + 1.0 * 2) / 5)
    assert error_auc([0.0] * 4, [5, 10]) == {"auc@5": 1.0, "auc@10": 1.0}
    assert error_auc([np.inf, np.inf], [5])["auc@5"] == 0.0
    assert error_auc([1.0, np.inf], [10])["auc@10"] < error_auc([1.0, 1.0], [10])["auc@10"]


def test_estimator_on_exact_rendered_correspondences() -> None:
    """Exact correspondences from the renderer's depth give (near) zero pose error; GT-inverted gives large."""
    scene = room_scene(seed=1)
    K = default_intrinsics(320, 240)
    poses = demo_trajectory(20)
    _, depth = render_view(scene, K, poses[0], (320, 240))
    rng = np.random.default_rng(0)
    px = np.c_[rng.uniform(0, 319, 400), rng.uniform(0, 239, 400)]
    z = depth[np.rint(px[:, 1]).astype(int), np.rint(px[:, 0]).astype(int)]
    X = unproject(K, poses[0], np.rint(px), z)
    uv, _ = project(K, poses[8], X)
    T_0to1 = np.linalg.inv(poses[8]) @ poses[0]
    R, t, inl = estimate_pose(np.rint(px), uv, K, K)
    r_err, t_err = pose_errors(T_0to1, R, t)
    assert r_err < 0.05 and t_err < 0.5 and inl.mean() > 0.95
    assert np.median(epipolar_errors(np.rint(px), uv, K, K, T_0to1)) < 1e-12
    assert np.median(epipolar_errors(np.rint(px), uv, K, K, np.linalg.inv(T_0to1))) > 1e-4
    assert estimate_pose(px[:3], uv[:3], K, K) is None


def test_read_pairs_errors(tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text("a.png b.png 0 0 1 2 3\n")
    with pytest.raises(ValueError, match=r"short\.txt:1: expected 38 tokens"):
        read_pairs(tmp_path / "short.txt")
    vals = " ".join(["1"] * 34)
    (tmp_path / "rigid.txt").write_text(f"a.png b.png 0 0 {vals}\n")
    with pytest.raises(ValueError, match="not a rigid transform"):
        read_pairs(tmp_path / "rigid.txt")
    with pytest.raises(FileNotFoundError):
        read_pairs(tmp_path / "none.txt")


def test_kitti06_pairs_sift(shared_data: Path) -> None:
    seq = shared_data / "kitti06_seq"
    pairs_file = seq / "kitti06_pairs_with_gt.txt"
    if not pairs_file.is_file():
        pytest.skip(f"{pairs_file} absent")
    pairs = read_pairs(pairs_file)
    assert len(pairs) == 168 and pairs[0].name0 == "image_0/000000.png"
    some = pairs[:4]
    res = evaluate_pairs(build_matcher("sift"), some, seq, resize=[640])
    s = res["summary"]
    assert s["pairs"] == 4 and s["failures"] == 0
    assert s["auc@20"] > 0.8 and s["precision"] > 0.8 and s["matches_mean"] > 100
    assert all(r["time_s"] > 0 for r in res["pairs"])
    # The same matches judged against a wrong ground truth (yawed by 90 degrees) fail.
    wrong = [PosePair(p.name0, p.name1, 0, 0, p.K0, p.K1, _yaw(90) @ p.T_0to1) for p in some]
    bad = evaluate_pairs(build_matcher("sift"), wrong, seq, resize=[640])["summary"]
    assert bad["auc@20"] < 0.05 and bad["precision"] < s["precision"] / 2


def _yaw(deg: float) -> np.ndarray:
    T = np.eye(4)
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    return T


def test_rotated_pair_maps_back(shared_data: Path) -> None:
    seq = shared_data / "kitti06_seq"
    if not seq.is_dir():
        pytest.skip(f"{seq} absent")
    p = read_pairs(seq / "kitti06_pairs_with_gt.txt")[0]
    turned = PosePair(p.name0, p.name1, 1, 3, p.K0, p.K1, p.T_0to1)
    res = evaluate_pairs(build_matcher("sift"), [turned], seq, resize=[640])["summary"]
    assert res["failures"] == 0 and res["median_pose_err_deg"] < 5
