"""tools/pack_gpu_data.sh: the corpus subset for a lent GPU machine, on a small synthetic shared tree."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _touch(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_pack_keeps_every_third_rgbd_frame_and_the_kitti_frames(tmp_path: Path) -> None:
    data = tmp_path / "shared" / "data"
    _touch(data / "train_images" / "set" / "a.jpg")
    _touch(data / "train_mvs" / "scene" / "depth.npy")
    for k in range(3):
        _touch(data / "kitti06_seq" / "image_0" / f"00000{k}.png")
    _touch(data / "kitti06_seq" / "image_0" / "000003.png")
    scene = data / "train_rgbd" / "room"
    lines = []
    for k in range(7):
        _touch(scene / "rgb" / f"{k}.jpg")
        _touch(scene / "depth" / f"{k}.png")
        lines.append(f"rgb/{k}.jpg depth/{k}.png 0 0 0 0 0 0 1")
    _touch(scene / "frames.txt", "\n".join(lines) + "\n")
    _touch(scene / "intrinsics.txt", "500 500 320 240")
    out = tmp_path / "pack.tar.xz"
    subprocess.run(["bash", str(REPO / "tools" / "pack_gpu_data.sh"), str(tmp_path / "shared"), str(out)],
                   check=True, capture_output=True, text=True)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        frames = tar.extractfile("shared/data/train_rgbd/room/frames.txt").read().decode().split("\n")  # type: ignore[union-attr]
    assert [f.split()[0] for f in frames if f] == ["rgb/0.jpg", "rgb/3.jpg", "rgb/6.jpg"]
    assert {"shared/data/train_rgbd/room/depth/3.png", "shared/data/train_rgbd/room/intrinsics.txt",
            "shared/data/train_images/set/a.jpg", "shared/data/train_mvs/scene/depth.npy",
            "shared/data/kitti06_seq/image_0/000002.png"} <= names
    assert "shared/data/train_rgbd/room/depth/1.png" not in names
    assert "shared/data/kitti06_seq/image_0/000003.png" not in names


def test_pack_refuses_a_folder_without_the_corpus(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(REPO / "tools" / "pack_gpu_data.sh"), str(tmp_path), str(tmp_path / "o.tar.xz")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "train_images" in proc.stderr
