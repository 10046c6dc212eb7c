"""Output messages: matches cloud layout, stamp convention, relative pose inversion with covariance, odometry axes."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import PointCloud2

from casmtr_ros.ros.messages import (
    MATCH_FIELDS,
    R_BASE_OPTICAL,
    base_pose,
    diagnostic_array,
    draw_matches,
    inverse_with_covariance,
    keyframe_frame_id,
    matches_cloud,
    odometry_msg,
    parse_keyframe_frame_id,
    read_cloud_fields,
    relative_pose_msg,
    to_ns,
)
from casmtr_ros.types import Matches
from casmtr_ros.vo.types import KeyframePair, Odometry, RelativePose


def _pair(n: int = 40, seed: int = 0) -> KeyframePair:
    rng = np.random.default_rng(seed)
    k0 = rng.uniform(0, 300, (n, 2))
    m = Matches(k0, k0 + rng.normal(0, 3, (n, 2)), rng.uniform(0, 1, n))
    R = Rotation.from_rotvec([0.02, -0.05, 0.01]).as_matrix()
    A = rng.normal(size=(6, 6))
    rel = RelativePose(R=R, t=[0.1, -0.02, 0.99], metric=False, covariance=A @ A.T * 1e-4 + np.eye(6) * 1e-6,
                       num_inliers=30, scale=2.0)
    return KeyframePair(stamp0_ns=1_700_000_000_123_456_789, stamp1_ns=1_700_000_001_000_000_001, matches=m,
                        inlier_mask=np.arange(n) % 3 != 0, relative_pose=rel)


def test_keyframe_frame_id_round_trip() -> None:
    fid = keyframe_frame_id("cam_optical", 1_700_000_000_000_000_042)
    assert fid == "cam_optical@1700000000.000000042"
    assert parse_keyframe_frame_id(fid) == ("cam_optical", 1_700_000_000_000_000_042)
    assert parse_keyframe_frame_id("a@b@5.000000001") == ("a@b", 5_000_000_001)
    with pytest.raises(ValueError, match="keyframe frame id"):
        parse_keyframe_frame_id("camera_optical_frame")


def test_matches_cloud_layout_survives_serialisation() -> None:
    pair = _pair()
    msg = deserialize_message(serialize_message(matches_cloud(pair, "cam")), PointCloud2)
    assert [f.name for f in msg.fields] == list(MATCH_FIELDS)
    assert [f.offset for f in msg.fields] == [0, 4, 8, 12, 16, 20] and {f.datatype for f in msg.fields} == {7}
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 40, 24, 960) and not msg.is_bigendian
    assert to_ns(msg.header.stamp) == pair.stamp1_ns
    assert parse_keyframe_frame_id(msg.header.frame_id) == ("cam", pair.stamp0_ns)
    f = read_cloud_fields(msg)
    np.testing.assert_allclose(np.c_[f["x0"], f["y0"]], pair.matches.kpts0)
    np.testing.assert_allclose(np.c_[f["x1"], f["y1"]], pair.matches.kpts1)
    np.testing.assert_allclose(f["confidence"], pair.matches.confidence)
    np.testing.assert_array_equal(f["inlier"], pair.inlier_mask.astype(np.float32))
    empty = KeyframePair(1, 2, Matches.empty(), np.zeros(0, bool), pair.relative_pose)
    assert matches_cloud(empty, "cam").width == 0


def test_inverse_covariance_matches_sampling() -> None:
    pair = _pair(seed=3)
    T = pair.relative_pose.matrix()
    cov = pair.relative_pose.scaled_covariance()
    Ti, cov_i = inverse_with_covariance(T, cov)
    np.testing.assert_allclose(Ti @ T, np.eye(4), atol=1e-12)
    rng = np.random.default_rng(0)
    d = rng.multivariate_normal(np.zeros(6), cov, 20000)
    # perturb T (t' = t + dt, R' = exp(dphi) R), invert, and express the change of the inverse the same way
    Rp = Rotation.from_rotvec(d[:, 3:]).as_matrix() @ T[:3, :3]
    tp = T[:3, 3] + d[:, :3]
    Rpi = np.transpose(Rp, (0, 2, 1))
    tpi = -np.einsum("nij,nj->ni", Rpi, tp)
    dphi = Rotation.from_matrix(Rpi @ Ti[:3, :3].T).as_rotvec()
    empirical = np.cov(np.c_[tpi - Ti[:3, 3], dphi].T)
    np.testing.assert_allclose(empirical, cov_i, atol=0.05 * np.abs(cov_i).max())


def test_relative_pose_message_is_t01_in_odometry_units() -> None:
    pair = _pair()
    msg = relative_pose_msg(pair, "cam")
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    T01 = np.eye(4)
    T01[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    T01[:3, 3] = [p.x, p.y, p.z]
    np.testing.assert_allclose(T01, np.linalg.inv(pair.relative_pose.matrix(scaled=True)), atol=1e-9)
    assert np.linalg.norm(T01[:3, 3]) == pytest.approx(2.0 * np.linalg.norm(pair.relative_pose.t))
    cov = np.reshape(msg.pose.covariance, (6, 6))
    np.testing.assert_allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > 0
    assert to_ns(msg.header.stamp) == pair.stamp1_ns


def test_odometry_uses_rep103_body_axes() -> None:
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, 2.0]  # the optical frame moved 2 m along its z (forward)
    T[:3, :3] = Rotation.from_rotvec([0, 0.3, 0]).as_matrix()  # yaw to the right about optical y (down)
    cov = np.diag([1e-4, 2e-4, 3e-4, 1e-6, 2e-6, 3e-6])
    odom = Odometry(stamp_ns=5, T_odom_cam=T, pose_covariance=cov, twist=np.array([0, 0, 1.0, 0, 0.1, 0]),
                    twist_covariance=cov)
    msg = odometry_msg(odom, "odom", "camera_link")
    assert (msg.header.frame_id, msg.child_frame_id) == ("odom", "camera_link")
    assert (msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z) == pytest.approx((2, 0, 0))
    yaw = Rotation.from_quat([msg.pose.pose.orientation.x, msg.pose.pose.orientation.y,
                              msg.pose.pose.orientation.z, msg.pose.pose.orientation.w]).as_rotvec()
    np.testing.assert_allclose(yaw, [0, 0, -0.3], atol=1e-12)  # body z is up: a right turn is negative yaw
    assert (msg.twist.twist.linear.x, msg.twist.twist.angular.z) == pytest.approx((1.0, -0.1))
    # variance along optical z (3e-4) is the forward (x) variance of the body frame
    assert np.reshape(msg.pose.covariance, (6, 6))[0, 0] == pytest.approx(3e-4)
    np.testing.assert_allclose(base_pose(np.eye(4)), np.eye(4))
    np.testing.assert_allclose(R_BASE_OPTICAL @ [0, 0, 1], [1, 0, 0])


def test_debug_image_and_diagnostics() -> None:
    pair = _pair()
    img = np.full((320, 310), 128, np.uint8)
    canvas = draw_matches(img, np.dstack([img] * 3), pair, max_matches=10)
    assert canvas.shape == (320, 620, 3) and canvas.dtype == np.uint8 and (canvas != 128).any()
    arr = diagnostic_array(Time(sec=1, nanosec=2), "n", "hw", "warn", "msg", {"a": 1.5, "b": "x"})
    status = arr.status[0]
    assert status.level == b"\x01" and [(kv.key, kv.value) for kv in status.values] == [("a", "1.5"), ("b", "x")]

