"""One self-contained HTML file from the JSON that explorec's runs write.

``explorec report RUN.json [RUN2.json ...] --output report.html`` and the ``--html FILE``
option of ``evaluate``, ``simulate``, ``ope`` and ``tune`` call :func:`write_report`. Each
input's kind is read from its keys (:func:`detect_kind`):

- ``evaluate``: leaderboard, each model's mean with its bootstrap interval, the difference
  to the reference model with its interval and Holm-corrected p-values
  (:mod:`explorec.evaluate.significance`), per-model metric bars;
- ``simulate``: per-policy summary (mean ± std over seeds), whether each policy's clicks
  differ from the best beyond seed noise, curves per round;
- ``ope`` (Open Bandit Dataset, both directions) and ``ope-log`` (a service's log):
  estimates with their bootstrap intervals;
- ``tune``: the trials, best so far;
- benchmarks: ``benchmark-leaderboard`` (models x metrics as mean ± std over seeds, e.g.
  ``benchmarks/baselines.py``, ``benchmarks/zoo.py``), ``benchmark-simulation``
  (``benchmarks/simulation.py``), and ``benchmark`` (any other benchmark JSON: its figures
  as a table).

Charts are plotly figures drawn by the plotly.js that the installed ``plotly`` package
carries, inlined in the file (no CDN, nothing fetched when the file is opened); the page is a
Jinja2 template (``templates/report.html.j2``) with autoescaping, so every text taken from
the JSON is escaped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorec.errors import ExploRecError
from explorec.report import (
    columns_for,
    fmt_ci,
    fmt_num,
    fmt_p,
    significance_caption,
    significance_cells,
)

KINDS = ("evaluate", "simulate", "ope", "ope-log", "tune", "benchmark-leaderboard",
         "benchmark-simulation", "benchmark")
_GENERIC_ROWS = 400  # rows of the generic benchmark table


class ReportError(ExploRecError, ValueError):
    """A file that cannot be read as a run's JSON; the message names it."""


# ------------------------------------------------------------------ page model
@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]  # cells: str, or {"text": str, "best": bool}
    caption: str | None = None
    collapsed: bool = False  # shown inside <details>
    numeric: list[bool] | None = None  # right-aligned columns
    wrap: bool = False  # long cells wrap (text tables)


@dataclass
class Section:
    title: str
    kind: str
    source: str
    meta: list[tuple[str, str]] = field(default_factory=list)
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # ("table"|"figure"|"notes"|"h3", ...)
    anchor: str = ""


@dataclass
class Run:
    """One input file: its path, detected kind and parsed JSON."""

    source: str
    kind: str
    data: dict[str, Any]


# ------------------------------------------------------------------ kinds
def _is_leaderboard(value: Any) -> bool:
    """{model: {metric: {"mean": x, "std": y}, ...}, ...} (benchmarks over seeds)."""
    if not isinstance(value, dict) or not value:
        return False
    entries = [v for v in value.values() if isinstance(v, dict)]
    if len(entries) != len(value):
        return False
    return all(any(isinstance(x, dict) and "mean" in x and "std" in x for x in e.values())
               for e in entries)


def detect_kind(data: Any) -> str | None:
    """The kind of run a JSON object is (one of :data:`KINDS`), or None."""
    if not isinstance(data, dict):
        return None
    results = data.get("results")
    if (isinstance(results, list) and results and "split" in data
            and all(isinstance(r, dict) and "model" in r and "metrics" in r for r in results)):
        return "evaluate"
    if (isinstance(data.get("summary"), list) and isinstance(results, list)
            and all(isinstance(r, dict) and "policy" in r for r in results)):
        return "simulate"
    if isinstance(data.get("estimates"), list):
        if "ground_truth" in data:
            return "ope"
        if "store" in data:
            return "ope-log"
    if isinstance(data.get("history"), list) and "best_params" in data:
        return "tune"
    bases = data.get("bases")
    if isinstance(bases, dict) and bases and all(
            isinstance(b, dict) and "summary" in b and "results" in b for b in bases.values()):
        return "benchmark-simulation"
    if any(_is_leaderboard(v) for v in data.values()):
        return "benchmark-leaderboard"
    if "environment" in data or str(data.get("command", "")).startswith("python benchmarks/"):
        return "benchmark"
    return None


def load_run(path: str | Path) -> Run:
    """Read one run's JSON; a missing, unreadable or unknown file is a :class:`ReportError`
    naming it."""
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"{p}: no such file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ReportError(f"{p}: not a UTF-8 text file ({e.reason})") from e
    except json.JSONDecodeError as e:
        raise ReportError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
                          ) from e
    return run_from_data(data, str(p))


def run_from_data(data: Any, source: str) -> Run:
    kind = detect_kind(data)
    if kind is None:
        keys = ", ".join(sorted(map(str, data))[:12]) if isinstance(data, dict) else \
            type(data).__name__
        raise ReportError(f"{source}: not a run's JSON that explorec writes (evaluate, simulate, "
                          f"ope, tune or a benchmark); found: {keys or 'an empty object'}")
    return Run(source=source, kind=kind, data=data)


# ------------------------------------------------------------------ figures
def _figure(data: list[Any], layout: dict[str, Any]) -> dict[str, Any]:
    """A plotly figure as plain JSON (validated by plotly's graph objects)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    fig = go.Figure(data=data, layout={"template": "plotly_white", "height": 420,
                                       "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
                                       **layout})
    return json.loads(pio.to_json(fig, validate=True))


def _err(mean: float | None, lo: float | None, hi: float | None) -> tuple[float | None, float | None]:
    if mean is None or lo is None or hi is None:
        return None, None
    return max(0.0, hi - mean), max(0.0, mean - lo)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _notes(lead: str, items: Sequence[str] = ()) -> dict[str, Any]:
    return {"lead": lead, "items": list(items)}


def _meta_env(data: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    env = data.get("environment")
    if isinstance(env, dict):
        out.append(("machine", f"{env.get('platform', '?')} ({env.get('cpu_count', '?')} cores), "
                               f"Python {env.get('python', '?')}, explorec {env.get('explorec', '?')}"))
    if data.get("command"):
        out.append(("command", str(data["command"])))
    return out


# ------------------------------------------------------------------ evaluate
def _evaluate_section(run: Run) -> Section:
    d = run.data
    results = d["results"]
    cols = columns_for(results)
    primary = cols[0]
    info = d.get("split_info", {})
    sec = Section(title=f"Leaderboard: {d.get('dataset', '?')} · split {d.get('split', '?')} · "
                        f"seed {d.get('seed', '?')}", kind=run.kind, source=run.source)
    sec.meta = [("dataset", str(d.get("dataset"))), ("split", f"{d.get('split')} (seed {d.get('seed')})")]
    if "test_users" in info:
        sec.meta.append(("test users", f"{info['test_users']:,}"))
    sec.meta += _meta_env(d)
    sig = d.get("significance") or {}
    with_sig = bool(sig) and sig.get("primary") is not None and not sig.get("note")
    ordered = sorted(results, key=lambda r: -(_num(r["metrics"].get(primary)) or 0.0))
    best = {c: max((_num(r["metrics"].get(c)) for r in results), key=lambda v: -math.inf
                   if v is None else v) for c in cols}
    headers = ["model", *cols, "fit s"]
    if with_sig:
        ref_label = "best" if str(sig.get("reference_rule", "")).startswith("best") else \
            str(sig.get("reference"))
        headers += [f"{sig['primary']} 95% CI", f"Δ vs {ref_label}", "95% CI of Δ",
                    "p t-test (Holm)", "p Wilcoxon (Holm)"]
    rows = []
    for r in ordered:
        row: list[Any] = [r["model"]]
        for c in cols:
            v = _num(r["metrics"].get(c))
            row.append({"text": fmt_num(v), "best": v is not None and v == best[c]})
        row.append(fmt_num(_num(r.get("fit_seconds")), 2))
        if with_sig:
            cells = significance_cells(d, r) or {"ci": "n/a", "diff": "n/a", "diff_ci": "",
                                                 "p_t": "", "p_w": ""}
            row += [cells["ci"], cells["diff"], cells["diff_ci"], cells["p_t"], cells["p_w"]]
        rows.append(row)
    caption = significance_caption(d) or ("This JSON has no significance block (written before "
                                          "explorec computed one).")
    sec.blocks.append(("table", Table(headers, rows, caption=caption,
                                      numeric=[False] + [True] * (len(headers) - 1))))
    # per-model metric bars, with each model's own 95% bootstrap interval where known
    bars = []
    for r in ordered:
        s = r.get("significance", {})
        ys, plus, minus = [], [], []
        for c in cols:
            y = _num(r["metrics"].get(c))
            e = s.get(c, {})
            hi, lo = _err(y, e.get("ci_low"), e.get("ci_high"))
            ys.append(y)
            plus.append(hi)
            minus.append(lo)
        bar: dict[str, Any] = {"type": "bar", "name": r["model"], "x": cols, "y": ys}
        if any(v is not None for v in plus):
            bar["error_y"] = {"type": "data", "symmetric": False, "array": plus,
                              "arrayminus": minus}
        bars.append(bar)
    sec.blocks.append(("figure", _figure(bars, {
        "title": {"text": "Test metrics per model (error bars: 95% bootstrap interval over users)"},
        "barmode": "group", "yaxis": {"title": {"text": "value"}}})))
    if with_sig:
        p = sig["primary"]
        others = [r for r in ordered if r["model"] != sig["reference"]
                  and r.get("significance", {}).get(p, {}).get("diff") is not None]
        if others:
            diffs = [r["significance"][p] for r in others]
            sec.blocks.append(("figure", _figure([{
                "type": "scatter", "mode": "markers", "name": f"Δ {p}",
                "x": [s["diff"] for s in diffs], "y": [r["model"] for r in others],
                "error_x": {"type": "data", "symmetric": False,
                            "array": [_err(s["diff"], s.get("diff_ci_low"), s.get("diff_ci_high"))[0]
                                      for s in diffs],
                            "arrayminus": [_err(s["diff"], s.get("diff_ci_low"),
                                                s.get("diff_ci_high"))[1] for s in diffs]},
            }], {"title": {"text": f"{p}: model − {sig['reference']} (95% bootstrap interval)"},
                 "xaxis": {"title": {"text": f"Δ {p}"}, "zeroline": True, "zerolinewidth": 2},
                 "yaxis": {"autorange": "reversed"},
                 "height": max(260, 60 + 40 * len(others))})))
        # every per-user metric's comparison
        detail = []
        for r in ordered:
            if r["model"] == sig["reference"]:
                continue
            for m, s in r.get("significance", {}).items():
                if "diff" not in s:
                    continue
                detail.append([r["model"], m, fmt_num(s.get("mean")),
                               fmt_num(s.get("diff"), sign=True),
                               fmt_ci(s.get("diff_ci_low"), s.get("diff_ci_high"), sign=True),
                               fmt_p(s.get("p_t")), fmt_p(s.get("p_t_holm")),
                               fmt_p(s.get("p_wilcoxon")), fmt_p(s.get("p_wilcoxon_holm")),
                               str(s.get("n", "")), s.get("note") or ""])
        if detail:
            sec.blocks.append(("table", Table(
                ["model", "metric", "mean", f"Δ vs {sig['reference']}", "95% CI of Δ", "p t",
                 "p t (Holm)", "p Wilcoxon", "p Wilcoxon (Holm)", "users", "note"], detail,
                caption="Every per-user metric against the reference (Holm across models, per "
                        "metric and test).", collapsed=True,
                numeric=[False, False] + [True] * 8 + [False])))
    everything = sorted(set().union(*(r["metrics"] for r in results)))
    sec.blocks.append(("table", Table(
        ["model", *everything], [[r["model"], *(fmt_num(_num(r["metrics"].get(m))) for m in everything)]
                                 for r in ordered],
        caption="All test metrics.", collapsed=True, numeric=[False] + [True] * len(everything))))
    return sec


# ------------------------------------------------------------------ simulate
def _labels() -> dict[str, str]:
    try:
        from explorec.simulate.report import FIELD_LABELS
    except ImportError:  # pragma: no cover - the simulate layer is part of explorec
        return {}
    return dict(FIELD_LABELS)


def _digits(v: float) -> int:
    """Decimals for a figure of this size: 4 below 10, 2 below 100, 1 above."""
    a = abs(v)
    return 4 if a < 10 else 2 if a < 100 else 1


def _fmt_value(x: Any, digits: int | None = None) -> str:
    v = _num(x)
    if v is None:
        return "n/a" if x is None or isinstance(x, float) else str(x)
    if v == int(v) and abs(v) >= 10:
        return f"{int(v):,}"
    return f"{v:,.{_digits(v) if digits is None else digits}f}"


def _fmt_pair(mean: Any, std: Any) -> str:
    """mean ± std with the decimals the mean's size calls for (± omitted when std is 0)."""
    m, s = _num(mean), _num(std)
    if m is None:
        return _fmt_value(mean)
    d = _digits(m)
    text = f"{m:,.{d}f}"
    return text + (f" ± {s:,.{d}f}" if s else "")


def _simulate_blocks(summary: list[dict[str, Any]], results: list[dict[str, Any]]
                     ) -> list[tuple[str, Any]]:
    from explorec.evaluate.significance import within_noise

    labels = _labels()
    blocks: list[tuple[str, Any]] = []
    fields = [k for k in (summary[0] if summary else {})
              if f"{k}_std" in summary[0] and k not in ("seconds",)]
    rows = []
    for r in summary:
        row: list[Any] = [r.get("policy", "?")]
        row += [_fmt_pair(r.get(f), r.get(f"{f}_std")) for f in fields]
        rows.append(row)
    blocks.append(("table", Table(["policy", *(labels.get(f, f) for f in fields)], rows,
                                  caption="Mean ± std over seeds.",
                                  numeric=[False] + [True] * len(fields))))
    # clicks against the best policy: beyond the seeds' noise?
    by_policy: dict[str, dict[int, float]] = {}
    for r in results:
        v = _num(r.get("cumulative_reward"))
        if v is not None:
            by_policy.setdefault(str(r.get("policy")), {})[int(r.get("seed", 0))] = v
    if len(by_policy) > 1:
        seeds = sorted(set.intersection(*(set(v) for v in by_policy.values())))
        mean = {p: sum(v[s] for s in seeds) / max(1, len(seeds)) for p, v in by_policy.items()}
        best = max(mean, key=lambda p: mean[p])
        if len(seeds) < 2:
            blocks.append(("notes", _notes(
                f"One seed: whether the policies' clicks differ beyond run-to-run noise is not "
                f"known (best: {best}, {mean[best]:,.0f} clicks; run 2 or more seeds).")))
        else:
            items = []
            for p in mean:
                if p == best:
                    continue
                c = within_noise([by_policy[p][s] for s in seeds], [by_policy[best][s] for s in seeds])
                items.append(f"{p}: {c.diff:+,.1f} clicks, {c.describe()}")
            blocks.append(("notes", _notes(
                f"Cumulative clicks against the best policy, {best} ({mean[best]:,.1f}), seed by "
                f"seed over seeds {seeds[0]}..{seeds[-1]}:", items)))
    # curves: mean over seeds per policy, with a ±1 std band when there are several seeds
    curves: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if isinstance(r.get("curves"), dict):
            curves.setdefault(str(r.get("policy")), []).append(r["curves"])
    keys = [k for k in (next(iter(curves.values()))[0] if curves else {}) if k != "round"]
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"]
    for key in keys:
        traces = []
        for i, (policy, runs) in enumerate(curves.items()):
            runs = [c for c in runs if key in c and "round" in c]
            if not runs:
                continue
            n = min(len(c["round"]) for c in runs)
            x = runs[0]["round"][:n]
            vals = [[_num(v) for v in c[key][:n]] for c in runs]
            mean, std = [], []
            for j in range(n):
                col = [v[j] for v in vals if v[j] is not None]
                mu = sum(col) / len(col) if col else None
                mean.append(mu)
                std.append(math.sqrt(sum((y - mu) ** 2 for y in col) / (len(col) - 1))
                           if mu is not None and len(col) > 1 else None)
            color = palette[i % len(palette)]
            if len(runs) > 1 and all(s is not None for s in std):
                upper = [m + s for m, s in zip(mean, std, strict=True)]
                lower = [m - s for m, s in zip(mean, std, strict=True)]
                traces.append({"type": "scatter", "x": list(x) + list(x)[::-1],
                               "y": upper + lower[::-1], "fill": "toself", "fillcolor": color,
                               "opacity": 0.15, "line": {"width": 0}, "hoverinfo": "skip",
                               "showlegend": False, "name": f"{policy} ± std"})
            traces.append({"type": "scatter", "mode": "lines", "x": x, "y": mean, "name": policy,
                           "line": {"color": color}})
        if traces:
            label = key.replace("_", " ")
            blocks.append(("figure", _figure(traces, {
                "title": {"text": f"{label} per round" + (" (mean over seeds, band ±1 std)"
                                                          if any(len(v) > 1 for v in curves.values())
                                                          else "")},
                "xaxis": {"title": {"text": "round"}}, "yaxis": {"title": {"text": label}}})))
    return blocks


def _simulate_section(run: Run) -> Section:
    d = run.data
    sec = Section(title=f"Simulation: {d.get('dataset', '?')}, {d.get('rounds', 0):,} rounds, "
                        f"slate {d.get('slate_size', '?')}", kind=run.kind, source=run.source)
    for key, label in (("model", "base model"), ("encoder", "encoder"), ("dynamics", "users"),
                       ("seeds", "seeds"), ("seed", "first seed"), ("batch_size", "batch size")):
        if key in d:
            sec.meta.append((label, str(d[key])))
    sec.meta += _meta_env(d)
    sec.blocks += _simulate_blocks(d["summary"], d["results"])
    return sec


def _benchmark_simulation_sections(run: Run) -> list[Section]:
    d = run.data
    out = []
    for base, b in d["bases"].items():
        sec = Section(title=f"Simulation benchmark: base model {base}, {d.get('rounds', 0):,} "
                            f"rounds, slate {d.get('slate_size', '?')}", kind=run.kind,
                      source=run.source)
        sec.meta = [("seeds", str(d.get("seeds"))), *_meta_env(d)]
        fails = b.get("acceptance_failures")
        if isinstance(fails, list):
            sec.meta.append(("acceptance", "met" if not fails else "NOT met: " + "; ".join(map(str, fails))))
        sec.blocks += _simulate_blocks(b["summary"], b["results"])
        out.append(sec)
    return out


# ------------------------------------------------------------------ ope
def _ope_blocks(r: dict[str, Any], *, truth: float | None, title: str) -> list[tuple[str, Any]]:
    est = r.get("estimates", [])
    headers = ["estimator", "estimate", "95% CI"]
    if truth is not None:
        headers += ["truth", "relative error"]
    rows = []
    for e in est:
        row = [str(e.get("estimator")), fmt_num(_num(e.get("estimate")), 5),
               fmt_ci(_num(e.get("ci_low")), _num(e.get("ci_high")), 5)]
        if truth is not None:
            row += [fmt_num(truth, 5), fmt_num(_num(e.get("relative_error")), 3)]
        rows.append(row)
    blocks: list[tuple[str, Any]] = [("h3", title), ("table", Table(
        headers, rows, numeric=[False] + [True] * (len(headers) - 1)))]
    if est:
        ys = [_num(e.get("estimate")) for e in est]
        errs = [_err(y, _num(e.get("ci_low")), _num(e.get("ci_high"))) for y, e in zip(ys, est, strict=True)]
        shapes = []
        ref = truth if truth is not None else _num(r.get("logged_value"))
        if ref is not None:
            shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": ref, "y1": ref,
                           "line": {"dash": "dash", "color": "#d62728"}})
        blocks.append(("figure", _figure([{
            "type": "scatter", "mode": "markers", "name": "estimate",
            "x": [str(e.get("estimator")) for e in est], "y": ys, "marker": {"size": 10},
            "error_y": {"type": "data", "symmetric": False, "array": [e[0] for e in errs],
                        "arrayminus": [e[1] for e in errs]}}],
            {"title": {"text": f"{title}: estimates with 95% bootstrap intervals"
                               + ("; dashed: ground truth" if truth is not None else
                                  "; dashed: logged policy's mean reward" if ref is not None
                                  else "")},
             "shapes": shapes, "yaxis": {"title": {"text": "CTR / mean reward"}}})))
    return blocks


def _ope_section(run: Run) -> Section:
    d = run.data
    sec = Section(title=f"Off-policy evaluation on {d.get('dataset', '?')} (campaign "
                        f"{d.get('campaign', '?')})", kind=run.kind, source=run.source)
    sec.meta = [("seed", str(d.get("seed"))), ("reward model", str(d.get("reward_model")))]
    sec.meta += _meta_env(d)
    for r in [d] + ([d["reverse"]] if isinstance(d.get("reverse"), dict) else []):
        blocks = _ope_blocks(r, truth=_num(r.get("ground_truth")),
                             title=f"{r.get('evaluation')} from {r.get('behavior')} logs")
        blocks.insert(1, ("notes", _notes(
            f"{r.get('rows', 0):,} rows, {r.get('clicks', 0):,} clicks; ground truth (the "
            f"evaluated policy's own logged CTR) {fmt_num(_num(r.get('ground_truth')), 5)}.")))
        sec.blocks += blocks
    return sec


def _ope_log_section(run: Run) -> Section:
    d = run.data
    sec = Section(title=f"Off-policy evaluation of {d.get('policy', '?')} on a service log",
                  kind=run.kind, source=run.source)
    for key, label in (("store", "store"), ("artifact", "artifact"), ("logging_policy",
                       "logging policy"), ("events", "slates"), ("rows", "shown slots"),
                       ("skipped_events", "skipped slates"), ("logged_value", "logged mean reward")):
        if key in d:
            sec.meta.append((label, str(d[key])))
    sec.meta += _meta_env(d)
    sec.blocks += _ope_blocks(d, truth=None, title=f"{d.get('policy')} on the log")
    return sec


# ------------------------------------------------------------------ tune
def _tune_section(run: Run) -> Section:
    d = run.data
    metric = str(d.get("metric", "value"))
    sec = Section(title=f"Tuning {d.get('model', '?')} on {d.get('dataset', '?')} ({metric})",
                  kind=run.kind, source=run.source)
    sec.meta = [("split", f"{d.get('split')} (seed {d.get('seed')})"),
                ("trials", str(d.get("trials", len(d["history"])))),
                ("default value", fmt_num(_num(d.get("default_value")))),
                ("best value", fmt_num(_num(d.get("best_value")))),
                ("best parameters", json.dumps(d.get("best_params"), default=str))]
    if d.get("fixed"):
        sec.meta.append(("fixed", json.dumps(d["fixed"], default=str)))
    sec.meta += _meta_env(d)
    hist = d["history"]
    key = next((k for k in (hist[0] if hist else {}) if k not in ("trial", "params", "fit_seconds")
                and _num(hist[0][k]) is not None), None)
    rows, xs, ys, best_so_far = [], [], [], []
    best: float | None = None
    for h in hist:
        v = _num(h.get(key)) if key else None
        rows.append([str(h.get("trial")), fmt_num(v), fmt_num(_num(h.get("fit_seconds")), 2),
                     json.dumps(h.get("params"), default=str)])
        xs.append(h.get("trial"))
        ys.append(v)
        if v is not None and (best is None or v > best):
            best = v
        best_so_far.append(best)
    sec.blocks.append(("table", Table(["trial", key or "value", "fit s", "parameters"], rows,
                                      numeric=[True, True, True, False])))
    if hist:
        sec.blocks.append(("figure", _figure([
            {"type": "scatter", "mode": "markers", "name": "trial", "x": xs, "y": ys},
            {"type": "scatter", "mode": "lines", "name": "best so far", "x": xs, "y": best_so_far,
             "line": {"shape": "hv"}}],
            {"title": {"text": f"{key or 'value'} per trial"}, "xaxis": {"title": {"text": "trial"}},
             "yaxis": {"title": {"text": key or "value"}}})))
    return sec


# ------------------------------------------------------------------ benchmarks
def _seed_values(entry: dict[str, Any], metric: str) -> list[float] | None:
    """Per-seed values of a benchmark leaderboard entry, if the JSON kept them."""
    v = entry.get(metric)
    if isinstance(v, dict) and isinstance(v.get("values"), list):
        return [float(x) for x in v["values"]]
    runs = entry.get("runs")
    if isinstance(runs, list) and runs and all(isinstance(r, dict) and isinstance(
            r.get("metrics"), dict) and metric in r["metrics"] for r in runs):
        return [float(r["metrics"][metric]) for r in runs]
    return None


def _benchmark_leaderboard_sections(run: Run) -> list[Section]:
    from explorec.evaluate.significance import noise_lines, primary_metric

    d = run.data
    out = []
    for name, board in d.items():
        if not _is_leaderboard(board):
            continue
        metrics: list[str] = []
        for e in board.values():
            for k, v in e.items():
                if isinstance(v, dict) and "mean" in v and "std" in v and k not in metrics:
                    metrics.append(k)
        quality = [m for m in metrics if "@" in m or m == "auc"]
        primary = primary_metric(quality or metrics)
        order = sorted(board, key=lambda m: -(_num((board[m].get(primary) or {}).get("mean"))
                                               or -math.inf))
        sec = Section(title=f"Benchmark: {name} (mean ± std over seeds)", kind=run.kind,
                      source=run.source)
        for key in ("dataset", "split", "seeds"):
            if key in d:
                sec.meta.append((key, str(d[key])))
        sec.meta += _meta_env(d)
        rows = []
        for m in order:
            row: list[Any] = [m]
            for k in metrics:
                v = board[m].get(k)
                if isinstance(v, dict) and _num(v.get("mean")) is not None:
                    row.append(_fmt_pair(v["mean"], v.get("std")))
                else:
                    row.append("")
            rows.append(row)
        sec.blocks.append(("table", Table(["model", *metrics], rows,
                                          numeric=[False] + [True] * len(metrics))))
        values = {m: _seed_values(board[m], primary) for m in order}
        if all(v is not None for v in values.values()):
            lines = noise_lines({m: v for m, v in values.items() if v is not None}, what=primary)
            if lines:
                sec.blocks.append(("notes", _notes(lines[0].lstrip(" -"),
                                                   [ln.lstrip(" -") for ln in lines[1:]])))
        else:
            sec.blocks.append(("notes", _notes("This JSON keeps no per-seed values, so whether "
                                               "the differences exceed seed noise is not shown.")))
        bars = [{"type": "bar", "name": m, "x": quality or metrics,
                 "y": [_num((board[m].get(k) or {}).get("mean")) for k in quality or metrics],
                 "error_y": {"type": "data", "array": [_num((board[m].get(k) or {}).get("std"))
                                                       for k in quality or metrics]}}
                for m in order]
        sec.blocks.append(("figure", _figure(bars, {
            "title": {"text": f"{name}: mean over seeds (error bars: ±1 std)"}, "barmode": "group"})))
        out.append(sec)
    return out


def _flatten(x: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(x, list) and x and all(isinstance(v, dict | list) for v in x):
        for i, v in enumerate(x):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, x


def _benchmark_section(run: Run) -> Section:
    d = run.data
    sec = Section(title=f"Benchmark: {Path(run.source).stem}", kind=run.kind, source=run.source)
    sec.meta = _meta_env(d)
    rows = []
    for path, v in _flatten({k: v for k, v in d.items() if k not in ("environment", "command")}):
        if len(rows) >= _GENERIC_ROWS:
            break
        if isinstance(v, list):
            v = ", ".join(_fmt_value(x) for x in v[:20]) + (" …" if len(v) > 20 else "")
        rows.append([path, _fmt_value(v) if not isinstance(v, str) else v])
    sec.blocks.append(("notes", _notes(
        "A benchmark JSON without a dedicated view: its figures as written"
        + (f" (the first {_GENERIC_ROWS})" if len(rows) >= _GENERIC_ROWS else "") + ".")))
    sec.blocks.append(("table", Table(["field", "value"], rows, wrap=True)))
    return sec


def sections_for(run: Run) -> list[Section]:
    """The page sections of one run."""
    if run.kind == "evaluate":
        return [_evaluate_section(run)]
    if run.kind == "simulate":
        return [_simulate_section(run)]
    if run.kind == "ope":
        return [_ope_section(run)]
    if run.kind == "ope-log":
        return [_ope_log_section(run)]
    if run.kind == "tune":
        return [_tune_section(run)]
    if run.kind == "benchmark-simulation":
        return _benchmark_simulation_sections(run)
    if run.kind == "benchmark-leaderboard":
        return _benchmark_leaderboard_sections(run)
    return [_benchmark_section(run)]


# ------------------------------------------------------------------ page
def render(runs: Sequence[Run], *, title: str | None = None) -> str:
    """The HTML page of ``runs`` (one file: styles, data and plotly.js inline)."""
    import jinja2
    from markupsafe import Markup
    from plotly.offline import get_plotlyjs

    from explorec import __version__
    from explorec.runinfo import environment

    if not runs:
        raise ReportError("no runs to report on")
    sections: list[Section] = []
    for run in runs:
        try:
            sections += sections_for(run)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ReportError(f"{run.source}: unexpected shape for {run.kind} output "
                              f"({type(e).__name__}: {e})") from e
    figures = []
    for i, sec in enumerate(sections):
        sec.anchor = f"s{i + 1}"
        for j, (what, block) in enumerate(sec.blocks):
            if what == "figure":
                fid = f"fig-{len(figures) + 1}"
                figures.append({"id": fid, "data": block["data"], "layout": block["layout"]})
                sec.blocks[j] = ("figure", fid)
    env = jinja2.Environment(loader=jinja2.PackageLoader("explorec.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("report.html.j2")
    return page.render(title=title or "explorec report", sections=sections, figures=figures,
                       sources=[r.source for r in runs], plotly_js=Markup(get_plotlyjs()),
                       version=__version__, generated_by=environment())


def write_report(inputs: Sequence[str | Path | Run], output: str | Path, *,
                 title: str | None = None) -> Path:
    """Render ``inputs`` (JSON paths or :class:`Run` objects) into ``output``, atomically."""
    from explorec._io import atomic_write_text

    runs = [r if isinstance(r, Run) else load_run(r) for r in inputs]
    html = render(runs, title=title)
    out = Path(output)
    atomic_write_text(out, html)
    return out


def write_html(data: dict[str, Any], output: str | Path, *, source: str = "this run",
               title: str | None = None) -> Path:
    """The ``--html FILE`` option of a command: its report object, rendered."""
    return write_report([run_from_data(data, source)], output, title=title)


__all__ = ["KINDS", "ReportError", "Run", "detect_kind", "load_run", "render", "run_from_data",
           "sections_for", "write_html", "write_report"]
