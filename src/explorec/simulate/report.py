"""Summaries of simulation runs: mean and std over seeds, a Markdown table and PNG curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from explorec.simulate.runner import SimulationResult

SUMMARY_FIELDS = ("cumulative_reward", "cumulative_regret", "ctr", "coverage",
                  "new_user_first_click_rounds", "new_users_reached",
                  "new_item_first_click_rounds", "new_items_reached", "seconds")

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
}


def summarize(results: Sequence[SimulationResult]) -> list[dict[str, Any]]:
    """One row per policy (in first-seen order): ``{field: mean, field_std: std, seeds: n}``."""
    names = list(dict.fromkeys(r.policy for r in results))
    rows = []
    for name in names:
        runs = [r for r in results if r.policy == name]
        row: dict[str, Any] = {"policy": name, "seeds": len(runs), "rounds": runs[0].rounds}
        for f in SUMMARY_FIELDS:
            vals = np.array([getattr(r, f) for r in runs], dtype=np.float64)
            row[f] = float(np.nanmean(vals)) if not np.isnan(vals).all() else float("nan")
            row[f"{f}_std"] = float(np.nanstd(vals)) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def format_cell(value: float, std: float, field: str) -> str:
    if np.isnan(value):
        return "n/a"
    if field in ("ctr", "coverage", "new_users_reached", "new_items_reached"):
        s = f"{value:.4f}"
        return s + (f" ± {std:.4f}" if std else "")
    s = f"{value:,.1f}"
    return s + (f" ± {std:,.1f}" if std else "")


def markdown_table(rows: Sequence[dict[str, Any]], fields: Sequence[str] = SUMMARY_FIELDS) -> str:
    head = "| policy | " + " | ".join(FIELD_LABELS[f] for f in fields) + " |"
    sep = "|---|" + "---:|" * len(fields)
    body = ["| " + r["policy"] + " | "
            + " | ".join(format_cell(r[f], r[f + "_std"], f) for f in fields) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def plot_curves(results: Sequence[SimulationResult], path: str | Path) -> Path:
    """PNG with cumulative regret, CTR over time (mean over seeds, band = min..max) and coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from explorec._io import atomic_path

    names = list(dict.fromkeys(r.policy for r in results))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for name in names:
        runs = [r for r in results if r.policy == name and r.curves]
        if not runs:
            continue
        x = np.asarray(runs[0].curves["round"])
        for ax, key in ((axes[0], "cumulative_regret"), (axes[1], "ctr")):
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
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
