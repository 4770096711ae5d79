"""HTML reports: every kind of run JSON renders into one self-contained file (plotly.js inline,
nothing fetched), with the run's numbers, escaped text, and clear errors for bad input.

The runs are real and tiny: the CLI commands with small options, once per module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXE = [sys.executable, "-m", "explorec.cli.main"]


def cli(*args: str, ok: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def cli_start(*args: str) -> subprocess.Popen:
    """A command started in the background (its output piped)."""
    return subprocess.Popen([*EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "COLUMNS": "200"})


class _Tags(HTMLParser):
    """Every tag's attributes (script bodies are not parsed as markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def check_self_contained(path: Path) -> str:
    """The page loads nothing from elsewhere and carries plotly.js itself."""
    html = path.read_text(encoding="utf-8")
    p = _Tags()
    p.feed(html)
    for tag, attrs in p.tags:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not value.startswith(("http://", "https://", "//")), (tag, key, value)
        assert not (tag == "script" and "src" in attrs), attrs
        assert tag != "link", attrs
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert any(len(s) >= len(bundle) - 10 and s.strip() == bundle.strip() for s in p.scripts)
    assert "showSendToCloud: false" in html
    # one chart div per figure in the data
    n_divs = sum(1 for tag, a in p.tags if tag == "div" and "chart" in (a.get("class") or ""))
    assert n_divs == html.count('"id": "fig-') >= 1
    return html


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ml100k) -> dict[str, Path]:
    """Each command once, with --json and --html (tiny options); the independent ones run
    side by side (each is mostly a process start and a second or two of work)."""
    d = tmp_path_factory.mktemp("runs")
    procs = [
        cli_start("evaluate", "--dataset", "ml-100k", "--models", "pop,itemknn", "--k", "10",
                  "--json", str(d / "ev.json"), "--html", str(d / "ev.html")),
        cli_start("ope", "--dataset", "obd", "--n-sim", "1000", "--bootstrap", "20",
                  "--json", str(d / "ope.json"), "--html", str(d / "ope.html")),
        cli_start("tune", "--model", "itemknn", "--trials", "2", "--json", str(d / "tune.json"),
                  "--html", str(d / "tune.html")),
        cli_start("simulate", "--dataset", "ml-100k", "--policies", "greedy,egreedy", "--rounds",
                  "200", "--seeds", "2", "--model", "pop", "--encoder", "tfidf",
                  "--json", str(d / "sim.json"), "--markdown", str(d / "sim.md"),
                  "--html", str(d / "sim.html")),
    ]
    try:
        _service_log(d)
        cli("ope", "--log", f"sqlite:///{d / 'log.db'}", "--policy", "greedy", "--artifact",
            str(d / "art"), "--bootstrap", "20", "--json", str(d / "opelog.json"),
            "--html", str(d / "opelog.html"))
    finally:
        outs = [(proc, proc.communicate(timeout=300)[0]) for proc in procs]
    for proc, out in outs:
        assert proc.returncode == 0, out
    return {p.name: p for p in d.iterdir() if p.suffix in (".json", ".html", ".md")}


def _service_log(d: Path) -> None:
    """A small real service log: an egreedy artifact on synthetic data, ranked and rewarded."""
    import numpy as np

    from explorec.data.synthetic import generate
    from explorec.serve.artifact import load_service_artifact, train_artifact
    from explorec.serve.engine import Engine
    from explorec.serve.stores import SQLiteStore

    data = generate(n_users=100, n_items=80, n_interactions=1500, seed=7)
    train_artifact(d / "art", dataset=data, model="pop", policy="egreedy", encoder="tfidf",
                   vector_dim=8, policy_params={"epsilon": 0.3})
    store = SQLiteStore(d / "log.db")
    eng = Engine(load_service_artifact(d / "art"), store)
    rng = np.random.default_rng(3)
    for n in range(40):
        out = eng.rank(f"u{n % 10}", 3)
        for it in out.items:
            if rng.random() < 0.3:
                eng.reward(out.event_id, 1.0, item=it.item)
    store.close()


def test_detected_kinds(runs):
    from explorec.report.html import load_run

    assert {name: load_run(runs[f"{name}.json"]).kind
            for name in ("ev", "ope", "tune", "sim", "opelog")} == {
        "ev": "evaluate", "ope": "ope", "tune": "tune", "sim": "simulate", "opelog": "ope-log"}
    bench = REPO / "benchmarks" / "results"
    assert load_run(bench / "baselines.json").kind == "benchmark-leaderboard"
    assert load_run(bench / "simulation_ml100k.json").kind == "benchmark-simulation"
    assert load_run(REPO / "benchmarks" / "ml-100k.json").kind == "benchmark-leaderboard"
    assert load_run(bench / "scale.json").kind == "benchmark"


def test_evaluate_html_has_the_leaderboard_and_significance(runs):
    html = check_self_contained(runs["ev.html"])
    report = json.loads(runs["ev.json"].read_text())
    sig = report["significance"]
    for r in report["results"]:
        assert f"{r['metrics']['ndcg@10']:.4f}" in html
        assert f"{r['metrics']['recall@10']:.4f}" in html
    pop = next(r for r in report["results"] if r["model"] == "pop")["significance"]["ndcg@10"]
    assert f"{pop['diff']:+.4f}" in html
    assert f"[{pop['diff_ci_low']:+.4f}, {pop['diff_ci_high']:+.4f}]" in html
    assert f"{pop['p_t_holm']:.1e}" in html
    assert "p t-test (Holm)" in html and f"seed {sig['seed']}" in html
    assert "Test metrics per model" in html


def test_simulate_html_has_curves_and_noise(runs):
    html = check_self_contained(runs["sim.html"])
    report = json.loads(runs["sim.json"].read_text())
    for row in report["summary"]:
        assert f"{row['cumulative_reward']:,.2f}" in html or f"{row['cumulative_reward']:,.1f}" in html
    assert "cumulative reward per round" in html and "ctr per round" in html
    assert "seed by seed over seeds 2020..2021" in html
    assert "paired t over 2 seeds" in html
    # the Markdown says it too
    assert "paired t-test over seeds" in runs["sim.md"].read_text()


def test_ope_html_has_estimates_with_intervals(runs):
    html = check_self_contained(runs["ope.html"])
    report = json.loads(runs["ope.json"].read_text())
    for r in (report, report["reverse"]):
        for e in r["estimates"]:
            assert f"[{e['ci_low']:.5f}, {e['ci_high']:.5f}]" in html
        assert f"{r['ground_truth']:.5f}" in html
    html = check_self_contained(runs["opelog.html"])
    log = json.loads(runs["opelog.json"].read_text())
    for e in log["estimates"]:
        assert f"{e['estimate']:.5f}" in html
    assert "greedy on the log" in html and "egreedy" in html


def test_tune_html_has_the_trials(runs):
    html = check_self_contained(runs["tune.html"])
    report = json.loads(runs["tune.json"].read_text())
    for h in report["history"]:
        assert f"{h['valid_ndcg@10']:.4f}" in html
    assert "best so far" in html


def test_report_command_combines_runs_and_benchmarks(runs, tmp_path):
    out = tmp_path / "all" / "report.html"
    bench = REPO / "benchmarks" / "results"
    files = [runs[f"{n}.json"] for n in ("ev", "sim", "ope", "opelog", "tune")] + [
        bench / "baselines.json", bench / "simulation_ml100k.json", bench / "scale.json"]
    proc = cli("report", *map(str, files), "--output", str(out), "--title", "All <runs>")
    assert f"wrote {out}" in proc.stdout.replace("\n", "")
    html = check_self_contained(out)
    assert "<title>All &lt;runs&gt;</title>" in html
    for kind in ("evaluate", "simulate", "ope", "ope-log", "tune", "benchmark-leaderboard",
                 "benchmark-simulation", "benchmark"):
        assert f'<span class="kind">{kind}</span>' in html
    base = json.loads((bench / "baselines.json").read_text())
    assert f"{base['models']['ease']['ndcg@10']['mean']:.4f}" in html


def test_text_from_the_json_is_escaped(runs, tmp_path):
    from explorec.report.html import write_report

    report = json.loads(runs["ev.json"].read_text())
    report["results"][0]["model"] = "<script>alert(1)</script>"
    report["dataset"] = "<b>x</b>"
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(report))
    html = write_report([path], tmp_path / "evil.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    # inside the charts' JSON too: no closing tag can end the script early
    assert "\\u003cscript\\u003ealert(1)" in html


def test_bad_or_unknown_json_is_a_clear_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"results": [')
    proc = cli("report", str(bad), "--output", str(tmp_path / "r.html"), ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}: not valid JSON" in proc.stderr.replace("\n", "")
    unknown = tmp_path / "other.json"
    unknown.write_text('{"hello": 1}')
    proc = cli("report", str(unknown), "--output", str(tmp_path / "r.html"), ok=False)
    err = proc.stderr.replace("\n", "")
    assert proc.returncode == 2 and str(unknown) in err and "not a run's JSON" in err
    assert "hello" in err
    proc = cli("report", str(tmp_path / "missing.json"), ok=False)
    assert proc.returncode == 2 and "missing.json: no such file" in proc.stderr.replace("\n", "")
    assert not (tmp_path / "r.html").exists()
    # a known kind with a broken shape names the file too
    from explorec.report.html import ReportError, run_from_data, write_report

    shaped = run_from_data({"split": "ratio", "results": [{"model": "x", "metrics": 3}]}, "odd.json")
    with pytest.raises(ReportError, match=r"odd\.json: unexpected shape for evaluate output"):
        write_report([shaped], tmp_path / "r.html")
