"""Policies: propensities are distributions that match what the policy actually does."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.errors import ExploRecError, UnknownNameError
from explorec.explore import Feedback, Requests, create_policy, policy_names
from explorec.explore.linear import BayesianLinear

N_ITEMS, DIM, B, C, K = 200, 24, 8, 30, 4


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


def test_registry_has_the_issue_names() -> None:
    for name in ("greedy", "egreedy", "softmax", "ucb", "ts", "linucb", "lints", "neural-linear", "vw"):
        assert name in policy_names()
    with pytest.raises(UnknownNameError, match="unknown policy 'nope'"):
        create_policy("nope")


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
    cand = requests.candidates[0]
    seen = set()
    for _ in range(-(-C // K)):
        sb = policy.rank_batch(one, K)
        seen |= set(sb.items[0])
        policy.update(Feedback(one, sb, np.zeros((1, K))))
    assert seen == set(cand)
    # then one clearly best item (click rate 0.9 against 0.05): UCB1 settles on it
    best = cand[C - 1]  # the base model's ranking does not put it first
    p_click = dict(zip(cand.tolist(), np.where(cand == best, 0.9, 0.05), strict=True))
    rng = np.random.default_rng(0)
    shown, first = [], []
    for _ in range(200):
        sb = policy.rank_batch(one, K)
        p = np.array([p_click[int(i)] for i in sb.items[0]])
        policy.update(Feedback(one, sb, (rng.random(K) < p).astype(float)[None, :]))
        shown.append(best in sb.items[0])
        first.append(sb.items[0, 0] == best)
    assert np.mean(shown[50:]) >= 0.95 and np.mean(first[50:]) >= 0.9, \
        (np.mean(shown[50:]), np.mean(first[50:]))


def test_a_policy_that_learns_must_keep_its_state() -> None:
    from explorec.explore.base import BasePolicy

    with pytest.raises(TypeError, match=r"Forgetful learns .* get_state and set_state"):
        class Forgetful(BasePolicy):
            def _rank(self, requests, k):  # type: ignore[no-untyped-def]
                raise NotImplementedError

            def update(self, feedback):  # type: ignore[no-untyped-def]
                pass


def _prior_problems(name: str, policy, vectors: np.ndarray, new_vectors: np.ndarray,  # type: ignore[no-untyped-def]
                    before: dict[str, np.ndarray]) -> list[str]:
    """What differs between the grown policy's state for the new items and the prior (the
    state a policy prepared with those items from the start has for them), and whether the
    old items kept what they learned."""
    n_new = len(new_vectors)
    problems = []
    fresh = create_policy(name, **({"n_context": 2} if name == "lints" else {})).prepare(
        None, n_items=N_ITEMS + n_new, item_vectors=np.vstack([vectors, new_vectors]))
    after, prior = policy.get_state(), fresh.get_state()
    for key, old in before.items():
        if old.shape[:1] == (N_ITEMS,):  # per-item statistics
            if not np.array_equal(after[key][:N_ITEMS], old):
                problems.append(f"{key}: old items changed")
            if not np.array_equal(after[key][N_ITEMS:], prior[key][N_ITEMS:]):
                problems.append(f"{key}: new items {after[key][N_ITEMS:]} != prior "
                                f"{prior[key][N_ITEMS:]}")
        elif not np.array_equal(after[key], old):
            problems.append(f"{key}: shared state changed by adding items")
    if name == "ts":
        a, b = policy.posterior()
        if not (np.array_equal(a[N_ITEMS:], np.full(n_new, policy.alpha0))
                and np.array_equal(b[N_ITEMS:], np.full(n_new, policy.beta0))):
            problems.append("ts: new items' posterior is not Beta(alpha0, beta0)")
    if name == "lints":
        want = policy.features.transform(new_vectors)
        if not np.array_equal(policy.features.V[N_ITEMS:], want):
            problems.append("lints: new items' features are not their vectors'")
    if name == "mmr":
        unit = new_vectors / np.linalg.norm(new_vectors, axis=1, keepdims=True)
        if not np.allclose(policy._unit[N_ITEMS:], unit):
            problems.append("mmr: new items' unit vectors are not their vectors'")
    return problems


def test_new_items_start_from_the_prior(vectors: np.ndarray, requests: Requests) -> None:
    """After learning, new items get exactly the prior (no counts, the prior Beta, their own
    features), old items keep their statistics, and the new items are rankable; a policy that
    starts new items from another item's counts is caught."""
    from explorec.explore.bandits import UCB1Policy

    class Copycat(UCB1Policy):
        """Starts new items from the most shown item's counts (the bug this test catches)."""

        def _grow(self, n_new: int) -> None:
            top = int(np.argmax(self.shows))
            self.shows = np.concatenate([self.shows, np.full(n_new, self.shows[top])])
            self.clicks = np.concatenate([self.clicks, np.full(n_new, self.clicks[top])])

    new_vectors = np.random.default_rng(0).normal(size=(3, DIM))
    for name in ("ts", "lints", "mmr", "ucb", "copycat"):
        if name == "copycat":
            policy = Copycat().prepare(_Model(vectors), item_vectors=vectors)
        else:
            policy = _policy(name, vectors)
        sb = policy.rank_batch(requests, K)
        policy.update(Feedback(requests, sb, (sb.items % 2 == 0).astype(float)))
        policy.model = None  # scores from the prior only
        before = policy.get_state()
        if name in ("ts", "ucb", "copycat"):
            assert before["shows"].max() > 0 and before["clicks"].max() > 0  # it learned
        policy.add_items(3, new_vectors)
        assert policy.n_items == N_ITEMS + 3
        problems = _prior_problems("ucb" if name == "copycat" else name, policy, vectors,
                                   new_vectors, before)
        if name == "copycat":
            assert problems, "a policy copying another item's counts passed"
            continue
        assert not problems, (name, problems)
        old_items = sb.items[0, :2]  # shown, so learned about
        req = Requests(np.array([[N_ITEMS, N_ITEMS + 1, N_ITEMS + 2, *old_items]]),
                       sp.csr_matrix((1, N_ITEMS + 3)), context=np.zeros((1, 2)))
        out = policy.rank_batch(req, 2)
        assert out.items.shape == (1, 2)
        if name == "ucb":  # never-shown items come first
            assert set(out.items[0]) <= {N_ITEMS, N_ITEMS + 1, N_ITEMS + 2}


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
