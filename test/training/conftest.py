"""Training tests run torch with one intra-op thread: on a shared 2-core CPU the many small tensor ops of the
supervision and data code are orders of magnitude faster that way (the CPU training configs do the same)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
