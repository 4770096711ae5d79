"""Summaries of simulation runs: mean and std over seeds, Markdown tables and PNG curves.

:data:`SUMMARY_FIELDS` are the original outcome columns; :data:`EXPLORATION_FIELDS` the
measures of exploration's value that every run also reports (see
:mod:`explorec.simulate.runner`), shown as a second table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from explorec.simulate.runner import SimulationResult

SUMMARY_FIELDS = ("cumulative_reward", "cumulative_regret", "ctr", "coverage",
                  "new_user_first_click_rounds", "new_users_reached",
                  "new_item_first_click_rounds", "new_items_reached", "seconds")

EXPLORATION_FIELDS = ("distinct_clusters_clicked", "new_interests_per_1k_visits", "users_retained",
                      "visits_per_user", "intra_list_diversity", "novelty", "discoverable_items",
                      "catalog_coverage")

FIELD_LABELS = {
    "cumulative_reward": "clicks",
    "cumulative_regret": "regret",
    "ctr": "CTR",
    "coverage": "coverage",
    "new_user_first_click_rounds": "new user: visits to 1st click",
    "new_users_reached": "new users clicked",
    "new_item_first_click_rounds": "new item: rounds to 1st click",
    "new_items_reached": "new items clicked",
    "seconds": "seconds",
    "distinct_clusters_clicked": "clusters clicked / user",
    "new_interests_per_1k_visits": "new interests / 1k visits",
    "users_retained": "users retained",
    "visits_per_user": "visits / user",
    "intra_list_diversity": "intra-list diversity",
    "novelty": "novelty (bits)",
    "discoverable_items": "items with >= 5 clicks",
    "catalog_coverage": "catalog coverage",
}

_FOUR_DECIMALS = {"ctr", "coverage", "new_users_reached", "new_items_reached", "users_retained",
                  "intra_list_diversity", "catalog_coverage"}


def summarize(results: Sequence[SimulationResult]) -> list[dict[str, Any]]:
    """One row per policy (in first-seen order): ``{field: mean, field_std: std, seeds: n}``."""
    names = list(dict.fromkeys(r.policy for r in results))
    rows = []
    for name in names:
        runs = [r for r in results if r.policy == name]
        row: dict[str, Any] = {"policy": name, "seeds": len(runs), "rounds": runs[0].rounds}
        row["dynamics"] = runs[0].dynamics
        for f in (*SUMMARY_FIELDS, *EXPLORATION_FIELDS):
            vals = np.array([getattr(r, f) for r in runs], dtype=np.float64)
            row[f] = float(np.nanmean(vals)) if not np.isnan(vals).all() else float("nan")
            row[f"{f}_std"] = float(np.nanstd(vals)) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def format_cell(value: float, std: float, field: str) -> str:
    if np.isnan(value):
        return "n/a"
    if field in _FOUR_DECIMALS:
        s = f"{value:.4f}"
        return s + (f" ± {std:.4f}" if std else "")
    if field == "discoverable_items":
        return f"{value:,.0f}" + (f" ± {std:,.1f}" if std else "")
    if field in ("distinct_clusters_clicked", "visits_per_user", "novelty"):
        s = f"{value:.2f}"
        return s + (f" ± {std:.2f}" if std else "")
    s = f"{value:,.1f}"
    return s + (f" ± {std:,.1f}" if std else "")


def markdown_table(rows: Sequence[dict[str, Any]], fields: Sequence[str] = SUMMARY_FIELDS) -> str:
    head = "| policy | " + " | ".join(FIELD_LABELS[f] for f in fields) + " |"
    sep = "|---|" + "---:|" * len(fields)
    body = ["| " + r["policy"] + " | "
            + " | ".join(format_cell(r[f], r[f + "_std"], f) for f in fields) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def plot_curves(results: Sequence[SimulationResult], path: str | Path) -> Path:
    """PNG with cumulative regret, CTR and cumulative new interests over time (mean over seeds,
    band = min..max) and coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from explorec._io import atomic_path

    names = list(dict.fromkeys(r.policy for r in results))
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.5))
    for name in names:
        runs = [r for r in results if r.policy == name and r.curves]
        if not runs:
            continue
        x = np.asarray(runs[0].curves["round"])
        for ax, key in ((axes[0], "cumulative_regret"), (axes[1], "ctr"),
                        (axes[3], "cumulative_new_interests")):
            if not all(key in r.curves for r in runs):
                continue
            ys = np.array([r.curves[key] for r in runs])
            (line,) = ax.plot(x, ys.mean(axis=0), label=name)
            if len(runs) > 1:
                ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), alpha=0.15, color=line.get_color())
    axes[0].set(title="Cumulative regret vs oracle", xlabel="round", ylabel="expected clicks lost")
    axes[1].set(title="CTR per slot over time", xlabel="round", ylabel="CTR")
    summary = summarize(results)
    axes[2].bar([r["policy"] for r in summary], [r["coverage"] for r in summary],
                yerr=[r["coverage_std"] for r in summary])
    axes[2].set(title="Catalog coverage", ylabel="share of released items shown")
    axes[2].tick_params(axis="x", rotation=45)
    axes[3].set(title="New interests discovered", xlabel="round",
                ylabel="clicks in a cluster new to the user")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
