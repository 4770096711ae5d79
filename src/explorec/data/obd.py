"""Open Bandit Dataset (ZOZOTOWN): logged bandit feedback with behaviour-policy propensities.

Default source: the small sample inside the ``obp==0.4.1`` wheel (obp is never imported).
The loader also reads the official full archive, whose layout is the same
(``{behavior}/{campaign}/{campaign}.csv`` and ``item_context.csv`` under one root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from explorec.data.fetch import WheelSource, fetch_wheel_files
from explorec.data.readers import read_table
from explorec.errors import DataError

BEHAVIORS = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")

_SHA = {
    "bts/all/all.csv": "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106",
    "bts/all/item_context.csv": "5d4359ba1cfa3ae88f0f1bae66bd633859fe6323817183632ee57b83539d9153",
    "bts/men/item_context.csv": "3b411ed6b0471316321a6b93f4f756bb25888eac6218cd71d0b603d41d85732d",
    "bts/men/men.csv": "db6d1f7ed2d591ba521533e45286d4c1fba7fe57a8ad2e80342210335f43c527",
    "bts/women/item_context.csv":
        "a56295bad066a558eb783055afd9279f5f4e209a4776eafc22151c53f0ac89d4",
    "bts/women/women.csv": "e5d1b49a39b608585a2f3014a3f54970430cd37a495c1b73fceb85cdf428a5b8",
    "random/all/all.csv": "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1",
    "random/all/item_context.csv":
        "eba04cc23d5f130a93ff174c5392986882b94c3839433cb8143870eaa6221358",
    "random/men/item_context.csv":
        "6d855c2b7e917d0448d71bbe62c023147495882c0fdc8c41e86fef86abf9fe09",
    "random/men/men.csv": "ede6d08c6877f99cd3770f7d09e26c738e6aa6de4445ccccfb1356ba5d06b1eb",
    "random/women/item_context.csv":
        "b1ca4905f97703d196004f2ad4552c1e90c2afad8b50688d333b0d2dc0b33147",
    "random/women/women.csv": "e65f3bd3beb17664fa69cc129bf7bf852a775f8ffa630506e505fc905315bb34",
    "prior_bts.yaml": "81a54fbdc184021ccc62ab97de81ec35461c032e3d7f99ccaa0a9745f732d251",
}
OBP_SOURCE = WheelSource(
    requirement="obp==0.4.1",
    members={
        **{f"obp/dataset/obd/{k}": k for k in _SHA if k.endswith(".csv")},
        "obp/policy/conf/prior_bts.yaml": "prior_bts.yaml",
    },
    sha256=_SHA,
)

_REQUIRED = ("timestamp", "item_id", "position", "click", "propensity_score")
USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))


def fetch_obd(*, wheel: str | Path | None = None, force: bool = False) -> Path:
    return fetch_wheel_files("obd", OBP_SOURCE, wheel=wheel, force=force)


@dataclass(frozen=True)
class BanditFeedback:
    """One logged bandit feedback file: one row per (impression, position).

    ``context`` is the one-hot encoding of the user features with the first level of each
    feature dropped (Open Bandit Pipeline's convention), over categories shared by all logs
    of the campaign so that a policy fit on one log can be evaluated on another.
    """

    behavior: str
    campaign: str
    timestamp: np.ndarray
    action: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    context: np.ndarray
    context_names: list[str]
    user_features: pd.DataFrame
    affinity: np.ndarray
    item_context: pd.DataFrame
    item_features: np.ndarray
    n_actions: int
    n_positions: int
    source: str = ""
    extra: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.action)

    @property
    def ctr(self) -> float:
        """On-policy value of the behaviour policy: the mean click of its own log."""
        return float(self.reward.mean())

    def info(self) -> dict[str, object]:
        return {
            "behavior": self.behavior,
            "campaign": self.campaign,
            "rows": len(self),
            "actions": self.n_actions,
            "positions": self.n_positions,
            "clicks": int(self.reward.sum()),
            "ctr": self.ctr,
            "context_dim": int(self.context.shape[1]),
            "distinct_contexts": int(self.user_features.drop_duplicates().shape[0]),
            "pscore_min": float(self.pscore.min()),
            "pscore_max": float(self.pscore.max()),
        }


def _log_path(root: Path, behavior: str, campaign: str) -> Path:
    return root / behavior / campaign / f"{campaign}.csv"


def _check(behavior: str, campaign: str) -> None:
    if behavior not in BEHAVIORS:
        raise DataError(f"unknown behavior policy {behavior!r}; expected one of {BEHAVIORS}")
    if campaign not in CAMPAIGNS:
        raise DataError(f"unknown campaign {campaign!r}; expected one of {CAMPAIGNS}")


def load_obd(behavior: str = "random", campaign: str = "all", *, root: str | Path | None = None,
             align: bool = True) -> BanditFeedback:
    """Load one OBD log. ``root`` defaults to the fetched small sample.

    With ``align`` the user-feature categories are the union over every behaviour policy's
    log of this campaign found under ``root``, so random and bts contexts have equal widths.
    """
    _check(behavior, campaign)
    root = Path(root) if root is not None else fetch_obd()
    path = _log_path(root, behavior, campaign)
    df = read_table(path, sep=",", index_col=0)
    missing = [c for c in (*_REQUIRED, *USER_FEATURES) if c not in df.columns]
    if missing:
        raise DataError(f"missing column; found {list(df.columns)[:12]}...", source=path,
                        column=missing[0])
    action = _int_column(df, "item_id", path)
    position_raw = _int_column(df, "position", path)
    reward = _int_column(df, "click", path).astype(np.float64)
    if not np.isin(reward, (0.0, 1.0)).all():
        row = int(np.flatnonzero(~np.isin(reward, (0.0, 1.0)))[0]) + 1
        raise DataError("click must be 0 or 1", source=path, column="click", row=row)
    pscore = pd.to_numeric(df["propensity_score"], errors="coerce").to_numpy()
    bad = ~((pscore > 0) & (pscore <= 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DataError(f"propensity must be in (0, 1], got {df['propensity_score'].iloc[row - 1]!r}",
                        source=path, column="propensity_score", row=row)
    ts = pd.to_datetime(df["timestamp"], errors="coerce", utc=True)
    if ts.isna().any():
        row = int(np.flatnonzero(ts.isna().to_numpy())[0]) + 1
        raise DataError("unparseable timestamp", source=path, column="timestamp", row=row)
    timestamp = (ts - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    # Position: dense rank - 1 (1/2/3 -> 0/1/2), as Open Bandit Pipeline does.
    levels, position = np.unique(position_raw, return_inverse=True)

    user_features = df[list(USER_FEATURES)].astype(str).reset_index(drop=True)
    logs = [behavior]
    if align:
        logs += [b for b in BEHAVIORS if b != behavior and _log_path(root, b, campaign).exists()]
    categories = _categories(root, campaign, logs, user_features)
    context, names = _one_hot_drop_first(user_features, categories)

    aff_cols = sorted((c for c in df.columns if c.startswith("user-item_affinity_")),
                      key=lambda c: int(c.rsplit("_", 1)[1]))
    affinity = df[aff_cols].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(np.float32)

    item_path = path.parent / "item_context.csv"
    item_context = read_table(item_path, sep=",", index_col=0)
    if "item_id" not in item_context.columns:
        raise DataError("missing column", source=item_path, column="item_id")
    item_ids = pd.to_numeric(item_context["item_id"], errors="coerce")
    if item_ids.isna().any():
        row = int(np.flatnonzero(item_ids.isna().to_numpy())[0]) + 1
        raise DataError(f"item_id must be an integer, got {item_context['item_id'].iloc[row - 1]!r}",
                        source=item_path, column="item_id", row=row)
    item_context["item_id"] = item_ids
    item_context = item_context.sort_values("item_id").reset_index(drop=True)
    n_actions = int(max(action.max() + 1, len(item_context)))
    return BanditFeedback(
        behavior=behavior, campaign=campaign, timestamp=timestamp, action=action,
        position=position.astype(np.int64), reward=reward, pscore=pscore.astype(np.float64),
        context=context, context_names=names, user_features=user_features, affinity=affinity,
        item_context=item_context, item_features=_item_features(item_context),
        n_actions=n_actions, n_positions=len(levels), source=str(path),
    )


def _int_column(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    num = pd.to_numeric(df[col], errors="coerce")
    bad = num.isna().to_numpy() | (np.modf(num.fillna(0.5).to_numpy())[0] != 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DataError(f"expected an integer, got {df[col].iloc[row - 1]!r}", source=path,
                        column=col, row=row)
    return num.to_numpy().astype(np.int64)


def _categories(root: Path, campaign: str, logs: list[str], first: pd.DataFrame
                ) -> dict[str, list[str]]:
    frames = [first]
    for b in logs[1:]:
        path = _log_path(root, b, campaign)
        other = read_table(path, sep=",", index_col=0)
        missing = [c for c in USER_FEATURES if c not in other.columns]
        if missing:
            raise DataError("missing column", source=path, column=missing[0])
        frames.append(other[list(USER_FEATURES)])
    allf = pd.concat(frames, ignore_index=True)
    return {c: sorted(allf[c].dropna().unique()) for c in USER_FEATURES}


def _one_hot_drop_first(features: pd.DataFrame, categories: dict[str, list[str]]
                        ) -> tuple[np.ndarray, list[str]]:
    blocks, names = [], []
    for col, cats in categories.items():
        codes = pd.Categorical(features[col], categories=cats).codes
        onehot = np.zeros((len(features), len(cats)), dtype=np.float32)
        onehot[np.arange(len(features)), codes] = 1.0
        blocks.append(onehot[:, 1:])
        names += [f"{col}={c}" for c in cats[1:]]
    return np.hstack(blocks), names


def _item_features(item_context: pd.DataFrame) -> np.ndarray:
    """Numeric item features: ``item_feature_0`` plus one-hot codes of the hashed columns.

    Hash strings are encoded per file by order of first appearance over sorted item ids
    (random and bts files group items identically but with different hash strings).
    """
    cols = [c for c in item_context.columns if c.startswith("item_feature_")]
    blocks = []
    for c in cols:
        num = pd.to_numeric(item_context[c], errors="coerce")
        if num.notna().all():
            blocks.append(num.to_numpy(np.float32)[:, None])
        else:
            codes, _ = pd.factorize(item_context[c])
            onehot = np.zeros((len(item_context), codes.max() + 1), dtype=np.float32)
            onehot[np.arange(len(codes)), codes] = 1.0
            blocks.append(onehot)
    return np.hstack(blocks) if blocks else np.zeros((len(item_context), 0), np.float32)


def load_bts_prior(campaign: str = "all", *, root: str | Path | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The Beta(alpha, beta) priors of ZOZOTOWN's Bernoulli Thompson sampling, per item."""
    import yaml

    root = Path(root) if root is not None else fetch_obd()
    path = root / "prior_bts.yaml"
    conf = yaml.safe_load(path.read_text())
    if campaign not in conf:
        raise DataError(f"no prior for campaign {campaign!r}", source=path)
    return np.asarray(conf[campaign]["alpha"], float), np.asarray(conf[campaign]["beta"], float)
