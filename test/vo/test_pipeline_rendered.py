"""The pipeline on rendered textured scenes (exact poses and depth), with the real SIFT baseline."""

from __future__ import annotations

import numpy as np
import pytest

from casmtr_ros.geometry.se3 import invert, log_so3
from casmtr_ros.types import Frame
from casmtr_ros.vo import Pipeline, TrackingState, VOConfig


def _gt_rel(seq, i: int, j: int = 0) -> np.ndarray:
    """T_cam_j_cam_i: pose of frame i in the optical frame of frame j."""
    return invert(seq.T_world_cam[j]) @ seq.T_world_cam[i]


def _rot_err_deg(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.degrees(np.linalg.norm(log_so3(A[:3, :3] @ B[:3, :3].T))))


def test_rgbd_is_metric_and_accurate(room_sequence, sift) -> None:
    seq = room_sequence
    pipe = Pipeline(sift, VOConfig(kf_max_translation_m=0.5))
    results = [pipe.process(seq.frame(i, depth=True)) for i in range(len(seq.images))]
    assert all(r.state == TrackingState.TRACKING for r in results)
    assert all(r.odometry is not None and r.odometry.metric for r in results)
    for i, r in enumerate(results):
        gt = _gt_rel(seq, i)
        assert np.linalg.norm(r.odometry.T_odom_cam[:3, 3] - gt[:3, 3]) < 0.02, i
        assert _rot_err_deg(r.odometry.T_odom_cam, gt) < 0.2, i
    pairs = [r.keyframe_pair for r in results if r.keyframe_pair is not None]
    assert len(pairs) >= 2 and pipe.counters["keyframes"] == len(pairs) + 1
    stamps = [0] + [p.stamp1_ns for p in pairs]
    for p, s0 in zip(pairs, stamps):
        rel = p.relative_pose
        assert p.stamp0_ns == s0 and rel.metric and rel.method == "pnp"
        i0, i1 = p.stamp0_ns // 100_000_000, p.stamp1_ns // 100_000_000
        gt = _gt_rel(seq, i0, i1)  # T_1_0
        assert np.linalg.norm(rel.t - gt[:3, 3]) < 0.01
        assert _rot_err_deg(rel.matrix(), gt) < 0.1
        assert p.inlier_mask.shape == (len(p.matches),) and p.inlier_mask.sum() == rel.num_inliers
        assert np.all(np.linalg.eigvalsh(rel.covariance) > 0)
    # covariances come from the data: they differ between pairs, and the odometry's grows along the path
    assert not np.allclose(pairs[0].relative_pose.covariance, pairs[1].relative_pose.covariance)
    traces = [np.trace(r.odometry.pose_covariance) for r in results]
    assert traces[0] == 0 and traces[-1] > traces[len(traces) // 2] > 0
    # twist: velocity in the camera frame from consecutive poses
    for i in range(2, len(results)):
        gt = _gt_rel(seq, i, i - 1)
        v_gt = gt[:3, :3].T @ gt[:3, 3] / 0.1
        assert np.linalg.norm(results[i].odometry.linear - v_gt) < 0.1, i
    assert set(results[-1].timings) >= {"validate", "match", "match.detect", "geometry", "total"}
    assert set(pairs[0].timings) >= {"match", "geometry", "keyframe", "total"}


def test_monocular_unit_first_baseline_and_consistent_scale(room_sequence, sift) -> None:
    seq = room_sequence
    pipe = Pipeline(sift, VOConfig())
    results = [pipe.process(seq.frame(i, depth=False)) for i in range(len(seq.images))]
    assert results[0].state == TrackingState.INITIALISING
    init = next(i for i, r in enumerate(results) if r.keyframe_pair is not None)
    assert all(r.odometry is None for r in results[1:init])  # no scale yet: no pose
    first = results[init].keyframe_pair.relative_pose
    assert not first.metric and first.scale == pytest.approx(1.0) and np.linalg.norm(first.t) == pytest.approx(1.0)
    assert first.covariance[:3, :3] @ first.t @ first.t == pytest.approx(VOConfig().mono_scale_sigma**2, rel=0.2)
    assert results[-1].state == TrackingState.TRACKING
    idx = [i for i, r in enumerate(results) if r.odometry is not None and i > 0]
    est = np.array([results[i].odometry.T_odom_cam[:3, 3] for i in idx])
    gt = np.array([_gt_rel(seq, i)[:3, 3] for i in idx])
    s = float(np.sum(est * gt) / np.sum(est * est))  # one scale for the whole run
    assert s == pytest.approx(np.linalg.norm(_gt_rel(seq, init)[:3, 3]), rel=0.02)  # unit = first baseline
    assert np.max(np.linalg.norm(est * s - gt, axis=1)) < 0.03
    assert all(not results[i].odometry.metric for i in idx)


def test_lost_recovery_and_auto_reset(room_sequence, sift) -> None:
    seq = room_sequence
    pipe = Pipeline(sift, VOConfig(lost_after_failures=2, reset_after_lost_frames=3))
    flat = np.full_like(seq.images[0], 90)
    stamp = 0

    def feed(image, i=None):
        nonlocal stamp
        stamp += 100_000_000
        f = seq.frame(i, depth=True) if i is not None else seq.frame(0, depth=True)
        f.stamp_ns, f.image = stamp, (image if image is not None else f.image)
        if i is None:
            f.depth = None
        return pipe.process(f)

    for i in range(4):
        feed(None, i)
    r1, r2 = feed(flat), feed(flat)  # two failures: lost
    assert r1.odometry is None and r1.status.startswith("failed") and r1.state == TrackingState.TRACKING
    assert r2.odometry is None and r2.state == TrackingState.LOST and pipe.counters["lost_events"] == 1
    r = feed(None, 4)  # the camera is back: recovery, still chained to the same keyframe
    assert r.state == TrackingState.TRACKING and r.status == "recovered" and pipe.counters["recoveries"] == 1
    assert np.linalg.norm(r.odometry.T_odom_cam[:3, 3] - _gt_rel(seq, 4)[:3, 3]) < 0.02
    assert r.odometry.segment == 0
    last = r.odometry
    out = [feed(flat) for _ in range(4)]  # lost long enough: automatic reset
    assert [o.reset for o in out] == [False, False, False, True]
    assert all(o.odometry is None for o in out) and pipe.counters["resets_auto"] == 1
    # the reset frame (flat) is a useless keyframe: tracking fails again until a reset on a real view
    out = [(i, feed(None, i)) for i in range(5, 12)]
    resets = [i for i, o in out if o.reset]
    assert len(resets) == 1 and pipe.counters["resets_auto"] == 2
    i_kf = resets[0]
    tail = [(i, o.odometry) for i, o in out if i > i_kf and o.odometry is not None]
    assert len(tail) >= 2 and all(od.segment == 2 for _, od in tail)
    # the new segment keeps relative motion right ...
    i0, od0 = tail[0]
    for i, od in tail[1:]:
        rel_est = invert(od0.T_odom_cam) @ od.T_odom_cam
        assert np.linalg.norm(rel_est[:3, 3] - _gt_rel(seq, i, i0)[:3, 3]) < 0.02
    # ... and starts at the last emitted pose, with the covariance inflated by the loss
    T_odom_kf = od0.T_odom_cam @ invert(_gt_rel(seq, i0, i_kf))
    assert np.linalg.norm(T_odom_kf[:3, 3] - last.T_odom_cam[:3, 3]) < 0.02
    assert np.trace(od0.pose_covariance[:3, :3]) > np.trace(last.pose_covariance[:3, :3]) + 3 * 0.9


def test_manual_reset_starts_a_new_segment(room_sequence, sift) -> None:
    seq = room_sequence
    pipe = Pipeline(sift, VOConfig())
    for i in range(3):
        pipe.process(seq.frame(i, depth=True))
    pipe.reset()
    r = pipe.process(seq.frame(1, depth=True))  # stamps may restart after reset()
    assert r.reset and r.is_keyframe and r.odometry is None and pipe.counters["resets_manual"] == 1
    r = pipe.process(seq.frame(2, depth=True))
    assert r.odometry is not None and r.odometry.segment == 1 and r.state == TrackingState.TRACKING


def test_orb_baseline_tracks_rgbd(room_sequence) -> None:
    from casmtr_ros.matching import build_matcher

    seq = room_sequence
    pipe = Pipeline(build_matcher("orb", conf={"max_keypoints": 1500}), VOConfig(kf_max_translation_m=0.5))
    results = [pipe.process(seq.frame(i, depth=True)) for i in range(0, len(seq.images), 2)]
    assert all(r.odometry is not None for r in results)
    # ORB keypoints are coarse (pyramid-level quantisation): cm-level, not mm-level like SIFT
    errors = []
    for k, r in enumerate(results):
        gt = _gt_rel(seq, 2 * k)
        errors.append(np.linalg.norm(r.odometry.T_odom_cam[:3, 3] - gt[:3, 3]))
        assert _rot_err_deg(r.odometry.T_odom_cam, gt) < 1.0, k
    assert max(errors) < 0.1 and np.mean(errors) < 0.05


def test_sparse_depth_falls_back_to_essential_with_depth_scale(room_sequence, sift) -> None:
    """Depth valid on a patch of floor only: PnP on it is ill-conditioned, the essential matrix takes the scale."""
    seq = room_sequence
    pipe = Pipeline(sift, VOConfig(kf_max_translation_m=0.15, min_depth_points=40))
    methods = []
    for i in range(0, 8):
        f = seq.frame(i, depth=True)
        sparse = np.full_like(f.depth, np.nan)
        sparse[220:340, 20:180] = f.depth[220:340, 20:180]
        f.depth = sparse
        r = pipe.process(f)
        assert r.odometry is not None and r.odometry.metric
        gt = _gt_rel(seq, i)
        assert np.linalg.norm(r.odometry.T_odom_cam[:3, 3] - gt[:3, 3]) < 0.03, i
        if r.keyframe_pair is not None:
            methods.append(r.keyframe_pair.relative_pose.method)
    assert "essential+depth" in methods


def test_pure_rotation_gives_rotation_only_poses(sift) -> None:
    """A panning camera (no translation): monocular poses without any scale, accurate rotation, t = 0."""
    from casmtr_ros.bags.render import render_view
    from casmtr_ros.bags.scenes import default_intrinsics, look_at, room_scene
    from casmtr_ros.types import CameraModel

    scene = room_scene(seed=1)
    K = default_intrinsics(480, 360)
    cam = CameraModel(K, 480, 360)
    eye = np.array([-1.0, 0.0, 1.4])
    poses = [look_at(eye, eye + np.array([np.cos(a), np.sin(a), -0.05])) for a in np.radians(np.arange(0, 12, 1.5))]
    pipe = Pipeline(sift, VOConfig())
    for i, T in enumerate(poses):
        img, _ = render_view(scene, K, T, (480, 360))
        r = pipe.process(Frame(i * 100_000_000, img, cam))
        assert r.odometry is not None, r.status
        gt = invert(poses[0]) @ T
        assert np.all(r.odometry.T_odom_cam[:3, 3] == 0)
        assert _rot_err_deg(r.odometry.T_odom_cam, gt) < 0.05, i
    assert pipe.state == TrackingState.INITIALISING  # no parallax: monocular scale not set up
    assert pipe.counters["keyframes"] <= 2 and pipe.counters["failures"] == 0


def test_random_matches_never_give_a_pose(room_sequence, sift) -> None:
    """Unrelated textured frames: matches exist but are geometrically random; verification rejects them all."""
    seq = room_sequence
    pipe = Pipeline(sift, VOConfig(reset_after_lost_frames=0))
    pipe.process(seq.frame(0, depth=False))
    rng = np.random.default_rng(0)
    for i in range(1, 5):
        noise = cv2_blur(rng.integers(0, 255, seq.images[0].shape, dtype=np.uint8))
        r = pipe.process(Frame(i * 100_000_000, noise, seq.camera))
        assert r.odometry is None and r.keyframe_pair is None and r.status.startswith("failed")
    assert pipe.counters["failures"] == 4 and pipe.state == TrackingState.LOST


def cv2_blur(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 1.5)
