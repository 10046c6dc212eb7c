"""OpenCV baselines ``sift`` and ``orb``: detect, describe, ratio test and mutual nearest-neighbour check.

For comparison with CasMTR and for users without a GPU. Features of the last few images are cached (keyed by the
image content), so matching a keyframe against a stream of frames describes the keyframe once.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, ClassVar

import cv2
import numpy as np

from casmtr_ros.matching.base import Matcher, register_matcher, to_gray_uint8
from casmtr_ros.types import Matches


class _OpenCVMatcher(Matcher):
    """Shared matching logic; subclasses build the detector and choose the descriptor norm."""

    norm: int = cv2.NORM_L2
    default_conf: ClassVar[dict[str, Any]] = {}

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        if not 0 < self.conf["ratio"] <= 1:
            raise ValueError(f"{self.name}: ratio must be in (0, 1], got {self.conf['ratio']}")
        self._detector = self._build_detector()
        self._bf = cv2.BFMatcher(self.norm, crossCheck=False)
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()

    def _build_detector(self) -> Any:
        raise NotImplementedError

    def _features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        gray = to_gray_uint8(image)
        key = hashlib.blake2b(gray.tobytes(), digest_size=16).hexdigest() + str(gray.shape)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        kps, desc = self._detector.detectAndCompute(gray, None)
        pts = np.array([kp.pt for kp in kps], np.float32).reshape(-1, 2)
        self._cache[key] = (pts, desc)
        while len(self._cache) > self.conf["cache_size"]:
            self._cache.popitem(last=False)
        return pts, desc

    def _ratio_matches(self, d0: np.ndarray, d1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best index into ``d1`` per row of ``d0`` and its ratio (best / second best distance; 0 if unique)."""
        knn = self._bf.knnMatch(d0, d1, k=2)
        best = np.full(len(d0), -1, np.int64)
        ratio = np.ones(len(d0), np.float32)
        for m in knn:
            if not m:
                continue
            best[m[0].queryIdx] = m[0].trainIdx
            ratio[m[0].queryIdx] = m[0].distance / m[1].distance if len(m) > 1 and m[1].distance > 0 else 0.0
        return best, ratio

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        t0 = time.perf_counter()
        p0, d0 = self._features(image0)
        p1, d1 = self._features(image1)
        t1 = time.perf_counter()
        if d0 is None or d1 is None or len(p0) < 2 or len(p1) < 2:
            out = Matches.empty()
            out.timings = {"detect": t1 - t0, "match": 0.0}
            return out
        fwd, ratio = self._ratio_matches(d0, d1)
        keep = (fwd >= 0) & (ratio < self.conf["ratio"])
        if self.conf["mutual"]:
            bwd, _ = self._ratio_matches(d1, d0)
            idx = np.flatnonzero(keep)
            keep[idx] = bwd[fwd[idx]] == idx
        i0 = np.flatnonzero(keep)
        i1 = fwd[i0]
        conf = np.clip(1.0 - ratio[i0], 0.0, 1.0)
        keep = _unique_positions(p0[i0], p1[i1], conf)
        out = Matches(p0[i0][keep], p1[i1][keep], conf[keep])
        out.timings = {"detect": t1 - t0, "match": time.perf_counter() - t1}
        return out


def _unique_positions(k0: np.ndarray, k1: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """Indices keeping one match (the most confident) per keypoint position on each side: detectors report
    several orientations or octaves at one location."""
    order = np.argsort(-conf, kind="stable")
    _, first0 = np.unique(k0[order], axis=0, return_index=True)
    sel = order[np.sort(first0)]
    _, first1 = np.unique(k1[sel], axis=0, return_index=True)
    return np.sort(sel[first1])


@register_matcher("sift")
class SIFTMatcher(_OpenCVMatcher):
    """SIFT (L2 descriptors) with Lowe's ratio test and a mutual check."""

    name = "sift"
    norm = cv2.NORM_L2
    default_conf: ClassVar[dict[str, Any]] = {
        "max_keypoints": 4000,  # 0 = unlimited
        "ratio": 0.8,  # Lowe's ratio test threshold
        "mutual": True,  # keep only mutual nearest neighbours
        "contrast_threshold": 0.02,  # SIFT contrast threshold (lower = more keypoints in low texture)
        "cache_size": 4,  # images whose features are kept
    }

    def _build_detector(self) -> Any:
        return cv2.SIFT_create(nfeatures=int(self.conf["max_keypoints"]),
                               contrastThreshold=float(self.conf["contrast_threshold"]))


@register_matcher("orb")
class ORBMatcher(_OpenCVMatcher):
    """ORB (Hamming descriptors) with a ratio test and a mutual check."""

    name = "orb"
    norm = cv2.NORM_HAMMING
    default_conf: ClassVar[dict[str, Any]] = {
        "max_keypoints": 4000,
        "ratio": 0.8,
        "mutual": True,
        "fast_threshold": 10,  # FAST corner threshold
        "cache_size": 4,
    }

    def _build_detector(self) -> Any:
        return cv2.ORB_create(nfeatures=int(self.conf["max_keypoints"]), fastThreshold=int(self.conf["fast_threshold"]))
