"""Odometry: keyframe-relative poses composed into the odometry frame, with covariances and twist.

Covariance propagation carries, next to each keyframe's 6x6 pose covariance, the monocular *scale state*: the
log-scale error ``lambda`` of the keyframe's depths (triangulated at the previous keyframe pair) relative to the
odometry unit, and its correlation with the keyframe pose (a 7x7 joint covariance). A frame's translation
measured against those depths is ``(1 + lambda) t``, so every pose of a monocular segment shares the scale error
of its keyframe's depths, and the next keyframe inherits it (scale drift is a random walk, and poses along the
chain are correlated through it; composing them as independent would underestimate the drift). With metric depth
``lambda`` is zero. For the first segment the first keyframe pair's baseline is the unit (gauge: no scale error);
a later segment's unit is a guess (the last baseline) with the prior ``vo.mono_scale_sigma``.

The depths triangulated at a keyframe pair get their scale from that pair's whole pose, not only from the length
of ``t``: a rotation error changes every ray angle and so every depth (``scale_gradient`` of :meth:`emit`, from
:func:`casmtr_ros.geometry.covariance.depth_scale_gradient`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casmtr_ros.geometry.se3 import (
    compose_jacobians,
    compose_with_cov,
    invert,
    invert_jacobian,
    invert_with_cov,
    log_so3,
)
from casmtr_ros.vo.keyframes import Keyframe
from casmtr_ros.vo.types import Odometry


@dataclass
class _Emitted:
    odom: Odometry
    kf_index: int
    T_kf_cam: np.ndarray
    cov_kf_cam: np.ndarray
    joint: np.ndarray  # 7x7 covariance of (pose of the camera in odom, log-scale of depths triangulated from it)


def _joint(cov6: np.ndarray, scale_var: float = 0.0) -> np.ndarray:
    J = np.zeros((7, 7))
    J[:6, :6] = cov6
    J[6, 6] = scale_var
    return J


class OdometryComposer:
    """Turns ``T_cam_kf`` (scaled, odometry units) into :class:`Odometry` and remembers the last emitted pose.

    The odometry frame is the first keyframe's optical frame. After a reset the new segment starts at the last
    emitted pose (so the trajectory stays chained) with an inflated covariance.
    """

    def __init__(self) -> None:
        self.last: _Emitted | None = None
        self._kf_joint: dict[int, np.ndarray] = {}

    def last_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The last emitted pose and covariance (identity and zeros before any)."""
        if self.last is None:
            return np.eye(4), np.zeros((6, 6))
        return self.last.odom.T_odom_cam.copy(), self.last.odom.pose_covariance.copy()

    def clear(self) -> None:
        self.last = None
        self._kf_joint.clear()

    def start_keyframe(self, kf: Keyframe, scale_var: float) -> None:
        """Register the first keyframe of a segment: its pose covariance and the variance of the segment's unit."""
        self._kf_joint = {kf.index: _joint(kf.cov_odom_kf, scale_var)}

    def adopt_keyframe(self, kf: Keyframe) -> None:
        """The last emitted frame became keyframe ``kf``: it keeps that frame's joint pose/scale covariance."""
        assert self.last is not None
        self._kf_joint = {kf.index: self.last.joint.copy()}

    def keyframe_scale_var(self, kf: Keyframe) -> float:
        """Variance of the log-scale error of keyframe ``kf``'s depths (0 when metric or unknown)."""
        joint = self._kf_joint.get(kf.index)
        return 0.0 if joint is None else float(joint[6, 6])

    def emit(
        self, stamp_ns: int, kf: Keyframe, T_cam_kf: np.ndarray, cov_cam_kf: np.ndarray, metric: bool,
        frame_id: str | None = None, scale_gradient: np.ndarray | None = None,
    ) -> Odometry:
        """Odometry of a frame whose verified pose relative to keyframe ``kf`` is ``T_cam_kf``.

        ``cov_cam_kf`` is the covariance of this measurement alone (from its residuals); the scale error of the
        keyframe's depths is added here from the keyframe's joint covariance. ``scale_gradient`` (6,): derivative
        of the log-scale of depths triangulated from this measurement w.r.t. its perturbation (monocular, when
        the frame becomes a keyframe; default: the length of ``t`` only).
        """
        joint_kf = self._kf_joint.get(kf.index)
        if joint_kf is None:
            joint_kf = _joint(kf.cov_odom_kf)
        T_kf_cam = invert(T_cam_kf)
        Ji = invert_jacobian(T_cam_kf)
        Ja, Jb = compose_jacobians(kf.T_odom_kf, T_kf_cam)
        # Measurement error: noise + lambda_kf * t (the keyframe's depth scale error along the measured t).
        L = np.zeros(6)
        L[:3] = T_cam_kf[:3, 3]
        t = T_cam_kf[:3, 3]
        tn2 = float(t @ t)
        # Linear map of (pose_kf [6], lambda_kf [1], noise [6]) to (pose_cam [6], lambda_cam [1]).
        N = np.zeros((7, 13))
        N[:6, :6] = Ja
        N[:6, 6] = Jb @ Ji @ L
        N[:6, 7:] = Jb @ Ji
        if not metric:
            N[6, 6] = 1.0  # depths triangulated from this frame inherit the keyframe's scale error ...
            if scale_gradient is not None:  # ... plus what this measurement's error does to their scale
                N[6, 7:] = scale_gradient
            elif tn2 > 0:
                N[6, 7:10] = t / tn2
        S = np.zeros((13, 13))
        S[:7, :7] = joint_kf
        S[7:, 7:] = cov_cam_kf
        joint = N @ S @ N.T
        joint = 0.5 * (joint + joint.T)
        cov_kf_cam = Jb @ Ji @ (cov_cam_kf + joint_kf[6, 6] * np.outer(L, L)) @ Ji.T @ Jb.T
        T = kf.T_odom_kf @ T_kf_cam
        odom = Odometry(stamp_ns, T, joint[:6, :6].copy(), metric=metric, segment=kf.segment,
                        child_frame_id=frame_id or kf.frame_id)
        prev = self.last
        if prev is not None and prev.odom.segment == kf.segment and stamp_ns > prev.odom.stamp_ns:
            dt = (stamp_ns - prev.odom.stamp_ns) * 1e-9
            if prev.kf_index == kf.index:
                # Both poses share the keyframe; their errors are treated as independent (an upper bound).
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
        self.last = _Emitted(odom, kf.index, T_kf_cam, cov_kf_cam, joint)
        return odom
