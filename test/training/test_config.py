"""Packaged training configs parse; bad configs fail with clear errors."""

from __future__ import annotations

from importlib import resources

import pytest

from casmtr_ros.training.config import config_from_dict, load_config


def test_packaged_configs_load() -> None:
    names = [p.name[:-5] for p in resources.files("casmtr_ros.configs").iterdir() if p.name.endswith(".yaml")]
    assert "train_lite_cpu" in names
    for name in names:
        cfg = load_config(name)
        assert cfg.total_steps > 0 and cfg.data
        assert cfg.stage_at(0)[0] == 0


def test_stage_lookup_and_errors() -> None:
    base = {"name": "x", "variant": "casmtr-4c-lite", "data": [{"kind": "homography"}],
            "stages": [{"name": "a", "steps": 3, "lr": 1.0, "parts": ["coarse"]},
                       {"name": "b", "steps": 2, "lr": 1.0}]}
    cfg = config_from_dict(base)
    assert [cfg.stage_at(s)[0] for s in (0, 2, 3, 4, 99)] == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="unknown keys"):
        config_from_dict({**base, "learning_rate": 1})
    with pytest.raises(ValueError, match="multiples of 32"):
        config_from_dict({**base, "image_size": [100, 128]})
    with pytest.raises(ValueError, match="'fine' needs 'cascade'"):
        config_from_dict({**base, "stages": [{"name": "a", "steps": 1, "lr": 1.0, "parts": ["coarse", "fine"]}]})
    with pytest.raises(FileNotFoundError):
        load_config("no_such_config")
