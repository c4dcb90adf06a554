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


@pytest.fixture(scope="session")
def real_fashion_mnist_dir():
    """The folder holding the real Fashion-MNIST files, for tests that need the real data.

    Found the way ``resdense train`` finds it (``$RESDENSE_DATA``, the user cache, Debian's copy, which
    scripts/setup.sh installs as root), and downloaded into the user cache when none holds it. Never
    skipped: tests that need real data must run in CI.
    """
    from resdense.data.fashion_mnist import load_fashion_mnist

    ds = load_fashion_mnist(None, download=True, progress=False)
    return os.fspath(ds.source)


@pytest.fixture(scope="session")
def real_fashion_mnist(real_fashion_mnist_dir):
    """The real Fashion-MNIST as a :class:`resdense.data.Dataset` (uint8 tensors), loaded once."""
    from resdense.data.fashion_mnist import load_fashion_mnist

    return load_fashion_mnist(real_fashion_mnist_dir, download=False, progress=False)


# ``--amp auto`` decides bf16 or fp32 from this CPU (resdense.utils.amp): the suite pins fp32 so it trains
# alike on every machine, and fast (subprocesses inherit it). The path most users get is tested too: the amp
# tests ask for bf16 with --amp yes (tests/train/test_saved_model_score.py: a bf16 run's summary equals
# ``resdense evaluate``; test_resume.py: a bf16 run resumed after SIGKILL), or unset the pin.
os.environ.setdefault("RESDENSE_AMP", "fp32")
