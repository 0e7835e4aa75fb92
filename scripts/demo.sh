#!/usr/bin/env bash
# Run skincare embedded: SQLite, local private media and a filesystem broker
# under var/, a real Celery worker process, beat, and the web server.
# Ctrl-C stops all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
HOST=${SKINCARE_HOST:-127.0.0.1}
PORT=${SKINCARE_PORT:-8000}
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-skincare.settings.dev}

"$PY" manage.py migrate --noinput
"$PY" manage.py register_model --activate   # the shipped model named in models/ACTIVE
"$PY" manage.py seed_demo

trap 'kill 0' EXIT INT TERM
"$PY" -m celery -A skincare worker -Q inference,default --pool prefork --concurrency 1 --loglevel INFO &
"$PY" -m celery -A skincare worker -Q training --pool prefork --concurrency 1 --loglevel INFO -n training@%h &   # site adaptation jobs: minutes each, never ahead of predictions
"$PY" -m celery -A skincare beat --loglevel INFO --schedule "${SKINCARE_VAR_DIR:-var}/celerybeat-schedule" &
echo
echo "skincare is starting on http://$HOST:$PORT/ (admin: http://$HOST:$PORT/admin/)"
echo "Logins (password skincare-demo): dr.alvarez (clinic admin), dr.chen, dr.outsider (portal); ml.lead (ML admin) and admin (superuser) for the admin."
"$PY" manage.py runserver "$HOST:$PORT" --noreload
