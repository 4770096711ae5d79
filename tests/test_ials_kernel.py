"""The compiled iALS CG kernel solves the same equations as the numpy path."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.data.synthetic import generate
from explorec.models import als_kernels
from explorec.models.ials import IALS

pytestmark = pytest.mark.skipif(not als_kernels.available(), reason="numba not installed")


@pytest.fixture(scope="module")
def data():
    return generate(n_users=300, n_items=2500, n_interactions=9000, seed=7).interactions


@pytest.mark.parametrize("reg_exponent", [0.0, 0.5])
def test_compiled_cg_matches_numpy_cg(data, reg_exponent: float) -> None:
    # 300 x 2500 cells is below the numpy path's dense threshold; both paths are exercised
    kw = dict(factors=16, alpha=5.0, reg=2.0, reg_exponent=reg_exponent, iterations=4, seed=3)
    a = IALS(solver="cg", **kw).fit(data)
    b = IALS(solver="cg-numpy", **kw).fit(data)
    np.testing.assert_allclose(a.user_factors_, b.user_factors_, rtol=2e-3, atol=2e-5)
    np.testing.assert_allclose(a.item_factors_, b.item_factors_, rtol=2e-3, atol=2e-5)


def test_thread_count_does_not_change_the_model(data) -> None:
    a = IALS(factors=8, iterations=3, threads=1).fit(data)
    b = IALS(factors=8, iterations=3, threads=2).fit(data)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


def test_kernel_solves_the_normal_equations() -> None:
    rng = np.random.default_rng(0)
    import scipy.sparse as sp
    X = sp.random(50, 40, density=0.2, format="csr", random_state=1)
    Y = rng.normal(size=(40, 6)).astype(np.float32)
    reg = np.full(50, 0.5, dtype=np.float32)
    x = als_kernels.cg_half_step(X.indptr, X.indices, Y, 3.0, reg, np.zeros((50, 6), np.float32),
                                 steps=6)  # f steps of CG solve an f x f system exactly
    B = (X > 0).astype(np.float64).toarray()
    for u in range(50):
        A = Y.T @ Y + 3.0 * (Y.T * B[u]) @ Y + 0.5 * np.eye(6)
        np.testing.assert_allclose(x[u], np.linalg.solve(A, 4.0 * Y.T @ B[u]), rtol=1e-3, atol=1e-4)
