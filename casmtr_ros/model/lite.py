"""``casmtr-4c-lite``: the CasMTR-4c pipeline on an XFeat-initialised CNN, narrow and shallow for CPUs.

Same stages as outdoor-4c (1/8 QuadTree-B transformer and dual-softmax, 1/4 UpBlock fusion and cascade
transformer over 100 candidates with local self-attention, softmax matching with cycle check and max-pool
NMS, 1/2 fine refinement), with:

* backbone ``xfeat`` (:class:`~casmtr_ros.model.xfeat_backbone.XFeatBackbone`): XFeat's CNN (frozen by
  default) plus small trainable projections to 128 / 64 / 32 channels;
* coarse d_model 128 with 4 heads and 4 layers (self, cross x 2), cascade d_model 64 with 2 heads and one
  cross + one local self layer, fine d_model 32 with 1 head.

:func:`init_lite` prepares an untrained model so that it already matches with XFeat's descriptors: it loads
XFeat's trunk weights and zeroes the output projections of every residual branch (transformers start as
identities), and initialises the UpBlock to carry the 1/8 descriptors to the 1/4 grid.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from casmtr_ros.model.casmtr import BACKBONES
from casmtr_ros.model.xfeat_backbone import XFeatBackbone

LITE_TRAIN_SIZE = (192, 256)  # H, W of training crops: the sine PE is normalised to this extent

CASMTR_4C_LITE: dict[str, Any] = {
    "model": "casmtr",
    "backbone": {"type": "xfeat", "init_scale": 32.0, "freeze_trunk": True},
    "dims": {"coarse": 128, "cascade": 64, "fine": 32},
    "coarse": {"nhead": 4, "layer_names": ["self", "cross"] * 2, "topks": [16, 8, 8], "frozen": False},
    "cascade": {
        "nhead": 2, "layer_names": ["cross", "self"], "self_attn_type": "local",
        "window_size": 5, "attn_window": 7,
    },
    "fine": {"nhead": 1, "layer_names": ["self", "cross"], "window": 5},
    "pe_max_shape": {"coarse": (LITE_TRAIN_SIZE[0] // 8, LITE_TRAIN_SIZE[1] // 8),
                     "cascade": (LITE_TRAIN_SIZE[0] // 4, LITE_TRAIN_SIZE[1] // 4)},
    # 'official' coordinates (network points x orig/net): the training GT puts 1/4 points at pixel centres
    # (4x, 4y), which the 'corrected' mode's +0.5 shift would move by half a network pixel.
    "quirks": "official",
    # No NMS by default (as indoor-4c): with the shipped weights, NMS 5 leaves ~70-100 matches per KITTI pair and
    # the VO loses track on the KITTI 06 clip, NMS off keeps ~2700 and raises pose AUC (docs/model_card.md).
    "match_cascade": {"nms_kernel": 0},
    "default_weights": "casmtr-4c-lite",  # casmtr_ros/weights/casmtr-4c-lite.pt (see docs/model_card.md)
    # Matcher default: polish the matches with homography-guided Lucas-Kanade on the original images (the 1/2
    # refinement of these weights is a pixel or more off; docs/model_card.md measures both settings).
    "klt_refine": True,
    # ... and the polish replaces the 1/2 refinement stage (skipped when the polish runs): started from the 1/4
    # matches it is as accurate on KITTI 06 and more accurate on v_churchill, ~0.3 s faster per 640x480 pair.
    "klt_replaces_fine": True,
    # ... and each tracked match is refined by an affine + gain/bias fit of its window and kept when the fit
    # correlates (zncc >= 0.9): KITTI 06 pose AUC@10 95.1 -> 95.9, v_churchill homography AUC@5 76.8 -> 78.4
    # (docs/model_card.md, "Affine refinement of the polish").
    "klt_affine": True,
    # Matcher default: zoom search when the first pass keeps fewer than 0.1 matches per 1/8 cell (strong scale
    # change: KITTI 06 pairs 20 frames apart, AUC@10 69 -> 94; docs/model_card.md, "Zoom search").
    "zoom_below": 0.1,
    # ... and a winning crop's matches are returned with the first pass's (the crop covers the middle of the view,
    # the first pass the rest): KITTI 06 pose AUC@10 94.6 -> 95.1 (docs/model_card.md, "Zoom search").
    "zoom_merge": True,
    # Matcher default: a pixel budget of 480x360 for the network input (with the matcher's longer-side cap of 640):
    # a 640x480 frame is matched at 480x352 in under 0.5 s on a 2-core CPU; a wide camera (KITTI 1226x370 at
    # 640x192) is under the budget and keeps its input (docs/model_card.md, "Pixel budget").
    "max_pixels": 480 * 360,
}


def _xfeat_backbone(cfg: dict[str, Any]) -> nn.Module:
    b, d = cfg["backbone"], cfg["dims"]
    return XFeatBackbone(d8=d["coarse"], d4=d["cascade"], d2=d["fine"], init_scale=float(b.get("init_scale", 32.0)),
                         freeze_trunk=bool(b.get("freeze_trunk", True)))


BACKBONES.setdefault("xfeat", _xfeat_backbone)


@torch.no_grad()
def init_lite(model: nn.Module, xfeat_weights: str | None = None) -> nn.Module:
    """Untrained-model initialisation of a ``casmtr-4c-lite`` model (see the module docstring)."""
    backbone = model.part("backbone")
    if not isinstance(backbone, XFeatBackbone):
        raise ValueError("init_lite expects a model with the 'xfeat' backbone")
    backbone.load_xfeat(xfeat_weights)
    backbone.proj4.weight.zero_()
    backbone.proj4.bias.zero_()
    for name, mod in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("proj", "fc2") and isinstance(mod, nn.Linear) and (
            name.startswith(model.names["coarse"]) or name.startswith(model.names["cascade"])
        ):
            mod.weight.zero_()
            if mod.bias is not None:
                mod.bias.zero_()
    for layer in model.part("fine").layers:  # post-norm LoFTR layers: zero gain -> zero message
        layer.norm2.weight.zero_()
        layer.norm2.bias.zero_()
    up = model.part("up")
    c_in, c_out = up.inner[0].weight.shape[1], up.inner[0].weight.shape[0]
    up.inner[0].weight.zero_()
    n = min(c_in, c_out)
    up.inner[0].weight[:n, :n, 0, 0] = torch.eye(n)
    up.up[0].weight.zero_()
    up.up[0].weight[:, :, 1, 1] = torch.eye(c_out)
    return model
