"""Matchers behind one interface: CasMTR variants and OpenCV baselines, selected by name."""

from casmtr_ros.matching.base import Matcher, available_matchers, build_matcher, register_matcher

__all__ = ["Matcher", "available_matchers", "build_matcher", "register_matcher"]
