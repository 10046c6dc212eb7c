"""Load CasMTR checkpoints strictly: official Lightning files, plain state dicts, or weights shipped by name.

Accepted inputs:
- an official Lightning checkpoint ``{"state_dict": {"matcher." + key: tensor}, ...}`` (the first ``matcher.``
  is stripped, as the official ``CasMTR.load_state_dict`` does);
- a plain state dict ``{key: tensor}`` (or ``{"state_dict": {key: tensor}}`` / ``{"model": {...}}``);
- a path to either, or the name of a file shipped in ``casmtr_ros/weights/`` (``name``, ``name.pt``,
  ``name.pth`` or ``name.ckpt``). Nothing is ever downloaded.

Errors (:class:`CheckpointError`) say what is wrong: missing file, unreadable/corrupt file, a checkpoint of
another variant, or the lists of missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import pickle
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

SHIPPED_SUFFIXES = ("", ".pt", ".pth", ".ckpt")
_MAX_LISTED = 12


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded into the requested model."""


def _weights_root() -> Any:
    try:
        return resources.files("casmtr_ros.weights")
    except ModuleNotFoundError:  # an install without the weights folder
        return None


def shipped_weights() -> list[str]:
    """Names of the weight files shipped in ``casmtr_ros/weights/``."""
    root = _weights_root()
    if root is None:
        return []
    return sorted(p.name for p in root.iterdir() if p.is_file() and p.name.endswith((".pt", ".pth", ".ckpt")))


def resolve_weights(source: str | Path) -> Path:
    """A local path, or a shipped weight file by name. Raises :class:`CheckpointError` when neither exists."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise CheckpointError(f"weights {str(source)!r} is not a file")
    root = _weights_root()
    for suffix in SHIPPED_SUFFIXES if root is not None else ():
        cand = root / f"{source}{suffix}"
        if cand.is_file():
            with resources.as_file(cand) as p:
                return Path(p)
    raise CheckpointError(
        f"weights {str(source)!r} not found: neither a file nor a shipped weight name "
        f"(shipped: {shipped_weights() or 'none'}). Official weights cannot be downloaded by this package; "
        "pass the path of pl_checkpoint.ckpt."
    )


class _Stub:
    """Stands in for any non-tensor object pickled in a checkpoint (hyper-parameters, config nodes...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _StubUnpickler(pickle.Unpickler):
    _ALLOWED = ("torch", "collections", "numpy", "builtins", "_codecs")

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in self._ALLOWED and not (module == "builtins" and name in ("eval", "exec")):
            return super().find_class(module, name)
        return _Stub


class _StubPickle:
    """A ``pickle_module`` for ``torch.load`` that never imports classes outside torch/numpy/builtins."""

    Unpickler = _StubUnpickler
    load = pickle.load
    __name__ = "casmtr_stub_pickle"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return the model state dict (``matcher.`` prefix stripped)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Lightning files may pickle hyper-parameters (e.g. yacs nodes): read them with stubs instead.
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_StubPickle)
        except Exception as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # truncated zip, random bytes, directory...
        raise CheckpointError(f"cannot read checkpoint {path} (corrupt or not a PyTorch file): {exc}") from exc
    return extract_state_dict(obj, str(path))


def extract_state_dict(obj: Any, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model state dict inside a loaded checkpoint object."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{what}: no state dict found (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{what}: entries that are not tensors: {bad[:_MAX_LISTED]}")
    if all(k.startswith("matcher.") for k in obj):
        obj = {k[len("matcher.") :]: v for k, v in obj.items()}
    return dict(obj)


def _listing(keys: list[str]) -> str:
    more = f" ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def _signature(sd: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def guess_variant(sd: dict[str, torch.Tensor]) -> str | None:
    """Name of the registered variant whose state-dict names and shapes equal ``sd``'s, if any."""
    from casmtr_ros.model import available_variants, build_model

    sig = _signature(sd)
    for name in available_variants():
        try:
            with torch.device("meta"):
                ref = build_model(name).state_dict()
        except Exception:  # a variant that cannot be built on the meta device is skipped
            continue
        if _signature(ref) == sig:
            return name
    return None


def compare_state_dict(model: nn.Module, sd: dict[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    """``(missing, unexpected, mis-shaped)`` keys of ``sd`` relative to ``model`` (mis-shaped with both shapes)."""
    ref = model.state_dict()
    missing = sorted(set(ref) - set(sd))
    unexpected = sorted(set(sd) - set(ref))
    shaped = sorted(
        f"{k} (checkpoint {list(sd[k].shape)}, model {list(ref[k].shape)})"
        for k in set(ref) & set(sd)
        if tuple(sd[k].shape) != tuple(ref[k].shape)
    )
    return missing, unexpected, shaped


def load_state_dict_strict(model: nn.Module, sd: dict[str, torch.Tensor], what: str, variant: str | None) -> None:
    missing, unexpected, shaped = compare_state_dict(model, sd)
    if missing or unexpected or shaped:
        lines = [f"{what} does not fit the model" + (f" {variant!r}" if variant else "") + ":"]
        ref = model.state_dict()
        overlap = len(set(ref) & set(sd)) / max(1, len(ref))
        if overlap < 0.9 or len(shaped) > 0.1 * len(ref):
            other = guess_variant(sd)
            if other and other != variant:
                lines.append(f"  it is a checkpoint of variant {other!r} (wrong architecture)")
            else:
                lines.append(f"  wrong architecture: only {overlap:.0%} of the model's keys are present")
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_listing(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
        if shaped:
            lines.append(f"  mis-shaped keys ({len(shaped)}): {_listing(shaped)}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(sd, strict=True)


def load_checkpoint(model: nn.Module, source: Any, variant: str | None = None) -> nn.Module:
    """Load ``source`` (path, shipped name, state dict or checkpoint dict) into ``model`` strictly."""
    if isinstance(source, dict):
        sd, what = extract_state_dict(source, "state dict"), "state dict"
    else:
        path = resolve_weights(source)
        sd, what = read_checkpoint(path), f"checkpoint {path}"
    load_state_dict_strict(model, sd, what, variant)
    return model
