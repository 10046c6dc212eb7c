"""Training pair sources: real RGB-D and multi-view sets, homographies of photographs, rendered scenes, and
MegaDepth / ScanNet in the LoFTR index format.

Every source is indexed by an integer *sample key*; the pair, crop and augmentation are drawn from a
generator seeded by ``(seed, key)``, so a sample is the same whatever the worker, process or resume point.
Every sample is a dict of tensors on a fixed training size ``(H, W)`` (multiples of 32):

* ``image0``, ``image1``: ``[3, H, W]`` float32 RGB in [0, 1];
* ``w01`` ``[L4, 2]``, ``v01`` ``[L4]``: the 1/4-grid points ``(4x, 4y)`` of image 0 warped into image 1 (pixels)
  and their validity (inside, depth-consistent); ``w10``, ``v10`` the reverse. Coarser GT is derived from these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from casmtr_ros.training import augment as A
from casmtr_ros.training.supervision import fill_sparse_depth, grid_points, inv3, warp_depth, warp_homography

GRID_STRIDE = 4


def _rng(seed: int, key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(key)])


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0


@dataclass
class View:
    """One image with depth (metres or scene units; 0 = unknown), intrinsics and world-to-camera pose."""

    image: np.ndarray  # HxWx3 uint8 RGB
    depth: np.ndarray  # HxW float32
    K: np.ndarray  # 3x3
    T_cw: np.ndarray  # 4x4 world -> camera


def depth_pair_sample(v0: View, v1: View, size: tuple[int, int], rng: np.random.Generator | None,
                      zoom: tuple[float, float] = (1.0, 1.4), rel_thresh: float = 0.1, photometric: bool = True
                      ) -> dict[str, torch.Tensor]:
    """Resize-and-crop both views to ``size`` (independent random zoom = scale augmentation) and warp the grid."""
    H, W = size
    out: dict[str, Any] = {}
    views = []
    for k, v in enumerate((v0, v1)):
        s, x0, y0 = A.resize_crop_params(v.image.shape[:2], size, rng, zoom)
        M = A.scale_crop_matrix(s, x0, y0)
        img = A.apply_affine(v.image, M, size)
        if photometric and rng is not None:
            img = A.photometric(img, rng)
        depth = A.resize_depth_nearest(v.depth, M, size)
        out[f"image{k}"] = _to_tensor(img)
        views.append((torch.from_numpy(depth)[None], torch.from_numpy(M @ v.K).float()[None]))
    T_0to1 = torch.from_numpy(v1.T_cw @ np.linalg.inv(v0.T_cw)).float()[None]
    pts = grid_points(H // GRID_STRIDE, W // GRID_STRIDE, GRID_STRIDE)[None]
    (d0, K0), (d1, K1) = views
    v01, w01 = warp_depth(pts, d0, d1, T_0to1, K0, K1, rel_thresh)
    T_1to0 = torch.from_numpy(np.linalg.inv(T_0to1[0].double().numpy())).float()[None]
    v10, w10 = warp_depth(pts, d1, d0, T_1to0, K1, K0, rel_thresh)
    out.update(w01=w01[0], v01=v01[0], w10=w10[0], v10=v10[0])
    return out


def homography_pair_sample(img: np.ndarray, size: tuple[int, int], rng: np.random.Generator | None,
                           strength: float = 1.0, photometric: bool = True) -> dict[str, torch.Tensor]:
    """Image 0 = a crop of ``img``; image 1 = the same crop seen through a random homography."""
    H, W = size
    s, x0, y0 = A.resize_crop_params(img.shape[:2], size, rng, (1.0, 1.3))
    M0 = A.scale_crop_matrix(s, x0, y0)
    g = rng if rng is not None else np.random.default_rng(0)
    Hm = A.random_homography(W, H, g, strength)
    im0 = A.apply_affine(img, M0, size)
    # image 1 is rendered from the full source image (content beyond the crop stays valid)
    im1 = A.apply_affine(img, Hm @ M0, size)
    valid_src = np.ones(img.shape[:2], np.uint8)
    mask1 = A.apply_affine(valid_src, Hm @ M0, size, nearest=True)
    if photometric and rng is not None:
        im0, im1 = A.photometric(im0, rng), A.photometric(im1, rng)
    Ht = torch.from_numpy(Hm).float()[None]
    pts = grid_points(H // GRID_STRIDE, W // GRID_STRIDE, GRID_STRIDE)[None]
    v01, w01 = warp_homography(pts, Ht, size, torch.from_numpy(mask1)[None])
    v10, w10 = warp_homography(pts, inv3(Ht), size)
    src_ok = torch.from_numpy(mask1)[GRID_STRIDE // 2::GRID_STRIDE, GRID_STRIDE // 2::GRID_STRIDE] > 0
    v10 = v10 & src_ok.reshape(1, -1)
    return {"image0": _to_tensor(im0), "image1": _to_tensor(im1), "w01": w01[0], "v01": v01[0],
            "w10": w10[0], "v10": v10[0], "H_0to1": Ht[0]}


class PairSource(Dataset):
    """Base of every source: ``len`` = number of distinct pairs; ``sample(key, rng)`` draws one augmented pair."""

    size: tuple[int, int]
    seed: int = 0
    augment: bool = True

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        rng = _rng(self.seed, key) if self.augment else None
        return self.sample(int(key), rng)

    def sample(self, key: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def _require_dir(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {root}")
    return root


class HomographyImages(PairSource):
    """Random homographies and photometric changes of the photographs under ``root`` (e.g. train_images).

    ``set_weights`` maps a sub-folder name to a sampling weight (default 1; urban / scene sets are useful
    at 2).
    """

    def __init__(self, root: str | Path, size: tuple[int, int], seed: int = 0, augment: bool = True,
                 set_weights: dict[str, float] | None = None, strength: float = 1.0) -> None:
        root = _require_dir(Path(root), "train_images")
        self.size, self.seed, self.augment, self.strength = tuple(size), seed, augment, strength
        self.files: list[Path] = []
        weights: list[float] = []
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".ppm"):
                self.files.append(p)
                weights.append((set_weights or {}).get(p.parent.name, 1.0))
        if not self.files:
            raise FileNotFoundError(f"no images under {root}")
        w = np.asarray(weights, np.float64)
        self.cum = np.cumsum(w / w.sum())

    def __len__(self) -> int:
        return len(self.files)

    def sample(self, key: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        i = int(np.searchsorted(self.cum, rng.random())) if rng is not None else key % len(self.files)
        i = min(i, len(self.files) - 1)
        return homography_pair_sample(_read_rgb(self.files[i]), self.size, rng, self.strength,
                                      photometric=rng is not None)


def _quat_to_rot(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    n = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    x, y, z, w = qx / n, qy / n, qz / n, qw / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class RGBDSequences(PairSource):
    """Indoor RGB-D sequences in the ``train_rgbd`` layout (uint16 depth, camera-to-world TUM poses).

    Pairs are frames at most ``max_gap`` apart whose co-visibility (computed at init on a coarse grid with the
    depth check) lies in ``overlap``.
    """

    def __init__(self, root: str | Path, size: tuple[int, int], seed: int = 0, augment: bool = True,
                 overlap: tuple[float, float] = (0.2, 0.85), max_gap: int = 12, rel_thresh: float = 0.05) -> None:
        root = _require_dir(Path(root), "train_rgbd")
        self.size, self.seed, self.augment, self.rel_thresh = tuple(size), seed, augment, rel_thresh
        self.frames: list[tuple[Path, Path, np.ndarray, np.ndarray, float]] = []
        self.pairs: list[tuple[int, int, float]] = []
        for seq in sorted(p for p in root.iterdir() if (p / "frames.txt").is_file()):
            K, scale = self._intrinsics(seq / "intrinsics.txt")
            start = len(self.frames)
            for line in (seq / "frames.txt").read_text().splitlines():
                t = line.split()
                if len(t) != 9 or line.startswith("#"):
                    continue
                T_wc = np.eye(4)
                T_wc[:3, :3] = _quat_to_rot(*map(float, t[5:9]))
                T_wc[:3, 3] = list(map(float, t[2:5]))
                self.frames.append((seq / t[0], seq / t[1], K, np.linalg.inv(T_wc), scale))
            self.pairs += self._select_pairs(start, len(self.frames), overlap, max_gap)
        if not self.pairs:
            raise FileNotFoundError(f"no RGB-D pairs with overlap in {overlap} under {root}")

    @staticmethod
    def _intrinsics(path: Path) -> tuple[np.ndarray, float]:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        fx, fy, cx, cy = map(float, lines[0][:4])
        scale = next(float(t[1]) for t in lines if t[0] == "depth_scale")
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), scale

    def _depth(self, i: int) -> np.ndarray:
        _, dpath, _, _, scale = self.frames[i]
        d = cv2.imread(str(dpath), cv2.IMREAD_UNCHANGED)
        if d is None:
            raise FileNotFoundError(f"cannot read depth {dpath}")
        return d.astype(np.float32) / scale

    def _select_pairs(self, a: int, b: int, overlap: tuple[float, float], max_gap: int
                      ) -> list[tuple[int, int, float]]:
        """Pairs (i, j) of frames ``a..b-1`` with ``j - i <= max_gap`` whose co-visibility lies in ``overlap``.

        Co-visibility is computed on a 1/16 grid with the depth check, all successors of a frame in one batch.
        """
        step = 16
        S = torch.from_numpy(np.diag([1 / step, 1 / step, 1]))
        depths = torch.stack([torch.from_numpy(self._depth(i)[::step, ::step].copy()) for i in range(a, b)])
        Ks = torch.stack([(S @ torch.from_numpy(self.frames[i][2])) for i in range(a, b)]).float()
        Ts = torch.stack([torch.from_numpy(self.frames[i][3]) for i in range(a, b)])  # world -> camera
        h, w = depths.shape[-2:]
        out = []
        for i in range(b - a - 1):
            js = torch.arange(i + 1, min(b - a, i + max_gap + 1))
            n = len(js)
            pts = grid_points(h, w, 1)[None].expand(n, -1, -1)
            T = (Ts[js] @ torch.from_numpy(np.linalg.inv(Ts[i].numpy()))).float()  # i -> j
            T_inv = torch.from_numpy(np.linalg.inv(T.double().numpy())).float()
            di, Ki = depths[i].expand(n, -1, -1), Ks[i].expand(n, -1, -1)
            vij, _ = warp_depth(pts, di, depths[js], T, Ki, Ks[js], 0.1)
            vji, _ = warp_depth(pts, depths[js], di, T_inv, Ks[js], Ki, 0.1)
            ov = torch.minimum(vij.float().mean(1), vji.float().mean(1))
            for j, o in zip(js.tolist(), ov.tolist(), strict=True):
                if overlap[0] <= o <= overlap[1]:
                    out.append((a + i, a + j, o))
        return out

    def __len__(self) -> int:
        return len(self.pairs)

    def view(self, i: int) -> View:
        rgb, _, K, T_cw, _ = self.frames[i]
        return View(_read_rgb(rgb), self._depth(i), K, T_cw)

    def sample(self, key: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        i, j, _ = self.pairs[int(rng.integers(len(self.pairs))) if rng is not None else key % len(self.pairs)]
        if rng is not None and rng.random() < 0.5:
            i, j = j, i
        return depth_pair_sample(self.view(i), self.view(j), self.size, rng, rel_thresh=self.rel_thresh,
                                 photometric=rng is not None, zoom=(1.0, 1.3) if rng is not None else (1, 1))


class MVSSets(PairSource):
    """Outdoor multi-view sets in the ``train_mvs`` layout (float16 depth, world-to-camera 3x4 poses, pairs.txt).

    ``sparse_sets`` name the LiDAR sets whose depth is filled within ``sparse_radius`` pixels before warping.
    """

    def __init__(self, root: str | Path, size: tuple[int, int], seed: int = 0, augment: bool = True,
                 sets: list[str] | None = None, min_overlap: float = 0.1,
                 sparse_sets: tuple[str, ...] = ("ddad_dgp_scene02", "kitti_2011_09_26_sfnd"),
                 sparse_radius: int = 3, rel_thresh: float = 0.1) -> None:
        root = _require_dir(Path(root), "train_mvs")
        self.size, self.seed, self.augment, self.rel_thresh = tuple(size), seed, augment, rel_thresh
        self.sparse_sets, self.sparse_radius = set(sparse_sets), sparse_radius
        self.cams: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.pairs: list[tuple[Path, str, str]] = []
        for d in sorted(p for p in root.iterdir() if (p / "cameras.txt").is_file()):
            if sets and d.name not in sets:
                continue
            for line in (d / "cameras.txt").read_text().splitlines():
                t = line.split()
                if len(t) != 17:
                    continue
                fx, fy, cx, cy = map(float, t[1:5])
                T = np.eye(4)
                T[:3, :] = np.asarray(list(map(float, t[5:17]))).reshape(3, 4)
                self.cams[(d.name, t[0])] = (np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), T)
            for line in (d / "pairs.txt").read_text().splitlines():
                t = line.split()
                if len(t) == 3 and float(t[2]) >= min_overlap:
                    self.pairs.append((d, t[0], t[1]))
        if not self.pairs:
            raise FileNotFoundError(f"no multi-view pairs under {root}")

    def __len__(self) -> int:
        return len(self.pairs)

    def view(self, d: Path, stem: str) -> View:
        depth = np.load(d / "depth" / f"{stem}.npy").astype(np.float32)
        if d.name in self.sparse_sets:
            depth = fill_sparse_depth(depth, self.sparse_radius)
        K, T = self.cams[(d.name, stem)]
        return View(_read_rgb(d / "images" / f"{stem}.jpg"), depth, K, T)

    def sample(self, key: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        d, a, b = self.pairs[int(rng.integers(len(self.pairs))) if rng is not None else key % len(self.pairs)]
        if rng is not None and rng.random() < 0.5:
            a, b = b, a
        return depth_pair_sample(self.view(d, a), self.view(d, b), self.size, rng, rel_thresh=self.rel_thresh,
                                 photometric=rng is not None, zoom=(1.0, 1.5) if rng is not None else (1, 1))


class MegaDepthIndex(PairSource):
    """MegaDepth in the LoFTR index format: ``scene_info/*.npz`` with ``pair_infos``, ``image_paths``,
    ``depth_paths`` (``.h5`` with a ``depth`` dataset, needs h5py; ``.npy`` also accepted), ``intrinsics`` and
    ``poses`` (world-to-camera 4x4), paths relative to ``root``."""

    def __init__(self, root: str | Path, index_dir: str | Path, size: tuple[int, int], seed: int = 0,
                 augment: bool = True, min_overlap: float = 0.1, max_overlap: float = 0.7) -> None:
        self.root = _require_dir(Path(root), "MegaDepth root")
        self.size, self.seed, self.augment = tuple(size), seed, augment
        self.scenes: list[dict[str, Any]] = []
        self.pairs: list[tuple[int, int, int]] = []
        for npz in sorted(_require_dir(Path(index_dir), "MegaDepth index").glob("*.npz")):
            info = dict(np.load(npz, allow_pickle=True))
            s = len(self.scenes)
            self.scenes.append(info)
            for (i, j), ov, *_ in info["pair_infos"]:
                if min_overlap <= float(ov) <= max_overlap:
                    self.pairs.append((s, int(i), int(j)))
        if not self.pairs:
            raise FileNotFoundError(f"no MegaDepth pairs in {index_dir}")

    def __len__(self) -> int:
        return len(self.pairs)

    def _view(self, s: int, i: int) -> View:
        info = self.scenes[s]
        dpath = self.root / str(info["depth_paths"][i])
        if dpath.suffix == ".h5":
            try:
                import h5py
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("MegaDepth .h5 depth needs h5py (pip install -r requirements-train.txt)") from exc
            with h5py.File(dpath, "r") as f:
                depth = np.asarray(f["depth"], np.float32)
        else:
            depth = np.load(dpath).astype(np.float32)
        return View(_read_rgb(self.root / str(info["image_paths"][i])), depth,
                    np.asarray(info["intrinsics"][i], np.float64), np.asarray(info["poses"][i], np.float64))

    def sample(self, key: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        s, i, j = self.pairs[int(rng.integers(len(self.pairs))) if rng is not None else key % len(self.pairs)]
        return depth_pair_sample(self._view(s, i), self._view(s, j), self.size, rng, photometric=rng is not None,
                                 zoom=(1.0, 1.3) if rng is not None else (1, 1))


class ScanNetIndex(PairSource):
    """ScanNet in the LoFTR index format: ``index_dir/*.npz`` with ``name`` rows ``(scene, sub, stem0, stem1)``;
    frames at ``root/scene{scene:04d}_{sub:02d}/{color/N.jpg, depth/N.png (uint16 mm), pose/N.txt (cam->world)}``;
    intrinsics from ``intrinsics.npz`` (scene id -> 3x3, for the 640x480 colour image)."""

    def __init__(self, root: str | Path, index_dir: str | Path, intrinsics: str | Path, size: tuple[int, int],
                 seed: int = 0, augment: bool = True) -> None:
        self.root = _require_dir(Path(root), "ScanNet root")
        self.size, self.seed, self.augment = tuple(size), seed, augment
        self.K = dict(np.load(intrinsics, allow_pickle=True))
        self.pairs: list[tuple[int, int, int, int]] = []
        for npz in sorted(_require_dir(Path(index_dir), "ScanNet index").glob("*.npz")):
            self.pairs += [tuple(int(v) for v in row) for row in np.load(npz, allow_pickle=True)["name"]]
        if not self.pairs:
            raise FileNotFoundError(f"no ScanNet pairs in {index_dir}")

    def __len__(self) -> int:
        return len(self.pairs)

    def _view(self, scene: int, sub: int, stem: int) -> View:
        name = f"scene{scene:04d}_{sub:02d}"
        d = self.root / name
        depth = cv2.imread(str(d / "depth" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise FileNotFoundError(f"cannot read {d / 'depth' / f'{stem}.png'}")
        img = _read_rgb(d / "color" / f"{stem}.jpg")
        depth = cv2.resize(depth.astype(np.float32) / 1000.0, (img.shape[1], img.shape[0]),
                           interpolation=cv2.INTER_NEAREST)
        T_wc = np.loadtxt(d / "pose" / f"{stem}.txt").reshape(4, 4)
        return View(img, depth, np.asarray(self.K[name], np.float64).reshape(3, 3), np.linalg.inv(T_wc))

    def sample(self, key: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        scene, sub, a, b = self.pairs[int(rng.integers(len(self.pairs))) if rng is not None else key % len(self.pairs)]
        return depth_pair_sample(self._view(scene, sub, a), self._view(scene, sub, b), self.size, rng,
                                 rel_thresh=0.05, photometric=rng is not None,
                                 zoom=(1.0, 1.2) if rng is not None else (1, 1))


class Mixture(Dataset):
    """Weighted mixture of sources: sample key ``k`` picks a source with probability ~ weight, then draws from it.

    Its length is the nominal epoch length; keys beyond it are valid too (keys are global sample ids).
    """

    def __init__(self, sources: list[tuple[PairSource, float]], epoch_len: int, seed: int = 0) -> None:
        if not sources:
            raise ValueError("the data mix is empty")
        self.sources = [s for s, _ in sources]
        w = np.asarray([float(wt) for _, wt in sources])
        if (w <= 0).any():
            raise ValueError("mix weights must be positive")
        self.cum = np.cumsum(w / w.sum())
        self.epoch_len, self.seed = epoch_len, seed

    def __len__(self) -> int:
        return self.epoch_len

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        rng = _rng(self.seed + 7919, key)
        src = min(int(np.searchsorted(self.cum, rng.random())), len(self.sources) - 1)
        item = self.sources[src][int(key)]
        item = {k: v for k, v in item.items() if k in ("image0", "image1", "w01", "v01", "w10", "v10")}
        item["source"] = torch.tensor(src)
        return item


class RenderedScenes(PairSource):
    """Pairs of views of textured planar 3D scenes rendered by :mod:`casmtr_ros.bags.render` (exact depth,
    occlusions, wide baselines), textured with photographs from ``texture_root`` (e.g. train_images).

    Each sample builds a fresh scene from a random subset of the textures and two random camera poses. Scene
    kinds (``scene_weights``, sampling weights): ``room`` (room with pillars), ``planes`` (slanted planes in front
    of a wall), ``street`` (driving forward along a street, 1-16 m between the views: strong scale change).
    """

    SCENE_KINDS = ("room", "planes", "street")

    def __init__(self, texture_root: str | Path, size: tuple[int, int], seed: int = 0, augment: bool = True,
                 textures_per_scene: int = 12, hfov_deg: tuple[float, float] = (50.0, 80.0),
                 scene_weights: dict[str, float] | None = None) -> None:
        weights = dict(scene_weights or {"room": 1.0, "planes": 1.0})
        unknown = sorted(set(weights) - set(self.SCENE_KINDS))
        if unknown or not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"scene_weights must give non-negative weights (not all zero) to {self.SCENE_KINDS},"
                             f" got {weights}")
        self.kinds = list(weights)
        self.kind_cum = np.cumsum([weights[k] for k in self.kinds]) / sum(weights.values())
        root = _require_dir(Path(texture_root), "texture")
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not self.files:
            raise FileNotFoundError(f"no texture images under {root}")
        self.size, self.seed, self.augment = tuple(size), seed, augment
        self.textures_per_scene, self.hfov = textures_per_scene, hfov_deg

    def __len__(self) -> int:
        return 100_000

    def _poses(self, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from casmtr_ros.bags.scenes import ROOM_SIZE, look_at

        if kind == "street":  # forward along +x with small lateral moves, gaze changes of up to ~12 degrees
            eye = np.array([rng.uniform(-2.0, 20.0), rng.uniform(-1.5, 1.5), rng.uniform(1.2, 1.9)])
            target = eye + np.array([20.0, rng.uniform(-4, 4), rng.uniform(-1.5, 0.5)])
            eye1 = eye + np.array([rng.uniform(1.0, 16.0), rng.uniform(-1.0, 1.0), rng.uniform(-0.2, 0.2)])
            target1 = eye1 + np.array([20.0, rng.uniform(-4, 4), rng.uniform(-1.5, 0.5)])
            if rng.random() < 0.3:  # sometimes backwards: image 1 is the wider view
                eye, eye1, target, target1 = eye1, eye, target1, target
            up = np.array([0.0, 0.0, 1.0])
            return look_at(eye, target, up), look_at(eye1, target1, up)
        if kind == "room":
            lx, ly, _ = ROOM_SIZE
            eye = np.array([rng.uniform(-0.35, 0.1) * lx, rng.uniform(-0.3, 0.3) * ly, rng.uniform(0.8, 2.2)])
            target = np.array([lx / 2, rng.uniform(-0.4, 0.4) * ly, rng.uniform(0.3, 2.5)])
            if rng.random() < 0.5:  # look at another wall
                target = np.array([rng.uniform(-0.3, 0.45) * lx, np.sign(rng.normal()) * ly / 2, rng.uniform(0.3, 2.5)])
        else:
            eye = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.5, 1.5), rng.uniform(0.8, 2.2)])
            target = np.array([10.0, rng.uniform(-3, 3), rng.uniform(0.5, 2.5)])
        base = rng.normal(size=3)
        base *= rng.uniform(0.15, 1.2) / np.linalg.norm(base)
        eye1 = eye + base
        target1 = target + rng.normal(scale=0.6, size=3)
        up0 = np.array([rng.normal(scale=0.15), rng.normal(scale=0.15), 1.0])
        up1 = np.array([rng.normal(scale=0.15), rng.normal(scale=0.15), 1.0])
        return look_at(eye, target, up0), look_at(eye1, target1, up1)

    def sample(self, key: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        from casmtr_ros.bags.render import render_view
        from casmtr_ros.bags.scenes import planes_scene, room_scene, street_scene

        g = rng if rng is not None else np.random.default_rng(key)
        files = [self.files[i] for i in g.choice(len(self.files), self.textures_per_scene, replace=False)]
        kind = self.kinds[min(int(np.searchsorted(self.kind_cum, g.random())), len(self.kinds) - 1)]
        scene_seed = int(g.integers(1 << 30))
        if kind == "room":
            scene = room_scene(seed=scene_seed, texture_files=files)
        elif kind == "planes":
            scene = planes_scene(seed=scene_seed, count=int(g.integers(4, 9)), texture_files=files)
        else:
            scene = street_scene(seed=scene_seed, texture_files=files)
        H, W = self.size
        f = 0.5 * W / np.tan(np.radians(g.uniform(*self.hfov)) / 2)
        K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]], np.float64)
        views = []
        for T_wc in self._poses(kind, g):
            img, depth = render_view(scene, K, T_wc, (W, H))
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, -1)
            views.append(View(img, np.nan_to_num(depth, nan=0.0).astype(np.float32), K, np.linalg.inv(T_wc)))
        return depth_pair_sample(views[0], views[1], self.size, rng, zoom=(1.0, 1.0), rel_thresh=0.02,
                                 photometric=rng is not None)
