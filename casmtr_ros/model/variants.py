"""Named model configurations. A plain dict: other variants add entries (``VARIANTS["name"] = {...}``).

Each entry is a config override merged onto ``casmtr.OUTDOOR_4C`` by :func:`casmtr_ros.model.build_model`;
``model`` selects the class in ``casmtr.MODELS``; an optional ``default_weights`` names the shipped weight file
(``casmtr_ros/weights/``) a matcher loads when it is given no weights, and an optional ``klt_refine`` is the
matcher's default for its Lucas-Kanade polish (off when absent, so the official variants return the official
outputs) and ``klt_affine`` its default for the polish's affine refinement; an optional ``klt_replaces_fine``
lets the matcher skip the 1/2 refinement when the polish runs, and optional ``zoom_below``, ``zoom_merge`` and
``max_pixels`` are the matcher's defaults for its zoom search, for merging a winning crop's matches with the
first pass's, and for its pixel budget (off when absent).
"""

from __future__ import annotations

from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    # The official outdoor-4c (configs/model_configs/outdoor/loftr_ds_quadtree_cas_twins_large_stage3.py).
    "casmtr-4c-outdoor": {"model": "casmtr"},
}


# The CPU variant (XFeat-initialised backbone, narrow stages); importing it registers the 'xfeat' backbone.
from casmtr_ros.model.lite import CASMTR_4C_LITE  # noqa: E402

VARIANTS["casmtr-4c-lite"] = CASMTR_4C_LITE
