"""Which implementation runs the gathered-attention ops: the CUDA kernels or the PyTorch gathers.

Setting (``CASMTR_OPS_BACKEND`` or :func:`set_backend`):
    ``auto``  (default) CUDA kernels for CUDA tensors when the extension is importable, PyTorch otherwise;
    ``torch`` always the PyTorch gathers;
    ``cuda``  always the kernels: a missing extension or CPU tensors raise a clear error.
The extension is the one built by setup.py (``casmtr_ros._cuda_ops``); when it is absent the JIT build
(``casmtr_ros/ops/jit.py``) is used if it is already cached, or compiled when ``CASMTR_OPS_JIT=1`` or the backend
is forced to ``cuda`` (``CASMTR_OPS_JIT=0`` disables JIT entirely). ``CASMTR_OPS_CHECK_INDEX=1`` makes the
kernels verify every index on the host first (one reduction and sync per call). Which path is active is logged
once per device type.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from types import ModuleType

import torch

LOG = logging.getLogger("casmtr_ros.ops")
BACKENDS = ("auto", "torch", "cuda")


@dataclass
class OpsSettings:
    """Backend choice; read from the environment at import, changed with :func:`set_backend`."""

    backend: str = "auto"
    jit: str = "auto"  # "auto" (build only when forced to cuda), "1" always allowed, "0" never
    check_index: bool = False

    @classmethod
    def from_env(cls) -> OpsSettings:
        return cls(
            backend=_valid_backend(os.environ.get("CASMTR_OPS_BACKEND", "auto")),
            jit=os.environ.get("CASMTR_OPS_JIT", "auto"),
            check_index=os.environ.get("CASMTR_OPS_CHECK_INDEX", "0") == "1",
        )


def _valid_backend(name: str) -> str:
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"ops backend must be one of {BACKENDS}, got {name!r} (CASMTR_OPS_BACKEND)")
    return name


SETTINGS = OpsSettings.from_env()
_lock = threading.Lock()
_state: dict[str, object] = {"ext": None, "source": "", "errors": [], "probed": False, "built": False}
_logged: set[tuple[str, str]] = set()


def set_backend(name: str, check_index: bool | None = None) -> None:
    """Force ``"torch"`` or ``"cuda"``, or return to ``"auto"``; optionally toggle host-side index checks."""
    SETTINGS.backend = _valid_backend(name)
    if check_index is not None:
        SETTINGS.check_index = check_index
    _logged.clear()


def get_backend() -> str:
    return SETTINGS.backend


def _probe() -> None:
    """Import the prebuilt extension, else a JIT build already in the cache (no compiling)."""
    if torch.version.cuda is None:
        _state["errors"].append(f"torch {torch.__version__} is a CPU build")
        return
    try:
        _state["ext"] = importlib.import_module("casmtr_ros._cuda_ops")
        _state["source"] = "prebuilt extension casmtr_ros._cuda_ops"
        return
    except ImportError as exc:
        _state["errors"].append(f"casmtr_ros._cuda_ops not built ({exc})")
    if SETTINGS.jit == "0":
        _state["errors"].append("JIT disabled (CASMTR_OPS_JIT=0)")
        return
    from casmtr_ros.ops import jit

    if jit.cached_build_exists():
        _jit_load()
    else:
        _state["errors"].append("no JIT build cached (CASMTR_OPS_JIT=1 or `python -m casmtr_ros.ops.jit` builds one)")


def _jit_load() -> None:
    from casmtr_ros.ops import jit

    try:
        LOG.warning("casmtr_ros.ops: loading/building the CUDA extension in %s (minutes when not cached)",
                    jit.cache_root())
        _state["ext"] = jit.load()
        _state["source"] = f"JIT build in {jit.cache_root()}"
    except Exception as exc:  # any compiler/loader failure becomes the reported reason
        _state["errors"].append(f"JIT build failed: {exc}")


def extension(allow_jit_build: bool = False) -> ModuleType | None:
    """The loaded extension module, or None (the reasons are in :func:`backend_info`)."""
    with _lock:
        if _state["ext"] is None and not _state["probed"]:
            _state["probed"] = True
            _probe()
        want_build = allow_jit_build or SETTINGS.jit == "1" or SETTINGS.backend == "cuda"
        if _state["ext"] is None and want_build and SETTINGS.jit != "0" and not _state["built"]:
            _state["built"] = True
            _jit_load()
        return _state["ext"]  # type: ignore[return-value]


def extension_error() -> str | None:
    """Why the extension is unavailable, or None when it is loaded."""
    return None if _state["ext"] is not None else "; ".join(_state["errors"]) or "not probed yet"


def _log_once(device_type: str, path: str, detail: str) -> None:
    key = (device_type, path)
    if key not in _logged:
        _logged.add(key)
        LOG.info("casmtr_ros.ops: %s tensors use the %s path (%s)", device_type, path, detail)


def use_kernels(*tensors: torch.Tensor) -> bool:
    """Decide the path for these inputs (all on one device) and log the decision once per device type."""
    device_type = tensors[0].device.type
    backend = SETTINGS.backend
    if backend == "torch":
        _log_once(device_type, "torch", "forced by setting")
        return False
    if device_type != "cuda":
        if backend == "cuda":
            raise RuntimeError(
                f"ops backend forced to 'cuda' but the inputs are on {tensors[0].device}; move the model to a GPU "
                "or use CASMTR_OPS_BACKEND=auto/torch"
            )
        _log_once(device_type, "torch", "kernels only run on CUDA tensors")
        return False
    ext = extension()
    if ext is None:
        if backend == "cuda":
            raise RuntimeError(
                f"ops backend forced to 'cuda' but the CUDA extension is unavailable: {extension_error()}"
            )
        _log_once(device_type, "torch", f"CUDA extension unavailable: {extension_error()}")
        return False
    _log_once(device_type, "cuda", _state["source"])
    return True


def backend_name(device_type: str = "cuda") -> str:
    """``"cuda"`` or ``"torch"``: the path tensors of ``device_type`` take now (does not build anything)."""
    if device_type != "cuda" or SETTINGS.backend == "torch":
        return "torch"
    return "cuda" if extension() is not None else "torch"


def backend_info() -> dict[str, object]:
    """Setting, extension state and reason, for logs and benchmark records (does not build anything)."""
    ext = extension()
    return {
        "backend": SETTINGS.backend,
        "jit": SETTINGS.jit,
        "check_index": SETTINGS.check_index,
        "extension": _state["source"] if ext is not None else None,
        "extension_error": extension_error(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
