"""Zoom search: crops, points mapped back to full-image pixels, the choice of pass, the matcher options, and the
gain on a real wide KITTI pair."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from casmtr_ros.benchmark.images import rendered_pair
from casmtr_ros.matching import build_matcher
from casmtr_ros.matching.zoom import crop_box, zoom_search
from casmtr_ros.types import Matches

W, H = 640, 480
X0, Y0 = 160, 120  # image 1 is the middle half of image 0, magnified 2x


def test_crop_box_centres_and_stays_inside():
    assert crop_box((480, 640), np.array([320.0, 240.0]), 0.5) == (160, 120, 320, 240)
    assert crop_box((480, 640), np.array([10.0, 470.0]), 0.5) == (0, 240, 320, 240)  # shifted inside, same size
    assert crop_box((480, 640), np.array([630.0, 5.0]), 0.25) == (480, 0, 160, 120)


@pytest.fixture(scope="module")
def zoomed_pair():
    """A rendered room view and its middle half magnified 2x: a pure 2x scale change with exact ground truth."""
    img0 = rendered_pair((W, H)).image0
    img1 = cv2.resize(img0[Y0:Y0 + H // 2, X0:X0 + W // 2], (W, H), interpolation=cv2.INTER_CUBIC)
    return img0, img1


def gt_error_px(k0: np.ndarray, k1: np.ndarray) -> np.ndarray:
    """Distance in image-1 pixels between each match's point in image 1 and where the 2x zoom sends its image-0
    point (pixel centres at integers, as cv2.resize)."""
    expected = (k0 - [X0, Y0] + 0.5) * 2.0 - 0.5
    return np.linalg.norm(k1 - expected, axis=1)


@pytest.mark.usefixtures("one_torch_thread")
def test_zoom_search_picks_the_crop_and_maps_it_back(zoomed_pair):
    img0, img1 = zoomed_pair
    matcher = build_matcher("casmtr-4c-lite", resize=320, zoom_below=0)  # plain passes; the search runs here
    first = matcher.match(img0, img1)
    res = zoom_search(matcher.match, img0, img1, first, factor=0.5)
    assert res.chosen == "zoom0"  # cropping image 0 undoes the zoom
    assert res.counts["zoom0"] > 2 * max(res.counts["full"], res.counts["zoom1"])
    assert len(res.matches) == res.counts["zoom0"]
    err = gt_error_px(res.matches.kpts0, res.matches.kpts1)
    assert np.median(err) < 1.0 and np.mean(err < 3.0) > 0.95  # crop offsets undone: full-image pixels
    assert res.matches.kpts0[:, 0].min() >= X0 - 40 and res.matches.kpts0[:, 0].max() <= X0 + W // 2 + 40
    assert "zoom_search" in res.matches.timings and res.matches.timings["zoom_search"] > 0
    assert {k: v for k, v in res.matches.timings.items() if k != "zoom_search"} == first.timings

    # the same pair the other way round: now image 1 is the one to crop
    first_r = matcher.match(img1, img0)
    rev = zoom_search(matcher.match, img1, img0, first_r, factor=0.5)
    assert rev.chosen == "zoom1"
    err = gt_error_px(rev.matches.kpts1, rev.matches.kpts0)
    assert np.median(err) < 1.0 and np.mean(err < 3.0) > 0.95


@pytest.mark.usefixtures("one_torch_thread")
def test_zoom_search_stops_once_a_crop_has_enough(zoomed_pair):
    img0, img1 = zoomed_pair
    matcher = build_matcher("casmtr-4c-lite", resize=320, zoom_below=0)
    calls = []

    def counted(a, b):
        calls.append(a.shape)
        return matcher.match(a, b)

    first = matcher.match(img0, img1)
    full = zoom_search(counted, img0, img1, first, factor=0.5)
    assert len(calls) == 2  # both crops tried
    calls.clear()
    early = zoom_search(counted, img0, img1, first, factor=0.5, enough=full.counts["zoom0"])
    assert len(calls) == 1 and early.chosen == "zoom0" and "zoom1" not in early.counts  # image 1's crop skipped
    np.testing.assert_array_equal(early.matches.kpts0, full.matches.kpts0)
    calls.clear()
    zoom_search(counted, img0, img1, first, factor=0.5, enough=full.counts["zoom0"] + 1)
    assert len(calls) == 2  # not enough: image 1's crop is tried as well


@pytest.mark.usefixtures("one_torch_thread")
def test_zoom_search_merge_appends_the_first_pass(zoomed_pair):
    img0, img1 = zoomed_pair
    matcher = build_matcher("casmtr-4c-lite", resize=320, zoom_below=0)
    first = matcher.match(img0, img1)
    alone = zoom_search(matcher.match, img0, img1, first, factor=0.5)
    merged = zoom_search(matcher.match, img0, img1, first, factor=0.5, merge=True)
    assert not alone.merged and merged.merged and merged.chosen == alone.chosen == "zoom0" and len(first) > 0
    n = len(alone.matches)
    assert len(merged.matches) == n + len(first) == len(merged.matches.confidence)
    for got, crop, full in ((merged.matches.kpts0, alone.matches.kpts0, first.kpts0),
                            (merged.matches.kpts1, alone.matches.kpts1, first.kpts1),
                            (merged.matches.confidence, alone.matches.confidence, first.confidence)):
        np.testing.assert_array_equal(got[:n], crop)  # the crop's matches, then the first pass's
        np.testing.assert_array_equal(got[n:], full)
    assert merged.matches.confidence_map is first.confidence_map

    # nothing to merge when the first pass wins
    def no_better(a, b):
        return Matches(first.kpts0[:0], first.kpts1[:0], first.confidence[:0])

    kept = zoom_search(no_better, img0, img1, first, factor=0.5, merge=True)
    assert kept.chosen == "full" and not kept.merged and len(kept.matches) == len(first)


@pytest.mark.usefixtures("one_torch_thread")
def test_matcher_zoom_options(zoomed_pair):
    img0, img1 = zoomed_pair
    assert build_matcher("casmtr-4c-lite", resize=320).zoom_below == pytest.approx(0.1)  # the variant's default
    assert build_matcher("casmtr-4c-outdoor", random_init=True, resize=320).zoom_below == 0.0  # official: off
    assert build_matcher("casmtr-4c-lite", resize=320).zoom_merge is True
    assert build_matcher("casmtr-4c-outdoor", random_init=True, resize=320).zoom_merge is False
    off = build_matcher("casmtr-4c-lite", resize=320, zoom_below=0).match(img0, img1)
    assert "zoom_search" not in off.timings
    forced = build_matcher("casmtr-4c-lite", resize=320, zoom_below=1e6).match(img0, img1)  # always fires
    assert "zoom_search" in forced.timings and len(forced) > 2 * len(off)
    assert np.median(gt_error_px(forced.kpts0, forced.kpts1)) < 1.0
    # without a resize policy the crop still goes in at its full image's network size (magnified 2x)
    small0, small1 = (cv2.resize(im, (W // 2, H // 2), interpolation=cv2.INTER_AREA) for im in (img0, img1))
    native = build_matcher("casmtr-4c-lite", resize=None, max_pixels=0, zoom_below=1e6,
                           zoom_merge=False).match(small0, small1)
    assert len(native) > 50 and np.median(gt_error_px(2 * native.kpts0 + 0.5, 2 * native.kpts1 + 0.5)) < 2.0
    assert native.kpts0[:, 0].max() <= (X0 + W // 2) / 2 + 20  # inside the crop of image 0
    for bad in ({"zoom_below": -1}, {"zoom_below": "yes"}, {"zoom_below": True}):
        with pytest.raises(ValueError, match="zoom_below"):
            build_matcher("casmtr-4c-lite", **bad)
    for bad_merge in ("yes", 1):
        with pytest.raises(ValueError, match="zoom_merge"):
            build_matcher("casmtr-4c-lite", zoom_merge=bad_merge)
    for bad_factor in (0.0, 1.0, 1.5, "half"):
        with pytest.raises(ValueError, match="zoom_factor"):
            build_matcher("casmtr-4c-lite", zoom_factor=bad_factor)
    with pytest.raises(ValueError, match="factor"):
        zoom_search(lambda a, b: off, img0, img1, off, factor=1.0)


def test_zoom_search_skips_crops_below_the_minimum_side():
    img = np.zeros((100, 100), np.uint8)
    first = build_matcher("sift").match(img, img)
    calls = []

    def match_fn(a, b):
        calls.append((a.shape, b.shape))
        return first

    res = zoom_search(match_fn, img, img, first, factor=0.5, min_side=64)  # 50-pixel crops: too small
    assert calls == [] and res.chosen == "full" and res.counts == {"full": len(first)}


@pytest.mark.usefixtures("one_torch_thread")
def test_zoom_search_recovers_a_wide_kitti_pair(shared_data):
    """KITTI 06 frames 0 and 20 (~17 m forward): the first pass keeps few matches; the default lite matcher fires
    the zoom search, crops frame 0 and returns many more matches and an accurate pose. With the translation polish
    alone (``klt_affine=False``) the first pass's pose is also poor and the search recovers it; with the affine
    refinement the first pass's 30-odd matches are already accurate on this pair, and the search adds matches."""
    from casmtr_ros.evaluation.pairs import estimate_pose, pose_errors, read_pairs

    pairs = read_pairs(shared_data / "kitti06_seq" / "kitti06_pairs_with_gt.txt")
    pair = next(p for p in pairs if p.name0.endswith("000000.png") and p.name1.endswith("000020.png"))
    imgs = [cv2.imread(str(shared_data / "kitti06_seq" / n), cv2.IMREAD_GRAYSCALE) for n in (pair.name0, pair.name1)]

    def pose_error(m):
        est = estimate_pose(m.kpts0.astype(float), m.kpts1.astype(float), pair.K0, pair.K1)
        return max(pose_errors(pair.T_0to1, est[0], est[1]))

    first = build_matcher("casmtr-4c-lite", zoom_below=0).match(*imgs)
    zoomed = build_matcher("casmtr-4c-lite").match(*imgs)  # default: fires below 0.1 matches per 1/8 cell
    assert len(first) < 0.1 * (640 * 192 / 64)
    assert "zoom_search" in zoomed.timings and len(zoomed) > 2 * len(first)
    assert pose_error(zoomed) < 1.0
    first_t = build_matcher("casmtr-4c-lite", zoom_below=0, klt_affine=False).match(*imgs)
    zoomed_t = build_matcher("casmtr-4c-lite", klt_affine=False).match(*imgs)
    assert pose_error(first_t) > 1.5 and pose_error(zoomed_t) < 1.0
    # the default merges the first pass into the winning crop's matches: they reach beyond the crop of frame 0
    crop_only = build_matcher("casmtr-4c-lite", zoom_merge=False).match(*imgs)
    assert len(zoomed) == len(crop_only) + len(first)
    w = imgs[0].shape[1]
    assert np.ptp(crop_only.kpts0[:, 0]) <= 0.5 * w + 1  # image 0's crop: half its width
    assert np.ptp(zoomed.kpts0[:, 0]) > 0.6 * w
