"""interest-ts (explorec.explore.interest): exploit slots + Thompson-sampled novel interests.

The registry-driven contract (shapes, propensities = the shown slate's share of draws, seeds,
state round trips, catalog growth) runs in tests/test_conformance.py; here: what makes it a
hierarchical interest policy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.errors import ExploRecError
from explorec.explore import Feedback, Requests, create_policy

N_ITEMS, K_INTERESTS = 40, 8  # item i is in interest i // 5
LABELS = np.arange(N_ITEMS) // (N_ITEMS // K_INTERESTS)


def centroids() -> np.ndarray:
    return np.eye(K_INTERESTS, 16)


def vectors() -> np.ndarray:
    rng = np.random.default_rng(0)
    return centroids()[LABELS] + 0.01 * rng.normal(size=(N_ITEMS, 16))


def make(prior: np.ndarray | None = None, **params) -> object:
    params.setdefault("exploit", "greedy")
    policy = create_policy("interest-ts", seed=3, **params)
    policy.set_interests(labels=LABELS, centroids=centroids(), prior=prior)
    return policy.prepare(None, n_items=N_ITEMS, item_vectors=vectors())


def requests(n: int, history: list[int], users: np.ndarray | None = None) -> Requests:
    cand = np.tile(np.arange(N_ITEMS), (n, 1))
    h = sp.csr_matrix((np.ones(n * len(history), np.float32),
                       (np.repeat(np.arange(n), len(history)), np.tile(history, n))), shape=(n, N_ITEMS))
    base = np.tile(np.linspace(1.0, 0.0, N_ITEMS), (n, 1))  # the base model likes low ids
    base[:, history] = -np.inf
    valid = np.isfinite(base)
    return Requests(cand, h, np.arange(n) if users is None else users, np.where(valid, base, 0.0),
                    None, valid)


def test_propensities_sum_to_one_per_slot_and_match_empirical_frequencies():
    """Each slot's logged distribution sums to 1 over the candidates, and over 4,000
    independent requests the shown (item, slot) frequencies equal the mean logged
    distribution within sampling error (5 standard errors at the worst cell)."""
    policy = make(budget=0.5, explore_slots="random")
    n, k = 4000, 4
    sb = policy.rank_batch(requests(n, history=[0, 1]), k, keep_distribution=True)
    np.testing.assert_allclose(sb.distribution.sum(axis=1), 1.0)
    shown = np.zeros((N_ITEMS, k))
    np.add.at(shown, (sb.positions, np.tile(np.arange(k), (n, 1))), 1.0)
    freq = shown / n
    expected = sb.distribution.mean(axis=0)
    se = np.sqrt(np.maximum(expected * (1 - expected), 1e-4) / n)
    assert (np.abs(freq - expected) <= 5 * se).all()
    assert 0.2 < (expected[:, -1] < 1).mean() <= 1  # it does explore: slots are not fixed


def test_budget_zero_is_the_exploit_policy_and_budget_one_explores_every_slot():
    req = requests(50, history=[0, 1, 2])  # interest 0 engaged; interests 1..7 novel
    greedy = create_policy("greedy").prepare(None, n_items=N_ITEMS)
    none = make(budget=0.0).rank_batch(req, 5)
    assert np.array_equal(none.items, greedy.rank_batch(req, 5).items)
    assert (none.propensities == 1.0).all()
    every = make(budget=1.0).rank_batch(req, 5)
    interests = LABELS[every.items]
    assert (interests != 0).all()  # only novel interests...
    assert all(len(set(row)) == 5 for row in interests)  # ...one item each
    # and the item shown for an interest is its best unseen one by the base model
    assert (every.items % 5 == 0).all()


def test_explore_slots_fill_the_slate_from_the_bottom():
    """k=3 and three unseen items left in the user's one interest: the exploit slots are the
    greedy list's head (2, 3, 4, all in the engaged interest), explore slots come after them."""
    sb = make(budget=0.4, explore_slots="last").rank_batch(requests(300, history=[0, 1]), 3)
    novel = LABELS[sb.items] != 0
    assert (np.diff(novel.astype(int), axis=1) >= 0).all()  # once exploring, to the bottom
    for row, nov in zip(sb.items, novel, strict=True):
        assert list(row[~nov]) == [2, 3, 4][: int((~nov).sum())]
    assert 0 < novel.mean() < 1


def test_clicks_and_misses_move_the_interest_posterior():
    """A user who never clicks interest 3 stops being shown it; one who clicks interest 5
    is shown it more (counts learned per user, shared through each interest's rate)."""
    policy = make(budget=1.0, prior_strength=5.0)
    req = requests(200, history=[0], users=np.full(200, 7))
    before = LABELS[policy.rank_batch(req, 2).items]
    for _ in range(10):
        sb = policy.rank_batch(req, 2)
        interests = LABELS[sb.items]
        policy.update(Feedback(req, sb, (interests == 5).astype(float)))
    after = LABELS[policy.rank_batch(req, 2).items]
    assert (after == 5).mean() > (before == 5).mean() + 0.2
    assert (after == 3).mean() < (before == 3).mean()
    state = policy.get_state()
    row = int(np.flatnonzero(state["user_keys"] == 7)[0])
    assert state["user_clicks"][row, 5] > 0 and state["user_clicks"][row, 3] == 0
    assert state["user_shows"][row, 0] == 0  # an engaged interest is not novel: not counted


def test_the_novel_interest_prior_steers_exploration():
    """With the prior table saying users of interest 0 go on to interest 6, a user of
    interest 0 is shown interest 6 far more often than any other novel interest."""
    prior = np.full((K_INTERESTS, K_INTERESTS), 0.01)
    prior[0, 6] = 1.0
    np.fill_diagonal(prior, 0.0)
    sb = make(prior=prior, budget=1.0, max_lift=8.0).rank_batch(requests(400, history=[0, 1]), 1)
    share = np.bincount(LABELS[sb.items[:, 0]], minlength=K_INTERESTS) / 400
    assert share[6] == share.max() and share[6] > 2.0 / (K_INTERESTS - 1)


def test_boredom_raises_the_budget_after_visits_without_a_click():
    policy = make(budget=0.1, boredom=0.3, max_budget=0.9)
    users = np.arange(300)
    req = requests(300, history=[0, 1], users=users)
    explored0 = (LABELS[policy.rank_batch(req, 5).items] != 0).mean()
    for _ in range(3):  # three visits in a row without a click
        sb = policy.rank_batch(req, 5)
        policy.update(Feedback(req, sb, np.zeros(sb.items.shape)))
    assert (policy.get_state()["streak"] == 3).all()
    explored3 = (LABELS[policy.rank_batch(req, 5).items] != 0).mean()
    assert explored3 > explored0 + 0.3
    sb = policy.rank_batch(req, 5)
    policy.update(Feedback(req, sb, np.ones(sb.items.shape)))  # a click resets it
    assert (policy.get_state()["streak"] == 0).all()


def test_interests_found_from_item_vectors_and_new_items_join_the_nearest():
    policy = create_policy("interest-ts", exploit="greedy", seed=1)
    policy.prepare(None, n_items=N_ITEMS, item_vectors=vectors())
    assert policy.n_interests == K_INTERESTS  # chosen by silhouette from the vectors
    labels = policy.get_state()["labels"]
    assert len({(a, b) for a, b in zip(labels, LABELS, strict=True)}) == K_INTERESTS  # same partition
    policy.add_items(2, centroids()[[3, 6]])
    new = policy.get_state()["labels"][-2:]
    assert list(new) == [labels[15], labels[30]]


def test_bad_settings_are_named():
    with pytest.raises(ExploRecError, match="exploit"):
        create_policy("interest-ts", exploit="nope")
    with pytest.raises(ExploRecError, match="budget"):
        create_policy("interest-ts", budget=1.5)
    with pytest.raises(ExploRecError, match="explore_slots"):
        create_policy("interest-ts", explore_slots="middle")
    with pytest.raises(ExploRecError, match="prior"):
        make(prior=np.ones((3, 3))).rank_batch(requests(1, [0]), 2)
    with pytest.raises(ExploRecError, match="centroids"):
        create_policy("interest-ts").set_interests(labels=LABELS)
