"""Off-policy evaluation: estimate a policy's value from another policy's logs.

Every estimator works per logged row ``i`` with action ``a_i``, position ``p_i``, reward
``r_i`` and the behaviour policy's propensity ``pi_b(a_i | x_i, p_i)``; the evaluation policy
is given as an action distribution ``pi_e`` of shape (n, n_actions, n_positions) (or
(n, n_actions) for single actions). Rows are independent (one row = one shown slot), as in
Open Bandit Pipeline.

Estimators: Replay, IPS (``ipw``), SNIPS (``snipw``), DM, DR, SNDR and Switch-DR. Each gives a
point estimate and a bootstrap confidence interval. The bootstrap is vectorised: resample
counts form a (n_boot, n) matrix and every replicate is one matrix product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse as sp

ESTIMATORS = ("replay", "ipw", "snipw", "dm", "dr", "sndr", "switch-dr")


@dataclass(frozen=True)
class LoggedData:
    """Logged bandit feedback: what was shown, where, its reward and its propensity."""

    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    position: np.ndarray | None = None
    context: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.action)
        for name in ("reward", "pscore", "position", "context"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} rows, action has {n}")
        if np.any(self.pscore <= 0) or np.any(self.pscore > 1):
            bad = int(np.flatnonzero((self.pscore <= 0) | (self.pscore > 1))[0])
            raise ValueError(f"row {bad}: propensity {self.pscore[bad]!r} is not in (0, 1]")

    def __len__(self) -> int:
        return len(self.action)

    @property
    def pos(self) -> np.ndarray:
        return self.position if self.position is not None else np.zeros(len(self), dtype=np.int64)


@dataclass(frozen=True)
class Estimate:
    estimator: str
    estimate: float
    ci_low: float
    ci_high: float
    relative_error: float | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        return {"estimator": self.estimator, "estimate": self.estimate, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "relative_error": self.relative_error}


def _as_3d(action_dist: np.ndarray) -> np.ndarray:
    return action_dist[:, :, None] if action_dist.ndim == 2 else action_dist


def _chosen(action_dist: np.ndarray, data: LoggedData) -> np.ndarray:
    """pi_e(a_i | x_i, p_i) for every logged row."""
    d = _as_3d(action_dist)
    return d[np.arange(len(data)), data.action, data.pos]


def _per_row(name: str, data: LoggedData, action_dist: np.ndarray, q_hat: np.ndarray | None,
             switch_tau: float, seed: int = 2020) -> tuple[np.ndarray, np.ndarray | None]:
    """(numerator terms, denominator terms or None) whose means give the estimate."""
    r = data.reward.astype(np.float64)
    w = _chosen(action_dist, data) / data.pscore
    if name == "ipw":
        return w * r, None
    if name == "snipw":
        return w * r, w
    if name == "replay":
        # Rejection replay (Li et al. 2011): draw the evaluation policy's action for each row
        # (seeded, inverse CDF over actions) and keep the rows where it matches the log.
        # Unbiased when the logging policy was uniformly random.
        d = _as_3d(action_dist)
        probs = d[np.arange(len(data)), :, data.pos]
        u = np.random.default_rng(seed).random(len(data))
        drawn = (np.cumsum(probs, axis=1) < u[:, None]).sum(axis=1)
        match = (np.minimum(drawn, probs.shape[1] - 1) == data.action).astype(np.float64)
        return match * r, match
    if q_hat is None:
        raise ValueError(f"estimator {name!r} needs a reward model (q_hat)")
    q = _as_3d(q_hat)
    d = _as_3d(action_dist)
    idx = np.arange(len(data))
    dm = (d[idx, :, data.pos] * q[idx, :, data.pos]).sum(axis=1)
    q_logged = q[idx, data.action, data.pos]
    if name == "dm":
        return dm, None
    if name == "dr":
        return dm + w * (r - q_logged), None
    if name == "switch-dr":
        return dm + np.where(w <= switch_tau, w * (r - q_logged), 0.0), None
    if name == "sndr":
        # DM term averaged plainly; correction self-normalised: mean(dm) + sum(w e)/sum(w)
        return np.stack([dm, w * (r - q_logged)]), w
    raise ValueError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")


def estimate_policy_value(
    data: LoggedData,
    action_dist: np.ndarray,
    *,
    estimators: tuple[str, ...] = ESTIMATORS,
    q_hat: np.ndarray | None = None,
    ground_truth: float | None = None,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 2020,
    switch_tau: float = 100.0,
) -> list[Estimate]:
    """Point estimates and percentile bootstrap CIs for each estimator.

    Estimators that need a reward model (dm, dr, sndr, switch-dr) are skipped when ``q_hat``
    is None. ``relative_error`` is ``|estimate - ground_truth| / ground_truth`` when given.
    """
    n = len(data)
    rng = np.random.default_rng(seed)
    # one resampling matrix shared by all estimators: counts of each row per replicate
    counts = sp.csr_matrix(np.vstack([np.bincount(rng.integers(0, n, n), minlength=n)
                                      for _ in range(n_bootstrap)]).astype(np.float64))
    out = []
    for name in estimators:
        if name in ("dm", "dr", "sndr", "switch-dr") and q_hat is None:
            continue
        num, den = _per_row(name, data, action_dist, q_hat, switch_tau, seed)
        if name == "sndr":
            dm, corr = num
            assert den is not None
            point = dm.mean() + corr.sum() / den.sum()
            boot = (counts @ dm) / n + (counts @ corr) / np.maximum(counts @ den, 1e-300)
        elif den is None:
            point = num.mean()
            boot = (counts @ num) / n
        else:
            point = num.sum() / den.sum() if den.sum() > 0 else float("nan")
            with np.errstate(invalid="ignore", divide="ignore"):
                boot = (counts @ num) / (counts @ den)
        lo, hi = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
        rel = (abs(point - ground_truth) / ground_truth
               if ground_truth not in (None, 0) else None)
        out.append(Estimate(name, float(point), float(lo), float(hi),
                            None if rel is None else float(rel)))
    return out


def estimate_by_position(
    data: LoggedData,
    action_dist: np.ndarray,
    *,
    q_hat: np.ndarray | None = None,
    **options: object,
) -> dict[int, list[Estimate]]:
    """Slate OPE per position: each slot's value estimated from the rows logged at that slot.

    ``action_dist`` is (n, n_actions, n_positions): the evaluation policy's per-position
    marginals (as every :mod:`explorec.explore` policy logs them). Returns ``{position: [...]}``;
    the slate's value is the sum over positions (and the OBD convention, the mean CTR per
    slot, their mean).
    """
    out: dict[int, list[Estimate]] = {}
    pos = data.pos
    for p in np.unique(pos):
        rows = np.flatnonzero(pos == p)
        sub = LoggedData(data.action[rows], data.reward[rows], data.pscore[rows], pos[rows],
                         None if data.context is None else data.context[rows])
        q = None if q_hat is None else _as_3d(q_hat)[rows]
        out[int(p)] = estimate_policy_value(sub, _as_3d(action_dist)[rows], q_hat=q,
                                            **options)  # type: ignore[arg-type]
    return out


# ------------------------------------------------------------------ reward models
def _features(context: np.ndarray, action: np.ndarray, position: np.ndarray, n_actions: int,
              n_positions: int) -> sp.csr_matrix:
    n = len(action)
    rows = np.arange(n)
    a = sp.csr_matrix((np.ones(n), (rows, action)), shape=(n, n_actions))
    p = sp.csr_matrix((np.ones(n), (rows, position)), shape=(n, n_positions))
    return sp.hstack([sp.csr_matrix(context), a, p, np.ones((n, 1))]).tocsr()


@dataclass
class LogisticRewardModel:
    """L2-regularised logistic regression on [context, action one-hot, position one-hot].

    The default reward model for DM/DR: q(x, a, p) = sigmoid(w_x.x + w_a + w_p + b).
    """

    l2: float = 1.0
    coef_: np.ndarray | None = None

    def fit(self, data: LoggedData, n_actions: int, n_positions: int) -> LogisticRewardModel:
        ctx = data.context if data.context is not None else np.zeros((len(data), 0))
        X = _features(ctx, data.action, data.pos, n_actions, n_positions)
        y = data.reward.astype(np.float64)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = X @ w
            p = 1 / (1 + np.exp(-z))
            ll = np.logaddexp(0, z) - y * z
            reg = 0.5 * self.l2 * (w[:-1] ** 2).sum()
            grad = X.T @ (p - y)
            grad[:-1] += self.l2 * w[:-1]
            return float(ll.sum() + reg), grad

        w0 = np.zeros(X.shape[1])
        w0[-1] = np.log(max(y.mean(), 1e-6) / max(1 - y.mean(), 1e-6))
        res = scipy.optimize.minimize(loss, w0, jac=True, method="L-BFGS-B")
        self.coef_ = res.x
        self._dims = (ctx.shape[1], n_actions, n_positions)
        return self

    def predict_all(self, context: np.ndarray) -> np.ndarray:
        """q_hat of shape (n, n_actions, n_positions) for every action and position."""
        assert self.coef_ is not None
        d, n_actions, n_positions = self._dims
        wx = self.coef_[:d]
        wa = self.coef_[d:d + n_actions]
        wp = self.coef_[d + n_actions:d + n_actions + n_positions]
        b = self.coef_[-1]
        z = (context @ wx)[:, None, None] + wa[None, :, None] + wp[None, None, :] + b
        return 1 / (1 + np.exp(-z))


@dataclass
class GradientBoostingRewardModel:
    """Histogram gradient-boosted trees on [context, action, position] (optional scikit-learn).

    A drop-in alternative to :class:`LogisticRewardModel` for DM/DR when rewards depend on
    interactions between context and action that a linear model cannot express.
    """

    max_iter: int = 200
    learning_rate: float = 0.05
    max_leaf_nodes: int = 15
    seed: int = 2020

    def fit(self, data: LoggedData, n_actions: int, n_positions: int) -> GradientBoostingRewardModel:
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier
        except ImportError as e:  # pragma: no cover - optional extra
            raise ImportError("the gradient-boosting reward model needs scikit-learn: "
                              "pip install 'explorec[explore]'") from e
        ctx = data.context if data.context is not None else np.zeros((len(data), 0))
        X = np.hstack([ctx, data.action[:, None], data.pos[:, None]])
        d = ctx.shape[1]
        self.model_ = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, random_state=self.seed,
            categorical_features=[d, d + 1])
        y = data.reward.astype(int)
        if y.min() == y.max():
            raise ValueError("the reward model needs both rewarded and unrewarded rows")
        self.model_.fit(X, y)
        self._dims = (d, n_actions, n_positions)
        return self

    def predict_all(self, context: np.ndarray) -> np.ndarray:
        _, n_actions, n_positions = self._dims
        n = len(context)
        a, p = np.meshgrid(np.arange(n_actions), np.arange(n_positions), indexing="ij")
        grid = np.column_stack([a.ravel(), p.ravel()])  # (A*P, 2)
        out = np.empty((n, n_actions, n_positions))
        step = max(1, 200_000 // len(grid))
        for s0 in range(0, n, step):
            c = context[s0:s0 + step]
            X = np.hstack([np.repeat(c, len(grid), axis=0), np.tile(grid, (len(c), 1))])
            out[s0:s0 + step] = self.model_.predict_proba(X)[:, 1].reshape(len(c), n_actions, n_positions)
        return out


REWARD_MODELS = {"logistic": LogisticRewardModel, "gbdt": GradientBoostingRewardModel}


# ------------------------------------------------------------------ Bernoulli TS
def bts_action_distribution(alpha: np.ndarray, beta: np.ndarray, n_positions: int = 3, *,
                            n_sim: int = 1_000_000, seed: int = 2020, chunk: int = 100_000,
                            progress: Callable[[int], None] | None = None) -> np.ndarray:
    """P(item a at position p) under Bernoulli Thompson sampling with fixed Beta priors.

    Each simulation draws theta_a ~ Beta(alpha_a, beta_a) and shows the top ``n_positions``
    items by theta in order. Vectorised in chunks: one Beta draw matrix, one partial sort and
    one bincount per chunk. Returns (n_actions, n_positions); each column sums to 1.
    """
    rng = np.random.default_rng(seed)
    n_actions = len(alpha)
    counts = np.zeros(n_actions * n_positions, dtype=np.int64)
    done = 0
    while done < n_sim:
        m = min(chunk, n_sim - done)
        theta = rng.beta(alpha[None, :], beta[None, :], size=(m, n_actions))
        top = np.argpartition(-theta, n_positions - 1, axis=1)[:, :n_positions]
        order = np.argsort(-np.take_along_axis(theta, top, axis=1), axis=1)
        ranked = np.take_along_axis(top, order, axis=1)  # (m, positions), best first
        flat = ranked * n_positions + np.arange(n_positions)[None, :]
        counts += np.bincount(flat.ravel(), minlength=n_actions * n_positions)
        done += m
        if progress:
            progress(m)
    return (counts.reshape(n_actions, n_positions) / n_sim).astype(np.float64)
