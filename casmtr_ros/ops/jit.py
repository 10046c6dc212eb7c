"""Just-in-time build of the CUDA extension with ``torch.utils.cpp_extension.load`` into a cache folder.

Works from a source checkout (the kernels live in ``<repo>/cuda``, or wherever ``CASMTR_CUDA_SRC`` points); the
build description (sources, flags, architectures) is read from ``cuda/build.py`` so that setup.py and the JIT
path compile the same thing. The cache folder is keyed by the sources, flags, torch and CUDA versions, so a
rebuild happens only when one of them changes. Prebuild with ``python -m casmtr_ros.ops.jit``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType


def source_dir() -> Path:
    """Folder holding the CUDA sources and ``build.py``."""
    env = os.environ.get("CASMTR_CUDA_SRC")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "cuda"


def cache_root() -> Path:
    """Root of the JIT build cache (``CASMTR_CUDA_CACHE``, default ``~/.cache/casmtr_ros/cuda_ext``)."""
    env = os.environ.get("CASMTR_CUDA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "casmtr_ros" / "cuda_ext"


def build_description() -> ModuleType:
    """``cuda/build.py`` loaded by path (it is not an installed package)."""
    path = source_dir() / "build.py"
    if not path.is_file():
        raise FileNotFoundError(f"CUDA sources not found at {path.parent} (set CASMTR_CUDA_SRC to the repo's cuda/)")
    spec = importlib.util.spec_from_file_location("casmtr_cuda_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_tag(desc: ModuleType) -> str:
    """Hash of everything that determines the binary."""
    import torch

    h = hashlib.sha256()
    for path in desc.all_files():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(" ".join(desc.nvcc_flags() + desc.cxx_flags()).encode())
    h.update(f"{torch.__version__}|{torch.version.cuda}|{sys.version_info[:2]}".encode())
    return h.hexdigest()[:16]


def load(verbose: bool = False) -> ModuleType:
    """Build (or reuse from the cache) and import the extension; raises RuntimeError with the reason on failure."""
    desc = build_description()
    reason = desc.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"cannot JIT-build the CUDA extension: {reason}")
    from torch.utils.cpp_extension import load as torch_load

    tag = build_tag(desc)
    build_dir = cache_root() / tag
    build_dir.mkdir(parents=True, exist_ok=True)
    return torch_load(
        name=f"casmtr_cuda_ops_{tag}",
        sources=[str(p) for p in desc.source_paths()],
        extra_include_paths=[str(desc.CUDA_DIR)],
        extra_cflags=desc.cxx_flags(),
        extra_cuda_cflags=desc.nvcc_flags(),
        build_directory=str(build_dir),
        verbose=verbose,
    )


def cached_build_exists() -> bool:
    """Whether a JIT build for the current sources and torch is already in the cache (cheap, no compiler)."""
    try:
        desc = build_description()
        import torch

        if torch.version.cuda is None:
            return False
        tag = build_tag(desc)
    except (FileNotFoundError, ImportError, OSError):
        return False
    return any((cache_root() / tag).glob(f"casmtr_cuda_ops_{tag}*.so"))


def main() -> int:
    try:
        module = load(verbose=True)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"built {module.__file__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
