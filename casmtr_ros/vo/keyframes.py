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
        """Depth (NaN where unknown) at pixel keypoints: sensor depth interpolated bilinearly (NaN on a depth edge,
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
    """Bilinear depth at sub-pixel keypoints; NaN outside the image, next to invalid pixels and on depth
    discontinuities (the 3x3 neighbourhood of the nearest pixel spreads more than ``edge_ratio``: keypoints such as
    corners sit on object borders, where a sample may belong to either side)."""
    h, w = depth.shape
    x, y = pts[:, 0], pts[:, 1]
    out = np.full(len(pts), np.nan)
    ok = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    if not ok.any():
        return out
    xx, yy = x[ok], y[ok]
    u, v = np.round(xx).astype(int), np.round(yy).astype(int)
    window = np.stack([depth[np.clip(v + dv, 0, h - 1), np.clip(u + du, 0, w - 1)]
                       for dv in (-1, 0, 1) for du in (-1, 0, 1)], axis=1)
    u0 = np.clip(np.floor(xx).astype(int), 0, w - 2)
    v0 = np.clip(np.floor(yy).astype(int), 0, h - 2)
    fx, fy = xx - u0, yy - v0
    bil = ((1 - fx) * (1 - fy) * depth[v0, u0] + fx * (1 - fy) * depth[v0, u0 + 1]
           + (1 - fx) * fy * depth[v0 + 1, u0] + fx * fy * depth[v0 + 1, u0 + 1])
    with np.errstate(invalid="ignore"):
        spread = window.max(axis=1) - window.min(axis=1)  # NaN when any neighbour is invalid
        smooth = (spread <= edge_ratio * window[:, 4]) & np.isfinite(bil)
    out[np.flatnonzero(ok)[smooth]] = bil[smooth]
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
