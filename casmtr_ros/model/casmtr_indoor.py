"""Indoor CasMTR-4c (official ``src/model/cascade_quadtree_stage3.py``, spec §2.2, §7.3, §7.4, §11.2).

Differences from outdoor-4c, all expressed through :class:`~casmtr_ros.model.casmtr.CasMTR`'s hooks:

* ``backbone``: the frozen QuadTree ``ResNetFPN_8_4_2`` (grey input, 1/8 = 256, 1/4 = 196, 1/2 = 128 ch); it,
  ``loftr_coarse`` (8 QuadTree-B blocks) and the 1/8 matching run without gradients;
* ``ladder``: the trainable PMT side network on the RGB image, fused with the detached frozen 1/4 and 1/2 maps,
  gives the 1/4 (128) and 1/2 (64) features;
* ``loftr_coarse_4c``: self, cross, self, cross with POLA self-attention and the learned relative-position bias
  in the cross-attention;
* 1/4 matching: ``test_thr`` 0.1, ``border_rm`` 1, no NMS; positional encodings normalised to (60, 80) at 1/8
  and (160, 160) at 1/4.

Importing this module registers the model class (``MODELS['casmtr-indoor']``), the backbone
(``BACKBONES['resnetfpn']``) and the variant ``casmtr-4c-indoor`` (``VARIANTS``, found by
:func:`casmtr_ros.model.available_variants`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from casmtr_ros.model.casmtr import BACKBONES, MODELS, CasMTR
from casmtr_ros.model.ladder import Ladder42
from casmtr_ros.model.relative_bias import BiasedCascadeTransformer
from casmtr_ros.model.resnet_fpn import ResNetFPN842
from casmtr_ros.model.variants import VARIANTS

# configs/model_configs/indoor/loftr_ds_quadtree_cas_stage3.py, merged onto casmtr.OUTDOOR_4C.
INDOOR_4C: dict[str, Any] = {
    "model": "casmtr-indoor",
    "names": {
        "backbone": "backbone",
        "coarse": "loftr_coarse",
        "up": "up_block1",
        "cascade": "loftr_coarse_4c",
        "fine_preprocess": "cas_fine_preprocess",
        "fine": "cas_loftr_fine",
    },
    "backbone": {"type": "resnetfpn", "initial_dim": 128, "block_dims": (128, 196, 256), "in_channels": 1},
    "ladder": {"refine_dims": (64, 128, 256), "in_channels": 3, "bn_fix": False},
    "dims": {"coarse": 256, "cascade": 128, "fine": 64},
    "coarse": {"nhead": 8, "layer_names": ["self", "cross"] * 4, "topks": [32, 16, 16], "frozen": True},
    "cascade": {
        "nhead": 4,
        "layer_names": ["self", "cross", "self", "cross"],
        "self_attn_type": "POLA",
        "window_size": 5,
        "attn_window": 7,
        "sr_ratio": 2,
    },
    "fine": {"nhead": 2, "layer_names": ["self", "cross"], "window": 5},
    "pe_max_shape": {"coarse": (60, 80), "cascade": (160, 160)},
    "match_coarse": {"temperature": 0.1, "thr": 0.2, "border_rm": 0},
    "match_cascade": {
        "temperature": 1.0,
        "test_thr": 0.1,
        "pre_thr": 0.2,  # official PRE_THR [[0.2, 0.1]]: only element 0 is used
        "border_rm": 1,
        "nms_kernel": 0,  # POST_CONFIG.METHOD None: no NMS (enable with nms_kernel=5)
        "double_check": True,
    },
    "quirks": "official",
}


def _resnet_fpn(cfg: dict[str, Any]) -> nn.Module:
    b = cfg["backbone"]
    return ResNetFPN842(int(b.get("initial_dim", 128)), tuple(b.get("block_dims", (128, 196, 256))),
                        int(b.get("in_channels", 1)))


BACKBONES.setdefault("resnetfpn", _resnet_fpn)


class CasMTRIndoor(CasMTR):
    """CasMTR-4c with the frozen ResNet-FPN backbone, the PMT ladder and the POLA / biased cascade transformer.

    Same ``forward(data) -> dict`` contract as :class:`CasMTR`; extra top-level module ``ladder``.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        lad = self.config["ladder"]
        frozen_dims = tuple(self.config["backbone"].get("block_dims", (128, 196, 256)))[:2]
        self.ladder = Ladder42(tuple(lad["refine_dims"]), frozen_dims, int(lad.get("in_channels", 3)),
                               bool(lad.get("bn_fix", False)))

    def build_cascade(self, cfg: dict[str, Any]) -> nn.Module:
        c = cfg["cascade"]
        return BiasedCascadeTransformer(
            cfg["dims"]["cascade"],
            c["nhead"],
            c["layer_names"],
            c["self_attn_type"],
            c["window_size"],
            c["attn_window"],
            c.get("sr_ratio", 2),
            mask_mode=cfg["quirks"],
        )

    def side_features(
        self, images: torch.Tensor, f4: torch.Tensor, ff: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ladder replaces the frozen backbone's 1/4 and 1/2 maps (which it consumes, detached)."""
        return self.ladder(images, f4, ff)


MODELS.setdefault("casmtr-indoor", CasMTRIndoor)
VARIANTS.setdefault("casmtr-4c-indoor", INDOOR_4C)
