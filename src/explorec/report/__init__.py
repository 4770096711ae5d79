"""Readable results: rich tables for the terminal, Markdown for files, environment facts.

The self-contained HTML report of any run's JSON is :mod:`explorec.report.html`
(``explorec report RUN.json ... --output report.html``).
"""

from __future__ import annotations

import math
from typing import Any

from explorec.evaluate.significance import LEADERBOARD_METRICS

# run metadata lives in the leaf module explorec.runinfo (lower layers use it); re-exported
from explorec.runinfo import environment as environment

DEFAULT_COLUMNS = LEADERBOARD_METRICS


def columns_for(results: list[dict[str, Any]], wanted: tuple[str, ...] = DEFAULT_COLUMNS
                ) -> list[str]:
    present = set().union(*(r["metrics"].keys() for r in results)) if results else set()
    cols = [c for c in wanted if c in present]
    return cols or sorted(present)[:8]


# ------------------------------------------------------------------ significance cells
def fmt_p(p: float | None) -> str:
    """A p-value for a table: two significant digits, scientific below 1e-4, 'n/a' if None."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    if p == 0.0:
        return "<1e-300"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def fmt_num(x: float | None, digits: int = 4, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_ci(lo: float | None, hi: float | None, digits: int = 4, sign: bool = False) -> str:
    if lo is None or hi is None:
        return "n/a"
    return f"[{fmt_num(lo, digits, sign)}, {fmt_num(hi, digits, sign)}]"


def significance_cells(report: dict[str, Any], result: dict[str, Any]) -> dict[str, str] | None:
    """The significance figures of one result on the primary metric, formatted: ``diff``,
    ``diff_ci``, ``p_t``, ``p_w``, ``ci`` (the model's own mean); None when the report has
    no significance block (older JSON) or no primary metric."""
    info = report.get("significance")
    primary = info.get("primary") if info else None
    if not info or primary is None:
        return None
    s = result.get("significance", {}).get(primary)
    if s is None:
        return None
    own = fmt_ci(s.get("ci_low"), s.get("ci_high"))
    if result["model"] == info.get("reference"):
        return {"diff": "reference", "diff_ci": "", "p_t": "", "p_w": "", "ci": own}
    if "diff" not in s:
        return {"diff": "n/a", "diff_ci": "", "p_t": "", "p_w": "", "ci": own}
    return {"diff": fmt_num(s["diff"], sign=True),
            "diff_ci": fmt_ci(s.get("diff_ci_low"), s.get("diff_ci_high"), sign=True),
            "p_t": fmt_p(s.get("p_t_holm")), "p_w": fmt_p(s.get("p_wilcoxon_holm")), "ci": own}


def significance_caption(report: dict[str, Any]) -> str | None:
    """One sentence on how the significance columns were computed."""
    info = report.get("significance")
    if not info or info.get("primary") is None:
        return None
    if info.get("note"):
        return f"Significance: {info['note']}."
    others = sum(1 for r in report["results"] if r["model"] != info["reference"])
    level = round(100 * info.get("level", 0.95))
    return (f"Δ = model − {info['reference']} ({info['reference_rule']}) on {info['primary']}, "
            f"paired over {info['n_users']:,} test users; {level}% bootstrap interval "
            f"({info['resamples']:,} resamples of users, seed {info['seed']}); p: two-sided "
            f"paired t-test / Wilcoxon signed-rank, Holm-corrected across the {others} "
            f"model(s) compared.")


def _reference_label(report: dict[str, Any]) -> str:
    info = report.get("significance") or {}
    return "best" if info.get("reference_rule", "").startswith("best") else str(
        info.get("reference"))


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
    ordered = sorted(results, key=lambda r: -r["metrics"].get(cols[0], 0.0))
    for r in ordered:
        vals = " | ".join(f"{r['metrics'].get(c, float('nan')):.4f}" for c in cols)
        lines.append(f"| {r['model']} | {vals} | {r['fit_seconds']:.2f} |")
    caption = significance_caption(report)
    sig = report.get("significance") or {}
    if caption and not sig.get("note"):
        primary, ref = sig["primary"], sig["reference"]
        lines += ["", f"## Significance of {primary} against {ref}", "", caption,
                  "Every per-user metric's figures are in the JSON (`significance`).", "",
                  f"| model | {primary} | 95% CI | Δ vs {ref} | 95% CI of Δ | p t-test (Holm) "
                  "| p Wilcoxon (Holm) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in ordered:
            cells = significance_cells(report, r)
            if cells is None:
                continue
            lines.append(f"| {r['model']} | {fmt_num(r['metrics'].get(primary))} | {cells['ci']} "
                         f"| {cells['diff']} | {cells['diff_ci']} | {cells['p_t']} | "
                         f"{cells['p_w']} |")
    elif caption:
        lines += ["", caption]
    env = report.get("environment", {})
    if env:
        lines += ["", f"Machine: {env.get('platform')} ({env.get('cpu_count')} cores), "
                      f"Python {env.get('python')}, explorec {env.get('explorec')}."]
    if report.get("command"):
        lines += ["", f"Command: `{report['command']}`"]
    return "\n".join(lines) + "\n"


def leaderboard_table(report: dict[str, Any], columns: list[str] | None = None) -> Any:
    """The leaderboard as a rich table; with a significance block, two more columns (the
    primary metric's difference to the reference and its Holm-corrected paired t-test p) and
    the caption saying how they were computed (:func:`significance_table` has the rest)."""
    from rich.markup import escape
    from rich.table import Table

    results = report["results"]
    cols = columns or columns_for(results)
    table = Table(title=f"{report['dataset']} · split {report['split']} · seed {report['seed']}"
                        " · test set")
    table.add_column("model", style="bold")
    for c in cols:
        table.add_column(c, justify="right")
    table.add_column("fit s", justify="right")
    sig = report.get("significance") or {}
    with_sig = bool(significance_caption(report)) and not sig.get("note")
    if with_sig:
        table.add_column(f"Δ vs {_reference_label(report)}", justify="right")
        table.add_column("p (Holm)", justify="right")
    elif sig.get("note"):
        table.caption = escape(f"Significance: {sig['note']}.")
    best = {c: max(r["metrics"].get(c, float("-inf")) for r in results) for c in cols}
    for r in sorted(results, key=lambda r: -r["metrics"].get(cols[0], 0.0)):
        cells = []
        for c in cols:
            v = r["metrics"].get(c, float("nan"))
            cells.append(f"[green]{v:.4f}[/]" if v == best[c] else f"{v:.4f}")
        extra: list[str] = []
        if with_sig:
            s = significance_cells(report, r) or {"diff": "n/a", "p_t": ""}
            extra = [s["diff"], s["p_t"]]
        table.add_row(escape(r["model"]), *cells, f"{r['fit_seconds']:.2f}", *extra)
    return table


def significance_table(report: dict[str, Any]) -> Any:
    """The primary metric of every model against the reference as a rich table: mean and
    its interval, difference and its interval, Holm-corrected paired t-test and Wilcoxon
    p-values; None without a comparison."""
    from rich.markup import escape
    from rich.table import Table

    sig = report.get("significance") or {}
    caption = significance_caption(report)
    if not caption or sig.get("note"):
        return None
    primary, ref = sig["primary"], sig["reference"]
    table = Table(title=f"{primary}: each model against {ref} ({sig['reference_rule']})",
                  caption=escape(caption))
    table.add_column("model", style="bold")
    for c in (primary, "95% CI", f"Δ vs {ref}", "95% CI of Δ", "p t-test (Holm)",
              "p Wilcoxon (Holm)"):
        table.add_column(escape(c), justify="right")
    for r in sorted(report["results"], key=lambda r: -r["metrics"].get(primary, 0.0)):
        s = significance_cells(report, r)
        if s is None:
            continue
        table.add_row(escape(r["model"]), fmt_num(r["metrics"].get(primary)), s["ci"], s["diff"],
                      s["diff_ci"], s["p_t"], s["p_w"])
    return table
