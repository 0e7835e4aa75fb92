#!/usr/bin/env bash
# Run skincare embedded: SQLite, local private media and a filesystem broker
# under var/, a real Celery worker process, beat, and the web server; with
# TensorFlow installed (requirements/ml.txt), also the `training` queue's
# worker (site adaptation). Ctrl-C stops all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
HOST=${SKINCARE_HOST:-127.0.0.1}
PORT=${SKINCARE_PORT:-8000}
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-skincare.settings.dev}

"$PY" manage.py migrate --noinput
# The previous model first, registered but not active, so the admin can roll
# back to it (or run it in shadow mode beside the active one).
"$PY" manage.py register_model models/mobilenet-v2-melanoma-v2
"$PY" manage.py register_model --activate   # the shipped model named in models/ACTIVE
"$PY" manage.py seed_demo

# Stop our own background jobs once, whatever ends the script. (`kill 0` in
# the trap signalled this shell too, which ran the trap again, and again.)
stop() {
  trap - EXIT INT TERM
  local pids
  pids=$(jobs -p)
  [ -n "$pids" ] || return 0
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 40); do  # Celery's warm shutdown finishes the task in hand
    kill -0 $pids 2>/dev/null || break
    sleep 0.25
  done
  kill -KILL $pids 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$PY" -m celery -A skincare worker -Q inference,default --pool prefork --concurrency 1 --loglevel INFO &
"$PY" -m celery -A skincare beat --loglevel INFO &
if "$PY" -c 'import importlib.util, sys; sys.exit(not (importlib.util.find_spec("tensorflow") and importlib.util.find_spec("keras")))'; then
  "$PY" -m celery -A skincare worker -Q training --pool prefork --concurrency 1 --loglevel INFO -n training@%h &
else
  echo "No TensorFlow here (requirements/ml.txt): site adaptation jobs will wait on the training queue."
fi
echo
echo "skincare is starting on http://$HOST:$PORT/ (admin: http://$HOST:$PORT/admin/)"
echo "Logins (password skincare-demo): dr.alvarez (clinic admin), dr.chen, dr.outsider (portal); ml.lead (ML admin) and admin (superuser) for the admin."
"$PY" manage.py runserver "$HOST:$PORT" --noreload &
wait -n || true  # the first of them to stop (runserver on Ctrl-C) ends the demo
