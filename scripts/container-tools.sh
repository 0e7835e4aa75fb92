#!/usr/bin/env bash
# What `make stack-check` needs to build and run the container stack on a
# Debian machine: podman (4.3 in bookworm), runc (crun cannot set rlimits in
# some sandboxes), debootstrap (the base image is built locally, no registry
# needed), slirp4netns/uidmap, and podman-compose from PyPI into the project's
# venv (bookworm's podman has no `podman compose`). Installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# dnsname: compose services find each other by name on the CNI network (podman 4.3 default backend).
PACKAGES=(podman runc debootstrap uidmap slirp4netns fuse-overlayfs curl golang-github-containernetworking-plugin-dnsname)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing container tools: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "The container stack needs: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
"$PY" -m pip install --quiet -r requirements/stack.txt
