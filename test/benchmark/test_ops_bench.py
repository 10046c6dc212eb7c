"""Op micro-benchmark: CasMTR's call-site shapes and timings on the paths this machine has."""

from __future__ import annotations

import torch

from casmtr_ros.benchmark import ops_bench


def test_call_site_shapes_follow_the_grids():
    shapes = ops_bench.op_shapes(640, 480)
    assert shapes["cascade matching (K=100, C=128)"]["N1"] == 120 * 160
    assert shapes["quadtree 1/8 score (K=64, H=8)"]["N1"] == 30 * 40
    assert shapes["cascade cross score (K=100, H=4)"]["N2"] == 4 * 60 * 80


def test_ops_are_timed_on_every_available_path():
    rows = ops_bench.run([(320, 240)], repeats=1, backward=True)
    assert len(rows) == 6
    for r in rows:
        assert r["cpu-torch_ms"] > 0
        if torch.cuda.is_available():
            assert r["cuda-torch_ms"] > 0
    assert "| 320x240 | cascade matching (K=100, C=128) | float32 |" in ops_bench.table(rows)
