"""Offline replay of bags through the real VO pipeline: accuracy against exact ground truth, outputs, determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from casmtr_ros.bags.demo import DemoConfig, make_demo_bag
from casmtr_ros.bags.reader import open_source
from casmtr_ros.evaluation.common import DEFAULT_MATCHER, make_matcher
from casmtr_ros.evaluation.replay import ReplayOptions, ReplayResult, replay
from casmtr_ros.evaluation.trajectory import read_tum
from casmtr_ros.matching import build_matcher
from casmtr_ros.vo.pipeline import Pipeline

DEMO = DemoConfig(frames=20, width=320, height=240, depth=True)


@pytest.fixture(scope="module")
def demo_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_bag(tmp_path_factory.mktemp("demo") / "bag", DEMO)


def _run(bag: Path, out: Path, use_depth: bool, matcher: str = "sift", plots: bool = True) -> ReplayResult:
    source = open_source(bag, use_depth=use_depth)
    return replay(source, Pipeline(build_matcher(matcher)), out, ReplayOptions(progress=False, plots=plots))


@pytest.fixture(scope="module")
def mono(demo_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> ReplayResult:
    return _run(demo_bag, tmp_path_factory.mktemp("mono"), use_depth=False)


def test_monocular_sift_ate(mono: ReplayResult) -> None:
    m = mono.metrics
    ev = m["evaluation"]
    assert m["metric"] is False and ev["alignment"] == "Sim(3)"
    assert m["frames"] == DEMO.frames and m["poses"] >= DEMO.frames // 2 and m["lost_frames"] == 0
    assert ev["gt_path_length_m"] > 2.5
    assert ev["ate_m"]["rmse"] < 0.02  # 3 m of path: a few millimetres expected


def test_outputs_are_complete(mono: ReplayResult) -> None:
    out = mono.out_dir
    for name in ("trajectory.tum", "keyframe_pairs.csv", "timings.csv", "metrics.json", "ground_truth.tum",
                 "trajectory.png", "ate_over_time.png"):
        assert (out / name).is_file(), name
    traj = read_tum(out / "trajectory.tum")
    assert len(traj) == mono.metrics["poses"]
    with open(out / "timings.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == DEMO.frames and {"stamp_ns", "state", "wall_s", "match_s"} <= set(rows[1])
    with open(out / "keyframe_pairs.csv") as fh:
        kf = list(csv.DictReader(fh))
    assert len(kf) == mono.metrics["keyframe_pairs"] >= 1 and int(kf[0]["inliers"]) > 30
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"]["ate_m"]["rmse"] == mono.metrics["evaluation"]["ate_m"]["rmse"]
    assert metrics["source"]["image_topic"] == "/camera/image_raw"
    pictures = sorted(out.glob("matches_*.png"))
    assert 1 <= len(pictures) <= 3
    assert cv2.imread(str(pictures[0])).shape[1] == 2 * DEMO.width
    assert cv2.imread(str(out / "trajectory.png")) is not None


def test_metric_replay_with_depth(demo_bag: Path, tmp_path: Path) -> None:
    res = _run(demo_bag, tmp_path, use_depth=True, plots=False)
    ev = res.metrics["evaluation"]
    assert res.metrics["metric"] is True and ev["alignment"] == "SE(3)"
    assert res.metrics["poses"] == DEMO.frames
    assert ev["ate_m"]["rmse"] < 0.015 and abs(ev["alignment_scale"] - 1.0) < 1e-9
    assert not list(tmp_path.glob("*.png"))


def test_deterministic(demo_bag: Path, mono: ReplayResult, tmp_path: Path) -> None:
    again = _run(demo_bag, tmp_path, use_depth=False, plots=False)
    assert (tmp_path / "trajectory.tum").read_bytes() == (mono.out_dir / "trajectory.tum").read_bytes()
    assert (tmp_path / "keyframe_pairs.csv").read_bytes() == (mono.out_dir / "keyframe_pairs.csv").read_bytes()
    assert again.metrics["evaluation"]["ate_m"] == mono.metrics["evaluation"]["ate_m"]


@pytest.mark.slow
def test_shipped_casmtr_weights(demo_bag: Path, tmp_path: Path) -> None:
    matcher, note = make_matcher(None)
    if note:
        pytest.skip(f"shipped {DEFAULT_MATCHER} weights not available: {note}")
    res = replay(open_source(demo_bag, use_depth=False), Pipeline(matcher), tmp_path,
                 ReplayOptions(progress=False, plots=False))
    assert res.metrics["evaluation"]["ate_m"]["rmse"] < 0.03


@pytest.mark.slow
def test_kitti06_bag_replay(shared_data: Path, tmp_path: Path) -> None:
    bag = shared_data / "rosbag2" / "kitti06_mono_sqlite3"
    if not bag.is_dir():
        pytest.skip(f"{bag} absent")
    res = replay(open_source(bag, max_frames=8), Pipeline(build_matcher("sift")), tmp_path,
                 ReplayOptions(progress=False, plots=False))
    ev = res.metrics["evaluation"]
    assert res.metrics["poses"] >= 6 and ev["gt_path_length_m"] > 7
    assert ev["ate_m"]["rmse"] < 0.1  # ~8 m of driving, monocular, Sim(3)
