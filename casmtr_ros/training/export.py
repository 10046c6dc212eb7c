"""Export trained weights for shipping: model tensors only (fp16 floats), plus a JSON metadata file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch


def export_weights(checkpoint: str | Path, out: str | Path, fp16: bool = True,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out`` (``{"state_dict": ...}``, floats as fp16 when ``fp16``) and ``out`` with suffix ``.json``.

    ``checkpoint`` is a trainer checkpoint (``last.pt``). The metadata records the variant, step, config,
    parameter count, sha256 of the weight file and ``extra`` (e.g. evaluation results).
    """
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "model" not in ck:
        raise ValueError(f"{checkpoint} is not a trainer checkpoint (no 'model' entry)")
    sd = {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous() for k, v in ck["model"].items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd}, out)
    meta = {
        "variant": ck.get("variant"),
        "step": ck.get("step"),
        "dtype": "float16" if fp16 else "float32",
        "parameters": int(sum(v.numel() for v in sd.values() if v.is_floating_point())),
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "bytes": out.stat().st_size,
        "config": ck.get("config"),
        **(extra or {}),
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta
