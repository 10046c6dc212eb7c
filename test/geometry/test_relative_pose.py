"""Relative pose and covariance on points projected through known poses (noise and outliers added)."""

import numpy as np
import pytest

from casmtr_ros.geometry.covariance import tangent_basis
from casmtr_ros.geometry.relative_pose import (
    VerificationError,
    VerifyParams,
    estimate_essential,
    estimate_relative_pose,
    triangulate_depths,
)
from casmtr_ros.geometry.se3 import exp_so3, log_so3

F = 500.0
R_TRUE = exp_so3([0.03, -0.08, 0.02])
T_TRUE = np.array([0.6, 0.1, 0.4])


def _scene(seed: int, R=R_TRUE, t=T_TRUE, n=400, noise_px=0.5, outliers=0.2):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.uniform(-4, 4, n), rng.uniform(-3, 3, n), rng.uniform(4, 12, n)]
    P = X @ R.T + t
    x0 = X[:, :2] / X[:, 2:] + rng.normal(0, noise_px / F, (n, 2))
    x1 = P[:, :2] / P[:, 2:] + rng.normal(0, noise_px / F, (n, 2))
    bad = rng.random(n) < outliers
    x1[bad] = rng.uniform(-0.6, 0.6, (bad.sum(), 2))
    return x0, x1, X[:, 2].copy(), bad


def _rot_err_deg(R: np.ndarray, R_ref: np.ndarray = R_TRUE) -> float:
    return float(np.degrees(np.linalg.norm(log_so3(R @ R_ref.T))))


def _dir_err_deg(t: np.ndarray, t_ref: np.ndarray = T_TRUE) -> float:
    c = t @ t_ref / np.linalg.norm(t) / np.linalg.norm(t_ref)
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


@pytest.mark.parametrize("estimator", ["magsac", "ransac"])
def test_essential_recovers_pose_and_rejects_outliers(estimator: str) -> None:
    x0, x1, _, bad = _scene(0)
    est = estimate_essential(x0, x1, VerifyParams(focal_px=F, estimator=estimator))
    assert _rot_err_deg(est.R) < 0.1
    assert _dir_err_deg(est.t) < 1.5
    assert np.linalg.norm(est.t) == pytest.approx(1.0)
    assert not np.any(est.inlier_mask & bad)  # no outlier accepted
    assert est.inlier_mask[~bad].mean() > 0.85
    assert est.residual_rms_px < 1.0
    d0, d1, _ = triangulate_depths(est.R, est.t, x0[est.inlier_mask], x1[est.inlier_mask])
    assert np.all(d0 > 0) and np.all(d1 > 0)  # cheirality


def test_pnp_gives_metric_translation() -> None:
    x0, x1, depth, _ = _scene(1)
    est = estimate_relative_pose(x0, x1, VerifyParams(focal_px=F), depth0=depth)
    assert est.method == "pnp" and est.scaled
    assert np.linalg.norm(est.t - T_TRUE) < 0.01
    assert _rot_err_deg(est.R) < 0.05


def test_essential_with_depth_scale_when_few_points_have_depth() -> None:
    x0, x1, depth, bad = _scene(2, outliers=0.1)
    sparse = np.full_like(depth, np.nan)
    keep = np.flatnonzero(~bad)[:10]  # fewer than min_depth_points: no PnP
    sparse[keep] = depth[keep]
    est = estimate_relative_pose(x0, x1, VerifyParams(focal_px=F, min_depth_points=12), depth0=sparse)
    assert est.method == "essential+depth"
    assert np.linalg.norm(est.t) == pytest.approx(np.linalg.norm(T_TRUE), rel=0.03)
    assert _dir_err_deg(est.t) < 1.5


def test_pure_rotation_and_zero_motion_are_rotation_only() -> None:
    x0, x1, _, _ = _scene(3, t=np.zeros(3), outliers=0.1)
    est = estimate_relative_pose(x0, x1, VerifyParams(focal_px=F))
    assert est.method == "rotation" and np.all(est.t == 0)
    assert _rot_err_deg(est.R) < 0.05
    x0, x1, _, _ = _scene(4, R=np.eye(3), t=np.zeros(3), outliers=0.0)
    est = estimate_relative_pose(x0, x1, VerifyParams(focal_px=F))
    assert est.method == "rotation" and _rot_err_deg(est.R, np.eye(3)) < 0.05
    assert est.parallax_px < 1.0


def test_too_few_matches_refused() -> None:
    x0, x1, _, _ = _scene(5, n=6, outliers=0)
    with pytest.raises(VerificationError) as err:
        estimate_relative_pose(x0, x1, VerifyParams(focal_px=F))
    assert err.value.reason == "too_few_matches"


def _essential_error(est) -> tuple[np.ndarray, np.ndarray]:
    """(5-vector error in the estimate's tangent space, its 5x5 covariance)."""
    B = tangent_basis(est.t)
    J = np.zeros((5, 6))
    J[:2, :3] = B.T
    J[2:, 3:] = np.eye(3)
    err = np.concatenate([B.T @ (T_TRUE / np.linalg.norm(T_TRUE) - est.t) * -1, log_so3(est.R @ R_TRUE.T)])
    return err, J @ est.covariance @ J.T


def test_essential_covariance_is_consistent_and_follows_the_noise() -> None:
    nees = []
    for seed in range(20):
        x0, x1, _, _ = _scene(100 + seed, n=300, outliers=0.0)
        est = estimate_essential(x0, x1, VerifyParams(focal_px=F))
        err, C = _essential_error(est)
        nees.append(err @ np.linalg.solve(C, err))
    assert 5 / 3 < np.mean(nees) < 5 * 3  # chi-square with 5 dof has mean 5
    small = estimate_essential(*_scene(7, noise_px=0.25, outliers=0)[:2], VerifyParams(focal_px=F)).covariance
    large = estimate_essential(*_scene(7, noise_px=1.0, outliers=0)[:2], VerifyParams(focal_px=F, threshold_px=3))
    ratio = np.trace(large.covariance[3:, 3:]) / np.trace(small[3:, 3:])
    assert 8 < ratio < 32  # 4x the noise: ~16x the variance
    assert np.all(np.linalg.eigvalsh(small) > 0)


def test_pnp_covariance_is_consistent() -> None:
    nees = []
    for seed in range(20):
        # PnP model: exact 3D points of camera 0, noise only in image 1
        rng = np.random.default_rng(200 + seed)
        X = np.c_[rng.uniform(-4, 4, 200), rng.uniform(-3, 3, 200), rng.uniform(4, 12, 200)]
        P = X @ R_TRUE.T + T_TRUE
        x1 = P[:, :2] / P[:, 2:] + rng.normal(0, 0.5 / F, (200, 2))
        est = estimate_relative_pose(X[:, :2] / X[:, 2:], x1, VerifyParams(focal_px=F), depth0=X[:, 2])
        err = np.concatenate([est.t - T_TRUE, log_so3(est.R @ R_TRUE.T)])
        nees.append(err @ np.linalg.solve(est.covariance, err))
    assert 6 / 3 < np.mean(nees) < 6 * 3


def test_refinement_lowers_the_sampson_error() -> None:
    x0, x1, _, _ = _scene(8, noise_px=1.0, outliers=0.1)
    raw = estimate_essential(x0, x1, VerifyParams(focal_px=F, threshold_px=2.0, refine=False))
    ref = estimate_essential(x0, x1, VerifyParams(focal_px=F, threshold_px=2.0, refine=True))
    both = raw.inlier_mask & ref.inlier_mask
    from casmtr_ros.geometry.covariance import sampson_residuals

    def rms(e):
        return np.sqrt(np.mean(sampson_residuals(e.R, e.t, x0[both], x1[both]) ** 2))

    assert rms(ref) < rms(raw)
    assert _rot_err_deg(ref.R) < 0.5 and _dir_err_deg(ref.t) < 3.0
