"""The parameter table: YAML file in sync, descriptors with descriptions and ranges, rclpy enforcement."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from casmtr_ros.ros.matcher_factory import check_matcher_params, make_matcher, matcher_conf
from casmtr_ros.ros.params import (
    all_params,
    declare_all,
    descriptor,
    render_markdown,
    render_yaml,
    spec_by_name,
    undocumented_vo_fields,
    vo_config_from,
    yaml_defaults,
)
from casmtr_ros.vo.config import VOConfig

REPO = Path(__file__).resolve().parents[2]


def test_yaml_file_lists_every_parameter_with_its_default() -> None:
    text = (REPO / "config" / "casmtr_vo.yaml").read_text()
    assert yaml.safe_load(text) == yaml_defaults()
    assert yaml.safe_load(render_yaml()) == yaml_defaults()
    # no YAML key appears twice under one parent (safe_load would silently keep the last one)
    flat = yaml.safe_load(text)["casmtr_vo_node"]["ros__parameters"]

    def count(d: dict) -> int:
        return sum(count(v) if isinstance(v, dict) else 1 for v in d.values())

    assert count(flat) == len(all_params())


def test_every_vo_field_is_a_documented_parameter() -> None:
    assert undocumented_vo_fields() == []
    names = {s.name for s in all_params()}
    assert {f"vo.{f.name}" for f in dataclasses.fields(VOConfig)} <= names
    assert vo_config_from({s.name: s.default for s in all_params()}) == VOConfig()


def test_specs_are_well_formed() -> None:
    specs = all_params()
    assert len({s.name for s in specs}) == len(specs)
    for s in specs:
        assert s.description and s.check(s.default) is None, s.name
        if s.low is not None:
            assert s.low <= s.default <= s.high, s.name
        d = descriptor(s)
        assert d.description == s.description and d.read_only == (s.apply == "startup")
        if isinstance(s.default, bool) or s.low is None:
            assert not d.integer_range and not d.floating_point_range
        elif isinstance(s.default, int):
            assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (s.low, s.high)
        else:
            assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (s.low, s.high)
    spec = spec_by_name()["vo.estimator"]
    assert "must be one of" in spec.check("foo") and "must be str" in spec.check(3)
    assert "must be <=" in spec_by_name()["sync.slop"].check(11.0)


def test_rclpy_declares_and_enforces_the_table() -> None:
    import rclpy
    from rclpy.parameter import Parameter

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=75)
    try:
        node = rclpy.create_node("params_test", context=context,
                                 parameter_overrides=[Parameter("vo.kf_max_translation_m", value=0.25)])
        values = declare_all(node)
        assert values["vo.kf_max_translation_m"] == 0.25 and values["matcher.name"] == "casmtr-4c-lite"
        desc = node.describe_parameter("vo.ransac_threshold_px")
        assert desc.floating_point_range[0].to_value == 50.0 and "pixels" in desc.description
        bad = node.set_parameters([Parameter("vo.ransac_threshold_px", value=99.0)])[0]
        assert not bad.successful and "out of range" in bad.reason
        ro = node.set_parameters([Parameter("qos.depth", value=3)])[0]
        assert not ro.successful and "read-only" in ro.reason
        assert node.set_parameters([Parameter("publish.path", value=False)])[0].successful
        node.destroy_node()
        bad_node = rclpy.create_node("params_test_bad", context=context,
                                     parameter_overrides=[Parameter("vo.estimator", value="lmeds")])
        with pytest.raises(ValueError, match=r"vo\.estimator must be one of"):
            declare_all(bad_node)
        bad_node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_matcher_parameters_map_onto_matcher_options() -> None:
    defaults = {s.name: s.default for s in all_params()}
    assert defaults["matcher.name"] == "casmtr-4c-lite"  # the node's default: the shipped CasMTR weights
    default_conf, default_na = matcher_conf(defaults)
    assert default_conf["resize"] == 640 and "max_pixels" not in default_conf
    assert default_na == ["matcher.max_keypoints"]
    values = {**defaults, "matcher.name": "sift"}
    conf, not_applicable = matcher_conf(values)
    assert conf == {"max_keypoints": 4000}
    assert "matcher.nms_kernel" in not_applicable and "matcher.max_keypoints" not in not_applicable
    assert "matcher.max_matches" in not_applicable and "matcher.klt_refine" in not_applicable
    assert "matcher.fine_refine" in not_applicable and "matcher.resize_max_pixels" in not_applicable
    assert "matcher.zoom_below" in not_applicable and "matcher.zoom_merge" in not_applicable
    assert "matcher.klt_affine" in not_applicable
    lite_conf, _ = matcher_conf({**values, "matcher.name": "casmtr-4c-lite"})
    assert lite_conf["fine_refine"] is None and lite_conf["klt_refine"] is True
    for text, value in (("on", True), ("off", False)):
        for param in ("fine_refine", "klt_affine", "zoom_merge"):
            assert matcher_conf({**values, "matcher.name": "casmtr-4c-lite", f"matcher.{param}": text})[0][
                param] is value
    assert make_matcher({**values, "matcher.name": "casmtr-4c-lite"})[0].zoom_merge is True  # auto: the variant's
    lite_off = {**values, "matcher.name": "casmtr-4c-lite", "matcher.zoom_merge": "off"}
    assert make_matcher(lite_off)[0].zoom_merge is False
    assert make_matcher({**values, "matcher.name": "casmtr-4c-lite"})[0].klt.affine is True  # auto: the variant's
    affine_off = {**values, "matcher.name": "casmtr-4c-lite", "matcher.klt_affine": "off"}
    assert make_matcher(affine_off)[0].klt.affine is False
    matcher, _ = make_matcher({**values, "matcher.max_keypoints": 500})
    assert matcher.name == "sift" and matcher.conf["max_keypoints"] == 500
    assert "unknown matcher" in check_matcher_params({**values, "matcher.name": "nope"})
    assert "file not found" in check_matcher_params({**values, "matcher.weights": "/nonexistent/w.ckpt"})
    assert "cuda:N" in check_matcher_params({**values, "matcher.device": "gpu0"})
    with pytest.raises(ValueError, match="unknown matcher"):
        make_matcher({**values, "matcher.name": "nope"})
    casmtr = {**values, "matcher.name": "casmtr-4c-outdoor", "matcher.device": "cpu", "matcher.resize_max_side": 0,
              "matcher.nms_kernel": 0, "matcher.confidence_threshold": 0.3}
    conf, not_applicable = matcher_conf(casmtr)
    assert conf == {"device": "cpu", "resize": None, "nms_kernel": 0, "match_thr": 0.3,
                    "max_matches": None, "klt_refine": True, "klt_affine": None, "klt_fb_px": 1.0,
                    "fine_refine": None, "zoom_merge": None}
    assert matcher_conf({**casmtr, "matcher.resize_max_pixels": 307200})[0]["max_pixels"] == 307200
    assert matcher_conf({**casmtr, "matcher.resize_max_pixels": 0})[0]["max_pixels"] == 0  # no budget
    lite = {**casmtr, "matcher.name": "casmtr-4c-lite", "matcher.resize_max_side": 640}
    assert make_matcher(lite)[0].network_sizes((480, 640)) == [(352, 480)]  # -1: the lite budget, 480x360
    assert make_matcher({**lite, "matcher.resize_max_pixels": 0})[0].network_sizes((480, 640)) == [(480, 640)]
    assert not_applicable == ["matcher.max_keypoints"]
    assert matcher_conf({**casmtr, "matcher.max_matches": 500})[0]["max_matches"] == 500
    assert "nms_kernel" not in matcher_conf({**casmtr, "matcher.nms_kernel": -1})[0]  # the variant's own value
    assert matcher_conf({**casmtr, "matcher.klt_refine": False, "matcher.klt_fb_px": 0})[0]["klt_fb_px"] == 0.0
    assert "zoom_below" not in conf  # -1: the variant's own value
    assert matcher_conf({**casmtr, "matcher.zoom_below": 0.0})[0]["zoom_below"] == 0.0
    assert make_matcher({**casmtr, "matcher.name": "casmtr-4c-lite", "matcher.zoom_below": 0.25})[0].zoom_below == 0.25


def test_readme_ros_section_documents_every_parameter_topic_and_service() -> None:
    from casmtr_ros.ros.messages import MATCH_FIELDS
    from casmtr_ros.ros.node import PUBLISHED, SERVICES, SUBSCRIBED

    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- section:ros -->")
    section = readme[start:readme.index("<!-- section:", start + 10)]
    for spec in all_params():
        assert f"| `{spec.name}` |" in section, spec.name
    assert render_markdown() in section  # regenerate with `python -m casmtr_ros.ros.params --markdown`
    for name in (*SUBSCRIBED, *PUBLISHED, *SERVICES, *MATCH_FIELDS):
        assert f"`{name}`" in section, name


def test_torch_threads_parameter_limits_pytorch_threads() -> None:
    import torch

    from casmtr_ros.ros.params import NODE_PARAMS

    values = {p.name: p.default for p in NODE_PARAMS}
    before = torch.get_num_threads()
    try:
        make_matcher({**values, "matcher.name": "orb", "matcher.torch_threads": 1})
        assert torch.get_num_threads() == 1
        torch.set_num_threads(before)
        make_matcher({**values, "matcher.name": "orb", "matcher.torch_threads": 0})  # 0 leaves it alone
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_node_package_makes_openmp_workers_sleep() -> None:
    """Importing casmtr_ros.ros sets OMP_WAIT_POLICY=PASSIVE unless the user chose a policy (checked in a fresh
    interpreter, where it runs before torch is imported)."""
    import os
    import subprocess
    import sys

    code = "import os, casmtr_ros.ros, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
