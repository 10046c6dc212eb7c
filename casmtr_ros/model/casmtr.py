"""The CasMTR-4c matcher network, configurable from a config dict (default: the official outdoor-4c).

Registries (other variants add entries):
- ``BACKBONES``: name -> factory ``(cfg: dict) -> nn.Module`` whose forward maps ``[B, 3, H, W]`` RGB in [0, 1] to
  ``(feat_8c [B, C8, H/8, W/8], feat_4c [B, C4, H/4, W/4], feat_f [B, Cf, H/2, W/2])``.
- ``MODELS``: name -> ``nn.Module`` class taking the config dict (``CasMTR`` here; a variant may subclass it and
  override :meth:`CasMTR.extract_features`, :meth:`CasMTR.side_features` or :meth:`CasMTR.build_cascade`).

Top-level module names come from the config (``names``) so the state dict reproduces the official keys.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from casmtr_ros.model.cascade_attention import CascadeFeatureTransformer
from casmtr_ros.model.cascade_matching import CascadeMatching
from casmtr_ros.model.coarse_matching import CoarseMatching
from casmtr_ros.model.fine import FineMatching, FinePreprocess, FineTransformer
from casmtr_ros.model.position_encoding import PositionEncodingSineNorm
from casmtr_ros.model.quadtree import LocalFeatureTransformer
from casmtr_ros.model.twins import TwinsFPN
from casmtr_ros.model.up_block import UpBlock

BACKBONES: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "twins": lambda cfg: TwinsFPN(tuple(cfg["backbone"].get("block_dims", (64, 128, 256))), cfg["quirks"]),
}

# per-match entries of the 1/4 stage's output (kept together when ``data["max_matches"]`` caps the matches)
PER_MATCH_KEYS = ("b_ids", "i_ids", "j_ids", "m_bids", "mconf", "mkpts0_c", "mkpts1_c")
# Matches refined per chunk at inference (bounds the memory of the 1/2 windows and activations).
FINE_CHUNK = 512

STAGES = ("backbone", "coarse_attention", "coarse_matching", "cascade_attention", "cascade_matching", "refinement")

OUTDOOR_4C: dict[str, Any] = {
    "model": "casmtr",
    "names": {  # top-level attribute names = state-dict prefixes
        "backbone": "backbone",
        "coarse": "loftr_coarse_8c",
        "up": "up_block1",
        "cascade": "loftr_coarse_4c",
        "fine_preprocess": "fine_preprocess",
        "fine": "loftr_fine",
    },
    "backbone": {"type": "twins", "block_dims": (64, 128, 256)},
    "dims": {"coarse": 256, "cascade": 128, "fine": 64},
    "coarse": {"nhead": 8, "layer_names": ["self", "cross"] * 3, "topks": [32, 16, 8], "frozen": False},
    "cascade": {
        "nhead": 4,
        "layer_names": ["cross", "self", "cross", "self"],
        "self_attn_type": "local",
        "window_size": 5,
        "attn_window": 7,
    },
    "fine": {"nhead": 2, "layer_names": ["self", "cross"], "window": 5},
    "pe_max_shape": {"coarse": (88, 88), "cascade": (176, 176)},
    "match_coarse": {"temperature": 0.1, "thr": 0.2, "border_rm": 0},
    "match_cascade": {
        "temperature": 1.0,
        "test_thr": 0.2,
        "pre_thr": 0.2,
        "border_rm": 2,
        "nms_kernel": 5,
        "double_check": True,
    },
    "quirks": "official",  # 'official' reproduces the official outputs; 'corrected' fixes the quirks (README)
}


def merge_config(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """Recursive dict merge (override wins); returns a new dict."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


class _Timer:
    def __init__(self, device: torch.device, sync: bool) -> None:
        self.sync = sync and device.type == "cuda"
        self.times: dict[str, float] = {}
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.sync:
            torch.cuda.synchronize()
        t = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + t - self.t
        self.t = t


class CasMTR(nn.Module):
    """CasMTR-4c: 1/8 QuadTree transformer -> 1/4 cascade -> 1/2 refinement.

    ``forward(data) -> dict``. Inputs (``data``):
      - ``image0``, ``image1``: ``[B, 3, H, W]`` (or ``[B, 1, H, W]``, repeated to RGB) float in [0, 1], equal
        sizes, ``H`` and ``W`` multiples of 32;
      - optional ``mask0``, ``mask1`` (or the official names ``mask0_origin``, ``mask1_origin``): ``[B, H, W]``
        bool, True = valid (zero-padded images);
      - optional ``scale0``, ``scale1``: ``[B, 2]`` (w_orig / w_net, h_orig / h_net) applied to the coordinates;
      - optional ``profile``: synchronise CUDA between stages so the timings are exact;
      - optional ``coarse_matches`` (default True): False skips the 1/8 ``conf_matrix`` and LoFTR matches, which
        the 4c output never uses (inference speed; the matchers pass False);
      - optional ``max_matches`` (default None = all): refine only this many most confident 1/4 matches
        (inference speed; the fine stage and the pose estimator cost grows with the number of matches);
      - optional ``fine_refine`` (default True): False skips the 1/2 refinement and returns the 1/4 matches as
        ``mkpts*_f`` (no ``expec_f``): for callers that refine the points themselves (the Lucas-Kanade polish).
    Outputs:
      - ``mkpts0_f``, ``mkpts1_f`` ``[M, 2]`` (x, y) input pixels (x scale), ``mconf`` ``[M]``, ``m_bids`` ``[M]``,
        ``expec_f`` ``[M, 3]``;
      - ``stage_8c``: ``next_idx_c01/next_conf_c01 [B, L8]``, ``next_idx_c10/next_conf_c10``, ``conf_matrix
        [B, L8, L8]`` and the LoFTR 1/8 matches (``b_ids, i_ids, j_ids, mconf, mkpts0_c, mkpts1_c``; these two
        only with ``coarse_matches``);
      - ``stage_4c``: ``idx_c01/idx_c10 [B, L4, 100]``, ``conf_matrix [B, L4, 100]``, ``next_idx_*``,
        ``next_conf_*`` ``[B, L4]``, ``match_mask [B, L4]`` and the 1/4 matches;
      - ``hw0_i, hw0_8c, hw0_4c, hw0_f`` (and ``hw1_*``); ``timings``: seconds per stage (``STAGES``).
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = merge_config(OUTDOOR_4C, config)
        self.config = cfg
        names = cfg["names"]
        self.names = names
        dims = cfg["dims"]
        btype = cfg["backbone"]["type"]
        if btype not in BACKBONES:
            raise ValueError(f"unknown backbone {btype!r}; known: {sorted(BACKBONES)}")
        self.add_module(names["backbone"], BACKBONES[btype](cfg))
        self.pos_encoding_8c = PositionEncodingSineNorm(dims["coarse"], cfg["pe_max_shape"]["coarse"])
        c = cfg["coarse"]
        self.add_module(
            names["coarse"], LocalFeatureTransformer(dims["coarse"], c["nhead"], c["layer_names"], c["topks"])
        )
        self.coarse_matching_8c = CoarseMatching(**cfg["match_coarse"])
        self.add_module(names["up"], UpBlock(dims["coarse"], dims["cascade"]))
        self.pos_encoding_4c = PositionEncodingSineNorm(dims["cascade"], cfg["pe_max_shape"]["cascade"])
        self.add_module(names["cascade"], self.build_cascade(cfg))
        self.cascade_matching_4c = CascadeMatching(**cfg["match_cascade"], quirks=cfg["quirks"])
        f = cfg["fine"]
        self.add_module(names["fine_preprocess"], FinePreprocess(dims["cascade"], dims["fine"], f["window"]))
        self.add_module(names["fine"], FineTransformer(dims["fine"], f["nhead"], f["layer_names"]))
        self.fine_matching = FineMatching()

    def build_cascade(self, cfg: dict[str, Any]) -> nn.Module:
        c = cfg["cascade"]
        return CascadeFeatureTransformer(
            cfg["dims"]["cascade"],
            c["nhead"],
            c["layer_names"],
            c["self_attn_type"],
            c["window_size"],
            c["attn_window"],
            mask_mode=cfg["quirks"],
        )

    def part(self, key: str) -> nn.Module:
        """The top-level module playing role ``key`` (see ``config['names']``)."""
        return getattr(self, self.names[key])

    def extract_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[2B, 3, H, W]`` -> 1/8, 1/4, 1/2 maps (override for backbones needing more than one module)."""
        return self.part("backbone")(images)

    def side_features(
        self, images: torch.Tensor, f4: torch.Tensor, ff: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hook run after the (possibly frozen) backbone with gradients enabled: may replace the 1/4 and 1/2 maps
        (the indoor PMT ladder does). Identity here."""
        return f4, ff

    def forward(self, data: dict[str, Any]) -> dict[str, Any]:
        img0, img1 = data["image0"], data["image1"]
        if img0.shape != img1.shape:
            raise ValueError(f"both images must have the same shape, got {tuple(img0.shape)} and {tuple(img1.shape)}")
        if img0.dim() != 4 or img0.shape[1] not in (1, 3):
            raise ValueError(f"images must be [B, 3, H, W] (or [B, 1, H, W]), got {tuple(img0.shape)}")
        B, _, H, W = img0.shape
        if H % 32 or W % 32:
            raise ValueError(f"image sides must be multiples of 32, got {W}x{H}")
        if img0.shape[1] == 1:
            img0, img1 = img0.expand(-1, 3, -1, -1), img1.expand(-1, 3, -1, -1)
        timer = _Timer(img0.device, bool(data.get("profile", False)))
        scale0, scale1 = data.get("scale0"), data.get("scale1")
        mask0 = data.get("mask0", data.get("mask0_origin"))
        mask1 = data.get("mask1", data.get("mask1_origin"))
        out: dict[str, Any] = {"bs": B, "hw0_i": (H, W), "hw1_i": (H, W)}

        frozen = self.config["coarse"].get("frozen", False)
        images = torch.cat([img0, img1], 0)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            f8, f4, ff = self.extract_features(images)
        f4, ff = self.side_features(images, f4, ff)
        h8, w8 = f8.shape[2:]
        h4, w4 = f4.shape[2:]
        out.update(hw0_8c=(h8, w8), hw1_8c=(h8, w8), hw0_4c=(h4, w4), hw1_4c=(h4, w4), hw0_f=tuple(ff.shape[2:]))
        out["hw1_f"] = out["hw0_f"]
        timer.lap("backbone")

        m8 = m4 = (None, None)
        if mask0 is not None and mask1 is not None:
            m8 = (mask0[:, :: H // h8, :: W // w8], mask1[:, :: H // h8, :: W // w8])
            m4 = (mask0[:, :: H // h4, :: W // w4], mask1[:, :: H // h4, :: W // w4])

        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            x8 = self.pos_encoding_8c(f8).flatten(2).transpose(1, 2)
            x80, x81 = self.part("coarse")(x8[:B], x8[B:], h8, w8)
            timer.lap("coarse_attention")
            s8 = self.coarse_matching_8c(
                x80,
                x81,
                (h8, w8),
                (h8, w8),
                m8[0].flatten(1) if m8[0] is not None else None,
                m8[1].flatten(1) if m8[1] is not None else None,
                H / h8,
                scale0,
                scale1,
                matches=bool(data.get("coarse_matches", True)),
            )
        out["stage_8c"] = s8
        timer.lap("coarse_matching")

        x8map = torch.cat([x80, x81], 0).transpose(1, 2).reshape(2 * B, -1, h8, w8)
        x4 = self.pos_encoding_4c(self.part("up")(x8map, f4)).flatten(2).transpose(1, 2)
        x40, x41, cand01, cand10 = self.part("cascade")(x4[:B], x4[B:], h4, w4, s8["next_idx_c01"], s8["next_idx_c10"])
        timer.lap("cascade_attention")
        per_pixel = CascadeFeatureTransformer.per_pixel
        s4 = self.cascade_matching_4c(
            x40,
            x41,
            per_pixel(cand01, h4, w4),
            per_pixel(cand10, h4, w4),
            (h4, w4),
            s8["next_conf_c01"],
            m4[0],
            m4[1],
            H / h4,
            scale0,
            scale1,
            parents01=cand01,
            parents10=cand10,
        )
        out["stage_4c"] = s4
        timer.lap("cascade_matching")

        cap = data.get("max_matches")
        if cap and s4["mconf"].shape[0] > cap:  # refine only the most confident matches (inference option)
            top = torch.topk(s4["mconf"], int(cap), sorted=False).indices.sort().values
            for key in PER_MATCH_KEYS:
                if key in s4:
                    s4[key] = s4[key][top]
        b = s4["b_ids"]
        if data.get("fine_refine", True):
            fine = self.refine(ff, x40, x41, s4, w4, H / ff.shape[2], scale1 if scale0 is not None else None)
        else:  # inference option: the 1/4 matches unrefined
            fine = {"mkpts0_f": s4["mkpts0_c"], "mkpts1_f": s4["mkpts1_c"]}
        timer.lap("refinement")
        out.update(fine)
        out["mconf"] = s4["mconf"]
        out["m_bids"] = b
        out["timings"] = timer.times
        return out

    def refine(self, ff: torch.Tensor, x40: torch.Tensor, x41: torch.Tensor, s4: dict[str, Any], w4: int,
               scale: float, scale1: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The 1/2 refinement of the 1/4 matches ``s4``: ``mkpts0_f``, ``mkpts1_f``, ``expec_f``.

        Matches are refined independently: without gradients, in chunks (the same results, and the 1/2 windows of
        all matches are never held at once: peak RSS of a 640x480 lite pair ~1.0 -> ~0.7 GB).
        """
        B = ff.shape[0] // 2
        b = s4["b_ids"]
        M = b.numel()
        step = FINE_CHUNK if not torch.is_grad_enabled() and M > FINE_CHUNK else max(M, 1)
        chunks = []
        for s in range(0, max(M, 1), step):
            sl = slice(s, s + step)
            w0, w1 = self.part("fine_preprocess")(
                ff[:B], ff[B:], x40, x41, b[sl], s4["i_ids"][sl], s4["j_ids"][sl], w4
            )
            w0, w1 = self.part("fine")(w0, w1)
            chunks.append(
                self.fine_matching(
                    w0, w1, s4["mkpts0_c"][sl], s4["mkpts1_c"][sl], scale,
                    scale1[b[sl]] if scale1 is not None else None,
                )
            )
        return chunks[0] if len(chunks) == 1 else {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}


MODELS: dict[str, type[nn.Module]] = {"casmtr": CasMTR}
