"""Policies: propensities are distributions that match what the policy actually does."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.errors import ExploRecError, UnknownNameError
from explorec.explore import Feedback, Policy, Requests, create_policy, policy_names
from explorec.explore.linear import BayesianLinear

N_ITEMS, DIM, B, C, K = 200, 24, 8, 30, 4
SAMPLING = ["egreedy", "softmax", "ts", "lints", "vw"]


class _Model:
    """A tiny fixed scorer: history similarity plus an item prior."""

    n_items = N_ITEMS

    def __init__(self, vectors: np.ndarray) -> None:
        self.v = vectors

    def score_history(self, h: sp.csr_matrix) -> np.ndarray:
        return np.asarray(h @ (self.v @ self.v.T)) * 0.1 + self.v[:, 0][None, :]


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N_ITEMS, DIM))


@pytest.fixture(scope="module")
def requests() -> Requests:
    rng = np.random.default_rng(1)
    cand = np.stack([rng.choice(N_ITEMS, C, replace=False) for _ in range(B)])
    hist = sp.random(B, N_ITEMS, density=0.03, format="csr", random_state=2)
    hist.data[:] = 1.0
    return Requests(cand, hist, np.arange(B), context=rng.normal(size=(B, 2)))


def _policy(name: str, vectors: np.ndarray, **params):  # type: ignore[no-untyped-def]
    if name in ("linucb", "lints"):
        params.setdefault("n_context", 2)
    return create_policy(name, **params).prepare(_Model(vectors), item_vectors=vectors)


ALL = [n for n in policy_names() if n != "neural-linear"]


def test_registry_has_the_issue_names() -> None:
    for name in ("greedy", "egreedy", "softmax", "ucb", "ts", "linucb", "lints", "neural-linear", "vw"):
        assert name in policy_names()
    with pytest.raises(UnknownNameError, match="unknown policy 'nope'"):
        create_policy("nope")


@pytest.mark.parametrize("name", ALL)
def test_propensities_sum_to_one_per_slot(name: str, vectors: np.ndarray, requests: Requests) -> None:
    policy = _policy(name, vectors)
    assert isinstance(policy, Policy)
    sb = policy.rank_batch(requests, K, keep_distribution=True)
    assert sb.items.shape == (B, K) and sb.propensities.shape == (B, K)
    assert np.allclose(sb.distribution.sum(axis=1), 1.0)
    # logged propensity is the distribution's entry for what was shown, and is positive
    logged = np.take_along_axis(sb.distribution, sb.positions[:, None, :], axis=1)[:, 0, :]
    assert np.allclose(sb.propensities, logged) and (sb.propensities > 0).all()
    # a slate never repeats an item and only uses candidates
    for row in range(B):
        assert len(set(sb.items[row])) == K and set(sb.items[row]) <= set(requests.candidates[row])
    if policy.deterministic:
        assert np.allclose(sb.propensities, 1.0)


@pytest.mark.parametrize("name", SAMPLING)
def test_propensities_match_empirical_frequencies(name: str, vectors: np.ndarray,
                                                 requests: Requests) -> None:
    policy = _policy(name, vectors)
    # learn a little first so the distribution is not trivial
    sb = policy.rank_batch(requests, K)
    rewards = (np.random.default_rng(3).random((B, K)) < 0.4).astype(float)
    policy.update(Feedback(requests, sb, rewards))
    n = 3000
    one = requests.take(np.zeros(n, dtype=int))
    out = policy.rank_batch(one, K, keep_distribution=True)
    emp = np.zeros((C, K))
    np.add.at(emp, (out.positions, np.broadcast_to(np.arange(K), out.positions.shape)), 1.0)
    emp /= n
    expected = out.distribution.mean(axis=0)
    # binomial standard error at n=3000 is <= 0.0092; allow ~4 sigma
    assert np.abs(emp - expected).max() < 0.037, name


def test_egreedy_propensities_are_exact(vectors: np.ndarray, requests: Requests) -> None:
    policy = _policy("egreedy", vectors, epsilon=0.2)
    sb = policy.rank_batch(requests, K, keep_distribution=True)
    greedy = _policy("greedy", vectors).rank_batch(requests, K)
    for row in range(B):
        d = sb.distribution[row]
        for j in range(K):
            expect = np.full(C, 0.2 / C)
            expect[greedy.positions[row, j]] += 0.8
            assert np.allclose(d[:, j], expect)


def test_budget_controls_the_share_of_exploring_requests(vectors: np.ndarray, requests: Requests) -> None:
    one = requests.take(np.zeros(4000, dtype=int))
    greedy = _policy("greedy", vectors).rank_batch(one, K).items[0]
    for name, key in (("egreedy", "epsilon"), ("softmax", "budget")):
        sb = _policy(name, vectors, **{key: 0.1}).rank_batch(one, K)
        deviated = (sb.items != greedy[None, :]).any(axis=1).mean()
        assert deviated <= 0.1 + 0.02, (name, deviated)


def test_linear_update_is_a_sufficient_statistic_update(vectors: np.ndarray, requests: Requests) -> None:
    policy = _policy("lints", vectors)
    A0, b0 = policy.linear.A.copy(), policy.linear.b.copy()
    sb = policy.rank_batch(requests, K)
    rewards = np.full((B, K), np.nan)
    rewards[0, 1] = 1.0  # one observed slot: a rank-one update
    policy.update(Feedback(requests, sb, rewards))
    x = policy.linear.b - b0  # reward 1: b grows by x
    assert np.allclose(policy.linear.A - A0, np.outer(x, x))
    assert x[policy.features.n_features + 1] == 1.0  # position one-hot of slot 1
    assert policy.linear.n == 1


def test_bayesian_linear_recovers_weights() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=5)
    model = BayesianLinear(5, prior_precision=1e-3)
    for _ in range(20):  # incremental batches give the batch solution
        X = rng.normal(size=(100, 5))
        model.update(X, X @ w + 0.01 * rng.normal(size=100))
    assert np.allclose(model.mean, w, atol=0.01)
    draws = model.sample(2000, 1.0, rng)
    assert np.allclose(draws.mean(axis=0), w, atol=0.01)


def test_thompson_sampling_learns_a_clicked_item(vectors: np.ndarray, requests: Requests) -> None:
    policy = _policy("ts", vectors, n_draws=32)
    target = requests.candidates[0, 5]
    one = requests.take(np.zeros(50, dtype=int))
    for _ in range(30):
        sb = policy.rank_batch(one, K)
        policy.update(Feedback(one, sb, (sb.items == target).astype(float)))
    share = (policy.rank_batch(one, K).items[:, 0] == target).mean()
    assert share > 0.8


def test_ucb_tries_every_item_then_exploits(vectors: np.ndarray, requests: Requests) -> None:
    policy = _policy("ucb", vectors)
    one = requests.take(np.zeros(1, dtype=int))
    seen = set()
    for _ in range(-(-C // K)):
        sb = policy.rank_batch(one, K)
        seen |= set(sb.items[0])
        policy.update(Feedback(one, sb, np.zeros((1, K))))
    assert seen == set(requests.candidates[0])


def test_state_round_trip(vectors: np.ndarray, requests: Requests) -> None:
    """Every registered policy that learns (``learns``, set from overriding ``update``) keeps
    what it learned through get_state/set_state: a fresh copy given the state ranks alike."""
    from explorec.explore.registry import policy_class

    learning = [n for n in ALL if policy_class(n).learns]
    assert {"ucb", "ts", "linucb", "lints", "vw"} <= set(learning)
    for name in learning:
        a = _policy(name, vectors, seed=5)
        sb = a.rank_batch(requests, K)
        a.update(Feedback(requests, sb, (sb.items % 3 == 0).astype(float)))
        b = _policy(name, vectors, seed=5)
        fresh = _policy(name, vectors, seed=5)
        b.set_state(a.get_state())
        if name != "vw":  # VW's saved model records how it was loaded: compared by its ranks
            for key, value in a.get_state().items():
                assert np.array_equal(value, b.get_state()[key]), (name, key)
        untouched = fresh.get_state()
        assert any(not np.array_equal(v, untouched.get(key)) for key, v in a.get_state().items()), \
            f"{name}: update changed nothing, the round trip proves nothing"
        a.rng, b.rng = np.random.default_rng(1), np.random.default_rng(1)
        ra, rb = a.rank_batch(requests, K), b.rank_batch(requests, K)
        assert np.array_equal(ra.items, rb.items), name
        assert np.allclose(ra.propensities, rb.propensities), name


def test_a_policy_that_learns_must_keep_its_state() -> None:
    from explorec.explore.base import BasePolicy

    with pytest.raises(TypeError, match=r"Forgetful learns .* get_state and set_state"):
        class Forgetful(BasePolicy):
            def _rank(self, requests, k):  # type: ignore[no-untyped-def]
                raise NotImplementedError

            def update(self, feedback):  # type: ignore[no-untyped-def]
                pass


def test_new_items_start_from_the_prior(vectors: np.ndarray, requests: Requests) -> None:
    for name in ("ts", "lints", "mmr", "ucb"):
        policy = _policy(name, vectors)
        policy.model = None  # scores from the prior only
        policy.add_items(3, np.random.default_rng(0).normal(size=(3, DIM)))
        assert policy.n_items == N_ITEMS + 3
        req = Requests(np.array([[N_ITEMS, N_ITEMS + 1, N_ITEMS + 2, 0, 1]]),
                       sp.csr_matrix((1, N_ITEMS + 3)), context=np.zeros((1, 2)))
        assert policy.rank_batch(req, 2).items.shape == (1, 2)


def test_single_request_rank(vectors: np.ndarray) -> None:
    policy = _policy("lints", vectors)
    slate = policy.rank(7, np.arange(20), 5, {"history": [1, 2, 3], "features": [0.5, -1.0]})
    assert len(slate.items) == 5 and slate.propensities.shape == (5,)
    assert slate.info["policy"] == "lints"


def test_mmr_diversifies(vectors: np.ndarray, requests: Requests) -> None:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def ild(items: np.ndarray) -> float:
        s = unit[items] @ unit[items].T
        return float((1 - s[np.triu_indices(len(items), 1)]).mean())

    greedy = _policy("greedy", vectors).rank_batch(requests, K).items
    mmr = _policy("mmr", vectors, lam=0.3).rank_batch(requests, K).items
    assert np.mean([ild(r) for r in mmr]) > np.mean([ild(r) for r in greedy])


def test_bad_inputs_name_the_problem(vectors: np.ndarray, requests: Requests) -> None:
    policy = _policy("greedy", vectors)
    with pytest.raises(ExploRecError, match="fewer than k=40"):
        policy.rank_batch(requests, 40)
    bad = Requests(np.array([[0, 1, N_ITEMS + 5]]), sp.csr_matrix((1, N_ITEMS)))
    with pytest.raises(ExploRecError, match="candidate item ids"):
        policy.rank_batch(bad, 2)
    with pytest.raises(ExploRecError, match="history has 1 rows for 2 requests"):
        Requests(np.zeros((2, 3), dtype=int), sp.csr_matrix((1, N_ITEMS)))
    sb = policy.rank_batch(requests, K)
    with pytest.raises(ExploRecError, match=r"reward 2\.0 at request 0, position 0"):
        Feedback(requests, sb, np.full((B, K), 2.0))
    with pytest.raises(ExploRecError, match="epsilon must be in"):
        create_policy("egreedy", epsilon=1.5)
    with pytest.raises(ValueError, match="bad parameters for policy 'ts'"):
        create_policy("ts", nonsense=1)
    with pytest.raises(ExploRecError, match="needs item_vectors"):
        create_policy("lints").prepare(_Model(vectors))
    with pytest.raises(ExploRecError, match="two-tower"):
        create_policy("neural-linear").prepare(_Model(vectors), item_vectors=vectors)
