# One command per habit. `make demo` and `make test` are the README's Quickstart.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench lock services chromium weasyprint-deps clean stack-check stack-check-ci container-tools

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-install only when a requirements file changed.
# runtime: web, worker and beat on ONNX Runtime (what the demo needs, no TensorFlow).
$(VENV)/.installed-runtime: requirements/base.txt requirements/runtime.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements/runtime.txt
	touch $@

$(VENV)/.installed-dev: requirements/base.txt requirements/runtime.txt requirements/ml.txt requirements/dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $@ $(VENV)/.installed-runtime

demo: $(VENV)/.installed-runtime weasyprint-deps  ## set up and run web + worker with demo data and the shipped model
	scripts/demo.sh

test: $(VENV)/.installed-dev services chromium weasyprint-deps  ## set up and run the whole test suite (PostgreSQL + Redis + chromium)
	$(PY) -m pytest $(PYTEST_ARGS)

services:  ## start PostgreSQL and Redis if installed but not running
	scripts/services.sh

chromium:  ## Debian's chromium for the browser tests
	scripts/chromium.sh

weasyprint-deps:  ## Pango and fonts for the PDF case reports (WeasyPrint)
	scripts/weasyprint-deps.sh

# CI runs `make lint` before `make test`. No database needed: the migration
# check runs against an in-memory SQLite database.
lint: $(VENV)/.installed-dev  ## ruff, format check, missing migrations, the import rule (docs/architecture.md)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_SETTINGS_MODULE=skincare.settings.test DATABASE_URL=sqlite://:memory: \
		$(PY) manage.py makemigrations --check --dry-run
	DATABASE_URL=sqlite://:memory: $(PY) -m pytest -q -p no:cacheprovider tests/test_architecture.py

bench: $(VENV)/.installed-dev services
	$(PY) bench/prediction_latency.py

lock: $(VENV)/.installed-dev  ## exact versions of what requirements/dev.txt resolved to
	$(PY) -m pip freeze --exclude-editable | sort > requirements/lock.txt

# The container stack (docker/), built and run for real with podman: images
# from a locally built base (no registry needed), PostgreSQL, Redis, web,
# worker, beat and the training worker up with podman-compose, one upload to a
# stored prediction, PostgreSQL and the worker restarted, no prediction lost,
# everything torn down (scripts/stack-check.sh, docs/deployment.md).
# `stack-check` leaves the host's /etc/containers/containers.conf alone;
# `stack-check-ci` (what .ci/run uses, root only) first sets runc and default
# ulimits there, which sandboxed hosts such as CI's need.
container-tools: $(VENV)/bin/python  ## podman, runc, debootstrap (Debian) and podman-compose (PyPI)
	scripts/container-tools.sh

stack-check: container-tools  ## build and run docker/compose.yml with podman; drive an upload through restarts
	scripts/stack-check.sh

stack-check-ci: container-tools  ## stack-check, after configuring THIS HOST's containers.conf (runc, ulimits)
	scripts/stack-check.sh --configure-host

clean:
	rm -rf var staticfiles
