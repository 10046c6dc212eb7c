"""Real sequences from ../shared/data: KITTI 06 (monocular, SIFT) and the stationary EuRoC V1_01 snippet."""

from __future__ import annotations

import numpy as np

from casmtr_ros.geometry.se3 import log_so3
from casmtr_ros.matching import build_matcher
from casmtr_ros.vo import Pipeline, VOConfig


def test_kitti06_sift_tracks(kitti, kitti_check) -> None:
    frames, gt = kitti
    kitti_check(frames, gt, build_matcher("sift", conf={"max_keypoints": 1500}))


def test_euroc_static_no_drift_no_keyframes(euroc_static) -> None:
    frames = euroc_static[::2]  # 20 frames over the 2 s
    pipe = Pipeline(build_matcher("sift", conf={"max_keypoints": 600}), VOConfig())
    results = [pipe.process(f) for f in frames]
    assert len(results) == 20
    assert pipe.counters["keyframes"] <= 2 and pipe.counters["failures"] == 0
    poses = [r.odometry for r in results if r.odometry is not None]
    assert len(poses) == len(frames)  # rotation-only poses need no scale
    for od in poses:
        assert np.linalg.norm(od.T_odom_cam[:3, 3]) < 1e-9
        assert np.degrees(np.linalg.norm(log_so3(od.T_odom_cam[:3, :3]))) < 0.3
    assert max(np.linalg.norm(od.angular) for od in poses) < np.radians(0.3) / 0.1
