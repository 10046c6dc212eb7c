"""Relative-pose evaluation on image pairs in the SuperGlue/LoFTR "pairs with ground truth" format.

Each line: ``name0 name1 rot0 rot1 K0(9) K1(9) T_0to1(16)`` (row-major; ``T_0to1`` maps camera-0 points into
camera 1; ``rot`` = quarter turns applied to the image before matching, as in SuperGlue). Every matcher's matches
go through the same estimator (:class:`PoseEstimatorConfig`: OpenCV RANSAC on the essential matrix in normalised
coordinates, then ``recoverPose``), so the numbers compare matchers, not estimators.

Per pair: pose error = max(angle of R error, angle between translation directions) in degrees (the translation
angle is folded to [0, 90] since the essential matrix fixes it up to sign), infinite when estimation fails.
Reported: AUC at 5/10/20 degrees, match count, precision (share of matches whose squared symmetric epipolar
distance in normalised coordinates is below ``epipolar_threshold``, as in LoFTR) and time per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from casmtr_ros.evaluation.common import apply_scale, error_auc, load_image, resize_scale, timed_match
from casmtr_ros.matching.base import Matcher
from casmtr_ros.types import Matches

AUC_THRESHOLDS_DEG = (5, 10, 20)


@dataclass(frozen=True)
class PoseEstimatorConfig:
    """The essential-matrix estimator used for every matcher (LoFTR's evaluation values)."""

    ransac_threshold_px: float = 0.5  # divided by the mean focal length of both cameras
    confidence: float = 0.99999
    min_matches: int = 5
    epipolar_threshold: float = 1e-4  # squared symmetric epipolar distance, normalised coordinates


@dataclass
class PosePair:
    """One line of a pairs file."""

    name0: str
    name1: str
    rot0: int
    rot1: int
    K0: np.ndarray
    K1: np.ndarray
    T_0to1: np.ndarray


def read_pairs(path: str | Path) -> list[PosePair]:
    """Parse a pairs file; raises ``ValueError`` naming the line for a malformed one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    pairs = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 38:
            raise ValueError(f"{path}:{no}: expected 38 tokens (name0 name1 rot0 rot1 K0 K1 T_0to1), got {len(parts)}")
        try:
            vals = np.array(parts[4:], np.float64)
            rot0, rot1 = int(parts[2]), int(parts[3])
        except ValueError:
            raise ValueError(f"{path}:{no}: not a number in {line!r}") from None
        T = vals[18:].reshape(4, 4)
        if not np.allclose(T[3], [0, 0, 0, 1]) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4):
            raise ValueError(f"{path}:{no}: T_0to1 is not a rigid transform")
        pairs.append(PosePair(parts[0], parts[1], rot0, rot1, vals[:9].reshape(3, 3), vals[9:18].reshape(3, 3), T))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def unrotate_points(pts: np.ndarray, rot: int, shape: tuple[int, ...]) -> np.ndarray:
    """Map points of ``np.rot90(image, rot)`` back to ``image`` coordinates (``shape`` = the original's)."""
    h, w = shape[:2]
    p = np.asarray(pts, np.float64).copy()
    for j in range(rot % 4, 0, -1):  # undo the quarter turns, last first
        # one counter-clockwise turn maps (x, y) of an image of width W to (y, W-1-x); invert it
        width_before = w if (j - 1) % 2 == 0 else h
        p = np.stack([width_before - 1 - p[:, 1], p[:, 0]], axis=1)
    return p.astype(np.float32)


def match_pair(matcher: Matcher, image0: np.ndarray, image1: np.ndarray, rot0: int = 0, rot1: int = 0,
               resize: Sequence[int] | None = None) -> tuple[Matches, float]:
    """Match two original images with optional quarter turns and resizing; keypoints come back in original pixels."""
    inputs, scales = [], []
    for img, rot in ((image0, rot0), (image1, rot1)):
        sx, sy = resize_scale(img.shape, resize)
        r = np.ascontiguousarray(np.rot90(apply_scale(img, sx, sy), rot)) if rot % 4 else apply_scale(img, sx, sy)
        inputs.append(r)
        scales.append((sx, sy, rot, apply_scale(img, sx, sy).shape))
    matches, seconds = timed_match(matcher, inputs[0], inputs[1])
    kpts = []
    for pts, (sx, sy, rot, shape) in zip((matches.kpts0, matches.kpts1), scales):
        p = unrotate_points(pts, rot, shape) if rot % 4 else pts.astype(np.float64)
        kpts.append(np.asarray(p, np.float64) / [sx, sy])
    return Matches(kpts[0], kpts[1], matches.confidence, None, dict(matches.timings)), seconds


def _normalise(pts: np.ndarray, K: np.ndarray) -> np.ndarray:
    return (pts - K[[0, 1], [2, 2]]) / K[[0, 1], [0, 1]]


def estimate_pose(kpts0: np.ndarray, kpts1: np.ndarray, K0: np.ndarray, K1: np.ndarray,
                  config: PoseEstimatorConfig = PoseEstimatorConfig()
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(R, t, inlier_mask)`` of ``T_0to1`` from pixel matches, or ``None`` when estimation fails."""
    if len(kpts0) < config.min_matches:
        return None
    x0, x1 = _normalise(kpts0, K0), _normalise(kpts1, K1)
    thr = config.ransac_threshold_px / np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]])
    E, mask = cv2.findEssentialMat(x0, x1, np.eye(3), method=cv2.RANSAC, prob=config.confidence, threshold=thr)
    if E is None or mask is None:
        return None
    best = None
    for k in range(0, E.shape[0], 3):
        n, R, t, m = cv2.recoverPose(E[k:k + 3], x0, x1, np.eye(3), 1e9, mask=mask.copy())
        if best is None or n > best[0]:
            best = (n, R, t[:, 0], m.ravel() > 0)
    return None if best is None else best[1:]


def pose_errors(T_0to1: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """(rotation error, translation direction error) in degrees; the direction error is folded to [0, 90]."""
    t_gt = T_0to1[:3, 3]
    n = np.linalg.norm(t_gt) * np.linalg.norm(t)
    t_err = np.degrees(np.arccos(np.clip(t @ t_gt / max(n, 1e-12), -1, 1)))
    t_err = min(t_err, 180 - t_err)
    if np.linalg.norm(t_gt) < 1e-6:  # pure rotation: direction undefined, ignore it as LoFTR does
        t_err = 0.0
    cos = (np.trace(T_0to1[:3, :3].T @ R) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1)))), float(t_err)


def epipolar_errors(kpts0: np.ndarray, kpts1: np.ndarray, K0: np.ndarray, K1: np.ndarray, T_0to1: np.ndarray
                    ) -> np.ndarray:
    """Squared symmetric epipolar distance of every match under the ground truth, normalised coordinates."""
    x0 = np.c_[_normalise(kpts0, K0), np.ones(len(kpts0))]
    x1 = np.c_[_normalise(kpts1, K1), np.ones(len(kpts1))]
    t = T_0to1[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    E = tx @ T_0to1[:3, :3]
    l1 = x0 @ E.T  # epipolar lines in image 1
    l0 = x1 @ E  # epipolar lines in image 0
    num = np.sum(x1 * l1, axis=1) ** 2
    with np.errstate(divide="ignore"):
        return num * (1 / (l1[:, 0] ** 2 + l1[:, 1] ** 2) + 1 / (l0[:, 0] ** 2 + l0[:, 1] ** 2))


def evaluate_pairs(matcher: Matcher, pairs: list[PosePair], images_dir: str | Path,
                   resize: Sequence[int] | None = None, config: PoseEstimatorConfig = PoseEstimatorConfig(),
                   progress: bool = False) -> dict[str, Any]:
    """Evaluate one matcher on ``pairs`` (images under ``images_dir``); returns the summary and per-pair rows."""
    images_dir = Path(images_dir)
    cache: dict[str, np.ndarray] = {}

    def image(name: str) -> np.ndarray:
        if name not in cache:
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
            cache[name] = load_image(images_dir / name)
        return cache[name]

    rows = []
    it: Any = pairs
    if progress:
        from tqdm import tqdm

        it = tqdm(pairs, desc=getattr(matcher, "name", "matcher"), unit="pair")
    for p in it:
        matches, seconds = match_pair(matcher, image(p.name0), image(p.name1), p.rot0, p.rot1, resize)
        k0, k1 = matches.kpts0.astype(np.float64), matches.kpts1.astype(np.float64)
        epi = epipolar_errors(k0, k1, p.K0, p.K1, p.T_0to1)
        est = estimate_pose(k0, k1, p.K0, p.K1, config)
        if est is None:
            r_err = t_err = float("inf")
            inliers = 0
        else:
            r_err, t_err = pose_errors(p.T_0to1, est[0], est[1])
            inliers = int(est[2].sum())
        rows.append({"pair": f"{p.name0} {p.name1}", "matches": len(matches), "inliers": inliers,
                     "precision": float(np.mean(epi < config.epipolar_threshold)) if len(epi) else 0.0,
                     "R_err_deg": r_err, "t_err_deg": t_err, "pose_err_deg": max(r_err, t_err), "time_s": seconds})
    errs = [r["pose_err_deg"] for r in rows]
    summary = {
        **error_auc(errs, AUC_THRESHOLDS_DEG),
        "pairs": len(rows),
        "failures": int(sum(not np.isfinite(e) for e in errs)),
        "precision": float(np.mean([r["precision"] for r in rows])),
        "matches_mean": float(np.mean([r["matches"] for r in rows])),
        "inliers_mean": float(np.mean([r["inliers"] for r in rows])),
        "time_per_pair_s": float(np.mean([r["time_s"] for r in rows])),
        "median_pose_err_deg": float(np.median(errs)),
    }
    return {"summary": summary, "pairs": rows, "estimator": asdict(config),
            "resize": list(resize) if resize else None}
