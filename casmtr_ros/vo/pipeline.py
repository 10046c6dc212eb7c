"""The visual-odometry pipeline: frames in, keyframe pairs and odometry out (plain Python, no ROS).

Every frame is matched against the last keyframe and verified geometrically (:mod:`casmtr_ros.geometry`). A
verified frame gets an odometry pose; the keyframe policy decides whether it becomes the next keyframe, which
emits a :class:`KeyframePair`. A frame that fails verification emits no pose.

Scale policy: with depth (first frame of a segment has a depth image) translations are metric (PnP on the
keyframe's depth, essential matrix scaled by the depths as fallback). Monocular: the first keyframe pair of a
segment has a baseline of 1 odometry unit (after a reset: the length of the last baseline); later frames take
their scale from depths triangulated at the previous keyframe pair (the essential matrix scaled by the ratio of
those depths to its own triangulation; PnP on triangulated points would be biased by their depth errors).
Rotation-only motion needs no scale. Covariances: see :mod:`casmtr_ros.vo.odometry` and the README (Covariance).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import numpy as np

from casmtr_ros.geometry.camera import focal_px, normalize_points
from casmtr_ros.geometry.covariance import depth_scale_gradient
from casmtr_ros.geometry.relative_pose import (
    PoseEstimate,
    VerificationError,
    VerifyParams,
    estimate_relative_pose,
    triangulate_depths,
)
from casmtr_ros.geometry.se3 import pose_matrix, rotation_angle_deg
from casmtr_ros.matching.base import Matcher
from casmtr_ros.types import Frame, InputError, Matches
from casmtr_ros.vo.config import VOConfig
from casmtr_ros.vo.inputs import CheckedFrame, check_frame
from casmtr_ros.vo.keyframes import Keyframe, KeyframePolicy, KeyframeStats
from casmtr_ros.vo.odometry import OdometryComposer
from casmtr_ros.vo.tracker import Tracker
from casmtr_ros.vo.types import FrameResult, KeyframePair, RelativePose, TrackingState

COUNTER_NAMES = (
    "frames", "input_errors", "keyframes", "poses", "failures", "lost_events", "recoveries",
    "resets_auto", "resets_manual", "resets_stamp_jump", "resets_camera_changed", "depth_all_invalid",
    "initialisations", "kf_no_depth",
)


class Pipeline:
    """Feed frames in stamp order with :meth:`process`; :meth:`reset` starts a new segment.

    ``matcher`` is any :class:`~casmtr_ros.matching.base.Matcher` (built once, outside the per-frame path).
    ``process`` raises :class:`~casmtr_ros.types.InputError` for frames it refuses (bad image or depth, size
    mismatch with the camera, stamps going backwards); the pipeline state is unchanged by a refused frame.
    """

    def __init__(self, matcher: Matcher, config: VOConfig | None = None) -> None:
        self.matcher = matcher
        self.config = config or VOConfig()
        self.policy = KeyframePolicy(self.config)
        self.tracker = Tracker(self.config)
        self.composer = OdometryComposer()
        self.counters: dict[str, int] = defaultdict(int, dict.fromkeys(COUNTER_NAMES, 0))
        self.keyframe: Keyframe | None = None
        self.segment = -1
        self._num_keyframes = 0
        self._metric = False
        self._last_stamp: int | None = None
        self._scale_ref = 1.0
        self._reset_reason: str | None = None
        self._lock = threading.RLock()  # process() and reset() may come from different threads (ROS callbacks)

    def set_config(self, config: VOConfig) -> None:
        """Replace the configuration between two frames (the keyframe, pose and state are kept)."""
        with self._lock:
            self.config = config
            self.policy.config = config
            self.tracker.config = config

    @property
    def state(self) -> TrackingState:
        return self.tracker.state

    def reset(self) -> None:
        """Drop the keyframe and start a new segment at the last emitted pose (the next frame is its keyframe).

        Also forgets the last stamp, so a new stream may start at any stamp.
        """
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        self.counters["resets_manual"] += 1
        self.keyframe = None
        self._last_stamp = None
        self._reset_reason = "reset requested"
        self.tracker.start(False)

    # ------------------------------------------------------------------ per frame
    def process(self, frame: Frame) -> FrameResult:
        """Process one frame; see the class docstring."""
        with self._lock:
            return self._process(frame)

    def _process(self, frame: Frame) -> FrameResult:
        t_start = time.perf_counter()
        self.counters["frames"] += 1
        try:
            checked = check_frame(frame, self._last_stamp, self.config.min_depth_m, self.config.max_depth_m)
        except InputError:
            self.counters["input_errors"] += 1
            raise
        timings = {"validate": time.perf_counter() - t_start}
        if checked.depth_dropped:
            self.counters["depth_all_invalid"] += 1
        kf = self.keyframe
        if kf is not None and self._last_stamp is not None:
            gap_s = (frame.stamp_ns - self._last_stamp) * 1e-9
            if gap_s > self.config.max_stamp_jump_s:
                self.counters["resets_stamp_jump"] += 1
                self.keyframe, self._reset_reason = None, f"reset: stamp jump of {gap_s:.1f} s"
            elif not _same_camera(kf, frame):
                self.counters["resets_camera_changed"] += 1
                self.keyframe, self._reset_reason = None, "reset: camera (resolution or intrinsics) changed"
        self._last_stamp = frame.stamp_ns
        result = self._start_segment(checked) if self.keyframe is None else self._track(checked, timings)
        result.timings = {**timings, **result.timings, "total": time.perf_counter() - t_start}
        result.counters = dict(self.counters)
        if result.keyframe_pair is not None:
            result.keyframe_pair.timings = dict(result.timings)
        if result.odometry is not None:
            self.counters["poses"] += 1
            result.counters["poses"] = self.counters["poses"]
        return result

    def _depth(self, checked: CheckedFrame) -> np.ndarray | None:
        return checked.depth if self.config.use_depth else None

    def _start_segment(self, checked: CheckedFrame) -> FrameResult:
        """This frame becomes the first keyframe of a new segment, at the last emitted pose."""
        frame, c = checked.frame, self.config
        first = self.composer.last is None
        T0, cov0 = self.composer.last_pose()
        if not first:
            s_rot = np.radians(c.lost_rotation_sigma_deg)
            cov0 = cov0 + np.diag([c.lost_position_sigma**2] * 3 + [s_rot**2] * 3)
        self.segment += 1
        depth = self._depth(checked)
        self._metric = depth is not None
        self.keyframe = Keyframe(self._num_keyframes, self.segment, frame.stamp_ns, frame.image, frame.camera,
                                 T0, cov0, depth=depth, frame_id=frame.frame_id)
        self._num_keyframes += 1
        self.counters["keyframes"] += 1
        self.tracker.start(self.keyframe.has_scale)
        # The unit of a monocular segment: exact for the first (gauge), a guess (the last baseline) after a reset.
        unit_var = 0.0 if first or self._metric else c.mono_scale_sigma**2
        self.composer.start_keyframe(self.keyframe, unit_var)
        odom = None
        if first:  # the odometry origin is the first keyframe by definition
            odom = self.composer.emit(frame.stamp_ns, self.keyframe, np.eye(4), np.zeros((6, 6)), self._metric)
        reason, self._reset_reason = self._reset_reason, None
        return FrameResult(frame.stamp_ns, self.tracker.state, is_keyframe=True, odometry=odom,
                           status=reason or "first keyframe", reset=reason is not None)

    def _params(self, camera) -> VerifyParams:
        params = self.verify_params(self.config, focal_px(camera))
        # Monocular keyframe depths are triangulated: PnP on them is biased (errors in the 3-D points), the
        # essential matrix scaled by depth ratios is not.
        params.triangulated_depth = not self._metric
        return params

    @staticmethod
    def verify_params(c: VOConfig, focal: float) -> VerifyParams:
        """The geometric verification parameters of configuration ``c`` for a camera of focal length ``focal``."""
        return VerifyParams(
            focal_px=focal, estimator=c.estimator, threshold_px=c.ransac_threshold_px,
            pnp_threshold_px=c.pnp_threshold_px, confidence=c.ransac_confidence, max_iters=c.ransac_max_iters,
            refine=c.refine, min_depth_points=c.min_depth_points, min_parallax_px=c.min_parallax_px,
            scale_sigma=c.mono_scale_sigma, match_correlation=c.cov_match_correlation, cov_scale=c.cov_scale,
        )

    def _check(self, est: PoseEstimate, num_matches: int) -> None:
        c = self.config
        if est.num_inliers < c.min_inliers:
            raise VerificationError("too_few_inliers", f"{est.num_inliers} < {c.min_inliers}")
        if est.num_inliers < c.min_inlier_ratio * num_matches:
            raise VerificationError("inlier_ratio", f"{est.num_inliers}/{num_matches}")
        if not est.residual_rms_px <= c.max_residual_rms_px:
            raise VerificationError("residual", f"inlier RMS {est.residual_rms_px:.2f} px")
        finite = np.all(np.isfinite(est.R)) and np.all(np.isfinite(est.t)) and np.all(np.isfinite(est.covariance))
        if not finite or np.min(np.linalg.eigvalsh(est.covariance)) < -1e-12:
            raise VerificationError("degenerate", "non-finite pose or covariance")

    def _track(self, checked: CheckedFrame, timings: dict[str, float]) -> FrameResult:
        frame, kf, c = checked.frame, self.keyframe, self.config
        assert kf is not None
        t0 = time.perf_counter()
        matches = self.matcher.match(kf.image, frame.image)
        t1 = time.perf_counter()
        timings["match"] = t1 - t0
        timings.update({f"match.{k}": float(v) for k, v in matches.timings.items()})
        n = len(matches)
        x0n = normalize_points(kf.camera, matches.kpts0)
        x1n = normalize_points(frame.camera, matches.kpts1)
        depth0 = kf.depth_at(matches.kpts0, c.scale_assoc_radius_px) if kf.has_scale else None
        hint = kf.median_depth()
        if not np.isfinite(hint):
            hint = self._scale_ref
        try:
            est = estimate_relative_pose(x0n, x1n, self._params(frame.camera), depth0, hint, c.min_triangulation_deg)
            self._check(est, n)
            if not est.scaled and kf.has_scale:
                raise VerificationError("no_scale", "too few matches with keyframe depth for the scale")
        except VerificationError as err:
            timings["geometry"] = time.perf_counter() - t1
            return self._failure(checked, err, n)
        timings["geometry"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        result = self._accept(checked, matches, x0n, x1n, depth0, est)
        timings["keyframe"] = time.perf_counter() - t2
        return result

    def _failure(self, checked: CheckedFrame, err: VerificationError, num_matches: int) -> FrameResult:
        frame = checked.frame
        self.counters["failures"] += 1
        self.counters[f"fail_{err.reason}"] += 1
        was_lost = self.tracker.state == TrackingState.LOST
        do_reset = self.tracker.on_failure()
        if self.tracker.state == TrackingState.LOST and not was_lost:
            self.counters["lost_events"] += 1
        if do_reset:
            self.counters["resets_auto"] += 1
            self._reset_reason = f"reset: lost for {self.tracker.lost_frames} frames ({err})"
            # The current frame starts the new segment (its pose is not emitted: it is not verified).
            return self._start_segment(checked)
        return FrameResult(frame.stamp_ns, self.tracker.state, status=f"failed: {err}", num_matches=num_matches)

    def _accept(self, checked: CheckedFrame, matches: Matches, x0n, x1n, depth0, est: PoseEstimate) -> FrameResult:
        frame, kf, c = checked.frame, self.keyframe, self.config
        assert kf is not None
        n = len(matches)
        recovered = False
        if not est.scaled:
            # Monocular initialisation: a keyframe pair with enough parallax sets the unit baseline.
            if est.parallax_px < c.init_min_parallax_px or n < c.kf_min_matches_abs:
                self.tracker.on_success(False)
                return FrameResult(frame.stamp_ns, self.tracker.state,
                                   status=f"initialising: parallax {est.parallax_px:.1f} px",
                                   num_matches=n, num_inliers=est.num_inliers)
            s = self._scale_ref
            est.t = est.t * s
            S = np.diag([s, s, s, 1.0, 1.0, 1.0])
            est.covariance = S @ est.covariance @ S
            # The odometry takes this baseline as its unit: the scale prior is the segment's (see OdometryComposer).
            cov_meas = est.covariance - c.mono_scale_sigma**2 * _outer6(est.t)
            reason = "initialisation"
        else:
            cov_meas = est.covariance
            if not self._metric:  # the RelativePose also carries the scale error of the keyframe's depths
                est.covariance = est.covariance + self.composer.keyframe_scale_var(kf) * _outer6(est.t)
            if kf.ref_matches == 0:
                kf.ref_matches = n
            stats = KeyframeStats(
                num_matches=n, match_fraction=n / kf.ref_matches, inlier_ratio=est.num_inliers / max(n, 1),
                parallax_px=est.parallax_px,
                rotation_deg=rotation_angle_deg(est.R),
                translation_m=float(np.linalg.norm(est.t)) if self._metric else None,
                dt_s=(frame.stamp_ns - kf.stamp_ns) * 1e-9,
            )
            reason = self.policy.decide(stats)
        T_cam_kf = pose_matrix(est.R, est.t)
        grad = None
        if reason is not None and not self._metric and np.linalg.norm(est.t) > 0:
            inl = est.inlier_mask  # the scale of the depths this frame would carry as a keyframe
            grad = depth_scale_gradient(est.R, est.t, x0n[inl], x1n[inl], np.radians(c.min_triangulation_deg))
        odom = self.composer.emit(frame.stamp_ns, kf, T_cam_kf, cov_meas, self._metric, frame.frame_id, grad)
        pair = None
        if reason is not None:
            pair = self._new_keyframe(checked, matches, x0n, x1n, depth0, est, odom.T_odom_cam, odom.pose_covariance)
            if pair is None:
                self.counters["kf_no_depth"] += 1
            else:
                self.counters[f"kf_reason_{reason}"] += 1
                if reason == "initialisation":
                    self.counters["initialisations"] += 1
        initialised = self.keyframe.has_scale
        recovered = self.tracker.on_success(initialised)
        if recovered:
            self.counters["recoveries"] += 1
        status = "recovered" if recovered else ("keyframe: " + reason if pair is not None else "tracked")
        return FrameResult(frame.stamp_ns, self.tracker.state, is_keyframe=pair is not None, keyframe_pair=pair,
                           odometry=odom, status=status, num_matches=n, num_inliers=est.num_inliers)

    def _new_keyframe(self, checked: CheckedFrame, matches: Matches, x0n, x1n, depth0, est: PoseEstimate,
                      T_odom: np.ndarray, cov_odom: np.ndarray) -> KeyframePair | None:
        """Make the current frame the keyframe (with depth for the scale); None when it cannot carry a scale."""
        frame, kf, c = checked.frame, self.keyframe, self.config
        assert kf is not None
        depth = self._depth(checked) if self._metric else None
        new = Keyframe(self._num_keyframes, self.segment, frame.stamp_ns, frame.image, frame.camera, T_odom,
                       cov_odom, depth=depth, frame_id=frame.frame_id)
        if depth is None:
            points, pdepth = _keyframe_points(est, matches, x0n, x1n, depth0, c.min_triangulation_deg)
            if len(points) < c.min_depth_points and np.linalg.norm(est.t) > 0:
                return None
            new.points, new.point_depth = points, pdepth
        tn = float(np.linalg.norm(est.t))
        if self._metric or tn == 0:
            rel = RelativePose(est.R, est.t, self._metric, est.covariance, est.num_inliers, est.method, 1.0,
                               est.residual_rms_px, est.parallax_px)
        else:
            Sinv = np.diag([1 / tn] * 3 + [1.0] * 3)
            rel = RelativePose(est.R, est.t / tn, False, Sinv @ est.covariance @ Sinv, est.num_inliers,
                               est.method, tn, est.residual_rms_px, est.parallax_px)
            self._scale_ref = tn
        pair = KeyframePair(kf.stamp_ns, frame.stamp_ns, matches, est.inlier_mask.copy(), rel, kf.frame_id,
                            frame.frame_id, self.segment)
        self.keyframe = new
        self.composer.adopt_keyframe(new)
        self._num_keyframes += 1
        self.counters["keyframes"] += 1
        return pair


def _outer6(t: np.ndarray) -> np.ndarray:
    """6x6 with ``t t^T`` in the translation block (a variance along ``t``)."""
    out = np.zeros((6, 6))
    out[:3, :3] = np.outer(t, t)
    return out


def _same_camera(kf: Keyframe, frame: Frame) -> bool:
    a, b = kf.camera, frame.camera
    return (a.width, a.height) == (b.width, b.height) and np.allclose(a.K, b.K) and a.distortion_model == \
        b.distortion_model and a.D.shape == b.D.shape and np.allclose(a.D, b.D)


def _keyframe_points(est: PoseEstimate, matches: Matches, x0n, x1n, depth0, min_angle_deg: float):
    """Monocular keyframe depth: inliers triangulated with the scaled pose (ray angle large enough), else the
    previous keyframe's depth carried through the pose. Returns pixels of the new frame and depths."""
    inl = est.inlier_mask
    R, t = est.R, est.t
    z = np.full(int(inl.sum()), np.nan)
    if np.linalg.norm(t) > 0:
        d0, d1, ang = triangulate_depths(R, t, x0n[inl], x1n[inl])
        good = np.isfinite(d1) & (d0 > 0) & (d1 > 0) & (ang >= np.radians(min_angle_deg))
        z[good] = d1[good]
    if depth0 is not None:
        dk = depth0[inl]
        X = np.concatenate([x0n[inl], np.ones((len(dk), 1))], axis=1) * dk[:, None]
        zc = (X @ R.T + t)[:, 2]
        carry = ~np.isfinite(z) & np.isfinite(zc) & (zc > 0)
        z[carry] = zc[carry]
    keep = np.isfinite(z) & (z > 0)
    return matches.kpts1[inl][keep].astype(np.float64), z[keep]
