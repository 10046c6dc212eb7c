"""Test helper: seeded random checkpoints in the exact layout of an official CasMTR-4c state dict.

Same recipe as ``shared/reference/parity/make_fake_official_ckpt.py`` (our own code): values drawn from
``torch.Generator().manual_seed(0)`` in manifest order (normal x 0.05, running variances uniform + 0.5,
``num_batches_tracked`` = 1000, the ``window`` parameter = the 5x5 offsets, other int64 buffers zero), so the
content hash equals the one in the parity README.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch


def read_manifest(path: Path) -> list[tuple[str, list[int], str]]:
    """``(name, shape, dtype)`` rows of a state-dict TSV manifest."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, shape, dtype = line.split("\t")
        rows.append((name, [int(x) for x in shape.strip("[]").split(",") if x.strip()], dtype))
    return rows


def fake_state_dict(manifest: Path) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, shape, dtype in read_manifest(manifest):
        if dtype == "int64":
            if name.endswith("num_batches_tracked"):
                t = torch.tensor(1000, dtype=torch.int64)
            elif name.endswith(".window"):
                r = torch.arange(-2, 3)
                dy, dx = torch.meshgrid(r, r, indexing="ij")
                t = torch.stack([dy.reshape(-1), dx.reshape(-1)], -1).reshape(shape)
            else:
                t = torch.zeros(shape, dtype=torch.int64)
        elif name.endswith("running_var"):
            t = torch.rand(shape, generator=g) + 0.5
        else:
            t = torch.randn(shape, generator=g) * 0.05
        sd[name] = t
    return sd


def content_sha256(sd: dict[str, torch.Tensor]) -> str:
    """sha256 over name bytes then tensor bytes, keys sorted (the parity README's content check)."""
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def lightning_checkpoint(sd: dict[str, torch.Tensor]) -> dict:
    return {"state_dict": {"matcher." + k: v for k, v in sd.items()}, "epoch": 0}
