"""tools/zoom_study.py: both studies run on the first KITTI 06 development pairs and write their rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(shared_data: Path, tmp_path: Path, *args: str) -> list[dict]:
    out = tmp_path / f"{args[0]}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, str(REPO / "tools" / "zoom_study.py"), *args, "--shared",
                    str(shared_data.parent), "--json", str(out)], check=True, env=env, cwd=REPO, timeout=600)
    return json.loads(out.read_text())


def test_crop_study_on_the_first_wide_pair(shared_data: Path, tmp_path: Path) -> None:
    rows = _run(shared_data, tmp_path, "crops", "--max-pairs", "1")  # frames 0 and 20
    assert [r["factor"] for r in rows] == [1.0, 0.8, 0.65, 0.5]
    assert rows[-1]["auc@5"] > rows[0]["auc@5"]  # the half crop recovers the pose of the wide pair


def test_hypothesis_study_rows(shared_data: Path, tmp_path: Path) -> None:
    rows = _run(shared_data, tmp_path, "hypotheses", "--max-pairs", "2")
    assert len(rows) == 2 and all(r["gap"] == 5 for r in rows)
    for r in rows:
        assert {"full", "zoom0", "zoom1"} <= set(r) and all(r[k][0] >= 0 for k in ("full", "zoom0", "zoom1"))
