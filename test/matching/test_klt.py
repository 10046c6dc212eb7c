"""Lucas-Kanade polishing: sub-pixel accuracy on a known motion, rejection of what it cannot confirm, and the
CasMTR matcher's ``klt_refine`` option on a real KITTI pair."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from casmtr_ros.benchmark.images import rendered_pair
from casmtr_ros.matching import build_matcher
from casmtr_ros.matching.base import to_gray_uint8
from casmtr_ros.matching.casmtr import network_size
from casmtr_ros.matching.klt import (
    KltConfig,
    guiding_homography,
    homography_jacobian,
    polish,
    polish_guided,
    refine_affine,
)

SHIFT = np.array([3.37, -1.81], np.float32)  # sub-pixel translation of image 1 against image 0


@pytest.fixture(scope="module")
def shifted():
    """A rendered room view and the same view translated by ``SHIFT`` (exact ground truth), with grid points on
    textured places."""
    img0 = rendered_pair((320, 240)).image0
    M = np.array([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]], np.float32)
    img1 = cv2.warpAffine(img0, M, (320, 240), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    gx, gy = np.meshgrid(np.arange(24, 296, 8), np.arange(24, 216, 8))
    pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    eig = cv2.cornerMinEigenVal(img0, 11)
    pts = pts[eig[pts[:, 1].astype(int), pts[:, 0].astype(int)] > 1e-3]
    assert len(pts) > 100
    return img0, img1, pts


def test_polish_reaches_sub_pixel_accuracy(shifted):
    img0, img1, pts = shifted
    rng = np.random.default_rng(0)
    guess = pts + SHIFT + rng.uniform(-2.5, 2.5, pts.shape).astype(np.float32)  # a coarse matcher's estimate
    out, ok = polish(img0, img1, pts, guess)
    assert ok.mean() > 0.9
    err_before = np.linalg.norm(guess - pts - SHIFT, axis=1)
    err_after = np.linalg.norm(out[ok] - pts[ok] - SHIFT, axis=1)
    assert np.median(err_before) > 1.0
    assert np.median(err_after) < 0.1
    assert np.percentile(err_after, 95) < 0.3
    np.testing.assert_array_equal(out[~ok], guess[~ok])  # unconfirmed points keep the matcher's estimate


def test_polish_rejects_what_it_cannot_confirm(shifted):
    img0, img1, pts = shifted
    # a different scene for image 1: nothing is consistent forwards and backwards
    other = np.random.default_rng(1).integers(0, 255, img1.shape, dtype=np.uint8)
    other = cv2.GaussianBlur(other, (5, 5), 1.5)
    _, ok = polish(img0, other, pts, pts + SHIFT)
    assert ok.mean() < 0.2
    # a textureless image 1: Lucas-Kanade has no gradient to follow
    _, ok = polish(img0, np.full_like(img1, 128), pts, pts + SHIFT)
    assert not ok.any()


def test_polish_limits_the_shift(shifted):
    img0, img1, pts = shifted
    guess = pts + SHIFT + np.float32(6.0)  # 8.5 px off: Lucas-Kanade at level 1 still finds the true point
    free, ok_free = polish(img0, img1, pts, guess, KltConfig(max_shift_px=20.0))
    capped, ok_capped = polish(img0, img1, pts, guess, KltConfig(max_shift_px=4.0))
    assert ok_free.mean() > 0.5
    assert not ok_capped.any()
    assert np.all(np.linalg.norm(free[ok_free] - guess[ok_free], axis=1) <= 20.0)
    np.testing.assert_array_equal(capped, guess)


def test_polish_images_of_different_sizes(shifted):
    """The matcher accepts pairs of different sizes; so does the polish (guided or not)."""
    img0, img1, pts = shifted
    small1 = np.ascontiguousarray(img1[:200, :280])
    keep = np.all(pts + SHIFT < [270, 190], axis=1)
    for fn in (polish, polish_guided):
        out, ok = fn(img0, small1, pts[keep], pts[keep] + SHIFT + 1.0)
        assert ok.mean() > 0.8
        assert np.median(np.linalg.norm(out[ok] - pts[keep][ok] - SHIFT, axis=1)) < 0.1
        out, ok = fn(small1, img0, pts[keep] + SHIFT, pts[keep] + 1.0)  # image 0 the smaller one
        assert ok.mean() > 0.8


def test_polish_inputs():
    img = np.zeros((32, 32), np.uint8)
    out, ok = polish(img, img, np.zeros((0, 2)), np.zeros((0, 2)))
    assert out.shape == (0, 2) and ok.shape == (0,)
    with pytest.raises(ValueError, match="3 points in image 0 but 2"):
        polish(img, img, np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="odd"):
        KltConfig(window=10)
    with pytest.raises(ValueError, match="invalid"):
        KltConfig(fb_px=-1)
    rgb_float = np.dstack([np.linspace(0, 1, 32 * 32).reshape(32, 32)] * 3)
    g = to_gray_uint8(rgb_float)
    assert g.dtype == np.uint8 and g.shape == (32, 32) and g.max() == 255 and g.min() == 0


@pytest.mark.usefixtures("one_torch_thread")
def test_matcher_klt_refine_on_kitti(shared_data):
    """casmtr-4c-lite on a real KITTI pair with its ground-truth pose: the polished matches are a subset of the
    network's 1/4 matches (same points in image 0; with the polish on, these weights skip the 1/2 refinement),
    each moved by at most the fine window's radius, and they lie closer to their epipolar lines than both the
    1/4 matches and the network's own 1/2 refinement."""
    from casmtr_ros.evaluation.pairs import epipolar_errors, read_pairs

    pair = read_pairs(shared_data / "kitti06_seq" / "kitti06_pairs_with_gt.txt")[0]
    imgs = [cv2.imread(str(shared_data / "kitti06_seq" / n), cv2.IMREAD_GRAYSCALE) for n in (pair.name0, pair.name1)]
    plain = build_matcher("casmtr-4c-lite", resize=320, klt_refine=False, fine_refine=False).match(*imgs)
    fine = build_matcher("casmtr-4c-lite", resize=320, klt_refine=False).match(*imgs)  # the network's 1/2 points
    polished = build_matcher("casmtr-4c-lite", resize=320).match(*imgs)  # on by default for the lite weights
    assert 0.3 * len(plain) < len(polished) < len(plain)
    np.testing.assert_array_equal(fine.kpts0, plain.kpts0)  # the 1/2 stage moves only the points of image 1
    assert np.median(np.linalg.norm(fine.kpts1 - plain.kpts1, axis=1)) > 0.1
    assert "klt_refine" in polished.timings
    index = {tuple(np.round(k, 3)): n for n, k in enumerate(plain.kpts0)}
    rows = np.array([index[tuple(np.round(k, 3))] for k in polished.kpts0])
    shift = np.linalg.norm(polished.kpts1 - plain.kpts1[rows], axis=1)
    h, w = network_size(*imgs[1].shape, 320)
    radius = 2 * 2 * max(imgs[1].shape[0] / h, imgs[1].shape[1] / w)  # fine window radius in original pixels
    assert shift.max() <= radius + 1e-3
    assert np.median(shift) > 0.1  # they did move
    np.testing.assert_array_equal(polished.confidence, plain.confidence[rows])

    def sampson_px(m):
        return np.sqrt(epipolar_errors(m.kpts0, m.kpts1, pair.K0, pair.K1, pair.T_0to1)) * pair.K0[0, 0]

    assert np.median(sampson_px(polished)) < 0.6 * np.median(sampson_px(plain))
    assert np.median(sampson_px(polished)) < 0.6 * np.median(sampson_px(fine))
    with pytest.raises(ValueError, match="klt_refine"):
        build_matcher("casmtr-4c-lite", klt_refine="yes")



@pytest.mark.usefixtures("one_torch_thread")
def test_affine_refinement_on_kitti_five_frames_apart(shared_data):
    """On a real KITTI pair five frames (about 5 m) apart, where the road and the facades change scale differently,
    the default polish with its affine refinement leaves the matches closer to their ground-truth epipolar lines
    than the translating window alone."""
    from casmtr_ros.evaluation.pairs import epipolar_errors, read_pairs

    pair = next(p for p in read_pairs(shared_data / "kitti06_seq" / "kitti06_pairs_with_gt.txt")
                if (p.name0, p.name1) == ("image_0/000011.png", "image_0/000016.png"))
    imgs = [cv2.imread(str(shared_data / "kitti06_seq" / n), cv2.IMREAD_GRAYSCALE) for n in (pair.name0, pair.name1)]
    errors = {}
    for affine in (True, False):
        m = build_matcher("casmtr-4c-lite", resize=320, klt_affine=affine).match(*imgs)
        assert len(m) > 40
        errors[affine] = np.sqrt(epipolar_errors(m.kpts0, m.kpts1, pair.K0, pair.K1, pair.T_0to1)) * pair.K0[0, 0]
    assert np.median(errors[True]) < 0.7 * np.median(errors[False])
    assert np.mean(errors[True] < 1.0) > np.mean(errors[False] < 1.0) + 0.1

def test_klt_defaults_per_variant():
    lite = build_matcher("casmtr-4c-lite")
    assert lite.klt is not None and lite.fine_refine is False  # the polish replaces the 1/2 stage of these weights
    assert build_matcher("casmtr-4c-lite", klt_refine=False).fine_refine is True
    assert build_matcher("casmtr-4c-lite", fine_refine=True).fine_refine is True
    official = build_matcher("casmtr-4c-outdoor", random_init=True)
    assert official.klt is None and official.fine_refine is True  # the official outputs unless asked
    polished = build_matcher("casmtr-4c-outdoor", random_init=True, klt_refine=True)
    assert polished.klt is not None and polished.fine_refine is True  # polish on top of the official refinement
    with pytest.raises(ValueError, match="fine_refine"):
        build_matcher("casmtr-4c-lite", fine_refine="auto")
    assert lite.klt.affine is True and polished.klt.affine is False  # the affine refinement: the variant's default
    assert build_matcher("casmtr-4c-lite", klt_affine=False).klt.affine is False
    assert build_matcher("casmtr-4c-outdoor", random_init=True, klt_refine=True, klt_affine=True).klt.affine is True
    with pytest.raises(ValueError, match="klt_affine"):
        build_matcher("casmtr-4c-lite", klt_affine="on")


@pytest.fixture(scope="module")
def warped():
    """A rendered view and its image under a homography with rotation, scale and perspective (exact ground
    truth), with textured grid points of image 0 that stay inside image 1."""
    img0 = rendered_pair((320, 240)).image0
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    H = np.array([[1.25 * c, -1.25 * s, 40.0], [1.25 * s, 1.25 * c, -50.0], [2e-4, -3e-4, 1.0]])
    img1 = cv2.warpPerspective(img0, H, (320, 240), flags=cv2.INTER_CUBIC)
    gx, gy = np.meshgrid(np.arange(24, 296, 6), np.arange(24, 216, 6))
    pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    eig = cv2.cornerMinEigenVal(img0, 11)
    pts = pts[eig[pts[:, 1].astype(int), pts[:, 0].astype(int)] > 1e-3]
    true1 = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2).astype(np.float32)
    inside = np.all((true1 > 12) & (true1 < [308, 228]), axis=1)
    assert inside.sum() > 60
    return img0, img1, pts[inside], true1[inside], H


def test_guided_polish_handles_rotation_scale_and_perspective(warped):
    """Plain Lucas-Kanade assumes a translating window: under a 20 degree rotation and 1.25x scale it confirms
    few matches; the homography pre-warp makes the residual a translation again and reaches sub-pixel accuracy."""
    img0, img1, pts, true1, _ = warped
    guess = true1 + np.random.default_rng(2).uniform(-2.0, 2.0, true1.shape).astype(np.float32)
    H_fit = guiding_homography(pts, guess, 8.0)
    assert H_fit is not None
    mapped = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), H_fit).reshape(-1, 2)
    assert np.abs(mapped - true1).max() < 2.0
    out, ok = polish_guided(img0, img1, pts, guess)
    err = np.linalg.norm(out[ok] - true1[ok], axis=1)
    assert ok.mean() > 0.7 and np.median(err) < 0.15
    plain_out, plain_ok = polish(img0, img1, pts, guess)
    plain_err = np.linalg.norm(plain_out[plain_ok] - true1[plain_ok], axis=1)
    assert np.median(plain_err) > 0.5  # biased by the rotation and scale it does not model
    # unguided is exactly plain polish
    np.testing.assert_array_equal(polish_guided(img0, img1, pts, guess, KltConfig(guided=False))[0], plain_out)


def test_guiding_homography_refuses_what_it_cannot_use():
    rng = np.random.default_rng(3)
    pts = rng.uniform(0, 300, (200, 2)).astype(np.float32)
    assert guiding_homography(pts[:5], pts[:5] + 1, 8.0) is None  # too few matches
    assert guiding_homography(pts, rng.uniform(0, 300, (200, 2)).astype(np.float32), 2.0) is None  # no consensus
    squash = pts * [0.01, 1.0]  # a near-degenerate map (determinant 0.01)
    assert guiding_homography(pts, squash.astype(np.float32), 2.0) is None
    assert guiding_homography(pts, pts + np.float32([3.0, -2.0]), 2.0) is not None


@pytest.mark.usefixtures("one_torch_thread")
def test_matcher_polishes_pairs_of_different_sizes():
    pair = rendered_pair((320, 240))
    crop1 = np.ascontiguousarray(pair.image1[:200, :288])
    m = build_matcher("casmtr-4c-lite", resize=320).match(pair.image0, crop1)
    assert len(m.kpts0) > 50 and "klt_refine" in m.timings
    assert np.all(m.kpts1 >= -0.5) and np.all(m.kpts1 < [288, 200])


def test_homography_jacobian_matches_finite_differences(warped):
    *_, H = warped
    pts = np.array([[10.0, 20.0], [160.0, 120.0], [300.0, 230.0]])
    J = homography_jacobian(H, pts)

    def apply(p: np.ndarray) -> np.ndarray:
        return cv2.perspectiveTransform(p.reshape(-1, 1, 2), H).reshape(-1, 2)

    eps = 1e-4
    for k in range(2):
        step = np.zeros(2)
        step[k] = eps
        numeric = (apply(pts + step) - apply(pts - step)) / (2 * eps)
        np.testing.assert_allclose(J[:, :, k], numeric, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def stretched():
    """A rendered view and its image under a smooth non-projective warp: x is magnified by 1.33 at the left edge
    and 0.95 at the right (no homography fits the whole image), with a gain and bias; exact ground truth for
    textured grid points of image 0."""
    img0 = rendered_pair((320, 240)).image0
    a, b, c = 4.0, 0.75, 4.7e-4  # image 1 pixel (px, py) shows image 0 at (a + b px + c px^2, -2 + 0.98 py)
    px, py = np.meshgrid(np.arange(320, dtype=np.float32), np.arange(240, dtype=np.float32))
    img1 = cv2.remap(img0, a + b * px + c * px**2, -2 + 0.98 * py, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    img1 = np.clip(0.85 * img1.astype(np.float32) + 20, 0, 255).astype(np.uint8)
    gx, gy = np.meshgrid(np.arange(24, 296, 6), np.arange(24, 216, 6))
    pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64)
    eig = cv2.cornerMinEigenVal(img0, 11)
    pts = pts[eig[pts[:, 1].astype(int), pts[:, 0].astype(int)] > 1e-3]
    true1 = np.stack([(-b + np.sqrt(b * b - 4 * c * (a - pts[:, 0]))) / (2 * c), (pts[:, 1] + 2) / 0.98], 1)
    inside = np.all((true1 > 12) & (true1 < [308, 228]), axis=1)
    assert inside.sum() > 60
    return img0, img1, pts[inside].astype(np.float32), true1[inside].astype(np.float32)


def test_refine_affine_fits_local_scale_and_gain(stretched):
    """Started a pixel off with the identity as its linear part, the affine fit reaches well under a tenth of a
    pixel where the local magnification is 0.95-1.33 and the brightness changed, and its correlation is high."""
    img0, img1, pts, true1 = stretched
    start = true1 + np.random.default_rng(4).uniform(-1.0, 1.0, true1.shape).astype(np.float32)
    out, zncc = refine_affine(img0, img1, pts, start)
    good = zncc >= 0.9
    assert good.mean() > 0.9
    err = np.linalg.norm(out[good] - true1[good], axis=1)
    assert np.median(err) < 0.1 and np.percentile(err, 90) < 0.3
    # a wrong partner does not correlate
    _, zncc_wrong = refine_affine(img0, img1, pts, np.roll(start, 7, axis=0))
    assert np.mean(zncc_wrong >= 0.9) < 0.1
    # nothing to fit (a flat image 1) or a singular start: no exception, nothing correlates
    _, zncc_flat = refine_affine(img0, np.full_like(img1, 128), pts, start)
    _, zncc_singular = refine_affine(img0, img1, pts, start, np.zeros((len(pts), 2, 2)))
    assert not np.any(zncc_flat >= 0.9) and not np.any(zncc_singular >= 0.9)
    empty, z = refine_affine(img0, img1, np.zeros((0, 2)), np.zeros((0, 2)))
    assert empty.shape == (0, 2) and z.shape == (0,)
    with pytest.raises(ValueError, match="points"):
        refine_affine(img0, img1, pts, start[:-1])


def test_affine_polish_beats_the_translating_window_off_the_plane(stretched):
    """Under a warp that no homography fits, the guided translation polish keeps a bias; the affine refinement
    removes it and its correlation test keeps the well-fitted matches."""
    img0, img1, pts, true1 = stretched
    guess = true1 + np.random.default_rng(5).uniform(-2.0, 2.0, true1.shape).astype(np.float32)
    plain, ok_plain = polish_guided(img0, img1, pts, guess)
    affine, ok_affine = polish_guided(img0, img1, pts, guess, KltConfig(affine=True))
    err_plain = np.linalg.norm(plain[ok_plain] - true1[ok_plain], axis=1)
    err_affine = np.linalg.norm(affine[ok_affine] - true1[ok_affine], axis=1)
    assert ok_affine.mean() > 0.5
    assert np.median(err_affine) < 0.1
    assert np.median(err_affine) < 0.6 * np.median(err_plain)
    assert not np.any(ok_affine & ~ok_plain)  # the refinement only confirms what the track confirmed
    np.testing.assert_array_equal(affine[~ok_affine], guess[~ok_affine])
