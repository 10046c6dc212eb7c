"""The benchmark image pair: two real KITTI 06 frames resized to the benchmark size, with the scaled intrinsics;
a rendered pair of the demo room where the KITTI frames are not available (a user's machine without ../shared)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Frames 0 and 2 of KITTI 06 (about 1.7 m of forward motion): a typical VO keyframe pair.
DEFAULT_FRAMES = ("image_0/000000.png", "image_0/000002.png")
KITTI06_K = np.array([[707.0912, 0.0, 601.8873], [0.0, 707.0912, 183.1104], [0.0, 0.0, 1.0]])


@dataclass
class BenchPair:
    """Two grey uint8 images of one size and their (shared) pinhole intrinsics."""

    image0: np.ndarray
    image1: np.ndarray
    K: np.ndarray
    source: str


def shared_dir() -> Path:
    repo = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("CASMTR_SHARED", repo.parent / "shared"))


def load_pair(size: tuple[int, int], folder: Path | None = None) -> BenchPair:
    """The pair resized to ``size = (width, height)``; K scaled per axis (the aspect ratio may change).

    Without ``folder`` the KITTI frames come from the shared data, or a rendered pair replaces them when absent
    (its ``source`` says so, and the report carries it).
    """
    folder_given = folder is not None
    folder = folder or shared_dir() / "data" / "kitti06_seq"
    paths = [folder / f for f in DEFAULT_FRAMES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        if folder_given:
            raise FileNotFoundError(f"benchmark images not found: {missing}")
        return rendered_pair(size)
    imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    h, w = imgs[0].shape
    W, H = size
    sx, sy = W / w, H / h
    K = np.diag([sx, sy, 1.0]) @ KITTI06_K
    out = [cv2.resize(im, (W, H), interpolation=cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR) for im in imgs]
    return BenchPair(out[0], out[1], K, f"{folder.name}/{DEFAULT_FRAMES[0]} + {DEFAULT_FRAMES[1]}")


def rendered_pair(size: tuple[int, int]) -> BenchPair:
    """Frames 10 and 14 of the demo walk through the textured room, rendered at ``size`` (deterministic)."""
    from casmtr_ros.bags.render import render_view
    from casmtr_ros.bags.scenes import default_intrinsics, demo_trajectory, room_scene

    W, H = size
    K = default_intrinsics(W, H)
    scene = room_scene(seed=0)
    poses = demo_trajectory()
    imgs = []
    for k in (10, 14):
        rgb, _ = render_view(scene, K, poses[k], (W, H))
        imgs.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb)
    return BenchPair(imgs[0], imgs[1], K, "rendered demo room, frames 10 + 14 (KITTI 06 frames not found)")
