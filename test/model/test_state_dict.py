"""The outdoor model's state dict reproduces the official names, shapes and dtypes (the TSV manifest)."""

from __future__ import annotations

import fake_ckpt
import torch

from casmtr_ros.model import build_model


def test_outdoor_state_dict_equals_manifest(outdoor_manifest):
    rows = fake_ckpt.read_manifest(outdoor_manifest)
    sd = build_model("casmtr-4c-outdoor").state_dict()
    expected = {name: (tuple(shape), dtype) for name, shape, dtype in rows}
    got = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()}
    assert sorted(set(expected) - set(got)) == []
    assert sorted(set(got) - set(expected)) == []
    assert {k: v for k, v in got.items() if expected[k] != v} == {}


def test_outdoor_parameter_count_and_window(outdoor_manifest):
    model = build_model("casmtr-4c-outdoor")
    n = sum(p.numel() for p in model.parameters())
    header = outdoor_manifest.read_text().splitlines()[3]  # "# 351 entries: 306 parameters (14,087,012 elements)..."
    assert f"({n:,} elements)" in header
    window = model.loftr_coarse_4c.window
    assert window.dtype == torch.int64 and not window.requires_grad
    assert window[0].tolist() == [-2, -2] and window[1].tolist() == [-2, -1] and window[12].tolist() == [0, 0]
