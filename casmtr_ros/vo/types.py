"""Plain data produced by the visual-odometry pipeline (no ROS, no torch).

Conventions (as in :mod:`casmtr_ros.types`): stamps are integer nanoseconds; camera frames follow REP-103's
optical convention (x right, y down, z forward); ``T_a_b`` is a 4x4 float64 matrix mapping points from frame ``b``
into frame ``a``.

Covariances are 6x6 float64 in ROS order ``(x, y, z, rx, ry, rz)``: a translation perturbation ``t' = t + dt`` and
a rotation perturbation ``R' = exp(dphi) R``, both expressed in the *parent* frame of the pose (the ``a`` of
``T_a_b``), which is how ``geometry_msgs/PoseWithCovariance`` reads them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from casmtr_ros.types import Matches


class TrackingState(enum.Enum):
    """State of the tracker after a frame."""

    INITIALISING = "initialising"  # no keyframe pair yet (monocular: waiting for enough parallax)
    TRACKING = "tracking"  # poses are being emitted
    LOST = "lost"  # verification failed for several frames; no pose emitted until recovery or reset


@dataclass
class RelativePose:
    """A verified relative pose between two camera frames ``0`` (earlier keyframe) and ``1`` (later frame).

    Attributes:
        R: 3x3 rotation of ``T_1_0`` (maps points of camera 0 into camera 1: ``x1 = R @ x0 + t``).
        t: (3,) translation of ``T_1_0``: metres when ``metric``; otherwise unit norm (monocular), or zero for a
            rotation-only model.
        metric: True when ``t`` is in metres (depth was available), False for monocular up-to-scale.
        covariance: 6x6 covariance of ``T_1_0`` (see module docstring), in the units of ``t``; derived from the
            inlier residuals. For a unit-norm ``t`` the variance along ``t`` is the configured scale prior.
        num_inliers: inliers of the verified model.
        method: the model that produced it: ``"essential"``, ``"pnp"``, ``"essential+depth"`` or ``"rotation"``.
        scale: odometry units per unit of ``t`` chosen by the scale policy (1.0 when metric; monocular: the
            first baseline is 1.0 and later ones follow triangulated depth). ``scale * t`` is what odometry uses.
        residual_rms: RMS of the inlier residuals, in pixels (normalised residual times focal length).
        median_parallax_px: median pixel displacement of the inliers after rotation compensation.
    """

    R: np.ndarray
    t: np.ndarray
    metric: bool
    covariance: np.ndarray
    num_inliers: int
    method: str = "essential"
    scale: float = 1.0
    residual_rms: float = float("nan")
    median_parallax_px: float = 0.0

    def __post_init__(self) -> None:
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        self.covariance = np.asarray(self.covariance, dtype=np.float64).reshape(6, 6)

    def matrix(self, scaled: bool = True) -> np.ndarray:
        """4x4 ``T_1_0``; with ``scaled`` the translation is ``scale * t`` (odometry units)."""
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t * (self.scale if scaled else 1.0)
        return T

    def scaled_covariance(self) -> np.ndarray:
        """The covariance in odometry units (translation block times ``scale**2``, cross terms times ``scale``)."""
        S = np.diag([self.scale] * 3 + [1.0] * 3)
        return S @ self.covariance @ S


@dataclass
class KeyframePair:
    """A verified pair of consecutive keyframes: what the node publishes as matches and relative pose.

    Attributes:
        stamp0_ns, stamp1_ns: stamps of the earlier and the later keyframe.
        matches: all matches between the two keyframe images (original pixels of each image, with confidences).
        inlier_mask: (N,) bool, the matches that support ``relative_pose``.
        relative_pose: ``T_1_0`` of the pair (see :class:`RelativePose`).
        frame_id0, frame_id1: optical frame ids of both images.
        segment: tracking segment both keyframes belong to (increments on every reset).
        timings: seconds per stage for the frame that made the pair (as :attr:`FrameResult.timings`).
    """

    stamp0_ns: int
    stamp1_ns: int
    matches: Matches
    inlier_mask: np.ndarray
    relative_pose: RelativePose
    frame_id0: str = "camera_optical_frame"
    frame_id1: str = "camera_optical_frame"
    segment: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Odometry:
    """Camera pose in the odometry frame at one frame, and the camera's velocity.

    Attributes:
        stamp_ns: stamp of the frame.
        T_odom_cam: 4x4 pose of the camera optical frame in the odometry frame (the first keyframe's optical
            frame is the odometry origin). Units: metres when ``metric``, else the monocular scale policy's units.
        pose_covariance: 6x6 covariance of ``T_odom_cam`` (parent = odometry frame), grows along the trajectory.
        twist: (6,) ``(vx, vy, vz, wx, wy, wz)`` of the camera in the *camera* frame (ROS ``child_frame_id``
            convention), units/s and rad/s, from this and the previous emitted pose (zeros on the first).
        twist_covariance: 6x6 covariance of ``twist`` (1e6 on the diagonal when unknown: first pose of a segment).
        metric: True when translations are in metres.
        segment: tracking segment (increments on every reset; a new segment starts at the last emitted pose).
        frame_id: odometry frame id; child_frame_id: camera optical frame id.
    """

    stamp_ns: int
    T_odom_cam: np.ndarray
    pose_covariance: np.ndarray
    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))
    twist_covariance: np.ndarray = field(default_factory=lambda: np.eye(6) * 1e6)
    metric: bool = False
    segment: int = 0
    frame_id: str = "odom"
    child_frame_id: str = "camera_optical_frame"

    @property
    def linear(self) -> np.ndarray:
        """(3,) linear velocity in the camera frame."""
        return self.twist[:3]

    @property
    def angular(self) -> np.ndarray:
        """(3,) angular velocity in the camera frame (rad/s)."""
        return self.twist[3:]


@dataclass
class FrameResult:
    """What :meth:`casmtr_ros.vo.pipeline.Pipeline.process` returns for every frame.

    Attributes:
        stamp_ns: stamp of the frame.
        state: tracker state after this frame.
        is_keyframe: the frame became a keyframe.
        keyframe_pair: the new verified keyframe pair when ``is_keyframe`` and a previous keyframe exists.
        odometry: the camera pose, or None when no verified pose exists for this frame (initialising, lost,
            verification failed). A pose that failed verification is never emitted.
        timings: seconds per stage: ``validate``, ``match`` (with the matcher's own stages as ``match.<name>``),
            ``geometry`` (verification and covariance), ``keyframe`` (policy, odometry, new keyframe), ``total``.
        counters: cumulative diagnostic counters of the pipeline: ``frames``, ``input_errors``, ``keyframes``,
            ``poses``, ``failures`` and ``fail_<reason>``, ``lost_events``, ``recoveries``, ``resets_auto`` /
            ``resets_manual`` / ``resets_stamp_jump`` / ``resets_camera_changed``, ``depth_all_invalid``,
            ``initialisations``, ``kf_no_depth``, ``kf_reason_<reason>``.
        status: one line saying what happened (``"tracked"``, ``"keyframe"``, ``"failed: too few inliers"``...).
        reset: True when the pipeline reset itself (or was reset) at this frame; a new segment starts here.
        num_matches: matches against the last keyframe; num_inliers: of the verified model (0 when none).
    """

    stamp_ns: int
    state: TrackingState
    is_keyframe: bool = False
    keyframe_pair: KeyframePair | None = None
    odometry: Odometry | None = None
    timings: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    status: str = ""
    reset: bool = False
    num_matches: int = 0
    num_inliers: int = 0
