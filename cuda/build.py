"""Build description of the CUDA extension ``casmtr_ros._cuda_ops``: sources, flags, architectures.

One source of truth for the three consumers: ``setup.py`` (through :func:`extension_modules`), the JIT loader in
``casmtr_ros/ops/jit.py`` and the compile-check test in ``test/ops/test_cuda_compile.py``. Plain stdlib at import
time; torch is imported lazily so that this file also loads where torch is absent.

Environment:
    CASMTR_CUDA_ARCHS   semicolon/comma list of compute capabilities, default "80;86;87;89;90"
                        (A100, RTX 30xx/A10, Jetson Orin, RTX 40xx/L4, H100); PTX of the highest is embedded too.
    CASMTR_CUDA_DEBUG   "1" compiles device-side index bounds checks (-DCASMTR_DEBUG) and line info.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parent
EXT_NAME = "casmtr_ros._cuda_ops"
CU_SOURCES = ("score_computation.cu", "value_aggregation.cu", "cascade_score.cu")
CPP_SOURCES = ("casmtr_ops.cpp",)
HEADERS = ("kernels.h", "common.cuh")
DEFAULT_ARCHS = ("80", "86", "87", "89", "90")
DEFAULT_CUDA_HOMES = ("/usr/local/cuda",)

# Same half/bfloat16 guards as torch's own extensions, so c10::Half and __half never convert implicitly.
COMMON_NVCC_FLAGS = (
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "--expt-relaxed-constexpr",
)


def archs() -> list[str]:
    """Compute capabilities to build for, e.g. ``["80", "86", "87", "89", "90"]``."""
    raw = os.environ.get("CASMTR_CUDA_ARCHS", "")
    items = [a.strip().replace(".", "") for a in raw.replace(",", ";").split(";") if a.strip()]
    for a in items:
        if not a.isdigit():
            raise ValueError(f"CASMTR_CUDA_ARCHS: {a!r} is not a compute capability such as 80 or 8.6")
    return items or list(DEFAULT_ARCHS)


def gencode_flags(arch_list: list[str] | None = None) -> list[str]:
    """``-gencode`` flags: SASS for every architecture plus PTX of the highest (forward compatibility)."""
    arch_list = arch_list or archs()
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in arch_list]
    top = max(arch_list, key=int)
    flags.append(f"-gencode=arch=compute_{top},code=compute_{top}")
    return flags


def debug_enabled() -> bool:
    return os.environ.get("CASMTR_CUDA_DEBUG", "0") == "1"


def nvcc_flags(debug: bool | None = None) -> list[str]:
    """nvcc flags for the kernels (architecture flags included)."""
    debug = debug_enabled() if debug is None else debug
    flags = ["-O3", *COMMON_NVCC_FLAGS, *gencode_flags()]
    if debug:
        flags += ["-DCASMTR_DEBUG", "-lineinfo"]
    return flags


def cxx_flags(debug: bool | None = None) -> list[str]:
    debug = debug_enabled() if debug is None else debug
    return ["-O3", *(["-DCASMTR_DEBUG"] if debug else [])]


def source_paths() -> list[Path]:
    """Absolute paths of the compiled sources (.cpp first)."""
    return [CUDA_DIR / s for s in (*CPP_SOURCES, *CU_SOURCES)]


def all_files() -> list[Path]:
    """Every file whose content determines the build (sources, headers, this description)."""
    return [*source_paths(), *(CUDA_DIR / h for h in HEADERS), Path(__file__).resolve()]


def find_nvcc() -> str | None:
    """Path of nvcc: $CUDA_HOME/bin/nvcc, then PATH, then /usr/local/cuda/bin/nvcc."""
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    for home in DEFAULT_CUDA_HOMES:
        if (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return None


def unavailable_reason() -> str | None:
    """Why the extension cannot be built here, or None when it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build (install a CUDA build of torch)"
    if find_nvcc() is None:
        return "nvcc not found (install the CUDA toolkit or set CUDA_HOME)"
    return None


def extension_modules() -> tuple[list, dict]:
    """``(ext_modules, cmdclass)`` for ``setup()``; ``([], {})`` when torch is a CPU build or nvcc is missing."""
    reason = unavailable_reason()
    if reason is not None:
        print(f"casmtr_ros: not building the CUDA extension: {reason}")
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    root = CUDA_DIR.parent
    sources = [os.path.relpath(p, root) if Path.cwd().resolve() == root else str(p) for p in source_paths()]
    ext = CUDAExtension(
        name=EXT_NAME,
        sources=sources,
        include_dirs=[str(CUDA_DIR)],
        extra_compile_args={"cxx": cxx_flags(), "nvcc": nvcc_flags()},
    )
    return [ext], {"build_ext": BuildExtension}
