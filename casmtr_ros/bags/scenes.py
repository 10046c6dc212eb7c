"""Ready-made scenes, camera intrinsics and camera paths for :func:`casmtr_ros.bags.render.render_view`.

World frame: z up, metres. Camera poses are ``T_world_cam`` in the optical convention (x right, y down, z forward).

- :func:`room_scene`: a 10 x 7 x 3 m room (floor, ceiling, four walls) with textured pillars that occlude the walls.
- :func:`planes_scene`: a back wall and several free-standing planes at different depths and slants.
- :func:`demo_trajectory`: a smooth walk through the room (the demo bag's path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from casmtr_ros.bags.render import Plane, Scene
from casmtr_ros.bags.textures import load_texture, procedural_texture

ROOM_SIZE = (10.0, 7.0, 3.0)  # x, y, z extents in metres; the floor is z = 0, the room is centred on x = y = 0
TEXELS_PER_METRE = 160


def default_intrinsics(width: int = 640, height: int = 480, hfov_deg: float = 70.0) -> np.ndarray:
    """Pinhole intrinsics with square pixels, the principal point at the image centre and a horizontal FOV."""
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], np.float64)


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0, 0, 1)) -> np.ndarray:
    """``T_world_cam`` of a camera at ``eye`` looking at ``target`` with image-up along ``up`` (optical frame)."""
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    z = target - eye
    if np.linalg.norm(z) == 0:
        raise ValueError("look_at: eye and target coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to up")
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    T[:3, 3] = eye
    return T


class _TextureSource:
    """Hands out textures: images from ``files`` in turn when given, procedural ones (seeded) otherwise."""

    def __init__(self, seed: int, files: Sequence[str | Path] | None, color: bool) -> None:
        self.seed, self.files, self.color, self.count = seed, list(files or []), color, 0

    def __call__(self, width_m: float, height_m: float) -> np.ndarray:
        k, self.count = self.count, self.count + 1
        if self.files:
            tex = load_texture(self.files[k % len(self.files)])
            return tex if self.color else tex.mean(axis=2).round().astype(np.uint8)
        size = (max(64, int(height_m * TEXELS_PER_METRE)), max(64, int(width_m * TEXELS_PER_METRE)))
        area = width_m * height_m
        return procedural_texture(size, seed=self.seed * 1000 + k, shapes=int(12 * area) + 10,
                                  text=int(3 * area) + 3, color=self.color)


def _box(center: Sequence[float], size: Sequence[float], tex: _TextureSource, gain: float) -> list[Plane]:
    """Four vertical faces and the top of an axis-aligned box standing on the floor."""
    cx, cy, _ = center
    sx, sy, sz = size
    x0, x1, y0, y1 = cx - sx / 2, cx + sx / 2, cy - sy / 2, cy + sy / 2
    down = (0, 0, -sz)
    return [
        Plane((x0, y0, sz), (sx, 0, 0), down, tex(sx, sz), gain * 0.95),
        Plane((x1, y1, sz), (-sx, 0, 0), down, tex(sx, sz), gain * 0.85),
        Plane((x1, y0, sz), (0, sy, 0), down, tex(sy, sz), gain * 0.9),
        Plane((x0, y1, sz), (0, -sy, 0), down, tex(sy, sz), gain * 0.8),
        Plane((x0, y0, sz), (sx, 0, 0), (0, sy, 0), tex(sx, sy), gain),
    ]


def room_scene(seed: int = 0, texture_files: Sequence[str | Path] | None = None, color: bool = True,
               pillars: bool = True) -> Scene:
    """A closed room with textured walls, floor and ceiling, and (optionally) three textured pillars.

    Args:
        seed: texture seed (same seed, same scene).
        texture_files: optional image files used as textures instead of procedural ones (cycled).
        color: RGB textures (grey otherwise).
        pillars: add three boxes that occlude parts of the walls.
    """
    tex = _TextureSource(seed, texture_files, color)
    lx, ly, lz = ROOM_SIZE
    hx, hy = lx / 2, ly / 2
    planes = [
        Plane((hx, hy, lz), (0, -ly, 0), (0, 0, -lz), tex(ly, lz), 1.0),  # +x wall, seen from inside
        Plane((-hx, -hy, lz), (0, ly, 0), (0, 0, -lz), tex(ly, lz), 0.9),  # -x wall
        Plane((-hx, hy, lz), (lx, 0, 0), (0, 0, -lz), tex(lx, lz), 0.95),  # +y wall
        Plane((hx, -hy, lz), (-lx, 0, 0), (0, 0, -lz), tex(lx, lz), 0.85),  # -y wall
        Plane((-hx, hy, 0), (lx, 0, 0), (0, -ly, 0), tex(lx, ly), 0.75),  # floor
        Plane((-hx, -hy, lz), (lx, 0, 0), (0, ly, 0), tex(lx, ly), 0.65),  # ceiling
    ]
    if pillars:
        planes += _box((3.2, 1.6, 0), (0.8, 0.8, 2.0), tex, 1.0)
        planes += _box((2.8, -1.8, 0), (0.6, 1.0, 1.4), tex, 0.9)
        planes += _box((-0.5, 2.6, 0), (1.2, 0.6, 1.0), tex, 0.95)
    return Scene(planes, background=(40, 40, 40))


def planes_scene(seed: int = 0, count: int = 6, texture_files: Sequence[str | Path] | None = None,
                 color: bool = True) -> Scene:
    """A textured back wall 12 m ahead (+x) and ``count`` slanted planes between 3 and 9 m, for views from near
    the origin looking along +x."""
    rng = np.random.default_rng(seed)
    tex = _TextureSource(seed, texture_files, color)
    planes = [Plane((12, 8, 6), (0, -16, 0), (0, 0, -6), tex(16, 6), 1.0)]
    for _ in range(count):
        w, h = rng.uniform(1.5, 4.0), rng.uniform(1.0, 3.0)
        yaw = rng.uniform(-0.9, 0.9)
        tilt = rng.uniform(-0.4, 0.4)
        u = np.array([np.sin(yaw), -np.cos(yaw), 0.0]) * w
        v = np.array([np.sin(tilt) * np.cos(yaw), np.sin(tilt) * np.sin(yaw), -np.cos(tilt)]) * h
        v -= (v @ u) / (u @ u) * u
        center = np.array([rng.uniform(3, 9), rng.uniform(-4, 4), rng.uniform(0.5, 2.5)])
        planes.append(Plane(center - u / 2 - v / 2, u, v, tex(w, h), float(rng.uniform(0.75, 1.0))))
    return Scene(planes, background=(90, 110, 140))


def street_scene(seed: int = 0, texture_files: Sequence[str | Path] | None = None, color: bool = True,
                 length_m: float = 80.0) -> Scene:
    """A straight street along +x (from x = -5 m to ``length_m``): a road and two pavements on the ground, facades
    of varying height and setback on both sides, parked boxes ("cars") and posts, a building closing the end.

    For views from the road looking along +x and driving forward: strong scale change and parallax between views
    several metres apart, as in a driving sequence.
    """
    rng = np.random.default_rng(seed)
    tex = _TextureSource(seed, texture_files, color)
    half = rng.uniform(3.5, 6.0)  # half width of the road, metres
    x0, x1 = -5.0, float(length_m)
    planes: list[Plane] = []
    x = x0
    while x < x1:  # road and pavements in segments (one texture each)
        seg = float(rng.uniform(6.0, 12.0))
        planes.append(Plane((x, half, 0), (seg, 0, 0), (0, -2 * half, 0), tex(seg, 2 * half), 0.7))
        for side in (1, -1):
            walk = 5.0  # up to the deepest facade setback
            y_in, y_out = side * half, side * (half + walk)
            planes.append(Plane((x, y_out if side > 0 else y_in, 0.001), (seg, 0, 0), (0, -walk, 0),
                                tex(seg, walk), 0.8))
        x += seg
    for side in (1, -1):  # facades facing the road
        x = x0
        while x < x1:
            width = float(rng.uniform(4.0, 10.0))
            height = float(rng.uniform(4.0, 14.0))
            y = side * (half + 2.5 + rng.uniform(0.0, 2.5))
            # seen from the road: u runs along +x on the left side (+y), along -x on the right side
            origin = (x, y, height) if side > 0 else (x + width, y, height)
            u = (width, 0, 0) if side > 0 else (-width, 0, 0)
            planes.append(Plane(origin, u, (0, 0, -height), tex(width, height), float(rng.uniform(0.75, 1.0))))
            x += width
        # a continuous wall behind the facades closes the gaps between setbacks
        y = side * (half + 5.0)
        origin, u = ((x0, y, 14.0), (x1 - x0, 0, 0)) if side > 0 else ((x1, y, 14.0), (x0 - x1, 0, 0))
        planes.append(Plane(origin, u, (0, 0, -14.0), tex(x1 - x0, 14.0), 0.8))
    planes.append(Plane((x1 + 5, 3 * half, 15), (0, -6 * half, 0), (0, 0, -15), tex(6 * half, 15), 0.9))
    for _ in range(int(rng.integers(3, 9))):  # parked cars along both kerbs
        side = 1 if rng.random() < 0.5 else -1
        cx = float(rng.uniform(3.0, x1 - 5))
        planes += _box((cx, side * (half - 1.1), 0), (rng.uniform(3.5, 4.8), 1.8, rng.uniform(1.3, 1.7)), tex,
                       float(rng.uniform(0.7, 1.0)))
    for _ in range(int(rng.integers(2, 7))):  # posts on the pavements
        side = 1 if rng.random() < 0.5 else -1
        planes += _box((float(rng.uniform(3.0, x1 - 5)), side * (half + 0.5), 0), (0.3, 0.3, rng.uniform(2.5, 4.5)),
                       tex, 0.9)
    return Scene(planes, background=(150, 170, 200))


def demo_trajectory(n_frames: int = 60, length_m: float = 3.5) -> list[np.ndarray]:
    """Camera poses of a smooth walk through :func:`room_scene`: forward and sideways at ~1.4 m height with a
    gently swinging gaze towards the +x wall, ``length_m`` of path over ``n_frames`` poses."""
    if n_frames < 2:
        raise ValueError("a trajectory needs at least 2 frames")
    poses = []
    for k in range(n_frames):
        a = k / (n_frames - 1)
        eye = np.array([-2.5 + 0.8 * length_m * a, -1.0 + 0.5 * length_m * a * (1 - 0.4 * a),
                        1.4 + 0.15 * np.sin(2 * np.pi * a)])
        target = np.array([5.0, 0.8 * np.sin(1.5 * np.pi * a) - 0.3, 1.2 + 0.3 * np.cos(np.pi * a)])
        poses.append(look_at(eye, target))
    return poses
