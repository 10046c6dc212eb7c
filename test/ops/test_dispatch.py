"""Backend selection of the ops: setting, environment variable, forced paths, logging once, public imports."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch

from casmtr_ros import ops
from casmtr_ros.ops import backend


@pytest.fixture(autouse=True)
def _restore_backend():
    before = (backend.SETTINGS.backend, backend.SETTINGS.check_index)
    yield
    backend.set_backend(before[0], check_index=before[1])


def _cascade_inputs():
    g = torch.Generator().manual_seed(3)
    return torch.randn(1, 4, 8, generator=g), torch.randn(1, 6, 8, generator=g), torch.randint(0, 6, (1, 4, 5))


def test_public_imports_are_the_dispatching_ops():
    from casmtr_ros.ops import cascade_score, score_computation, value_aggregation

    assert score_computation.__module__ == "casmtr_ros.ops.dispatch"
    assert value_aggregation.__module__ == cascade_score.__module__ == "casmtr_ros.ops.dispatch"


def test_cpu_tensors_use_torch_path_and_log_once(caplog):
    backend.set_backend("auto")
    q, k, i = _cascade_inputs()
    with caplog.at_level(logging.INFO, logger="casmtr_ros.ops"):
        a = ops.cascade_score(q, k, i)
        b = ops.cascade_score(q, k, i)
    assert not backend.use_kernels(q, k, i)
    torch.testing.assert_close(a, b)
    lines = [r.getMessage() for r in caplog.records if "path" in r.getMessage()]
    assert lines == ["casmtr_ros.ops: cpu tensors use the torch path (kernels only run on CUDA tensors)"]


def test_forced_torch_logs_reason(caplog):
    backend.set_backend("torch")
    with caplog.at_level(logging.INFO, logger="casmtr_ros.ops"):
        ops.cascade_score(*_cascade_inputs())
    assert any("forced by setting" in r.getMessage() for r in caplog.records)
    assert ops.get_backend() == "torch"


def test_forced_cuda_with_cpu_tensors_is_a_clear_error():
    backend.set_backend("cuda")
    with pytest.raises(RuntimeError, match="forced to 'cuda' but the inputs are on cpu"):
        ops.cascade_score(*_cascade_inputs())


def test_backend_name_per_device_type():
    backend.set_backend("auto")
    assert ops.backend_name("cpu") == "torch"
    expected = "cuda" if backend.extension() is not None else "torch"
    assert ops.backend_name("cuda") == expected
    backend.set_backend("torch")
    assert ops.backend_name("cuda") == "torch"


def test_unknown_backend_rejected():
    with pytest.raises(ValueError, match="must be one of"):
        backend.set_backend("triton")


def test_backend_info_reports_why_kernels_are_unavailable():
    info = ops.backend_info()
    assert info["torch"] == torch.__version__
    if info["extension"] is None:
        assert isinstance(info["extension_error"], str) and info["extension_error"]
    if torch.version.cuda is None:
        assert "CPU build" in info["extension_error"]


def test_env_var_forces_backend_in_a_fresh_process():
    code = (
        "import torch; from casmtr_ros import ops; from casmtr_ros.ops import backend;"
        "print(ops.get_backend());"
        "q=torch.randn(1,2,4); i=torch.zeros(1,2,3,dtype=torch.long);"
        "print(backend.use_kernels(q, q, i))"
    )
    env = {**os.environ, "CASMTR_OPS_BACKEND": "torch"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["torch", "False"]
    env["CASMTR_OPS_BACKEND"] = "gpu"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "CASMTR_OPS_BACKEND" in bad.stderr
