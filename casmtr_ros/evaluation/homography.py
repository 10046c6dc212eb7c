"""HPatches-style homography evaluation: corner-error AUC at 3/5/10 px (the paper's HPatches table).

Layout: a sequence folder holds images ``1..6`` (``.ppm``, ``.png`` or ``.jpg``) and ``H_1_k`` (3x3 text, maps
image 1 to image k); a root folder holds several such sequences. As in the LoFTR protocol the images are resized
so that their shorter side is ``short_side`` pixels (default 480), the homography is estimated with OpenCV RANSAC
from the matches of every matcher alike, and the corner error is the mean distance of image 1's four corners
mapped by the estimated and the ground-truth homography, in pixels of the resized images. A failed estimate
counts as an infinite error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from casmtr_ros.evaluation.common import apply_scale, error_auc, load_image, resize_scale, timed_match
from casmtr_ros.matching.base import Matcher

AUC_THRESHOLDS_PX = (3, 5, 10)
IMAGE_EXTS = (".ppm", ".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class HomographyConfig:
    """Estimator and protocol settings, the same for every matcher."""

    short_side: int | None = 480
    ransac_threshold_px: float = 3.0
    confidence: float = 0.99999
    max_iters: int = 10000
    inlier_threshold_px: float = 3.0  # a match is correct when the GT homography maps it within this distance
    top_k: int | None = None  # keep only the most confident K matches (LoFTR's HPatches setting uses 1000)


def find_sequences(root: str | Path) -> list[Path]:
    """Sequence folders under ``root`` (``root`` itself when it is one); clear error when none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"HPatches folder not found: {root}")

    def is_seq(p: Path) -> bool:
        return (p / "H_1_2").is_file() and _image(p, 1) is not None

    if is_seq(root):
        return [root]
    seqs = sorted(p for p in root.iterdir() if p.is_dir() and is_seq(p))
    if not seqs:
        raise ValueError(f"{root}: no HPatches sequence (a folder with 1.ppm ... and H_1_2 ...)")
    return seqs


def _image(seq: Path, k: int) -> Path | None:
    return next((seq / f"{k}{ext}" for ext in IMAGE_EXTS if (seq / f"{k}{ext}").is_file()), None)


def read_homography(path: Path) -> np.ndarray:
    try:
        H = np.loadtxt(path, dtype=np.float64).reshape(3, 3)
    except ValueError:
        raise ValueError(f"{path}: not a 3x3 homography") from None
    if not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12:
        raise ValueError(f"{path}: singular or non-finite homography")
    return H


def corner_error(H_est: np.ndarray, H_gt: np.ndarray, width: int, height: int) -> float:
    """Mean distance (px) between image 1's corners mapped by ``H_est`` and by ``H_gt``."""
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], np.float64)
    a = cv2.perspectiveTransform(corners[None], H_est)[0]
    b = cv2.perspectiveTransform(corners[None], H_gt)[0]
    return float(np.linalg.norm(a - b, axis=1).mean())


def evaluate_homography(matcher: Matcher, root: str | Path, config: HomographyConfig = HomographyConfig(),
                        progress: bool = False) -> dict[str, Any]:
    """Evaluate one matcher on every pair (1, k) of every sequence under ``root``."""
    rows = []
    jobs = [(seq, k) for seq in find_sequences(root) for k in range(2, 7)
            if (seq / f"H_1_{k}").is_file() and _image(seq, k) is not None]
    it: Any = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc=getattr(matcher, "name", "matcher"), unit="pair")
    first: dict[Path, tuple[np.ndarray, tuple[float, float]]] = {}
    for seq, k in it:
        if seq not in first:
            img = load_image(_image(seq, 1))
            s = resize_scale(img.shape, None, config.short_side)
            first = {seq: (apply_scale(img, *s), s)}
        img0, (sx0, sy0) = first[seq]
        raw1 = load_image(_image(seq, k))
        sx1, sy1 = resize_scale(raw1.shape, None, config.short_side)
        img1 = apply_scale(raw1, sx1, sy1)
        # ground truth in resized coordinates: H = S1 H_gt S0^-1
        H_gt = np.diag([sx1, sy1, 1.0]) @ read_homography(seq / f"H_1_{k}") @ np.diag([1 / sx0, 1 / sy0, 1.0])
        matches, seconds = timed_match(matcher, img0, img1)
        if config.top_k is not None and len(matches) > config.top_k:
            matches = matches.subset(np.argsort(-matches.confidence, kind="stable")[:config.top_k])
        k0, k1 = matches.kpts0.astype(np.float64), matches.kpts1.astype(np.float64)
        err = float("inf")
        inliers = 0
        if len(k0) >= 4:
            H, mask = cv2.findHomography(k0, k1, cv2.RANSAC, config.ransac_threshold_px,
                                         maxIters=config.max_iters, confidence=config.confidence)
            if H is not None and np.isfinite(H).all():
                err = corner_error(H, H_gt, img0.shape[1], img0.shape[0])
                inliers = int(mask.sum())
        correct = 0.0
        if len(k0):
            proj = cv2.perspectiveTransform(k0[None], H_gt)[0]
            correct = float(np.mean(np.linalg.norm(proj - k1, axis=1) < config.inlier_threshold_px))
        rows.append({"sequence": seq.name, "pair": f"1-{k}", "matches": len(matches), "inliers": inliers,
                     "precision": correct, "corner_err_px": err, "time_s": seconds})
    if not rows:
        raise ValueError(f"{root}: no image pairs with a ground-truth homography")
    errs = [r["corner_err_px"] for r in rows]
    summary = {
        **error_auc(errs, AUC_THRESHOLDS_PX),
        "pairs": len(rows),
        "failures": int(sum(not np.isfinite(e) for e in errs)),
        "precision": float(np.mean([r["precision"] for r in rows])),
        "matches_mean": float(np.mean([r["matches"] for r in rows])),
        "time_per_pair_s": float(np.mean([r["time_s"] for r in rows])),
        "median_corner_err_px": float(np.median(errs)),
    }
    return {"summary": summary, "pairs": rows, "protocol": asdict(config)}
