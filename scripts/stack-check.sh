#!/usr/bin/env bash
# The container stack, built and run for real (`make stack-check`; CI:
# `make stack-check-ci`). With podman and podman-compose (scripts/container-tools.sh):
#   1. base images built locally (scripts/container-base.sh: no registry needed)
#   2. the runtime and ml images from docker/Dockerfile
#   3. PostgreSQL and Redis up and healthy, migrations and the shipped model
#      (compose's `migrate`), then web, worker, beat and the training worker,
#      each healthy by its own health check (podman runs none by itself here:
#      polled with `podman healthcheck run`)
#   4. a user and clinic made with manage.py in the web container; through the
#      API: a device token, a patient, a lesion, and an upload to a stored prediction
#   5. PostgreSQL restarted (an upload right after), the worker restarted with
#      an upload in flight and another after: every upload gets exactly one
#      prediction, and beat is running and healthy again
#   6. everything torn down, volumes included (the images stay, for the next run)
# Options: --configure-host  first set runc and default ulimits in this host's
#          /etc/containers/containers.conf.d (what sandboxed hosts such as CI's need);
#          --keep            leave the stack running.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIGURE_HOST=false
KEEP=false
for arg in "$@"; do
  case "$arg" in
    --configure-host) CONFIGURE_HOST=true ;;
    --keep) KEEP=true ;;
    *) echo "usage: $0 [--configure-host] [--keep]" >&2; exit 2 ;;
  esac
done

PY=${PY:-.venv/bin/python}
START=$(date +%s)
LAST=$START
CHECKS=0
passed() { CHECKS=$((CHECKS + 1)); step "ok: $*"; }
step() {
  local now; now=$(date +%s)
  printf '[stack-check %4ss, +%3ss] %s\n' "$((now - START))" "$((now - LAST))" "$*"
  LAST=$now
}

if $CONFIGURE_HOST; then
  # crun cannot set rlimits in some sandboxes; runc can, given explicit defaults.
  mkdir -p /etc/containers/containers.conf.d
  cat > /etc/containers/containers.conf.d/50-skincare-stack-check.conf <<'CONF'
# Written by skincare's scripts/stack-check.sh --configure-host (make stack-check-ci).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
fi

step "base images"
scripts/container-base.sh
if ! podman run --rm debian:bookworm true 2>/tmp/skincare-podman-probe.log; then
  cat /tmp/skincare-podman-probe.log >&2
  echo "podman cannot start a container here; on a sandboxed host try: make stack-check-ci (configures runc)" >&2
  exit 1
fi

export SKINCARE_PYTHON_IMAGE=localhost/skincare-python:3.11
export SKINCARE_POSTGRES_IMAGE=localhost/skincare-postgres:15
export SKINCARE_REDIS_IMAGE=localhost/skincare-redis:7
# The host's pip index settings, if any, travel as build arguments (never
# committed); only network ones: a file:// index on the host means nothing in a build.
pip_args=()
for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
  value=${!name:-$("$PY" -m pip config get "global.$(echo "${name#PIP_}" | tr 'A-Z_' 'a-z-')" 2>/dev/null || true)}
  [ "$name" = PIP_TRUSTED_HOST ] || value=$(printf '%s\n' $value | grep -E '^https?://' | paste -sd' ' || true)
  if [ -n "$value" ]; then pip_args+=(--build-arg "$name=$value"); fi
done
for target in runtime ml; do
  step "build skincare-$target"
  podman build --quiet --format docker --target "$target" --build-arg "PYTHON_IMAGE=$SKINCARE_PYTHON_IMAGE" \
    "${pip_args[@]}" -t "skincare-$target:latest" -f docker/Dockerfile . >/dev/null
done
podman image prune -f >/dev/null  # layers of earlier builds that no image uses any more
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'skincare-(runtime|ml)'
has() { podman run --rm --no-healthcheck --entrypoint python "$1" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$2') is None)"; }
if has skincare-runtime:latest tensorflow || ! has skincare-runtime:latest onnxruntime || ! has skincare-ml:latest tensorflow; then
  echo "the runtime image must have ONNX Runtime and no TensorFlow; the ml image TensorFlow" >&2
  exit 1
fi
passed "the runtime image has ONNX Runtime and no TensorFlow; the ml image has TensorFlow"

PROJECT=skincare-stack-check
LOGS=$(mktemp -d)
export SKINCARE_SECRET_KEY
SKINCARE_SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(40))')
export SKINCARE_WEB_PORT
SKINCARE_WEB_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SKINCARE_POSTGRES_PASSWORD
SKINCARE_POSTGRES_PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
COMPOSE=("$(dirname "$PY")/podman-compose" --project-name "$PROJECT" -f docker/compose.yml)
compose() { "${COMPOSE[@]}" "$@"; }
container() {  # the container of a compose service
  podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" | head -n1
}
remove_stack() {  # compose down, and whatever it left behind
  compose down --volumes --timeout 10 >/dev/null 2>&1 || true
  local ids
  ids=$(podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT")
  [ -z "$ids" ] || podman rm -f $ids >/dev/null 2>&1 || true
  ids=$(podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT")
  [ -z "$ids" ] || podman volume rm -f $ids >/dev/null 2>&1 || true
}
teardown() {
  status=$?
  if [ $status -ne 0 ]; then
    echo "--- stack-check failed; the services' last log lines:" >&2
    for service in postgres redis web worker beat trainer; do
      id=$(container "$service" || true)
      [ -n "$id" ] && { echo "--- $service" >&2; podman logs --tail 25 "$id" >&2 2>&1 || true; }
    done
  fi
  if ! $KEEP; then
    step "tear down"
    remove_stack
  fi
  rm -rf "$LOGS"
  step "done (exit $status)"
}
trap teardown EXIT

wait_healthy() {  # service... : poll each one's health check, as compose's `service_healthy` would
  local service id
  for service in "$@"; do
    id=$(container "$service")
    for attempt in $(seq 120); do
      if podman healthcheck run "$id" >/dev/null 2>&1; then break; fi
      [ "$attempt" = 120 ] && { echo "$service did not become healthy" >&2; return 1; }
      sleep 1
    done
  done
}

remove_stack  # a stack left by an earlier --keep run
step "postgres, redis up"
compose up -d postgres redis >/dev/null
wait_healthy postgres redis
step "migrate and register the shipped model (runtime image: ONNX-only load check)"
compose run --rm --no-deps migrate > "$LOGS/migrate.log" 2>&1 || { cat "$LOGS/migrate.log" >&2; exit 1; }
tail -n 1 "$LOGS/migrate.log"
passed "migrations and the shipped model registered without TensorFlow"
step "web, worker, beat, trainer up"
compose up -d --no-deps web worker beat trainer >/dev/null
wait_healthy web worker beat trainer
passed "healthy: $(podman ps --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}' | tr '\n' ' ')"

WEB=$(container web)
USERNAME=stack.check
PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(18))')
podman exec -e USERNAME="$USERNAME" -e PASSWORD="$PASSWORD" "$WEB" python manage.py shell -c '
import os
from django.contrib.auth import get_user_model
from cases.models import Clinic, Membership
user = get_user_model().objects.create_user(os.environ["USERNAME"], password=os.environ["PASSWORD"])
clinic = Clinic.objects.create(name="Stack Check Clinic")
Membership.objects.create(user=user, clinic=clinic, role=Membership.Role.CLINICIAN)
'
BASE=http://127.0.0.1:$SKINCARE_WEB_PORT
client() { "$PY" scripts/stack_client.py "$BASE" "$@"; }
TOKEN=$(client token "$USERNAME" "$PASSWORD")
LESION=$(client lesion "$TOKEN")
mapfile -t IMAGES < <(find demo/images -name '*.jpg' | sort | head -n 4)
[ ${#IMAGES[@]} = 4 ] || { echo "demo/images has fewer than 4 JPEGs" >&2; exit 1; }

step "upload 1 -> prediction"
ids=("$(client upload "$TOKEN" "$LESION" "${IMAGES[0]}")")
client wait "$TOKEN" 180 "${ids[0]}"
passed "an upload through the API got its prediction"

step "restart postgres; upload 2 as soon as it answers"
podman restart --time 10 "$(container postgres)" >/dev/null
ids+=("$(client upload "$TOKEN" "$LESION" "${IMAGES[1]}")")

step "restart the worker with upload 3 just sent; upload 4 after"
ids+=("$(client upload "$TOKEN" "$LESION" "${IMAGES[2]}")")
podman restart --time 10 "$(container worker)" >/dev/null
ids+=("$(client upload "$TOKEN" "$LESION" "${IMAGES[3]}")")
client wait "$TOKEN" 300 "${ids[@]}"

step "every upload has exactly one prediction"
podman exec -e IMAGE_IDS="${ids[*]}" "$WEB" python manage.py shell -c '
import os
from inference.models import ModelVersion, Prediction
active = ModelVersion.objects.active()
ids = os.environ["IMAGE_IDS"].split()
lost = []
for image_id in ids:
    rows = Prediction.objects.filter(image_id=image_id, model_version=active)
    states = list(rows.values_list("status", flat=True))
    print(image_id, states)
    if states != [Prediction.Status.SUCCEEDED]:
        lost.append(image_id)
total = Prediction.objects.filter(image_id__in=ids).count()
print(f"{len(ids)} uploads, {total} predictions, {len(lost)} without exactly one succeeded prediction")
raise SystemExit(1 if lost or total != len(ids) else 0)
'
passed "no prediction lost or doubled across the restarts"

step "beat after the database restart"
BEAT=$(container beat)
podman inspect "$BEAT" --format 'beat: {{.State.Status}}, restarted {{.RestartCount}} time(s)'
wait_healthy beat worker
podman exec "$BEAT" python manage.py beat_health
passed "beat runs and sends the sweep after the database restart"

step "beat killed (as when it died with the database): restarted by its policy"
restarts=$(podman inspect --format '{{.RestartCount}}' "$BEAT")
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kill -KILL "$(podman inspect --format '{{.State.Pid}}' "$BEAT")"
for attempt in $(seq 90); do
  read -r state count < <(podman inspect --format '{{.State.Status}} {{.RestartCount}}' "$BEAT")
  if [ "$state" = running ] && [ "$count" -gt "$restarts" ] \
    && podman logs --since "$since" "$BEAT" 2>&1 | grep -q "Sending due task sweep-predictions"; then
    break
  fi
  [ "$attempt" = 90 ] && { echo "beat was not restarted, or sends no sweep ($state, $count restarts)" >&2; exit 1; }
  sleep 1
done
podman inspect "$BEAT" --format 'beat: {{.State.Status}}, restarted {{.RestartCount}} time(s)'
passed "beat restarted after a crash, its schedule read back from the database"
# The plain closing line CI reads (as it reads pytest's).
echo "stack-check: $CHECKS passed, 0 failed"
