"""The data behind each dashboard page, as JSON-able dicts (also served at ``/dashboard/api/*``).

Every function here runs in a worker thread (the routes offload it, like the rank route's store
reads): it reads the store through the bounded aggregate queries of
:class:`~explorec.serve.stores.queries.LogQueries` and the live engine's in-memory model, and
never writes. Times are seconds since the epoch plus ISO 8601 (UTC) strings for the charts.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from explorec.serve.stores.queries import PROPENSITY_BINS, LogSummary

#: window name -> (seconds, buckets)
WINDOWS: dict[str, tuple[float, int]] = {"1h": (3600.0, 60), "24h": (86400.0, 48),
                                         "7d": (7 * 86400.0, 56), "30d": (30 * 86400.0, 30)}
DEFAULT_WINDOW = "7d"
RATE_WINDOW_S = 300.0  # "now" rates: the last five minutes
OPE_EVENTS = 1000  # newest slates the Policies page evaluates on
OPE_BOOTSTRAP = 300
OPE_ESTIMATORS = ("ipw", "snipw", "dr")
OPE_REUSE_S = 30.0  # a finished evaluation is reused this long while the log moves on
SEARCH_LIMIT = 20
HISTORY_LIMIT = 50
SLATE_K = 10
NEW_ITEMS = 15
#: manifest keys shown as the artifact's training record
MANIFEST_HIDDEN = {"parts", "arrays", "format", "format_version", "columns"}


def iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def window(name: str, now: float | None = None) -> tuple[float, float, int]:
    """(since, bucket_s, n_buckets): buckets aligned to multiples of their length, the last
    one holding ``now``."""
    length, nb = WINDOWS[name]
    bucket = length / nb
    now = time.time() if now is None else now
    since = math.floor(now / bucket) * bucket - (nb - 1) * bucket
    return since, bucket, nb


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


# ------------------------------------------------------------------ overview
def latency(registry: Any) -> list[dict[str, Any]]:
    """p50 and p99 per route from the Prometheus latency histogram of this process, by linear
    interpolation inside the bucket that holds the quantile (as ``histogram_quantile``)."""
    per: dict[str, dict[float, float]] = {}
    for metric in registry.collect():
        if metric.name != "explorec_http_request_seconds":
            continue
        for s in metric.samples:
            if s.name.endswith("_bucket"):
                per.setdefault(s.labels["route"], {})[float(s.labels["le"])] = s.value
    out = []
    for route, buckets in sorted(per.items()):
        les = sorted(buckets)
        total = buckets[les[-1]] if les else 0.0
        if route == "unmatched" or total <= 0:
            continue
        row: dict[str, Any] = {"route": route, "requests": int(total)}
        for q in (0.5, 0.99):
            rank = q * total
            prev_le, prev_c, value = 0.0, 0.0, None
            for le in les:
                c = buckets[le]
                if c >= rank:
                    if math.isinf(le):
                        value = prev_le  # beyond the largest finite bucket: its bound
                    else:
                        frac = (rank - prev_c) / (c - prev_c) if c > prev_c else 1.0
                        value = prev_le + (le - prev_le) * frac
                    break
                prev_le, prev_c = le, c
            row[f"p{round(q * 100)}_ms"] = None if value is None else round(value * 1000, 3)
        out.append(row)
    return out


def artifact_info(eng: Any) -> dict[str, Any]:
    """The serving artifact: its id, model, policy and the training record of its manifest
    (no filesystem paths: the dashboard answers read keys)."""
    m = eng.art.manifest
    record = {k: v for k, v in m.items() if k not in MANIFEST_HIDDEN}
    st = eng.status()
    return {"artifact": eng.art.artifact_id, "name": eng.art.path.name, "model": m.get("model"),
            "policy": eng.art.policy_name, "policy_params": eng.art.policy_params,
            "items": st["n_items"], "live_items": st["live_items"], "added_items": st["added_items"],
            "rewards_applied": st["rewards_applied"], "rewards_skipped": st["rewards_skipped"],
            "policy_state_sha256": st["policy_state_sha256"], "manifest": record}


def _summary_dict(s: LogSummary) -> dict[str, Any]:
    slots, explored = sum(s.slots), sum(s.explored)
    rewards, positives = sum(s.rewards), sum(s.positives)
    return {"slates": sum(s.slates), "slots": slots, "explored_slots": explored,
            "explored_share": _ratio(explored, slots), "rewards": rewards, "positive_rewards": positives,
            "reward_sum": float(sum(s.reward_sum)), "ctr": _ratio(positives, slots),
            "positive_share_of_rewards": _ratio(positives, rewards), "users": s.users,
            "policies": s.policies, "truncated_events": s.truncated_events,
            "truncated_rewards": s.truncated_rewards}


def overview(service: Any, registry: Any, window_name: str = DEFAULT_WINDOW) -> dict[str, Any]:
    store, eng = service.store, service.engine
    now = time.time()
    since, bucket, nb = window(window_name, now)
    s = store.log_summary(since, bucket, nb)
    recent = store.log_summary(now - RATE_WINDOW_S, RATE_WINDOW_S, 1)
    t = [iso(since + b * bucket) for b in range(nb)]
    hist_labels = [f"{b / PROPENSITY_BINS:.1f}-{(b + 1) / PROPENSITY_BINS:.1f}"
                   for b in range(PROPENSITY_BINS)]
    return {
        "generated": iso(now), "generated_ts": now,
        "window": {"name": window_name, "since": since, "since_iso": iso(since), "bucket_s": bucket,
                   "n_buckets": nb},
        "totals": store.log_totals(),
        "in_window": _summary_dict(s),
        "rates": {"over_s": RATE_WINDOW_S,
                  "ranks_per_min": sum(recent.slates) * 60.0 / RATE_WINDOW_S,
                  "rewards_per_min": sum(recent.rewards) * 60.0 / RATE_WINDOW_S,
                  "window_ranks_per_min": sum(s.slates) * 60.0 / (nb * bucket),
                  "window_rewards_per_min": sum(s.rewards) * 60.0 / (nb * bucket)},
        "series": {"t": t, "slates": s.slates, "slots": s.slots, "explored_slots": s.explored,
                   "rewards": s.rewards, "positive_rewards": s.positives,
                   "ctr": [_ratio(p, n) for p, n in zip(s.positives, s.slots, strict=True)],
                   "explored_share": [_ratio(e, n) for e, n in zip(s.explored, s.slots, strict=True)]},
        "propensity": {"labels": [*hist_labels, "1 (not explored)"], "counts": s.propensity_hist},
        "latency": latency(registry),
        "artifact": artifact_info(eng),
        "training_users": len(eng.users),
    }


# ------------------------------------------------------------------ policies
@dataclass
class _OpeRun:
    key: tuple[Any, ...]
    finished: float
    result: dict[str, Any]


class OpeCache:
    """One evaluation at a time; a finished one is reused while the log is unchanged, or for
    :data:`OPE_REUSE_S` seconds after it finished while the log moves on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: _OpeRun | None = None


def _candidates(live: str, live_params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    from explorec.explore import policy_names

    out = [(live, dict(live_params))]
    out += [(name, {}) for name in policy_names() if name != live]
    return out


def _ope_compute(service: Any) -> dict[str, Any]:
    from explorec.serve.ope_log import collect_log, evaluate_slots

    t0 = time.perf_counter()
    eng = service.engine
    art = eng.art
    events = service.store.recent_events(OPE_EVENTS)
    slots = collect_log(service.store, art, events=events)
    logged = slots.logged_estimate(OPE_BOOTSTRAP)
    rows = []
    for name, params in _candidates(art.policy_name, art.policy_params):
        row: dict[str, Any] = {"policy": name, "params": params, "live": name == art.policy_name
                               and params == art.policy_params}
        t1 = time.perf_counter()
        try:
            r = evaluate_slots(slots, name, policy_params=params, estimators=OPE_ESTIMATORS,
                               n_bootstrap=OPE_BOOTSTRAP)
            row.update({"estimates": {e["estimator"]: e for e in r["estimates"]},
                        "mean_pi_e": r.get("mean_pi_e")})
        except Exception as e:  # a policy this artifact cannot run (no two-tower, no vw, ...)
            row["error"] = f"{type(e).__name__}: {e}"
        row["seconds"] = round(time.perf_counter() - t1, 3)
        rows.append(row)
    by_artifact: dict[str, int] = {}
    for ev in events:
        by_artifact[f"{ev.artifact}/{ev.policy}"] = by_artifact.get(f"{ev.artifact}/{ev.policy}", 0) + 1
    return {"generated": iso(time.time()), "generated_ts": time.time(),
            "artifact": art.artifact_id, "live_policy": art.policy_name,
            "live_params": art.policy_params, "slates": slots.n_events,
            "skipped_slates": slots.skipped, "rows": slots.n_rows,
            "rewarded_rows": int((slots.rows()["reward"] > 0).sum()) if slots.n_rows else 0,
            "max_slates": OPE_EVENTS, "n_bootstrap": OPE_BOOTSTRAP, "estimators": list(OPE_ESTIMATORS),
            "logged_by": by_artifact, "logged": logged, "candidates": rows,
            "seconds": round(time.perf_counter() - t0, 3)}


def policies(service: Any, cache: OpeCache) -> dict[str, Any]:
    """Off-policy estimates of every registered policy on the newest slates of the log."""
    store = service.store
    newest = store.recent_events(1)
    h = store.heads()
    key = (service.engine.art.artifact_id, newest[0].event_id if newest else None, h.rewards_seq, h.epoch,
           h.items_seq)
    with cache.lock:  # one evaluation at a time; the others wait for it and share it
        last = cache.last
        if last is not None and (last.key == key or (last.key[0] == key[0]
                                                     and time.time() - last.finished < OPE_REUSE_S)):
            return {**last.result, "reused": last.key != key}
        result = _ope_compute(service)
        cache.last = _OpeRun(key, time.time(), result)
        return {**result, "reused": False}


# ------------------------------------------------------------------ users
def _item_text(eng: Any, store: Any, item: str, cache: dict[str, str]) -> str:
    if item in cache:
        return cache[item]
    i = eng.index.get(item)
    text = ""
    if i is not None and i < eng.n_model:
        text = eng.art.texts[i]
    else:
        rec = store.get_item(item)
        text = rec.text if rec is not None else ""
    cache[item] = text
    return text


def find_users(service: Any, q: str, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    eng = service.engine
    known = sorted(eng.users)
    at = bisect.bisect_left(known, q)
    out = {}
    for u in known[at:at + limit]:
        if not u.startswith(q):
            break
        out[u] = "artifact"
    for u in service.store.find_users(q, limit):
        out[u] = "both" if u in out else "store"
    return [{"user": u, "source": out[u]} for u in sorted(out)[:limit]]


def preview_slate(eng: Any, history: tuple[list[str], int], user_id: str, k: int) -> Any:
    """The slate the live policy would serve now, computed like a rank and explained, but
    never logged: the policy draws from its own generator seeded by the user id (the live
    one is left as it was, so viewing does not shift what the service serves), and the
    slate leaves no trace in the engine's cache of served slates."""
    with eng.lock:  # re-entrant: compute_rank takes it too; held for one in-memory rank
        pol = eng.policy
        saved = getattr(pol, "rng", None)
        if saved is not None:
            pol.rng = np.random.default_rng(zlib.crc32(user_id.encode("utf-8")))
        try:
            result, event = eng.compute_rank(history, user_id, k, explain=True)
        finally:
            if saved is not None:
                pol.rng = saved
        eng._served.pop(event.event_id, None)
    return result


_INTERESTS: dict[tuple[str, int], dict[str, Any]] = {}
_INTERESTS_LOCK = threading.Lock()
INTEREST_GRID_MAX_ITEMS = 50_000  # above: k-means at 2.5 sqrt(items) interests, no silhouette grid


def catalog_interests(eng: Any) -> dict[str, Any]:
    """The catalog's interests (cached per artifact and catalog size): the live policy's own
    when it explores over interests (``interest_labels``, as interest-ts does), else fine
    k-means clusters of the item vectors (:func:`explorec.interests.taxonomy.cluster_items`);
    each described by its most distinctive words (class-based TF-IDF over the item texts)."""
    key = (eng.art.artifact_id, int(eng.n_items))
    with _INTERESTS_LOCK:
        hit = _INTERESTS.get(key)
    if hit is not None:
        return hit
    from explorec.interests.taxonomy import cluster_items, cluster_keywords

    vectors = np.asarray(eng.vectors, np.float32)
    labels_of = getattr(eng.policy, "interest_labels", None)
    if labels_of is not None and len(labels_of()) == len(vectors):
        labels, source = np.asarray(labels_of(), np.int64), f"the live policy ({eng.art.policy_name})"
    else:
        n = len(vectors)
        k = None if n <= INTEREST_GRID_MAX_ITEMS else round(2.5 * math.sqrt(n))
        labels, _ = cluster_items(vectors, k, seed=2020)
        source = "k-means of the item vectors (sizes by silhouette)"
    n_k = int(labels.max()) + 1 if len(labels) else 0
    texts = list(eng.art.texts) + [""] * (len(labels) - len(eng.art.texts))
    words = cluster_keywords(texts, labels, n_k, 4) if n_k else []
    out = {"labels": labels, "words": words, "source": source, "n": n_k}
    with _INTERESTS_LOCK:
        if len(_INTERESTS) > 4:
            _INTERESTS.clear()
        _INTERESTS[key] = out
    return out


def interests_discovered(eng: Any, train: list[str], logged: list[Any]) -> dict[str, Any]:
    """A user's interests in the order they reached them: those of the training data first,
    then each logged interaction's (oldest first), with the cumulative count over time."""
    cat = catalog_interests(eng)
    labels = cat["labels"]
    first: dict[int, dict[str, Any]] = {}
    counts: dict[int, int] = {}

    def see(item: str, ts: float | None) -> None:
        i = eng.index.get(item)
        if i is None or i >= len(labels):
            return
        c = int(labels[i])
        counts[c] = counts.get(c, 0) + 1
        if c not in first:
            first[c] = {"interest": c, "words": cat["words"][c] if c < len(cat["words"]) else [],
                        "first_item": item, "ts": ts, "first": iso(ts) or "training data"}

    for item in train:
        see(item, None)
    times, cumulative = [], []
    for r in sorted(logged, key=lambda r: r.ts):
        see(r.item, r.ts)
        times.append(iso(r.ts))
        cumulative.append(len(first))
    rows = [{**v, "items": counts[c]} for c, v in first.items()]
    return {"source": cat["source"], "n_interests": cat["n"],
            "from_training": sum(r["ts"] is None for r in rows), "discovered": rows,
            "timeline": {"t": times, "count": cumulative}}


def user(service: Any, user_id: str, k: int = SLATE_K) -> dict[str, Any]:
    eng, store = service.engine, service.store
    texts: dict[str, str] = {}
    u = eng.users.get(user_id, -1)
    train = eng.training_items(user_id)
    logged = store.user_interactions(user_id, HISTORY_LIMIT)
    history = [{"item": r.item, "text": _item_text(eng, store, r.item, texts), "kind": r.kind,
                "value": r.value, "ts": r.ts, "time": iso(r.ts)} for r in logged]
    h = eng.read_for_rank(user_id)
    result = preview_slate(eng, h, user_id, k)
    slate = [{"position": n, "item": it.item, "text": _item_text(eng, store, it.item, texts),
              "score": it.score, "propensity": it.propensity, "explored": it.propensity < 1.0,
              "because": [{**b, "text": _item_text(eng, store, b["item"], texts)} for b in it.explanation]}
             for n, it in enumerate(result.items)]
    recent = store.recent_events(10, user=user_id)
    rewards: dict[tuple[str, int], float] = {
        (r.event_id, r.position): r.reward for r in store.rewards_for_events([e.event_id for e in recent])}
    slates = [{"time": iso(e.ts), "ts": e.ts, "policy": e.policy, "artifact": e.artifact,
               "items": [{"item": it, "text": _item_text(eng, store, it, texts), "propensity": p,
                          "reward": rewards.get((e.event_id, j))}
                         for j, (it, p) in enumerate(zip(e.items, e.propensities, strict=True))]}
              for e in recent]
    return {"user": user_id, "in_training_data": u >= 0, "training_items": len(train),
            "training_history": [{"item": i, "text": _item_text(eng, store, i, texts)}
                                 for i in train[:HISTORY_LIMIT]],
            "history": history, "history_seq": h[1], "logged_history_items": len(h[0]),
            "slate": {"k": k, "policy": result.policy, "artifact": result.artifact, "items": slate,
                      "note": "a draw of the live policy now, not logged and not served"},
            "recent_slates": slates, "known": u >= 0 or bool(history) or bool(recent),
            "interests": interests_discovered(eng, train, logged)}


# ------------------------------------------------------------------ items
def find_items(service: Any, q: str, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Items whose id starts with ``q`` or whose artifact text contains it (case-insensitive)."""
    eng = service.engine
    ql = q.lower()
    out: list[int] = []
    exact = eng.index.get(q)
    if exact is not None:
        out.append(exact)
    ids, texts = eng.ids, eng.art.texts
    for i in range(len(ids)):
        if len(out) >= limit:
            break
        if i != exact and (ids[i].startswith(q) or (i < len(texts) and ql in texts[i].lower())):
            out.append(i)
    cache: dict[str, str] = {}
    return [{"item": ids[i], "text": _item_text(eng, service.store, ids[i], cache),
             "live": not bool(eng.deleted[i]), "source": "artifact" if i < eng.n_model else "api"}
            for i in out]


def _neighbours(eng: Any, store: Any, i: int, k: int, cache: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if i < eng.n_model:
        try:
            ids, sims = eng.model.similar_items(np.array([i]), k)
            out["model"] = [{"item": eng.ids[int(j)], "text": _item_text(eng, store, eng.ids[int(j)], cache),
                             "similarity": float(s)} for j, s in zip(ids[0], sims[0], strict=True) if j >= 0]
        except Exception as e:  # a model without item similarities
            out["model_error"] = f"{type(e).__name__}: {e}"
    vecs = eng.vectors
    v = vecs[i]
    if float(np.linalg.norm(v)) > 0:
        sims = vecs @ v
        sims[i] = -np.inf
        sims[eng.deleted] = -np.inf
        top = np.argsort(-sims, kind="stable")[:k]
        out["text"] = [{"item": eng.ids[int(j)], "text": _item_text(eng, store, eng.ids[int(j)], cache),
                        "similarity": float(sims[j])} for j in top if np.isfinite(sims[j])]
    return out


def new_items(service: Any) -> list[dict[str, Any]]:
    """The API items most recently put, with their first impression and first click since
    (among the newest slates and rewards the store's query bounds allow)."""
    store = service.store
    recs = store.recent_items(NEW_ITEMS)
    if not recs:
        return []
    since = min(r.ts for r in recs)
    act = store.item_activity([r.item for r in recs], since, 1.0, 1)  # one bucket: all since
    out = []
    for r in recs:
        a = act[r.item]
        out.append({"item": r.item, "text": r.text, "added": iso(r.ts), "added_ts": r.ts,
                    "impressions": sum(a.impressions), "clicks": sum(a.clicks),
                    "first_shown": iso(a.first_shown), "first_click": iso(a.first_click),
                    "seconds_to_first_shown": None if a.first_shown is None else a.first_shown - r.ts,
                    "seconds_to_first_click": None if a.first_click is None else a.first_click - r.ts})
    return out


def item(service: Any, item_id: str | None, window_name: str = DEFAULT_WINDOW, k: int = 10
         ) -> dict[str, Any]:
    eng, store = service.engine, service.store
    now = time.time()
    since, bucket, nb = window(window_name, now)
    out: dict[str, Any] = {"generated": iso(now), "window": {"name": window_name, "since": since,
                                                             "bucket_s": bucket, "n_buckets": nb},
                           "new_items": new_items(service)}
    if item_id is None:
        return out
    i = eng.index.get(item_id)
    cache: dict[str, str] = {}
    rec = store.get_item(item_id)
    detail: dict[str, Any] = {"item": item_id, "known": i is not None,
                              "live": i is not None and not bool(eng.deleted[i])}
    if i is not None:
        detail["source"] = "artifact" if i < eng.n_model else "api"
        detail["text"] = _item_text(eng, store, item_id, cache)
        if rec is not None and not rec.deleted and rec.text:
            detail.update(text=rec.text, features=rec.features, added=iso(rec.ts))
        elif i < eng.n_model:
            detail["features"] = {c: v[i] for c, v in eng.art.catalog.items()}
        detail["neighbours"] = _neighbours(eng, store, i, k, cache)
    a = store.item_activity([item_id], since, bucket, nb)[item_id]
    detail["activity"] = {"t": [iso(since + b * bucket) for b in range(nb)], "impressions": a.impressions,
                          "rewards": a.rewards, "clicks": a.clicks,
                          "ctr": [_ratio(c, n) for c, n in zip(a.clicks, a.impressions, strict=True)],
                          "first_shown": iso(a.first_shown), "first_click": iso(a.first_click),
                          "total_impressions": sum(a.impressions), "total_clicks": sum(a.clicks)}
    out["item"] = detail
    return out

