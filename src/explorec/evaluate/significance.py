"""Is one model really better than another? Paired tests over users and bootstrap intervals.

Every model of one evaluation ranks the same held-out users, so each per-user metric gives
paired samples. For each model against a reference (the best model by the primary metric,
or a named baseline) and each per-user metric, :func:`compare` reports

- the mean difference ``model - reference`` over the users where both values are defined
  (NaN values, e.g. AUC of a user with no negative item, drop that user's pair);
- a paired t-test (:func:`scipy.stats.ttest_rel`) and a Wilcoxon signed-rank test
  (:func:`scipy.stats.wilcoxon`, its defaults: zero differences dropped), two-sided, each
  Holm-corrected across the models compared with the reference (one family per metric and
  test);
- a percentile bootstrap confidence interval of the mean difference (users resampled with
  replacement, ``n_resamples`` times, seeded: the same seed gives the same interval), and
  the same interval of each model's own mean.

The bootstrap is vectorised: the resamples are drawn once as a matrix of counts (how often
each user is drawn in each resample) and every comparison's mean is one matrix product, so
an interval depends only on the values, the number of users, ``n_resamples`` and the seed
(up to the last bits of float rounding, which BLAS may order differently for a different
number of columns).

:func:`within_noise` answers the coarser question benchmarks ask when they repeat a run over
a few seeds: is a difference between two sets of per-seed results larger than the spread?
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: the leaderboard's metric columns in order of preference; the first one present is the
#: primary metric (what "best" means and what the leaderboard is sorted by)
LEADERBOARD_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "precision@10", "ndcg@20",
                       "recall@20", "auc", "itemcoverage@10")

DEFAULT_SEED = 2020
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_ALPHA = 0.05
_CELLS = 1 << 23  # users x resamples per block of the count matrix (64 MiB of float64)


def primary_metric(names: Iterable[str]) -> str:
    """The primary metric among ``names``: the first of :data:`LEADERBOARD_METRICS` present,
    else the alphabetically first name."""
    present = set(names)
    if not present:
        raise ValueError("no metrics to choose a primary metric from")
    for m in LEADERBOARD_METRICS:
        if m in present:
            return m
    return sorted(present)[0]


# ------------------------------------------------------------------ multiple comparisons
def holm(pvalues: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN or None entries are not part
    of the family and stay NaN).

    With the m defined p-values sorted ascending, ``p_(i)`` becomes
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; the adjusted values are returned in the
    input order."""
    p = np.array([np.nan if v is None else float(v) for v in pvalues], dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


# ------------------------------------------------------------------ paired tests
@dataclass(frozen=True)
class PairedTest:
    """Two paired samples compared: ``a - b``."""

    n: int  #: pairs with both values defined
    mean_diff: float  #: mean of a - b over those pairs (NaN when n == 0)
    t: float  #: paired t statistic
    p_t: float  #: its two-sided p-value
    w: float  #: Wilcoxon signed-rank statistic
    p_wilcoxon: float  #: its two-sided p-value
    note: str | None = None  #: why a figure is degenerate or missing


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def paired_tests(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of ``a`` against ``b`` (two-sided).

    Pairs where either value is NaN are dropped. The figures are
    ``scipy.stats.ttest_rel(a, b)`` and ``scipy.stats.wilcoxon(a, b)`` with their defaults,
    except in the degenerate cases, which are answered without calling scipy (so no
    warnings): fewer than 2 pairs (NaN, with a note); all differences zero (t = 0,
    p = 1 for both tests); a constant non-zero difference (t = +/-inf, p_t = 0; the Wilcoxon
    test still applies)."""
    from scipy import stats

    x, y = _pairs(np.asarray(a), np.asarray(b))
    n = int(x.size)
    if n < 2:
        mean = float(np.mean(x - y)) if n else math.nan
        return PairedTest(n, mean, math.nan, math.nan, math.nan, math.nan,
                          note=f"{n} user(s) with both values: no test")
    d = x - y
    mean = float(d.mean())
    if not d.any():
        return PairedTest(n, 0.0, 0.0, 1.0, 0.0, 1.0, note="identical values")
    note = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-identical data: precision notes
        if np.all(d == d[0]):
            t, p_t = math.copysign(math.inf, d[0]), 0.0
            note = "constant difference"
        else:
            tt = stats.ttest_rel(x, y)
            t, p_t = float(tt.statistic), float(tt.pvalue)
        ww = stats.wilcoxon(x, y)
    return PairedTest(n, mean, t, p_t, float(ww.statistic), float(ww.pvalue), note=note)


# ------------------------------------------------------------------ bootstrap
def _count_blocks(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's resamples of ``n`` users as blocks of a (n_resamples, n) matrix of
    counts: entry (r, u) is how often user u is drawn in resample r. Seeded; the blocks'
    size depends only on ``n``."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CELLS // max(n, 1))
    for start in range(0, n_resamples, rows):
        r = min(rows, n_resamples - start)
        idx = rng.integers(0, n, size=(r, n))
        flat = (idx + (np.arange(r) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=r * n).reshape(r, n).astype(np.float64)


def bootstrap_means(values: np.ndarray, *, n_resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED) -> np.ndarray:
    """Bootstrap means of each column of ``values`` ((n_users,) or (n_users, c)); NaN entries
    are left out of each resample's mean. Returns (n_resamples,) or (n_resamples, c)."""
    v = np.asarray(values, dtype=np.float64)
    one = v.ndim == 1
    v2 = v[:, None] if one else v
    n = v2.shape[0]
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if n == 0:
        out = np.full((n_resamples, v2.shape[1]), np.nan)
        return out[:, 0] if one else out
    mask = np.isfinite(v2)
    filled = np.ascontiguousarray(np.where(mask, v2, 0.0))
    gaps = np.flatnonzero(~mask.all(axis=0))  # columns with NaN: their own resample sizes
    w = np.ascontiguousarray(mask[:, gaps], dtype=np.float64)
    parts = []
    for counts in _count_blocks(n, n_resamples, seed):
        block = counts @ filled / n  # every resample draws n users
        if len(gaps):
            sizes = counts @ w
            with np.errstate(invalid="ignore", divide="ignore"):
                block[:, gaps] = np.where(sizes > 0, block[:, gaps] * n / np.where(
                    sizes > 0, sizes, 1.0), np.nan)
        parts.append(block)
    means = np.concatenate(parts, axis=0)
    return means[:, 0] if one else means


def _interval(means: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1.0 - level) / 2.0
    finite = np.isfinite(means)
    lo = np.full(means.shape[1:], np.nan)
    hi = np.full(means.shape[1:], np.nan)
    cols = finite.any(axis=0)
    if cols.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            q = np.nanquantile(means[:, cols], [tail, 1.0 - tail], axis=0)
        lo[cols], hi[cols] = q[0], q[1]
    return lo, hi


def bootstrap_ci(values: np.ndarray | Sequence[float], *, level: float = DEFAULT_LEVEL,
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (per-user values, or per-user
    differences for the interval of a mean difference); NaN values are left out. Fewer than
    2 defined values give (NaN, NaN)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if np.isfinite(v).sum() < 2:
        return math.nan, math.nan
    lo, hi = _interval(bootstrap_means(v[:, None], n_resamples=n_resamples, seed=seed), level)
    return float(lo[0]), float(hi[0])


# ------------------------------------------------------------------ models against a reference
def _none(x: float) -> float | None:
    """JSON has no NaN: undefined figures are written as null."""
    return None if x is None or not math.isfinite(x) else float(x)


def _p(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _aligned(per_user: Mapping[str, Mapping[str, np.ndarray]],
             users: Mapping[str, np.ndarray] | None) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Per-user values restricted to the users every model was evaluated on, in one order."""
    names = list(per_user)
    if users is None:
        sizes = {len(v) for m in names for v in per_user[m].values()}
        if len(sizes) > 1:
            raise ValueError(f"per-user arrays differ in length ({sorted(sizes)}) and no user "
                             "ids were given to pair them")
        n = sizes.pop() if sizes else 0
        return {m: {k: np.asarray(v, dtype=np.float64) for k, v in per_user[m].items()}
                for m in names}, n
    common: np.ndarray | None = None
    for m in names:
        u = np.asarray(users[m], dtype=np.int64)
        common = u if common is None else np.intersect1d(common, u)
    common = np.unique(common) if common is not None else np.zeros(0, np.int64)
    out: dict[str, dict[str, np.ndarray]] = {}
    for m in names:
        # positions of the common users in this model's order
        _, _, pos = np.intersect1d(common, np.asarray(users[m], dtype=np.int64),
                                   return_indices=True)
        out[m] = {k: np.asarray(v, dtype=np.float64)[pos] for k, v in per_user[m].items()}
    return out, len(common)


def compare(
    per_user: Mapping[str, Mapping[str, np.ndarray]],
    *,
    users: Mapping[str, np.ndarray] | None = None,
    reference: str | None = None,
    primary: str | None = None,
    metrics: Sequence[str] | None = None,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Every model against a reference, on each per-user metric (JSON-ready).

    ``per_user[model][metric]`` holds one value per user (``EvalResult.per_user``);
    ``users[model]`` the user ids behind them (``EvalResult.users``; pairs are formed on the
    users every model has; without ``users`` the arrays must already be aligned).
    ``reference`` names the model to compare against (a baseline); by default it is the
    model with the highest mean ``primary`` metric (default :func:`primary_metric`).

    Returns ``{"reference", "reference_rule", "primary", "level", "resamples", "seed",
    "correction", "tests", "n_users", "note", "models": {model: {metric: {...}}}}`` where each
    metric holds ``mean``, ``ci_low``/``ci_high`` (the model's own mean), and for models other
    than the reference ``diff`` (model - reference), ``diff_ci_low``/``diff_ci_high``, ``t``,
    ``p_t``, ``p_t_holm``, ``w``, ``p_wilcoxon``, ``p_wilcoxon_holm``, ``n`` (pairs) and
    ``note``. Undefined figures are None.
    """
    names = list(per_user)
    if not names:
        raise ValueError("no models to compare")
    aligned, n_users = _aligned(per_user, users)
    shared = set.intersection(*(set(aligned[m]) for m in names))
    mets = [m for m in (metrics if metrics is not None else sorted(shared)) if m in shared]
    if primary is None:
        primary = primary_metric(mets) if mets else None
    elif primary not in shared:
        raise ValueError(f"primary metric {primary!r} has no per-user values; have "
                         f"{', '.join(sorted(shared)) or 'none'}")
    means = {m: {k: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
                 for k, v in aligned[m].items()} for m in names}
    if reference is not None:
        if reference not in per_user:
            raise ValueError(f"baseline {reference!r} is not among the models compared "
                             f"({', '.join(names)})")
        rule = "baseline"
    elif primary is None:
        rule = "none: no per-user metric shared by every model"
    else:
        # the highest mean; the first listed among equals
        ranked = [m for m in names if math.isfinite(means[m].get(primary, math.nan))]
        reference = max(ranked, key=lambda m: means[m][primary]) if ranked else names[0]
        rule = f"best by {primary}"
    others = [m for m in names if m != reference]
    note = None
    if not mets:
        note = "no per-user metric to compare"
        others = []
    elif not others:
        note = "one model only: no comparison"
    elif n_users < 2:
        note = f"{n_users} user(s) in common: no test"
    out: dict[str, Any] = {
        "reference": reference, "reference_rule": rule, "primary": primary, "level": level,
        "resamples": n_resamples, "seed": seed, "correction": "holm",
        "tests": ["paired t-test (scipy.stats.ttest_rel)",
                  "Wilcoxon signed-rank (scipy.stats.wilcoxon)"],
        "n_users": int(n_users), "note": note, "models": {m: {} for m in names},
    }
    if not mets:
        return out
    # one bootstrap (the same resamples of users) for every model's own mean and every
    # difference to the reference: one column each
    cols = [(m, k) for m in names for k in mets]
    pairs = [(m, k) for m in others for k in mets] if n_users >= 2 else []
    if n_users >= 2:
        stacked = np.column_stack([aligned[m][k] for m, k in cols]
                                  + [aligned[m][k] - aligned[reference][k] for m, k in pairs])
        lo, hi = _interval(bootstrap_means(stacked, n_resamples=n_resamples, seed=seed), level)
    else:
        lo = hi = np.full(len(cols), np.nan)
    for j, (m, k) in enumerate(cols):
        out["models"][m][k] = {"mean": _none(means[m][k]), "ci_low": _none(lo[j]),
                               "ci_high": _none(hi[j])}
    if not pairs:
        return out
    # differences: tests per pair, Holm per metric and test
    dlo, dhi = lo[len(cols):], hi[len(cols):]
    column = {pair: j for j, pair in enumerate(pairs)}
    tests = {(m, k): paired_tests(aligned[m][k], aligned[reference][k]) for m, k in pairs}
    for k in mets:
        ht = holm([tests[m, k].p_t for m in others])
        hw = holm([tests[m, k].p_wilcoxon for m in others])
        for i, m in enumerate(others):
            r = tests[m, k]
            j = column[m, k]
            zero = r.note == "identical values"
            out["models"][m][k].update({
                "reference": reference, "diff": _none(r.mean_diff),
                "diff_ci_low": 0.0 if zero else _none(dlo[j]),
                "diff_ci_high": 0.0 if zero else _none(dhi[j]),
                "t": _none(r.t), "p_t": _p(r.p_t), "p_t_holm": _p(ht[i]),
                "w": _none(r.w), "p_wilcoxon": _p(r.p_wilcoxon), "p_wilcoxon_holm": _p(hw[i]),
                "n": r.n, "note": r.note})
    return out


# ------------------------------------------------------------------ over seeds (benchmarks)
@dataclass(frozen=True)
class NoiseCheck:
    """Two sets of per-seed results compared (:func:`within_noise`)."""

    within: bool | None  #: True: the difference is within noise; None: cannot tell (< 2 seeds)
    diff: float  #: mean(a) - mean(b)
    p: float | None  #: the test's two-sided p-value
    test: str  #: "paired t" or "Welch t" (or why there is none)
    n: int  #: seeds (pairs, or the smaller side for Welch)
    std_a: float  #: sample std of a (ddof=1; NaN with one value)
    std_b: float

    def describe(self, digits: int = 4) -> str:
        """One phrase: "within noise (paired t over 3 seeds, p = 0.41)"."""
        if self.within is None:
            return f"noise unknown ({self.test})"
        verdict = "within noise" if self.within else "beyond noise"
        return f"{verdict} ({self.test} over {self.n} seeds, p = {_fmt_p(self.p)})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: _none(v) if isinstance(v, float) else v for k, v in d.items()}


def _fmt_p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def within_noise(a_values: Sequence[float] | np.ndarray, b_values: Sequence[float] | np.ndarray,
                 *, paired: bool | None = None, alpha: float = DEFAULT_ALPHA) -> NoiseCheck:
    """Is ``mean(a) - mean(b)`` within the run-to-run noise of the seeds?

    ``paired`` (default: when both have the same length) compares seed by seed with a
    paired t-test (the runs of one seed share their data split or simulated users); else a
    Welch t-test. Within noise means p >= ``alpha``. Fewer than 2 seeds cannot tell
    (``within`` is None); identical results are within noise (p = 1); a constant non-zero
    per-seed difference with no spread is beyond it (p = 0)."""
    from scipy import stats

    a = np.asarray(a_values, dtype=np.float64).ravel()
    b = np.asarray(b_values, dtype=np.float64).ravel()
    if paired is None:
        paired = a.size == b.size
    if paired:
        a, b = _pairs(a, b)
    else:
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    diff = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    sa = float(a.std(ddof=1)) if a.size > 1 else math.nan
    sb = float(b.std(ddof=1)) if b.size > 1 else math.nan
    n = int(a.size if paired else min(a.size, b.size))
    name = "paired t" if paired else "Welch t"
    if n < 2:
        return NoiseCheck(None, diff, None, f"{n} seed(s)", n, sa, sb)
    if paired:
        d = a - b
        if not d.any():
            return NoiseCheck(True, 0.0, 1.0, name, n, sa, sb)
        if np.all(d == d[0]):
            return NoiseCheck(False, diff, 0.0, name, n, sa, sb)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_rel(a, b).pvalue)
    else:
        if np.array_equal(np.sort(a), np.sort(b)) or (sa == 0 and sb == 0 and diff == 0):
            return NoiseCheck(True, diff, 1.0, name, n, sa, sb)
        if sa == 0 and sb == 0:
            return NoiseCheck(False, diff, 0.0, name, n, sa, sb)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return NoiseCheck(bool(p >= alpha), diff, p, name, n, sa, sb)


def noise_lines(values: Mapping[str, Sequence[float]], *, what: str,
                higher_is_better: bool = True, alpha: float = DEFAULT_ALPHA,
                digits: int = 4) -> list[str]:
    """Markdown bullets: every entry of ``values`` (name -> per-seed results, seeds in the
    same order) against the best by mean, each saying whether the gap is within noise
    (:func:`within_noise`). One line when there are fewer than 2 seeds."""
    names = [k for k, v in values.items() if len(v)]
    if len(names) < 2:
        return []
    mean = {k: float(np.nanmean(np.asarray(values[k], dtype=np.float64))) for k in names}
    best = (max if higher_is_better else min)(names, key=lambda k: mean[k])
    seeds = min(len(values[k]) for k in names)
    if seeds < 2:
        return [f"- {what}: one seed, so whether the differences exceed run-to-run noise is "
                "not known (run more seeds)."]
    lines = [f"- {what}: best {best} ({mean[best]:.{digits}f}); each other against it:"]
    for k in names:
        if k == best:
            continue
        c = within_noise(values[k], values[best], alpha=alpha)
        lines.append(f"  - {k}: {c.diff:+.{digits}f}, {c.describe()}")
    return lines


__all__ = ["DEFAULT_LEVEL", "DEFAULT_RESAMPLES", "DEFAULT_SEED", "LEADERBOARD_METRICS",
           "NoiseCheck", "PairedTest", "bootstrap_ci", "bootstrap_means", "compare", "holm",
           "noise_lines", "paired_tests", "primary_metric", "within_noise"]
