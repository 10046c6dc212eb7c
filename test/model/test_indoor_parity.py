"""Indoor CasMTR-4c parity with the official code's golden outputs (shared/reference/parity), stage by stage.

Seeded random official-layout checkpoint (the parity README's recipe, content hash checked in
``test_indoor_model.py``), thresholds 0 as in the files, fp32 on the CPU. Indices and match sets must be
identical; confidences agree to float rounding and coordinates to 1e-3 px. One forward per file (module fixture).
"""

from __future__ import annotations

from pathlib import Path

import fake_ckpt
import pytest
import torch

from casmtr_ros.model import build_model

THR0 = {"match_coarse": {"thr": 0.0}, "match_cascade": {"test_thr": 0.0, "pre_thr": 0.0}}
FILES = ["indoor_kitti06_000000_000001_640x192_thr0.pt", "indoor_churchill_1_2_480x640_thr0.pt"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(reference_dir: Path) -> torch.nn.Module:
    m = build_model("casmtr-4c-indoor", THR0)
    m.load_state_dict(fake_ckpt.fake_state_dict(reference_dir / "casmtr_4c_indoor_state_dict.tsv"), strict=True)
    return m.eval()


@pytest.fixture(scope="module", params=FILES, ids=["kitti_640x192", "churchill_480x640"])
def run(request, model, reference_dir: Path) -> tuple[dict, dict]:
    golden = torch.load(reference_dir / "parity" / request.param)
    assert golden["kind"] == "indoor" and golden["thr"] == 0.0
    with torch.inference_mode():
        out = model({"image0": golden["image0"].float() / 255, "image1": golden["image1"].float() / 255})
    return out, golden


def match_set(b, i, j) -> set[tuple[int, int, int]]:
    return set(zip(b.tolist(), i.tolist(), j.tolist(), strict=True))


def by_i(ids: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    order = torch.argsort(ids.long())
    return [t[order] for t in tensors]


def test_stage_8c(run) -> None:
    out, g = run
    s8 = out["stage_8c"]
    for d in ("c01", "c10"):
        assert torch.equal(s8[f"next_idx_{d}"].int(), g[f"c8_next_idx_{d}"])
        torch.testing.assert_close(s8[f"next_conf_{d}"], g[f"c8_next_conf_{d}"], atol=2e-6, rtol=1e-3)
    assert match_set(s8["b_ids"], s8["i_ids"], s8["j_ids"]) == match_set(g["c8_b_ids"], g["c8_i_ids"], g["c8_j_ids"])
    mine = by_i(s8["i_ids"], s8["mkpts0_c"], s8["mkpts1_c"], s8["mconf"])
    ref = by_i(g["c8_i_ids"], g["c8_mkpts0_c"], g["c8_mkpts1_c"], g["c8_mconf"])
    torch.testing.assert_close(mine[0], ref[0], atol=0, rtol=0)
    torch.testing.assert_close(mine[1], ref[1], atol=0, rtol=0)
    torch.testing.assert_close(mine[2], ref[2], atol=2e-6, rtol=1e-3)


def test_stage_4c(run) -> None:
    out, g = run
    s4 = out["stage_4c"]
    if "c4_idx_c01" in g:  # the churchill files leave the candidate tensors out
        for d in ("c01", "c10"):
            assert torch.equal(s4[f"idx_{d}"].int(), g[f"c4_idx_{d}"])
        torch.testing.assert_close(s4["conf_matrix"], g["c4_conf_matrix"], atol=2e-6, rtol=1e-3)
    for d in ("c01", "c10"):
        assert torch.equal(s4[f"next_idx_{d}"].int(), g[f"c4_next_idx_{d}"])
        torch.testing.assert_close(s4[f"next_conf_{d}"], g[f"c4_next_conf_{d}"], atol=2e-6, rtol=1e-3)
    assert len(s4["i_ids"]) == len(g["c4_i_ids"])
    assert match_set(s4["b_ids"], s4["i_ids"], s4["j_ids"]) == match_set(g["c4_b_ids"], g["c4_i_ids"], g["c4_j_ids"])
    mine = by_i(s4["i_ids"], s4["mkpts0_c"], s4["mkpts1_c"], s4["mconf"])
    ref = by_i(g["c4_i_ids"], g["c4_mkpts0_c"], g["c4_mkpts1_c"], g["c4_mconf"])
    torch.testing.assert_close(mine[0], ref[0], atol=0, rtol=0)
    torch.testing.assert_close(mine[1], ref[1], atol=0, rtol=0)
    torch.testing.assert_close(mine[2], ref[2], atol=2e-6, rtol=1e-3)


def test_refinement(run) -> None:
    out, g = run
    ids = out["stage_4c"]["i_ids"]
    mine = by_i(ids, out["expec_f"], out["mkpts0_f"], out["mkpts1_f"], out["mconf"])
    ref = by_i(g["c4_i_ids"], g["expec_f"], g["mkpts0_f"], g["mkpts1_f"], g["c4_mconf"])
    torch.testing.assert_close(mine[0], ref[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(mine[1], ref[1], atol=1e-3, rtol=0)
    torch.testing.assert_close(mine[2], ref[2], atol=1e-3, rtol=0)
    torch.testing.assert_close(mine[3], ref[3], atol=2e-6, rtol=1e-3)
    assert torch.equal(out["m_bids"].int(), g["m_bids"])
    # the fine correction is a real refinement, not a copy of the 1/4 coordinates
    assert (out["mkpts1_f"] - out["stage_4c"]["mkpts1_c"]).abs().max() > 0
