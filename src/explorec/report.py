"""Readable results: rich tables for the terminal, Markdown for files, environment facts."""

from __future__ import annotations

from typing import Any

# run metadata lives in the leaf module explorec.runinfo (lower layers use it); re-exported
from explorec.runinfo import environment as environment

DEFAULT_COLUMNS = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "precision@10", "ndcg@20",
                   "recall@20", "auc", "itemcoverage@10")


def columns_for(results: list[dict[str, Any]], wanted: tuple[str, ...] = DEFAULT_COLUMNS
                ) -> list[str]:
    present = set().union(*(r["metrics"].keys() for r in results)) if results else set()
    cols = [c for c in wanted if c in present]
    return cols or sorted(present)[:8]


def leaderboard_markdown(report: dict[str, Any], columns: list[str] | None = None) -> str:
    results = report["results"]
    cols = columns or columns_for(results)
    info = report.get("split_info", {})
    if "test_candidates" in info:
        protocol = (f"Test-set metrics; each user ranks only the {info['test_candidates']} "
                    "held-out items, which no model saw in training (text only).")
    else:
        protocol = ("Test-set metrics, full ranking over all items minus the user's training "
                    "and validation items; models fit on the training part only.")
    lines = [
        f"# {report['dataset']} — split `{report['split']}`, seed {report['seed']}",
        "",
        protocol,
        "",
        "| model | " + " | ".join(cols) + " | fit s |",
        "|---|" + "---:|" * (len(cols) + 1),
    ]
    for r in sorted(results, key=lambda r: -r["metrics"].get(cols[0], 0.0)):
        vals = " | ".join(f"{r['metrics'].get(c, float('nan')):.4f}" for c in cols)
        lines.append(f"| {r['model']} | {vals} | {r['fit_seconds']:.2f} |")
    env = report.get("environment", {})
    if env:
        lines += ["", f"Machine: {env.get('platform')} ({env.get('cpu_count')} cores), "
                      f"Python {env.get('python')}, explorec {env.get('explorec')}."]
    if report.get("command"):
        lines += ["", f"Command: `{report['command']}`"]
    return "\n".join(lines) + "\n"


def leaderboard_table(report: dict[str, Any], columns: list[str] | None = None) -> Any:
    from rich.table import Table

    results = report["results"]
    cols = columns or columns_for(results)
    table = Table(title=f"{report['dataset']} · split {report['split']} · seed {report['seed']}"
                        " · test set")
    table.add_column("model", style="bold")
    for c in cols:
        table.add_column(c, justify="right")
    table.add_column("fit s", justify="right")
    best = {c: max(r["metrics"].get(c, float("-inf")) for r in results) for c in cols}
    for r in sorted(results, key=lambda r: -r["metrics"].get(cols[0], 0.0)):
        cells = []
        for c in cols:
            v = r["metrics"].get(c, float("nan"))
            cells.append(f"[green]{v:.4f}[/]" if v == best[c] else f"{v:.4f}")
        table.add_row(r["model"], *cells, f"{r['fit_seconds']:.2f}")
    return table
