"""Corpus loaders: every ``shared/data/train_*`` set loads and its correspondences pass a photometric check;
MegaDepth / ScanNet LoFTR-index loaders read a tiny index written here from rendered views."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from casmtr_ros.training import datasets as D
from casmtr_ros.training.supervision import grid_points

SIZE = (192, 256)


def _photometric(sample: dict[str, torch.Tensor]) -> tuple[float, float, float, float]:
    """(GT error, 5-px-shifted error, shuffled error, valid share) of grey values at the GT pairs, each side
    normalised over the matched pixels (removes exposure changes and the black borders of warped images)."""
    g = [sample[k].mean(0) for k in ("image0", "image1")]
    H, W = g[0].shape
    v = sample["v01"]
    p0 = grid_points(H // 4, W // 4, 4)[v].long()
    p1 = sample["w01"][v].round().long()
    p1[:, 0].clamp_(0, W - 1)
    p1[:, 1].clamp_(0, H - 1)
    a = g[0][p0[:, 1], p0[:, 0]]
    b = g[1][p1[:, 1], p1[:, 0]]
    shifted = g[1][p1[:, 1], (p1[:, 0] + 5).clamp(0, W - 1)]
    a, b, shifted = ((x - x.mean()) / (x.std() + 1e-6) for x in (a, b, shifted))
    perm = torch.randperm(len(b), generator=torch.Generator().manual_seed(0))
    return (float((a - b).abs().mean()), float((a - shifted).abs().mean()), float((a - b[perm]).abs().mean()),
            float(v.float().mean()))


def _check(ds: D.PairSource, keys: list[int], min_valid: float = 0.03) -> None:
    errs = np.array([_photometric(ds[k])[:4] for k in keys])
    e, shift, shuf, valid = errs.mean(0)
    assert valid > min_valid, f"too few correspondences ({valid:.3f})"
    assert e < 0.6 * shuf, f"GT error {e:.3f} vs shuffled {shuf:.3f}"
    assert e < 0.9 * shift, f"GT error {e:.3f} vs 5-px shift {shift:.3f}"


def test_rgbd_sequences(shared_data: Path) -> None:
    ds = D.RGBDSequences(shared_data / "train_rgbd", SIZE, augment=False)
    seqs = {ds.frames[i][0].parent.parent.name for i, _, _ in ds.pairs}
    assert seqs == {p.name for p in (shared_data / "train_rgbd").iterdir() if (p / "frames.txt").is_file()}
    for seq in sorted(seqs):
        keys = [k for k, (i, _, _) in enumerate(ds.pairs) if ds.frames[i][0].parent.parent.name == seq]
        _check(ds, keys[:: max(1, len(keys) // 4)][:4])


def test_mvs_sets(shared_data: Path) -> None:
    ds = D.MVSSets(shared_data / "train_mvs", SIZE, augment=False)
    sets = sorted({d.name for d, _, _ in ds.pairs})
    assert sets == sorted(p.name for p in (shared_data / "train_mvs").iterdir() if (p / "cameras.txt").is_file())
    for name in sets:
        keys = [k for k, (d, _, _) in enumerate(ds.pairs) if d.name == name]
        _check(ds, keys[:3], min_valid=0.01)


def test_homography_images(shared_data: Path) -> None:
    ds = D.HomographyImages(shared_data / "train_images", SIZE, augment=False)
    assert len(ds) == 381
    _check(ds, [0, 100, 200, 300])


def test_rendered_scenes_with_photo_textures(shared_data: Path) -> None:
    ds = D.RenderedScenes(shared_data / "train_images", SIZE, augment=False, textures_per_scene=4)
    _check(ds, [0, 1, 2])


def test_rendered_street_scenes(shared_data: Path) -> None:
    """Forward-driving street pairs: ground truth passes the photometric check, and the views differ in scale
    (the points of image 0 spread or shrink in image 1)."""
    ds = D.RenderedScenes(shared_data / "train_images", SIZE, augment=False, textures_per_scene=6,
                          scene_weights={"street": 1.0})
    keys = [0, 1, 2, 3]
    _check(ds, keys)
    spreads = []
    for k in keys:
        item = ds[k]
        v = item["v01"].bool()
        p0 = grid_points(SIZE[0] // D.GRID_STRIDE, SIZE[1] // D.GRID_STRIDE, D.GRID_STRIDE)[v]
        p1 = item["w01"][v]
        spreads.append(float(p1.std(0).mean() / p0.std(0).mean()))
    assert max(abs(np.log(s)) for s in spreads) > np.log(1.3), spreads
    with pytest.raises(ValueError, match="scene_weights"):
        D.RenderedScenes(shared_data / "train_images", SIZE, scene_weights={"beach": 1.0})


def test_augmented_mixture_is_deterministic(shared_data: Path) -> None:
    mix = D.Mixture([(D.HomographyImages(shared_data / "train_images", SIZE, seed=3), 1.0)], 10, seed=3)
    a, b = mix[5], mix[5]
    assert torch.equal(a["image0"], b["image0"]) and torch.equal(a["w01"], b["w01"])
    assert not torch.equal(mix[6]["image1"], a["image1"])


# ---------------------------------------------------------------- LoFTR-index loaders on a tiny written index


def _render_views(n: int = 2) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(RGB, depth, K, T_world_cam) of ``n`` views of a procedural planes scene."""
    from casmtr_ros.bags.render import render_view
    from casmtr_ros.bags.scenes import look_at, planes_scene

    scene = planes_scene(seed=4, count=5)
    K = np.array([[200.0, 0, 159.5], [0, 200.0, 119.5], [0, 0, 1]])
    out = []
    for k in range(n):
        T = look_at([0.0, 0.3 * k, 1.5], [10.0, 0.2 - 0.2 * k, 1.3])
        img, depth = render_view(scene, K, T, (320, 240))
        out.append((img, np.nan_to_num(depth, nan=0.0).astype(np.float32), K, T))
    return out


def test_scannet_index_loader(tmp_path: Path) -> None:
    views = _render_views()
    scene = tmp_path / "scans" / "scene0007_01"
    for sub in ("color", "depth", "pose"):
        (scene / sub).mkdir(parents=True)
    for k, (img, depth, _, T) in enumerate(views):
        cv2.imwrite(str(scene / "color" / f"{k * 10}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(scene / "depth" / f"{k * 10}.png"), np.round(depth * 1000).astype(np.uint16))
        np.savetxt(scene / "pose" / f"{k * 10}.txt", T)
    (tmp_path / "index").mkdir()
    np.savez(tmp_path / "index" / "scene0007_01.npz", name=np.array([[7, 1, 0, 10]]), score=np.array([0.5]))
    np.savez(tmp_path / "intrinsics.npz", scene0007_01=views[0][2])
    ds = D.ScanNetIndex(tmp_path / "scans", tmp_path / "index", tmp_path / "intrinsics.npz", SIZE, augment=False)
    assert len(ds) == 1
    _check(ds, [0], min_valid=0.3)


def test_megadepth_index_loader(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    views = _render_views()
    (tmp_path / "imgs").mkdir()
    (tmp_path / "depths").mkdir()
    paths, dpaths, Ks, poses = [], [], [], []
    for k, (img, depth, K, T) in enumerate(views):
        cv2.imwrite(str(tmp_path / "imgs" / f"{k}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        with h5py.File(tmp_path / "depths" / f"{k}.h5", "w") as f:
            f.create_dataset("depth", data=depth)
        paths.append(f"imgs/{k}.jpg")
        dpaths.append(f"depths/{k}.h5")
        Ks.append(K)
        poses.append(np.linalg.inv(T))  # MegaDepth stores world-to-camera
    pair_infos = np.empty(1, dtype=object)
    pair_infos[0] = ((0, 1), 0.5, None)
    (tmp_path / "index").mkdir()
    np.savez(tmp_path / "index" / "0000.npz", image_paths=np.array(paths, dtype=object),
             depth_paths=np.array(dpaths, dtype=object), intrinsics=np.stack(Ks), poses=np.stack(poses),
             pair_infos=pair_infos)
    ds = D.MegaDepthIndex(tmp_path, tmp_path / "index", SIZE, augment=False)
    assert len(ds) == 1
    _check(ds, [0], min_valid=0.3)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train_images"):
        D.HomographyImages(tmp_path / "nope", SIZE)
