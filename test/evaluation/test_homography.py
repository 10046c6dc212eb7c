"""HPatches corner-error evaluation on v_churchill, and its building blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casmtr_ros.evaluation.homography import HomographyConfig, corner_error, evaluate_homography, find_sequences
from casmtr_ros.matching import build_matcher


def test_corner_error() -> None:
    H = np.eye(3)
    assert corner_error(H, H, 640, 480) == 0.0
    shifted = np.array([[1, 0, 2.0], [0, 1, 0], [0, 0, 1]])
    assert corner_error(shifted, H, 640, 480) == pytest.approx(2.0)


def test_v_churchill_sift(shared_data: Path) -> None:
    seq = shared_data / "hpatches_v_churchill"
    if not seq.is_dir():
        pytest.skip(f"{seq} absent")
    assert find_sequences(seq) == [seq]
    assert find_sequences(shared_data) == [seq]  # a root folder of sequences
    res = evaluate_homography(build_matcher("sift"), seq, HomographyConfig(short_side=240))
    s = res["summary"]
    assert s["pairs"] == 5 and s["failures"] == 0
    assert s["auc@10"] > 0.4 and s["precision"] > 0.5
    assert s["auc@3"] <= s["auc@5"] <= s["auc@10"]
    assert [r["pair"] for r in res["pairs"]] == ["1-2", "1-3", "1-4", "1-5", "1-6"]
    top = evaluate_homography(build_matcher("sift"), seq, HomographyConfig(short_side=240, top_k=50))["pairs"]
    counts = [r["matches"] for r in top]
    assert max(counts) == 50 and all(0 < c <= 50 for c in counts)


def test_wrong_ground_truth_fails(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "hpatches_v_churchill"
    if not src.is_dir():
        pytest.skip(f"{src} absent")
    seq = tmp_path / "v_fake"
    seq.mkdir()
    for name in ("1.ppm", "2.ppm"):
        (seq / name).symlink_to(src / name)
    (seq / "H_1_2").write_text("1 0 40\n0 1 -30\n0 0 1\n")  # not the true homography
    s = evaluate_homography(build_matcher("sift"), seq, HomographyConfig(short_side=240))["summary"]
    assert s["auc@10"] == 0.0 and s["precision"] < 0.05


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        find_sequences(tmp_path / "none")
    with pytest.raises(ValueError, match="no HPatches sequence"):
        find_sequences(tmp_path)
