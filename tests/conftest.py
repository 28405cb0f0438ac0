import os

# One intra-op thread per test process (and per subprocess it starts) unless RECURLAB_TEST_THREADS says
# otherwise: torch's OpenMP threads spin while they wait, so on a machine whose cores are busy with other
# work, two-thread ops in every test slowed the suite down tenfold. Tests that need threads set them.
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("RECURLAB_TEST_THREADS", "1"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def rel_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| in float64 (0 when both are 0)."""
    actual, expected = actual.double(), expected.double()
    denom = expected.norm().item()
    diff = (actual - expected).norm().item()
    return diff / denom if denom > 0 else diff


def assert_rel_close(actual, expected, tol, what=""):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    err = rel_rms(actual, expected)
    assert err <= tol, f"{what}: relative RMS error {err:.3g} > {tol:.3g}"


@pytest.fixture(scope="session", autouse=True)
def _compiled_kernel_once():
    """Build (or load) the compiled CPU kernel once, before any test: tests that start recurlab in a
    subprocess then load it from the cache instead of racing to build it."""
    from recurlab.ops import _cpu_ext

    _cpu_ext.available()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
