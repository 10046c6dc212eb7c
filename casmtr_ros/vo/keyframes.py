"""Keyframes and the policy deciding when a frame becomes one."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from casmtr_ros.types import CameraModel
from casmtr_ros.vo.config import VOConfig


@dataclass
class Keyframe:
    """A keyframe: its image, camera, depth for the scale, and its pose in the odometry frame.

    ``depth`` is the sensor depth image (metres, NaN invalid) when the pipeline runs with depth; monocular
    keyframes instead carry ``points`` (M, 2) pixels with ``point_depth`` (M,) in odometry units, triangulated
    from the previous pair (the monocular scale policy).
    """

    index: int
    segment: int
    stamp_ns: int
    image: np.ndarray
    camera: CameraModel
    T_odom_kf: np.ndarray
    cov_odom_kf: np.ndarray
    depth: np.ndarray | None = None
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point_depth: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frame_id: str = "camera_optical_frame"
    ref_matches: int = 0  # matches of the first frame tracked against this keyframe (overlap reference)
    _tree: cKDTree | None = None

    @property
    def metric(self) -> bool:
        return self.depth is not None

    @property
    def has_scale(self) -> bool:
        return self.depth is not None or len(self.points) > 0

    def depth_at(self, pts: np.ndarray, radius_px: float, edge_ratio: float = 0.05) -> np.ndarray:
        """Depth (NaN where unknown) at pixel keypoints: sensor depth at the nearest pixel (NaN on a depth edge,
        where the 3x3 neighbourhood spreads more than ``edge_ratio``), else the nearest triangulated point
        within ``radius_px``."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        out = np.full(len(pts), np.nan)
        if self.depth is not None:
            return _sample_depth(self.depth, pts, edge_ratio)
        if len(self.points) == 0 or len(pts) == 0:
            return out
        if self._tree is None:
            self._tree = cKDTree(self.points)
        dist, idx = self._tree.query(pts, k=1, distance_upper_bound=radius_px)
        ok = np.isfinite(dist)
        out[ok] = self.point_depth[idx[ok]]
        return out

    def median_depth(self) -> float:
        d = self.depth if self.depth is not None else self.point_depth
        d = d[np.isfinite(d)] if d is not None else np.zeros(0)
        return float(np.median(d)) if len(d) else float("nan")


def _sample_depth(depth: np.ndarray, pts: np.ndarray, edge_ratio: float) -> np.ndarray:
    """Depth at the nearest pixel; NaN outside the image, on invalid pixels and on depth discontinuities
    (keypoints like corners sit on object borders, where the nearest pixel may belong to either side)."""
    h, w = depth.shape
    u = np.round(pts[:, 0]).astype(int)
    v = np.round(pts[:, 1]).astype(int)
    out = np.full(len(pts), np.nan)
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    if not ok.any():
        return out
    uu, vv = u[ok], v[ok]
    window = np.stack([depth[np.clip(vv + dv, 0, h - 1), np.clip(uu + du, 0, w - 1)]
                       for dv in (-1, 0, 1) for du in (-1, 0, 1)], axis=1)
    centre = window[:, 4]
    with np.errstate(invalid="ignore"):
        spread = window.max(axis=1) - window.min(axis=1)  # NaN when any neighbour is invalid
        smooth = spread <= edge_ratio * centre
    out[np.flatnonzero(ok)[smooth]] = centre[smooth]
    return out


@dataclass
class KeyframeStats:
    """What the policy looks at, for the current frame against the last keyframe."""

    num_matches: int
    match_fraction: float  # num_matches / matches of the first frame tracked against the keyframe
    inlier_ratio: float
    parallax_px: float
    rotation_deg: float
    translation_m: float | None  # metric translation, None for monocular
    dt_s: float


class KeyframePolicy:
    """New keyframe when overlap drops or motion grows (see the ``kf_*`` parameters of :class:`VOConfig`)."""

    def __init__(self, config: VOConfig) -> None:
        self.config = config

    def decide(self, s: KeyframeStats) -> str | None:
        """The reason for a new keyframe, or None."""
        c = self.config
        if s.num_matches < c.kf_min_matches_abs:
            return None  # never a keyframe with too few matches
        if s.num_matches < c.kf_min_matches:
            return "matches"
        if s.match_fraction < c.kf_min_match_fraction:
            return "overlap"
        if s.inlier_ratio < c.kf_min_inlier_ratio:
            return "inlier_ratio"
        if s.parallax_px > c.kf_max_parallax_px:
            return "parallax"
        if s.translation_m is not None and s.translation_m > c.kf_max_translation_m:
            return "translation"
        if s.rotation_deg > c.kf_max_rotation_deg:
            return "rotation"
        if s.dt_s > c.kf_max_time_gap_s:
            return "time"
        return None
