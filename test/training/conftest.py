"""Training tests run torch with one intra-op thread: on a shared 2-core CPU the many small tensor ops of the
supervision and data code are orders of magnitude faster that way (the CPU training configs do the same)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every training test on one thread (``one_torch_thread`` in test/conftest.py)."""
