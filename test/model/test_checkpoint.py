"""Strict checkpoint loading in both official formats, and clear errors for bad checkpoints."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import fake_ckpt
import pytest
import torch

from casmtr_ros.model import available_variants, build_model, load_weights
from casmtr_ros.model.checkpoint import CheckpointError, read_checkpoint, resolve_weights, shipped_weights


@pytest.fixture(scope="module")
def model():
    return build_model("casmtr-4c-outdoor")


def test_fake_checkpoint_matches_parity_recipe(reference_dir, fake_outdoor_sd):
    readme = (reference_dir / "parity" / "README.md").read_text()
    expected = re.search(r"outdoor `([0-9a-f]{64})`", readme).group(1)
    assert fake_ckpt.content_sha256(fake_ckpt.lightning_checkpoint(fake_outdoor_sd)["state_dict"]) == expected


@pytest.mark.parametrize("fmt", ["lightning", "plain"])
def test_strict_load_both_formats(tmp_path, model, fake_outdoor_sd, fmt):
    obj = fake_ckpt.lightning_checkpoint(fake_outdoor_sd) if fmt == "lightning" else fake_outdoor_sd
    path = tmp_path / "w.ckpt"
    torch.save(obj, path)
    load_weights(model, path)
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in fake_outdoor_sd.items())


def test_lightning_file_with_pickled_hyperparameters(tmp_path, model, fake_outdoor_sd):
    # a non-tensor object that torch's weights_only loader refuses (like the yacs config nodes Lightning stores)
    obj = fake_ckpt.lightning_checkpoint(fake_outdoor_sd)
    obj["hyper_parameters"] = {"config": argparse.Namespace(lr=1e-3, layers=["self", "cross"])}
    path = tmp_path / "pl_checkpoint.ckpt"
    torch.save(obj, path)
    sd = read_checkpoint(path)
    assert set(sd) == set(fake_outdoor_sd)


def test_official_corrupt_recipe_lists_missing_and_misshaped(tmp_path, reference_dir, outdoor_manifest, model):
    out = tmp_path / "corrupt.ckpt"
    script = reference_dir / "parity" / "make_fake_official_ckpt.py"
    subprocess.run([sys.executable, str(script), str(outdoor_manifest), str(out), "--corrupt"], check=True,
                   capture_output=True)
    with pytest.raises(CheckpointError) as err:
        load_weights(model, out, variant="casmtr-4c-outdoor")
    msg = str(err.value)
    assert "missing keys (1)" in msg and "mis-shaped keys (1)" in msg
    assert "checkpoint [129, 128], model [128, 128]" in msg


def test_unexpected_key_listed(model, fake_outdoor_sd):
    sd = dict(fake_outdoor_sd, **{"extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): extra.weight"):
        load_weights(model, sd)


def test_wrong_architecture(reference_dir, model):
    indoor = fake_ckpt.fake_state_dict(reference_dir / "casmtr_4c_indoor_state_dict.tsv")
    named = "casmtr-4c-indoor" in available_variants()  # then the error names the variant it belongs to
    with pytest.raises(CheckpointError, match="variant 'casmtr-4c-indoor'" if named else "wrong architecture"):
        load_weights(model, indoor, variant="casmtr-4c-outdoor")


def test_missing_and_corrupt_files(tmp_path, model, fake_outdoor_sd):
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(model, tmp_path / "nope.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00not a checkpoint" * 50)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_weights(model, bad)
    good = tmp_path / "good.ckpt"
    torch.save(fake_outdoor_sd, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_weights(model, truncated)
    with pytest.raises(CheckpointError, match="no state dict"):
        load_weights(model, {})


def test_shipped_weights_resolve_by_name():
    names = shipped_weights()
    if not names:
        pytest.skip("no weights shipped in casmtr_ros/weights/")
    for name in names:
        stem = name.rsplit(".", 1)[0]
        assert resolve_weights(stem).name == name
        assert resolve_weights(name).name == name
