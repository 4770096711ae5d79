"""What an acknowledgement means, checked by cutting the process (SIGKILL from inside, via
``EXPLOREC_FAULT``) at every step of the reward path, on SQLite and on a real redis-server:
after a restart, every acknowledged reward is stored exactly once, the one in flight is stored
at most once (a retry either records it or answers 409, never both, never twice), and the
policy has learned from every stored reward exactly once.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from explorec.data.synthetic import generate
from explorec.serve.artifact import train_artifact
from explorec.serve.faults import POINTS
from explorec.serve.procs import ServiceProcess
from explorec.serve.stores import open_store

# where the crash falls -> whether the reward in flight was already stored
STORED = {"reward.before_write": False, "reward.in_transaction": False, "reward.after_commit": True,
          "reward.after_apply": True, "snapshot.in_transaction": True, "snapshot.before_write": True}
REDIS_POINTS = [p for p in POINTS if p not in ("reward.in_transaction", "snapshot.in_transaction")]
CASES = [("sqlite", p) for p in POINTS] + [("redis", p) for p in REDIS_POINTS]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    art = tmp_path_factory.mktemp("faults") / "art"
    train_artifact(art, dataset=generate(n_users=80, n_items=60, n_interactions=1200, seed=11),
                   model="pop", policy="linucb", encoder="tfidf", vector_dim=8)
    return art


def test_every_point_is_covered():
    assert set(STORED) == set(POINTS)


@pytest.mark.parametrize(("kind", "point"), CASES, ids=[f"{k}-{p}" for k, p in CASES])
def test_a_crash_at_each_step_of_the_reward_path_keeps_exactly_once(kind, point, artifact, tmp_path,
                                                                    request):
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'faults.db'}"
    else:
        url = request.getfixturevalue("redis_server").url
    env = {"EXPLOREC_SNAPSHOT_EVERY": "2"}  # snapshots on the path too
    # the 3rd visit: earlier rewards (and a snapshot) went through before the cut
    srv = ServiceProcess(artifact, url, tmp_path / "srv", env={**env, "EXPLOREC_FAULT": f"{point}:3"})
    if kind == "redis":
        import redis

        redis.Redis.from_url(url).flushdb()  # each case on an empty database
    srv.start()
    acked: dict[tuple[str, int], float] = {}
    in_flight: dict | None = None
    user = f"fault-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for i in range(40):
            r = c.post("/v1/rank", json={"user": user, "k": 3})
            assert r.status_code == 200, r.text
            body = {"event_id": r.json()["event_id"], "position": i % 3, "reward": [1.0, 0.5][i % 2]}
            try:
                ans = c.post("/v1/reward", json=body)
            except httpx.HTTPError:  # the process died before answering
                in_flight = body
                break
            assert ans.status_code == 200, ans.text
            acked[(body["event_id"], body["position"])] = body["reward"]
    assert in_flight is not None, f"{point} was never reached"
    srv.proc.wait(30)
    assert srv.proc.returncode != 0  # killed, not shut down
    assert len(acked) >= 2

    again = ServiceProcess(artifact, url, tmp_path / "again", env=env).start()
    try:
        with httpx.Client(base_url=again.url, timeout=30) as c:
            retry = c.post("/v1/reward", json=in_flight)  # the client retries what got no answer
            assert retry.status_code == (409 if STORED[point] else 200), retry.text
            for (eid, pos), value in acked.items():  # each acknowledged one is there, once
                dup = c.post("/v1/reward", json={"event_id": eid, "position": pos, "reward": value})
                assert dup.status_code == 409, dup.text
            status = c.get("/v1/admin/status").json()
    finally:
        again.stop()
    store = open_store(url)
    try:
        stored = {(r.event_id, r.position): r.reward for r in store.rewards_since(0)}
        assert len(store.rewards_since(0)) == len(stored)  # no reward twice
        assert stored == {**acked, (in_flight["event_id"], in_flight["position"]): in_flight["reward"]}
        # the policy learned from every stored reward exactly once
        assert status["rewards_applied"] == len(stored), status
        assert status["reward_seq"] == max(r.seq for r in store.rewards_since(0)), status
    finally:
        store.close()
