"""Frozen indoor ResNet-FPN and the PMT ladder: names/shapes against the official manifest, grey conversion, sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from casmtr_ros.model.ladder import Ladder42
from casmtr_ros.model.resnet_fpn import ResNetFPN842, rgb_to_grey


def manifest_part(reference_dir: Path, prefix: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in (reference_dir / "casmtr_4c_indoor_state_dict.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, _ = line.split("\t")
        if name.startswith(prefix):
            out[name[len(prefix) :]] = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
    return out


@pytest.mark.parametrize(
    ("prefix", "factory"), [("backbone.", ResNetFPN842), ("ladder.", Ladder42)], ids=["backbone", "ladder"]
)
def test_names_and_shapes_match_manifest(reference_dir: Path, prefix: str, factory: type) -> None:
    want = manifest_part(reference_dir, prefix)
    got = {k: tuple(v.shape) for k, v in factory().state_dict().items()}
    assert got == want


def test_backbone_grey_conversion_and_shapes() -> None:
    torch.manual_seed(0)
    net = ResNetFPN842().eval()
    rgb = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        out_rgb = net(rgb)
        out_grey = net(rgb_to_grey(rgb))
    assert [tuple(t.shape) for t in out_rgb] == [(1, 256, 8, 12), (1, 196, 16, 24), (1, 128, 32, 48)]
    for a, b in zip(out_rgb, out_grey):
        torch.testing.assert_close(a, b)
    grey = rgb_to_grey(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    assert abs(float(grey) - 0.299) < 1e-7


@pytest.mark.parametrize(("H", "W"), [(40, 56), (72, 40), (8, 8)])
def test_odd_eighth_sizes(H: int, W: int) -> None:
    """1/8 maps of odd size (5x7, 9x5, 1x1) go through backbone and ladder with consistent shapes."""
    torch.manual_seed(0)
    net, ladder = ResNetFPN842().eval(), Ladder42().eval()
    img = torch.rand(2, 3, H, W)
    with torch.no_grad():
        f8, f4, f2 = net(img)
        l4, l2 = ladder(img, f4, f2)
    assert f8.shape == (2, 256, H // 8, W // 8)
    assert l4.shape == (2, 128, H // 4, W // 4) and l2.shape == (2, 64, H // 2, W // 2)


def test_backbone_rejects_bad_input() -> None:
    net = ResNetFPN842()
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="channels"):
        net(torch.zeros(1, 2, 32, 32))


def test_ladder_detaches_frozen_features() -> None:
    torch.manual_seed(0)
    ladder = Ladder42()
    img = torch.rand(1, 3, 32, 32)
    f4 = torch.rand(1, 196, 8, 8, requires_grad=True)
    f2 = torch.rand(1, 128, 16, 16, requires_grad=True)
    l4, l2 = ladder(img, f4, f2)
    (l4.sum() + l2.sum()).backward()
    assert f4.grad is None and f2.grad is None
    assert ladder.conv1.weight.grad is not None


def test_ladder_rejects_mismatched_frozen_features() -> None:
    ladder = Ladder42()
    with pytest.raises(ValueError, match="do not match"):
        ladder(torch.rand(1, 3, 32, 32), torch.rand(1, 196, 4, 4), torch.rand(1, 128, 16, 16))
