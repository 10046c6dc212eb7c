"""CasMTR-4c as ``nn.Module``s with the official parameter names; variants as data; checkpoint loading."""

from __future__ import annotations

from typing import Any

from torch import nn

from casmtr_ros.model.casmtr import BACKBONES, MODELS, OUTDOOR_4C, CasMTR, merge_config
from casmtr_ros.model.variants import VARIANTS


def available_variants() -> list[str]:
    """Names accepted by :func:`build_model` (modules of ``casmtr_ros.model`` may add variants on import)."""
    _discover_variants()
    return sorted(VARIANTS)


def _discover_variants() -> None:
    import importlib
    import pkgutil

    import casmtr_ros.model as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"casmtr_ros.model.{info.name}")


def variant_config(variant: str | dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Full config of a named variant (or of a config dict) with ``overrides`` merged in."""
    if isinstance(variant, str):
        if variant not in VARIANTS:
            _discover_variants()
        if variant not in VARIANTS:
            raise ValueError(f"unknown CasMTR variant {variant!r}; known: {sorted(VARIANTS)}")
        variant = VARIANTS[variant]
    return merge_config(merge_config(OUTDOOR_4C, variant), overrides)


def build_model(
    variant: str | dict[str, Any] = "casmtr-4c-outdoor", overrides: dict[str, Any] | None = None
) -> nn.Module:
    """Build a (randomly initialised, eval-mode) model of a named variant or config dict."""
    cfg = variant_config(variant, overrides)
    if cfg["model"] not in MODELS:
        raise ValueError(f"unknown model class {cfg['model']!r}; known: {sorted(MODELS)}")
    return MODELS[cfg["model"]](cfg).eval()


def load_weights(model: nn.Module, source: Any, variant: str | None = None) -> nn.Module:
    """Load a checkpoint (path, shipped name or state dict) strictly; see :mod:`casmtr_ros.model.checkpoint`."""
    from casmtr_ros.model.checkpoint import load_checkpoint

    return load_checkpoint(model, source, variant=variant)


__all__ = [
    "BACKBONES",
    "MODELS",
    "OUTDOOR_4C",
    "VARIANTS",
    "CasMTR",
    "available_variants",
    "build_model",
    "load_weights",
    "variant_config",
]
