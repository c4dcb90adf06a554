"""Suite-wide settings."""

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Run the suite's small-tensor work on one intra-op thread, unless OMP_NUM_THREADS says otherwise.

    The tensors are tiny, so extra threads buy little; on a small machine shared with other jobs, OpenMP
    threads that wait for each other made the suite several times slower (minutes, not seconds).
    Subprocesses started by tests choose their own threads.
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
