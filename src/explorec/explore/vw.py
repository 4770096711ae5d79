"""Vowpal Wabbit as a policy: ``--cb_explore_adf`` inside explorec's runs (optional dependency).

Each request becomes one VW multi-line example: a ``shared`` line with the user's interest
vector (and user features) and one action line per candidate with the base model's z-score
and the item's PCA-reduced LM vector; ``-q UA`` crosses user and action namespaces. VW returns
a probability mass function over the candidates (``--epsilon`` exploration by default); the
slate is a Plackett-Luce draw from that pmf, with per-position propensities estimated from
``n_draws`` draws as for every sampling policy. VW's cb_explore_adf learns one action per
example, so by default it learns from the top slot of each slate (``learn_positions=1``) with
that slot's propensity; more slots can be fed at proportional cost.
"""

from __future__ import annotations

import numpy as np

from explorec.errors import ExploRecError
from explorec.explore.base import DEFAULT_SEED, BasePolicy, Feedback, Requests, sampled_slates
from explorec.explore.greedy import standardize
from explorec.explore.linear import LMFeatures


def _fmt(values: np.ndarray, prefix: str) -> list[str]:
    return [" ".join(f"{prefix}{j}:{x:.4f}" for j, x in enumerate(row)) for row in values]


class VowpalWabbitPolicy(BasePolicy):
    """Vowpal Wabbit ``--cb_explore_adf`` with a chosen exploration (``exploration`` args)."""

    name = "vw"
    needs_item_text = True
    n_context = -1  # user context features join the shared namespace: any number

    def __init__(self, exploration: str = "--epsilon 0.1", dim: int = 16, n_draws: int = 64,
                 learn_positions: int = 1, extra_args: str = "", *, seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed=seed)
        self.exploration = exploration
        self.dim = int(dim)
        self.n_draws = int(n_draws)
        self.learn_positions = int(learn_positions)
        self.extra_args = extra_args

    def _prepare(self) -> None:
        try:
            import vowpalwabbit
        except ImportError as e:  # pragma: no cover - exercised only without the extra
            raise ExploRecError("policy 'vw' needs the optional dependency vowpalwabbit: "
                                "pip install 'explorec[explore]'") from e
        if self.item_vectors is None:
            raise ExploRecError("policy 'vw' needs item_vectors (LM item embeddings)")
        self.features = LMFeatures(self.item_vectors, self.dim)
        self._item_text = _fmt(self.features.V, "v")
        self.ws = vowpalwabbit.Workspace(self._args())

    def _args(self) -> str:
        return (f"--cb_explore_adf {self.exploration} -q UA --quiet --random_seed {self.seed} "
                f"{self.extra_args}").strip()

    # VW saves its model to files only: the state goes through a temporary one
    def get_state(self) -> dict[str, np.ndarray]:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "vw.model"
            self.ws.save(str(f))
            return {"vw_model": np.frombuffer(f.read_bytes(), dtype=np.uint8).copy()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        import tempfile
        from pathlib import Path

        import vowpalwabbit

        if "vw_model" not in state:
            raise ExploRecError("policy 'vw': state has no 'vw_model' array")
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "vw.model"
            f.write_bytes(np.asarray(state["vw_model"], dtype=np.uint8).tobytes())
            self.ws = vowpalwabbit.Workspace(f"{self._args()} -i {f}")

    def _grow(self, n_new: int) -> None:
        assert self.item_vectors is not None
        self.features.add_items(self.item_vectors[-n_new:])
        self._item_text += _fmt(self.features.V[-n_new:], "v")

    def _refresh_items(self, items: np.ndarray, item_vectors: np.ndarray) -> None:
        """Re-texted items: their reduced vectors and action lines (the PCA stays fitted)."""
        self.features.V[items] = self.features.transform(item_vectors)
        for i, text in zip(items, _fmt(self.features.V[items], "v"), strict=True):
            self._item_text[int(i)] = text

    def _examples(self, requests: Requests, base: np.ndarray, row: int, u_text: str, z: np.ndarray
                  ) -> list[str]:
        cand = requests.candidates[row][requests.mask[row]]
        zs = z[row][requests.mask[row]]
        return [f"shared |U {u_text}"] + [f"|A z:{s:.4f} {self._item_text[i]}" for i, s in zip(cand, zs,
                                                                                             strict=True)]

    def _user_text(self, requests: Requests) -> list[str]:
        u = self.features.user_vectors(requests)
        if requests.context is not None:
            u = np.hstack([u, requests.context])
        return _fmt(u, "u")

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        base = self.base_scores(requests)
        z = standardize(base, requests.mask)
        b, c = requests.candidates.shape
        pmf = np.zeros((b, c))
        for row, u_text in enumerate(self._user_text(requests)):
            p = np.asarray(self.ws.predict(self._examples(requests, base, row, u_text, z)))
            pmf[row, np.flatnonzero(requests.mask[row])] = p / p.sum()
        with np.errstate(divide="ignore"):
            logp = np.log(pmf)
        gumbel = -np.log(-np.log(self.rng.random((b, self.n_draws, c)) + 1e-300) + 1e-300)
        draws = np.where((pmf > 0)[:, None, :], logp[:, None, :] + gumbel, -np.inf)
        if ((pmf > 0).sum(axis=1) < k).any():
            # VW may give zero mass to some actions (e.g. greedy exploration); keep them rankable
            draws = np.where(requests.mask[:, None, :] & ~np.isfinite(draws), -1e6 + gumbel, draws)
        pos, dist = sampled_slates(draws, k, self.rng)
        return pos, np.take_along_axis(pmf, pos, axis=1), dist

    def update(self, feedback: Feedback) -> None:
        rows, pos, r = feedback.observed()
        keep = pos < self.learn_positions
        rows, pos, r = rows[keep], pos[keep], r[keep]
        if not len(rows):
            return
        req = feedback.requests
        base = self.base_scores(req)
        z = standardize(base, req.mask)
        u_texts = self._user_text(req)
        for row, j, reward in zip(rows, pos, r, strict=True):
            ex = self._examples(req, base, row, u_texts[row], z)
            # action lines follow the shared line in the order of the valid candidates
            col = int(feedback.slates.positions[row, j])
            line = 1 + int(req.mask[row, :col].sum())
            p = float(feedback.slates.propensities[row, j])
            ex[line] = f"0:{-float(reward):.4f}:{max(p, 1e-6):.6f} {ex[line]}"
            self.ws.learn(ex)
