"""The matcher benchmark on real KITTI frames with the fast OpenCV matchers (CasMTR cases are the same code path,
only slower): a case in a subprocess, the ratios, the tables, the JSON and the scaling plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from casmtr_ros.benchmark import report
from casmtr_ros.benchmark.cases import Case, split_spec
from casmtr_ros.benchmark.images import load_pair
from casmtr_ros.benchmark.matcher_bench import run_all, run_case_subprocess
from casmtr_ros.cli import main as cli_main


@pytest.fixture(scope="module")
def run(shared_data) -> dict:
    cases = [Case("orb", s, warmup=0, repeats=2) for s in ("320x240", "640x480")]
    cases.append(Case("sift", "320x240", warmup=0, repeats=1))
    cases.append(Case("orb@max_keypoints=300", "320x240", warmup=0, repeats=1))
    cases.append(Case("nonexistent-matcher", "320x240", warmup=0, repeats=1))
    return run_all(cases, timeout_s=120, reference="orb", log=lambda _: None)


def test_pair_is_resized_with_scaled_intrinsics(shared_data):
    pair = load_pair((640, 480))
    assert pair.image0.shape == pair.image1.shape == (480, 640)
    assert pair.K[0, 0] == pytest.approx(707.0912 * 640 / 1226) and pair.K[1, 1] == pytest.approx(707.0912 * 480 / 370)


def test_rendered_pair_replaces_missing_kitti_frames(tmp_path, monkeypatch):
    monkeypatch.setenv("CASMTR_SHARED", str(tmp_path))  # no data/kitti06_seq there
    pair = load_pair((320, 240))
    assert "rendered" in pair.source
    assert pair.image0.shape == pair.image1.shape == (240, 320) and pair.image0.dtype == np.uint8
    assert pair.image0.std() > 10 and np.abs(pair.image0.astype(int) - pair.image1).mean() > 5  # textured, moved
    assert pair.K[0, 2] == pytest.approx(159.5) and pair.K[1, 2] == pytest.approx(119.5)  # pixel-centre convention
    with pytest.raises(FileNotFoundError, match="benchmark images not found"):
        load_pair((320, 240), folder=tmp_path)


def test_case_results_are_measured(run):
    ok = [r for r in run["results"] if "median_s" in r]
    assert len(ok) == 4
    for r in ok:
        assert r["n_timed"] == r["case"]["repeats"] == len(r["runs"])
        assert r["matches"] > 50 and 0 < r["pose_inliers"] <= r["matches"]
        assert r["peak_rss_mb"] >= r["rss_idle_mb"] > 0
        total = r["median_s"]["total"]
        assert total > 0 and r["median_s"]["pose_estimation"] < total
        for one in r["runs"]:
            assert one["total"] == pytest.approx(one["match_total"] + one["pose_estimation"])


def test_matcher_spec_options_reach_the_matcher(run):
    by_label = {(r["case"]["matcher"], r["case"]["size"]): r for r in run["results"]}
    capped, full = by_label[("orb@max_keypoints=300", "320x240")], by_label[("orb", "320x240")]
    assert 50 < capped["matches"] <= 300 < full["matches"]
    assert split_spec("casmtr-4c-lite@resize=480,klt_refine=true") == (
        "casmtr-4c-lite", {"resize": 480, "klt_refine": True})
    assert split_spec("sift") == ("sift", {})
    with pytest.raises(ValueError, match="NAME@KEY=VALUE"):
        split_spec("orb@max_keypoints")


def test_failures_are_reported_not_raised(run):
    bad = [r for r in run["results"] if r["case"]["matcher"] == "nonexistent-matcher"]
    assert len(bad) == 1 and "unknown benchmark matcher" in bad[0]["error"]


def test_ratios_are_relative_to_the_reference_of_the_same_size(run):
    by = {(r["case"]["matcher"], r["case"]["size"]): r for r in run["results"] if "median_s" in r}
    assert by[("orb", "320x240")]["ratio_to_reference"] == 1
    sift = by[("sift", "320x240")]
    assert sift["ratio_to_reference"] == pytest.approx(
        sift["median_s"]["total"] / by[("orb", "320x240")]["median_s"]["total"], rel=1e-3
    )


def test_report_files(run, tmp_path):
    written = report.write(dict(run, command="test"), tmp_path)
    data = json.loads(written["json"].read_text())
    assert len(data["results"]) == 5
    tables = written["tables"].read_text()
    assert "| orb | cpu | 640x480 |" in tables and "not measured: exit" in tables
    plot = report.scaling_plot(run, tmp_path / "orb.png", prefix="orb")
    assert plot is not None and plot.stat().st_size > 10_000
    assert report.scaling_plot(run, tmp_path / "none.png") is None  # no CasMTR case in this run


def test_unknown_size_is_a_clear_cli_error(capsys):
    assert cli_main(["bench", "--sizes", "100x100", "--matchers", "orb"]) == 2
    assert "unknown size '100x100'" in capsys.readouterr().err


def test_case_timeout_is_reported(shared_data):
    r = run_case_subprocess(Case("orb", "320x240", warmup=0, repeats=1), timeout_s=0.5)
    assert r["error"].startswith("timed out")
