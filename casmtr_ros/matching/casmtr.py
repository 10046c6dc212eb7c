"""CasMTR matchers: every entry of ``casmtr_ros.model.VARIANTS`` registered under its name.

``CasMTRMatcher.match(image0, image1)`` takes numpy or torch images (``HxW`` grey, ``HxWx3`` RGB, or torch
``3xHxW``; uint8, or float in [0, 1]; any size) and returns :class:`~casmtr_ros.types.Matches` in each image's
original pixel coordinates, with per-stage timings (seconds) in ``Matches.timings``.

Resize policy: each image is resized (bilinear) so that its longer side is ``resize`` (``None`` keeps the size),
then each side is rounded to a multiple of 32 (the aspect ratio changes by at most half a 32-pixel step; x and
y are mapped back with their own scale). When the two network sizes differ, both are zero-padded bottom/right
to a common size and padding masks are passed to the model.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from casmtr_ros.matching.base import Matcher, check_image, register_matcher, to_gray_uint8
from casmtr_ros.matching.klt import KltConfig, polish_guided
from casmtr_ros.matching.zoom import check_factor, zoom_search
from casmtr_ros.model import available_variants, build_model, load_weights, variant_config
from casmtr_ros.types import InputError, Matches

MIN_SIDE = 64  # the 1/8 map needs >= 5 cells per side for the 5x5 candidate windows


def _to_numpy_image(image: Any, what: str) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() == 3 and t.shape[0] in (1, 3) and t.shape[-1] not in (1, 3):
            t = t.permute(1, 2, 0)
        image = t.numpy()
    image = check_image(image, what)
    if image.dtype != np.uint8:
        if image.size and (image.min() < 0.0 or image.max() > 1.0):
            raise InputError(f"{what}: float images must be in [0, 1], got [{image.min():.3g}, {image.max():.3g}]")
        image = image.astype(np.float32)
    return image


def _variant_switch(conf: dict[str, Any], cfg: dict[str, Any], key: str) -> bool:
    """The on/off option ``key``: ``conf[key]`` when set, else the variant's default (off when it has none)."""
    value = conf[key] if conf[key] is not None else cfg.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true, false or None (the variant's default), got {value!r}")
    return value


def network_size(h: int, w: int, resize: int | None, multiple: int = 32,
                 max_pixels: int | None = None) -> tuple[int, int]:
    """``(h, w)`` of the network input for an ``h x w`` image under the resize policy: the longer side scaled to
    ``resize`` and/or the pixel count to ``max_pixels`` (the smaller scale of the two; neither = original size),
    then each side rounded to a multiple of ``multiple``."""
    scales = ([resize / max(h, w)] if resize is not None else []) + (
        [(max_pixels / (h * w)) ** 0.5] if max_pixels is not None else [])
    s = min(scales, default=1.0)
    hn = max(MIN_SIDE, round(h * s / multiple) * multiple)
    wn = max(MIN_SIDE, round(w * s / multiple) * multiple)
    if max_pixels is not None and hn * wn > max_pixels:  # rounding up broke the budget: round a side down instead
        hf = max(MIN_SIDE, int(h * s // multiple) * multiple)
        wf = max(MIN_SIDE, int(w * s // multiple) * multiple)
        fits = [(a, b) for a, b in ((hf, wn), (hn, wf), (hf, wf)) if a * b <= max_pixels] or [(hf, wf)]
        hn, wn = min(fits, key=lambda hw: (abs(math.log(hw[1] / hw[0] * h / w)), -hw[0] * hw[1]))
    return hn, wn


def scale_points(pts: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Map ``(x, y)`` points between two resolutions of one image (pixel centres at integers, as cv2.resize)."""
    s = np.array([dst_hw[1] / src_hw[1], dst_hw[0] / src_hw[0]], dtype=np.float32)
    return ((pts + 0.5) * s - 0.5).astype(np.float32)


def prepare(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a checked image to ``size (h, w)`` and return ``[3, h, w]`` float32 RGB in [0, 1]."""
    img = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    if img.shape[:2] != size:
        img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


class CasMTRMatcher(Matcher):
    """CasMTR-4c matcher (any registered variant). Options (``default_conf``):

    - ``variant``: a name in ``casmtr_ros.model.VARIANTS``;
    - ``weights``: checkpoint path, shipped weight name or state dict; ``None`` uses the variant's
      ``default_weights`` (the shipped file); without those every variant refuses to start unless
      ``random_init`` is True (untrained weights: tests and training only), so a user never matches with garbage;
    - ``device``: 'cpu', 'cuda', 'cuda:N' or 'auto';
    - ``resize``: longer side of the network input (``None`` = original size); sides rounded to multiples of 32;
    - ``max_pixels``: pixel budget of the network input: scale so that ``h * w`` is at most this (before the
      rounding); with ``resize`` the smaller of the two scales wins. ``None`` = the variant's budget (172800, the
      pixels of a 480x360 frame, for ``casmtr-4c-lite``: a 640x480 frame is matched at 480x352; none for the
      official variants), 0 = no budget. ``resize=None, max_pixels=307200`` gives every camera the pixels of a
      640x480 frame: a wide one (KITTI 1226x370 -> 992x288) keeps more rows than a longer-side cap would leave it;
    - ``nms_kernel`` (0 = off), ``test_thr``, ``pre_thr``, ``coarse_thr``: model thresholds (``None`` = the
      variant's); ``match_thr``: final filter on the returned confidences (strict ``>``);
    - ``max_matches``: refine and return at most this many matches, the most confident ones (``None`` = all);
    - ``fine_refine``: run the 1/2 sub-pixel refinement stage; ``None`` = automatic: on, except when the polish
      below runs and the variant declares that it replaces the stage (``klt_replaces_fine``: ``casmtr-4c-lite``,
      whose own 1/2 refinement is less accurate than the polish). Off without the polish returns the 1/4 matches;
    - ``klt_refine``: polish every match with homography-guided Lucas-Kanade on the original images and keep
      only those that pass its forward-backward check within ``klt_fb_px`` pixels (:mod:`casmtr_ros.matching.klt`);
      ``None`` = the variant's default (on for ``casmtr-4c-lite``, off for the official variants);
    - ``klt_affine``: with the polish, refine each tracked match with an affine, gain and bias fit of its window
      in the original image 1 and keep it when the fit correlates (:func:`~casmtr_ros.matching.klt.refine_affine`);
      ``None`` = the variant's default (on for ``casmtr-4c-lite``);
    - ``zoom_below``: zoom search (:mod:`casmtr_ros.matching.zoom`) when the first pass returns fewer than this many
      matches per 1/8 cell of the network input (the smaller of the two images'): each image in turn is cropped to
      ``zoom_factor`` of its sides around its matches and matched again at the network's input size, and the
      pass with the most matches wins; a crop with enough matches not to trigger the search ends it (image 0's
      crop is tried first). For strong scale change (forward driving); costs one or two extra passes on the
      pairs it fires on. ``None`` = the variant's default (0.1 for ``casmtr-4c-lite``, off for the official
      variants), 0 = off;
    - ``zoom_factor``: side fraction of the zoom crops, in (0, 1);
    - ``zoom_merge``: when a crop wins the zoom search, return its matches together with the first pass's (the
      crop covers the middle of the view, the first pass the rest); ``None`` = the variant's default (on for
      ``casmtr-4c-lite``);
    - ``mixed_precision``: ``None``, 'fp16' (CUDA, like the official test) or 'bf16';
    - ``quirks``: ``None`` (variant default), 'official' (reproduce the official outputs) or 'corrected'
      (Twins window masks always applied, symmetric target border, no forced dummy match, coordinates at the
      centre of the matched fine pixel);
    - ``return_confidence_map``: also return the dense 1/4 confidence map of image 0 (network grid, valid part);
    - ``profile``: synchronise the GPU between the model's stages so that ``Matches.timings`` splits a CUDA match
      exactly (the syncs cost a little time; no effect on CPU).
    """

    name = "casmtr"
    default_conf: ClassVar[dict[str, Any]] = {
        "variant": "casmtr-4c-outdoor",
        "weights": None,
        "random_init": False,
        "device": "auto",
        "resize": 640,
        "max_pixels": None,
        "nms_kernel": None,
        "test_thr": None,
        "pre_thr": None,
        "coarse_thr": None,
        "match_thr": 0.0,
        "max_matches": None,
        "klt_refine": None,
        "fine_refine": None,
        "klt_fb_px": 1.0,
        "klt_affine": None,
        "zoom_below": None,
        "zoom_factor": 0.5,
        "zoom_merge": None,
        "mixed_precision": None,
        "quirks": None,
        "return_confidence_map": False,
        "profile": False,
    }

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        c = self.conf
        self.name = c["variant"]
        if c["mixed_precision"] not in (None, "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be None, 'fp16' or 'bf16', got {c['mixed_precision']!r}")
        if c["resize"] is not None and int(c["resize"]) < MIN_SIDE:
            raise ValueError(f"resize must be >= {MIN_SIDE} or None, got {c['resize']}")
        mp = c["max_pixels"]
        if mp is not None and (isinstance(mp, bool) or not isinstance(mp, int) or (mp != 0 and mp < MIN_SIDE**2)):
            raise ValueError(f"max_pixels must be 0 (no budget), >= {MIN_SIDE**2} or None (the variant's), got {mp!r}")
        self.device = self._device(c["device"])
        overrides: dict[str, Any] = {"match_cascade": {}, "match_coarse": {}}
        for key, section, field in (
            ("nms_kernel", "match_cascade", "nms_kernel"),
            ("test_thr", "match_cascade", "test_thr"),
            ("pre_thr", "match_cascade", "pre_thr"),
            ("coarse_thr", "match_coarse", "thr"),
        ):
            if c[key] is not None:
                overrides[section][field] = c[key]
        if c["quirks"] is not None:
            overrides["quirks"] = c["quirks"]
        cfg = variant_config(c["variant"], overrides)
        self.fine_window = int(cfg["fine"]["window"])
        use_klt = _variant_switch(c, cfg, "klt_refine")
        affine = _variant_switch(c, cfg, "klt_affine")
        self.klt = KltConfig(fb_px=float(c["klt_fb_px"]), affine=affine) if use_klt else None
        if c["fine_refine"] is not None and not isinstance(c["fine_refine"], bool):
            raise ValueError(f"fine_refine must be true, false or None (automatic), got {c['fine_refine']!r}")
        # automatic: the 1/2 refinement runs unless the polish replaces it for these weights (klt_replaces_fine)
        self.fine_refine = (c["fine_refine"] if c["fine_refine"] is not None
                            else not (use_klt and bool(cfg.get("klt_replaces_fine", False))))
        zoom = c["zoom_below"] if c["zoom_below"] is not None else cfg.get("zoom_below", 0.0)
        if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not zoom >= 0:
            raise ValueError(f"zoom_below must be a number >= 0 or None (the variant's default), got {zoom!r}")
        self.zoom_below = float(zoom)
        self.zoom_factor = check_factor(c["zoom_factor"])
        self.zoom_merge = _variant_switch(c, cfg, "zoom_merge")
        budget = int(mp if mp is not None else cfg.get("max_pixels", 0))
        self.max_pixels: int | None = budget or None  # the pixel budget in force (None = none)
        self.quirks = cfg["quirks"]
        self.model = build_model(cfg)
        weights = c["weights"] if c["weights"] is not None else cfg.get("default_weights")
        if weights is not None:
            load_weights(self.model, weights, variant=c["variant"])
        elif not c["random_init"]:
            raise ValueError(
                f"{c['variant']}: no weights given and none shipped for this variant. Pass weights=<path to "
                "pl_checkpoint.ckpt or a state dict, or a shipped weight name>; untrained weights only with "
                "random_init=True."
            )
        self.model.to(self.device).eval()

    @staticmethod
    def _device(name: str) -> torch.device:
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        return dev

    @property
    def compute_path(self) -> str:
        from casmtr_ros.ops import backend

        return f"{self.device.type}/{backend.backend_name(self.device.type)}"

    def _autocast(self) -> Any:
        mp = self.conf["mixed_precision"]
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mp)
        return torch.autocast(self.device.type, dtype=dtype, enabled=mp is not None)

    def network_sizes(self, *shapes: tuple[int, ...]) -> list[tuple[int, int]]:
        """The network input ``(h, w)`` of images of these shapes under this matcher's resize policy."""
        return [network_size(s[0], s[1], self.conf["resize"], max_pixels=self.max_pixels) for s in shapes]

    @torch.inference_mode()
    def match(self, image0: Any, image1: Any) -> Matches:
        im0 = _to_numpy_image(image0, "image0")
        im1 = _to_numpy_image(image1, "image1")
        net = self.network_sizes(im0.shape, im1.shape)
        first = self._match_checked(im0, im1, net)
        trigger = self.zoom_below * min(h * w for h, w in net) / 64.0
        if self.zoom_below > 0 and len(first) < trigger:
            # each crop keeps its image's aspect and goes in at that image's network size, i.e. magnified; a crop
            # with as many matches as would not have triggered the search ends it
            return zoom_search(lambda a, b: self._match_checked(a, b, net), im0, im1, first, self.zoom_factor,
                               min_side=MIN_SIDE, enough=math.ceil(trigger), merge=self.zoom_merge).matches
        return first

    def _match_checked(self, im0: np.ndarray, im1: np.ndarray, net: list[tuple[int, int]]) -> Matches:
        """One pass of the model (and the polish) on two checked images resized to the network sizes ``net``."""
        t0 = time.perf_counter()
        sizes = [im.shape[:2] for im in (im0, im1)]
        Hc, Wc = max(n[0] for n in net), max(n[1] for n in net)
        batch = torch.zeros(2, 3, Hc, Wc)
        masks = torch.zeros(2, Hc, Wc, dtype=torch.bool)
        for k, (im, (hn, wn)) in enumerate(zip((im0, im1), net, strict=True)):
            batch[k, :, :hn, :wn] = torch.from_numpy(prepare(im, (hn, wn)))
            masks[k, :hn, :wn] = True
        batch = batch.to(self.device)
        data: dict[str, Any] = {"image0": batch[:1], "image1": batch[1:], "coarse_matches": False,
                                "max_matches": self.conf["max_matches"], "fine_refine": self.fine_refine,
                                "profile": bool(self.conf["profile"])}
        if net[0] != net[1] or net[0] != (Hc, Wc):
            data["mask0"], data["mask1"] = masks[:1].to(self.device), masks[1:].to(self.device)
        t_pre = time.perf_counter() - t0
        with self._autocast():
            out = self.model(data)
        t1 = time.perf_counter()
        k0 = out["mkpts0_f"].float().cpu().numpy()
        k1 = out["mkpts1_f"].float().cpu().numpy()
        conf = out["mconf"].float().cpu().numpy()
        keep = conf > self.conf["match_thr"]
        k0, k1, conf = k0[keep], k1[keep], conf[keep]
        k0 = self._to_original(k0, net[0], sizes[0])
        k1 = self._to_original(k1, net[1], sizes[1])
        t_klt = time.perf_counter()
        if self.klt is not None:
            # a polished point may move at most the fine window's radius (1/2 resolution), in original pixels
            scale = max(sizes[1][0] / net[1][0], sizes[1][1] / net[1][1])
            radius = (self.fine_window // 2) * 2.0 * scale
            cfg = replace(self.klt, max_shift_px=radius, homography_px=2 * radius)
            k1, ok = polish_guided(to_gray_uint8(im0), to_gray_uint8(im1), k0, k1, cfg)
            k0, k1, conf = k0[ok], k1[ok], conf[ok]
        t_klt = time.perf_counter() - t_klt
        cmap = None
        if self.conf["return_confidence_map"]:
            h4, w4 = out["hw0_4c"]
            full = out["stage_4c"]["next_conf_c01"][0].float().reshape(h4, w4).cpu().numpy()
            cmap = np.ascontiguousarray(full[: net[0][0] // 4, : net[0][1] // 4])
        timings = {"preprocess": t_pre, **out["timings"], "postprocess": time.perf_counter() - t1 - t_klt}
        if self.klt is not None:
            timings["klt_refine"] = t_klt
        return Matches(k0, k1, conf, cmap, timings)

    def _to_original(self, pts: np.ndarray, net_hw: tuple[int, int], orig_hw: tuple[int, int]) -> np.ndarray:
        if self.quirks == "official":  # the official convention: network points times (orig / net)
            return pts * np.array([orig_hw[1] / net_hw[1], orig_hw[0] / net_hw[0]], dtype=np.float32)
        # the model's points are the top-left pixel of the matched 1/2 pixel; use that 1/2 pixel's centre
        return scale_points(pts + 0.5, net_hw, orig_hw)


def _factory(variant: str) -> Any:
    def make(conf: dict[str, Any] | None = None, **kwargs: Any) -> CasMTRMatcher:
        return CasMTRMatcher({**(conf or {}), **kwargs, "variant": variant})

    make.__doc__ = f"Build the {variant!r} CasMTR matcher."
    return make


for _variant in available_variants():
    register_matcher(_variant)(_factory(_variant))
