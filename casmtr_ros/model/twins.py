"""Outdoor backbone ``TwinsFPN_8_4_2`` (spec §2.1): Twins-SVT-L first two stages + 1/2 CNN stem + FPN.

The ViT also owns the never-executed stage-3/4 patch embeddings and PEGs so official checkpoints load strictly.
Input: ``[B, 3, H, W]`` RGB in [0, 1] (ImageNet normalisation happens inside). Output: 1/8 (256 ch),
1/4 (128 ch), 1/2 (64 ch) maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from casmtr_ros.model.local_attention import GroupBlock, Mlp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(d_in, d_out, patch, patch)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class PosCNN(nn.Module):
    """PEG: depth-wise 3x3 conv plus identity on the token map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        B, _N, C = x.shape
        m = x.transpose(1, 2).reshape(B, C, h, w)
        return (self.proj(m) + m).flatten(2).transpose(1, 2)


class SubsampledAttention(nn.Module):
    """GSA: queries from all tokens; keys/values from the map reduced by a stride-``sr`` conv + LayerNorm."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        B, N, C = x.shape
        nh = self.num_heads
        q = self.q(x).reshape(B, N, nh, C // nh).permute(0, 2, 1, 3)
        xs = self.norm(self.sr(x.transpose(1, 2).reshape(B, C, h, w)).reshape(B, C, -1).transpose(1, 2))
        kv = self.kv(xs).reshape(B, -1, 2, nh, C // nh).permute(2, 0, 3, 1, 4)
        attn = ((q @ kv[0].transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ kv[1]).transpose(1, 2).reshape(B, N, C))


class GSABlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, sr_ratio: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SubsampledAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x))


class TwinsSVTFirst2(nn.Module):
    """Twins-SVT (ALTGVT) with all four patch embeddings/PEGs but only stages 0 and 1 built and executed."""

    def __init__(
        self,
        embed_dims=(128, 256, 512, 1024),
        num_heads=(4, 8, 16, 32),
        sr_ratios=(8, 4, 2, 1),
        ws: int = 7,
        mask_mode: str = "official",
    ) -> None:
        super().__init__()
        d = list(embed_dims)
        self.patch_embeds = nn.ModuleList(
            PatchEmbed(4 if i == 0 else 2, 3 if i == 0 else d[i - 1], d[i]) for i in range(len(d))
        )
        self.pos_block = nn.ModuleList(PosCNN(di) for di in d)
        self.norm_list = nn.ModuleList(nn.LayerNorm(d[i], eps=1e-6) for i in range(2))
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    GroupBlock(d[i], num_heads[i], ws, qkv_bias=True, eps=1e-6, mask_mode=mask_mode),
                    GSABlock(d[i], num_heads[i], sr_ratios[i]),
                ]
            )
            for i in range(2)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        B = x.shape[0]
        for i in range(2):
            x, h, w = self.patch_embeds[i](x)
            for j, blk in enumerate(self.blocks[i]):
                x = blk(x, h, w)
                if j == 0:
                    x = self.pos_block[i](x, h, w)
            x = self.norm_list[i](x).reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus identity (1x1 conv + BN ``shortcut`` when channels change), ReLU."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(d_in, d_out, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(d_out, d_out, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(d_out)
        self.bn2 = nn.BatchNorm2d(d_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(d_in, d_out, 1, bias=False), nn.BatchNorm2d(d_out)) if d_in != d_out else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu((x if self.shortcut is None else self.shortcut(x)) + y)


def conv_bn(d_in: int, d_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(d_in, d_out, k, 1, k // 2, bias=False), nn.BatchNorm2d(d_out))


def conv_head(d_in: int, d_mid: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(d_in, d_mid, 3, 1, 1, bias=False),
        nn.BatchNorm2d(d_mid),
        nn.LeakyReLU(0.01),
        nn.Conv2d(d_mid, d_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(d_out),
    )


class TwinsFPN(nn.Module):
    """``backbone`` of outdoor-4c: returns ``(feat_8c [B,256], feat_4c [B,128], feat_f [B,64])``."""

    def __init__(self, block_dims=(64, 128, 256), mask_mode: str = "official") -> None:
        super().__init__()
        d1, d2, d3 = block_dims
        self.vit = TwinsSVTFirst2(mask_mode=mask_mode)
        self.conv1 = nn.Sequential(nn.Conv2d(3, 32, 7, 2, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(True))
        self.layer1 = nn.Sequential(BasicBlock(32, d1), BasicBlock(d1, d1))
        self.layer3_outconv = conv_bn(256, d3, 1)
        self.layer2_outconv = conv_bn(128, d3, 1)
        self.layer2_outconv2 = conv_head(d3, d3, d2)
        self.layer1_outconv = conv_bn(d1, d2, 1)
        self.layer1_outconv2 = conv_head(d2, d2, d1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (x - self.mean) / self.std
        x2, x3 = self.vit(x)
        x1 = self.layer1(self.conv1(x))
        out8 = self.layer3_outconv(x3)
        up8 = F.interpolate(out8, scale_factor=2.0, mode="bilinear", align_corners=True)
        out4 = self.layer2_outconv2(self.layer2_outconv(x2) + up8)
        up4 = F.interpolate(out4, scale_factor=2.0, mode="bilinear", align_corners=True)
        out2 = self.layer1_outconv2(self.layer1_outconv(x1) + up4)
        return out8, out4, out2
