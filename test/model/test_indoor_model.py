"""Indoor CasMTR-4c: state dict vs the official manifest, strict checkpoint loading, API names, defaults."""

from __future__ import annotations

from pathlib import Path

import fake_ckpt
import numpy as np
import pytest
import torch

from casmtr_ros.model import available_variants, build_model, load_weights, variant_config
from casmtr_ros.model.checkpoint import CheckpointError

INDOOR_SHA256 = "9734c01039f633ca9f9604c101426625c6fe0145b7fb8c9cc7446987726fa7b3"  # parity README


@pytest.fixture(scope="module")
def indoor_manifest(reference_dir: Path) -> Path:
    return reference_dir / "casmtr_4c_indoor_state_dict.tsv"


@pytest.fixture(scope="module")
def fake_indoor_sd(indoor_manifest: Path) -> dict[str, torch.Tensor]:
    return fake_ckpt.fake_state_dict(indoor_manifest)


@pytest.fixture(scope="module")
def indoor_model() -> torch.nn.Module:
    return build_model("casmtr-4c-indoor")


def test_state_dict_equals_manifest(indoor_model, indoor_manifest) -> None:
    rows = fake_ckpt.read_manifest(indoor_manifest)
    want = {name: (tuple(shape), dtype) for name, shape, dtype in rows}
    got = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in indoor_model.state_dict().items()}
    assert sorted(set(want) - set(got)) == [] and sorted(set(got) - set(want)) == []
    assert got == want
    assert len(got) == 419
    assert sum(p.numel() for p in indoor_model.parameters()) == 14_369_010


def test_fake_checkpoint_hash(fake_indoor_sd) -> None:
    assert fake_ckpt.content_sha256(fake_ckpt.lightning_checkpoint(fake_indoor_sd)["state_dict"]) == INDOOR_SHA256


@pytest.mark.parametrize("fmt", ["lightning", "plain"])
def test_strict_load_both_formats(tmp_path, indoor_model, fake_indoor_sd, fmt: str) -> None:
    obj = fake_ckpt.lightning_checkpoint(fake_indoor_sd) if fmt == "lightning" else fake_indoor_sd
    path = tmp_path / f"indoor_{fmt}.ckpt"
    torch.save(obj, path)
    load_weights(indoor_model, path, variant="casmtr-4c-indoor")
    sd = indoor_model.state_dict()
    for k, v in fake_indoor_sd.items():
        assert torch.equal(sd[k], v), k
    # the POLA index buffer comes from the checkpoint (zeros in the fake one), not from the constructor
    assert not sd["loftr_coarse_4c.layers.0.attn.relative_position_index"].any()


def test_outdoor_checkpoint_refused(indoor_model, reference_dir) -> None:
    outdoor = fake_ckpt.fake_state_dict(reference_dir / "casmtr_4c_outdoor_state_dict.tsv")
    with pytest.raises(CheckpointError, match=r"wrong architecture|variant 'casmtr-4c-outdoor'"):
        load_weights(indoor_model, outdoor, variant="casmtr-4c-indoor")


def test_frozen_parts_get_no_gradients(fake_indoor_sd) -> None:
    """backbone, loftr_coarse and the 1/8 matching run without gradients; the ladder and 1/4 path train."""
    model = build_model("casmtr-4c-indoor")
    model.load_state_dict(fake_indoor_sd)
    model.train()
    torch.manual_seed(0)
    img = torch.rand(1, 3, 64, 64)
    out = model({"image0": img, "image1": img.flip(-1)})
    loss = out["stage_4c"]["conf_matrix"].sum() + out["expec_f"].sum()
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is None for p in model.loftr_coarse.parameters())
    assert model.ladder.conv1.weight.grad is not None
    assert model.loftr_coarse_4c.h_pos_bias.weight.grad is not None
    assert model.loftr_coarse_4c.layers[0].attn.relative_position_bias_table.grad is not None


def test_variant_defaults() -> None:
    assert "casmtr-4c-indoor" in available_variants()
    cfg = variant_config("casmtr-4c-indoor")
    mc = cfg["match_cascade"]
    assert (mc["nms_kernel"], mc["test_thr"], mc["pre_thr"], mc["border_rm"]) == (0, 0.1, 0.2, 1)
    assert cfg["coarse"]["frozen"] and cfg["cascade"]["self_attn_type"] == "POLA"
    assert cfg["pe_max_shape"] == {"coarse": (60, 80), "cascade": (160, 160)}


def test_nms_off_by_default(indoor_model) -> None:
    """With the default config neighbouring 1/4 pixels can all match; NMS (kernel 5) keeps one per 5x5."""
    matching = indoor_model.cascade_matching_4c
    assert matching.nms_kernel == 0
    h4 = w4 = 12
    L4 = h4 * w4
    # Every pixel's own position is its 100th candidate; features make it the clear winner both ways.
    feats = torch.nn.functional.normalize(torch.randn(1, L4, 128, generator=torch.Generator().manual_seed(0)), dim=-1)
    feats = feats * 60.0
    idx = torch.randint(0, L4, (1, L4, 100), generator=torch.Generator().manual_seed(1))
    idx[..., 99] = torch.arange(L4)
    next_conf = torch.ones(1, L4 // 4)
    res = matching(feats, feats, idx, idx, (h4, w4), next_conf)
    kept = res["match_mask"].view(h4, w4)
    assert kept[1:-1, 1:-1].all()  # border_rm 1 removes the outer ring of source pixels; all others kept
    assert not (kept[0].any() or kept[-1].any() or kept[:, 0].any() or kept[:, -1].any())
    matching.nms_kernel = 5
    try:
        nms = matching(feats, feats, idx, idx, (h4, w4), next_conf)["match_mask"].view(h4, w4)
    finally:
        matching.nms_kernel = 0
    ys, xs = torch.nonzero(nms, as_tuple=True)
    assert 0 < len(ys) < kept.sum() / 4
    cheb = torch.maximum((ys[:, None] - ys[None]).abs(), (xs[:, None] - xs[None]).abs())
    assert (cheb + 3 * torch.eye(len(ys), dtype=cheb.dtype) > 2).all()  # no two NMS survivors in one 5x5 window


def test_matcher_by_name(fake_indoor_sd) -> None:
    from casmtr_ros.matching import available_matchers, build_matcher

    assert "casmtr-4c-indoor" in available_matchers()
    matcher = build_matcher("casmtr-4c-indoor", weights=fake_indoor_sd, device="cpu", resize=None)
    rng = np.random.default_rng(0)
    img = (rng.random((96, 128)) * 255).astype(np.uint8)
    m = matcher.match(img, np.ascontiguousarray(img[:, ::-1]))
    assert m.kpts0.shape[1] == 2 and len(m.kpts0) == len(m.kpts1) == len(m.confidence)
    assert (m.kpts0[:, 0] < 128).all() and (m.kpts0[:, 1] < 96).all()
    with pytest.raises(ValueError, match="no weights"):
        build_matcher("casmtr-4c-indoor", device="cpu")
