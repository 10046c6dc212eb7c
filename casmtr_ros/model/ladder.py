"""PMT ladder side network of indoor CasMTR-4c (official ``Ladder_4_2``, spec §2.2).

A small trainable ResNet on the raw RGB image (1/2 and 1/4) fused with the *detached* 1/4 and 1/2 outputs of the
frozen backbone. Produces the 1/4 (128 ch) and 1/2 (64 ch) features of the cascade and fine stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from casmtr_ros.model.resnet_fpn import conv1x1, conv3x3, make_layer, upsample2x


class Ladder42(nn.Module):
    """Ladder network.

    Args:
        refine_dims: ladder channels ``(d0 at 1/2, d1 at 1/4, unused)``; official ``(64, 128, 256)``.
        frozen_dims: channels of the frozen backbone outputs ``(at 1/2, at 1/4)``; official ``(128, 196)``.
        in_channels: 3 (RGB input, official) or 1.
        bn_fix: official ``BN_FIX``: a BatchNorm after ``layer1_outconv`` (False in the indoor-4c config).
    """

    def __init__(
        self,
        refine_dims: Sequence[int] = (64, 128, 256),
        frozen_dims: Sequence[int] = (128, 196),
        in_channels: int = 3,
        bn_fix: bool = False,
    ) -> None:
        super().__init__()
        r0, r1 = refine_dims[0], refine_dims[1]
        f0, f1 = frozen_dims
        self.conv1 = nn.Conv2d(in_channels, r0, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(r0)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(r0, r0, 1)  # 1/2
        self.layer2 = make_layer(r0, r1, 2)  # 1/4
        self.layer2_outconv = nn.Sequential(conv1x1(r1 + f1, r1), nn.BatchNorm2d(r1))
        if bn_fix:
            self.layer1_outconv: nn.Module = nn.Sequential(conv1x1(r0 + f0, r1), nn.BatchNorm2d(r1))
        else:
            self.layer1_outconv = conv1x1(r0 + f0, r1)
        self.layer1_outconv2 = nn.Sequential(
            conv3x3(r1, r1), nn.BatchNorm2d(r1), nn.LeakyReLU(), conv3x3(r1, r0), nn.BatchNorm2d(r0)
        )

    def forward(
        self, image: torch.Tensor, frozen_4: torch.Tensor, frozen_2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image [B, 3, H, W]`` in [0, 1]; frozen FPN ``frozen_4 [B, f1, H/4, W/4]``, ``frozen_2 [B, f0, H/2, W/2]``.

        Returns ``(feat_4 [B, r1, H/4, W/4], feat_2 [B, r0, H/2, W/2])``.
        """
        x1 = self.layer1(self.relu(self.bn1(self.conv1(image))))  # 1/2
        x2 = self.layer2(x1)  # 1/4
        if x2.shape[-2:] != frozen_4.shape[-2:] or x1.shape[-2:] != frozen_2.shape[-2:]:
            raise ValueError(
                f"ladder: frozen features {tuple(frozen_4.shape[-2:])}/{tuple(frozen_2.shape[-2:])} do not match "
                f"the ladder's 1/4 and 1/2 maps {tuple(x2.shape[-2:])}/{tuple(x1.shape[-2:])}"
            )
        out4 = self.layer2_outconv(torch.cat([x2, frozen_4.detach()], dim=1))
        out2 = self.layer1_outconv(torch.cat([x1, frozen_2.detach()], dim=1))
        out2 = self.layer1_outconv2(out2 + upsample2x(out4))
        return out4, out2
