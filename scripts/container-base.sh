#!/usr/bin/env bash
# Base images built on this machine, for hosts that reach Debian's package
# archive but no container registry (`make stack-check`):
#   debian:bookworm                    debootstrap (minbase) from the host's own apt mirror
#   localhost/skincare-python:3.11     Debian's Python 3.11 in a venv on PATH: stands in for python:3.11-slim-bookworm
#   localhost/skincare-postgres:15     Debian's PostgreSQL 15: stands in for postgres:16
#   localhost/skincare-redis:7         Debian's Redis 7: stands in for redis:7
# The Python base also trusts the host's CA bundle, so that pip inside a build
# works through the same (possibly intercepting) proxy as pip on the host.
# Nothing here names a mirror or index: both are read from the host at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '[%s] %s\n' "$(date +%T)" "$*"; }

host_mirror() {
  # The first Debian archive URI of the host's apt sources (deb822 or one-line format).
  local uri
  uri=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | sed -E 's/\[[^]]*\]//' | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
  fi
  [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt/sources.list(.d)" >&2; return 1; }
  echo "$uri"
}

if ! podman image exists debian:bookworm; then
  mirror=$(host_mirror)
  step "debootstrap bookworm (minbase)"
  root=$(mktemp -d /var/tmp/skincare-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
  # Like Debian's slim images: no manuals, documentation or translations.
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    > "$root/etc/dpkg/dpkg.cfg.d/docker-slim"
  find "$root/usr/share/doc" -type f ! -name copyright -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  tar -C "$root" --numeric-owner -c . | podman import --quiet - debian:bookworm >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp docker/base/*.Dockerfile docker/base/*.sh "$context"/
cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca-bundle.crt"
build() {  # image, Dockerfile
  if podman image exists "$1"; then return; fi
  step "build $1"
  podman build --quiet --format docker -t "$1" -f "$context/$2" "$context" >/dev/null
}
build localhost/skincare-python:3.11 python.Dockerfile
build localhost/skincare-postgres:15 postgres.Dockerfile
build localhost/skincare-redis:7 redis.Dockerfile
