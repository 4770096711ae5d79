"""Plotly figures (plain ``{"data", "layout"}`` JSON, drawn by plotly.js in the browser) built
from the pages' data. A chart with nothing to show is None: the page says so instead."""

from __future__ import annotations

from typing import Any

Figure = dict[str, Any]

_BLUE, _ORANGE, _GREEN, _RED, _GREY = "#3266a8", "#e07b39", "#3a9a5b", "#c0392b", "#8a8f98"


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "margin": {"l": 56, "r": 16, "t": 40, "b": 48}, "height": 300,
        "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
        "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
        "legend": {"orientation": "h", "y": -0.2}, "hovermode": "closest",
        "xaxis": {"gridcolor": "#eceef1"}, "yaxis": {"gridcolor": "#eceef1", "rangemode": "tozero"},
    }
    layout.update(extra)
    return layout


def traffic(o: dict[str, Any]) -> Figure | None:
    s = o["series"]
    if not any(s["slates"]) and not any(s["rewards"]):
        return None
    per = f"per {o['window']['bucket_s'] / 60:g} min"
    return {"data": [
        {"type": "bar", "name": "slates (rank calls)", "x": s["t"], "y": s["slates"],
         "marker": {"color": _BLUE}},
        {"type": "bar", "name": "rewards", "x": s["t"], "y": s["rewards"], "marker": {"color": _ORANGE}},
    ], "layout": _layout(f"Ranks and rewards {per}", barmode="group")}


def ctr(o: dict[str, Any]) -> Figure | None:
    s = o["series"]
    if not any(s["slots"]):
        return None
    return {"data": [
        {"type": "scatter", "mode": "lines+markers",
         "name": "positive rate (CTR: positive rewards / shown slots)",
         "x": s["t"], "y": s["ctr"], "connectgaps": False, "line": {"color": _GREEN}},
        {"type": "scatter", "mode": "lines+markers", "name": "share of slots that explored (propensity < 1)",
         "x": s["t"], "y": s["explored_share"], "connectgaps": False,
         "line": {"color": _BLUE, "dash": "dot"}},
    ], "layout": _layout("Positive rate and exploration over time",
                         yaxis={"gridcolor": "#eceef1", "range": [0, 1], "tickformat": ".0%"})}


def propensities(o: dict[str, Any]) -> Figure | None:
    p = o["propensity"]
    if not any(p["counts"]):
        return None
    colors = [_BLUE] * (len(p["counts"]) - 1) + [_GREY]
    return {"data": [{"type": "bar", "x": p["labels"], "y": p["counts"], "marker": {"color": colors},
                      "name": "shown slots"}],
            "layout": _layout("Logged propensity of each shown slot",
                              xaxis={"type": "category", "title": {"text": "propensity"}},
                              yaxis={"gridcolor": "#eceef1", "title": {"text": "slots"}})}


def latency(o: dict[str, Any]) -> Figure | None:
    rows = o["latency"]
    if not rows:
        return None
    routes = [r["route"] for r in rows]
    return {"data": [
        {"type": "bar", "name": "p50", "x": routes, "y": [r["p50_ms"] for r in rows],
         "marker": {"color": _BLUE}},
        {"type": "bar", "name": "p99", "x": routes, "y": [r["p99_ms"] for r in rows],
         "marker": {"color": _RED}},
    ], "layout": _layout("Latency per endpoint (ms, this worker since it started)", barmode="group",
                         yaxis={"gridcolor": "#eceef1", "rangemode": "tozero", "title": {"text": "ms"}},
                         xaxis={"type": "category", "automargin": True})}


def ope(p: dict[str, Any]) -> Figure | None:
    rows = [r for r in p["candidates"] if r.get("estimates")]
    if not rows:
        return None
    names = [r["policy"] + (" (live)" if r["live"] else "") for r in rows]
    colors = {"ipw": _BLUE, "snipw": _GREEN, "dr": _ORANGE}
    data = []
    for n, est in enumerate(p["estimators"]):
        ys, lo, hi = [], [], []
        for r in rows:
            e = r["estimates"].get(est)
            ys.append(None if e is None else e["estimate"])
            lo.append(0 if e is None else e["estimate"] - e["ci_low"])
            hi.append(0 if e is None else e["ci_high"] - e["estimate"])
        data.append({"type": "scatter", "mode": "markers", "name": est.upper(), "x": names, "y": ys,
                     "offsetgroup": str(n), "marker": {"color": colors.get(est, _GREY), "size": 9},
                     "error_y": {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}})
    shapes = []
    logged = p.get("logged")
    if logged:
        shapes = [{"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "y0": logged["ci_low"],
                   "y1": logged["ci_high"], "fillcolor": "rgba(138,143,152,0.18)", "line": {"width": 0}},
                  {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": logged["estimate"],
                   "y1": logged["estimate"], "line": {"color": _GREY, "dash": "dash"}}]
    return {"data": data, "layout": _layout(
        "Estimated mean reward per shown slot (95% bootstrap CI); grey: the logged value",
        scattermode="group", shapes=shapes, height=360,
        xaxis={"type": "category", "automargin": True}, yaxis={"gridcolor": "#eceef1"})}


def slate(u: dict[str, Any]) -> Figure | None:
    items = u["slate"]["items"]
    if not items:
        return None
    labels = [f"{it['position'] + 1}. {it['item']}" for it in items]
    return {"data": [{"type": "bar", "x": labels, "y": [it["propensity"] for it in items],
                      "name": "propensity", "text": [(it["text"] or "")[:40] for it in items],
                      "textposition": "none",
                      "hovertemplate": "%{x}<br>%{text}<br>propensity %{y:.3f}<extra></extra>",
                      "marker": {"color": [_ORANGE if it["explored"] else _BLUE for it in items]}}],
            "layout": _layout("The slate now: propensity per position (orange: explored)",
                              xaxis={"type": "category", "automargin": True},
                              yaxis={"gridcolor": "#eceef1", "range": [0, 1.05]})}


def user_activity(u: dict[str, Any]) -> Figure | None:
    hist = u["history"]
    if not hist:
        return None
    kinds = sorted({h["kind"] for h in hist})
    data = [{"type": "scatter", "mode": "markers", "name": k,
             "x": [h["time"] for h in hist if h["kind"] == k],
             "y": [h["item"] for h in hist if h["kind"] == k],
             "text": [(h["text"] or "")[:60] for h in hist if h["kind"] == k],
             "hovertemplate": "%{x}<br>%{y}: %{text}<extra></extra>", "marker": {"size": 9}}
            for k in kinds]
    return {"data": data, "layout": _layout("Logged history (newest 50)",
                                            yaxis={"type": "category", "automargin": True})}


def item_activity(i: dict[str, Any]) -> Figure | None:
    a = i["item"]["activity"]
    if not any(a["impressions"]) and not any(a["rewards"]):
        return None
    return {"data": [
        {"type": "bar", "name": "impressions", "x": a["t"], "y": a["impressions"],
         "marker": {"color": _BLUE}},
        {"type": "bar", "name": "clicks (positive rewards)", "x": a["t"], "y": a["clicks"],
         "marker": {"color": _GREEN}},
    ], "layout": _layout("Impressions and clicks over time", barmode="group")}


def first_clicks(i: dict[str, Any]) -> Figure | None:
    rows = [r for r in i["new_items"] if r["seconds_to_first_click"] is not None
            or r["seconds_to_first_shown"] is not None]
    if not rows:
        return None
    names = [r["item"] for r in rows]

    def minutes(v: float | None) -> float | None:
        return None if v is None else round(v / 60.0, 3)

    return {"data": [
        {"type": "bar", "name": "to first impression", "x": names,
         "y": [minutes(r["seconds_to_first_shown"]) for r in rows], "marker": {"color": _BLUE}},
        {"type": "bar", "name": "to first click", "x": names,
         "y": [minutes(r["seconds_to_first_click"]) for r in rows], "marker": {"color": _GREEN}},
    ], "layout": _layout("New items: minutes from added to first impression and first click",
                         barmode="group", xaxis={"type": "category", "automargin": True})}


def user_interests(u: dict[str, Any]) -> Figure | None:
    """The number of distinct interests the user has reached, over their logged history."""
    tl = u.get("interests", {}).get("timeline", {})
    if not tl.get("t"):
        return None
    return {"data": [{"type": "scatter", "mode": "lines+markers", "line": {"shape": "hv", "color": _GREEN},
                      "x": tl["t"], "y": tl["count"], "name": "distinct interests reached"}],
            "layout": _layout("Interests discovered over time (training data included)")}
