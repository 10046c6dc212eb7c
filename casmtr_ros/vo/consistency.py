"""Statistical consistency of the pose covariances (NEES) on rendered scenes with exact poses and depth.

The normalised estimation error squared of an estimate with error ``e`` (k-vector) and covariance ``C`` is
``e^T C^-1 e``; over many independent estimates with a consistent covariance its mean is ``k`` and ``n`` times the
mean is chi-square with ``n k`` degrees of freedom (:func:`chi2_mean_band`). Errors follow the covariance
convention of :mod:`casmtr_ros.geometry.se3`: ``(t_est - t_gt, log(R_est R_gt^T))`` in the parent frame.

The scenes come from :mod:`casmtr_ros.bags.render` (textured rooms, seeded): not a development set. This module
also estimates the covariance model's two data-derived parameters (``VOConfig.cov_match_correlation`` and
``VOConfig.cov_scale``); ``python -m casmtr_ros.vo.consistency`` prints the estimate and the NEES figures (see
:func:`main`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import chi2

from casmtr_ros.bags.render import render_view
from casmtr_ros.bags.scenes import default_intrinsics, look_at, room_scene
from casmtr_ros.geometry.camera import focal_px, normalize_points
from casmtr_ros.geometry.covariance import field_basis, reprojection_residuals, tangent_basis
from casmtr_ros.geometry.relative_pose import VerificationError, estimate_relative_pose
from casmtr_ros.geometry.se3 import invert, log_so3
from casmtr_ros.matching.base import Matcher
from casmtr_ros.types import CameraModel, Frame
from casmtr_ros.vo.config import VOConfig
from casmtr_ros.vo.keyframes import _sample_depth
from casmtr_ros.vo.pipeline import Pipeline

STEP_NS = 100_000_000


@dataclass
class PoseError:
    """One estimate's error ``err`` (k,) and covariance ``cov`` (k, k); ``method`` as in RelativePose."""

    err: np.ndarray
    cov: np.ndarray
    method: str = ""

    @property
    def nees(self) -> float:
        return float(self.err @ np.linalg.solve(self.cov, self.err))

    @property
    def dof(self) -> int:
        return len(self.err)


def pose_error(T_est: np.ndarray, T_gt: np.ndarray) -> np.ndarray:
    """``(t_est - t_gt, log(R_est R_gt^T))``: the parent-frame perturbation taking the truth to the estimate."""
    return np.concatenate([T_est[:3, 3] - T_gt[:3, 3], log_so3(T_est[:3, :3] @ T_gt[:3, :3].T)])


def direction_error(R: np.ndarray, t_unit: np.ndarray, cov: np.ndarray, T_gt: np.ndarray) -> PoseError:
    """5-DoF error of an up-to-scale pose (direction of ``t`` in its tangent plane, rotation), its covariance."""
    B = tangent_basis(t_unit)
    tg = T_gt[:3, 3] / np.linalg.norm(T_gt[:3, 3])
    P = np.zeros((5, 6))
    P[:2, :3] = B.T
    P[2:, 3:] = np.eye(3)
    err = np.concatenate([B.T @ (t_unit - tg), log_so3(R @ T_gt[:3, :3].T)])
    return PoseError(err, P @ cov @ P.T, "essential")


def chi2_mean_band(dof: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided ``level`` interval of the mean of ``n`` independent chi-square(``dof``) values."""
    a = (1.0 - level) / 2.0
    return float(chi2.ppf(a, n * dof) / n), float(chi2.ppf(1.0 - a, n * dof) / n)


def mean_nees(errors: list[PoseError]) -> float:
    return float(np.mean([e.nees for e in errors])) if errors else float("nan")


# ---------------------------------------------------------------- rendered data
@dataclass
class RenderSetup:
    """Image size and the seeded room scene; ``K`` from :func:`default_intrinsics` (70 deg horizontal FOV)."""

    seed: int
    width: int = 480
    height: int = 360

    def __post_init__(self) -> None:
        self.scene = room_scene(seed=self.seed)
        self.K = default_intrinsics(self.width, self.height)
        self.camera = CameraModel(self.K, self.width, self.height)

    def render(self, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return render_view(self.scene, self.K, T_world_cam, (self.width, self.height))


def random_pair_poses(rng: np.random.Generator, max_translation_m: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Two camera poses in the room looking towards the +x wall: a random baseline of 10 cm to
    ``max_translation_m`` and a gaze change of a few degrees."""
    eye = np.array([rng.uniform(-2.5, 0.5), rng.uniform(-1.5, 1.5), rng.uniform(1.0, 1.8)])
    target = np.array([5.0, rng.uniform(-2.0, 2.0), rng.uniform(0.6, 1.8)])
    step = rng.normal(size=3)
    step *= rng.uniform(0.1, max_translation_m) / np.linalg.norm(step)
    return look_at(eye, target), look_at(eye + step, target + rng.normal(0.0, 0.3, 3))


def random_walk(rng: np.random.Generator, n_frames: int, step_m: float = 0.06) -> list[np.ndarray]:
    """A smooth random walk of ``n_frames`` camera poses (steps of ``step_m``, slowly turning gaze) in the room."""
    eye = np.array([rng.uniform(-2.5, -0.5), rng.uniform(-1.2, 1.2), rng.uniform(1.1, 1.7)])
    heading = rng.normal(size=3) * np.array([1.0, 1.0, 0.2])
    heading /= np.linalg.norm(heading)
    target = np.array([5.0, rng.uniform(-1.5, 1.5), rng.uniform(0.8, 1.6)])
    gaze_vel = rng.normal(0.0, 0.15, 3)
    poses = []
    for _ in range(n_frames):
        poses.append(look_at(eye, target))
        heading += rng.normal(0.0, 0.15, 3) * np.array([1.0, 1.0, 0.2])
        heading /= np.linalg.norm(heading)
        eye = eye + step_m * heading
        target = target + gaze_vel
    return poses


@dataclass
class PairSample:
    """A rendered pair matched and verified twice: with depth (``metric``, 6-DoF) and without (``mono``, 5-DoF)."""

    metric: PoseError | None
    mono: PoseError | None
    parallax_px: float
    field_share: float  # shared-field share of the ground-truth residuals (numerator, denominator summed later)
    field_norm: float


@dataclass
class MatchedPair:
    """Matches of two rendered views in normalised coordinates, the depth of the first view's keypoints, the truth."""

    x0n: np.ndarray
    x1n: np.ndarray
    depth0: np.ndarray
    T_1_0: np.ndarray
    focal_px: float
    scene_depth: float


def match_pair(setup: RenderSetup, matcher: Matcher, T0: np.ndarray, T1: np.ndarray) -> MatchedPair:
    """Render and match two views (``T_world_cam`` each)."""
    img0, z0 = setup.render(T0)
    img1, _ = setup.render(T1)
    m = matcher.match(img0, img1)
    depth0 = _sample_depth(z0.astype(np.float64), m.kpts0.astype(np.float64), 0.05)
    return MatchedPair(normalize_points(setup.camera, m.kpts0), normalize_points(setup.camera, m.kpts1), depth0,
                       invert(T1) @ T0, focal_px(setup.camera), float(np.nanmedian(z0)))


def matched_pairs(seed: int, count: int, matcher: Matcher) -> list[MatchedPair]:
    """``count`` random rendered pairs (:func:`random_pair_poses`) in the room of ``seed``, matched."""
    setup = RenderSetup(seed)
    rng = np.random.default_rng(seed)
    return [match_pair(setup, matcher, *random_pair_poses(rng)) for _ in range(count)]


def pair_sample(pair: MatchedPair, config: VOConfig) -> PairSample:
    """Verify a matched pair like the pipeline does, with depth (metric) and without (monocular)."""
    params = Pipeline.verify_params(config, pair.focal_px)
    x0, x1, depth0, T_gt = pair.x0n, pair.x1n, pair.depth0, pair.T_1_0
    metric = mono = None
    share = norm = 0.0
    parallax = float("nan")
    try:
        est = estimate_relative_pose(x0, x1, params, depth0, pair.scene_depth, config.min_triangulation_deg)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = est.R, est.t
        if est.scaled and est.method != "rotation":
            metric = PoseError(pose_error(T, T_gt), est.covariance, est.method)
        # The shared error field in the ground-truth residuals (see covariance.py): its share of the variance.
        inl = est.inlier_mask & np.isfinite(depth0)
        X0 = np.concatenate([x0[inl], np.ones((int(inl.sum()), 1))], axis=1) * depth0[inl, None]
        r = reprojection_residuals(T_gt[:3, :3], T_gt[:3, 3], X0, x1[inl])
        Phi = field_basis(x1[inl])
        coef = np.linalg.lstsq(Phi, r, rcond=None)[0]
        norm = float(np.sum(r * r))
        share = float(np.sum((Phi @ coef) ** 2)) - 6.0 * norm / (2 * len(r))  # minus the independent noise's share
    except VerificationError:
        pass
    try:
        est = estimate_relative_pose(x0, x1, params, None, pair.scene_depth, config.min_triangulation_deg)
        parallax = est.parallax_px
        if est.method == "essential":
            mono = direction_error(est.R, est.t, est.covariance, T_gt)
    except VerificationError:
        pass
    return PairSample(metric, mono, parallax, share, norm)


def odometry_errors(matcher: Matcher, camera: CameraModel, views: list[tuple[np.ndarray, np.ndarray]],
                    poses: list[np.ndarray], config: VOConfig, depth: bool) -> list[PoseError]:
    """Run the pipeline on rendered ``views`` ((image, depth) at ``poses``) and return the error of every emitted
    odometry pose after the origin.

    Monocular poses are compared in the pipeline's gauge: ground truth scaled so that the first keyframe pair's
    baseline is 1. Poses before initialisation, and the initialisation frame itself (whose distance to the origin
    is the unit by definition, so its covariance is singular along it), are skipped.
    """
    pipe = Pipeline(matcher, config)
    out = []
    scale = 1.0 if depth else None
    for i, ((img, z), T) in enumerate(zip(views, poses)):
        res = pipe.process(Frame(i * STEP_NS, img, camera, z if depth else None))
        if scale is None:
            if res.keyframe_pair is not None:
                j = res.keyframe_pair.stamp0_ns // STEP_NS
                scale = 1.0 / float(np.linalg.norm((invert(poses[j]) @ T)[:3, 3]))
            continue
        if res.odometry is None or i == 0:
            continue
        T_gt = invert(poses[0]) @ T
        T_gt[:3, 3] *= scale
        out.append(PoseError(pose_error(res.odometry.T_odom_cam, T_gt), res.odometry.pose_covariance, res.status))
    return out


class MemoMatcher:
    """Wraps a matcher and remembers its matches per image pair (by identity), to rerun the pipeline cheaply."""

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher
        self._cache: dict[tuple[int, int], object] = {}

    def match(self, image0: np.ndarray, image1: np.ndarray):
        key = (id(image0), id(image1))
        if key not in self._cache:
            self._cache[key] = self.matcher.match(image0, image1)
        return self._cache[key]


Walk = tuple[CameraModel, list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]


def rendered_walk(seed: int, n_frames: int = 10, step_m: float = 0.09, size: tuple[int, int] = (400, 300)) -> Walk:
    """A random walk (:func:`random_walk`) in the room of ``seed``, rendered: (camera, [(image, depth)], poses)."""
    setup = RenderSetup(seed, *size)
    poses = random_walk(np.random.default_rng(seed), n_frames, step_m)
    return setup.camera, [setup.render(T) for T in poses], poses


def chain_config(**overrides) -> VOConfig:
    """The pipeline configuration of the chained-consistency checks: early initialisation and frequent keyframes,
    so that a 10-frame walk chains several keyframe pairs."""
    return VOConfig(**{"init_min_parallax_px": 10.0, "kf_max_parallax_px": 10.0, "kf_max_translation_m": 0.15,
                       **overrides})


def last_pose_nees(matcher, walks: list[Walk], config: VOConfig, depth: bool) -> list[float]:
    """NEES of the last odometry pose of every walk (one independent sample per walk)."""
    out = []
    for camera, views, poses in walks:
        errs = odometry_errors(matcher, camera, views, poses, config, depth)
        if errs:
            out.append(errs[-1].nees)
    return out


# ---------------------------------------------------------------- calibration
def estimate_match_correlation(samples: list[PairSample]) -> float:
    """``rho``: the share of a match's displacement variance that is a field shared by all matches of the pair."""
    num = sum(s.field_share for s in samples if s.field_norm > 0)
    den = sum(s.field_norm for s in samples if s.field_norm > 0)
    return num / den if den > 0 else float("nan")


def main(argv: list[str] | None = None) -> None:
    """Estimate ``cov_match_correlation`` and ``cov_scale`` on rendered pairs with SIFT, then report NEES."""
    from casmtr_ros.matching import build_matcher

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23, 24], help="room scene seeds (calibration)")
    ap.add_argument("--pairs", type=int, default=12, help="rendered pairs per seed")
    ap.add_argument("--min-parallax", type=float, default=15.0, help="monocular pairs below this parallax are "
                    "skipped (the pipeline's vo.init_min_parallax_px)")
    ap.add_argument("--walk-seeds", type=int, nargs="+", default=list(range(61, 71)),
                    help="room scene seeds of the rendered walks (chained poses)")
    args = ap.parse_args(argv)
    matcher = build_matcher("sift", conf={"max_keypoints": 1000})
    raw = replace(VOConfig(), cov_match_correlation=0.0, cov_scale=1.0)
    pairs = [p for seed in args.seeds for p in matched_pairs(seed, args.pairs, matcher)]
    samples = [pair_sample(p, raw) for p in pairs]
    rho = estimate_match_correlation(samples)
    print(f"{len(samples)} rendered pairs (seeds {args.seeds}), SIFT: rho = {rho:.4f} (shared-field share)")
    model = replace(raw, cov_match_correlation=round(rho, 3))
    samples = [pair_sample(p, model) for p in pairs]
    metric = [s.metric for s in samples if s.metric is not None]
    mono = [s.mono for s in samples if s.mono is not None and s.parallax_px >= args.min_parallax]
    # cov_scale: the factor that brings the pooled mean NEES (metric 6-DoF and monocular 5-DoF) to its dof.
    total = sum(e.nees for e in metric + mono)
    dofs = sum(e.dof for e in metric + mono)
    k = total / dofs
    print(f"with rho: mean NEES metric {mean_nees(metric):.2f} (6, n={len(metric)}), monocular "
          f"{mean_nees(mono):.2f} (5, n={len(mono)}); cov_scale = {k:.2f}")
    for name, errs in (("metric", metric), ("monocular", mono)):
        lo, hi = chi2_mean_band(errs[0].dof, len(errs))
        print(f"  {name}: mean NEES / cov_scale = {mean_nees(errs) / k:.2f}, 95% band [{lo:.2f}, {hi:.2f}]")
    # Check: chained odometry poses (last pose of each rendered walk) with the estimated values.
    memo = MemoMatcher(matcher)
    walks = [rendered_walk(seed) for seed in args.walk_seeds]
    cfg = chain_config(cov_match_correlation=round(rho, 3), cov_scale=round(k, 2))
    for name, depth in (("RGB-D", True), ("monocular", False)):
        values = last_pose_nees(memo, walks, cfg, depth)
        lo, hi = chi2_mean_band(6, len(values))
        print(f"  chained {name} walks (seeds {args.walk_seeds[0]}-{args.walk_seeds[-1]}): mean NEES of the last "
              f"poses {np.mean(values):.2f} (6, n={len(values)}), 95% band [{lo:.2f}, {hi:.2f}]")


if __name__ == "__main__":
    main()
