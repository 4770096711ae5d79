# explorec: two commands on a fresh machine.
#   make quickstart   set up .venv, fetch ML-100K, train + evaluate, OPE on OBD, a short bandit simulation -> reports/quickstart/,
#                     a service artifact and the command that serves it with its dashboard
#   make test         set up .venv, run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: quickstart test lint bench clean help venv redis chromium

help:
	@echo "make quickstart | make test | make lint | make bench | make clean"

# Re-installs only when the dependency declarations change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[all]'
	@touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/explorec data fetch ml-100k
	$(BIN)/explorec evaluate --dataset ml-100k --split ratio --seed 2020 \
		--models random,pop,itemknn,userknn,ease,slim,ials,hybrid --k 10,20 \
		--param hybrid.cf=slim --param hybrid.text=ials \
		--json reports/quickstart/leaderboard.json --markdown reports/quickstart/leaderboard.md
	$(BIN)/explorec evaluate --dataset ml-100k --split cold-items --seed 2020 \
		--models random,pop,ease,content,two-tower --k 20 --metrics recall,ndcg,hit,itemcoverage \
		--json reports/quickstart/cold_items.json --markdown reports/quickstart/cold_items.md
	$(BIN)/explorec ope --dataset obd --campaign all --behavior random --evaluation bts \
		--json reports/quickstart/ope_obd.json --markdown reports/quickstart/ope_obd.md
	$(BIN)/explorec simulate --dataset ml-100k --policies greedy,egreedy,ts,lints --rounds 5000 \
		--slate-size 5 --seeds 1 --seed 2020 --json reports/quickstart/simulation.json \
		--markdown reports/quickstart/simulation.md --plot reports/quickstart/simulation.png
	$(BIN)/explorec train --dataset ml-100k --model ease --policy lints --output reports/quickstart/artifact
	$(BIN)/explorec report reports/quickstart/leaderboard.json reports/quickstart/cold_items.json \
		reports/quickstart/ope_obd.json reports/quickstart/simulation.json \
		--title "explorec quickstart" --output reports/quickstart/report.html
	@echo "Reports in reports/quickstart/: leaderboard.md (warm; hybrid = SLIM blended with iALS, the best model), cold_items.md (new items, text only; pop and ease show what no information scores), ope_obd.md (off-policy evaluation), simulation.md (exploration policies)"
	@echo "All four in one page (charts, confidence intervals, significance; opens offline): reports/quickstart/report.html"
	@READ=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(18))'); \
	WRITE=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(18))'); \
	echo "Serve the quickstart artifact (EASE + linear Thompson sampling on MiniLM item vectors) with its dashboard on 127.0.0.1:"; \
	echo "  EXPLOREC_READ_KEYS=$$READ EXPLOREC_WRITE_KEYS=$$WRITE $(BIN)/explorec serve --artifact reports/quickstart/artifact --store sqlite:///reports/quickstart/service.db"; \
	echo "then open http://127.0.0.1:8000/dashboard?api_key=$$READ (read key; rank with it, reward with the write key: docs/service.md)"

test: $(STAMP) redis chromium
	$(BIN)/python -m pytest -q

# The service tests start a real redis-server (Debian package redis-server); apt only when missing.
redis:
	@command -v redis-server >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server; }

# The dashboard's browser test drives headless Chromium (Debian packages chromium and
# chromium-driver, through selenium); apt only when missing.
chromium:
	@{ command -v chromium >/dev/null 2>&1 && test -x /usr/bin/chromedriver; } || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; }

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[all,bench]'
	$(BIN)/python benchmarks/baselines.py --seeds 2020,2021,2022 --output benchmarks/results
	$(BIN)/python benchmarks/cold_start.py --seeds 2020,2021,2022 --output benchmarks/results
	$(BIN)/python benchmarks/encoders.py --output benchmarks/results
	$(BIN)/python benchmarks/training_overhead.py --steps 300 --output benchmarks/results
	$(BIN)/python benchmarks/ials_solvers.py --repeats 3 --output benchmarks/results
	$(BIN)/python benchmarks/zoo.py --seeds 2020,2021,2022 --output benchmarks
	$(BIN)/python benchmarks/simulation.py --rounds 50000 --seeds 2020,2021,2022 --output benchmarks/results
	$(BIN)/python benchmarks/memory_estimates.py --users 40000 --items 8000 --interactions 1000000
	$(BIN)/python benchmarks/sparse_topk.py
	$(BIN)/python benchmarks/parquet_dir.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/two_tower_ids.py --output benchmarks/results
	@$(MAKE) --no-print-directory redis
	$(BIN)/python benchmarks/rank_batching.py --output benchmarks/results
	$(BIN)/python benchmarks/sqlite_writers.py --output benchmarks/results
	$(BIN)/python benchmarks/service_load.py --duration 10 --concurrency 16 --output benchmarks/results
	$(BIN)/python benchmarks/service_profile.py --duration 15 --output benchmarks/results
	$(BIN)/python benchmarks/interests.py --seeds 2020,2021,2022 --output benchmarks/results


clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache
