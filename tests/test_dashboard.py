"""The dashboard on real server processes: its JSON numbers equal the store's counts after a
known sequence of ranks, rewards, events and items (SQLite and a real redis-server); the key
handling (401 without a read key, the one-time ``?api_key=``, the login form, the HttpOnly
SameSite=Strict cookie, no key or user id in the access log); and every page opened in headless
Chromium, its plotly charts drawn as SVG, with no console error and nothing fetched from
outside. ``EXPLOREC_SCREENSHOTS=docs/img`` also writes a screenshot of each page there.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from explorec.data.synthetic import generate
from explorec.serve.artifact import train_artifact
from explorec.serve.procs import ServiceProcess
from explorec.serve.stores import open_store

READ = "dash-read-" + "r" * 20
WRITE = "dash-write-" + "w" * 20
KEYS = {"EXPLOREC_READ_KEYS": READ, "EXPLOREC_WRITE_KEYS": WRITE}
H_READ, H_WRITE = {"X-API-Key": READ}, {"X-API-Key": WRITE}
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("dashboard")


@pytest.fixture(scope="module")
def artifact(work):
    art = work / "arts" / "egreedy"
    train_artifact(art, dataset=generate(n_users=120, n_items=90, n_interactions=2000, seed=5),
                   model="ease", policy="egreedy", encoder="tfidf", vector_dim=8,
                   policy_params={"epsilon": 0.3})
    return art


def _traffic(url: str, tag: str) -> dict:
    """A known sequence through the API; returns what the dashboard must show."""
    rng = np.random.default_rng(11)
    users = [f"{tag}-user-{n}" for n in range(6)]
    exp = {"slates": 0, "slots": 0, "explored": 0, "rewards": 0, "positives": 0, "reward_sum": 0.0,
           "events": 0, "shown": {}, "clicks": {}, "users": users, "items_put": ["fresh-a", "fresh-b"]}
    with httpx.Client(base_url=url, timeout=60, headers=H_WRITE) as c:
        for item, text in (("fresh-a", "a brand new item about music and concerts"),
                           ("fresh-b", "a new cooking book with recipes")):
            assert c.put(f"/v1/items/{item}", json={"text": text}).status_code == 200
        for n in range(40):
            body: dict = {"user": users[n % 6], "k": 4}
            if n < 4:  # the new items among few candidates: surely shown
                body["candidates"] = ["fresh-a", "fresh-b", "i1", "i2", "i3"]
            r = c.post("/v1/rank", json=body)
            assert r.status_code == 200, r.text
            out = r.json()
            exp["slates"] += 1
            for pos, it in enumerate(out["items"]):
                exp["slots"] += 1
                exp["explored"] += it["propensity"] < 1.0
                exp["shown"][it["item"]] = exp["shown"].get(it["item"], 0) + 1
                # rewards on some slots: every shown fresh item is clicked, others at random
                if it["item"].startswith("fresh") or rng.random() < 0.25:
                    value = 1.0 if it["item"].startswith("fresh") or rng.random() < 0.7 else 0.0
                    rw = c.post("/v1/reward", json={"event_id": out["event_id"], "position": pos,
                                                    "reward": value})
                    assert rw.status_code == 200, rw.text
                    exp["rewards"] += 1
                    exp["reward_sum"] += value
                    if value > 0:
                        exp["positives"] += 1
                        exp["clicks"][it["item"]] = exp["clicks"].get(it["item"], 0) + 1
        events = [{"user": users[0], "item": "i1", "type": "click"},
                  {"user": f"{tag}-only-events", "item": "i2", "type": "view"}]
        assert c.post("/v1/events", json={"events": events}).status_code == 200
        exp["events"] = len(events)
    assert exp["clicks"], "the sequence clicked nothing"
    return exp


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def served(request, artifact, work):
    """A real server on each store, after the known sequence."""
    if request.param == "sqlite":
        url = f"sqlite:///{work / 'dash.db'}"
    else:
        rs = request.getfixturevalue("redis_server")
        url = rs.url
    srv = ServiceProcess(artifact, url, work / f"srv-{request.param}", env=KEYS, access_log=True).start()
    try:
        exp = _traffic(srv.url, request.param)
        yield request.param, srv, url, exp
    finally:
        srv.stop()


# ------------------------------------------------------------------ JSON = the store's counts
def test_json_endpoints_equal_the_store_counts(served):
    kind, srv, url, exp = served
    with httpx.Client(base_url=srv.url, timeout=120, headers=H_READ) as c:
        o = c.get("/dashboard/api/overview", params={"window": "1h"})
        assert o.status_code == 200, o.text
        o = o.json()
        store = open_store(url)
        try:
            counts, totals = store.counts(), store.log_totals()
        finally:
            store.close()
        assert o["totals"] == totals and {k: totals[k] for k in counts} == counts
        assert totals["events"] == exp["slates"] and totals["rewards"] == exp["rewards"]
        assert totals["items"] == 2 and totals["interactions"] == exp["positives"] + exp["events"]
        w = o["in_window"]
        assert (w["slates"], w["slots"]) == (exp["slates"], exp["slots"])
        assert w["explored_slots"] == exp["explored"]
        assert (w["rewards"], w["positive_rewards"]) == (exp["rewards"], exp["positives"])
        assert w["reward_sum"] == pytest.approx(exp["reward_sum"])
        assert w["ctr"] == pytest.approx(exp["positives"] / exp["slots"])
        assert w["users"] == len(exp["users"]) and not w["truncated_events"]
        assert sum(o["series"]["slates"]) == exp["slates"] and sum(o["propensity"]["counts"]) == exp["slots"]
        assert o["rates"]["ranks_per_min"] == pytest.approx(exp["slates"] * 60 / 300)
        routes = {r["route"]: r for r in o["latency"]}
        assert routes["/v1/rank"]["requests"] >= exp["slates"] and routes["/v1/rank"]["p99_ms"] > 0
        assert o["artifact"]["policy"] == "egreedy" and o["artifact"]["manifest"]["model"] == "ease"

        for item in ("fresh-a", *list(exp["clicks"])[:2]):
            got = c.get("/dashboard/api/items", params={"item": item, "window": "1h"}).json()
            a = got["item"]["activity"]
            assert a["total_impressions"] == exp["shown"].get(item, 0), item
            assert a["total_clicks"] == exp["clicks"].get(item, 0), item
        new = {r["item"]: r for r in c.get("/dashboard/api/items").json()["new_items"]}
        assert set(new) == {"fresh-a", "fresh-b"}
        for item, r in new.items():
            assert r["impressions"] == exp["shown"].get(item, 0) and r["clicks"] == exp["clicks"].get(item, 0)
            assert (r["seconds_to_first_click"] is None) == (item not in exp["clicks"])

        u = c.get("/dashboard/api/users", params={"user": exp["users"][0]}).json()
        assert len(u["recent_slates"]) == 7 and len(u["slate"]["items"]) == 10
        assert all(0 < it["propensity"] <= 1 for it in u["slate"]["items"])
        assert any(it["because"] for it in u["slate"]["items"])  # explained by the user's history
        assert [h["kind"] for h in u["history"]][-1] == "click"
        # the interests the user reached: every logged item's interest is among them, each
        # first reached no later than the user's first interaction with one of its items
        it = u["interests"]
        assert it["n_interests"] >= 2 and it["discovered"]
        assert len(it["timeline"]["t"]) == len(u["history"])
        assert it["timeline"]["count"] == sorted(it["timeline"]["count"])
        assert it["timeline"]["count"][-1] == len(it["discovered"])
        assert sum(d["items"] for d in it["discovered"]) == len(u["history"]) + u["training_items"]
        again = c.get("/dashboard/api/users", params={"user": exp["users"][0]}).json()
        # the preview draws from a generator seeded by the user: the same slate while nothing changed
        assert [i["item"] for i in again["slate"]["items"]] == [i["item"] for i in u["slate"]["items"]]
        found = c.get("/dashboard/api/users", params={"q": f"{kind}-user-"}).json()["matches"]
        assert {m["user"] for m in found} <= set(exp["users"]) and found

        p = c.get("/dashboard/api/policies").json()
        assert p["slates"] == exp["slates"] and p["rows"] == exp["slots"] and p["skipped_slates"] == 0
        assert p["logged"]["estimate"] == pytest.approx(exp["positives"] / exp["slots"])
        live = [r for r in p["candidates"] if r["live"]]
        assert len(live) == 1 and live[0]["policy"] == "egreedy"
        # the live policy re-evaluated on its own log: every IPW weight is 1
        assert live[0]["estimates"]["ipw"]["estimate"] == pytest.approx(p["logged"]["estimate"])
        assert {"greedy", "linucb"} <= {r["policy"] for r in p["candidates"] if "estimates" in r}
        # viewing wrote nothing: the users page's slate is a preview, never logged
        assert c.get("/dashboard/api/overview", params={"window": "1h"}).json()["totals"] == totals


# ------------------------------------------------------------------ keys
@pytest.mark.parametrize("served", ["sqlite"], indirect=True)  # keys do not depend on the store
def test_keys_cookie_and_logs(served):
    _, srv, _, exp = served
    start = len(srv.log())
    user = exp["users"][1]
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        r = c.get("/dashboard")
        assert r.status_code == 401 and 'name="api_key"' in r.text  # the login form
        assert r.headers["cache-control"] == "no-store" and "frame-ancestors 'none'" in r.headers[
            "content-security-policy"]
        api = c.get("/dashboard/api/overview")
        assert api.status_code == 401 and api.json()["field"] == "X-API-Key"
        assert c.get("/dashboard/api/overview", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/dashboard", params={"api_key": "wrong"}).status_code == 401
        # the one-time ?api_key=: a redirect to the same page without it, the key in a cookie
        r = c.get("/dashboard/users", params={"user": user, "api_key": READ}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/dashboard/users?user={user}"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
        assert READ not in r.headers["set-cookie"]  # encoded, and sent only to /dashboard
        assert c.get(r.headers["location"]).status_code == 200  # the cookie now reads
        assert c.get("/dashboard/api/overview").status_code == 200
        c.post("/dashboard/logout")
        assert c.get("/dashboard").status_code == 401
        # the login form; only dashboard paths as the next page (no open redirect)
        bad = c.post("/dashboard/login", data={"api_key": "nope", "next": "/dashboard"})
        assert bad.status_code == 401 and "Unknown key" in bad.text
        ok = c.post("/dashboard/login", data={"api_key": READ, "next": "https://evil.example/x"},
                    follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
        cross = c.post("/dashboard/login", data={"api_key": READ}, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403
        # nothing on the dashboard writes; the API's write routes still need a write key
        assert c.post("/v1/reward", json={"event_id": "x" * 32, "position": 0, "reward": 1},
                      headers=H_READ).status_code == 403
        assert c.post("/dashboard", headers=H_WRITE).status_code == 405
    deadline = time.monotonic() + 5
    while "/dashboard/users?…" not in srv.log()[start:] and time.monotonic() < deadline:
        time.sleep(0.1)
    log = srv.log()[start:]
    assert "GET /dashboard/users?…" in log  # the line is there, without its query ...
    assert READ not in log and user not in log  # ... so neither the key nor the user id


# ------------------------------------------------------------------ a real browser
def _seed_a_day(store_url: str, artifact: Path) -> None:
    """For the screenshots: a simulated day of traffic written by an in-process engine on a
    fake clock (each item has a click probability; new items are put during the day)."""
    from unittest import mock

    from explorec.serve.artifact import load_service_artifact
    from explorec.serve.engine import Engine

    store = open_store(store_url)
    eng = Engine(load_service_artifact(artifact), store)
    rng = np.random.default_rng(7)
    start = time.time() - 86400
    clock = [start]
    appeal: dict[str, float] = {}
    with mock.patch("time.time", lambda: clock[0]):
        for step in range(96):  # every 15 minutes
            clock[0] = start + step * 900
            if step in (30, 60, 80):
                eng.put_item(f"day-new-{step}", f"a new release number {step} about music and travel", {})
            for _ in range(3 + int(3 * (1 + np.sin(step / 96 * 2 * np.pi)))):
                out = eng.rank(f"demo-user-{rng.integers(12)}", 5)
                for it in out.items:
                    p = appeal.setdefault(it.item, float(rng.beta(1.2, 5)))
                    if rng.random() < 0.6:
                        clock[0] += 5
                        eng.reward(out.event_id, float(rng.random() < p), item=it.item)
    store.close()


@pytest.fixture(scope="module")
def browser_server(served, artifact, work):
    """The SQLite server of the JSON test; with ``EXPLOREC_SCREENSHOTS``, one whose store holds
    a simulated day first, so that the screenshots show charts over time."""
    kind, srv, _, exp = served
    if kind != "sqlite" or not os.environ.get("EXPLOREC_SCREENSHOTS"):
        yield kind, srv, exp
        return
    url = f"sqlite:///{work / 'demo.db'}"
    _seed_a_day(url, artifact)
    demo = ServiceProcess(artifact, url, work / "srv-demo", env=KEYS).start()
    try:
        yield kind, demo, _traffic(demo.url, "demo")
    finally:
        demo.stop()


def _driver(tmp: Path):
    if not (shutil.which("chromium") or Path(CHROMIUM).exists()) or not Path(CHROMEDRIVER).exists():
        pytest.fail("headless Chromium is not installed: run `make chromium` (Debian packages "
                    "chromium and chromium-driver); `make test` installs them when missing")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp}", "--window-size=1280,900",
                "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _requests(driver) -> list[str]:
    import json

    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _screenshot(driver, name: str) -> None:
    out = os.environ.get("EXPLOREC_SCREENSHOTS")
    if not out:
        return
    from PIL import Image

    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / f"dashboard-{name}.png"
    # the whole page (up to a bound) without resizing the window, which would reflow the charts
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": int(width), "height": min(int(height), 1800), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    with Image.open(path) as im:  # small files: 1000 px wide, 128 colours
        im = im.convert("RGB")
        im = im.resize((1000, round(im.height * 1000 / im.width)), Image.Resampling.LANCZOS)
        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


@pytest.mark.parametrize("served", ["sqlite"], indirect=True)  # one store (the JSON test covers both)
def test_every_page_renders_its_charts_in_chromium(browser_server):
    _, srv, exp = browser_server
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    item = max(exp["clicks"], key=lambda i: (exp["clicks"][i], i))
    pages = [("overview", "/dashboard?window=24h", 4), ("policies", "/dashboard/policies", 1),
             ("users", f"/dashboard/users?user={exp['users'][0]}", 3),
             ("items", f"/dashboard/items?item={item}&window=24h", 2)]
    tmp = Path(tempfile.mkdtemp(prefix="explorec-chromium-"))
    driver = _driver(tmp)
    try:
        driver.set_page_load_timeout(120)
        # without a key: the login page (answered 401), no chart
        driver.get(srv.url + "/dashboard")
        assert driver.find_elements(By.ID, "api_key")
        assert not driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
        driver.get_log("browser")  # the 401 is expected; drop its console line
        # log in once, by the form
        driver.find_element(By.ID, "api_key").send_keys(READ)
        driver.find_element(By.ID, "login").click()
        WebDriverWait(driver, 60).until(lambda d: d.current_url.endswith("/dashboard"))
        cookie = driver.get_cookie("explorec_dashboard_key")
        assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert driver.execute_script("return document.cookie") == ""  # not readable by scripts
        _requests(driver)
        for name, path, n_charts in pages:
            driver.get(srv.url + path)
            WebDriverWait(driver, 60).until(lambda d: d.execute_script(
                "var f = document.querySelectorAll('[data-figure]');"
                "return f.length > 0 && Array.prototype.every.call(f, function (e) {"
                " return e.getAttribute('data-rendered') === '1'; });"))
            charts = driver.find_elements(By.CSS_SELECTOR, "[data-figure]")
            assert len(charts) == n_charts, (name, len(charts))
            for ch in charts:
                assert ch.find_elements(By.CSS_SELECTOR, "svg.main-svg"), (name, ch.get_attribute("id"))
                marks = ch.find_elements(By.CSS_SELECTOR, "g.trace path, g.trace .point, g.points path")
                assert marks, (name, ch.get_attribute("id"), "drew no mark")
            errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
            assert not errors, (name, errors)
            local = (srv.url, "data:", "blob:", "about:")
            outside = [u for u in _requests(driver) if not u.startswith(local)]
            assert not outside, (name, outside)
            _screenshot(driver, name)
    finally:
        driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_random_user_id_is_never_an_error(served):
    _, srv, _, _ = served
    with httpx.Client(base_url=srv.url, timeout=60, headers=H_READ) as c:
        u = c.get("/dashboard/api/users", params={"user": f"never-{uuid.uuid4().hex}"})
        assert u.status_code == 200 and not u.json()["known"] and len(u.json()["slate"]["items"]) == 10
        assert c.get("/dashboard/api/users", params={"user": " padded"}).status_code == 422
        assert c.get("/dashboard/api/items", params={"item": "no-such-item"}).json()["item"]["known"] is False
        assert c.get("/dashboard/api/overview", params={"window": "2y"}).status_code == 422
