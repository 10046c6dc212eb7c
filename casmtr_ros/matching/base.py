"""One small interface for every matcher, and a registry of matchers by name.

A matcher takes two numpy images (grey ``HxW`` or RGB ``HxWx3``, uint8 or float in [0, 1], any size) and
returns :class:`~casmtr_ros.types.Matches` in each image's original pixel coordinates.

Register a matcher with :func:`register_matcher`; build one with :func:`build_matcher`.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from casmtr_ros.types import InputError, Matches


class Matcher(ABC):
    """Base class: ``default_conf`` is merged with the user's ``conf`` into ``self.conf``."""

    name: str = "matcher"
    default_conf: ClassVar[dict[str, Any]] = {}

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        unknown = set(conf or {}) - set(self.default_conf)
        if unknown:
            raise ValueError(f"{self.name}: unknown option(s) {sorted(unknown)}; known: {sorted(self.default_conf)}")
        self.conf = {**copy.deepcopy(self.default_conf), **(conf or {})}

    @abstractmethod
    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        """Match two images; see the module docstring for the input and output conventions."""

    @property
    def compute_path(self) -> str:
        """A short description of where the matcher runs (for diagnostics), e.g. ``cpu/torch``."""
        return "cpu"


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate a matcher input image and return it; raise ``InputError`` with a clear message otherwise."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what}: expected a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(f"{what}: expected HxW or HxWx3 array, got shape {image.shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise InputError(f"{what}: image too small ({image.shape[1]}x{image.shape[0]})")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise InputError(f"{what}: expected uint8 or float image, got {image.dtype}")
        if not np.all(np.isfinite(image)):
            raise InputError(f"{what}: image contains NaN or inf")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    return image


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Grey uint8 version of a checked image (RGB weights 0.299/0.587/0.114)."""
    image = check_image(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    if image.ndim == 3:
        image = np.round(image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114).astype(np.uint8)
    return np.ascontiguousarray(image)


_REGISTRY: dict[str, Callable[..., Matcher]] = {}


def register_matcher(name: str) -> Callable[[Callable[..., Matcher]], Callable[..., Matcher]]:
    """Decorator registering a matcher class or factory under ``name``."""

    def deco(factory: Callable[..., Matcher]) -> Callable[..., Matcher]:
        if name in _REGISTRY:
            raise ValueError(f"matcher {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtin_matchers() -> None:
    # Importing the modules runs their @register_matcher decorators.
    import importlib
    import pkgutil

    import casmtr_ros.matching as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "base":
            importlib.import_module(f"casmtr_ros.matching.{info.name}")


def available_matchers() -> list[str]:
    """Names accepted by :func:`build_matcher`."""
    _load_builtin_matchers()
    return sorted(_REGISTRY)


def declared_options(name: str) -> dict[str, Any]:
    """The options a registered matcher declares: its class's ``default_conf``, or, for a factory function, that
    of the class its return annotation names (empty when neither says)."""
    import typing

    _load_builtin_matchers()
    if name not in _REGISTRY:
        raise ValueError(f"unknown matcher {name!r}; available: {sorted(_REGISTRY)}")
    factory = _REGISTRY[name]
    conf = getattr(factory, "default_conf", None)
    if conf is None:
        try:
            conf = getattr(typing.get_type_hints(factory).get("return"), "default_conf", None)
        except Exception:  # unresolvable annotation: treat as declaring nothing
            conf = None
    return dict(conf or {})


def build_matcher(name: str, **kwargs: Any) -> Matcher:
    """Build a registered matcher by name; keyword arguments go to its constructor."""
    _load_builtin_matchers()
    if name not in _REGISTRY:
        raise ValueError(f"unknown matcher {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)
