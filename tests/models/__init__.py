"""Tests of the model library. ``one_torch_thread`` is imported by the model and model-CLI test modules."""

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run these small-tensor tests on one intra-op thread, unless OMP_NUM_THREADS says otherwise.

    Their tensors are tiny, so extra threads buy little; on a small machine shared with other jobs,
    OpenMP threads that wait for each other made this suite several times slower (minutes, not seconds).
    """
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
