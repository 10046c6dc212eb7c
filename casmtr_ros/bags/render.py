"""A small ray-cast renderer for textured planar scenes, with exact depth and a z-buffer (numpy + OpenCV).

A :class:`Scene` is a list of :class:`Plane` rectangles in the world frame, each carrying a texture. For every
pixel centre the renderer intersects the camera ray with every plane, keeps the nearest hit (occlusion) and samples
the plane's texture with trilinear mip-mapping (no aliasing when a wall is seen from far away). Geometry is exact:
the pixel ``(x, y)`` (centre at integer coordinates) sees the world point ``T_world_cam @ (depth * K^-1 [x, y, 1])``.

Conventions (as in :mod:`casmtr_ros.types`): ``T_world_cam`` maps camera-frame points into the world, the camera
frame is optical (x right, y down, z forward), ``depth`` is the z coordinate in the camera frame in metres,
NaN where no plane is hit. A 640x480 frame of the room scene takes about 55 ms of CPU time.

Example::

    from casmtr_ros.bags.render import render_view
    from casmtr_ros.bags.scenes import room_scene, default_intrinsics, look_at
    scene = room_scene(seed=0)
    K = default_intrinsics(640, 480)
    image, depth = render_view(scene, K, look_at([0, 0, 1.5], [3, 0, 1.2]), (640, 480))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

NEAR = 1e-3  # metres: hits closer than this are ignored


@dataclass
class Plane:
    """A textured rectangle: the texel at continuous coordinates ``(s, t)`` (``0 <= s < W``, ``0 <= t < H``) lies at
    ``origin + (s / W) * u + (t / H) * v`` in the world frame (metres).

    Attributes:
        origin: world position of the texture's top-left corner, shape (3,).
        u: world vector along the texture's width (its length is the plane's width in metres).
        v: world vector along the texture's height; must be perpendicular to ``u``.
        texture: ``HxW`` or ``HxWx3`` (RGB) uint8 image.
        gain: brightness factor applied to the texture (simple per-plane shading).
    """

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    texture: np.ndarray
    gain: float = 1.0
    _pyramid: list[np.ndarray] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.origin = np.asarray(self.origin, np.float64).reshape(3)
        self.u = np.asarray(self.u, np.float64).reshape(3)
        self.v = np.asarray(self.v, np.float64).reshape(3)
        nu, nv = np.linalg.norm(self.u), np.linalg.norm(self.v)
        if nu <= 0 or nv <= 0:
            raise ValueError("plane axes u and v must be non-zero")
        if abs(self.u @ self.v) > 1e-6 * nu * nv:
            raise ValueError("plane axes u and v must be perpendicular")
        tex = np.asarray(self.texture)
        if tex.dtype != np.uint8 or tex.ndim not in (2, 3) or (tex.ndim == 3 and tex.shape[2] != 3):
            raise ValueError(f"plane texture must be HxW or HxWx3 uint8, got {tex.dtype} {tex.shape}")
        self.texture = np.ascontiguousarray(tex)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.u, self.v)
        return n / np.linalg.norm(n)

    def pyramid(self) -> list[np.ndarray]:
        """Mip-map levels of the texture (level 0 = the texture), built once."""
        if not self._pyramid:
            levels = [self.texture]
            while min(levels[-1].shape[:2]) > 8:
                levels.append(cv2.pyrDown(levels[-1]))
            self._pyramid.extend(levels)
        return self._pyramid


@dataclass
class Scene:
    """Planes in the world frame and the colour seen where no plane is hit.

    Attributes:
        planes: the textured rectangles.
        background: RGB (or grey, first value) of empty pixels.
    """

    planes: list[Plane]
    background: tuple[int, int, int] = (0, 0, 0)

    @property
    def color(self) -> bool:
        """True when any texture is RGB (then frames are ``HxWx3``)."""
        return any(p.texture.ndim == 3 for p in self.planes)


def _remap_points(tex: np.ndarray, x: np.ndarray, y: np.ndarray, block: int = 1024) -> np.ndarray:
    """Bilinear lookup of ``tex`` at ``N`` points, ``(N, C)`` float32 (cv2.remap on blocks: its maps are < 32767)."""
    n = len(x)
    rows = -(-n // block)
    mx = np.zeros(rows * block, np.float32)
    my = np.zeros(rows * block, np.float32)
    mx[:n], my[:n] = x, y
    val = cv2.remap(tex, mx.reshape(rows, block), my.reshape(rows, block), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return val.reshape(rows * block, -1)[:n].astype(np.float32)


def _sample(plane: Plane, s: np.ndarray, t: np.ndarray, level: np.ndarray, color: bool) -> np.ndarray:
    """Trilinear texture lookup at normalised coordinates ``s, t`` in [0, 1) with fractional mip ``level``."""
    pyr = plane.pyramid()
    top = len(pyr) - 1
    level = np.clip(level, 0.0, top)
    lo = np.minimum(np.floor(level).astype(np.int32), top)
    out = np.empty((len(s), 3 if color else 1), np.float32)
    for lvl in np.unique(lo):
        sel = lo == lvl
        frac = (level[sel] - lvl)[:, None]
        acc = None
        for k, weight in ((lvl, 1.0 - frac), (min(lvl + 1, top), frac)):
            tex = pyr[k]
            h, w = tex.shape[:2]
            val = _remap_points(tex, s[sel] * w - 0.5, t[sel] * h - 0.5)
            if color and val.shape[1] == 1:
                val = np.repeat(val, 3, axis=1)
            elif not color and val.shape[1] == 3:
                val = val @ np.array([[0.299], [0.587], [0.114]], np.float32)
            acc = weight * val if acc is None else acc + weight * val
        out[sel] = acc
    return out * plane.gain


def _lin(vec: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``vec . (dx, dy, 1)`` per pixel, staying in float32."""
    a, b, c = (float(x) for x in vec)
    return a * dx + b * dy + c


def _window(K: np.ndarray, o_c: np.ndarray, u_c: np.ndarray, v_c: np.ndarray, width: int, height: int
            ) -> tuple[slice, slice] | None:
    """Image rows and columns a plane can cover (its projected corners' box), ``None`` when it cannot be seen."""
    corners = np.stack([o_c, o_c + u_c, o_c + v_c, o_c + u_c + v_c])
    z = corners[:, 2]
    if np.all(z <= NEAR):
        return None
    if np.any(z <= NEAR):  # crosses the camera plane: no simple box, use the whole image
        return slice(0, height), slice(0, width)
    uv = corners @ K.T
    uv = uv[:, :2] / uv[:, 2:3]
    x0, y0 = np.floor(uv.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 2
    x0, x1, y0, y1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def render_view(scene: Scene, K: np.ndarray, T_world_cam: np.ndarray, size: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Render one pinhole view of ``scene``.

    Args:
        scene: the planes to draw.
        K: 3x3 intrinsics.
        T_world_cam: 4x4 camera pose (camera-to-world, optical frame).
        size: ``(width, height)`` in pixels.

    Returns:
        ``(image, depth)``: ``HxWx3`` RGB uint8 (``HxW`` when every texture is grey) and ``HxW`` float32 z-depth in
        metres (NaN where nothing is hit).
    """
    width, height = int(size[0]), int(size[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    K = np.asarray(K, np.float64).reshape(3, 3)
    T = np.asarray(T_world_cam, np.float64).reshape(4, 4)
    R_cw, t_wc = T[:3, :3].T, T[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # Ray through each pixel centre, scaled to z = 1: d = (dx, dy, 1).
    dy, dx = np.mgrid[0:height, 0:width].astype(np.float32)
    dy = (dy - cy) / fy
    dx = (dx - cx - K[0, 1] * dy) / fx
    d2 = dx * dx + dy * dy + 1.0

    color = scene.color
    best_z = np.full((height, width), np.inf, np.float32)
    best_i = np.full((height, width), -1, np.int32)
    in_camera: dict[int, tuple[np.ndarray, ...]] = {}  # plane index -> origin, u, v, normal in the camera frame

    for i, plane in enumerate(scene.planes):
        o_c = R_cw @ (plane.origin - t_wc)
        u_c, v_c, n_c = R_cw @ plane.u, R_cw @ plane.v, R_cw @ plane.normal
        num = n_c @ o_c
        if abs(num) < 1e-12:
            continue  # the camera centre lies on the plane: it is seen edge-on
        win = _window(K, o_c, u_c, v_c, width, height)
        if win is None:
            continue
        wdx, wdy, wz = dx[win], dy[win], best_z[win]
        nd = _lin(n_c, wdx, wdy)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.float32(num) / nd
        hit = (z > NEAR) & (z < wz)
        if not hit.any():
            continue
        s = (z * _lin(u_c, wdx, wdy) - float(u_c @ o_c)) * float(1 / (plane.u @ plane.u))
        t = (z * _lin(v_c, wdx, wdy) - float(v_c @ o_c)) * float(1 / (plane.v @ plane.v))
        hit &= (s >= 0) & (s < 1) & (t >= 0) & (t < 1)
        np.copyto(wz, z, where=hit)  # (much faster than boolean-mask assignment)
        np.copyto(best_i[win], i, where=hit)
        in_camera[i] = (o_c, u_c, v_c, n_c)

    nch = 3 if color else 1
    image = np.empty((height * width, nch), np.float32)
    image[:] = np.asarray(scene.background, np.float32)[:nch]
    flat_i = best_i.reshape(-1)
    f = np.sqrt(fx * fy)
    order = np.argsort(flat_i, kind="stable")  # pixels grouped by the plane they see
    bounds = np.searchsorted(flat_i[order], np.arange(len(scene.planes) + 1))
    for i in in_camera:
        sel = order[bounds[i]:bounds[i + 1]]
        if not len(sel):
            continue
        plane = scene.planes[i]
        o_c, u_c, v_c, n_c = in_camera[i]
        z, sdx, sdy = best_z.reshape(-1)[sel], dx.reshape(-1)[sel], dy.reshape(-1)[sel]
        # Texture coordinates of the visible pixels, computed exactly as in the visibility pass.
        s = (z * _lin(u_c, sdx, sdy) - float(u_c @ o_c)) * float(1 / (plane.u @ plane.u))
        t = (z * _lin(v_c, sdx, sdy) - float(v_c @ o_c)) * float(1 / (plane.v @ plane.v))
        ray = np.sqrt(d2.reshape(-1)[sel])
        cos = np.maximum(np.abs(_lin(n_c, sdx, sdy)) / ray, 0.05)
        # Pixel footprint on the plane (metres), in texels of level 0, decides the mip level.
        footprint = z * ray / (f * cos)
        texels = footprint * max(plane.texture.shape[1] / np.linalg.norm(plane.u),
                                 plane.texture.shape[0] / np.linalg.norm(plane.v))
        level = np.log2(np.maximum(texels, 1e-6))
        image[sel] = _sample(plane, s, t, level, color)

    image = np.clip(np.rint(image), 0, 255).astype(np.uint8).reshape(height, width, nch)
    if not color:
        image = image[:, :, 0]
    depth = np.where(best_i >= 0, best_z, np.float32(np.nan)).astype(np.float32)
    return image, depth


def project(K: np.ndarray, T_world_cam: np.ndarray, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``(N, 3)`` world points: returns ``(N, 2)`` pixels and ``(N,)`` z-depths (the renderer's geometry)."""
    T = np.asarray(T_world_cam, np.float64)
    pc = (np.asarray(points_world, np.float64) - T[:3, 3]) @ T[:3, :3]
    uv = pc @ np.asarray(K, np.float64).T
    return uv[:, :2] / uv[:, 2:3], pc[:, 2]


def unproject(K: np.ndarray, T_world_cam: np.ndarray, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """World points ``(N, 3)`` seen at ``(N, 2)`` pixels with z-depths ``(N,)`` (inverse of :func:`project`)."""
    px = np.asarray(pixels, np.float64).reshape(-1, 2)
    rays = np.linalg.solve(np.asarray(K, np.float64), np.c_[px, np.ones(len(px))].T).T
    pc = rays * np.asarray(depth, np.float64).reshape(-1, 1)
    T = np.asarray(T_world_cam, np.float64)
    return pc @ T[:3, :3].T + T[:3, 3]
