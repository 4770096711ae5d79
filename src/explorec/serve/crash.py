"""Crash test: ``kill -9`` the server while ranks, rewards and events stream in; restart; verify.

Each cycle starts the service, streams writes from several client threads, and kills the
server (SIGKILL, no shutdown) at a random moment once writes are flowing. Every write the
server acknowledged (HTTP 200) is recorded. After the last cycle a fresh server starts and
the test checks, straight from the store and through the API, that

* every acknowledged slate is in the event log;
* every acknowledged reward is stored exactly once with its value, and answering it again
  gives 409 (applied at most once);
* every acknowledged interaction is in its user's history;
* the policy has applied every stored reward exactly once (its applied count equals the
  number of stored rewards, and its reward sequence is the store's last).

Run it: ``python benchmarks/service_crash.py --artifact DIR --cycles 20``.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorec.serve.procs import ServiceProcess
from explorec.serve.stores import open_store


@dataclass
class Acked:
    ranks: set[str] = field(default_factory=set)
    rewards: dict[tuple[str, int], float] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client_loop(url: str, stop: threading.Event, acked: Acked, worker: int, cycle: int,
                 counter: list[int]) -> None:
    import httpx

    rnd = random.Random(cycle * 1000 + worker)
    with httpx.Client(base_url=url, timeout=10.0) as c:
        n = 0
        while not stop.is_set():
            user = f"crash-{worker}-{rnd.randrange(50)}"
            try:
                r = c.post("/v1/rank", json={"user": user, "k": 3, "explain": False})
                if r.status_code != 200:
                    continue
                body = r.json()
                with acked.lock:
                    acked.ranks.add(body["event_id"])
                    counter[0] += 1
                if not body["items"]:
                    continue
                pos = rnd.randrange(len(body["items"]))
                value = rnd.choice([0.0, 0.5, 1.0])
                r = c.post("/v1/reward", json={"event_id": body["event_id"], "position": pos,
                                               "reward": value})
                if r.status_code == 200:
                    with acked.lock:
                        acked.rewards[(body["event_id"], pos)] = value
                        counter[0] += 1
                item = body["items"][0]["item"]
                r = c.post("/v1/events", json={"events": [{"user": user, "item": item, "type": "view"}]})
                if r.status_code == 200:
                    with acked.lock:
                        acked.events.append((user, item))
                        counter[0] += 1
                n += 1
            except Exception:  # the server died mid-request: that write is not acknowledged
                if stop.is_set():
                    return
                time.sleep(0.01)


def crash_test(artifact: str | Path, *, store: str | None = None, cycles: int = 20,
               clients: int = 4, min_writes: int = 10, max_delay: float = 0.15,
               directory: str | Path | None = None, seed: int = 0, snapshot_every: int = 25,
               log: Any = None) -> dict[str, Any]:
    """Run the crash test; returns a report (``ok`` is True when nothing was lost)."""
    import httpx

    rnd = random.Random(seed)
    work = Path(directory or tempfile.mkdtemp(prefix="explorec-crash-"))
    store = store or f"sqlite:///{work / 'crash.db'}"
    acked = Acked()
    env = {"EXPLOREC_SNAPSHOT_EVERY": str(snapshot_every)}
    t0 = time.perf_counter()
    per_cycle = []
    for cycle in range(cycles):
        srv = ServiceProcess(artifact, store, work, env=env).start()
        stop = threading.Event()
        counter = [0]
        threads = [threading.Thread(target=_client_loop, args=(srv.url, stop, acked, w, cycle, counter),
                                    daemon=True) for w in range(clients)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while counter[0] < min_writes and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rnd.uniform(0.0, max_delay))
        srv.kill()  # SIGKILL while writes are in flight
        stop.set()
        for t in threads:
            t.join(15)
        per_cycle.append(counter[0])
        if log:
            log(f"cycle {cycle + 1}/{cycles}: {counter[0]} writes acknowledged before kill -9")
    # verify from the store itself
    st = open_store(store)
    try:
        events = st.get_events(sorted(acked.ranks))
        missing_events = sorted(acked.ranks - set(events))
        lost_rewards, wrong_rewards, dup_rewards = [], [], []
        for (eid, pos), value in acked.rewards.items():
            recs = [r for r in st.rewards_for_event(eid) if r.position == pos]
            if not recs:
                lost_rewards.append((eid, pos))
            elif len(recs) > 1:
                dup_rewards.append((eid, pos))
            elif recs[0].reward != value:
                wrong_rewards.append((eid, pos, recs[0].reward, value))
        lost_events = []
        histories: dict[str, list[str]] = {}
        for user, item in acked.events:
            if user not in histories:
                histories[user] = st.history(user)[0]
            if item not in histories[user]:
                lost_events.append((user, item))
        counts = st.counts()
        last_seq = st.heads().rewards_seq
    finally:
        st.close()
    # verify through a restarted server: state rebuilt, each reward applied once
    srv = ServiceProcess(artifact, store, work, env=env).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            status = c.get("/v1/admin/status").json()
            sample = list(acked.rewards)[:200]
            replays = [c.post("/v1/reward", json={"event_id": e, "position": p, "reward": 1.0}).status_code
                       for e, p in sample]
    finally:
        srv.stop()
    applied_once = (status["rewards_applied"] == counts["rewards"] and status["reward_seq"] == last_seq)
    ok = (not missing_events and not lost_rewards and not wrong_rewards and not dup_rewards
          and not lost_events and applied_once and all(code == 409 for code in replays))
    return {"ok": ok, "cycles": cycles, "store": store, "seconds": round(time.perf_counter() - t0, 1),
            "acknowledged": {"ranks": len(acked.ranks), "rewards": len(acked.rewards),
                             "events": len(acked.events)},
            "writes_per_cycle": per_cycle, "stored": counts,
            "missing_events": missing_events[:10], "lost_rewards": lost_rewards[:10],
            "wrong_rewards": wrong_rewards[:10], "duplicate_rewards": dup_rewards[:10],
            "lost_interactions": lost_events[:10],
            "policy": {"rewards_applied": status["rewards_applied"], "reward_seq": status["reward_seq"],
                       "store_rewards": counts["rewards"], "store_last_seq": last_seq,
                       "applied_once": applied_once},
            "replayed_rewards_refused": sum(code == 409 for code in replays),
            "replayed_rewards_sent": len(replays)}
