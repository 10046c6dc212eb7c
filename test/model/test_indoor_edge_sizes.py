"""Indoor CasMTR-4c at edge sizes: 1/4 maps that do or do not need POLA's 7-padding, batches, padded pairs."""

from __future__ import annotations

from pathlib import Path

import fake_ckpt
import numpy as np
import pytest
import torch

from casmtr_ros.model import build_model

THR0 = {"match_coarse": {"thr": 0.0}, "match_cascade": {"test_thr": 0.0, "pre_thr": 0.0}}


@pytest.fixture(scope="module")
def fake_indoor_sd(reference_dir: Path) -> dict[str, torch.Tensor]:
    return fake_ckpt.fake_state_dict(reference_dir / "casmtr_4c_indoor_state_dict.tsv")


@pytest.fixture(scope="module")
def model(fake_indoor_sd) -> torch.nn.Module:
    m = build_model("casmtr-4c-indoor", THR0)
    m.load_state_dict(fake_indoor_sd, strict=True)
    return m.eval()


@pytest.fixture(scope="module")
def kitti_pair(shared_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import cv2

    seq = shared_data / "kitti06_seq"
    ims = []
    for name in ("000000.png", "000003.png"):
        path = next(seq.rglob(name))
        im = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        ims.append(torch.from_numpy(im).float().div(255)[None, None].expand(1, 3, -1, -1))
    return ims[0], ims[1]


def crop(img: torch.Tensor, h: int, w: int, y: int = 40, x: int = 100) -> torch.Tensor:
    return img[..., y : y + h, x : x + w].contiguous()


def run(model, a: torch.Tensor, b: torch.Tensor) -> dict:
    with torch.inference_mode():
        return model({"image0": a, "image1": b})


@pytest.mark.parametrize(
    ("H", "W"),
    [(64, 224), (96, 160), (64, 64)],
    ids=["quarter16x56-pad5x0", "quarter24x40-pad4x2", "eighth8x8-min"],
)
def test_forward_at_edge_sizes(model, kitti_pair, H: int, W: int) -> None:
    a, b = (crop(t, H, W) for t in kitti_pair)
    out = run(model, a, b)
    s4 = out["stage_4c"]
    L4 = (H // 4) * (W // 4)
    assert s4["idx_c01"].shape == (1, L4, 100) and s4["conf_matrix"].shape == (1, L4, 100)
    assert int(s4["idx_c01"].min()) >= 0 and int(s4["idx_c01"].max()) < L4
    assert torch.isfinite(s4["conf_matrix"]).all()
    torch.testing.assert_close(s4["conf_matrix"].sum(-1), torch.ones(1, L4))
    k0, k1 = out["mkpts0_f"], out["mkpts1_f"]
    assert len(k0) > 0 and torch.isfinite(k1).all()
    assert (k0[:, 0] >= 4).all() and (k0[:, 0] < W - 4).all() and (k0[:, 1] < H - 4).all()  # border_rm 1 at 1/4
    assert (k1 >= -4).all() and (k1[:, 0] <= W + 4).all() and (k1[:, 1] <= H + 4).all()
    assert ((out["mkpts1_f"] - s4["mkpts1_c"]).abs() <= 4 + 1e-5).all()  # fine correction within one 1/4 cell


def test_batch_equals_single(model, kitti_pair) -> None:
    """Two pairs in one batch give exactly the per-pair results (BN in eval, no cross-sample mixing)."""
    a, b = kitti_pair
    p0 = (crop(a, 64, 96), crop(b, 64, 96))
    p1 = (crop(b, 64, 96, 80, 300), crop(a, 64, 96, 80, 300))
    both = run(model, torch.cat([p0[0], p1[0]]), torch.cat([p0[1], p1[1]]))
    for bi, (x, y) in enumerate((p0, p1)):
        single = run(model, x, y)
        sel = both["m_bids"] == bi
        got = set(zip(both["stage_4c"]["i_ids"][sel].tolist(), both["stage_4c"]["j_ids"][sel].tolist(), strict=True))
        want = set(zip(single["stage_4c"]["i_ids"].tolist(), single["stage_4c"]["j_ids"].tolist(), strict=True))
        assert got == want
        torch.testing.assert_close(both["stage_8c"]["next_conf_c01"][bi], single["stage_8c"]["next_conf_c01"][0])
        o_b = torch.argsort(both["stage_4c"]["i_ids"][sel])
        o_s = torch.argsort(single["stage_4c"]["i_ids"])
        torch.testing.assert_close(both["mkpts1_f"][sel][o_b], single["mkpts1_f"][o_s], atol=1e-4, rtol=0)


def test_rejects_sizes_not_multiple_of_32(model) -> None:
    img = torch.rand(1, 3, 72, 96)
    with pytest.raises(ValueError, match="multiples of 32"):
        run(model, img, img)


def test_matcher_pair_of_different_sizes(fake_indoor_sd, kitti_pair) -> None:
    """Different sizes go through padding masks; keypoints land inside each original image."""
    from casmtr_ros.matching import build_matcher

    matcher = build_matcher("casmtr-4c-indoor", weights=fake_indoor_sd, device="cpu", resize=None, test_thr=0.0,
                            pre_thr=0.0)
    a, b = kitti_pair
    im0 = (crop(a, 96, 160)[0, 0].numpy() * 255).astype(np.uint8)
    im1 = (crop(b, 128, 96, 20, 400)[0, 0].numpy() * 255).astype(np.uint8)
    m = matcher.match(im0, im1)
    assert len(m.kpts0) > 0
    assert (m.kpts0[:, 0] < 160).all() and (m.kpts0[:, 1] < 96).all()
    assert (m.kpts1[:, 0] <= 96 + 4).all() and (m.kpts1[:, 1] <= 128 + 4).all()
