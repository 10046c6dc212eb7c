"""Relative pose of two views from matches: essential matrix, PnP with depth, rotation-only; with covariances.

Inputs are undistorted normalised coordinates (:func:`casmtr_ros.geometry.camera.normalize_points`); pixel
thresholds are converted with the focal length. The result is ``T_1_0`` (``x1 = R x0 + t``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares

from casmtr_ros.geometry.covariance import (
    depth_scale_gradient,
    essential_covariance,
    pnp_covariance,
    reprojection_residuals,
    rotation_covariance,
    sampson_residuals,
)
from casmtr_ros.geometry.se3 import exp_so3, skew


class VerificationError(RuntimeError):
    """Geometric verification failed; ``reason`` is a short code for diagnostics counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class VerifyParams:
    """Thresholds of the estimators (pixel values are converted to normalised coords with ``focal_px``)."""

    focal_px: float
    estimator: str = "magsac"  # "magsac" | "ransac"
    threshold_px: float = 1.0
    pnp_threshold_px: float = 2.0
    confidence: float = 0.9999
    max_iters: int = 10000
    refine: bool = True
    min_depth_points: int = 12
    rotation_only_ratio: float = 0.9  # rotation-only when it explains this share of the essential's inliers
    min_parallax_px: float = 1.0  # rotation-model threshold floor: translation parallax below this is not resolved
    scale_sigma: float = 0.1  # relative prior std of an unknown monocular scale
    pnp_fallback_std_ratio: float = 5.0  # essential+depth replaces PnP when PnP's translation std is this much larger
    triangulated_depth: bool = False  # depth0 was triangulated (monocular keyframe): scale by depth ratios, no PnP
    match_correlation: float = 0.0  # shared-field share of the match errors (covariance model, see covariance.py)
    cov_scale: float = 1.0  # variance factor on the residual-derived covariances

    @property
    def thr_n(self) -> float:
        return self.threshold_px / self.focal_px

    @property
    def rot_thr_n(self) -> float:
        """Rotation-model threshold: 2-D residual, so 1.5x the (1-D Sampson) threshold, at least the parallax floor."""
        return max(1.5 * self.threshold_px, self.min_parallax_px) / self.focal_px

    @property
    def pnp_thr_n(self) -> float:
        return self.pnp_threshold_px / self.focal_px


@dataclass
class PoseEstimate:
    """A verified ``T_1_0``. ``t`` is in the units of the depth given (metres, or monocular odometry units);
    ``scaled`` says whether it carries a scale at all (False: unit norm or zero)."""

    R: np.ndarray
    t: np.ndarray
    inlier_mask: np.ndarray
    covariance: np.ndarray
    method: str
    scaled: bool
    residual_rms_px: float
    parallax_px: float

    @property
    def num_inliers(self) -> int:
        return int(self.inlier_mask.sum())


def _homog(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)


def triangulate_depths(R: np.ndarray, t: np.ndarray, x0n: np.ndarray, x1n: np.ndarray) -> tuple[np.ndarray, ...]:
    """Depths ``(d0, d1)`` along ``(x0n, 1)`` and ``(x1n, 1)`` minimising ``|d0 R b0 + t - d1 b1|``, and the ray
    angle in radians (the triangulation angle)."""
    a = _homog(x0n) @ R.T
    b = _homog(x1n)
    aa = np.sum(a * a, 1)
    bb = np.sum(b * b, 1)
    ab = np.sum(a * b, 1)
    at = a @ t
    bt = b @ t
    det = aa * bb - ab * ab
    det = np.where(np.abs(det) < 1e-18, np.nan, det)
    # Normal equations of [a, -b] [d0, d1]^T = -t.
    d0 = (-bb * at + ab * bt) / det
    d1 = (aa * bt - ab * at) / det
    cosang = np.clip(ab / np.sqrt(aa * bb), -1.0, 1.0)
    return d0, d1, np.arccos(cosang)


def rotation_residuals_n(R: np.ndarray, x0n: np.ndarray, x1n: np.ndarray) -> np.ndarray:
    """Distances (normalised units) between ``x1n`` and ``x0n`` rotated by ``R`` (inf behind the camera)."""
    P = _homog(x0n) @ R.T
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.linalg.norm(P[:, :2] / P[:, 2:3] - x1n, axis=1)
    return np.where(P[:, 2] > 1e-9, d, np.inf)


def _kabsch(b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Rotation ``R`` minimising ``sum |R b0 - b1|^2`` for unit bearings."""
    U, _, Vt = np.linalg.svd(b0.T @ b1)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    return Vt.T @ D @ U.T


def estimate_rotation(
    x0n: np.ndarray, x1n: np.ndarray, thr_n: float, iters: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation-only model ``x1 ~ R x0`` by 2-point RANSAC on bearings and a refit; returns ``(R, inlier_mask)``."""
    n = len(x0n)
    if n < 3:
        raise VerificationError("too_few_matches", f"{n} matches")
    b0 = _homog(x0n)
    b0 /= np.linalg.norm(b0, axis=1, keepdims=True)
    b1 = _homog(x1n)
    b1 /= np.linalg.norm(b1, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    best_R, best_count = np.eye(3), -1
    needed, k = iters, 0
    while k < min(needed, iters):
        k += 1
        i, j = rng.choice(n, 2, replace=False)
        R = _kabsch(b0[[i, j]], b1[[i, j]])
        count = int(np.sum(rotation_residuals_n(R, x0n, x1n) < thr_n))
        if count > best_count:
            best_R, best_count = R, count
            w = count / n  # adaptive stop at 99.99 % confidence of an all-inlier sample
            if w >= 1:
                needed = 1
            elif w > 0.01:
                needed = int(np.ceil(np.log(1e-4) / np.log(1 - w * w)))
    R = best_R
    for _ in range(2):
        mask = rotation_residuals_n(R, x0n, x1n) < thr_n
        if mask.sum() < 3:
            break
        R = _kabsch(b0[mask], b1[mask])
    return R, rotation_residuals_n(R, x0n, x1n) < thr_n


def _cheirality(E: np.ndarray, x0n: np.ndarray, x1n: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """The decomposition of ``E`` with most inliers in front of both cameras (no distance threshold)."""
    R1, R2, t = cv2.decomposeEssentialMat(E)
    t = t.reshape(3)
    best = None
    for R, tt in ((R1, t), (R1, -t), (R2, t), (R2, -t)):
        d0, d1, _ = triangulate_depths(R, tt, x0n[mask], x1n[mask])
        front = np.zeros(len(mask), bool)
        front[np.flatnonzero(mask)] = (d0 > 0) & (d1 > 0)
        if best is None or front.sum() > best[2].sum():
            best = (R, tt / np.linalg.norm(tt), front)
    return best


def _essential_residual_fn(R0: np.ndarray, t0: np.ndarray, x0n: np.ndarray, x1n: np.ndarray):
    from casmtr_ros.geometry.covariance import tangent_basis

    B = tangent_basis(t0)

    def params_to_pose(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = t0 + B @ p[3:]
        return exp_so3(p[:3]) @ R0, t / np.linalg.norm(t)

    def fn(p: np.ndarray) -> np.ndarray:
        R, t = params_to_pose(p)
        return sampson_residuals(R, t, x0n, x1n)

    return fn, params_to_pose


def estimate_essential(x0n: np.ndarray, x1n: np.ndarray, params: VerifyParams) -> PoseEstimate:
    """Essential matrix (USAC-MAGSAC or RANSAC) with cheirality, optional Sampson refinement, covariance."""
    n = len(x0n)
    if n < 8:
        raise VerificationError("too_few_matches", f"{n} matches (essential needs >= 8)")
    method = cv2.USAC_MAGSAC if params.estimator == "magsac" else cv2.RANSAC
    E, mask = cv2.findEssentialMat(
        x0n.reshape(-1, 1, 2), x1n.reshape(-1, 1, 2), np.eye(3),
        method=method, prob=params.confidence, threshold=params.thr_n, maxIters=params.max_iters,
    )
    if E is None or mask is None or E.shape[0] < 3:
        raise VerificationError("essential_failed", "no essential matrix found")
    mask = mask.reshape(-1).astype(bool)
    if mask.sum() < 8:
        raise VerificationError("too_few_inliers", f"{int(mask.sum())} essential inliers")
    R, t, mask = _cheirality(E[:3], x0n, x1n, mask)
    if mask.sum() < 8:
        raise VerificationError("cheirality", f"{int(mask.sum())} inliers in front of both cameras")
    # Refine on the inliers, re-select them with the refined model, and refine again on the final set (the
    # covariance describes the least-squares estimate on exactly these inliers).
    for _ in range(3 if params.refine else 0):
        fn, to_pose = _essential_residual_fn(R, t, x0n[mask], x1n[mask])
        sol = least_squares(fn, np.zeros(5), method="lm", max_nfev=200)
        R, t = to_pose(sol.x)
        res = np.abs(sampson_residuals(R, t, x0n, x1n))
        d0, d1, _ = triangulate_depths(R, t, x0n, x1n)
        refined = (res < params.thr_n) & (d0 > 0) & (d1 > 0)
        if refined.sum() < 8 or np.array_equal(refined, mask):
            break
        mask = refined
    res = sampson_residuals(R, t, x0n[mask], x1n[mask])
    cov = essential_covariance(R, t, x0n[mask], x1n[mask], params.scale_sigma, params.thr_n,
                               params.match_correlation,
                               params.cov_scale)
    return PoseEstimate(
        R, t, mask, cov, "essential", False,
        residual_rms_px=float(np.sqrt(np.mean(res**2)) * params.focal_px),
        parallax_px=float(np.median(rotation_residuals_n(R, x0n[mask], x1n[mask])) * params.focal_px),
    )


def estimate_pnp(X0: np.ndarray, x1n: np.ndarray, params: VerifyParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PnP-RANSAC of 3D points of camera 0 against normalised points of camera 1: ``(R, t, inlier_mask)``."""
    n = len(X0)
    if n < max(6, params.min_depth_points):
        raise VerificationError("too_few_depth_points", f"{n} matches with depth")
    ok, rvec, tvec, inl = cv2.solvePnPRansac(
        X0.reshape(-1, 1, 3), x1n.reshape(-1, 1, 2), np.eye(3), None,
        iterationsCount=min(params.max_iters, 2000), reprojectionError=params.pnp_thr_n,
        confidence=params.confidence, flags=cv2.SOLVEPNP_EPNP,
    )
    if not ok or inl is None or len(inl) < 6:
        raise VerificationError("pnp_failed", "PnP-RANSAC found no pose")
    mask = np.zeros(n, bool)
    mask[inl.reshape(-1)] = True
    # Refine on the inliers and re-select them, until the inlier set is stable (at most 3 rounds).
    for _ in range(3 if params.refine else 1):
        if params.refine:
            rvec, tvec = cv2.solvePnPRefineLM(X0[mask].reshape(-1, 1, 3), x1n[mask].reshape(-1, 1, 2), np.eye(3),
                                              None, rvec, tvec)
        R = cv2.Rodrigues(rvec)[0]
        t = tvec.reshape(3)
        err = np.linalg.norm(reprojection_residuals(R, t, X0, x1n), axis=1)
        depth1 = (X0 @ R.T + t)[:, 2]
        new = (err < params.pnp_thr_n) & (depth1 > 0)
        if np.array_equal(new, mask) or new.sum() < 6:
            break
        mask = new
    return R, t, new


def scale_from_depth(
    R: np.ndarray, t_unit: np.ndarray, x0n: np.ndarray, x1n: np.ndarray, depth0: np.ndarray, min_angle_rad: float
) -> tuple[float, float, int]:
    """Scale of a unit-norm ``t`` from measured depths of camera-0 points: ``(scale, relative_std, count)``."""
    d0, _, ang = triangulate_depths(R, t_unit, x0n, x1n)
    ok = np.isfinite(depth0) & (depth0 > 0) & np.isfinite(d0) & (d0 > 0) & (ang >= min_angle_rad)
    if ok.sum() < 5:
        return float("nan"), float("inf"), int(ok.sum())
    ratio = depth0[ok] / d0[ok]
    s = float(np.median(ratio))
    rel_std = 1.4826 * float(np.median(np.abs(ratio / s - 1.0))) / np.sqrt(ok.sum())
    return s, max(rel_std, 1e-4), int(ok.sum())


def estimate_relative_pose(
    x0n: np.ndarray,
    x1n: np.ndarray,
    params: VerifyParams,
    depth0: np.ndarray | None = None,
    translation_hint: float = 1.0,
    min_triangulation_deg: float = 0.5,
) -> PoseEstimate:
    """Verified ``T_1_0`` from normalised matches, with the depth of camera-0 points when known (NaN = none).

    With depth: PnP-RANSAC on the points with depth (metric), and the essential matrix scaled by the depths
    (``essential+depth``) as fallback, used when PnP fails or its translation std is more than
    ``pnp_fallback_std_ratio`` times the other's (PnP on a small or planar patch of depth is ill-conditioned, and
    its covariance says so). Without depth: the essential matrix (unit ``t``). A
    rotation-only model replaces the essential matrix when rotation alone explains the matches (zero or
    sub-threshold translation); ``translation_hint`` is the scene depth bounding its translation.
    Raises :class:`VerificationError`.
    """
    n = len(x0n)
    if n < 8:
        raise VerificationError("too_few_matches", f"{n} matches")
    pnp = None
    if depth0 is not None and not params.triangulated_depth:
        has_depth = np.isfinite(depth0) & (depth0 > 0)
        if has_depth.sum() >= params.min_depth_points:
            try:
                pnp = _pnp_estimate(x0n, x1n, depth0, has_depth, params)
            except VerificationError:
                pnp = None  # fall back to the essential matrix (+ depth scale)
    try:
        alt = _essential_or_rotation(x0n, x1n, params, depth0, translation_hint, min_triangulation_deg)
    except VerificationError:
        if pnp is None:
            raise
        return pnp
    if pnp is None or not alt.scaled:
        return pnp if pnp is not None else alt
    # PnP is preferred (the essential matrix's covariance is optimistic with coarse keypoints, e.g. ORB); the
    # depth-scaled essential matrix only wins when PnP's translation std is several times larger.
    ratio = params.pnp_fallback_std_ratio**2
    return alt if np.trace(pnp.covariance[:3, :3]) > ratio * np.trace(alt.covariance[:3, :3]) else pnp


def _essential_or_rotation(x0n, x1n, params: VerifyParams, depth0, translation_hint: float,
                           min_triangulation_deg: float) -> PoseEstimate:
    R_rot, rot_mask = estimate_rotation(x0n, x1n, params.rot_thr_n)
    try:
        ess = estimate_essential(x0n, x1n, params)
    except VerificationError:
        if rot_mask.sum() < 8:
            raise
        ess = None
    if ess is None or rot_mask.sum() >= params.rotation_only_ratio * ess.num_inliers:
        return _rotation_estimate(R_rot, rot_mask, x0n, x1n, params, translation_hint)
    if depth0 is not None:
        s, rel_std, count = scale_from_depth(ess.R, ess.t, x0n[ess.inlier_mask], x1n[ess.inlier_mask],
                                             depth0[ess.inlier_mask], np.radians(min_triangulation_deg))
        if count >= 5 and np.isfinite(s):
            # t_s = s(p) t(p): the scale is the ratio of measured to triangulated depths, and the triangulated
            # depths move with the whole pose (d log s = -g . dp), so the pose error also enters the scale.
            inl = np.flatnonzero(ess.inlier_mask)
            ok = np.isfinite(depth0[inl]) & (depth0[inl] > 0)
            g = depth_scale_gradient(ess.R, ess.t, x0n[inl[ok]], x1n[inl[ok]], np.radians(min_triangulation_deg), 0)
            cov = ess.covariance.copy()
            cov[:3, :3] -= params.scale_sigma**2 * np.outer(ess.t, ess.t)
            t_s = ess.t * s
            M = np.eye(6)
            M[:3, :3] = s * np.eye(3) - np.outer(t_s, g[:3])
            M[:3, 3:] = -np.outer(t_s, g[3:])
            cov = M @ cov @ M.T
            # The depth ratios scatter by rel_std * sqrt(n); their errors share the matcher's error field too.
            scatter2 = rel_std**2 * (1.0 + params.match_correlation * count) * params.cov_scale
            cov[:3, :3] += scatter2 * np.outer(t_s, t_s)
            ess.covariance = 0.5 * (cov + cov.T)
            ess.t = t_s
            ess.method, ess.scaled = "essential+depth", True
    return ess


def _pnp_estimate(x0n, x1n, depth0, has_depth, params: VerifyParams) -> PoseEstimate:
    idx = np.flatnonzero(has_depth)
    X0 = _homog(x0n[idx]) * depth0[idx, None]
    R, t, pmask = estimate_pnp(X0, x1n[idx], params)
    if pmask.sum() < params.min_depth_points:
        raise VerificationError("too_few_inliers", f"{int(pmask.sum())} PnP inliers")
    mask = np.zeros(len(x0n), bool)
    mask[idx[pmask]] = True
    # Matches without depth: inliers when consistent with the pose (epipolar if it translates, else rotation).
    rest = ~has_depth
    if rest.any():
        scene = float(np.median(depth0[idx[pmask]]))
        if np.linalg.norm(t) > 1e-3 * scene:
            ok = np.abs(sampson_residuals(R, t / np.linalg.norm(t), x0n[rest], x1n[rest])) < params.thr_n
        else:
            ok = rotation_residuals_n(R, x0n[rest], x1n[rest]) < params.pnp_thr_n
        mask[np.flatnonzero(rest)[ok]] = True
    res = reprojection_residuals(R, t, X0[pmask], x1n[idx[pmask]])
    cov = pnp_covariance(R, t, X0[pmask], x1n[idx[pmask]], params.pnp_thr_n, params.match_correlation,
                         params.cov_scale)
    return PoseEstimate(
        R, t, mask, cov, "pnp", True,
        residual_rms_px=float(np.sqrt(np.mean(np.sum(res**2, 1))) * params.focal_px),
        parallax_px=float(np.median(rotation_residuals_n(R, x0n[mask], x1n[mask])) * params.focal_px),
    )


def _rotation_estimate(R, mask, x0n, x1n, params: VerifyParams, translation_hint: float) -> PoseEstimate:
    if mask.sum() < 8:
        raise VerificationError("too_few_inliers", f"{int(mask.sum())} rotation inliers")
    res = rotation_residuals_n(R, x0n[mask], x1n[mask])
    # The translation the data cannot resolve: a parallax of one threshold at the scene depth.
    sigma_t = params.thr_n * translation_hint
    cov = rotation_covariance(R, x0n[mask], x1n[mask], sigma_t, params.rot_thr_n, params.match_correlation,
                              params.cov_scale)
    return PoseEstimate(
        R, np.zeros(3), mask, cov, "rotation", True,
        residual_rms_px=float(np.sqrt(np.mean(res**2)) * params.focal_px),
        parallax_px=float(np.median(res) * params.focal_px),
    )


__all__ = [
    "PoseEstimate",
    "VerificationError",
    "VerifyParams",
    "estimate_essential",
    "estimate_pnp",
    "estimate_relative_pose",
    "estimate_rotation",
    "scale_from_depth",
    "skew",
    "triangulate_depths",
]
