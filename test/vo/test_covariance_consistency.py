"""The pose covariances are statistically consistent on rendered scenes with the real SIFT matcher: the mean NEES of
many independent estimates lies in the 95 % chi-square interval for their number, for single keyframe pairs (RGB-D
metric 6-DoF and monocular 5-DoF); odometry poses chained over several keyframes are far closer to consistent than
with independent matches, but not yet inside the interval (strict xfail).

The scenes (room seeds 41-42 for pairs, 51-56 for walks) differ from those that calibrated the defaults of
``vo.cov_match_correlation`` and ``vo.cov_scale`` (seeds 21-24, ``python -m casmtr_ros.vo.consistency``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from casmtr_ros.matching import build_matcher
from casmtr_ros.vo import VOConfig
from casmtr_ros.vo.consistency import (
    MemoMatcher,
    chain_config,
    chi2_mean_band,
    last_pose_nees,
    matched_pairs,
    mean_nees,
    odometry_errors,
    pair_sample,
    rendered_walk,
)

# The covariance model before the shared-field term and the calibration (independent matches).
INDEPENDENT = {"cov_match_correlation": 0.0, "cov_scale": 1.0}


@pytest.fixture(scope="module")
def sift():
    return build_matcher("sift", conf={"max_keypoints": 1000})


@pytest.fixture(scope="module")
def pairs(sift):
    return [p for seed in (41, 42) for p in matched_pairs(seed, 10, sift)]


@pytest.fixture(scope="module")
def walks():
    """Six 10-frame random walks (9 cm steps) rendered at 400x300: (camera, views, poses)."""
    return [rendered_walk(seed) for seed in range(51, 57)]


def _in_band(values: list[float], dof: int) -> tuple[float, tuple[float, float]]:
    lo, hi = chi2_mean_band(dof, len(values))
    return float(np.mean(values)), (lo, hi)


def test_single_pairs_are_consistent(pairs) -> None:
    config = VOConfig()
    samples = [pair_sample(p, config) for p in pairs]
    metric = [s.metric for s in samples if s.metric is not None]
    mono = [s.mono for s in samples if s.mono is not None and s.parallax_px >= config.init_min_parallax_px]
    assert len(metric) >= 18 and len(mono) >= 6
    for errs, dof in ((metric, 6), (mono, 5)):
        mean, (lo, hi) = _in_band([e.nees for e in errs], dof)
        assert lo < mean < hi, (dof, mean, lo, hi)
    # Treating the matches as independent (no shared error field, no calibration) is several times overconfident.
    old = [pair_sample(p, replace(config, **INDEPENDENT)) for p in pairs]
    assert mean_nees([s.metric for s in old if s.metric is not None]) > 3 * 6


@pytest.fixture(scope="module")
def chains(walks, sift) -> dict[bool, tuple[list[float], list[float], list[int]]]:
    """Per depth mode: NEES of the last pose of every walk with the model and with independent matches, and the
    keyframes of every walk (the matches are computed once: the two models differ only in covariances)."""
    memo = MemoMatcher(sift)
    config = chain_config()  # early initialisation and frequent keyframes: several keyframe pairs per walk
    out = {}
    for depth in (True, False):
        runs = [odometry_errors(memo, *w, config, depth) for w in walks]
        out[depth] = ([r[-1].nees for r in runs if r],  # one pose per walk: independent samples
                      last_pose_nees(memo, walks, replace(config, **INDEPENDENT), depth),
                      [sum(e.method.startswith("keyframe") for e in r) for r in runs])
    return out


@pytest.mark.slow  # ~25 s on 2 cores: 60 rendered views, matched once, 4 pipeline runs
@pytest.mark.parametrize("depth", [True, False], ids=["rgbd", "mono"])
def test_chained_odometry_is_far_less_overconfident(chains, depth: bool) -> None:
    model, independent, keyframes = chains[depth]
    assert len(model) == len(independent) == 6  # every walk gives poses
    assert np.mean(keyframes) >= 1, keyframes
    hi = chi2_mean_band(6, len(model))[1]
    assert np.mean(independent) > 3 * hi, np.round(independent, 1)
    # Within 2x of consistent (measured on 20 walks: mean 7.9 RGB-D, 14.8 monocular with one outlier, median 6.9;
    # see the next test for what is missing).
    assert np.mean(model) < 2 * hi, np.round(model, 1)


@pytest.mark.xfail(strict=True, reason="chained poses are still ~1.3x (RGB-D) to 2x (monocular) overconfident: "
                   "consecutive keyframe pairs have positively correlated, motion-dependent errors that the "
                   "independent composition does not model (README Covariance)")
@pytest.mark.slow
@pytest.mark.parametrize("depth", [True, False], ids=["rgbd", "mono"])
def test_chained_odometry_in_chi2_band(chains, depth: bool) -> None:
    model = chains[depth][0]
    mean, (lo, hi) = _in_band(model, 6)
    assert lo < mean < hi, (mean, lo, hi, np.round(model, 1))
