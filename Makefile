# DeepMiner Studio: `make demo` brings the whole product up; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_IMAGES ?= 500
DEMO_SEED ?= 0
export DJANGO_SETTINGS_MODULE := config.settings

.PHONY: demo venv migrate demo-users demo-data demo-jobs worker serve test test-fast lint format bench browser mutation clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

migrate: venv
	$(BIN)/python manage.py migrate --noinput

# The README's first command: install, migrate, demo accounts + data, run the pipeline through a real
# Celery worker, then serve at http://$(HOST):$(PORT) with the worker still running (Ctrl-C stops both).
demo: migrate
	$(BIN)/python manage.py demo_users
	$(BIN)/python manage.py make_demo_data --images $(DEMO_IMAGES) --seed $(DEMO_SEED)
	@mkdir -p var/log
	@$(BIN)/celery -A config worker --pool=solo --concurrency=1 --hostname=demo@%h --loglevel=INFO \
	    --without-gossip --without-mingle > var/log/worker.log 2>&1 & echo $$! > var/worker.pid; \
	  trap 'kill $$(cat var/worker.pid) 2>/dev/null; rm -f var/worker.pid' EXIT INT TERM; \
	  echo "Celery worker started (pid $$(cat var/worker.pid), log var/log/worker.log)"; \
	  $(BIN)/python manage.py run_demo_jobs && \
	  $(BIN)/python manage.py demo_users --quiet && \
	  echo "Serving DeepMiner Studio at http://$(HOST):$(PORT)/ (Ctrl-C to stop)" && \
	  $(BIN)/gunicorn config.wsgi --bind $(HOST):$(PORT) --workers 2 --threads 4 --access-logfile -

worker: migrate
	$(BIN)/celery -A config worker --pool=solo --concurrency=1 --loglevel=INFO

serve: migrate
	$(BIN)/gunicorn config.wsgi --bind $(HOST):$(PORT) --workers 2 --threads 4 --access-logfile -

# Debian's Chromium drives the browser tests (no browser download) and Debian's Node.js runs the page's
# sentence grammar against Python's; both installed when missing and we are root.
browser:
	@{ command -v chromium && command -v node; } >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  apt-get install -y -qq --no-install-recommends chromium chromium-driver nodejs; } || \
	  { echo "Chromium and Node.js are needed for the tests: apt-get install chromium chromium-driver nodejs"; exit 1; }

# The README's second command: the whole suite, end-to-end tests included. Uses var/test, never the demo's data.
test: venv browser
	DEEPMINER_VAR_DIR=$${DEEPMINER_VAR_DIR:-$(CURDIR)/var/test} $(BIN)/python -m pytest $(PYTEST_ARGS)

# Quick loop while developing: skips the tests that start workers and browsers.
test-fast: venv
	DEEPMINER_VAR_DIR=$${DEEPMINER_VAR_DIR:-$(CURDIR)/var/test} $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Lint, format and types: what CI checks before the tests (`make format` rewrites what `ruff format --check` flags).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEEPMINER_VAR_DIR=$${DEEPMINER_VAR_DIR:-$(CURDIR)/var/test} $(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Mutation testing of the guards (pyproject's [tool.mutmut]: permissions, the versioned save, the media view and
# `next` rule, atomic file writes, the import's storing, the job life cycle) against the fast tests that reach
# each function. About an hour on 2 cores, so not in CI: run it after touching a guard and update
# docs/mutation.md (score, and why each surviving mutant is equivalent). `mutmut show <name>` shows one mutant.
mutation: venv
	rm -rf mutants
	DEEPMINER_VAR_DIR=$(CURDIR)/var/mutation $(BIN)/mutmut run
	$(BIN)/mutmut export-cicd-stats
	@$(BIN)/python -c "import json; s = json.load(open('mutants/mutmut-cicd-stats.json')); \
	  caught = s['killed'] + s['timeout']; tested = s['total'] - s['skipped']; \
	  print('mutation score %.1f%%: %d of %d mutants caught (%d by a timeout), %d survived, %d reached by no test' \
	  % (100 * caught / max(tested, 1), caught, tested, s['timeout'], s['survived'], s['no_tests']))"

# Move this installation (the embedded SQLite default, or what DATABASE_URL names) to another database and its
# media to another storage, verified by counts and checksums (README: Moving from the embedded default to PostgreSQL).
.PHONY: move-installation
move-installation: venv
	@test -n "$(TO)" || { echo "usage: make move-installation TO=postgres://user@host:5432/name [MEDIA_TO=s3://bucket|folder]"; exit 2; }
	$(BIN)/python manage.py move_installation --to "$(TO)" $(if $(MEDIA_TO),--media-to "$(MEDIA_TO)")

bench: venv
	$(BIN)/python bench/patches.py

clean:
	rm -rf var/test var/log mutants
