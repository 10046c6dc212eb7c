"""Shared evaluation helpers: option parsing and the matcher options the VO front ends add."""

from __future__ import annotations

import pytest

from casmtr_ros.evaluation.common import VO_MATCHER_DEFAULTS, parse_options, vo_matcher_options


def test_vo_matcher_options_only_where_declared_and_never_over_the_user():
    assert VO_MATCHER_DEFAULTS == {"klt_refine": True}
    assert vo_matcher_options(None) == {"klt_refine": True}  # the default matcher, casmtr-4c-lite
    assert vo_matcher_options("casmtr-4c-outdoor", {"resize": 480}) == {"klt_refine": True, "resize": 480}
    assert vo_matcher_options("casmtr-4c-lite", {"klt_refine": False}) == {"klt_refine": False}
    assert vo_matcher_options("sift") == {}  # OpenCV matchers have no such option
    assert vo_matcher_options("xfeat", {"top_k": 10}) == {"top_k": 10}  # benchmark peers are not registered


def test_parse_options():
    assert parse_options(["klt_refine=false", "resize=640", "max_matches=null"]) == {
        "klt_refine": False, "resize": 640, "max_matches": None}
    with pytest.raises(ValueError, match="key=value"):
        parse_options(["resize"])
