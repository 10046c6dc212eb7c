"""CasMTRMatcher: the public API on real images, with the seeded random official-layout checkpoint."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from casmtr_ros.matching import available_matchers, build_matcher
from casmtr_ros.matching.casmtr import network_size, prepare, scale_points
from casmtr_ros.model import VARIANTS
from casmtr_ros.types import InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
import fake_ckpt

THR0 = {"test_thr": 0.0, "pre_thr": 0.0, "coarse_thr": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # test/conftest.py


@pytest.fixture(scope="module")
def fake_sd(reference_dir):
    return fake_ckpt.fake_state_dict(reference_dir / "casmtr_4c_outdoor_state_dict.tsv")


@pytest.fixture(scope="module")
def small(fake_sd):
    return build_matcher("casmtr-4c-outdoor", weights=fake_sd, resize=160, device="cpu", **THR0)


@pytest.fixture(scope="module")
def kitti(shared_data):
    frames = sorted((shared_data / "kitti06_seq" / "image_0").glob("*.png"))
    return cv2.imread(str(frames[0]), cv2.IMREAD_GRAYSCALE), cv2.imread(str(frames[1]), cv2.IMREAD_GRAYSCALE)


def test_every_variant_is_registered():
    names = available_matchers()
    assert all(v in names for v in VARIANTS)


def test_api_reproduces_official_parity(reference_dir, fake_sd):
    golden = torch.load(reference_dir / "parity" / "outdoor_kitti06_000000_000001_640x192_thr0.pt")
    m = build_matcher("casmtr-4c-outdoor", weights=fake_sd, resize=640, quirks="official", **THR0)
    im0, im1 = (golden[k][0].permute(1, 2, 0).numpy() for k in ("image0", "image1"))  # uint8 HxWx3 RGB
    res = m.match(im0, im1)
    order = np.lexsort(res.kpts0.T[::-1])
    ref0, ref1 = golden["mkpts0_f"].numpy(), golden["mkpts1_f"].numpy()
    ref_order = np.lexsort(ref0.T[::-1])
    np.testing.assert_array_equal(res.kpts0[order], ref0[ref_order])
    np.testing.assert_allclose(res.kpts1[order], ref1[ref_order], atol=1e-3)
    assert set(res.timings) >= {"backbone", "coarse_attention", "coarse_matching", "cascade_attention",
                                "cascade_matching", "refinement"}


def test_coordinate_round_trip_through_resizing():
    h, w = 333, 517
    x0, y0 = 301.0, 97.0
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 6.0**2))
    image = (blob * 255).astype(np.uint8)
    net = network_size(h, w, 160)
    assert net[0] % 32 == 0 and net[1] % 32 == 0
    small = prepare(image, net)[0].astype(np.float64)
    ys, xs = np.mgrid[0 : net[0], 0 : net[1]]
    centroid = np.array([[(small * xs).sum() / small.sum(), (small * ys).sum() / small.sum()]], dtype=np.float32)
    back = scale_points(centroid, net, (h, w))
    np.testing.assert_allclose(back[0], [x0, y0], atol=0.6)
    np.testing.assert_allclose(scale_points(back, (h, w), net), centroid, atol=1e-4)


def test_pixel_budget_sizes():
    """``max_pixels`` scales by the pixel count (never above it after rounding, the aspect kept as well as the
    32-pixel grid allows); with ``resize`` the smaller scale wins; a 640x480 frame is unchanged."""
    budget = 640 * 480
    assert network_size(480, 640, None, max_pixels=budget) == (480, 640)
    assert network_size(370, 1226, None, max_pixels=budget) == (288, 992)  # KITTI: 992x288, not 640x192
    assert network_size(370, 1226, 640, max_pixels=budget) == network_size(370, 1226, 640) == (192, 640)
    assert network_size(370, 1226, 2000, max_pixels=budget) == (288, 992)
    for h, w in ((370, 1226), (720, 1280), (1080, 1920), (376, 752), (1024, 768), (300, 2000), (333, 517)):
        hn, wn = network_size(h, w, None, max_pixels=budget)
        assert hn % 32 == 0 and wn % 32 == 0 and hn * wn <= budget, (h, w)
        assert hn * wn > 0.75 * budget and abs(np.log(wn / hn * h / w)) < 0.1, (h, w, hn, wn)
    for bad in (1000, -5, 1.5e5, True, "big"):
        with pytest.raises(ValueError, match="max_pixels"):
            build_matcher("casmtr-4c-outdoor", random_init=True, device="cpu", max_pixels=bad)


def test_variant_pixel_budget():
    """casmtr-4c-lite's own budget (480x360) applies under the longer-side cap: 640x480 -> 480x352, KITTI keeps
    640x192; ``max_pixels=0`` lifts it; the official variants have none."""
    lite = build_matcher("casmtr-4c-lite")
    assert lite.max_pixels == 480 * 360
    assert lite.network_sizes((480, 640), (370, 1226), (480, 480)) == [(352, 480), (192, 640), (384, 384)]
    assert build_matcher("casmtr-4c-lite", max_pixels=0).network_sizes((480, 640)) == [(480, 640)]
    assert build_matcher("casmtr-4c-lite", max_pixels=640 * 480).network_sizes((480, 640)) == [(480, 640)]
    outdoor = build_matcher("casmtr-4c-outdoor", random_init=True, device="cpu")
    assert outdoor.max_pixels is None and outdoor.network_sizes((480, 640)) == [(480, 640)]


def test_pixel_budget_matches_the_equivalent_resize(kitti):
    """On a real KITTI pair, ``resize=None, max_pixels=307200`` is the same network input as ``resize=992``."""
    a = build_matcher("casmtr-4c-lite", resize=None, max_pixels=640 * 480, klt_refine=False).match(*kitti)
    b = build_matcher("casmtr-4c-lite", resize=992, max_pixels=0, klt_refine=False).match(*kitti)
    assert len(a.kpts0) > 500
    np.testing.assert_array_equal(a.kpts0, b.kpts0)
    np.testing.assert_array_equal(a.kpts1, b.kpts1)


def test_odd_sizes_and_different_sizes(small, kitti):
    im0 = kitti[0][:333, :517]  # odd size, grey uint8
    im1 = cv2.cvtColor(cv2.resize(kitti[1], (400, 121)), cv2.COLOR_GRAY2RGB).astype(np.float32) / 255  # RGB float
    assert network_size(*im0.shape[:2], 160) != network_size(*im1.shape[:2], 160)  # padded to a common size
    res = small.match(im0, im1)
    assert len(res) > 0 and np.isfinite(res.kpts0).all() and np.isfinite(res.kpts1).all()
    for pts, im in ((res.kpts0, im0), (res.kpts1, im1)):
        assert (pts >= 0).all() and (pts[:, 0] < im.shape[1]).all() and (pts[:, 1] < im.shape[0]).all()
    assert ((res.confidence >= 0) & (res.confidence <= 1)).all()


def test_deterministic_and_input_types(small, kitti):
    a = small.match(*kitti)
    b = small.match(*kitti)
    np.testing.assert_array_equal(a.kpts0, b.kpts0)
    np.testing.assert_array_equal(a.kpts1, b.kpts1)
    rgb = [np.repeat(k[:, :, None], 3, 2) for k in kitti]
    c = small.match(torch.from_numpy(rgb[0]).permute(2, 0, 1), rgb[1].astype(np.float32) / 255)
    np.testing.assert_allclose(c.kpts1, a.kpts1, atol=1e-3)


def test_confidence_map_and_match_threshold(fake_sd, kitti):
    m = build_matcher("casmtr-4c-outdoor", weights=fake_sd, resize=160, return_confidence_map=True,
                      match_thr=0.011, nms_kernel=0, **THR0)
    res = m.match(*kitti)
    net = network_size(*kitti[0].shape, 160)
    assert res.confidence_map.shape == (net[0] // 4, net[1] // 4)
    assert (res.confidence > 0.011).all()


def test_max_matches_keeps_the_most_confident_and_refines_them_alike(kitti):
    """The shipped lite weights on a real KITTI pair: the cap keeps the top-confidence matches, and each kept
    match is refined exactly as without the cap (the fine stage works per match)."""
    full = build_matcher("casmtr-4c-lite", resize=320, klt_refine=False).match(*kitti)
    assert len(full.kpts0) > 300
    capped = build_matcher("casmtr-4c-lite", resize=320, max_matches=200, klt_refine=False).match(*kitti)
    assert len(capped.kpts0) == 200
    assert capped.confidence.min() >= np.sort(full.confidence)[-200] - 1e-6
    index = {tuple(np.round(k, 3)): n for n, k in enumerate(full.kpts0)}
    rows = [index[tuple(np.round(k, 3))] for k in capped.kpts0]  # every kept match exists in the full set
    np.testing.assert_allclose(capped.kpts1, full.kpts1[rows], atol=1e-4)


def test_fine_refine_off_returns_the_quarter_matches(kitti):
    """``fine_refine=False`` skips the 1/2 stage: the same matches as with it, image 1's points left on the 1/4
    grid (multiples of 4 network pixels), where the 1/2 stage moves them off it."""
    m = build_matcher("casmtr-4c-lite", resize=320, klt_refine=False)
    net = network_size(*kitti[0].shape, 320)
    images = [torch.from_numpy(prepare(im, net))[None] for im in kitti]
    with torch.inference_mode():
        full = m.model({"image0": images[0], "image1": images[1], "coarse_matches": False})
        quarter = m.model({"image0": images[0], "image1": images[1], "coarse_matches": False, "fine_refine": False})
    assert "refinement" in quarter["timings"] and "expec_f" not in quarter
    assert quarter["mkpts0_f"].shape[0] > 300
    torch.testing.assert_close(quarter["mkpts0_f"], full["mkpts0_f"])
    torch.testing.assert_close(quarter["mconf"], full["mconf"])
    torch.testing.assert_close(quarter["mkpts1_f"], quarter["stage_4c"]["mkpts1_c"])
    assert torch.all(quarter["mkpts1_f"] % 4 == 0)
    assert (full["mkpts1_f"] % 4 != 0).any(dim=1).float().mean() > 0.5


def test_profile_splits_timings_without_changing_matches(kitti):
    """``profile=True`` only synchronises the device between stages: same matches, every stage timed, and the
    stages add up to no more than the match (on CPU there is nothing to synchronise)."""
    plain = build_matcher("casmtr-4c-lite", resize=320).match(*kitti)
    prof = build_matcher("casmtr-4c-lite", resize=320, profile=True).match(*kitti)
    np.testing.assert_array_equal(prof.kpts0, plain.kpts0)
    np.testing.assert_array_equal(prof.kpts1, plain.kpts1)
    assert len(prof.kpts0) > 100
    stages = ("backbone", "coarse_attention", "coarse_matching", "cascade_attention", "cascade_matching")
    assert all(prof.timings[k] > 0 for k in stages)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_profile_on_cuda_accounts_for_the_whole_match(kitti):
    """On a GPU the launches are asynchronous: with ``profile`` every stage has finished when its time is taken, so
    the stages account for the model's time and the copy of the results back to the host waits for nothing."""
    m = build_matcher("casmtr-4c-lite", resize=320, device="cuda", profile=True)
    m.match(*kitti)  # warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = m.match(*kitti)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t
    model = sum(v for k, v in out.timings.items() if k not in ("preprocess", "postprocess", "klt_refine"))
    assert 0 < model <= wall
    assert out.timings["postprocess"] < 0.5 * model + 0.002


def test_fine_chunks_change_nothing(kitti, monkeypatch):
    """Inference refines matches in cache-sized chunks: any chunk size gives the same matches."""
    import casmtr_ros.model.casmtr as casmtr_model

    m = build_matcher("casmtr-4c-lite", resize=320, klt_refine=False)
    whole = m.match(*kitti)
    assert len(whole.kpts0) > 300
    monkeypatch.setattr(casmtr_model, "FINE_CHUNK", 37)  # not a divisor: a short last chunk
    chunked = m.match(*kitti)
    np.testing.assert_array_equal(chunked.kpts0, whole.kpts0)
    np.testing.assert_allclose(chunked.kpts1, whole.kpts1, atol=1e-4)
    np.testing.assert_allclose(chunked.confidence, whole.confidence, atol=1e-6)


def test_errors(fake_sd, kitti):
    with pytest.raises(ValueError, match="random_init"):
        build_matcher("casmtr-4c-outdoor")
    with pytest.raises(ValueError, match="unknown option"):
        build_matcher("casmtr-4c-outdoor", weights=fake_sd, bogus=1)
    m = build_matcher("casmtr-4c-outdoor", random_init=True, resize=160)
    with pytest.raises(InputError, match="in \\[0, 1\\]"):
        m.match(kitti[0].astype(np.float32), kitti[1])
    with pytest.raises(InputError):
        m.match(np.zeros((4, 4), np.uint8), kitti[1])
    with pytest.raises(InputError):
        m.match("not an image", kitti[1])


def test_corrected_mode_reports_fine_pixel_centres(fake_sd, kitti):
    opts = {"weights": fake_sd, "resize": 160, "nms_kernel": 0, **THR0}
    off = build_matcher("casmtr-4c-outdoor", quirks="official", **opts).match(*kitti)
    cor = build_matcher("casmtr-4c-outdoor", quirks="corrected", **opts).match(*kitti)
    h, w = kitti[0].shape
    hn, wn = network_size(h, w, 160)
    s = np.array([w / wn, h / hn], dtype=np.float32)
    expected = {tuple(np.round(p, 3)): q + s - 0.5 for p, q in zip(off.kpts0 + s - 0.5, off.kpts1, strict=True)}
    common = [(tuple(np.round(p, 3)), q) for p, q in zip(cor.kpts0, cor.kpts1, strict=True)
              if tuple(np.round(p, 3)) in expected]
    assert len(common) > 0.8 * min(len(off), len(cor))
    for key, q in common:
        np.testing.assert_allclose(q, expected[key], atol=1e-3)


def test_mixed_precision_bf16_close_to_fp32(reference_dir, fake_sd):
    golden = torch.load(reference_dir / "parity" / "outdoor_kitti06_000000_000001_640x192_thr0.pt")
    im0, im1 = (golden[k][0].permute(1, 2, 0).numpy()[:128, :320] for k in ("image0", "image1"))
    res = {}
    for mp in (None, "bf16"):
        m = build_matcher("casmtr-4c-outdoor", weights=fake_sd, resize=None, mixed_precision=mp, **THR0)
        res[mp] = m.match(im0, im1)
    a = {tuple(p) for p in res[None].kpts0.tolist()}
    b = {tuple(p) for p in res["bf16"].kpts0.tolist()}
    assert len(a) > 10 and len(a & b) >= 0.8 * len(a)
