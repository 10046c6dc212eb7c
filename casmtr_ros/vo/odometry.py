"""Odometry: keyframe-relative poses composed into the odometry frame, with covariances and twist."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casmtr_ros.geometry.se3 import compose_with_cov, invert, invert_with_cov, log_so3
from casmtr_ros.vo.keyframes import Keyframe
from casmtr_ros.vo.types import Odometry


@dataclass
class _Emitted:
    odom: Odometry
    kf_index: int
    T_kf_cam: np.ndarray
    cov_kf_cam: np.ndarray


class OdometryComposer:
    """Turns ``T_cam_kf`` (scaled, odometry units) into :class:`Odometry` and remembers the last emitted pose.

    The odometry frame is the first keyframe's optical frame. After a reset the new segment starts at the last
    emitted pose (so the trajectory stays chained) with an inflated covariance.
    """

    def __init__(self) -> None:
        self.last: _Emitted | None = None

    def last_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The last emitted pose and covariance (identity and zeros before any)."""
        if self.last is None:
            return np.eye(4), np.zeros((6, 6))
        return self.last.odom.T_odom_cam.copy(), self.last.odom.pose_covariance.copy()

    def clear(self) -> None:
        self.last = None

    def emit(
        self, stamp_ns: int, kf: Keyframe, T_cam_kf: np.ndarray, cov_cam_kf: np.ndarray, metric: bool,
        frame_id: str | None = None,
    ) -> Odometry:
        """Odometry of a frame whose verified pose relative to keyframe ``kf`` is ``T_cam_kf``."""
        T_kf_cam, cov_kf_cam = invert_with_cov(T_cam_kf, cov_cam_kf)
        T, cov = compose_with_cov(kf.T_odom_kf, kf.cov_odom_kf, T_kf_cam, cov_kf_cam)
        odom = Odometry(stamp_ns, T, cov, metric=metric, segment=kf.segment, child_frame_id=frame_id or kf.frame_id)
        prev = self.last
        if prev is not None and prev.odom.segment == kf.segment and stamp_ns > prev.odom.stamp_ns:
            dt = (stamp_ns - prev.odom.stamp_ns) * 1e-9
            if prev.kf_index == kf.index:
                T_prev_kf, cov_prev_kf = invert_with_cov(prev.T_kf_cam, prev.cov_kf_cam)
                T_pc, cov_pc = compose_with_cov(T_prev_kf, cov_prev_kf, T_kf_cam, cov_kf_cam)
            else:
                T_pc = invert(prev.odom.T_odom_cam) @ T
                cov_pc = cov_kf_cam
            R = T_pc[:3, :3]
            twist = np.concatenate([R.T @ T_pc[:3, 3], log_so3(R)]) / dt
            rot = np.zeros((6, 6))
            rot[:3, :3] = R.T
            rot[3:, 3:] = R.T
            odom.twist = twist
            odom.twist_covariance = rot @ cov_pc @ rot.T / dt**2
        self.last = _Emitted(odom, kf.index, T_kf_cam, cov_kf_cam)
        return odom
