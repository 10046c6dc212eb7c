"""Build the node's output messages from the VO pipeline's plain data (and read the matches cloud back).

Conventions (documented in the README's `ros` section):

- ``~/matches`` and ``~/relative_pose`` carry the later keyframe's stamp in ``header.stamp`` and name the earlier
  keyframe in ``header.frame_id`` as ``"<optical frame>@<sec>.<nanosec>"`` (the frame the relative pose is expressed
  in: the optical frame at the earlier keyframe's time); :func:`parse_keyframe_frame_id` splits it again.
- ``~/relative_pose`` is ``T_0_1``, the later keyframe's optical frame in the earlier one's, translation in odometry
  units (metres with depth), covariance in ROS order ``(x, y, z, rx, ry, rz)`` in the earlier keyframe's frame.
- ``odom`` (REP-105) gives ``frames.base`` (REP-103 body axes: x forward, y left, z up) in ``frames.odom``; the
  odometry frame's axes are those of the base at the first keyframe. Twist is in the child frame.
"""

from __future__ import annotations

import array
import re

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Odometry as OdometryMsg
from nav_msgs.msg import Path
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from casmtr_ros.ros.image_conversion import fill_image_msg
from casmtr_ros.vo.types import KeyframePair, Odometry

#: PointCloud2 fields of ``~/matches``, all float32, in this order (point_step 24 bytes, little-endian).
MATCH_FIELDS = ("x0", "y0", "x1", "y1", "confidence", "inlier")
#: Rotation of the optical frame (x right, y down, z forward) in the body frame (x forward, y left, z up), REP-103.
R_BASE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
_FRAME_RE = re.compile(r"^(?P<frame>.*)@(?P<sec>-?\d+)\.(?P<nsec>\d{9})$")


def to_time(stamp_ns: int) -> Time:
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nsec)


def to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def keyframe_frame_id(optical_frame: str, stamp0_ns: int) -> str:
    """``"<optical frame>@<sec>.<nanosec>"``: the optical frame at the earlier keyframe's time."""
    sec, nsec = divmod(int(stamp0_ns), 1_000_000_000)
    return f"{optical_frame}@{sec}.{nsec:09d}"


def parse_keyframe_frame_id(frame_id: str) -> tuple[str, int]:
    """Inverse of :func:`keyframe_frame_id`: ``(optical frame, earlier keyframe stamp in ns)``."""
    m = _FRAME_RE.match(frame_id)
    if m is None:
        raise ValueError(f"not a keyframe frame id (expected '<frame>@<sec>.<nanosec>'): {frame_id!r}")
    return m["frame"], int(m["sec"]) * 1_000_000_000 + int(m["nsec"])


def matches_cloud(pair: KeyframePair, optical_frame: str) -> PointCloud2:
    """The keyframe pair's matches as an unorganised PointCloud2 with the float32 fields :data:`MATCH_FIELDS`."""
    m = pair.matches
    n = len(m)
    inlier = np.zeros(n, np.float32)
    if pair.inlier_mask is not None and len(pair.inlier_mask) == n:
        inlier[np.asarray(pair.inlier_mask, bool)] = 1.0
    table = np.empty((n, len(MATCH_FIELDS)), "<f4")
    table[:, 0:2], table[:, 2:4], table[:, 4], table[:, 5] = m.kpts0, m.kpts1, m.confidence, inlier
    msg = PointCloud2()
    msg.header = Header(stamp=to_time(pair.stamp1_ns), frame_id=keyframe_frame_id(optical_frame, pair.stamp0_ns))
    msg.height, msg.width = 1, n
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate(MATCH_FIELDS)]
    msg.is_bigendian = False
    msg.point_step = 4 * len(MATCH_FIELDS)
    msg.row_step = msg.point_step * n
    data = array.array("B")
    data.frombytes(table.tobytes())
    msg.data = data
    msg.is_dense = True
    return msg


def read_cloud_fields(msg: PointCloud2) -> dict[str, np.ndarray]:
    """The float32 fields of a PointCloud2 (as written by :func:`matches_cloud`) as arrays by name."""
    offsets = {f.name: f.offset for f in msg.fields if f.datatype == PointField.FLOAT32}
    n = msg.width * msg.height
    raw = np.frombuffer(memoryview(msg.data), np.uint8)[: n * msg.point_step].reshape(n, msg.point_step)
    order = ">f4" if msg.is_bigendian else "<f4"
    return {name: raw[:, off:off + 4].copy().view(order).reshape(n).astype(np.float32)
            for name, off in offsets.items()}


def _pose_fields(pose, T: np.ndarray) -> None:  # geometry_msgs/Pose from a 4x4 matrix
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = float(x), float(y), float(z), \
        float(w)


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def inverse_with_covariance(T: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``inv(T)`` and its covariance, first-order, for perturbations ``t' = t + dt``, ``R' = exp(dphi) R`` in the
    parent frame (ROS order ``(x, y, z, rx, ry, rz)``) on both sides."""
    R, t = T[:3, :3], T[:3, 3]
    J = np.zeros((6, 6))
    J[:3, :3] = -R.T
    J[:3, 3:] = -R.T @ _skew(t)
    J[3:, 3:] = -R.T
    Ti = np.eye(4)
    Ti[:3, :3], Ti[:3, 3] = R.T, -R.T @ t
    return Ti, J @ cov @ J.T


def relative_pose_msg(pair: KeyframePair, optical_frame: str) -> PoseWithCovarianceStamped:
    """``T_0_1`` of the pair (later keyframe in the earlier one's optical frame), in odometry units."""
    rel = pair.relative_pose
    T01, cov = inverse_with_covariance(rel.matrix(scaled=True), rel.scaled_covariance())
    msg = PoseWithCovarianceStamped()
    msg.header = Header(stamp=to_time(pair.stamp1_ns), frame_id=keyframe_frame_id(optical_frame, pair.stamp0_ns))
    _pose_fields(msg.pose.pose, T01)
    msg.pose.covariance = _covariance_array(cov)
    return msg


def _covariance_array(cov: np.ndarray) -> array.array:
    cov = 0.5 * (np.asarray(cov, np.float64) + np.asarray(cov, np.float64).T)
    return array.array("d", cov.reshape(36).tolist())


def _rotate_cov(cov: np.ndarray, R: np.ndarray) -> np.ndarray:
    B = np.zeros((6, 6))
    B[:3, :3] = B[3:, 3:] = R
    return B @ np.asarray(cov, np.float64).reshape(6, 6) @ B.T


def base_pose(T_odom_cam: np.ndarray) -> np.ndarray:
    """The base (body axes) pose in the odometry frame whose axes are the base's at the first keyframe."""
    C = np.eye(4)
    C[:3, :3] = R_BASE_OPTICAL
    return C @ T_odom_cam @ np.linalg.inv(C)


def odometry_msg(odom: Odometry, odom_frame: str, base_frame: str) -> OdometryMsg:
    """nav_msgs/Odometry of the base frame (REP-103 body axes) in ``odom_frame``; twist in the base frame."""
    msg = OdometryMsg()
    msg.header = Header(stamp=to_time(odom.stamp_ns), frame_id=odom_frame)
    msg.child_frame_id = base_frame
    _pose_fields(msg.pose.pose, base_pose(odom.T_odom_cam))
    msg.pose.covariance = _covariance_array(_rotate_cov(odom.pose_covariance, R_BASE_OPTICAL))
    tw = np.asarray(odom.twist, np.float64).reshape(6)
    v, w = R_BASE_OPTICAL @ tw[:3], R_BASE_OPTICAL @ tw[3:]
    msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = (float(a) for a in v)
    msg.twist.twist.angular.x, msg.twist.twist.angular.y, msg.twist.twist.angular.z = (float(a) for a in w)
    msg.twist.covariance = _covariance_array(_rotate_cov(odom.twist_covariance, R_BASE_OPTICAL))
    return msg


def pose_stamped(odom_msg: OdometryMsg) -> PoseStamped:
    """The pose of an odometry message as a PoseStamped (a ~/path entry)."""
    return PoseStamped(header=odom_msg.header, pose=odom_msg.pose.pose)


def path_msg(poses: list[PoseStamped], odom_frame: str) -> Path:
    msg = Path()
    msg.header = Header(stamp=poses[-1].header.stamp if poses else Time(), frame_id=odom_frame)
    msg.poses = list(poses)
    return msg


def draw_matches(image0: np.ndarray, image1: np.ndarray, pair: KeyframePair, max_matches: int = 300) -> np.ndarray:
    """Both keyframes side by side (BGR uint8) with match lines: green inliers, red outliers."""
    def bgr(img: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else np.ascontiguousarray(img[:, :, ::-1])

    a, b = bgr(image0), bgr(image1)
    h = max(a.shape[0], b.shape[0])
    canvas = np.zeros((h, a.shape[1] + b.shape[1], 3), np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1]:] = b
    m = pair.matches
    n = len(m)
    inl = np.asarray(pair.inlier_mask, bool) if pair.inlier_mask is not None and len(pair.inlier_mask) == n \
        else np.zeros(n, bool)
    idx = np.arange(n)
    if n > max_matches:
        idx = np.random.default_rng(0).choice(n, max_matches, replace=False)
    for i in idx:
        p0 = (round(float(m.kpts0[i, 0])), round(float(m.kpts0[i, 1])))
        p1 = (round(float(m.kpts1[i, 0])) + a.shape[1], round(float(m.kpts1[i, 1])))
        color = (0, 200, 0) if inl[i] else (0, 0, 230)
        cv2.line(canvas, p0, p1, color, 1, cv2.LINE_AA)
        cv2.circle(canvas, p0, 2, color, -1)
        cv2.circle(canvas, p1, 2, color, -1)
    label = f"{n} matches, {int(inl.sum())} inliers"
    cv2.putText(canvas, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return canvas


def debug_image_msg(canvas_bgr: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    msg = Image()
    msg.header = Header(stamp=to_time(stamp_ns), frame_id=frame_id)
    return fill_image_msg(msg, canvas_bgr, "bgr8")


LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
          "stale": DiagnosticStatus.STALE}


def diagnostic_array(stamp: Time, name: str, hardware_id: str, level: str, message: str,
                     values: dict[str, object]) -> DiagnosticArray:
    """One DiagnosticStatus (``level`` in :data:`LEVELS`) with ``values`` as key/value strings."""
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
