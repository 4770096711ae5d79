"""The stores' read-only aggregate queries (the dashboard's data) against a reference computed
in Python from the same records, on SQLite and a real redis-server."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from explorec.serve.stores import Interaction, RankEvent
from explorec.serve.stores.queries import PROPENSITY_BINS, bucket_of, propensity_bin


def _log(store, seed: int = 1, n: int = 120):
    """``n`` slates of 3 over 6 users and 12 items, with fixed times, and rewards on some."""
    rng = np.random.default_rng(seed)
    events, rewards = [], []
    for e in range(n):
        items = [f"i{j}" for j in rng.choice(12, 3, replace=False)]
        if e % 17 == 0:
            items[0] = 'we"ird ]id'  # a quote and a bracket inside a JSON string
        props = [1.0 if rng.random() < 0.4 else float(rng.choice([0.05, 0.35, 0.5, 0.99])) for _ in items]
        ev = RankEvent(uuid.uuid4().hex, f"u{e % 6}", 1000.0 + 10.0 * e, "art1" if e < 80 else "art2",
                       "egreedy", items, [0, 1, 2], props, [1.0, 0.5, None],
                       [*items, 'z,"candidates":['], 0, None)
        store.log_rank(ev)
        events.append(ev)
        for pos in range(3):
            if rng.random() < 0.3:
                r = float(rng.choice([0.0, 1.0, 0.5]))
                ts = ev.ts + 3.0 + pos
                store.add_reward(ev, pos, r, ts)
                rewards.append((ev.items[pos], r, ts))
    return events, rewards


def test_totals_and_summary_match_the_records(store):
    events, rewards = _log(store)
    store.add_interactions([Interaction("u-extra", "i1", "click", None, 5.0)])
    totals = store.log_totals()
    positives = sum(1 for _, r, _ in rewards if r > 0)
    assert totals == {**store.counts(), "users": 7}  # 6 users with a positive reward + u-extra
    assert totals["events"] == 120 and totals["rewards"] == len(rewards)
    assert totals["interactions"] == positives + 1

    since, bucket, nb = 1300.0, 100.0, 8  # from the 31st slate; the last buckets clamp
    s = store.log_summary(since, bucket, nb)
    want_slates, want_slots, want_expl = [0] * nb, [0] * nb, [0] * nb
    hist = [0] * (PROPENSITY_BINS + 1)
    users, pols = set(), {}
    for ev in events:
        if ev.ts < since:
            continue
        b = bucket_of(ev.ts, since, bucket, nb)
        want_slates[b] += 1
        users.add(ev.user)
        pols[f"{ev.artifact}/{ev.policy}"] = pols.get(f"{ev.artifact}/{ev.policy}", 0) + 1
        for p in ev.propensities:
            want_slots[b] += 1
            want_expl[b] += p < 1.0
            hist[propensity_bin(p)] += 1
    assert s.slates == want_slates and s.slots == want_slots and s.explored == want_expl
    assert s.propensity_hist == hist and s.users == len(users) and s.policies == pols
    assert sum(s.slates) == 90 and not s.truncated_events and not s.truncated_rewards
    rw, pos, tot = [0] * nb, [0] * nb, [0.0] * nb
    for _, r, ts in rewards:
        if ts >= since:
            b = bucket_of(ts, since, bucket, nb)
            rw[b] += 1
            pos[b] += r > 0
            tot[b] += r
    assert s.rewards == rw and s.positives == pos and s.reward_sum == pytest.approx(tot)

    # bounds: the newest 10 slates and the newest 5 rewards only, and they say so
    cut = store.log_summary(0.0, 1e6, 1, max_events=10, max_rewards=5)
    assert cut.slates == [10] and cut.truncated_events and cut.truncated_rewards
    assert cut.rewards == [5]
    assert cut.users == len({e.user for e in events[-10:]})


def test_item_activity_recent_and_user_queries(store):
    events, rewards = _log(store, seed=2)
    since, bucket, nb = 1100.0, 250.0, 5
    weird = 'we"ird ]id'
    got = store.item_activity(["i3", weird, "never"], since, bucket, nb)
    for item in ("i3", weird):
        imp, first = [0] * nb, None
        for ev in events:
            if ev.ts >= since and item in ev.items:
                imp[bucket_of(ev.ts, since, bucket, nb)] += 1
                first = ev.ts if first is None else min(first, ev.ts)
        rw, cl, fc = [0] * nb, [0] * nb, None
        for it, r, ts in rewards:
            if it == item and ts >= since:
                rw[bucket_of(ts, since, bucket, nb)] += 1
                if r > 0:
                    cl[bucket_of(ts, since, bucket, nb)] += 1
                    fc = ts if fc is None else min(fc, ts)
        a = got[item]
        assert (a.impressions, a.rewards, a.clicks, a.first_shown, a.first_click) == (imp, rw, cl, first, fc)
    assert sum(got["i3"].impressions) > 0
    assert got["never"].impressions == [0] * nb and got["never"].first_shown is None

    newest = store.recent_events(4)
    assert [e.event_id for e in newest] == [e.event_id for e in events[::-1][:4]]
    mine = store.recent_events(3, user="u2")
    assert [e.event_id for e in mine] == [e.event_id for e in events if e.user == "u2"][::-1][:3]
    assert store.recent_events(3, user="nobody") == []
    ids = [e.event_id for e in events[:30]]
    want = sorted((r for e in ids for r in store.rewards_for_event(e)), key=lambda r: r.seq)
    assert store.rewards_for_events(ids) == want

    store.add_interactions([Interaction("u2", f"x{n}", "view", None, float(n)) for n in range(5)])
    hist = store.user_interactions("u2", 3)
    assert [(h.item, h.kind) for h in hist] == [("x2", "view"), ("x3", "view"), ("x4", "view")]
    assert [h.seq for h in hist] == sorted(h.seq for h in hist)
    store.add_interactions([Interaction(u, "i1", "view", None, 1.0) for u in ("ab", "abc", "a*c", "b")])
    assert store.find_users("ab", 10) == ["ab", "abc"]
    assert store.find_users("a*", 10) == ["a*c"]
    with_history = {ev.user for ev in events for it, r, ts in rewards
                    if r > 0 and it in ev.items and ts - ev.ts < 6 and ts > ev.ts} | {"u2"}
    assert store.find_users("u", 2) == sorted(with_history)[:2]

    store.put_item("new1", "first text", {"g": "x"}, "sp", np.ones(4, np.float32), 10.0)
    store.put_item("new2", "second", {}, "sp", None, 11.0)
    store.put_item("new3", "third", {}, "sp", None, 12.0)
    store.delete_item("new2", 13.0)
    store.put_item("new1", "first text again", {}, "sp", None, 14.0)
    assert [(r.item, r.text, r.vector) for r in store.recent_items(5)] == [
        ("new1", "first text again", None), ("new3", "third", None)]
