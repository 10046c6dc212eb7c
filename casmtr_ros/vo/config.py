"""Every parameter of the visual-odometry pipeline, with defaults (flat, so it maps 1:1 onto ROS parameters)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class VOConfig:
    """Parameters of :class:`casmtr_ros.vo.pipeline.Pipeline` (pixel values refer to the original image)."""

    # --- geometric verification ---
    estimator: str = "magsac"  # essential-matrix robust estimator: "magsac" (cv2.USAC_MAGSAC) or "ransac"
    ransac_threshold_px: float = 1.0  # inlier threshold in pixels (converted to normalised coords by the focal)
    ransac_confidence: float = 0.9999  # RANSAC confidence
    ransac_max_iters: int = 10000  # RANSAC iteration cap
    pnp_threshold_px: float = 2.0  # PnP-RANSAC reprojection threshold in pixels
    refine: bool = True  # refine the verified model on its inliers (Levenberg-Marquardt)
    min_inliers: int = 30  # fewer inliers = verification failure
    min_inlier_ratio: float = 0.2  # lower inlier ratio = verification failure
    min_parallax_px: float = 1.0  # below this rotation-compensated median parallax the motion is rotation-only
    max_residual_rms_px: float = 2.0  # larger inlier RMS = verification failure

    # --- depth ---
    use_depth: bool = True  # use the depth image when the frame has one (metric PnP)
    min_depth_m: float = 0.1  # depths outside [min_depth_m, max_depth_m] are invalid
    max_depth_m: float = 80.0
    min_depth_points: int = 12  # fewer matches with valid depth = fall back to essential (+ depth scale)

    # --- monocular scale policy ---
    mono_scale_sigma: float = 0.1  # prior std of the monocular scale, relative (variance along unit t)

    # --- covariance model (casmtr_ros/geometry/covariance.py; defaults estimated on rendered scenes with SIFT by
    # `python -m casmtr_ros.vo.consistency`, see README "Covariance") ---
    cov_match_correlation: float = 0.032  # share of a match's error that is a field shared by all matches of a pair
    cov_scale: float = 1.94  # variance factor on the residual-derived covariances (residual calibration)
    scale_assoc_radius_px: float = 2.0  # keypoint association radius for carrying triangulated depth
    min_triangulation_deg: float = 0.5  # minimum ray angle for triangulated points kept as keyframe depth
    init_min_parallax_px: float = 15.0  # monocular initialisation needs this median parallax

    # --- keyframe policy ---
    kf_min_matches: int = 150  # new keyframe when the match count against the last keyframe drops below this
    kf_min_match_fraction: float = 0.5  # ... or below this fraction of the first frame's matches against it
    kf_min_inlier_ratio: float = 0.5  # ... or the inlier ratio drops below this
    kf_max_parallax_px: float = 40.0  # ... or the rotation-compensated median parallax exceeds this
    kf_max_translation_m: float = 1.0  # ... or the metric translation exceeds this (depth only)
    kf_max_rotation_deg: float = 15.0  # ... or the rotation exceeds this
    kf_max_time_gap_s: float = 5.0  # ... or this much time passed since the last keyframe
    kf_min_matches_abs: int = 50  # never a keyframe with fewer matches than this

    # --- state machine ---
    lost_after_failures: int = 3  # consecutive verification failures before LOST
    reset_after_lost_frames: int = 5  # frames in LOST before an automatic reset (0 = never auto-reset)
    lost_position_sigma: float = 1.0  # std added to the pose covariance at a reset (odometry units)
    lost_rotation_sigma_deg: float = 10.0  # rotation std added at a reset

    # --- inputs ---
    max_stamp_jump_s: float = 10.0  # a larger forward stamp gap resets the pipeline

    def __post_init__(self) -> None:
        if self.estimator not in ("magsac", "ransac"):
            raise ValueError(f"estimator must be 'magsac' or 'ransac', got {self.estimator!r}")
        for name in ("ransac_threshold_px", "pnp_threshold_px", "min_depth_m", "max_depth_m", "mono_scale_sigma"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.cov_match_correlation < 1.0:
            raise ValueError(f"cov_match_correlation must be in [0, 1), got {self.cov_match_correlation}")
        if self.cov_scale <= 0:
            raise ValueError(f"cov_scale must be positive, got {self.cov_scale}")
        if self.min_inliers < 8:
            raise ValueError(f"min_inliers must be >= 8, got {self.min_inliers}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VOConfig:
        """Build from a dict, refusing unknown keys with a clear message."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown VO parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
